import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createQuorumRpc } from "../src/chain/quorum.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import type { RpcStats } from "../src/localnet/rpc-server.js";
import { createLogger } from "../src/log.js";
import { creditsToUnits } from "../src/money.js";
import { keyFingerprint } from "../src/recorder/proxy.js";
import { type Receipt, recordReceipts } from "../src/recorder/receipts.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { clientAgent, timedRequest } from "./http-client.js";
import { dropRollupTriggers } from "./rollup-write-bench.js";
import { percentile, round } from "./stats.js";

/** The local world as the verification benchmark needs it (see world-child.ts). */
export interface VerifyWorld {
  decentralBaseUrl: string;
  apiKeys: readonly string[];
  addRpcEndpoint(rateLimitPerSec: number): Promise<string>;
  rpcStats(url: string): Promise<RpcStats>;
  currentSlot(): Promise<number>;
  finalitySlots: number;
  slotMs: number;
}

export interface VerifierFigures {
  jobs: number;
  verified: number;
  seconds: number;
  jobsPerSec: number;
  rpcRequests: number;
  requestsPerJob: number;
  byMethod: Record<string, number>;
  served429: number;
  maxRequestsPerSecond: number;
}

export interface VerifyResult {
  jobs: number;
  signatures: number;
  rateLimitPerSec: number;
  generateSeconds: number;
  /** One getTransaction per distinct signature plus ceil(signatures / 256) status polls. */
  minimumRequests: number;
  minimumPerJob: number;
  ours: VerifierFigures & { ratioToMinimum: number; verdicts: Record<string, number> };
  /** Our verifier again, same jobs, fresh database and endpoint, with no baseline beside it. */
  oursAlone: (VerifierFigures & { ratioToMinimum: number }) | null;
  naive: VerifierFigures & { ratioToMinimum: number };
  /**
   * RPC_QUORUM=2 over three endpoints, alone, same jobs: requests summed over the endpoints.
   * Compare with `oursAlone` (k=1).
   */
  quorum: (VerifierFigures & { k: number; endpoints: number; ratioToMinimum: number }) | null;
  /**
   * What the rollup triggers cost verification: our verifier alone on the same jobs (the first
   * 300), with the schema as migrated and with the rollup triggers dropped, alternating, at the
   * RPC limit and again with no limit (each side a fresh database and endpoint); medians of
   * jobs/s.
   */
  rollupCost: RollupVerifyCost[] | null;
}

export interface RollupVerifyCost {
  /** Requests/s each endpoint allows; `null`: unlimited, so the database is what bounds it. */
  rateLimitPerSec: number | null;
  withRollups: number[];
  withoutRollups: number[];
  /** (without - with) / without of the medians, percent. */
  costPercent: number;
}

const models = ["phi-4-mini", "qwen3-8b", "mistral-small-3.1-24b", "llama-3.3-70b"];

/**
 * Runs `count` non-streamed jobs through the simulator, `concurrency` at a time, and returns
 * their receipts as the proxy would record them (headers and usage).
 */
export async function generateJobs(world: VerifyWorld, count: number, concurrency: number) {
  const agent = clientAgent(concurrency);
  const receipts: Receipt[] = [];
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const model = models[i % models.length]!;
      const apiKey = world.apiKeys[i % world.apiKeys.length]!;
      const t = await timedRequest(agent, `${world.decentralBaseUrl}/chat/completions`, {
        headers: {
          authorization: `Bearer ${apiKey}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ model, messages: [{ role: "user", content: `job ${i}` }] }),
        keep: true,
      });
      if (t.status !== 200) throw new Error(`simulator answered HTTP ${t.status}`);
      const h = (name: string) => {
        const v = t.headers[name];
        return typeof v === "string" && v !== "" ? v : null;
      };
      const body = JSON.parse(Buffer.concat(t.chunks).toString("utf8")) as {
        usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
      };
      const credits = h("x-decentral-credits-remaining");
      receipts.push({
        jobId: h("x-decentral-job-id") ?? "",
        escrowTx: h("x-decentral-tx-signature"),
        settlementTx: h("x-decentral-settlement-tx"),
        worker: h("x-decentral-worker"),
        creditsRemainingUnits: credits === null ? null : creditsToUnits(credits),
        model,
        promptTokens: body.usage.prompt_tokens,
        completionTokens: body.usage.completion_tokens,
        totalTokens: body.usage.total_tokens,
        stream: false,
        httpStatus: 200,
        maxTokens: null,
        // As the proxy records it: it ties each lock to the key's vault, without which a job
        // can at best be partially verified.
        keyFingerprint: keyFingerprint(apiKey),
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return receipts;
}

function figures(
  jobs: number,
  verified: number,
  seconds: number,
  stats: RpcStats,
): VerifierFigures {
  return {
    jobs,
    verified,
    seconds: round(seconds, 2),
    jobsPerSec: round(verified / seconds, 1),
    rpcRequests: stats.requests,
    requestsPerJob: round(stats.requests / jobs, 4),
    byMethod: stats.byMethod,
    served429: stats.served429,
    maxRequestsPerSecond: stats.maxRequestsPerSecond,
  };
}

/**
 * The naive verifier the issue compares against: per job, getTransaction at finalized for each
 * signature, retried until it is there. It paces nothing: a 429 or a missing transaction waits
 * the Retry-After (or 500 ms) and tries again. `concurrency` jobs at a time.
 */
async function naiveVerify(rpcUrl: string, receipts: Receipt[], concurrency: number) {
  const agent = clientAgent(concurrency);
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= receipts.length) return;
      const receipt = receipts[i]!;
      for (const signature of [receipt.escrowTx, receipt.settlementTx]) {
        for (let attempt = 0; attempt < 1000; attempt++) {
          const t = await timedRequest(agent, rpcUrl, {
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              jsonrpc: "2.0",
              id: 1,
              method: "getTransaction",
              params: [
                signature,
                { commitment: "finalized", encoding: "json", maxSupportedTransactionVersion: 0 },
              ],
            }),
            keep: true,
          });
          if (t.status === 200) {
            const reply = JSON.parse(Buffer.concat(t.chunks).toString("utf8")) as {
              result?: unknown;
            };
            if (reply.result) break;
          }
          const retryAfter = Number(t.headers["retry-after"]);
          await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 500);
        }
      }
      done++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return { seconds: (performance.now() - started) / 1000, verified: done };
}

/** Records the receipts in a fresh database and verifies them all through the RPC pool. */
async function runOurs(
  url: string | string[],
  receipts: Receipt[],
  rateLimitPerSec: number,
  name: string,
  quorum = 1,
  withRollups = true,
) {
  const dbPath = join(tmpdir(), `bench-verify-${name}-${process.pid}.db`);
  const store: SqliteStore = openSqliteStore(dbPath);
  migrateStore(store);
  if (!withRollups) dropRollupTriggers(store);
  recordReceipts(store, receipts, "proxy");
  const pool = (u: string) =>
    createRpcPool({
      endpoints: [{ url: u, rateLimitPerSec, concurrency: 8, timeoutMs: 15_000 }],
      statusBatchSize: 256,
    });
  const urls = typeof url === "string" ? [url] : url;
  const rpc: RpcPool =
    quorum > 1
      ? createQuorumRpc({ members: urls.map((u) => ({ name: u, rpc: pool(u) })), quorum })
      : pool(urls[0]!);
  const verifier = createVerifier({
    store,
    rpc,
    profile: localnetProfile,
    log: createLogger({ level: "silent" }),
    options: { pollIntervalMs: 500, fetchConcurrency: 8 },
  });
  try {
    const started = performance.now();
    const summary = await verifier.runUntilSettled(
      { from: 0, to: Date.now() + 3_600_000 },
      { timeoutMs: 10 * 60_000 },
    );
    return { summary, seconds: (performance.now() - started) / 1000 };
  } finally {
    await verifier.stop();
    await rpc.close();
    store.close();
    for (const path of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) rmSync(path, { force: true });
  }
}

/**
 * Generates `count` jobs on the local chain, records their receipts directly in a fresh
 * database, waits until every transaction is finalized, then runs side by side, on two RPC
 * endpoints of the same chain with the same requests/s limit: our verifier (`runUntilSettled`
 * through the RPC pool configured at that limit) and the naive baseline. Then ours once more
 * alone (fresh database, fresh endpoint). Requests and 429s are counted by the endpoints.
 */
export async function measureVerification(
  world: VerifyWorld,
  count: number,
  rateLimitPerSec: number,
  options: { naive?: boolean; alone?: boolean; quorum?: boolean; rollupCost?: boolean } = {},
): Promise<VerifyResult> {
  const genStarted = performance.now();
  const receipts = await generateJobs(world, count, 16);
  const generateSeconds = (performance.now() - genStarted) / 1000;
  const lastSlot = await world.currentSlot();

  // Every transaction landed by `lastSlot`; wait until the chain finalized it, plus a slot.
  while ((await world.currentSlot()) <= lastSlot + world.finalitySlots + 1) {
    await sleep(world.slotMs);
  }

  const oursUrl = await world.addRpcEndpoint(rateLimitPerSec);
  const naiveUrl = await world.addRpcEndpoint(rateLimitPerSec);
  const [ours, naive] = await Promise.all([
    runOurs(oursUrl, receipts, rateLimitPerSec, "side"),
    // Without the baseline (diagnosis), its endpoint simply sees no requests.
    options.naive === false
      ? Promise.resolve({ seconds: Number.NaN, verified: 0 })
      : naiveVerify(naiveUrl, receipts, 8),
  ]);
  // Both endpoints live in one process, so the baseline's bursts delay when that process sees
  // our requests arrive; ours alone shows what our pacing does without them.
  const aloneUrl = await world.addRpcEndpoint(rateLimitPerSec);
  const alone =
    options.alone === false ? null : await runOurs(aloneUrl, receipts, rateLimitPerSec, "alone");

  // RPC_QUORUM=2 over three endpoints, alone: what the quorum costs over k=1 (`alone`).
  const quorumUrls =
    options.quorum === false
      ? []
      : await Promise.all([0, 1, 2].map(() => world.addRpcEndpoint(rateLimitPerSec)));
  const quorum =
    quorumUrls.length === 0
      ? null
      : await runOurs(quorumUrls, receipts, rateLimitPerSec, "quorum", 2);

  const rollupCost: RollupVerifyCost[] | null = [];
  // At most 300 jobs a side: eight runs of all 2,000 would add minutes to the default run.
  const rollupJobs = receipts.slice(0, 300);
  if (options.rollupCost !== false) {
    for (const limit of [rateLimitPerSec, null]) {
      const perSec = { with: [] as number[], without: [] as number[] };
      for (let pair = 0; pair < 2; pair++) {
        // Alternating, the side that goes first swapped: neither always runs on a warmer host.
        const order = pair === 0 ? [true, false] : [false, true];
        for (const withRollups of order) {
          const rate = limit ?? 1_000_000;
          const endpoint = await world.addRpcEndpoint(rate);
          const run = await runOurs(endpoint, rollupJobs, rate, "rollups", 1, withRollups);
          (withRollups ? perSec.with : perSec.without).push(
            round(run.summary.byVerdict.verified / run.seconds, 1),
          );
        }
      }
      const a = percentile(perSec.with, 50);
      const b = percentile(perSec.without, 50);
      rollupCost.push({
        rateLimitPerSec: limit,
        withRollups: perSec.with,
        withoutRollups: perSec.without,
        costPercent: round(((b - a) / b) * 100, 1),
      });
    }
  }

  const signatures = new Set(receipts.flatMap((r) => [r.escrowTx, r.settlementTx])).size;
  const minimumRequests = signatures + Math.ceil(signatures / 256);
  const oursFigures = figures(
    count,
    ours.summary.byVerdict.verified,
    ours.seconds,
    await world.rpcStats(oursUrl),
  );
  const naiveFigures = figures(
    count,
    naive.verified,
    naive.seconds,
    await world.rpcStats(naiveUrl),
  );
  const aloneFigures =
    alone === null
      ? null
      : figures(
          count,
          alone.summary.byVerdict.verified,
          alone.seconds,
          await world.rpcStats(aloneUrl),
        );
  let quorumFigures: VerifyResult["quorum"] = null;
  if (quorum) {
    const perEndpoint = await Promise.all(quorumUrls.map((u) => world.rpcStats(u)));
    const byMethod: Record<string, number> = {};
    for (const st of perEndpoint) {
      for (const [m, n] of Object.entries(st.byMethod)) byMethod[m] = (byMethod[m] ?? 0) + n;
    }
    const summed: RpcStats = {
      ...perEndpoint[0]!,
      requests: perEndpoint.reduce((n, st) => n + st.requests, 0),
      byMethod,
      served429: perEndpoint.reduce((n, st) => n + st.served429, 0),
      maxRequestsPerSecond: Math.max(...perEndpoint.map((st) => st.maxRequestsPerSecond)),
    };
    const f = figures(count, quorum.summary.byVerdict.verified, quorum.seconds, summed);
    quorumFigures = {
      ...f,
      k: 2,
      endpoints: quorumUrls.length,
      ratioToMinimum: round(f.rpcRequests / minimumRequests, 4),
    };
  }
  return {
    rollupCost: options.rollupCost === false ? null : rollupCost,
    quorum: quorumFigures,
    jobs: count,
    signatures,
    rateLimitPerSec,
    generateSeconds: round(generateSeconds, 2),
    minimumRequests,
    minimumPerJob: round(minimumRequests / count, 4),
    ours: {
      ...oursFigures,
      ratioToMinimum: round(oursFigures.rpcRequests / minimumRequests, 4),
      verdicts: Object.fromEntries(Object.entries(ours.summary.byVerdict).filter(([, n]) => n > 0)),
    },
    oursAlone: aloneFigures && {
      ...aloneFigures,
      ratioToMinimum: round(aloneFigures.rpcRequests / minimumRequests, 4),
    },
    naive: {
      ...naiveFigures,
      ratioToMinimum: round(naiveFigures.rpcRequests / minimumRequests, 4),
    },
  };
}
