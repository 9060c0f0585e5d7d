import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { openVerdicts, type Verdict } from "../src/db/schema.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { type CliProcess, startCli, startServe } from "./support/service-process.js";
import { ingestedJob, proxiedJob } from "./support/world-traffic.js";

/**
 * The deployment PostgreSQL is for: several `serve` processes (here three, on one host) on one
 * PostgreSQL database, proxying and ingesting at once, the nightly `verify` beside them, and one
 * of them killed with SIGKILL in the middle of its work. Real processes, a real server.
 */

const database = usePostgresDatabase();
/**
 * How long a clean verdict waits for the jobs API's answer, a twentieth of the default (60 s):
 * the local world answers at once, and `verify` waits as long for a job a serve put off (the
 * killed serve's above all), so the first run's jobs waited out most of its minute.
 */
const JOBS_API_WAIT_MS = "3000";
let world: LocalWorld;
let serves: (CliProcess & { url: string })[] = [];
let ingestToken: string;
let store: PgStore;
/** Job ids a client was answered for (200 from a proxy, 201 from the ingest API). */
const acknowledged = new Set<string>();

beforeAll(async () => {
  world = await startLocalWorld({ slotMs: 20, finalitySlots: 3 });
  // The backfill's keys, as a deployment that proxies streams configures them: a stream whose
  // own jobs-API lookup ran out of retries (a slow, loaded host) is backfilled, not left
  // without its settlement.
  const env = {
    SOLANA_RPC_URLS: world.rpcUrl,
    DECENTRAL_BASE_URL: world.decentralBaseUrl,
    DECENTRAL_API_KEYS: world.apiKeys.join(","),
    JOBS_API_WAIT_MS,
    // The local world's RPC, not a public endpoint: see verifyRun.
    RPC_RATE_LIMIT: "1000",
    // The verify runs beside wait for the serves' escrow scan and ledger to read past each job
    // (src/verify/escrow-cover.ts): at the default 10 s, under a loaded runner, a run's last
    // jobs waited past its 60 s.
    LEDGER_POLL_MS: "1000",
  };
  // All three start, and migrate, at once on an empty database: the migration lock lets one
  // apply the migrations and the others find nothing to do.
  // The third has a slow RPC node (300 ms a call): its rounds hold their leases long enough to
  // be killed in the middle of one.
  const slow = await world.addRpcEndpoint({ latencyMs: 300 });
  // The other two look for work once a minute unless their own receipts wake them.
  const idle = { ...env, VERIFY_POLL_MS: "60000" };
  serves = await Promise.all(
    [idle, idle, { ...env, SOLANA_RPC_URLS: slow }].map((e) => startServe(database.url, e)),
  );
  store = openPostgres(database.url);
  ingestToken = (await createToken(store, { role: "ingest", name: "pg-multi-serve" })).token;
}, 120_000);

afterAll(async () => {
  for (const s of serves) if (s.child.exitCode === null) s.child.kill("SIGTERM");
  await Promise.all(serves.map((s) => s.exited));
  await store?.close();
  await world?.close();
});

async function proxied(url: string, i: number) {
  acknowledged.add(await proxiedJob(world, url, i, i % 2 === 0));
}

async function ingested(url: string, i: number) {
  acknowledged.add(await ingestedJob(world, url, ingestToken, i));
}

/** The serve killed mid-round: requests to it may fail, and are then not acknowledged. */
let victimUrl: string | null = null;

/** `n` jobs spread over the serves, through the proxies and the ingest API. */
async function traffic(n: number, urls: string[]) {
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const url = urls[i % urls.length] as string;
      try {
        await (i % 3 === 2 ? ingested(url, i) : proxied(url, i));
      } catch (error) {
        if (url !== victimUrl) throw error;
      }
    }),
  );
}

/**
 * A run's `--timeout`. Its verdicts wait for the serves' ledger to read each job's credit vault
 * past the response (src/verify/escrow-cover.ts), and each serve reads it in a thread at nice 10
 * (src/background-thread.ts): on CI's 2 cores, four test files at once, a round took 20 to 30 s,
 * and 20 to 26 of a run's ~50 jobs were still waiting at 60 s (their debug lines: "verdict waits
 * for the ledger to read the credit vault past the job's response"). Alone, the run took 4.4 s; beside three busy loops and three long files, 93 s.
 */
const VERIFY_TIMEOUT = "180s";

function verifyRun() {
  // Debug: the run's own "job verdict" lines go to stderr, to be counted with the serves'.
  return startCli(["verify", "--since", "1h", "--timeout", VERIFY_TIMEOUT, "--db", database.url], {
    SOLANA_RPC_URLS: world.rpcUrl,
    AUDIT_PROFILE: "localnet",
    JOBS_API_WAIT_MS,
    LOG_LEVEL: "debug",
    // The local world's RPC, not a public endpoint: at the default 8 requests a second the first
    // run spent ~15 of its ~20 s waiting on its own rate limit (46 jobs, a few calls each).
    RPC_RATE_LIMIT: "1000",
  });
}

/** Every log line `pick` takes, from the serves' logs and the verify runs' stderr. */
function logLines(
  verify: CliProcess[],
  pick: (line: Record<string, unknown>) => boolean,
): Record<string, unknown>[] {
  const fromServes = serves.flatMap((s) => s.logs).filter(pick);
  const fromRuns = verify.flatMap((v) =>
    v
      .stderr()
      .split("\n")
      .flatMap((line) => {
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          return pick(parsed) ? [parsed] : [];
        } catch {
          return [];
        }
      }),
  );
  return [...fromServes, ...fromRuns];
}

/**
 * The jobs judged more than once without a reason: a job verified before the jobs API's answer
 * came (a `verify` run holds no verdict for it; `serve` holds one `JOBS_API_WAIT_MS`, here 3 s)
 * is sent back by the answer's write, which says so, and judged again on it, its line saying
 * `judgedAgain`. Any other second verdict (two claims of one job, a verdict written twice) is
 * listed, with each line's process and time.
 */
function judgedTwiceUnexplained(verify: CliProcess[]) {
  const verdicts = logLines(verify, (l) => l.msg === "job verdict");
  const sentBack = logLines(verify, (l) => String(l.msg).startsWith("job judged again:"));
  const byJob = new Map<string, Record<string, unknown>[]>();
  for (const l of verdicts) byJob.set(String(l.jobId), [...(byJob.get(String(l.jobId)) ?? []), l]);
  return [...byJob.values()].flatMap((lines) => {
    const sorted = lines.sort((a, b) => Number(a.time) - Number(b.time));
    // One line of a write sending the job back for each verdict after the first, each of which
    // says it judged the job again. Not matched by time: under load a process logs its commit
    // late, and another's line for a later commit comes first.
    const sends = sentBack.filter((s) => s.jobId === sorted[0]!.jobId).length;
    const explained =
      sends >= sorted.length - 1 && sorted.slice(1).every((l) => l.judgedAgain !== undefined);
    return sorted.length > 1 && !explained
      ? sorted.map(({ jobId, verdict, pid, time, judgedAgain }) => ({
          jobId,
          verdict,
          pid,
          time,
          judgedAgain,
          sentBack: sentBack
            .filter((s) => s.jobId === jobId)
            .map(({ pid, time }) => ({ pid, time })),
        }))
      : [];
  });
}

/**
 * Every other log line naming one of `jobIds` (its `jobId`, or among its `jobs`), for a failure
 * to say what sent a job back.
 */
function linesNaming(verify: CliProcess[], jobIds: readonly unknown[]) {
  const names = (l: Record<string, unknown>) =>
    jobIds.includes(l.jobId) || (Array.isArray(l.jobs) && l.jobs.some((j) => jobIds.includes(j)));
  return logLines(verify, (l) => l.msg !== "job verdict" && names(l)).map(
    ({ msg, pid, time, jobId, jobs }) => ({ msg, pid, time, jobId, jobs }),
  );
}

/**
 * Once a second while `run` runs: the chain's slot, where the serves' escrow scan and ledger
 * stand, and how many jobs wait. A run that times out says which of them fell behind.
 */
function watch(run: CliProcess): { samples: unknown[] } {
  const samples: unknown[] = [];
  const started = Date.now();
  const timer = setInterval(() => {
    const slot = world.currentSlot();
    void store.pool
      .query(
        `SELECT (SELECT covered_slot FROM escrow_scans LIMIT 1) AS covered,
                (SELECT max(updated_at) FROM escrow_scans) AS scanned_at,
                (SELECT min(updated_at) FROM ledger_cursors) AS ledger_at,
                (SELECT count(*) FROM jobs WHERE verdict = 'awaiting_finality') AS waiting`,
      )
      .then(
        ({ rows: [row] }) => {
          const t = Date.now();
          samples.push({
            s: Math.round((t - started) / 1000),
            slot,
            covered: row?.covered,
            scanAgoMs: t - Number(row?.scanned_at),
            ledgerAgoMs: t - Number(row?.ledger_at),
            waiting: row?.waiting,
          });
        },
        () => {},
      );
  }, 1000);
  void run.exited.finally(() => clearInterval(timer));
  return { samples };
}

/** What a failed verify run saw: the jobs not verified, their failing checks, its last lines. */
async function diagnosis(run: CliProcess, watched?: { samples: unknown[] }): Promise<string> {
  const open = await store.pool.query(
    "SELECT job_id, verdict, capture_state, stream, http_status, source FROM jobs WHERE verdict NOT IN ('verified', 'partially_verified')",
  );
  const failing = await store.pool.query(
    "SELECT job_id, name, reason FROM check_results WHERE outcome = 'fail' LIMIT 20",
  );
  // Where the serves' escrow scan and ledger stand against the chain: the run's verdicts wait
  // for both to read past each job (src/verify/escrow-cover.ts).
  const scans = await store.pool.query(
    "SELECT covered_slot, sync_covered_slot, updated_at FROM escrow_scans",
  );
  const cursors = await store.pool.query(
    "SELECT vault, newest_slot, final_through, updated_at, last_error FROM ledger_cursors",
  );
  const chain = { now: Date.now(), slot: world.currentSlot() };
  const tail = run
    .stderr()
    .split("\n")
    .filter((l) => !l.includes('"level":20'))
    .slice(-20);
  return JSON.stringify(
    {
      open: open.rows,
      failing: failing.rows,
      scans: scans.rows,
      cursors: cursors.rows,
      chain,
      samples: watched?.samples,
      tail,
    },
    null,
    1,
  );
}

describe("three serve processes on one PostgreSQL", () => {
  it.runIf(process.platform === "linux")(
    "runs each serve's background work in a thread below the priority of its requests",
    async () => {
      // The nice value of each thread of each serve (one process each here): the background
      // thread (the verifier's) yields to the main thread, which answers requests at the
      // process's priority.
      const threadsOf = (pid: number) =>
        readdirSync(`/proc/${pid}/task`).map((tid) => {
          const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
          const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
          return { main: Number(tid) === pid, nice: Number(fields[16]) };
        });
      for (const serve of serves) {
        const pid = serve.child.pid!;
        await expect
          .poll(() => threadsOf(pid).filter((t) => t.nice === 10).length, { timeout: 20_000 })
          .toBeGreaterThan(0);
        expect(threadsOf(pid).find((t) => t.main)?.nice).toBe(0);
      }
      // Each serve's readiness says its background work runs, in that thread.
      const auth = {
        authorization: `Bearer ${(await createToken(store, { role: "read", name: "ready" })).token}`,
      };
      for (const serve of serves) {
        await expect
          .poll(
            async () => {
              const body = (await (
                await fetch(`${serve.url}/readyz`, { headers: auth })
              ).json()) as {
                checks: { background?: unknown };
              };
              return body.checks.background;
            },
            { timeout: 20_000 },
          )
          .toEqual({ ok: true, detail: "running in a thread" });
      }
    },
  );

  it("records every acknowledged job once and verifies each exactly once, with verify beside them and one serve killed mid-round", async () => {
    const urls = serves.map((s) => s.url);
    const victim = serves[2]!;
    // Jobs through all three; then more through the serve with the slow RPC node only: its
    // verifier, woken by its own receipts, claims them while the others sleep out their poll
    // interval, and it dies with SIGKILL while it holds their leases (its verifier's owner
    // names its pid): mid-round, with requests in flight.
    await traffic(30, urls);
    const during = traffic(30, [victim.url]);
    await expect
      .poll(
        async () =>
          (
            await store.pool.query<{ n: string }>(
              "SELECT count(*) AS n FROM jobs WHERE (lease_owner LIKE $1 OR lease_owner LIKE $2) AND lease_until > $3",
              // `-pid<pid>.<process start>@<host>` on Linux, `-pid<pid>@<host>` elsewhere.
              [`%-pid${victim.child.pid}.%@%`, `%-pid${victim.child.pid}@%`, Date.now()],
            )
          ).rows[0]?.n,
        { timeout: 60_000, interval: 20 },
      )
      .not.toBe("0");
    victimUrl = victim.url;
    victim.child.kill("SIGKILL");
    await victim.exited;
    await during;
    // The nightly run beside the two left, under more traffic: it takes the dead serve's jobs
    // (known dead: its pid is gone from this host).
    const verify = verifyRun();
    const watched = watch(verify);
    await traffic(15, urls.slice(0, 2));
    // Exit 0 when every job verified, 1 when some did not: a stream the killed serve was still
    // sending when it died has no complete receipt (checked below: only such jobs may fail).
    const code = await verify.exited;
    expect([0, 1], await diagnosis(verify, watched)).toContain(code);
    // A second run picks up whatever arrived after the first had looked.
    const second = verifyRun();
    const watchedSecond = watch(second);
    const secondCode = await second.exited;
    expect([0, 1], await diagnosis(second, watchedSecond)).toContain(secondCode);

    const rows = await store.pool.query<{ job_id: string; verdict: string }>(
      "SELECT job_id, verdict FROM jobs",
    );
    const recorded = new Set(rows.rows.map((r) => r.job_id));
    // Every job a client was answered for is in the store, once (the job id is its key). The
    // killed serve may have recorded jobs whose answer died with it: recorded, not answered.
    expect([...acknowledged].filter((id) => !recorded.has(id))).toEqual([]);
    // The 45 jobs sent to the two that live are always answered; the victim's may not be.
    expect(acknowledged.size).toBeGreaterThanOrEqual(45);
    // Every job reached a final verdict; every job a client was answered for verified (or, a
    // stream without usage, partially verified). Only jobs the killed serve never answered may
    // end otherwise (e.g. `unverifiable`: a stream cut mid-way, its capture left open).
    expect(rows.rows.filter((r) => openVerdicts.includes(r.verdict as Verdict))).toEqual([]);
    expect(
      rows.rows.filter(
        (r) =>
          acknowledged.has(r.job_id) && !["verified", "partially_verified"].includes(r.verdict),
      ),
    ).toEqual([]);
    // Each final verdict was reached by one process, once: a job has a second "job verdict"
    // line (each is logged by the process that wrote it) only when the jobs API's answer came
    // after its first and sent it back, as that write logs. The killed serve's last lines may
    // have died with it, unflushed, so a job may have none.
    const lines = logLines([verify, second], (l) => l.msg === "job verdict");
    const counts = new Map<string, number>();
    for (const { jobId } of lines) counts.set(String(jobId), (counts.get(String(jobId)) ?? 0) + 1);
    const twice = judgedTwiceUnexplained([verify, second]);
    expect(
      twice,
      JSON.stringify(linesNaming([verify, second], [...new Set(twice.map((t) => t.jobId))])),
    ).toEqual([]);
    expect([...counts.keys()].filter((id) => !recorded.has(id))).toEqual([]);
    expect(counts.size).toBeGreaterThan(recorded.size / 2);
    for (const s of serves) expect(JSON.stringify(s.logs)).not.toMatch(/"level":50/);
  }, 480_000);

  it("answers reports and audit lookups from any serve while they write", async () => {
    const [a, b] = serves.map((s) => s.url) as [string, string];
    const any = [...acknowledged][0]!;
    const readToken = (await createToken(store, { role: "read", name: "reader" })).token;
    const auth = { authorization: `Bearer ${readToken}` };
    const answeredBefore = acknowledged.size;
    const [audit, report] = await Promise.all([
      fetch(`${a}/audit/${any}`, { headers: auth }),
      fetch(`${b}/reports/reconciliation?from=2020-01-01&to=2100-01-01&groupBy=model`, {
        headers: auth,
      }),
      traffic(6, [a, b]),
    ]);
    expect(audit.status).toBe(200);
    expect(((await audit.json()) as { jobId: string }).jobId).toBe(any);
    expect(report.status).toBe(200);
    const body = (await report.json()) as { totals: { jobs: number } };
    expect(body.totals.jobs).toBeGreaterThanOrEqual(answeredBefore);
  }, 60_000);
});
