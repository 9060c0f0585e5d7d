import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { withoutUrlSecrets } from "../src/chain/url-secrets.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { type AuditRecord, auditRecord, explorerClusterOf } from "../src/reports/audit-record.js";
import { recordJobsApiAnswerInTransaction } from "../src/store/jobs-api.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createTestApi } from "./support/audit-api-app.js";
import {
  fakeSignature,
  insertChainTransaction,
  insertCheck,
  insertConflict,
  insertJob,
} from "./support/job-rows.js";

type Audit = AuditRecord;

describe("GET /audit/:jobId", () => {
  it("shows the receipt, conflicts, jobs API answer, both transactions, every check and the verdict", async () => {
    const api = await createTestApi({
      explorer: { cluster: "custom", rpcUrl: "http://127.0.0.1:8899" },
    });
    const job = insertJob(api.store, {
      jobId: "job_full",
      tags: { team: "search" },
      apiCheckedAt: Date.UTC(2026, 10, 1, 0, 1),
      apiStatus: "settled",
      apiCreditsChargedUnits: 80_000n,
      apiResponse: { status: "settled" },
    });
    insertChainTransaction(api.store, job.escrowTx!, {
      slot: 77,
      tokenChanges: [
        {
          account: "Vault",
          owner: "Auth",
          mint: "Mint",
          programId: "Tok",
          decimals: 6,
          pre: "500000",
          post: "100000",
          delta: "-400000",
        },
      ],
    });
    insertCheck(api.store, "job_full", "escrow_covers_charge", "pass", {
      expected: "80000",
      actual: "400000",
    });
    insertCheck(api.store, "job_full", "settlement_split", "fail", {
      reason: "worker got 1 unit less",
      expected: "60000",
      actual: "59999",
    });
    insertConflict(api.store, "job_full", ["worker"]);

    const res = await api.get("/audit/job_full");
    expect(res.status).toBe(200);
    const body = (await res.json()) as Audit;
    expect(body.verdict).toBe("verified");
    expect(body.verdictAt).toMatch(/^2026-11-01T/);
    expect(body.receipt.decentral.escrowTx).toBe(job.escrowTx);
    expect(body.receipt.tags).toEqual({ team: "search" });
    expect(body.receipt.usage).toEqual({
      promptTokens: 120,
      completionTokens: 300,
      totalTokens: 420,
    });
    expect(body.conflicts).toEqual([expect.objectContaining({ differences: ["worker"] })]);
    expect(body.jobsApi).toEqual(
      expect.objectContaining({ status: "settled", creditsChargedUnits: "80000" }),
    );
    expect(body.escrow).toEqual(
      expect.objectContaining({
        signature: job.escrowTx,
        commitment: "finalized",
        slot: 77,
        feeLamports: "5000",
        succeeded: true,
        explorerUrl: `https://explorer.solana.com/tx/${job.escrowTx}?cluster=custom&customUrl=http%3A%2F%2F127.0.0.1%3A8899`,
        tokenMovements: [expect.objectContaining({ account: "Vault", delta: "-400000" })],
      }),
    );
    // Not fetched yet: the signature is known, nothing else.
    expect(body.settlement).toEqual(
      expect.objectContaining({ signature: job.settlementTx, state: "unknown", slot: null }),
    );
    expect(body.checks.map((c) => [c.name, c.outcome, c.expected, c.actual])).toEqual([
      ["escrow_covers_charge", "pass", "80000", "400000"],
      ["settlement_split", "fail", "60000", "59999"],
    ]);
    expect(body.amounts.chargedUnits).toBe("80000");
    expect(body.amounts.chargedUsdc).toBe("0.080000");
  });

  it("links mainnet transactions without a cluster parameter by default", async () => {
    const api = await createTestApi();
    insertJob(api.store, { jobId: "job_m", escrowTx: fakeSignature("m") });
    const body = (await (await api.get("/audit/job_m")).json()) as Audit;
    expect(body.escrow?.explorerUrl).toBe(`https://explorer.solana.com/tx/${fakeSignature("m")}`);
  });

  it("answers 400 naming the URL for a NUL byte, on every route, as PostgreSQL would refuse it", async () => {
    const api = await createTestApi();
    for (const path of [
      "/audit/job_x%00y",
      "/jobs?model=a%00b",
      "/reports/discrepancies?check=a%00",
    ]) {
      const res = await api.get(path);
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { error: { field: string } }).error.field).toBe("url");
    }
  });

  it("documents in the OpenAPI document the 503 of a database that is away, on every authenticated route", async () => {
    const api = await createTestApi();
    const doc = (await (await api.get("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
    };
    const operations = Object.values(doc.paths).flatMap((p) => Object.values(p));
    const authenticated = operations.filter((o) => "401" in o.responses);
    expect(authenticated.length).toBeGreaterThan(5);
    for (const o of authenticated) expect(o.responses).toHaveProperty("503");
  });

  it("answers 404 with the error shape for an unknown job", async () => {
    const api = await createTestApi();
    const res = await api.get("/audit/job_nope");
    expect(res.status).toBe(404);
    const body = (await res.json()) as {
      error: { code: string; message: string };
      requestId: string;
    };
    expect(body.error).toEqual(
      expect.objectContaining({ code: "not_found", message: "no job job_nope" }),
    );
    expect(body.requestId).toBeTruthy();
  });

  // An id no receipt can have (a typo, a cut paste) was answered "no job", as if the id were
  // right and the job not recorded yet.
  it("answers 400 naming jobId for an id of no job's shape", async () => {
    const api = await createTestApi();
    for (const id of ["JOB_X", "job_a%2Fb", "job_", "8fx2kp3m9q", `job_${"a".repeat(121)}`]) {
      const res = await api.get(`/audit/${id}`);
      expect(res.status, id).toBe(400);
      const body = (await res.json()) as { error: { code: string; field?: string } };
      expect(body.error, id).toMatchObject({ code: "validation_failed", field: "jobId" });
    }
  });
});

describe("the audit record on a SQLite file another process writes", () => {
  it("is one snapshot: the jobs API's status and its body come from the same answer", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "audit-snapshot-")), "audit.db");
    const writer = openSqliteStore(path);
    const reader = openSqliteStore(path);
    try {
      migrateStore(writer);
      insertJob(writer, { jobId: "job_torn", verdict: "pending" });
      const answer = (status: string) => ({
        status,
        creditsChargedUnits: null,
        escrowTx: null,
        settlementTx: null,
        worker: null,
        raw: { status },
      });
      recordJobsApiAnswerInTransaction(writer, "job_torn", answer("processing"), 100);
      // The next answer commits on the other connection right after the reader's first read.
      const prepare = reader.sqlite.prepare.bind(reader.sqlite);
      let written = false;
      reader.sqlite.prepare = ((text: string) => {
        const statement = prepare(text);
        if (/^select/i.test(text) && /from "jobs" where "jobs"."job_id"/i.test(text)) {
          const get = statement.get.bind(statement);
          Object.assign(statement, {
            get: (...args: unknown[]) => {
              const row = get(...args);
              if (!written) {
                written = true;
                recordJobsApiAnswerInTransaction(writer, "job_torn", answer("settled"), 200);
              }
              return row;
            },
          });
        }
        return statement;
      }) as typeof reader.sqlite.prepare;
      const record = await auditRecord(reader, "job_torn", { cluster: "mainnet-beta" });
      expect(written).toBe(true);
      expect(record?.jobsApi).toMatchObject({
        status: "processing",
        response: { status: "processing" },
      });
      const after = await auditRecord(reader, "job_torn", { cluster: "mainnet-beta" });
      expect(after?.jobsApi).toMatchObject({ status: "settled", response: { status: "settled" } });
    } finally {
      reader.close();
      writer.close();
    }
  });
});

describe("POST /jobs/:jobId/reverify", () => {
  it("queues the job with the verifier and answers 202", async () => {
    const queued: string[] = [];
    const api = await createTestApi({ verifier: { reverify: async (id) => void queued.push(id) } });
    insertJob(api.store, { jobId: "job_r" });
    const res = await api.app.request("/jobs/job_r/reverify", {
      method: "POST",
      headers: api.bearer(api.tokens.admin),
    });
    expect(res.status).toBe(202);
    expect(queued).toEqual(["job_r"]);
  });

  it("answers 404 for an unknown job and 409 when no verifier runs", async () => {
    const api = await createTestApi();
    insertJob(api.store, { jobId: "job_r" });
    const post = (id: string) =>
      api.app.request(`/jobs/${id}/reverify`, {
        method: "POST",
        headers: api.bearer(api.tokens.admin),
      });
    expect((await post("job_nope")).status).toBe(404);
    expect((await post("Job_R")).status).toBe(400);
    expect((await post("job_r")).status).toBe(409);
  });
});

describe("secrets in RPC URLs", () => {
  it("never reach explorer links or error texts of the audit record", () => {
    expect(
      explorerClusterOf("custom", "https://user:pw@rpc.example.com/v1/?api-key=SECRET"),
    ).toEqual({
      cluster: "custom",
      rpcUrl: "https://rpc.example.com/…",
    });
    expect(explorerClusterOf("mainnet-beta", "https://rpc.example.com/?api-key=SECRET")).toEqual({
      cluster: "mainnet-beta",
    });
    expect(
      withoutUrlSecrets(
        "getSlot failed (last on https://rpc.example.com/?api-key=SECRET): timeout",
      ),
    ).toBe("getSlot failed (last on https://rpc.example.com/): timeout");
    // Providers that put the key in the path.
    expect(withoutUrlSecrets("(last on https://solana-mainnet.g.alchemy.com/v2/KEY123): 429")).toBe(
      "(last on https://solana-mainnet.g.alchemy.com/…): 429",
    );
  });
});

describe("caching of the API's answers", () => {
  it("tells caches not to store any audit record, report or listing, JSON or CSV", async () => {
    const api = await createTestApi({ statement: { profile: localnetProfile, graceSeconds: 0 } });
    insertJob(api.store, { jobId: "job_cc" });
    type Operation = { parameters?: { name: string; in: string; required?: boolean }[] };
    const doc = (await (await api.get("/openapi.json")).json()) as {
      paths: Record<string, { get?: Operation }>;
    };
    const values: Record<string, string> = {
      jobId: "job_cc",
      address: "11111111111111111111111111111111",
      from: "2026-11-01",
      to: "2026-12-01",
    };
    const urls = Object.entries(doc.paths)
      .filter(([path, item]) => item.get && /^\/(reports|jobs|audit)(\/|$)/.test(path))
      .map(([template, item]) => {
        const path = template.replace(/\{(\w+)\}/g, (_, name: string) => values[name]!);
        const query = (item.get?.parameters ?? [])
          .filter((p) => p.in === "query" && p.required)
          .map((p) => `${p.name}=${values[p.name]}`);
        return `${path}?${query.join("&")}`;
      });
    urls.push("/reports/reconciliation?from=2026-11-01&to=2026-12-01&format=csv");
    urls.push("/audit/job_none");
    expect(urls.length).toBeGreaterThan(8);
    for (const url of urls) {
      const res = await api.get(url);
      expect(res.status, url).toBeLessThan(500);
      // A verdict can change with the next round: a stored answer would be a stale verdict.
      expect(res.headers.get("cache-control"), url).toBe("no-store");
    }
  });

  // Readiness and metrics are the service's state at one moment, the API description changes
  // with the deployed version: a shared cache in front must not answer them from before.
  it("tells caches not to store readiness, metrics or the API description", async () => {
    const api = await createTestApi();
    for (const url of ["/readyz", "/metrics", "/openapi.json"]) {
      const res = await api.get(url);
      expect([200, 503], url).toContain(res.status);
      expect(res.headers.get("cache-control"), url).toBe("no-store");
    }
  });
});
