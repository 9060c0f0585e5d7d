/**
 * CPU of the verifier's rounds over jobs whose signatures no node has seen yet (the static
 * stub's jobs in `npm run bench -- --only proxy`, which wait for finality by the thousand):
 * `--jobs` proxied receipts recorded on a file database, each naming an escrow and a settlement
 * signature that every status poll answers null, polled `--rounds` times (the clock moved past
 * every job's next look between two polls, the finalized slot moving too slowly for a drop).
 * Prints the CPU of this process per job polled (the rounds only: no setup) for the first poll
 * and the later ones, and on PostgreSQL the server's CPU for the same rounds (its backends
 * read from /proc, when the server is on this host). Not part of `npm run bench`.
 *
 *   node --import tsx bench/verify-poll-bench.ts [--jobs 2000] [--rounds 10] [--pairs 3]
 *     [--dialect sqlite,postgres] [--against /other/worktree]
 *
 * `--against DIR` runs the same rounds with the verifier and store of the worktree DIR (its
 * src/), alternating with this tree's, each side on a fresh database: before and after in one
 * run. PostgreSQL is TEST_POSTGRES_URL's server when set, else a throwaway embedded one.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { startEmbeddedPostgres } from "../test/support/postgres-server.js";
import { percentile, round } from "./stats.js";

const { values: flags } = parseArgs({
  options: {
    jobs: { type: "string", default: "2000" },
    rounds: { type: "string", default: "10" },
    pairs: { type: "string", default: "3" },
    dialect: { type: "string", default: "sqlite,postgres" },
    against: { type: "string" },
  },
});
const count = (name: string, value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: a positive integer, not ${value}`);
  return n;
};
const jobCount = count("jobs", flags.jobs);
const rounds = count("rounds", flags.rounds);
const pairs = count("pairs", flags.pairs);
const dialects = flags.dialect.split(",").map((d) => {
  if (d !== "sqlite" && d !== "postgres")
    throw new Error(`--dialect: sqlite or postgres, not ${d}`);
  return d;
});
const here = resolve(import.meta.dirname, "..");
const trees = flags.against ? [here, resolve(flags.against)] : [here];

const T0 = Date.UTC(2026, 10, 1, 12);
/** Between two polls: past the longest look a never-seen signature is given (75 s + a grid). */
const STEP_MS = 80_000;

/** A tree's modules this bench drives (each side imports its own). */
async function modulesOf(tree: string) {
  const load = (path: string) => import(pathToFileURL(join(tree, "src", path)).href);
  return {
    open: (await load("db/open.js")) as typeof import("../src/db/open.js"),
    receipts: (await load("recorder/receipts.js")) as typeof import("../src/recorder/receipts.js"),
    round: (await load("verify/round.js")) as typeof import("../src/verify/round.js"),
    options: (await load(
      "verify/verifier-options.js",
    )) as typeof import("../src/verify/verifier-options.js"),
    profiles: (await load("verify/profiles.js")) as typeof import("../src/verify/profiles.js"),
    queue: (await load("store/job-queue.js")) as typeof import("../src/store/job-queue.js"),
    signatures: (await load("store/signatures.js")) as typeof import("../src/store/signatures.js"),
    verdicts: (await load("store/verdicts.js")) as typeof import("../src/store/verdicts.js"),
    custody: (await load("store/custody.js")) as typeof import("../src/store/custody.js"),
    ledger: (await load("store/ledger.js")) as typeof import("../src/store/ledger.js"),
    log: (await load("log.js")) as typeof import("../src/log.js"),
  };
}

/** 64 base58 characters, unique per `n`: a signature no node has seen. */
const signature = (tag: string, n: number) =>
  `${tag}${n.toString().padStart(10, "1")}`.replace(/0/g, "z").padEnd(88, "A");

interface SideFigures {
  /** CPU µs of this process per job polled: the first poll, then each later one. */
  firstUs: number;
  laterUs: number[];
  /** The database server's CPU µs per job polled (PostgreSQL on this host), later polls. */
  serverLaterUs: number[] | null;
}

/** CPU µs of the PostgreSQL backends of `database` (null when not readable here). */
async function serverCpuUs(admin: pg.Client | null, database: string): Promise<number | null> {
  if (!admin) return null;
  const { rows } = await admin.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = $1",
    [database],
  );
  const tick = 10_000; // µs per clock tick (USER_HZ 100)
  let total = 0;
  for (const { pid } of rows) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += (Number(fields[11]) + Number(fields[12])) * tick;
    } catch {
      return null;
    }
  }
  return total;
}

async function runSide(
  tree: string,
  dialect: "sqlite" | "postgres",
  pgServer: { adminUrl: string } | null,
): Promise<SideFigures> {
  const m = await modulesOf(tree);
  const dir = mkdtempSync(join(tmpdir(), "verify-poll-"));
  const database = `bench_poll_${process.pid}_${Math.floor(Math.random() * 1e9)}`;
  let admin: pg.Client | null = null;
  let url = `file:${join(dir, "audit.db")}`;
  if (dialect === "postgres") {
    admin = new pg.Client({ connectionString: pgServer!.adminUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    const u = new URL(pgServer!.adminUrl);
    u.pathname = `/${database}`;
    url = u.href;
  }
  const store = await m.open.openStore({
    DATABASE_URL: url,
    DATABASE_POOL_SIZE: 4,
    DATABASE_STATEMENT_TIMEOUT_MS: 30_000,
    DATABASE_SSLMODE: undefined,
    DATABASE_SSL_ROOT_CERT: undefined,
  });
  try {
    const receipts = Array.from({ length: jobCount }, (_, i) => ({
      jobId: `job-${i.toString().padStart(6, "0")}`,
      escrowTx: signature("e", i),
      settlementTx: signature("s", i),
      worker: "worker-1",
      creditsRemainingUnits: null,
      model: "qwen3-8b",
      promptTokens: 12,
      completionTokens: 80,
      totalTokens: 92,
      stream: false,
      httpStatus: 200,
      maxTokens: null,
      keyFingerprint: "k".repeat(16),
    }));
    for (let i = 0; i < receipts.length; i += 500) {
      await m.receipts.recordReceipts(store, receipts.slice(i, i + 500), "proxy", { now: T0 });
    }
    let clock = T0;
    const rpc = {
      async getSignatureStatuses(signatures: readonly string[]) {
        return signatures.map(() => null);
      },
      async getTransaction() {
        return null;
      },
      // About a slot every 10 s of the bench's clock: no drop within 300 slots of the first miss.
      async getSlot() {
        return 1000 + Math.floor((clock - T0) / 10_000);
      },
    };
    const options = { ...m.options.defaultVerifierOptions };
    const profile = m.profiles.localnetProfile;
    const custodyConfig = { vaults: [], byKey: {} };
    const now = () => clock;
    const round = m.round.createRound({
      queue: m.queue.createJobQueueStore(store),
      signatures: m.signatures.createSignatureStore(store),
      verdicts: m.verdicts.createVerdictStore(store, profile),
      custody: m.custody.createCustodyStore(store, profile, custodyConfig),
      ledger: m.ledger.createLedgerStore(store),
      configuredVaults: new Set(),
      rpc: rpc as never,
      profile,
      options,
      owner: "bench-verifier",
      now,
      sharedNow: async () => clock,
      log: m.log.createLogger({ level: "silent" }),
    });
    const signal = new AbortController().signal;
    /** One poll of every job: rounds until none is due; CPU µs per job claimed. */
    const pollAll = async () => {
      clock += STEP_MS;
      const server = await serverCpuUs(admin, database);
      const cpu = process.cpuUsage();
      let polled = 0;
      for (;;) {
        const n = await round(null, null, signal);
        if (n === 0) break;
        polled += n;
      }
      const used = process.cpuUsage(cpu);
      const serverAfter = await serverCpuUs(admin, database);
      if (polled !== jobCount) throw new Error(`polled ${polled} jobs of ${jobCount}`);
      return {
        us: (used.user + used.system) / polled,
        serverUs: server === null || serverAfter === null ? null : (serverAfter - server) / polled,
      };
    };
    const first = await pollAll();
    const later: number[] = [];
    const serverLater: number[] = [];
    for (let r = 1; r < rounds; r++) {
      const p = await pollAll();
      later.push(p.us);
      if (p.serverUs !== null) serverLater.push(p.serverUs);
    }
    return {
      firstUs: first.us,
      laterUs: later,
      serverLaterUs: serverLater.length > 0 ? serverLater : null,
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    if (admin) {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    }
  }
}

const median = (xs: readonly number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

const pgServer = dialects.includes("postgres")
  ? process.env.TEST_POSTGRES_URL
    ? { adminUrl: process.env.TEST_POSTGRES_URL, stop: async () => {} }
    : await startEmbeddedPostgres()
  : null;
try {
  const started = new Date().toISOString();
  console.log(
    `${started} load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}; ${jobCount} jobs, ${rounds} polls each, ${pairs} pairs`,
  );
  for (const dialect of dialects) {
    const results = new Map<string, SideFigures[]>(trees.map((t) => [t, []]));
    for (let p = 0; p < pairs; p++) {
      // Alternating which side goes first: a host getting busier favours neither.
      const order = p % 2 === 0 ? trees : [...trees].reverse();
      for (const tree of order) {
        results.get(tree)!.push(await runSide(tree, dialect as "sqlite" | "postgres", pgServer));
      }
    }
    for (const tree of trees) {
      const sides = results.get(tree)!;
      const later = sides.map((s) => median(s.laterUs));
      const server = sides.flatMap((s) => (s.serverLaterUs ? [median(s.serverLaterUs)] : []));
      console.log(
        `${dialect} ${tree === here ? "this tree" : tree}: CPU µs per job polled, first poll ${sides
          .map((s) => round(s.firstUs, 0))
          .join(" / ")}, later polls (median of each run) ${later
          .map((u) => round(u, 0))
          .join(" / ")}${
          server.length > 0
            ? `; PostgreSQL server, later polls ${server.map((u) => round(u, 0)).join(" / ")}`
            : ""
        }`,
      );
    }
  }
  console.log(
    `${new Date().toISOString()} load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
} finally {
  await pgServer?.stop();
}
