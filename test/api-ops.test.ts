import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { createMetrics } from "../src/api/metrics.js";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { statementCsvMetaColumns } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import type { WriterHealth } from "../src/recorder/receipt-writer.js";
import { reconciliationCsvMetaColumns } from "../src/reports/reconciliation.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createTestApi } from "./support/audit-api-app.js";
import { insertJob } from "./support/job-rows.js";
import { createTestStore } from "./support/store.js";

describe("GET /metrics", () => {
  it("exposes jobs by verdict, queue depth, verification lag, RPC counters and proxy latency", async () => {
    const store = createTestStore();
    const now = Date.UTC(2026, 10, 1, 1);
    const metrics = createMetrics({
      store,
      now: () => now,
      rpcStats: () => [
        { endpoint: "http://rpc-a", method: "getTransaction", outcome: "ok", count: 12 },
        {
          endpoint: "http://rpc-a",
          method: "getSignatureStatuses",
          outcome: "rate_limited",
          count: 2,
        },
      ],
    });
    const app = createApp({ store, log: createLogger({ level: "silent" }), metrics });
    const { token } = await createToken(store, { role: "read", name: "prometheus" });
    insertJob(store, { jobId: "v1", verdict: "verified" });
    insertJob(store, { jobId: "p1", verdict: "pending", createdAt: now - 90_000 });
    insertJob(store, { jobId: "p2", verdict: "awaiting_finality", createdAt: now - 30_000 });
    metrics.observeProxy({ status: 200, stream: true, durationSeconds: 0.8, ttfbSeconds: 0.05 });

    const res = await app.request("/metrics", { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain('decentral_audit_jobs{verdict="verified"} 1');
    expect(text).toContain('decentral_audit_jobs{verdict="pending"} 1');
    expect(text).toContain('decentral_audit_jobs{verdict="discrepancy"} 0');
    expect(text).toContain("decentral_audit_verification_queue_depth 2");
    expect(text).toContain("decentral_audit_verification_lag_seconds 90");
    expect(text).toContain(
      'decentral_audit_rpc_requests_total{endpoint="http://rpc-a",method="getSignatureStatuses",outcome="rate_limited"} 2',
    );
    expect(text).toContain(
      'decentral_audit_proxy_duration_seconds_count{status="200",stream="true"} 1',
    );
    expect(text).toContain('decentral_audit_proxy_ttfb_seconds_bucket{le="0.05",stream="true"} 1');
    // An in-memory store has no WAL file.
    expect(text).toContain("decentral_audit_sqlite_wal_bytes 0");
  });

  it("shows the size of a file database's WAL", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "metrics-wal-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    insertJob(store, { jobId: "w1", verdict: "verified" });
    const metrics = createMetrics({ store });
    const text = await metrics.registry.metrics();
    const bytes = statSync(`${path}-wal`).size;
    expect(bytes).toBeGreaterThan(0);
    expect(text).toContain(`decentral_audit_sqlite_wal_bytes ${bytes}`);
    store.close();
  });

  it("answers with the database away: its gauges left out, the proxy's counters kept", async () => {
    const store = createTestStore();
    const metrics = createMetrics({ store });
    insertJob(store, { jobId: "v1", verdict: "verified" });
    insertJob(store, { jobId: "p1", verdict: "pending", createdAt: Date.now() - 3_600_000 });
    const before = await metrics.registry.metrics();
    expect(before).toContain("decentral_audit_database_up 1");
    expect(before).toContain("decentral_audit_verification_queue_depth 1");
    metrics.observeProxy({ status: 200, stream: false, durationSeconds: 0.2 });
    store.sqlite.close();
    const text = await metrics.registry.metrics();
    expect(text).toContain("decentral_audit_database_up 0");
    expect(text).not.toContain('decentral_audit_jobs{verdict="verified"}');
    // Unknown, not a lag of 0 that would clear an alert during the outage (prom-client writes
    // NaN as "Nan", which Prometheus reads as NaN).
    expect(text).toMatch(/^decentral_audit_verification_queue_depth nan$/im);
    expect(text).toMatch(/^decentral_audit_verification_lag_seconds nan$/im);
    expect(text).toContain('proxy_duration_seconds_count{status="200",stream="false"} 1');
  });

  it("says the database is down while this process's receipt writes wait, though a ping passes", async () => {
    // The database answers a ping, but the receipt writer took it for unreachable (its
    // connection lost on every try): paid work is refused, and an alert on the gauge must fire.
    let receipts: WriterHealth = {
      reachable: false,
      since: Date.now(),
      error: "terminating connection due to administrator command",
      waiting: 3,
    };
    const metrics = createMetrics({ store: createTestStore(), receipts: () => receipts });
    expect(await metrics.registry.metrics()).toContain("decentral_audit_database_up 0");
    receipts = { reachable: true };
    expect(await metrics.registry.metrics()).toContain("decentral_audit_database_up 1");
  });

  it("keeps one registry per app, so two apps never share counters", async () => {
    const a = createMetrics({ store: createTestStore() });
    const b = createMetrics({ store: createTestStore() });
    a.observeProxy({ status: 200, stream: false, durationSeconds: 1 });
    expect(await b.registry.metrics()).not.toContain('proxy_duration_seconds_count{status="200"');
    expect(await a.registry.metrics()).toContain(
      'proxy_duration_seconds_count{status="200",stream="false"} 1',
    );
  });
});

describe("GET /readyz", () => {
  it("is 200 when the database answers, the RPC answers and nothing waits too long", async () => {
    const api = await createTestApi({ readiness: { rpc: async () => 123 } });
    const res = await api.get("/readyz");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      ok: true,
      checks: { database: { ok: true }, rpc: { ok: true } },
    });
  });

  it("is 503 naming the RPC when it fails, and the lag when verification falls behind", async () => {
    const now = Date.UTC(2026, 10, 1, 12);
    const api = await createTestApi({
      now: () => now,
      readiness: {
        rpc: () => Promise.reject(new Error("connect ECONNREFUSED")),
        maxLagSeconds: 600,
      },
    });
    // Due an hour ago and still open: the verifier is behind its own schedule.
    insertJob(api.store, {
      jobId: "old",
      verdict: "pending",
      createdAt: now - 3_600_000,
      nextVerifyAt: now - 3_600_000,
    });
    const res = await api.get("/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      ok: false,
      checks: {
        database: { ok: true },
        rpc: { ok: false, detail: "connection refused (connect ECONNREFUSED)" },
        verificationLag: { ok: false, seconds: 3600, maxSeconds: 600 },
      },
    });
  });
});

describe("GET /readyz with an RPC that does not answer", () => {
  it("says it gave no answer within the probe's time, and stops waiting for it", async () => {
    let given: AbortSignal | undefined;
    const api = await createTestApi({
      readiness: {
        rpc: (signal) => {
          given = signal;
          return new Promise(() => {});
        },
        rpcTimeoutMs: 50,
      },
    });
    const res = await api.get("/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      checks: { rpc: { ok: false, detail: "no answer within 50 ms" } },
    });
    expect(given?.aborted).toBe(true);
  });
});

describe("GET /readyz after an import of old receipts", () => {
  it("stays ready while the verifier works through them on time", async () => {
    const now = Date.UTC(2026, 10, 9, 12);
    const api = await createTestApi({
      now: () => now,
      readiness: { rpc: async () => 1, maxLagSeconds: 600 },
    });
    // Receipts of eight days ago, just imported: due at once as a new row is (0), or waiting
    // for finality.
    insertJob(api.store, {
      jobId: "imported_due",
      verdict: "pending",
      createdAt: now - 8 * 86_400_000,
      nextVerifyAt: 0,
      updatedAt: now,
    });
    insertJob(api.store, {
      jobId: "imported_waiting",
      verdict: "awaiting_finality",
      createdAt: now - 8 * 86_400_000,
      nextVerifyAt: now + 4_000,
    });
    const res = await api.get("/readyz");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      ok: true,
      checks: { verificationLag: { ok: true, seconds: 0, maxSeconds: 600 } },
    });
  });
});

describe("GET /readyz and the background work", () => {
  it("is 503 naming the background work when it is not running, 200 with it when it runs", async () => {
    let background = { ok: true, detail: "running in a thread" };
    const api = await createTestApi({
      readiness: { rpc: async () => 1, background: () => background },
    });
    const running = await api.get("/readyz");
    expect(running.status).toBe(200);
    expect(await running.json()).toMatchObject({
      ok: true,
      checks: { background: { ok: true, detail: "running in a thread" } },
    });
    background = { ok: false, detail: "the background thread has not reported for 12 s" };
    const stuck = await api.get("/readyz");
    expect(stuck.status).toBe(503);
    expect(await stuck.json()).toMatchObject({
      ok: false,
      checks: {
        database: { ok: true },
        rpc: { ok: true },
        background: { ok: false, detail: "the background thread has not reported for 12 s" },
      },
    });
  });
});

describe("GET /readyz while receipts wait for the database", () => {
  it("is 503 naming since when the database is unreachable and how many writes wait", async () => {
    const since = Date.UTC(2026, 10, 1, 12);
    const api = await createTestApi({
      readiness: {
        rpc: async () => 1,
        receipts: () => ({
          reachable: false,
          since,
          error: "connect ECONNREFUSED 10.0.0.5:5432",
          waiting: 7,
        }),
      },
    });
    const res = await api.get("/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      ok: false,
      checks: {
        database: {
          ok: false,
          detail:
            "unreachable since 2026-11-01T12:00:00.000Z (connect ECONNREFUSED 10.0.0.5:5432); 7 receipt writes waiting",
        },
        rpc: { ok: true },
        // Unknown while the database cannot be asked, never a lag of 0.
        verificationLag: { ok: false, seconds: null },
      },
    });
  });
});

describe("GET /openapi.json", () => {
  it("is an OpenAPI 3.1 document of every audit route with the bearer scheme", async () => {
    const api = await createTestApi();
    const doc = (await (await api.get("/openapi.json")).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
      components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/audit/{jobId}",
        "/jobs/{jobId}/reverify",
        "/reports/reconciliation",
        "/reports/discrepancies",
        "/reports/workers/{address}",
        "/jobs",
        "/readyz",
        "/metrics",
      ]),
    );
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({
      type: "http",
      scheme: "bearer",
    });
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining(["AuditRecord", "Reconciliation", "Error"]),
    );
  });

  it("renders a nullable reference as anyOf with null, so validators take the null it sends", async () => {
    const api = await createTestApi({ statement: { profile: localnetProfile, graceSeconds: 0 } });
    type Schema = { $ref?: string; type?: string | string[]; allOf?: Schema[]; anyOf?: Schema[] };
    const doc = (await (await api.get("/openapi.json")).json()) as {
      components: { schemas: Record<string, Schema> };
    };
    const resolve = (s: Schema) =>
      s.$ref ? doc.components.schemas[s.$ref.split("/").at(-1)!]! : s;
    const typesOf = (s: Schema) => [s.type ?? []].flat();
    // Whether `null` validates against `s`: every member of an allOf, some member of an anyOf.
    const admitsNull = (s: Schema): boolean => {
      const r = resolve(s);
      if (r.allOf) return r.allOf.every(admitsNull);
      if (r.anyOf) return r.anyOf.some(admitsNull);
      return typesOf(r).includes("null");
    };
    // An allOf pairing a $ref with a null type: the $ref alone refuses the null.
    const bad: string[] = [];
    const walk = (node: unknown, path: string) => {
      if (node === null || typeof node !== "object") return;
      const allOf = (node as Schema).allOf;
      if (allOf?.some((s) => s.$ref) && allOf.some((s) => typesOf(s).includes("null"))) {
        bad.push(path);
      }
      for (const [key, value] of Object.entries(node)) walk(value, `${path}/${key}`);
    };
    walk(doc, "#");
    expect(bad).toEqual([]);
    const statement = doc.components.schemas.Statement as {
      properties: { vaults: { items: { properties: { accountSnapshot: Schema } } } };
    };
    // A vault without a snapshot in the period, the usual case, answers null.
    expect(admitsNull(statement.properties.vaults.items.properties.accountSnapshot)).toBe(true);
  });
});

describe("RPC quorum in /readyz and /metrics", () => {
  const quorum = () => ({
    quorum: 2,
    endpoints: [
      {
        endpoint: "http://liar",
        outvoted: 4,
        unresolved: 1,
        consecutiveOutvoted: 3,
        setAside: true,
        setAsideUntil: 1_800_000_000_000,
      },
      {
        endpoint: "http://honest",
        outvoted: 0,
        unresolved: 1,
        consecutiveOutvoted: 0,
        setAside: false,
        setAsideUntil: null,
      },
    ],
  });

  it("names the endpoints that disagreed, the one set aside, and the jobs waiting in rpc_disagreement", async () => {
    const api = await createTestApi({ readiness: { rpc: async () => 1, rpcQuorum: quorum } });
    insertJob(api.store, { jobId: "d1", verdict: "rpc_disagreement" });
    const res = await api.get("/readyz");
    expect(await res.json()).toMatchObject({
      rpcQuorum: {
        quorum: 2,
        jobsInDisagreement: 1,
        endpoints: [{ endpoint: "http://liar", setAside: true, outvoted: 4 }, { setAside: false }],
      },
    });
  });

  it("counts disagreements by endpoint", async () => {
    const store = createTestStore();
    const metrics = createMetrics({ store, rpcQuorum: quorum });
    const text = await metrics.registry.metrics();
    expect(text).toContain(
      'decentral_audit_rpc_disagreements_total{endpoint="http://liar",kind="outvoted"} 4',
    );
    expect(text).toContain(
      'decentral_audit_rpc_disagreements_total{endpoint="http://honest",kind="unresolved"} 1',
    );
    expect(text).toContain('decentral_audit_rpc_endpoint_set_aside{endpoint="http://liar"} 1');
  });
});

describe("the CSV answers' OpenAPI descriptions", () => {
  it("name the period columns every row of the reconciliation and statement CSV ends with", async () => {
    const api = await createTestApi({ statement: { profile: localnetProfile, graceSeconds: 0 } });
    type Op = { responses: { 200: { content: Record<string, { description?: string }> } } };
    const doc = (await (await api.get("/openapi.json")).json()) as {
      paths: Record<string, { get: Op }>;
    };
    const csvOf = (path: string) => {
      const ok = doc.paths[path]!.get.responses[200] as unknown as {
        description: string;
        content: Record<string, { description?: string; schema?: { description?: string } }>;
      };
      return JSON.stringify(ok);
    };
    for (const column of reconciliationCsvMetaColumns) {
      expect(csvOf("/reports/reconciliation")).toContain(`\`${column}\``);
    }
    for (const column of statementCsvMetaColumns) {
      expect(csvOf("/reports/statement")).toContain(`\`${column}\``);
    }
  });
});
