/**
 * CPU of `serve` with no request at all while `--jobs` proxied jobs wait for finality: their
 * receipts are written to a database before it starts, each naming signatures no RPC has seen
 * (the bench stub's jobs in `npm run bench -- --only proxy`), and the verifier polls them, backs
 * off, and drops them as the slots pass. Prints, for each window after the start, the service's
 * CPU in ms per second (all its processes, as `process.cpuUsage()` reads them) and the JSON-RPC
 * calls the verifier made in it; at the end the jobs by verdict.
 *
 *   npm run build; npx tsx bench/serve-idle-bench.ts [--jobs 5000] [--windows 10,20,...,90]
 *     [--stream] [--put-off] [--against /other/worktree]
 *
 * `--put-off`: the jobs are as a verifier before this one left them (a restart, a leader that
 * died): each already missed by a status poll, its signatures unseen, and put off 60 s; the
 * verifier that starts takes up their watch in its first round. Each window then prints the
 * event-loop delay p99 and max of the serving process too (the loop it proxies on).
 *
 * Runs the build in dist/. `--against DIR` starts DIR's built `serve` beside this one, on a copy
 * of the same database, both measured over the same windows (the RPC counts are then the two
 * together).
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import bs58 from "bs58";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { type Receipt, recordReceiptsInTransaction } from "../src/store/receipts.js";
import { type Child, startChild } from "./children.js";
import type { WorldReady } from "./world-child.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "5000" },
    windows: { type: "string", default: "10,20,30,40,50,60,70,80,90" },
    stream: { type: "boolean", default: false },
    "put-off": { type: "boolean", default: false },
    against: { type: "string" },
  },
});
const jobs = Number(values.jobs);
if (!Number.isInteger(jobs) || jobs < 1)
  throw new Error(`--jobs: a positive integer, not ${values.jobs}`);
const windows = values.windows.split(",").map(Number);
if (windows.some((w, i) => !(w > (windows[i - 1] ?? 0))))
  throw new Error(`--windows: increasing seconds, not ${values.windows}`);
const stream = values.stream;
const putOff = values["put-off"];

const signature = () => bs58.encode(randomBytes(64));

function seed(path: string): void {
  const store = openSqliteStore(path, { create: true });
  migrateStore(store);
  const now = Date.now();
  for (let start = 0; start < jobs; start += 500) {
    const batch: Receipt[] = Array.from({ length: Math.min(500, jobs - start) }, (_, k) => ({
      jobId: `job_idle${(start + k).toString(36).padStart(8, "0")}`,
      escrowTx: signature(),
      settlementTx: stream ? null : signature(),
      worker: bs58.encode(randomBytes(32)),
      creditsRemainingUnits: 1_000_000n,
      model: "phi-4-mini",
      promptTokens: 10,
      completionTokens: 20,
      totalTokens: 30,
      tags: {},
      maxTokens: 64,
      stream,
      httpStatus: 200,
      latencyMs: 100,
      ttfbMs: 10,
      keyFingerprint: "0123456789abcdef",
      responseModel: "phi-4-mini",
      captureState: "complete",
      receiptWriter: null,
      answerBytes: 100,
      answerToolCalls: 0,
    }));
    recordReceiptsInTransaction(store, batch, "proxy", { now, backfillDelayMs: 5000 });
  }
  if (putOff) {
    // Put off together in the rounds' batches of 256, each signature missed 30 s ago.
    store.sqlite
      .prepare(
        `UPDATE jobs SET verdict = 'awaiting_finality', verify_attempts = 3,
           next_verify_at = ? + rowid / 256`,
      )
      .run(now + 60_000);
    store.sqlite
      .prepare(
        `INSERT INTO chain_transactions (signature, state, first_seen_at, not_found_since, not_found_count)
         SELECT sig, 'unknown', ?, ?, 3 FROM (
           SELECT escrow_tx AS sig FROM jobs UNION SELECT settlement_tx FROM jobs
         ) WHERE sig IS NOT NULL`,
      )
      .run(now - 30_000, now - 30_000);
  }
  store.sqlite.pragma("wal_checkpoint(TRUNCATE)");
  store.close();
}

type Service = Child<{ url: string; token: string }>;

async function cpuMs(service: Service): Promise<number> {
  const s = await service.request<{ processes: { cpuMs: number }[]; primaryCpuMs: number }>(
    "stats",
  );
  return s.processes.reduce((sum, p) => sum + p.cpuMs, s.primaryCpuMs);
}

/** The serving process's event-loop delay since the last ask (`WORKERS=1`: the child's own). */
const loopDelay = (service: Service) =>
  service.request<{ p99Ms: number; maxMs: number }>("loopDelay");

const base = join(tmpdir(), `serve-idle-${process.pid}`);
const sides = [{ name: "this tree", tree: resolve(import.meta.dirname, "..") }];
if (values.against) sides.push({ name: values.against, tree: resolve(values.against) });
const files = [`${base}-seed.db`, ...sides.map((_, i) => `${base}-${i}.db`)];
const world = await startChild<WorldReady>("./world-child.ts", {
  BENCH_SLOT_MS: "100",
  BENCH_FINALITY_SLOTS: "32",
});
const stub = await startChild<{ url: string }>("./upstream-stub-child.ts", {});
const services: Service[] = [];
try {
  seed(files[0] as string);
  for (const [i, side] of sides.entries()) {
    const db = `${base}-${i}.db`;
    copyFileSync(files[0] as string, db);
    services.push(
      await startChild(join(side.tree, "bench/service-child.ts"), {
        BENCH_MODE: "service",
        BENCH_SERVICE_BUILT: "1",
        DATABASE_URL: db,
        DECENTRAL_BASE_URL: stub.ready.url,
        SOLANA_RPC_URLS: world.ready.rpcUrl,
        AUDIT_PROFILE: "localnet",
        PORT: "0",
        LOG_LEVEL: "info",
        DECENTRAL_API_KEY: world.ready.apiKeys[0] ?? "",
        WORKERS: "1",
      }),
    );
  }
  const calls = async () =>
    (
      await world.request<{ byMethod: Record<string, number> }>("rpcStats", {
        url: world.ready.rpcUrl,
      })
    ).byMethod;
  const load = loadavg().map((l) => l.toFixed(1));
  console.log(
    `load average ${load.join(" ")}; ${jobs} jobs waiting${stream ? " (streams)" : ""}${putOff ? ", put off by a verifier before" : ""}`,
  );
  const t0 = Date.now();
  let before = await Promise.all(services.map(cpuMs));
  let beforeCalls = await calls();
  let from = Date.now();
  for (const w of windows) {
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + w * 1000 - Date.now())));
    const now = await Promise.all(services.map(cpuMs));
    const at = Date.now();
    const nowCalls = await calls();
    const seconds = (at - from) / 1000;
    const cpu = sides.map((s, i) => `${s.name} ${((now[i]! - before[i]!) / seconds).toFixed(1)}`);
    const rpc = Object.entries(nowCalls)
      .map(([method, n]) => [method, n - (beforeCalls[method] ?? 0)] as const)
      .filter(([, n]) => n > 0)
      .map(([method, n]) => `${method} ${n}`);
    const loops = putOff
      ? `; event-loop delay p99 / max ms ${(await Promise.all(services.map(loopDelay))).map((l, i) => `${sides[i]!.name} ${l.p99Ms.toFixed(1)} / ${l.maxMs.toFixed(1)}`).join(", ")}`
      : "";
    console.log(
      `${Math.round((from - t0) / 1000)}-${Math.round((at - t0) / 1000)} s: CPU ms/s ${cpu.join(", ")}; RPC calls ${rpc.join(", ")}${loops}`,
    );
    [before, beforeCalls, from] = [now, nowCalls, at];
  }
  for (const service of services.splice(0)) await service.stop();
  for (const [i, side] of sides.entries()) {
    const store = openSqliteStore(`${base}-${i}.db`);
    const verdicts = store.sqlite
      .prepare("SELECT verdict, count(*) AS n FROM jobs GROUP BY verdict ORDER BY verdict")
      .all() as { verdict: string; n: number }[];
    console.log(`${side.name}: ${verdicts.map((v) => `${v.verdict} ${v.n}`).join(", ")}`);
    store.close();
  }
} finally {
  for (const service of services) await service.stop();
  await stub.stop();
  await world.stop();
  for (const file of files) for (const s of ["", "-wal", "-shm"]) rmSync(file + s, { force: true });
}
