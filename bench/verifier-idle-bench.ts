/**
 * What waiting costs: `--jobs` proxied receipts whose signatures no node has seen yet (the
 * bench stub's jobs, thousands waiting for finality while the proxy serves) recorded on a file
 * database, and `serve`'s verifier loop (as src/background.ts configures it) run over them for
 * `--seconds` in a process of its own, against a JSON-RPC stub that answers `null` for every
 * signature, its finalized slot moving at 400 ms a slot (no drop within 300 slots of a first
 * miss: 120 s). Prints, per 10 s window and over the whole run: the process's CPU in ms per
 * second (`process.cpuUsage`, every thread), the WAL frames the verifier wrote (its connection
 * checkpoints nothing, so the WAL only grows: each frame one page written), the event loop's
 * delay p99 (the loop a single `serve` proxies on), and the stub's calls by method. Not part of
 * `npm run bench`.
 *
 *   node --import tsx bench/verifier-idle-bench.ts [--jobs 5000] [--seconds 60] [--pairs 1]
 *     [--against /other/tree]
 *
 * `--against DIR` runs the same with the verifier and store of the tree DIR (its src/), on a
 * copy of the same database, alternating with this tree's: before and after in one run.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import bs58 from "bs58";

const { values: flags } = parseArgs({
  options: {
    jobs: { type: "string", default: "5000" },
    seconds: { type: "string", default: "60" },
    pairs: { type: "string", default: "1" },
    against: { type: "string" },
    // The child's side: the tree whose verifier runs, the database, the stub's URL.
    child: { type: "string" },
    db: { type: "string" },
    rpc: { type: "string" },
  },
});
const count = (name: string, value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: a positive integer, not ${value}`);
  return n;
};
const seconds = count("seconds", flags.seconds);
const WINDOW_S = 10;

/** One window of a side's run. */
interface Window {
  cpuMsPerS: number;
  walFrames: number;
  loopP99Ms: number;
}
interface SideResult {
  windows: Window[];
  total: Window;
  byVerdict: Record<string, number>;
}

const walFrames = (db: string) => {
  try {
    // A WAL's 32-byte header, then frames of a 24-byte header and a 4096-byte page.
    return Math.max(0, (statSync(`${db}-wal`).size - 32) / (24 + 4096));
  } catch {
    return 0;
  }
};

/** The child: one tree's verifier loop over `--db`, measured. */
async function child(tree: string, db: string, rpcUrl: string): Promise<SideResult> {
  const load = (path: string) => import(pathToFileURL(join(tree, "src", path)).href);
  const { loadConfig } = (await load("config.js")) as typeof import("../src/config.js");
  const { openStore } = (await load("db/open.js")) as typeof import("../src/db/open.js");
  const { rpcFromConfig } = (await load(
    "chain/quorum.js",
  )) as typeof import("../src/chain/quorum.js");
  const { createVerifier } = (await load(
    "verify/engine.js",
  )) as typeof import("../src/verify/engine.js");
  const { loadProfile } = (await load(
    "verify/profiles.js",
  )) as typeof import("../src/verify/profiles.js");
  const { createLogger } = (await load("log.js")) as typeof import("../src/log.js");
  const { createJobQueueStore } = (await load(
    "store/job-queue.js",
  )) as typeof import("../src/store/job-queue.js");
  const config = loadConfig({
    DATABASE_URL: db,
    SOLANA_RPC_URLS: rpcUrl,
    AUDIT_PROFILE: "localnet",
  });
  const store = await openStore(config, { migrate: false });
  if (store.kind !== "sqlite") throw new Error("a SQLite file");
  // Nothing checkpoints: the WAL's growth is the verifier's writes.
  store.sqlite.pragma("wal_autocheckpoint = 0");
  const log = createLogger({ level: "warn" });
  const profile = loadProfile(config.AUDIT_PROFILE);
  const verifier = createVerifier({
    store,
    rpc: rpcFromConfig(config, log),
    profile,
    log,
    // As `serve` configures it (src/background.ts).
    options: {
      pollIntervalMs: config.VERIFY_POLL_MS,
      idleIntervalMs: config.VERIFY_POLL_MS,
      jobsApiWaitMs: config.JOBS_API_WAIT_MS,
      proxyJobsApiWaitMs: Math.min(45_000, config.JOBS_API_WAIT_MS),
    },
  });
  const loop = monitorEventLoopDelay({ resolution: 5 });
  const whole = monitorEventLoopDelay({ resolution: 5 });
  const dbPath = db.replace(/^file:/, "");
  const sample = () => ({ cpu: process.cpuUsage(), wal: walFrames(dbPath), at: performance.now() });
  const first = sample();
  let last = first;
  const windows: Window[] = [];
  const measure = (from: typeof first, to: typeof first, h: typeof loop): Window => ({
    cpuMsPerS: (to.cpu.user + to.cpu.system - from.cpu.user - from.cpu.system) / (to.at - from.at),
    walFrames: to.wal - from.wal,
    loopP99Ms: h.percentile(99) / 1e6,
  });
  loop.enable();
  whole.enable();
  verifier.start();
  for (let s = WINDOW_S; s <= seconds; s += WINDOW_S) {
    await new Promise((r) => setTimeout(r, first.at + s * 1000 - performance.now()));
    const now = sample();
    windows.push(measure(last, now, loop));
    loop.reset();
    last = now;
  }
  const total = measure(first, last, whole);
  await verifier.stop();
  const counts = await createJobQueueStore(store).countVerdicts(null);
  await store.close();
  return { windows, total, byVerdict: counts.byVerdict };
}

if (flags.child) {
  const result = await child(resolve(flags.child), flags.db ?? "", flags.rpc ?? "");
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

const jobs = count("jobs", flags.jobs);
const pairs = count("pairs", flags.pairs);
const here = resolve(import.meta.dirname, "..");
const trees = flags.against ? [here, resolve(flags.against)] : [here];

/** The stub: every signature unseen, the finalized slot moving at 400 ms a slot. */
const calls = new Map<string, number>();
const started = Date.now();
const slot = () => 300_000_000 + Math.floor((Date.now() - started) / 400);
const answer = (method: string, params: unknown[]): unknown => {
  switch (method) {
    case "getSignatureStatuses":
      return { context: { slot: slot() }, value: (params[0] as unknown[]).map(() => null) };
    case "getSlot":
    case "getBlockHeight":
      return slot();
    case "getTransaction":
      return null;
    default:
      throw new Error(method);
  }
};
const stub = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on("data", (c: Buffer) => parts.push(c));
  req.on("end", () => {
    const body = JSON.parse(Buffer.concat(parts).toString("utf8"));
    const one = (r: { id: unknown; method: string; params?: unknown[] }) => {
      calls.set(r.method, (calls.get(r.method) ?? 0) + 1);
      try {
        return { jsonrpc: "2.0", id: r.id, result: answer(r.method, r.params ?? []) };
      } catch {
        return { jsonrpc: "2.0", id: r.id, error: { code: -32601, message: "Method not found" } };
      }
    };
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(Array.isArray(body) ? body.map(one) : one(body)));
  });
});
await new Promise<void>((r) => stub.listen(0, "127.0.0.1", r));
const rpcUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;

const dir = mkdtempSync(join(tmpdir(), "verifier-idle-"));
const seedDb = join(dir, "seed.db");

/** `jobs` proxied receipts, each naming an escrow and a settlement signature nobody has seen. */
async function seed() {
  const { openSqliteStore } = await import("../src/db/client.js");
  const { migrateStore } = await import("../src/db/migrate.js");
  const { recordReceipts } = await import("../src/recorder/receipts.js");
  const store = openSqliteStore(seedDb, { create: true });
  migrateStore(store);
  const signature = () => bs58.encode(randomBytes(64));
  const now = Date.now();
  for (let start = 0; start < jobs; start += 500) {
    const batch = Array.from({ length: Math.min(500, jobs - start) }, (_, k) => ({
      jobId: `job_idle${(start + k).toString(36).padStart(8, "0")}`,
      escrowTx: signature(),
      settlementTx: signature(),
      worker: bs58.encode(randomBytes(32)),
      creditsRemainingUnits: 1_000_000n,
      model: "phi-4-mini",
      promptTokens: 10,
      completionTokens: 20,
      totalTokens: 30,
      stream: false,
      httpStatus: 200,
      maxTokens: 64,
      keyFingerprint: "0123456789abcdef",
    }));
    await recordReceipts(store, batch, "proxy", { now });
  }
  store.sqlite.pragma("wal_checkpoint(TRUNCATE)");
  store.close();
}

function runSide(tree: string, db: string): Promise<SideResult> {
  return new Promise((done, fail) => {
    const p = spawn(
      process.execPath,
      [
        // E.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the verifier's process.
        ...(process.env.BENCH_CHILD_NODE_OPTIONS?.split(" ").filter(Boolean) ?? []),
        "--import",
        "tsx",
        import.meta.filename,
        "--child",
        tree,
        "--db",
        db,
        "--rpc",
        rpcUrl,
        "--seconds",
        String(seconds),
      ],
      { cwd: here, stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    p.stdout.on("data", (c: Buffer) => {
      out += c.toString("utf8");
    });
    p.on("error", fail);
    p.on("exit", (code) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0) return fail(new Error(`${tree}: exit ${code}: ${out}`));
      done(JSON.parse(line) as SideResult);
    });
  });
}

const fmt = (w: Window) =>
  `${w.cpuMsPerS.toFixed(1)} ms/s, ${Math.round(w.walFrames)} WAL frames, loop p99 ${w.loopP99Ms.toFixed(1)} ms`;
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
try {
  await seed();
  console.log(
    `${new Date().toISOString()} load average ${load()}; ${jobs} waiting jobs, ${seconds} s a run, ${pairs} pair(s)`,
  );
  for (let p = 0; p < pairs; p++) {
    const order = p % 2 === 0 ? trees : [...trees].reverse();
    for (const tree of order) {
      const db = join(dir, "run.db");
      rmSync(`${db}-wal`, { force: true });
      rmSync(`${db}-shm`, { force: true });
      copyFileSync(seedDb, db);
      calls.clear();
      const r = await runSide(tree, db);
      console.log(`${tree === here ? "this tree" : tree}: ${fmt(r.total)}`);
      r.windows.forEach((w, i) => {
        console.log(`  ${i * WINDOW_S}-${(i + 1) * WINDOW_S} s: ${fmt(w)}`);
      });
      console.log(
        `  RPC calls ${[...calls].map(([m, n]) => `${m} ${n}`).join(", ")}; verdicts ${Object.entries(
          r.byVerdict,
        )
          .filter(([, n]) => n > 0)
          .map(([v, n]) => `${v} ${n}`)
          .join(", ")}`,
      );
    }
  }
  console.log(`${new Date().toISOString()} load average ${load()}`);
} finally {
  stub.close();
  rmSync(dir, { recursive: true, force: true });
}
