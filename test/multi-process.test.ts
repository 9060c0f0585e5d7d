import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore } from "../src/db/client.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { type CliProcess, startCli, startServe } from "./support/service-process.js";
import { ingestedJob, proxiedJob } from "./support/world-traffic.js";

/**
 * The deployment the README recommends: several `serve` processes on one database file, and
 * the nightly `verify` (and the other commands) run beside them by cron. Real processes, a real
 * file, jobs recorded through both proxies and the ingest API against the local world.
 */

let world: LocalWorld;
let db: string;
let serves: (CliProcess & { url: string })[] = [];
let ingestToken: string;

beforeAll(async () => {
  world = await startLocalWorld({ slotMs: 20, finalitySlots: 3 });
  db = join(mkdtempSync(join(tmpdir(), "multi-")), "audit.db");
  // Default poll interval, lease length and RPC rate, as the README's deployment runs them:
  // with them, verify beside serve used to sleep until serve's leases expired (120 s).
  // With the backfill's keys, as a deployment that proxies streams configures them.
  // The serves read the credit vaults and scan the escrow vault every second, not every 10 s:
  // each verify run's verdicts wait for a serve's ledger and scan to read past its jobs
  // (src/verify/escrow-cover.ts), and at the default each run here took 10-11 s of its 15 s
  // bound, most of it that wait (4-7 s at 1 s; test/pg-multi-serve.test.ts does the same).
  const env = {
    SOLANA_RPC_URLS: world.rpcUrl,
    DECENTRAL_BASE_URL: world.decentralBaseUrl,
    DECENTRAL_API_KEYS: world.apiKeys.join(","),
    LEDGER_POLL_MS: "1000",
  };
  // Both start (and migrate) at the same time on a database that does not exist yet.
  const started = await Promise.allSettled([startServe(db, env), startServe(db, env)]);
  serves = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  // One that failed to start must not leave the other running after the file ends.
  const failed = started.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
  const store = openSqliteStore(db);
  ingestToken = (await createToken(store, { role: "ingest", name: "multi-process" })).token;
  store.close();
});

afterAll(async () => {
  for (const s of serves) s.child.kill("SIGTERM");
  await Promise.all(serves.map((s) => s.exited));
  await world?.close();
});

async function proxied(url: string, i: number, stream = false) {
  await proxiedJob(world, url, i, stream);
}

async function ingested(url: string, i: number) {
  await ingestedJob(world, url, ingestToken, i);
}

async function traffic(n: number) {
  const [a, b] = serves.map((s) => s.url) as [string, string];
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      i % 3 === 0 ? proxied(a, i, i % 2 === 0) : i % 3 === 1 ? proxied(b, i) : ingested(b, i),
    ),
  );
}

/**
 * A command beside the serves. `verify` looks again at jobs a serve holds every 200 ms, not the
 * default 2 s: it ends within a poll of its last job becoming final, and its 15 s bound below
 * still fails by far a run that waits out a serve's lease (120 s).
 */
function cli(args: string[]) {
  return startCli([...args, "--db", db], {
    SOLANA_RPC_URLS: world.rpcUrl,
    AUDIT_PROFILE: "localnet",
    VERIFY_POLL_MS: "200",
    // The local world's RPC, not a public endpoint: the default 8 requests a second paced every
    // run (a few calls a job) more than its work did.
    RPC_RATE_LIMIT: "1000",
  });
}

describe("several processes on one database", () => {
  it("runs `verify` beside two serve processes under traffic: every run exits 0", async () => {
    // MULTI_PROCESS_RUNS=10 for the full drill; the suite runs two (the next case makes a run
    // meet jobs a serve holds, which these meet only by chance).
    const runs = Number(process.env.MULTI_PROCESS_RUNS ?? 2);
    for (let run = 0; run < runs; run++) {
      await traffic(9);
      // More traffic keeps coming while the run works.
      const during = traffic(6);
      const started = performance.now();
      const verify = cli(["verify", "--since", "1h", "--timeout", "15s", "--json"]);
      const code = await verify.exited;
      const ms = performance.now() - started;
      await during;
      if (process.env.MULTI_PROCESS_RUNS)
        console.log(`verify run ${run + 1}: exit ${code} in ${Math.round(ms)} ms`);
      expect(verify.stderr()).not.toMatch(/locked|busy/i);
      expect({ run, code }).toEqual({ run, code: 0 });
      // Finality here takes ~3 slots of 20 ms: the run must not wait out a lease (120 s); it
      // ends within a poll interval or two of its last job becoming final.
      expect(ms).toBeLessThan(15_000);
    }
    for (const s of serves) expect(JSON.stringify(s.logs)).not.toMatch(/database is locked/);
  });

  it("waits for jobs a stopped serve holds, and ends within a poll of its letting them go", async () => {
    // A serve's verifier is frozen (SIGSTOP) while it holds leases on jobs of the window, outside
    // any write transaction; `verify` starts, and the serve resumes `frozenMs` later. The run
    // must meet those jobs (it cannot end before the resume) and end after it within its 15 s
    // timeout: an engine that waited out the leases (120 s) exits 2 there. Whether the other runs of this
    // file meet a held job is chance; this one is made to.
    const frozenMs = 2000;
    const store = openSqliteStore(db);
    const holders = store.sqlite
      .prepare(
        "SELECT DISTINCT lease_owner FROM jobs WHERE lease_owner IS NOT NULL AND lease_until > ?",
      )
      .pluck();
    const heldBy = store.sqlite
      .prepare("SELECT count(*) FROM jobs WHERE lease_owner = ? AND lease_until > ?")
      .pluck();
    const writeFree = store.sqlite.transaction(() => {});
    store.sqlite.pragma("busy_timeout = 0");
    let frozen: { pid: number; owner: string; held: number } | null = null;
    try {
      for (let attempt = 0; attempt < 300 && frozen === null; attempt++) {
        if (attempt % 20 === 0) await traffic(6);
        const owners = holders.all(Date.now()) as string[];
        for (const owner of owners) {
          // `verifier-<id>-pid<pid>.<start>@<host>`: a serve's leader worker runs the verifier.
          const pid = Number(/-pid(\d+)\./.exec(owner)?.[1]);
          if (!Number.isInteger(pid) || pid <= 0) continue;
          process.kill(pid, "SIGSTOP");
          const held = Number(heldBy.get(owner, Date.now()));
          let free = false;
          try {
            writeFree.immediate();
            free = true;
          } catch {}
          if (held > 0 && free) {
            frozen = { pid, owner, held };
            break;
          }
          process.kill(pid, "SIGCONT");
        }
        if (frozen === null) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(frozen).not.toBeNull();
      const started = performance.now();
      const verify = cli(["verify", "--since", "1h", "--timeout", "15s", "--json"]);
      await new Promise((resolve) => setTimeout(resolve, frozenMs));
      process.kill(frozen!.pid, "SIGCONT");
      const code = await verify.exited;
      const ms = performance.now() - started;
      expect(code).toBe(0);
      expect(verify.stderr()).not.toMatch(/locked|busy|error/i);
      // It met the held jobs: it could not be done before the serve let them go. Its end is
      // bounded by --timeout (exit 2 past it), far short of the leases' 120 s.
      expect(ms).toBeGreaterThanOrEqual(frozenMs);
    } finally {
      if (frozen) process.kill(frozen.pid, "SIGCONT");
      store.close();
    }
  });

  it("shares the verification work: each job verified once, by one of the two", async () => {
    await traffic(12);
    const verify = cli(["verify", "--since", "1h", "--timeout", "15s"]);
    expect(await verify.exited).toBe(0);
    const store = openSqliteStore(db);
    const rows = store.sqlite
      .prepare("SELECT verdict, count(*) AS n FROM jobs GROUP BY verdict")
      .all() as { verdict: string; n: number }[];
    expect(rows).toEqual([{ verdict: "verified", n: expect.any(Number) }]);
    // A check row per job and name, never two (the primary key), and verdicts logged once per
    // what the job is: a second final verdict only after the jobs API's answer (the proxy asks
    // it once the response has ended) reopened a job verified before it came.
    const verdictLines = serves.flatMap((s) => s.logs).filter((l) => l.msg === "job verdict") as {
      jobId: string;
      time: number;
    }[];
    const firstVerdict = new Map<string, number>();
    const again = new Set<string>();
    for (const line of verdictLines) {
      if (firstVerdict.has(line.jobId)) again.add(line.jobId);
      firstVerdict.set(line.jobId, Math.min(line.time, firstVerdict.get(line.jobId) ?? line.time));
    }
    expect(firstVerdict.size).toBeGreaterThan(0);
    for (const jobId of again) {
      const { answeredAt } = store.sqlite
        .prepare("SELECT api_checked_at AS answeredAt FROM jobs WHERE job_id = ?")
        .get(jobId) as { answeredAt: number | null };
      expect({
        jobId,
        answeredAfterFirstVerdict: (answeredAt ?? 0) > firstVerdict.get(jobId)!,
      }).toEqual({ jobId, answeredAfterFirstVerdict: true });
    }
    store.close();
  });

  it("runs import, report, tokens and db migrate beside them with zero errors", async () => {
    const dir = mkdtempSync(join(tmpdir(), "multi-import-"));
    const file = join(dir, "receipts.jsonl");
    const { writeFileSync } = await import("node:fs");
    const { wireReceipt } = await import("./support/recorder-fixtures.js");
    writeFileSync(
      file,
      `${Array.from({ length: 200 }, () => JSON.stringify(wireReceipt())).join("\n")}\n`,
    );
    const during = traffic(9);
    const commands = [
      cli(["import", file]),
      cli([
        "report",
        "reconciliation",
        "--from",
        "2020-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "json",
      ]),
      cli(["tokens", "create", "--role", "read", "--name", "beside-serve"]),
      cli(["tokens", "list"]),
      cli(["db", "migrate"]),
    ];
    const codes = await Promise.all(commands.map((c) => c.exited));
    await during;
    expect(codes).toEqual([0, 0, 0, 0, 0]);
    for (const c of commands) expect(c.stderr()).not.toMatch(/locked|busy|error/i);
  });
});
