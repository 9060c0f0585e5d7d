import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import OpenAI, { APIError } from "openai";
import { afterEach, describe, expect, it, vi } from "vitest";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { jobs } from "../src/db/schema.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { createRecordingFetch } from "../src/recorder/fetch-wrapper.js";
import { createJobsApiClient } from "../src/recorder/jobs-api.js";
import { createRecordingProxy, keyFingerprint } from "../src/recorder/proxy.js";
import { createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import { capturedLogger, ingestToken, listen, serveApp } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  world: LocalWorld;
  store: SqliteStore;
  key: string;
  client: OpenAI;
  proxy: ReturnType<typeof createRecordingProxy>;
  lines: string[];
  row(jobId: string | null): typeof jobs.$inferSelect | undefined;
  truth(jobId: string | null): Promise<Record<string, unknown>>;
}

/** A simulator, a store, the proxy in front of the simulator, and the SDK pointed at the proxy. */
async function setup(
  options: {
    store?: SqliteStore;
    consultJobsApi?: boolean;
    key?: "funded" | "low";
    /** Puts something between the proxy and the simulator; returns the base URL to use. */
    relay?: (decentralBaseUrl: string) => Promise<string>;
  } = {},
): Promise<Setup> {
  const world = await startLocalWorld({ finalitySlots: 2, slotMs: 50 });
  cleanups.push(() => world.close());
  const upstreamBaseUrl = options.relay
    ? await options.relay(world.decentralBaseUrl)
    : world.decentralBaseUrl;
  const store = options.store ?? createTestStore();
  const { log, lines } = capturedLogger();
  const proxy = createRecordingProxy({
    store,
    log,
    upstreamBaseUrl,
    ...(options.consultJobsApi === false
      ? {}
      : { jobsApi: createJobsApiClient(world.decentralBaseUrl) }),
  });
  const app = await serveApp({ store, log, proxy });
  cleanups.push(async () => {
    await app.close();
    await proxy.close();
  });
  const key = options.key === "low" ? world.lowBalanceApiKey : (world.apiKeys[0] as string);
  const client = new OpenAI({ apiKey: key, baseURL: `${app.url}/v1`, maxRetries: 0 });
  return {
    world,
    store,
    key,
    client,
    proxy,
    lines,
    row: (jobId) =>
      store.db
        .select()
        .from(jobs)
        .where(eq(jobs.jobId, jobId ?? ""))
        .get(),
    truth: async (jobId) =>
      (await (await fetch(`${world.simulatorUrl}/sim/jobs/${jobId}`)).json()) as Record<
        string,
        unknown
      >,
  };
}

const messages = [{ role: "user" as const, content: "Name three prime numbers." }];

describe("recording proxy with the openai SDK against the simulator", () => {
  it("records a non-streamed completion with its five headers, usage, tags and the jobs API's view", async () => {
    const { client, proxy, row, truth, key } = await setup();
    const { data, response } = await client.chat.completions
      .create(
        { model: "qwen3-8b", messages, max_tokens: 400 },
        { headers: { "x-audit-tag-team": "search", "x-audit-tag-env": "test" } },
      )
      .withResponse();
    const jobId = response.headers.get("x-decentral-job-id");
    await proxy.idle();
    const recorded = row(jobId);
    const real = await truth(jobId);
    expect(recorded).toMatchObject({
      source: "proxy",
      captureState: "complete",
      escrowTx: response.headers.get("x-decentral-tx-signature"),
      settlementTx: response.headers.get("x-decentral-settlement-tx"),
      worker: response.headers.get("x-decentral-worker"),
      creditsRemainingUnits:
        BigInt(response.headers.get("x-decentral-credits-remaining") as string) * 10_000n,
      model: "qwen3-8b",
      promptTokens: data.usage?.prompt_tokens,
      completionTokens: data.usage?.completion_tokens,
      totalTokens: data.usage?.total_tokens,
      maxTokens: 400,
      stream: false,
      httpStatus: 200,
      tags: { team: "search", env: "test" },
      keyFingerprint: keyFingerprint(`Bearer ${key}`),
      apiStatus: "settled",
      apiCreditsChargedUnits: BigInt(real.chargeUnits as string),
      apiSettlementTx: (real.settlementTxs as string[])[0],
      backfillState: null,
      verdict: "pending",
    });
    expect(recorded?.escrowTx).toBe(real.escrowTx);
    expect(recorded?.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it("records a stream with include_usage, and fills its settlement from the jobs API", async () => {
    const { client, proxy, row, truth } = await setup();
    const { data: stream, response } = await client.chat.completions
      .create({
        model: "qwen3-8b",
        messages,
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    expect(response.headers.get("x-decentral-settlement-tx")).toBeNull();
    let usage: OpenAI.CompletionUsage | null | undefined;
    let text = "";
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text.length).toBeGreaterThan(0);
    const jobId = response.headers.get("x-decentral-job-id");
    await proxy.idle();
    const real = await truth(jobId);
    expect(row(jobId)).toMatchObject({
      captureState: "complete",
      stream: true,
      promptTokens: usage?.prompt_tokens,
      completionTokens: usage?.completion_tokens,
      totalTokens: usage?.total_tokens,
      settlementTx: (real.settlementTxs as string[])[0],
      apiSettlementTx: (real.settlementTxs as string[])[0],
      backfillState: "done",
    });
    expect(row(jobId)?.ttfbMs).toBeLessThanOrEqual(row(jobId)?.latencyMs ?? -1);
  });

  it("records a stream without include_usage with its usage unknown, not zero", async () => {
    const { client, proxy, row } = await setup();
    const { data: stream, response } = await client.chat.completions
      .create({ model: "qwen3-8b", messages, stream: true })
      .withResponse();
    for await (const _ of stream) {
      // consume
    }
    await proxy.idle();
    expect(row(response.headers.get("x-decentral-job-id"))).toMatchObject({
      captureState: "complete",
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
    });
  });

  it("passes a 402 through unchanged", async () => {
    const { client, store } = await setup({ key: "low" });
    const error = await client.chat.completions
      .create({ model: "qwen3-8b", messages })
      .catch((e) => e);
    expect(error).toBeInstanceOf(APIError);
    expect(error.status).toBe(402);
    expect(error.code).toBe("insufficient_credits");
    // A 402 leaves no job behind: there is nothing to record.
    expect(error.headers.get("x-decentral-job-id")).toBeNull();
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("passes a 503 through with its retry_after", async () => {
    const { client, store } = await setup();
    const error = await client.chat.completions
      .create({ model: "qwen3-8b", messages }, { headers: { "x-sim-fault": "busy" } })
      .catch((e) => e);
    expect(error.status).toBe(503);
    expect(error.error.details.retry_after).toBeGreaterThan(0);
    expect(error.headers.get("retry-after")).not.toBeNull();
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("records a 504 with its escrow, and the jobs API's refund", async () => {
    const { client, proxy, row, truth } = await setup();
    const error = await client.chat.completions
      .create({ model: "qwen3-8b", messages }, { headers: { "x-sim-fault": "timeout" } })
      .catch((e) => e);
    expect(error.status).toBe(504);
    const jobId = error.headers.get("x-decentral-job-id");
    expect(jobId).toMatch(/^job_/);
    await proxy.idle();
    const real = await truth(jobId);
    expect(row(jobId)).toMatchObject({
      httpStatus: 504,
      escrowTx: real.escrowTx,
      apiStatus: "refunded",
      apiCreditsChargedUnits: 0n,
      captureState: "complete",
    });
  });

  it("aborts the upstream when the client abandons a stream, and marks the receipt aborted", async () => {
    // A relay that passes the simulator's first chunk and holds the rest, so the client is
    // certainly mid-stream when it leaves; it reports when the proxy drops its request.
    let relayed!: () => void;
    const upstreamAborted = new Promise<void>((resolve) => {
      relayed = resolve;
    });
    const relay = async (target: string) => {
      const server = http.createServer((req, res) => {
        const forward = http.request(`${target}${(req.url ?? "").slice(3)}`, {
          method: req.method,
          headers: { ...req.headers, host: new URL(target).host },
        });
        forward.on("response", (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.once("data", (chunk: Buffer) => {
            res.write(chunk);
            answer.pause();
          });
        });
        res.on("close", () => {
          forward.destroy();
          if (!res.writableFinished) relayed();
        });
        req.pipe(forward);
      });
      const listening = await listen(server);
      cleanups.push(listening.close);
      return `${listening.url}/v1`;
    };
    const { client, row, proxy, truth } = await setup({ relay });
    const controller = new AbortController();
    const { data: stream, response } = await client.chat.completions
      .create({ model: "qwen3-8b", messages, stream: true }, { signal: controller.signal })
      .withResponse();
    const jobId = response.headers.get("x-decentral-job-id");
    await vi.waitFor(() => expect(row(jobId)?.captureState).toBe("open"));
    for await (const _ of stream) controller.abort();
    await upstreamAborted;
    await vi.waitFor(() => expect(row(jobId)?.captureState).toBe("aborted"));
    // The job ran and settled although the client left: the jobs API still completes it.
    await proxy.idle();
    const real = await truth(jobId);
    expect(row(jobId)).toMatchObject({
      captureState: "aborted",
      escrowTx: response.headers.get("x-decentral-tx-signature"),
      totalTokens: null,
      settlementTx: (real.settlementTxs as string[])[0],
    });
  });

  it("backfills a streamed job's settlement with DECENTRAL_API_KEY when the caller's key was not used", async () => {
    const { client, proxy, row, truth, store, key, world } = await setup({ consultJobsApi: false });
    const { data: stream, response } = await client.chat.completions
      .create({ model: "qwen3-8b", messages, stream: true })
      .withResponse();
    for await (const _ of stream) {
      // consume
    }
    await proxy.idle();
    const jobId = response.headers.get("x-decentral-job-id");
    expect(row(jobId)).toMatchObject({ settlementTx: null, backfillState: "pending" });

    const { log } = capturedLogger();
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi: createJobsApiClient(world.decentralBaseUrl),
      apiKey: key,
      // The proxy gives its own consult a head start; the test's clock is past it.
      now: () => Date.now() + 60_000,
    });
    expect(await backfill.runOnce()).toBe(1);
    const real = await truth(jobId);
    expect(row(jobId)).toMatchObject({
      settlementTx: (real.settlementTxs as string[])[0],
      apiStatus: "settled",
      backfillState: "done",
      backfillAttempts: 1,
    });
    expect(await backfill.runOnce()).toBe(0);
  });

  it("never writes the caller's key nor the backfill keys to the database file, its WAL or the logs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recorder-key-"));
    const store = openSqliteStore(join(dir, "audit.db"));
    migrateStore(store);
    const { client, proxy, lines, key, world } = await setup({ store, consultJobsApi: false });
    await client.chat.completions.create({ model: "qwen3-8b", messages });
    const stream = await client.chat.completions.create({
      model: "qwen3-8b",
      messages,
      stream: true,
    });
    for await (const _ of stream) {
      // consume
    }
    await client.chat.completions
      .create({ model: "qwen3-8b", messages }, { headers: { "x-sim-fault": "timeout" } })
      .catch(() => undefined);
    await proxy.idle();
    expect(store.db.select().from(jobs).all()).toHaveLength(3);
    // The backfill asks about the streamed job with its caller's key from DECENTRAL_API_KEYS.
    const backfillLog = capturedLogger();
    const backfill = createSettlementBackfill({
      store,
      log: backfillLog.log,
      jobsApi: createJobsApiClient(world.decentralBaseUrl),
      apiKeys: world.apiKeys,
      apiKey: world.lowBalanceApiKey,
      now: () => Date.now() + 60_000,
    });
    expect(await backfill.runOnce()).toBe(1);
    const streamed = store.db
      .select()
      .from(jobs)
      .all()
      .find((j) => j.stream === true);
    expect(streamed).toMatchObject({ apiStatus: "settled", backfillState: "done" });
    expect(streamed?.settlementTx).toMatch(/^[1-9A-HJ-NP-Za-km-z]{87,88}$/);
    const files = readdirSync(dir);
    expect(files).toContain("audit.db-wal");
    const secrets = [key, ...world.apiKeys, world.lowBalanceApiKey];
    const allLines = [...lines, ...backfillLog.lines].join("\n");
    expect(lines.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      const needle = Buffer.from(secret);
      for (const file of files) {
        expect(readFileSync(join(dir, file)).includes(needle), file).toBe(false);
      }
      expect(allLines).not.toContain(secret);
    }
    store.close();
    for (const secret of secrets) {
      expect(readFileSync(join(dir, "audit.db")).includes(Buffer.from(secret))).toBe(false);
    }
  });
});

describe("fetch wrapper with the openai SDK against the simulator", () => {
  it("delivers the receipt of a direct call to the ingest API", async () => {
    const world = await startLocalWorld({ finalitySlots: 2, slotMs: 50 });
    cleanups.push(() => world.close());
    const store = createTestStore();
    const { log } = capturedLogger();
    const audit = await serveApp({ store, log });
    cleanups.push(audit.close);
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token: await ingestToken(store),
    });
    const client = new OpenAI({
      apiKey: world.apiKeys[0],
      baseURL: world.decentralBaseUrl,
      fetch: recordingFetch,
      maxRetries: 0,
    });
    const { response } = await client.chat.completions
      .create({ model: "qwen3-8b", messages })
      .withResponse();
    const stream = await client.chat.completions.create({
      model: "qwen3-8b",
      messages,
      stream: true,
    });
    for await (const _ of stream) {
      // consume
    }
    await recordingFetch.flush();
    const rows = store.db.select().from(jobs).all();
    expect(rows).toHaveLength(2);
    const plain = rows.find((r) => r.jobId === response.headers.get("x-decentral-job-id"));
    expect(plain).toMatchObject({
      source: "ingest",
      settlementTx: response.headers.get("x-decentral-settlement-tx"),
      model: "qwen3-8b",
    });
    expect(plain?.totalTokens).toBeGreaterThan(0);
    // The streamed job's settlement comes later, from the backfill.
    expect(rows.find((r) => r !== plain)).toMatchObject({
      settlementTx: null,
      backfillState: "pending",
    });
  });
});
