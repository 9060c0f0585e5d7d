import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import bs58 from "bs58";
import { percentile, round } from "./stats.js";

/** Milliseconds of each run, and their median and spread. */
export interface StartupFigure {
  runs: number[];
  medianMs: number;
  minMs: number;
  maxMs: number;
}

/**
 * Wall-clock time, and the CPU time (user + system, every thread) the process used: on a
 * loaded machine the wall clock mostly measures the others, the CPU time much less so.
 */
export interface StartupTimes {
  wall: StartupFigure;
  cpu: StartupFigure;
}

export interface StartupResult {
  /** The CLI measured (`bin/decentral-audit.js` of this tree unless told otherwise). */
  bin: string;
  /** `node bin/decentral-audit.js --help`, from spawn to exit. */
  help: StartupTimes;
  /**
   * `verify --since 24h` over a database of `pendingJobs` pending jobs, from spawn to the
   * arrival of its first JSON-RPC request at a local HTTP server.
   */
  verifyToFirstRpc: StartupTimes;
  pendingJobs: number;
}

export interface StartupOptions {
  /** Runs of each measurement (default 7); the first of each is a warm-up, not counted. */
  runs?: number;
  /** Pending jobs in the verify run's database (default 5). */
  pendingJobs?: number;
  /** The CLI's entry point; default this tree's bin/decentral-audit.js (it runs dist/). */
  bin?: string;
}

const defaultBin = fileURLToPath(new URL("../bin/decentral-audit.js", import.meta.url));

function figure(runs: number[]): StartupFigure {
  return {
    runs: runs.map((ms) => round(ms, 1)),
    medianMs: round(percentile(runs, 50), 1),
    minMs: round(Math.min(...runs), 1),
    maxMs: round(Math.max(...runs), 1),
  };
}

function times(runs: { wall: number; cpu: number }[]): StartupTimes {
  return { wall: figure(runs.map((r) => r.wall)), cpu: figure(runs.map((r) => r.cpu)) };
}

/** Preloaded into a child: prints the CPU time it used as its last line of stderr. */
const cpuAtExit = `data:text/javascript,process.on("exit",()=>{const u=process.cpuUsage();process.stderr.write("\\ncpu-us "+(u.user+u.system)+"\\n")})`;

/** Runs `node bin args` to its exit: milliseconds from spawn, and CPU milliseconds used. */
function timeToExit(
  bin: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ wall: number; cpu: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, ["--import", cpuAtExit, bin, ...args], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    child.once("error", reject);
    child.once("close", (code) => {
      const wall = performance.now() - started;
      const cpu = /cpu-us (\d+)\s*$/.exec(stderr);
      if (code !== 0 || !cpu) {
        reject(new Error(`${args.join(" ")} exited ${code}: ${stderr.slice(0, 500)}`));
      } else {
        resolve({ wall, cpu: Number(cpu[1]) / 1000 });
      }
    });
  });
}

/** CPU milliseconds (user + system) a live process has used so far, from /proc (Linux). */
function cpuSoFar(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name in parentheses; utime and stime are the 14th and 15th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / clockTicksPerSecond;
}

/** Linux reports CPU time in ticks of 1/100 s (USER_HZ) on every common architecture. */
const clockTicksPerSecond = 100;

/**
 * A JSON-RPC endpoint that only notes when its first request arrives; it answers `getSlot`
 * (the verify command's preflight) and anything else with null.
 */
async function firstRequestServer() {
  let waiting: ((at: number) => void) | null = null;
  const server = createServer((req, res) => {
    const at = performance.now();
    waiting?.(at);
    waiting = null;
    req.resume();
    req.once("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: 1, result: null }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    /** Resolves with the arrival time of the next request. */
    next: () => new Promise<number>((resolve) => (waiting = resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A base58 signature of 64 bytes derived from `seed`. */
const signature = (seed: string) =>
  bs58.encode(
    Buffer.concat([
      createHash("sha256").update(`${seed}:a`).digest(),
      createHash("sha256").update(`${seed}:b`).digest(),
    ]),
  );

/** Writes a database of `count` pending jobs with the CLI's own `import`. */
async function pendingJobsDb(bin: string, dir: string, count: number, env: NodeJS.ProcessEnv) {
  const db = join(dir, "startup.db");
  const receipts = join(dir, "receipts.jsonl");
  const lines = Array.from({ length: count }, (_, i) =>
    JSON.stringify({ job_id: `job_startup${i}`, escrow_tx: signature(`startup-${i}`) }),
  );
  writeFileSync(receipts, `${lines.join("\n")}\n`);
  await timeToExit(bin, ["import", receipts, "--db", db], env);
  return db;
}

/**
 * `verify` from spawn to its first RPC request; the process is then killed. Each run gets its
 * own copy of the database: a killed run leaves the nightly lock held.
 */
async function verifyToFirstRpc(
  bin: string,
  template: string,
  run: number,
  rpc: Awaited<ReturnType<typeof firstRequestServer>>,
  env: NodeJS.ProcessEnv,
): Promise<{ wall: number; cpu: number }> {
  const db = `${template}.run${run}`;
  for (const suffix of ["", "-wal"]) {
    if (existsSync(template + suffix)) copyFileSync(template + suffix, db + suffix);
  }
  const arrived = rpc.next();
  const started = performance.now();
  const child = spawn(process.execPath, [bin, "verify", "--since", "24h", "--db", db], {
    env: { ...env, SOLANA_RPC_URLS: rpc.url },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const first = await Promise.race([
    arrived,
    exited.then((code) => {
      throw new Error(`verify exited ${code} before any RPC request: ${stderr.slice(0, 500)}`);
    }),
  ]);
  const cpu = cpuSoFar(child.pid!);
  child.kill("SIGKILL");
  await exited;
  return { wall: first - started, cpu };
}

/**
 * CLI start-up: `--help`, and `verify` to its first RPC call, each run in a fresh process.
 * Both are dominated by loading modules, so they show what a command imports before it works.
 */
export async function measureStartup(options: StartupOptions = {}): Promise<StartupResult> {
  const bin = options.bin ?? defaultBin;
  const runs = options.runs ?? 7;
  const pendingJobs = options.pendingJobs ?? 5;
  const dir = mkdtempSync(join(tmpdir(), "bench-startup-"));
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "error" };
  delete env.NODE_OPTIONS;
  const rpc = await firstRequestServer();
  try {
    const help: { wall: number; cpu: number }[] = [];
    for (let i = 0; i <= runs; i++) {
      const ms = await timeToExit(bin, ["--help"], env);
      if (i > 0) help.push(ms);
    }
    const db = await pendingJobsDb(bin, dir, pendingJobs, env);
    const verify: { wall: number; cpu: number }[] = [];
    for (let i = 0; i <= runs; i++) {
      const ms = await verifyToFirstRpc(bin, db, i, rpc, env);
      if (i > 0) verify.push(ms);
    }
    return { bin, help: times(help), verifyToFirstRpc: times(verify), pendingJobs };
  } finally {
    await rpc.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
