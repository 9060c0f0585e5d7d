import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import { parseArgs } from "node:util";
import type { RpcStats } from "../src/localnet/rpc-server.js";
import type { LoopDelay } from "../src/loop-delay.js";
import { type Child, startChild } from "./children.js";
import { type DashboardPageFigure, measureDashboard } from "./dashboard-bench.js";
import {
  benchReceipts,
  type IngestFigures,
  measureImport,
  measurePostJobs,
} from "./ingest-bench.js";
import { type LedgerResult, measureLedger } from "./ledger-bench.js";
import { peakRssBytes } from "./peak-rss.js";
import { measurePostgres, type PostgresResult } from "./postgres-bench.js";
import {
  type CommitHolds,
  captureStubResponses,
  compareProxy,
  type ProxyRow,
} from "./proxy-bench.js";
import { ensureReportDb } from "./report-db.js";
import { measureReports, type ReportsResult } from "./reports-bench.js";
import {
  type IngestCostResult,
  measureIngestRollupCost,
  measureRollupWriteCost,
  type WriteCostResult,
} from "./rollup-write-bench.js";
import { runSoak, type SoakResult } from "./soak-bench.js";
import { measureStartup, type StartupResult } from "./startup-bench.js";
import { round } from "./stats.js";
import { measureVerification, type VerifyResult } from "./verify-bench.js";
import type { StubResponses, WorldReady } from "./world-child.js";

/**
 * `npm run bench`: measures the targets of the benchmark issue side by side and prints one
 * line per target with PASS or FAIL, then writes every figure to bench/results.json.
 *
 *   npm run bench -- [--only proxy,ingest,verify,reports] [--quick] [--proxy-workers 1,2]
 *     [--proxy-quick] [--proxy-ab /other/worktree] [--proxy-token] [--proxy-built]
 *     [--proxy-ab-built] [--proxy-in-flight 64] [--proxy-floor]
 *     [--report-jobs 1000000[,10000000]] [--verify-jobs 2000] [--rpc-limit 100]
 *   npm run bench -- --only soak [--soak-seconds 300]
 *   npm run bench -- --only startup [--startup-bin /other/tree/bin/decentral-audit.js]
 *   npm run bench -- --only ledger [--ledger-lines 1000000]
 *   npm run bench -- --only postgres [--pg-ingest 60000 (0: verification only)] [--pg-verify-jobs 600]
 *     [--pg-report-jobs 1000000 (0: no reports; --quick: 0)]
 *   npm run bench -- --only rollup-writes [--write-rounds 20] [--quick]
 *
 * `soak` (not part of the default run) drives two serve processes on one database file with
 * proxy, ingest and report traffic for --soak-seconds (default 300), sampling the WAL size,
 * each service's event-loop delay p99 and the proxy latency every 15 s.
 *
 * `--report-jobs 1000000,10000000` measures the reports over both sizes in one run and prints
 * them side by side, each beside the same report aggregated from scratch. Past a million jobs
 * the database is generated with set-based SQL and holds what reconciliation reads only (no
 * evidence rows, the report path's indexes): 10M took 10 min (3.5 min of CPU) on a loaded
 * 2-core host, then cached (6 GB); so it is opt-in, not part of the default run nor of the
 * test suite.
 *
 * `rollup-writes` measures alone what the report rollups cost writers (part of `reports`):
 * receipt and verdict writes on stores side by side, and ingest end to end (POST /jobs).
 *
 * `startup` times the CLI in fresh processes: `--help` to its exit, and `verify` to its first
 * JSON-RPC request (see startup-bench.ts); `--startup-bin` measures another build, e.g. main's.
 *
 * The world (chain, RPC, simulator, stub) and the service each run in a child process; the
 * client runs here.
 */

const defaultSections = [
  "proxy",
  "ingest",
  "verify",
  "reports",
  "ledger",
  "startup",
  "postgres",
] as const;
const sections = [...defaultSections, "soak", "rollup-writes"] as const;
type Section = (typeof sections)[number];

const { values: flags } = parseArgs({
  options: {
    only: { type: "string" },
    quick: { type: "boolean", default: false },
    "report-jobs": { type: "string" },
    "verify-jobs": { type: "string" },
    "rpc-limit": { type: "string" },
    "soak-seconds": { type: "string" },
    "write-rounds": { type: "string" },
    "startup-bin": { type: "string" },
    "ledger-lines": { type: "string" },
    "proxy-workers": { type: "string" },
    "pg-ingest": { type: "string" },
    "pg-verify-jobs": { type: "string" },
    "pg-report-jobs": { type: "string" },
    "proxy-quick": { type: "boolean", default: false },
    "proxy-ab": { type: "string" },
    "proxy-token": { type: "boolean", default: false },
    "proxy-built": { type: "boolean", default: false },
    "proxy-ab-built": { type: "boolean", default: false },
    "proxy-floor": { type: "boolean", default: false },
    "proxy-in-flight": { type: "string" },
  },
});
const only = new Set<Section>(
  flags.only === undefined
    ? defaultSections
    : flags.only.split(",").map((s) => {
        const name = s.trim() as Section;
        if (!sections.includes(name)) {
          throw new Error(`--only: unknown section ${s}; known: ${sections.join(", ")}`);
        }
        return name;
      }),
);
const quick = flags.quick === true;
/** A whole number given to `--name`: anything else stops the run, naming the flag. */
function wholeNumber(name: string, text: string): number {
  if (/^\d+$/.test(text.trim())) return Number(text.trim());
  process.stderr.write(`--${name}: not a whole number: ${text}\n`);
  process.exit(2);
}
/** A whole-number flag, or `fallback` when it is not given. */
function count(name: keyof typeof flags, fallback: number): number {
  const text = flags[name];
  return typeof text === "string" ? wholeNumber(name, text) : fallback;
}
/** Worker counts of `serve` the proxy section measures against the stub (default: 1 and one per core). */
const proxyWorkers = (flags["proxy-workers"] ?? `1,${Math.min(cpus().length, 16)}`)
  .split(",")
  .map((w) => wholeNumber("proxy-workers", w))
  .filter((w, i, all) => w >= 1 && all.indexOf(w) === i);
/**
 * `--proxy-quick`: the proxy section against the stub only, at 1 and 16 in flight, with the
 * quick sizes (about a minute per worker count): to compare two builds, not to report.
 */
const proxyQuick = flags["proxy-quick"] === true;
/**
 * `--proxy-in-flight 64` (or `16,64`): the proxy section measures only these numbers of requests
 * in flight (default 1, 16 and 64; 1 and 16 with --proxy-quick), e.g. to profile or compare the
 * rows where requests queue on the event loop.
 */
const proxyInFlight = (flags["proxy-in-flight"] ?? (proxyQuick ? "1,16" : "1,16,64"))
  .split(",")
  .map((c) => wholeNumber("proxy-in-flight", c))
  .filter((c, i, all) => c >= 1 && all.indexOf(c) === i);
if (proxyInFlight.length === 0) {
  process.stderr.write("--proxy-in-flight: no number of requests in flight of 1 or more\n");
  process.exit(2);
}
/**
 * `--proxy-ab DIR`: the bare proxy's place is taken by `serve` built from the worktree DIR (its
 * own bench/service-child.ts and src), so two builds are measured interleaved, in one run, under
 * the same load: the rows' "bare" figures are then DIR's and the ratios this tree's over DIR's.
 * Both report their CPU the same way (`process.cpuUsage()` of the one process, every thread),
 * and each row's event-loop delay p99 is given for both ("other build").
 * On a shared host a change of a few % shows only here, not between separate runs.
 */
const proxyAbBase = flags["proxy-ab"];
/**
 * `--proxy-token`: `serve` (both builds with --proxy-ab) runs with PROXY_REQUIRE_TOKEN, and each
 * of its requests carries the service's access token in `x-audit-token`.
 */
const proxyToken = flags["proxy-token"] === true;
/**
 * `--proxy-built`: the proxy section runs this tree's `serve` from its build in dist/ (made first
 * with `npm run build`), as `decentral-audit serve` runs, instead of from src/ under tsx, whose
 * compiled code names every function it creates (esbuild's `keepNames`): a CPU cost per request
 * the shipped build does not have. A `--proxy-ab` tree still runs from its src/, so `--proxy-ab
 * . --proxy-built` measures the build against its own source.
 */
const proxyBuilt = flags["proxy-built"] === true;
/**
 * `--proxy-ab-built`: the `--proxy-ab` tree's `serve` runs from its own build in dist/ (made
 * there beforehand), so that two builds are compared as they ship, not a build against source.
 */
const proxyAbBuilt = flags["proxy-ab-built"] === true;
/**
 * `--proxy-floor`: a fourth path in each proxy row, the recording floor
 * (bench/recording-floor-child.ts): the bare proxy plus only what a receipt must cost (the
 * request and answer read for the model and usage, a group commit into an indexed SQLite table
 * before the client's last byte, a stream's open receipt before its first, and one jobs API
 * question a job). Its rows say how far ours is above what recording itself costs, and how far
 * that is above the bare proxy.
 */
const proxyFloor = flags["proxy-floor"] === true;
/** Report database sizes, measured one after the other in this run (`--report-jobs 1000000,10000000`). */
const reportSizes = (flags["report-jobs"] ?? "1000000")
  .split(",")
  .map((n) => wholeNumber("report-jobs", n));
const verifyJobs = count("verify-jobs", quick ? 300 : 2000);
const rpcLimit = count("rpc-limit", 100);
const soakSeconds = count("soak-seconds", 300);
const ledgerLines = count("ledger-lines", 1_000_000);
const pgIngest = count("pg-ingest", quick ? 20_000 : 60_000);
const pgVerifyJobs = count("pg-verify-jobs", quick ? 200 : 600);
const pgReportJobs = count("pg-report-jobs", quick ? 0 : 1_000_000);
const writeRounds = count("write-rounds", quick ? 6 : 20);
const slotMs = 100;
const finalitySlots = 32;

const say = (line: string) => process.stderr.write(`${line}\n`);
const mb = (bytes: number) => round(bytes / 1024 / 1024, 1);

interface TargetLine {
  target: string;
  measured: string;
  pass: boolean | null;
  note?: string;
}

const results: {
  machine: Record<string, unknown>;
  startedAt: string;
  options: Record<string, unknown>;
  proxy?: ProxyRow[];
  ingest?: {
    postJobs: IngestFigures & { runs: number[]; serviceCpuMsPer1000: number };
    import: IngestFigures & { runs: number[] };
  };
  verify?: VerifyResult;
  /** One entry per report database size. */
  reports?: (ReportsResult & {
    dbPath: string;
    /** Seconds this run spent generating the database (0 when it was cached), and its steps. */
    dbGeneratedSeconds: number;
    dbGeneratedCpuSeconds: number;
    dbInsertSeconds: number;
    dbIndexSeconds: number;
    /** Seconds the rollup backfill (what `db migrate` runs) took over the generated jobs. */
    dbBackfillSeconds: number;
  })[];
  rollupWrites?: WriteCostResult;
  rollupIngest?: IngestCostResult;
  soak?: SoakResult;
  ledger?: LedgerResult;
  dashboard?: DashboardPageFigure[];
  startup?: StartupResult;
  postgres?: PostgresResult;
  rss: Record<string, number>;
  /** Peak RSS of the bench process after each section, to tell which one raised it. */
  benchPeakRssAfter: Record<string, number>;
  targets: TargetLine[];
} = {
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memoryMb: mb(totalmem()),
    node: process.version,
    platform: process.platform,
  },
  startedAt: new Date().toISOString(),
  options: {
    sections: [...only],
    quick,
    proxyQuick,
    proxyInFlight,
    proxyBuilt,
    proxyFloor,
    reportSizes,
    verifyJobs,
    rpcLimit,
    slotMs,
    finalitySlots,
    ledgerLines,
  },
  rss: {},
  benchPeakRssAfter: {},
  targets: [],
};

const markRss = (section: string) => {
  results.benchPeakRssAfter[section] = peakRssBytes();
};

type World = Child<WorldReady>;

async function startWorld(): Promise<World> {
  return startChild<WorldReady>("./world-child.ts", {
    BENCH_SLOT_MS: String(slotMs),
    BENCH_FINALITY_SLOTS: String(finalitySlots),
  });
}

type Service = Child<{ url: string; token: string }>;

async function startServiceChild(
  world: World,
  upstream: string,
  name: string,
  env: Record<string, string> = {},
): Promise<Service> {
  const db = join(tmpdir(), `bench-service-${name}-${process.pid}.db`);
  for (const s of ["", "-wal", "-shm"]) rmSync(db + s, { force: true });
  const { BENCH_SERVICE_SCRIPT: script = "./service-child.ts", ...childEnv } = env;
  const service = await startChild<{ url: string; token: string }>(script, {
    BENCH_MODE: "service",
    DATABASE_URL: db,
    DECENTRAL_BASE_URL: upstream,
    SOLANA_RPC_URLS: world.ready.rpcUrl,
    AUDIT_PROFILE: "localnet",
    PORT: "0",
    LOG_LEVEL: "info",
    DECENTRAL_API_KEY: world.ready.apiKeys[0] ?? "",
    // One process unless a section asks for a cluster, so its figures stay comparable.
    WORKERS: "1",
    ...childEnv,
  });
  const stop = service.stop.bind(service);
  service.stop = async () => {
    await stop();
    for (const s of ["", "-wal", "-shm"]) rmSync(db + s, { force: true });
  };
  return service;
}

/** Two serve processes on one database file under continuous load (see soak-bench.ts). */
async function soakSection(world: World): Promise<SoakResult> {
  const db = join(tmpdir(), `bench-soak-${process.pid}.db`);
  for (const s of ["", "-wal", "-shm"]) rmSync(db + s, { force: true });
  const env = {
    BENCH_MODE: "service",
    DATABASE_URL: db,
    DECENTRAL_BASE_URL: world.ready.decentralBaseUrl,
    SOLANA_RPC_URLS: world.ready.rpcUrl,
    AUDIT_PROFILE: "localnet",
    PORT: "0",
    LOG_LEVEL: "info",
    RPC_RATE_LIMIT: String(rpcLimit / 2),
    WORKERS: "1",
  };
  const children = [
    await startChild<{ url: string; token: string }>("./service-child.ts", env),
    await startChild<{ url: string; token: string }>("./service-child.ts", env),
  ];
  say(`soak: ${soakSeconds} s against two serve processes on ${db}`);
  try {
    const result = await runSoak({
      dbPath: db,
      services: children.map((c) => ({
        url: c.ready.url,
        token: c.ready.token,
        loopDelay: () => c.request<{ p99Ms: number; maxMs: number }>("loopDelay"),
      })),
      apiKeys: world.ready.apiKeys,
      seconds: soakSeconds,
      sampleSeconds: 15,
      proxyConcurrency: 4,
      say,
    });
    for (const [i, c] of children.entries())
      results.rss[`service (soak ${i + 1})`] = await c.peakRss();
    return result;
  } finally {
    for (const c of children) await c.stop();
    for (const s of ["", "-wal", "-shm"]) rmSync(db + s, { force: true });
  }
}

/**
 * The event-loop delay p99 of the other paths of a row, beside ours: the bare proxy's and the
 * recording floor's under the same load, or the other build's `serve` (`--proxy-ab`).
 */
function loopBeside(row: ProxyRow): string {
  if (row.otherLoopDelay) return ` (other build ${row.otherLoopDelay.p99Ms} ms)`;
  const others = [
    ...(row.bareLoopDelay ? [`bare ${row.bareLoopDelay.p99Ms} ms`] : []),
    ...(row.floor?.loopDelay ? [`floor ${row.floor.loopDelay.p99Ms} ms`] : []),
  ];
  return others.length > 0 ? ` (${others.join(", ")})` : "";
}

/** The writer thread's commits, beside the loop's holds (which are then none). */
function threadBeside(commits: CommitHolds | null): string {
  if (!commits || commits.count === 0) return "";
  return `; the writer's thread committed ${commits.count} groups (${commits.overOneMs} over 1 ms; p99 ${commits.p99Ms} ms, max ${commits.maxMs} ms), holding no loop that proxies`;
}

function fmtMs(value: number): string {
  return `${value >= 0 ? "+" : ""}${value.toFixed(2)} ms`;
}

/**
 * Proxy rows against one upstream: the direct path, the bare pass-through proxy (the floor)
 * and `serve` with `workers` processes, interleaved, at 1, 16 and 64 in flight, JSON and
 * stream. The verifier works as in production: the stub names signatures no RPC has seen and
 * its jobs API answers, so thousands of jobs wait for finality while the proxy is measured.
 */
/** CPU of a `serve` child (its primary and workers) and the worst event-loop delay among them. */
async function serviceStats(service: Service) {
  const s = await service.request<{
    processes: {
      cpuMs: number;
      loopDelayP99Ms: number;
      loopDelayMaxMs: number;
      commitHold?: CommitHolds;
      threadCommits?: CommitHolds;
    }[];
    primaryCpuMs: number;
  }>("stats");
  const holds = s.processes.flatMap((p) => (p.commitHold ? [p.commitHold] : []));
  const threadCommits = s.processes.flatMap((p) => (p.threadCommits ? [p.threadCommits] : []));
  return {
    cpuMs: s.processes.reduce((sum, p) => sum + p.cpuMs, s.primaryCpuMs),
    loopP99Ms: Math.max(...s.processes.map((p) => p.loopDelayP99Ms)),
    loopMaxMs: Math.max(...s.processes.map((p) => p.loopDelayMaxMs)),
    // An older build (`--proxy-ab`) reports none.
    ...(holds.length > 0 ? { commitHold: sumHolds(holds) } : {}),
    ...(threadCommits.length > 0 ? { threadCommits: sumHolds(threadCommits) } : {}),
  };
}

/** The commits of every process: counted together, the longest p99 and max. */
function sumHolds(holds: readonly CommitHolds[]): CommitHolds {
  return {
    count: holds.reduce((sum, h) => sum + h.count, 0),
    overOneMs: holds.reduce((sum, h) => sum + h.overOneMs, 0),
    p99Ms: Math.max(...holds.map((h) => h.p99Ms)),
    maxMs: Math.max(...holds.map((h) => h.maxMs)),
  };
}

async function proxySection(
  world: World,
  target: "simulator" | "stub",
  baseUrl: string,
  workers: number,
) {
  const upstream = `${target}, ${workers} worker${workers === 1 ? "" : "s"}`;
  const tokenEnv: Record<string, string> = proxyToken ? { PROXY_REQUIRE_TOKEN: "true" } : {};
  const service = await startServiceChild(world, baseUrl, `${target}-${workers}`, {
    WORKERS: String(workers),
    ...(proxyBuilt ? { BENCH_SERVICE_BUILT: "1" } : {}),
    ...tokenEnv,
  });
  const bare = proxyAbBase
    ? await startServiceChild(world, baseUrl, `${target}-${workers}-ab`, {
        WORKERS: String(workers),
        BENCH_SERVICE_SCRIPT: resolvePath(proxyAbBase, "bench/service-child.ts"),
        ...(proxyAbBuilt ? { BENCH_SERVICE_BUILT: "1" } : {}),
        ...tokenEnv,
      })
    : await startChild<{ url: string }>("./bare-proxy-child.ts", { BARE_UPSTREAM: baseUrl });
  const floorDb = join(tmpdir(), `bench-floor-${target}-${workers}-${process.pid}.db`);
  const removeFloorDb = () => {
    for (const s of ["", "-wal", "-shm"]) rmSync(floorDb + s, { force: true });
  };
  removeFloorDb();
  const floor = proxyFloor
    ? await startChild<{ url: string }>("./recording-floor-child.ts", {
        BARE_UPSTREAM: baseUrl,
        FLOOR_DB: floorDb,
      })
    : null;
  const rows: ProxyRow[] = [];
  try {
    // Sized so that `--only proxy` (18 rows) stays near 3 minutes on a loaded 2-core host.
    const sizes: Record<number, number> =
      quick || proxyQuick ? { 1: 60, 16: 150, 64: 300 } : { 1: 150, 16: 400, 64: 800 };
    for (const stream of [false, true]) {
      for (const concurrency of proxyInFlight) {
        const requests = Math.round((sizes[concurrency] ?? 100) / (stream ? 2 : 1));
        say(`proxy: ${upstream}, ${stream ? "stream" : "json"}, c=${concurrency}, ${requests} x 3`);
        const row = await compareProxy(
          {
            directBaseUrl: baseUrl,
            bareUrl: bare.ready.url,
            serviceUrl: service.ready.url,
            apiKeys: world.ready.apiKeys,
            ...(floor ? { floorUrl: floor.ready.url } : {}),
            ...(proxyToken
              ? {
                  serviceToken: service.ready.token,
                  ...(proxyAbBase ? { bareToken: (bare as Service).ready.token } : {}),
                }
              : {}),
          },
          upstream,
          stream,
          concurrency,
          requests,
          {
            bareCpuMs: () => bare.cpuMs(),
            // The other build's `serve` (see --proxy-ab) is measured as this one is.
            ...(proxyAbBase
              ? { otherService: () => serviceStats(bare as Service) }
              : { bareLoopDelay: () => bare.request<LoopDelay>("loopDelay") }),
            ...(floor
              ? {
                  floorCpuMs: () => floor.cpuMs(),
                  floorLoopDelay: () => floor.request<LoopDelay>("loopDelay"),
                }
              : {}),
            service: () => serviceStats(service),
          },
        );
        rows.push(row);
      }
    }
    results.rss[`service (proxy to ${upstream})`] = await service.peakRss();
    if (floor) {
      results.rss[`recording floor (proxy to ${upstream})`] = await floor.peakRss();
      say(
        `recording floor (${upstream}): ${await floor.request<number>("rows")} receipts completed`,
      );
    }
  } finally {
    await bare.stop();
    await floor?.stop();
    removeFloorDb();
    await service.stop();
  }
  return rows;
}

/** Median of repeated measurements, with every figure kept. */
function medianRun(runs: IngestFigures[]): IngestFigures & { runs: number[] } {
  const sorted = [...runs].sort((a, b) => a.receiptsPerSec - b.receiptsPerSec);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return {
    ...median,
    notCreated: runs.reduce((n, r) => n + r.notCreated, 0),
    runs: runs.map((r) => r.receiptsPerSec),
  };
}

const ingestRepetitions = 3;
const ingestCount = quick ? 10_000 : 50_000;

/**
 * `POST /jobs` against the running service (its verifier running too, as in `serve`), three
 * runs of fresh receipts; the median counts. The service's CPU time per 1,000 receipts tells
 * the capacity of its one event loop apart from the machine's other load.
 */
async function postJobsSection(service: Service) {
  const runs: IngestFigures[] = [];
  let cpuMs = 0;
  for (let k = 0; k < ingestRepetitions; k++) {
    say(`ingest: POST /jobs, ${ingestCount} receipts in batches of 1,000 (run ${k + 1})`);
    const receipts = benchReceipts(ingestCount, `p${k}`);
    const before = await service.cpuMs();
    runs.push(await measurePostJobs(service.ready.url, service.ready.token, receipts, 1000, 1));
    cpuMs += (await service.cpuMs()) - before;
  }
  postJobsResult = {
    ...medianRun(runs),
    serviceCpuMsPer1000: round(cpuMs / ((ingestRepetitions * ingestCount) / 1000), 1),
  };
}

/** The import command's work, alone on the machine's cores (it runs as its own command). */
async function importSection() {
  const runs: IngestFigures[] = [];
  for (let k = 0; k < ingestRepetitions; k++) {
    say(`ingest: import of a JSONL file of ${ingestCount} receipts (run ${k + 1})`);
    runs.push(await measureImport(benchReceipts(ingestCount, `i${k}`)));
  }
  return medianRun(runs);
}

let postJobsResult: (IngestFigures & { runs: number[]; serviceCpuMsPer1000: number }) | undefined;

async function main() {
  const started = performance.now();
  let world: World | undefined;
  try {
    if (
      only.has("proxy") ||
      only.has("ingest") ||
      only.has("verify") ||
      only.has("soak") ||
      only.has("postgres")
    ) {
      say("starting the local world");
      world = await startWorld();
    }
    if (world && (only.has("proxy") || only.has("ingest"))) {
      if (only.has("proxy") && proxyBuilt) {
        say("proxy: building dist/ (npm run build) to run serve as it ships");
        execFileSync("npm", ["run", "build"], { stdio: ["ignore", "ignore", "inherit"] });
      }
      const rows: ProxyRow[] = [];
      if (only.has("proxy") && !proxyQuick) {
        rows.push(
          ...(await proxySection(
            world,
            "simulator",
            world.ready.decentralBaseUrl,
            Math.max(...proxyWorkers),
          )),
        );
      }
      if (only.has("proxy")) {
        const captured = await captureStubResponses(
          world.ready.decentralBaseUrl,
          world.ready.apiKeys[0]!,
        );
        const stub = await startChild<{ url: string }>("./upstream-stub-child.ts", {});
        try {
          await stub.request("responses", { responses: captured satisfies StubResponses });
          for (const workers of proxyWorkers) {
            rows.push(...(await proxySection(world, "stub", stub.ready.url, workers)));
          }
        } finally {
          await stub.stop();
        }
        results.proxy = rows;
        markRss("proxy");
      }
      // Ingest against one process (WORKERS=1), with its verifier, as its figures always were.
      if (only.has("ingest")) {
        const service = await startServiceChild(world, world.ready.decentralBaseUrl, "ingest");
        try {
          await postJobsSection(service);
          results.rss["service (ingest)"] = await service.peakRss();
        } finally {
          await service.stop();
        }
      }
    }
    if (only.has("ingest") && postJobsResult) {
      results.ingest = { postJobs: postJobsResult, import: await importSection() };
      markRss("ingest");
    }
    if (world && only.has("verify")) {
      say(`verify: ${verifyJobs} jobs at ${rpcLimit} RPC requests/s, ours and naive side by side`);
      const w = world;
      results.verify = await measureVerification(
        {
          decentralBaseUrl: w.ready.decentralBaseUrl,
          apiKeys: w.ready.apiKeys,
          addRpcEndpoint: (limit) =>
            w.request<string>("addRpcEndpoint", { faults: { rateLimitPerSec: limit } }),
          rpcStats: (url) => w.request<RpcStats>("rpcStats", { url }),
          currentSlot: () => w.request<number>("slot"),
          finalitySlots,
          slotMs,
        },
        verifyJobs,
        rpcLimit,
      );
      markRss("verify");
    }
    if (world && only.has("postgres")) {
      say(
        "postgres: both stores side by side (ingest and audit lookups), verify sharing on PostgreSQL",
      );
      const w = world;
      results.postgres = await measurePostgres(
        {
          rpcUrl: w.ready.rpcUrl,
          decentralBaseUrl: w.ready.decentralBaseUrl,
          apiKeys: w.ready.apiKeys,
          addRpcEndpoint: (limit) =>
            w.request<string>("addRpcEndpoint", { faults: { rateLimitPerSec: limit } }),
          rpcStats: (url) => w.request<RpcStats>("rpcStats", { url }),
          currentSlot: () => w.request<number>("slot"),
          finalitySlots,
          slotMs,
        },
        {
          ingestReceipts: pgIngest,
          lookups: quick ? 1000 : 3000,
          verifyJobs: pgVerifyJobs,
          reportJobs: pgReportJobs,
          rateLimitPerSec: 20,
        },
      );
      markRss("postgres");
    }
    if (world && only.has("soak")) {
      results.soak = await soakSection(world);
      markRss("soak");
    }
    if (world) {
      results.rss["world (chain + simulator)"] = await world.peakRss();
      await world.stop();
      world = undefined;
    }
    if (only.has("ledger")) {
      results.ledger = await measureLedger({ lines: ledgerLines, quick, say });
      markRss("ledger");
    }
    if (only.has("reports")) {
      results.reports = [];
      for (const [i, reportJobs] of reportSizes.entries()) {
        await reportsSection(reportJobs, i === 0);
      }
    }
    if (only.has("reports") || only.has("rollup-writes")) {
      say("reports: what the rollup triggers cost receipt and verdict writes (side by side)");
      results.rollupWrites = measureRollupWriteCost({
        rounds: writeRounds,
      });
      say("reports: what the rollups cost ingest end to end, POST /jobs (side by side)");
      results.rollupIngest = await measureIngestRollupCost({ rounds: quick ? 4 : 8 });
    }
    if (only.has("startup")) {
      say("startup: CLI --help, and verify to its first RPC request, in fresh processes");
      results.startup = await measureStartup({
        runs: quick ? 3 : 7,
        ...(flags["startup-bin"] ? { bin: flags["startup-bin"] } : {}),
      });
    }
  } finally {
    await world?.stop();
  }
  results.rss["bench process (client)"] = peakRssBytes();
  results.targets = targets();
  printSideBySide();
  printTable(results.targets);
  const totalSeconds = round((performance.now() - started) / 1000, 1);
  writeFileSync(
    new URL("./results.json", import.meta.url),
    `${JSON.stringify({ ...results, totalSeconds }, null, 2)}\n`,
  );
  say(`wrote bench/results.json (${totalSeconds} s)`);
}

function targets(): TargetLine[] {
  const lines: TargetLine[] = [];
  for (const side of results.postgres?.sides ?? []) {
    lines.push({
      target: `${side.store}: ingest >= 10,000 receipts/s (POST /jobs, batches of 1,000, two serve processes)`,
      measured: `${side.ingest.receiptsPerSec}/s`,
      pass: side.ingest.receiptsPerSec >= 10_000 && side.ingest.notCreated === 0,
      ...(side.ingest.notCreated > 0 ? { note: `${side.ingest.notCreated} not created` } : {}),
    });
    lines.push({
      target: `${side.store}: GET /audit/:jobId p99 <= 5 ms (beside two serve processes)`,
      measured: `p50 ${side.audit.p50Ms} ms, p99 ${side.audit.p99Ms} ms`,
      pass: side.audit.p99Ms <= 5 && side.audit.notFound === 0,
    });
    lines.push({
      target: `${side.store}: meanwhile, /healthz of that serve p99${side.audit.directP99Ms === null ? "" : "; the same point read sent straight to PostgreSQL p99"}`,
      measured: `${side.audit.healthzP99Ms} ms${side.audit.directP99Ms === null ? "" : `; ${side.audit.directP99Ms} ms`}`,
      pass: null,
    });
  }
  const sharing = results.postgres?.verify;
  if (sharing) {
    lines.push({
      target: "postgres: verify throughput, two processes / one >= 1.8x (own RPC limit each)",
      measured: `${sharing.ratio}x (${sharing.one.jobsPerSec} -> ${sharing.two.jobsPerSec} jobs/s, ${sharing.jobs} jobs at ${sharing.rateLimitPerSec} req/s each)`,
      pass: sharing.ratio >= 1.8 && sharing.two.verified === sharing.jobs,
    });
  }
  const pgReports = results.postgres?.reports;
  if (pgReports) {
    const size = `${pgReports.jobs / 1_000_000}M jobs`;
    for (const c of pgReports.cases) {
      lines.push({
        target: `postgres: reconciliation ${c.name}, ${size}: <= 300 ms (p50 <= 20, p99 <= 50 as on SQLite)`,
        measured: `p50 ${c.p50Ms} / p99 ${c.p99Ms} ms (${c.jobs} jobs)`,
        pass: c.p50Ms <= 20 && c.p99Ms <= 50,
      });
    }
    lines.push({
      target: `postgres: reconciliation month by model from scratch (no rollups), ${size}`,
      measured: `p50 ${pgReports.fromScratch.p50Ms} ms`,
      pass: null,
    });
    lines.push({
      target: `postgres: audit record p99 <= 5 ms (in process, ${size})`,
      measured: `p99 ${pgReports.audit.p99Ms} ms (p50 ${pgReports.audit.p50Ms} ms)`,
      pass: pgReports.audit.p99Ms <= 5 && pgReports.audit.found === pgReports.audit.lookups,
    });
  }
  for (const row of results.proxy ?? []) {
    const label = `${row.upstream}, ${row.stream ? "stream" : "json"}, c=${row.concurrency}`;
    const errors = row.errors.direct + row.errors.bare + row.errors.ours;
    const note =
      errors > 0
        ? `${row.errors.direct} direct / ${row.errors.bare} bare / ${row.errors.ours} ours errors`
        : undefined;
    const { oursAdded: o, bareAdded: b, ratio: r, cpuMsPerRequest: cpu } = row;
    const x = (v: number | null) => (v === null ? "?" : `${v.toFixed(2)}x`);
    lines.push({
      target: `proxy ours/bare <= 1.5x: CPU/req; added p50; added p99 (${label})`,
      measured: `${cpu.ours ?? "?"}/${cpu.bare ?? "?"} ms ${x(r.cpu)} (idle share ${row.background?.msPerRequest ?? "?"}); ${fmtMs(o.p50Ms)}/${fmtMs(b.p50Ms)} ${x(r.p50)}; ${fmtMs(o.p99Ms)}/${fmtMs(b.p99Ms)} ${x(r.p99)}`,
      pass:
        r.cpu !== null && r.p50 !== null && r.p99 !== null
          ? r.cpu <= 1.5 && r.p50 <= 1.5 && r.p99 <= 1.5
          : null,
      ...(note ? { note } : {}),
    });
    lines.push({
      target: `proxy adds <= 1 ms p50, <= 3 ms p99; event-loop delay p99 (${label})`,
      measured: `${fmtMs(o.p50Ms)} / ${fmtMs(o.p99Ms)} (${row.direct.p50Ms.toFixed(2)} -> ${row.ours.p50Ms.toFixed(2)}); loop p99 ${row.loopDelay?.p99Ms ?? "?"} ms${loopBeside(row)}`,
      pass: o.p50Ms <= 1 && o.p99Ms <= 3,
    });
    const hold = row.commitHold;
    if (hold) {
      lines.push({
        target: `proxy: no receipt commit holds the event loop > 1 ms (${label})`,
        measured: `${hold.overOneMs} of ${hold.count} group commits over 1 ms; p99 ${hold.p99Ms} ms, max ${hold.maxMs} ms${threadBeside(row.threadCommits)}`,
        pass: hold.overOneMs === 0,
      });
    }
    if (row.floor) {
      const { floor: f } = row;
      lines.push({
        target: `proxy ours/floor (floor/bare): CPU/req; added p50; added p99 (${label})`,
        measured: `${cpu.ours ?? "?"}/${f.cpuMsPerRequest ?? "?"} ms ${x(f.ratio.cpu)} (${x(f.overBare.cpu)}); ${fmtMs(o.p50Ms)}/${fmtMs(f.added.p50Ms)} ${x(f.ratio.p50)} (${x(f.overBare.p50)}); ${fmtMs(o.p99Ms)}/${fmtMs(f.added.p99Ms)} ${x(f.ratio.p99)} (${x(f.overBare.p99)})`,
        pass: null,
        ...(f.errors > 0 ? { note: `${f.errors} floor errors` } : {}),
      });
    }
    if (row.stream && row.concurrency === 1) {
      lines.push({
        target: `proxy stream TTFB added <= 1 ms p50 (${label})`,
        measured: `${fmtMs(o.ttfbP50Ms)} (bare ${fmtMs(b.ttfbP50Ms)})`,
        pass: o.ttfbP50Ms <= 1,
      });
    }
  }
  if (results.ingest) {
    const { postJobs, import: imported } = results.ingest;
    lines.push({
      target: "ingest >= 10,000 receipts/s (POST /jobs, batches of 1,000)",
      measured: `${postJobs.receiptsPerSec.toLocaleString("en-US")}/s median of ${postJobs.runs.join(", ")}; service CPU ${postJobs.serviceCpuMsPer1000} ms/1,000`,
      pass: postJobs.receiptsPerSec >= 10_000 && postJobs.notCreated === 0,
      ...(postJobs.notCreated ? { note: `${postJobs.notCreated} not created` } : {}),
    });
    lines.push({
      target: "ingest >= 10,000 receipts/s (import, JSONL file)",
      measured: `${imported.receiptsPerSec.toLocaleString("en-US")}/s median of ${imported.runs.join(", ")}`,
      pass: imported.receiptsPerSec >= 10_000 && imported.notCreated === 0,
      ...(imported.notCreated ? { note: `${imported.notCreated} not created` } : {}),
    });
  }
  const v = results.verify;
  if (v) {
    lines.push({
      target: "RPC requests per verified job <= 1.1 x minimum",
      measured: `${v.ours.requestsPerJob} vs min ${v.minimumPerJob} (x${v.ours.ratioToMinimum}); naive ${v.naive.requestsPerJob} (x${v.naive.ratioToMinimum})`,
      pass: v.ours.ratioToMinimum <= 1.1 && v.ours.verified === v.jobs,
      ...(v.ours.verified !== v.jobs ? { note: `only ${v.ours.verified}/${v.jobs} verified` } : {}),
    });
    lines.push({
      target: "zero 429s caused by ourselves",
      measured: `${v.ours.served429} beside naive (naive: ${v.naive.served429}); ${v.oursAlone?.served429 ?? "-"} alone`,
      pass: v.ours.served429 === 0 && (v.oursAlone?.served429 ?? 0) === 0,
    });
    if (v.quorum) {
      lines.push({
        target: `RPC requests per verified job, RPC_QUORUM=1 vs 2 (${v.quorum.endpoints} endpoints)`,
        measured: `${v.oursAlone?.requestsPerJob ?? v.ours.requestsPerJob} vs ${v.quorum.requestsPerJob} (${v.quorum.verified}/${v.quorum.jobs} verified; getTransaction ${v.quorum.byMethod.getTransaction ?? 0}, getSignatureStatuses ${v.quorum.byMethod.getSignatureStatuses ?? 0})`,
        pass: null,
      });
    }
    for (const c of v.rollupCost ?? []) {
      const at = c.rateLimitPerSec === null ? "no RPC limit" : `${c.rateLimitPerSec} RPC req/s`;
      lines.push({
        target: `rollups cost <= 10%: verification jobs/s at ${at} (triggers dropped beside)`,
        measured: `${c.withRollups.join(", ")} with, ${c.withoutRollups.join(", ")} without (${c.costPercent}% of the medians)`,
        // The goal is the throughput a deployment sees, at its RPC limit; unlimited is the bound.
        pass: c.rateLimitPerSec === null ? null : c.costPercent <= 10,
      });
    }
    lines.push({
      target: `verification jobs/s at ${v.rateLimitPerSec} RPC req/s`,
      measured: `${v.ours.jobsPerSec} beside naive, ${v.oursAlone?.jobsPerSec ?? "-"} alone (naive ${v.naive.jobsPerSec})`,
      pass: null,
    });
  }
  for (const r of results.reports ?? []) {
    for (const rec of r.reconciliation) {
      const what =
        rec.groupBy === "worker statement"
          ? "worker statement"
          : `reconciliation groupBy=${rec.groupBy}`;
      lines.push({
        target: `${what}, ${rec.period === "month" ? "a month" : "ragged month"}, ${(r.jobs / 1e6).toString()}M jobs: p50 <= 20 ms, p99 <= 50 ms`,
        measured: `p50 ${rec.httpMedianMs} / p99 ${rec.httpP99Ms} ms HTTP (query ${rec.functionMedianMs} ms; from scratch ${rec.fromScratchMedianMs} ms; first ${rec.firstMs} ms)`,
        pass: rec.httpMedianMs <= 20 && rec.httpP99Ms <= 50,
      });
    }
    lines.push({
      target: `audit lookup p99 <= 5 ms (${(r.jobs / 1e6).toString()}M jobs)`,
      measured: `p99 ${r.audit.p99Ms} ms (p50 ${r.audit.p50Ms} ms)`,
      pass: r.audit.p99Ms <= 5 && r.audit.notFound === 0,
      ...(r.audit.notFound ? { note: `${r.audit.notFound} lookups not 200` } : {}),
    });
  }
  const ledger = results.ledger;
  if (ledger) {
    const r = ledger.rpc;
    const pages = Math.ceil((r.lines + 1) / 1000);
    lines.push({
      target:
        "ledger: <= 1.05 getTransaction per vault transaction the verifier had not fetched, 1 getSignaturesForAddress per 1,000 lines",
      measured: `${r.getTransaction} getTransaction for ${r.notFetchedByVerifier} unfetched of ${r.lines} lines (${r.getTransactionPerUnfetched}); ${r.getSignaturesForAddress} getSignaturesForAddress; alone: ${r.alone.getTransaction} for ${r.alone.lines} lines`,
      pass: r.getTransaction <= 1.05 * r.notFetchedByVerifier && r.getSignaturesForAddress <= pages,
    });
    const e = r.escrowScan;
    lines.push({
      target:
        "escrow scan: no getTransaction for entries every receipt names, 1 getSignaturesForAddress per 1,000 entries",
      measured: `${e.entries} entries: ${e.getTransaction} getTransaction, ${e.getSignaturesForAddress} getSignaturesForAddress, ${e.kept} kept, ${e.ms} ms`,
      pass:
        e.getTransaction === 0 &&
        e.kept === 0 &&
        e.getSignaturesForAddress <= Math.ceil((e.entries + 1) / 1000),
    });
    const st = ledger.statement;
    lines.push({
      target: `ledger: statement over ${(st.lines / 1e6).toString()}M lines <= 500 ms`,
      measured: `28-day period ${st.periodMedianMs} ms median (p95 ${st.periodP95Ms}); whole history ${st.wholeMedianMs} ms; difference ${st.differenceUnits}`,
      pass: st.periodMedianMs <= 500 && st.wholeMedianMs <= 500 && st.differenceUnits === "0",
    });
  }
  const soak = results.soak;
  if (soak) {
    lines.push({
      target: `soak ${soak.seconds} s: WAL stays bounded (<= 128 MB)`,
      measured: `peak ${soak.peakWalMb} MB; last ${soak.samples.at(-1)?.walMb ?? "-"} MB`,
      pass: soak.peakWalMb <= 128,
    });
    lines.push({
      target: "soak: event-loop delay p99, worst 15 s sample of either service",
      measured: `${soak.loopDelayP99MsWorst} ms`,
      pass: null,
    });
    lines.push({
      target: "soak: proxy latency p99 overall / requests / errors",
      measured: `${soak.proxyP99MsOverall} ms / ${soak.proxied} / ${soak.proxyErrors}`,
      pass: soak.proxyErrors === 0,
    });
    lines.push({
      target: "soak: receipts ingested / ingest errors",
      measured: `${soak.ingested} / ${soak.ingestErrors}`,
      pass: soak.ingestErrors === 0,
    });
  }
  for (const page of results.dashboard ?? []) {
    lines.push({
      target: `dashboard page over ${((results.reports?.[0]?.jobs ?? 0) / 1e6).toString()}M jobs <= 150 ms (${page.page})`,
      measured: `${page.medianMs} ms median, max ${page.maxMs} ms, ${Math.round(page.bytes / 1024)} KiB`,
      pass: page.medianMs <= 150,
    });
  }
  const w = results.rollupWrites;
  if (w) {
    const rows = [
      ["receipts (recordReceipts, batches of 1,000)", "receiptsPerSec", "receipts"],
      ["verdict writes, pending -> awaiting_finality", "statusWritesPerSec", "statusWrites"],
      ["final verdict writes (amounts + checks)", "verdictWritesPerSec", "verdictWrites"],
    ] as const;
    const rate = (n: number) => `${n.toLocaleString("en-US")}/s`;
    for (const [label, figure, cost] of rows) {
      // Against the schema before the rollups (report indexes, no triggers): what writers pay.
      lines.push({
        target: `rollups cost <= 10% vs before them: ${label}`,
        measured: `${rate(w.withTriggers[figure])} now, ${rate(w.beforeRollups[figure])} before (${w.costVsBeforePercent[cost]}%)`,
        pass: w.costVsBeforePercent[cost] <= 10,
      });
      lines.push({
        target: `rollup triggers alone: ${label}`,
        measured: `${rate(w.withTriggers[figure])} with, ${rate(w.withoutTriggers[figure])} without (${w.costPercent[cost]}%); fold as an upsert (0009): ${rate(w.upsertFold[figure])} (${w.upsertFoldCostPercent[cost]}%)`,
        pass: null,
      });
    }
  }
  const ingest = results.rollupIngest;
  if (ingest) {
    const { receiptsPerSec: r, cpuMsPer1000: c, costPercent: p } = ingest;
    lines.push({
      target:
        "rollups cost <= 10% vs before them: ingest end to end (POST /jobs, batches of 1,000)",
      measured: `${r.with}/s now, ${r.before}/s before (${p.vsBefore}%); CPU ${c.with} vs ${c.before} ms per 1,000 (${p.cpuVsBefore}%)`,
      pass: p.vsBefore <= 10,
    });
    lines.push({
      target: "rollup triggers alone: ingest end to end (POST /jobs, batches of 1,000)",
      measured: `${r.with}/s with, ${r.without}/s without (${p.vsWithout}%); CPU ${c.with} vs ${c.without} ms per 1,000 (${p.cpuVsWithout}%)`,
      pass: null,
    });
  }
  const startup = results.startup;
  if (startup) {
    const spread = (f: StartupResult["help"]) =>
      `${f.wall.medianMs} ms wall (${f.wall.minMs} to ${f.wall.maxMs}), ${f.cpu.medianMs} ms CPU`;
    lines.push({
      target: "startup: decentral-audit --help, spawn to exit (median)",
      measured: spread(startup.help),
      pass: null,
    });
    lines.push({
      target: `startup: verify to its first RPC request, ${startup.pendingJobs} pending jobs (median)`,
      measured: spread(startup.verifyToFirstRpc),
      pass: null,
    });
  }
  for (const [name, bytes] of Object.entries(results.rss)) {
    const isService = name.startsWith("service");
    lines.push({
      target: isService ? `peak RSS <= 300 MB: ${name}` : `peak RSS: ${name}`,
      measured: `${mb(bytes)} MB`,
      pass: isService ? bytes <= 300 * 1024 * 1024 : null,
    });
  }
  return lines;
}

/**
 * The reports over one generated database: reconciliation, audit lookups and (for the first
 * size) every dashboard page, through the HTTP app in its own process; its peak RSS.
 */
async function reportsSection(reportJobs: number, withDashboard: boolean) {
  const label = `${(reportJobs / 1e6).toString()}M`;
  say(
    `reports: database of ${reportJobs.toLocaleString("en-US")} jobs (cached under bench/.cache)`,
  );
  let lastShown = 0;
  // Past a million jobs, row-by-row generation takes too long: set-based SQL, no evidence.
  const kind = reportJobs > 1_000_000 ? "sql" : "jobs";
  const db = ensureReportDb(
    reportJobs,
    (done) => {
      if (done - lastShown >= 100_000) {
        lastShown = done;
        say(`  generated ${done.toLocaleString("en-US")} jobs`);
      }
    },
    kind,
  );
  if (db.steps) {
    say(
      `  generated in ${db.seconds.toFixed(0)} s, ${db.cpuSeconds.toFixed(0)} s of CPU (jobs ${db.steps.insert.toFixed(1)} s, indexes ${db.steps.indexes.toFixed(1)} s, rollup backfill ${db.steps.backfill.toFixed(1)} s): ${db.path}`,
    );
  }
  const app = await startChild<{ url: string; token: string }>("./service-child.ts", {
    BENCH_MODE: "app",
    DATABASE_URL: db.path,
    LOG_LEVEL: "info",
  });
  try {
    say(`reports (${label}): reconciliation (each groupBy) and audit lookups`);
    const reports = await measureReports(app.ready.url, app.ready.token, db.path, reportJobs, {
      repetitions: quick ? 20 : 100,
      scratchRepetitions: quick ? 1 : 3,
      lookups: quick ? 1000 : 3000,
      jobIdOf:
        kind === "sql"
          ? (i) => `job_s${String(i).padStart(19, "0")}`
          : (i) => `job_${i.toString(36).padStart(20, "0")}`,
    });
    results.reports?.push({
      ...reports,
      dbPath: db.path,
      dbGeneratedSeconds: round(db.seconds, 1),
      dbGeneratedCpuSeconds: round(db.cpuSeconds, 1),
      dbInsertSeconds: round(db.steps?.insert ?? 0, 1),
      dbIndexSeconds: round(db.steps?.indexes ?? 0, 1),
      dbBackfillSeconds: round(db.steps?.backfill ?? 0, 1),
    });
    if (withDashboard) {
      say("reports: every dashboard page, signed in");
      results.dashboard = await measureDashboard(app.ready.url, app.ready.token, {
        repetitions: quick ? 3 : 7,
      });
    }
    results.rss[
      `service (reports app over ${label} jobs${withDashboard ? ", dashboard too" : ""})`
    ] = await app.peakRss();
    markRss(`reports ${label}`);
  } finally {
    await app.stop();
  }
}

/**
 * Every reconciliation case side by side over each database size: the rollup answer (p50 / p99
 * through HTTP) beside the same report aggregated from scratch over the jobs.
 */
function printSideBySide() {
  const sizes = results.reports ?? [];
  if (sizes.length === 0) return;
  const cases = sizes[0]!.reconciliation.map((r) => ({ groupBy: r.groupBy, period: r.period }));
  const head = [
    "report",
    ...sizes.flatMap((s) => [`${s.jobs / 1e6}M rollups p50/p99 ms`, `${s.jobs / 1e6}M scratch ms`]),
  ];
  const rows = cases.map((c) => [
    `${c.groupBy}${c.period === "ragged" ? " (ragged)" : ""}`,
    ...sizes.flatMap((s) => {
      const r = s.reconciliation.find((x) => x.groupBy === c.groupBy && x.period === c.period);
      return r ? [`${r.httpMedianMs} / ${r.httpP99Ms}`, String(r.fromScratchMedianMs)] : ["-", "-"];
    }),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  process.stdout.write(
    `${[line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n")}\n\n`,
  );
}

function printTable(lines: TargetLine[]) {
  const w1 = Math.max(...lines.map((l) => l.target.length), 6);
  const w2 = Math.max(...lines.map((l) => l.measured.length), 8);
  const out = [`${"target".padEnd(w1)}  ${"measured".padEnd(w2)}  result`];
  out.push(`${"-".repeat(w1)}  ${"-".repeat(w2)}  ------`);
  for (const l of lines) {
    const result = l.pass === null ? "info" : l.pass ? "PASS" : "FAIL";
    out.push(
      `${l.target.padEnd(w1)}  ${l.measured.padEnd(w2)}  ${result}${l.note ? `  (${l.note})` : ""}`,
    );
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

await main();
