import http from "node:http";
import { eq } from "drizzle-orm";
import OpenAI from "openai";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../src/api/app.js";
import { createRpcPool } from "../src/chain/rpc-pool.js";
import type { SqliteStore } from "../src/db/client.js";
import { checkResults, jobs } from "../src/db/schema.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { createRecordingFetch } from "../src/recorder/fetch-wrapper.js";
import {
  createJobsApiClient,
  parseJobsApiAnswer,
  recordJobsApiAnswer,
} from "../src/recorder/jobs-api.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { ingestToken, listen, serveApp } from "./support/recorder-fixtures.js";
import { useStarted } from "./support/started-life.js";
import { createTestStore } from "./support/store.js";

/*
 * An operator that answers a job with a signature header sent twice ("S1" and "S2" on two
 * lines, read by every client as "S1, S2"), where S2 is a real second settlement or another
 * lock, and whose jobs API names only S1. The receipt must keep S2 for the verifier to judge:
 * read as one malformed value, the receipt had no settlement, the jobs API's S1 filled it and
 * the job was verified while S2 took a second payout out of escrow.
 */

const log = createLogger({ level: "silent" });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));

const origin = () => world.decentralBaseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
const key = () => world.apiKeys[3] as string;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function call(method: string, path: string, headers: http.OutgoingHttpHeaders, body?: Buffer) {
  return new Promise<Answer>((resolve, reject) => {
    const req = http.request(`${origin()}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 502,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The jobs API's answer about a job, as the simulator gives it. */
async function jobsApi(jobId: string): Promise<{ on_chain: Record<string, string | null> }> {
  const answer = await call("GET", `/v1/jobs/${jobId}`, { authorization: `Bearer ${key()}` });
  return JSON.parse(answer.body);
}

/** A double-settled job run straight on the simulator: its lock and both settlements. */
async function doubleSettled() {
  const answer = await call(
    "POST",
    "/v1/chat/completions",
    {
      authorization: `Bearer ${key()}`,
      "content-type": "application/json",
      "x-sim-fault": "double-settle",
    },
    Buffer.from(JSON.stringify({ model: "qwen3-8b", messages: [{ role: "user", content: "hi" }] })),
  );
  const jobId = answer.headers["x-decentral-job-id"] as string;
  const first = answer.headers["x-decentral-settlement-tx"] as string;
  const second = (await jobsApi(jobId)).on_chain.settlement_tx as string;
  expect(second).not.toBe(first);
  return {
    jobId,
    escrow: answer.headers["x-decentral-tx-signature"] as string,
    worker: answer.headers["x-decentral-worker"] as string,
    first,
    second,
    body: answer.body,
  };
}

/**
 * The lying operator in front of the simulator: a job's answer gets `extra(jobId, headers)`
 * added to its headers (a second line of a signature header), and the jobs API names the
 * first settlement only.
 */
async function lyingUpstream(
  extra: (jobId: string, headers: http.IncomingHttpHeaders) => Promise<http.OutgoingHttpHeaders>,
) {
  const firstOf = new Map<string, string>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const path = req.url ?? "/";
      const answer = await call(
        req.method ?? "GET",
        path,
        { ...req.headers, host: new URL(origin()).host },
        Buffer.concat(chunks),
      );
      const headers: http.OutgoingHttpHeaders = { ...answer.headers };
      delete headers["content-length"];
      delete headers["transfer-encoding"];
      let body = answer.body;
      const jobId = answer.headers["x-decentral-job-id"] as string | undefined;
      if (req.method === "POST" && jobId) {
        firstOf.set(jobId, answer.headers["x-decentral-settlement-tx"] as string);
        Object.assign(headers, await extra(jobId, answer.headers));
      }
      const asked = path.match(/\/jobs\/(job_[a-z0-9]+)/)?.[1];
      if (req.method === "GET" && asked && firstOf.has(asked)) {
        const parsed = JSON.parse(body) as { on_chain: Record<string, unknown> };
        parsed.on_chain.settlement_tx = firstOf.get(asked);
        body = JSON.stringify(parsed);
      }
      res.writeHead(answer.status, headers);
      res.end(body);
    });
  });
  const listening = await listen(server);
  cleanups.push(listening.close);
  return listening.url;
}

/** The proxy in front of `upstream`, asking its jobs API, and the SDK pointed at it. */
async function proxyTo(upstream: string) {
  const store = createTestStore();
  const proxy = createRecordingProxy({
    store,
    log,
    upstreamBaseUrl: `${upstream}/v1`,
    jobsApi: createJobsApiClient(`${upstream}/v1`),
  });
  const app = await serveApp({ store, log, proxy });
  cleanups.push(async () => {
    await app.close();
    await proxy.close();
  });
  const client = new OpenAI({ apiKey: key(), baseURL: `${app.url}/v1`, maxRetries: 0 });
  return { store, proxy, client };
}

const jobRow = (store: SqliteStore, jobId: string) =>
  store.db.select().from(jobs).where(eq(jobs.jobId, jobId)).get();

/** Verifies every job of `store` on the local chain; the verdict and the failing checks of `jobId`. */
async function verdictOf(store: SqliteStore, jobId: string) {
  const rpc = createRpcPool({
    endpoints: [{ url: world.rpcUrl, rateLimitPerSec: 200, concurrency: 4, timeoutMs: 2000 }],
    backoffBaseMs: 20,
    backoffMaxMs: 200,
    breakerCooldownMs: 500,
  });
  cleanups.push(() => rpc.close());
  const verifier = createVerifier({
    store,
    rpc,
    profile: { ...localnetProfile, dropAfterSlots: 50 },
    log,
    options: quickVerifierOptions,
  });
  await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
  const failing = store.db
    .select()
    .from(checkResults)
    .where(eq(checkResults.jobId, jobId))
    .all()
    .filter((c) => c.outcome === "fail")
    .map((c) => c.name);
  return { verdict: jobRow(store, jobId)?.verdict, failing };
}

const messages = [{ role: "user" as const, content: "Name three prime numbers." }];

/**
 * A double-settled job through `upstream` by the OpenAI SDK with a recording fetch posting to a
 * real ingest API; the store, the SDK's raw answer and what the wrapper told `onError`.
 */
async function throughWrapper(upstream: string) {
  const store = createTestStore();
  const audit = await serveApp({ store, log });
  cleanups.push(audit.close);
  const errors: string[] = [];
  const recordingFetch = createRecordingFetch({
    ingestUrl: `${audit.url}/jobs`,
    token: await ingestToken(store),
    onError: (error) => errors.push(error.message),
  });
  const client = new OpenAI({
    apiKey: key(),
    baseURL: `${upstream}/v1`,
    fetch: recordingFetch,
    maxRetries: 0,
  });
  const { response } = await client.chat.completions
    .create({ model: "qwen3-8b", messages }, { headers: { "x-sim-fault": "double-settle" } })
    .withResponse();
  await recordingFetch.flush();
  return { store, response, errors };
}

describe("a signature header sent twice with different signatures", () => {
  it("through the proxy: a second settlement on its own header line fails settlement.single", async () => {
    const upstream = await lyingUpstream(async (jobId, headers) => {
      const second = (await jobsApi(jobId)).on_chain.settlement_tx as string;
      return {
        "x-decentral-settlement-tx": [headers["x-decentral-settlement-tx"] as string, second],
      };
    });
    const { store, proxy, client } = await proxyTo(upstream);
    const { response } = await client.chat.completions
      .create({ model: "qwen3-8b", messages }, { headers: { "x-sim-fault": "double-settle" } })
      .withResponse();
    const jobId = response.headers.get("x-decentral-job-id") as string;
    const [first, second] = (response.headers.get("x-decentral-settlement-tx") as string).split(
      ", ",
    );
    expect(second).toBeDefined();
    // Committed with the receipt, before the client got its answer.
    expect(jobRow(store, jobId)).toMatchObject({
      settlementTx: first,
      conflictSignatures: [second],
    });
    await proxy.idle();
    await vi.waitFor(() => expect(jobRow(store, jobId)?.apiSettlementTx).toBe(first));
    const { verdict, failing } = await verdictOf(store, jobId);
    expect(verdict).toBe("discrepancy");
    expect(failing).toContain("settlement.single");
  });

  it("through the proxy: another lock on a second lock header line fails signatures.explained", async () => {
    // A real lock of another job, named beside this job's own.
    const other = await doubleSettled();
    const upstream = await lyingUpstream(async (_jobId, headers) => ({
      "x-decentral-tx-signature": [headers["x-decentral-tx-signature"] as string, other.escrow],
    }));
    const { store, proxy, client } = await proxyTo(upstream);
    const { response } = await client.chat.completions
      .create({ model: "qwen3-8b", messages })
      .withResponse();
    const jobId = response.headers.get("x-decentral-job-id") as string;
    const [lock] = (response.headers.get("x-decentral-tx-signature") as string).split(", ");
    expect(jobRow(store, jobId)).toMatchObject({
      escrowTx: lock,
      conflictSignatures: [other.escrow],
    });
    await proxy.idle();
    await vi.waitFor(() => expect(jobRow(store, jobId)?.apiCheckedAt).not.toBeNull());
    const { verdict, failing } = await verdictOf(store, jobId);
    expect(verdict).toBe("discrepancy");
    expect(failing).toContain("signatures.explained");
  });

  it("through the fetch wrapper: the joined settlement header it posts fails settlement.single", async () => {
    const upstream = await lyingUpstream(async (jobId, headers) => {
      const second = (await jobsApi(jobId)).on_chain.settlement_tx as string;
      return {
        "x-decentral-settlement-tx": [headers["x-decentral-settlement-tx"] as string, second],
      };
    });
    const { store, response } = await throughWrapper(upstream);
    const jobId = response.headers.get("x-decentral-job-id") as string;
    const [first, second] = (response.headers.get("x-decentral-settlement-tx") as string).split(
      ", ",
    );
    expect(jobRow(store, jobId)).toMatchObject({
      settlementTx: first,
      conflictSignatures: [second],
    });
    const { verdict, failing } = await verdictOf(store, jobId);
    expect(verdict).toBe("discrepancy");
    expect(failing).toContain("settlement.single");
  });

  it("through the fetch wrapper: junk beside the signatures costs neither the receipt nor the second settlement", async () => {
    const upstream = await lyingUpstream(async (jobId, headers) => {
      const second = (await jobsApi(jobId)).on_chain.settlement_tx as string;
      return {
        "x-decentral-tx-signature": [headers["x-decentral-tx-signature"] as string, "junk"],
        "x-decentral-settlement-tx": [headers["x-decentral-settlement-tx"] as string, second, ""],
      };
    });
    const { store, response, errors } = await throughWrapper(upstream);
    // The caller's escrow_tx is strict: sent with the junk, the whole receipt was refused.
    expect(errors).toEqual([]);
    const jobId = response.headers.get("x-decentral-job-id") as string;
    const [escrow] = (response.headers.get("x-decentral-tx-signature") as string).split(", ");
    const [first, second] = (response.headers.get("x-decentral-settlement-tx") as string).split(
      ", ",
    );
    expect(jobRow(store, jobId)).toMatchObject({
      escrowTx: escrow,
      settlementTx: first,
      conflictSignatures: [second],
    });
    expect((await verdictOf(store, jobId)).failing).toContain("settlement.single");
  });

  it("through POST /jobs: a settlement_tx of two signatures, with or without a space, fails settlement.single", async () => {
    const store = createTestStore();
    const app = createApp({ store, log, receiptWriter: createReceiptWriter(store, { log }) });
    const token = await ingestToken(store);
    const ids: string[] = [];
    for (const separator of [", ", ","]) {
      const job = await doubleSettled();
      const posted = await app.request("/jobs", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({
          job_id: job.jobId,
          escrow_tx: job.escrow,
          // As a backend copies the header it read: both lines joined.
          settlement_tx: `${job.first}${separator}${job.second}`,
          worker: job.worker,
          model: "qwen3-8b",
          usage: (JSON.parse(job.body) as { usage: unknown }).usage,
          http_status: 200,
        }),
      });
      expect(posted.status).toBe(201);
      // The jobs API names the first settlement only.
      const answer = await jobsApi(job.jobId);
      answer.on_chain.settlement_tx = job.first;
      await recordJobsApiAnswer(store, job.jobId, parseJobsApiAnswer(answer));
      expect(jobRow(store, job.jobId)).toMatchObject({
        settlementTx: job.first,
        conflictSignatures: [job.second],
      });
      ids.push(job.jobId);
    }
    for (const jobId of ids) {
      const { verdict, failing } = await verdictOf(store, jobId);
      expect({ jobId, verdict }).toEqual({ jobId, verdict: "discrepancy" });
      expect(failing).toContain("settlement.single");
    }
  });
});

describe("a JSON answer whose headers name every signature", () => {
  // Nothing in such an answer says a second settlement was made: paid in full (nothing comes
  // back to the credit vault, so the ledger sees nothing) it is named by the jobs API alone.
  // The proxy must still ask about the job, however complete its headers look.
  it("through the proxy: is asked about, so a second settlement only the jobs API names fails", async () => {
    const { store, proxy, client } = await proxyTo(origin());
    const { response } = await client.chat.completions
      .create({ model: "qwen3-8b", messages }, { headers: { "x-sim-fault": "double-settle" } })
      .withResponse();
    const jobId = response.headers.get("x-decentral-job-id") as string;
    const first = response.headers.get("x-decentral-settlement-tx") as string;
    const second = (await jobsApi(jobId)).on_chain.settlement_tx as string;
    expect(second).not.toBe(first);
    expect(jobRow(store, jobId)).toMatchObject({ settlementTx: first, conflictSignatures: null });
    await proxy.idle();
    await vi.waitFor(() => expect(jobRow(store, jobId)?.apiSettlementTx).toBe(second));
    const { verdict, failing } = await verdictOf(store, jobId);
    expect({ verdict, failing: failing.sort() }).toEqual({
      verdict: "discrepancy",
      failing: ["jobs_api.matches_receipt", "settlement.single"],
    });
  });
});
