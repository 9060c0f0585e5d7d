import { eq, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { jobs, nightlyCountedThrough, verificationRuns } from "../db/schema.js";
import { releaseLeasesOf } from "./job-queue.js";
import { pgTwins } from "./pg-twins.js";
import { perConnectionModule } from "./prepared.js";
import { unclaimedOfWindow } from "./queue-rules.js";
import { firstUnjudged, type JudgedWindow } from "./run-rules.js";

/**
 * Verification runs (`verification_runs`) and their owners' heartbeats (`locks` rows named
 * `verifier:<owner>`). A run's owner proves it is alive with a heartbeat renewed while it has a
 * run open. A `running` run whose owner's heartbeat has expired belongs to a process that died
 * (kill -9, power loss): it is closed as `abandoned`. Its jobs need nothing: their leases
 * expire, or are released at once when the owner is known dead.
 */

export type RunStatus = (typeof verificationRuns.$inferSelect)["status"];

export interface RunCloser {
  /** This process's owner id: its own runs are never abandoned. */
  owner: string;
  /** The time written as a run's start or end. */
  t: number;
  /**
   * The time heartbeats are written and judged by (default `t`): on PostgreSQL the server's
   * clock (`LockStore.sharedNow`), as owners on many hosts beat and judge each other's beats.
   * A host whose clock ran ahead of a live owner's by its heartbeat closed that owner's run as
   * abandoned; a nightly's row showed `abandoned` while it ran.
   */
  leaseAt?: number;
  /** Owners known dead now (a process of this host that no longer exists). */
  deadOwners: readonly string[];
  /**
   * Owners known alive now (a process of this host that still runs): their runs stay open and
   * their heartbeats kept whatever the clock says. A host clock stepped forward expires every
   * heartbeat at once; `serve` closed the live nightly's run as abandoned, which the nightly's
   * own end then overwrote.
   */
  liveOwners?: readonly string[];
}

export interface VerificationRunStore {
  /** Owners of `running` runs other than `owner`. */
  runningOwners(owner: string): Promise<string[]>;
  /**
   * Closes runs of dead owners (and releases their leases) and runs whose heartbeat expired,
   * in one transaction; returns how many runs were closed.
   */
  closeAbandoned(closer: RunCloser): Promise<number>;
  /**
   * Opens a run: closes abandoned runs, writes the heartbeat and inserts the run row, in one
   * transaction. Returns the run id and how many abandoned runs were closed.
   */
  open(
    run: {
      trigger: "serve" | "verify";
      window: { from?: number; to?: number } | null;
      /** On the closer's `leaseAt` clock. */
      heartbeatUntil: number;
    },
    closer: RunCloser,
  ): Promise<{ runId: number; closed: number }>;
  /** Renews the owner's heartbeat until `until`; `t` and `until` on a closer's `leaseAt` clock. */
  beat(owner: string, t: number, until: number): Promise<void>;
  /** Removes the owner's heartbeat (its last run finished). */
  dropHeartbeat(owner: string): Promise<void>;
  /** Writes the run's status and summary; `running` (a held run) leaves `finished_at` empty. */
  finish(runId: number, status: RunStatus, summary: unknown, t: number): Promise<void>;
  /**
   * Writes how a nightly run ended on its run row: the outcome's fields join the summary the
   * verifier wrote, and `finished_at` moves to `t`. With `status`, the row (kept `running`
   * while the ledger was read) closes with it in the same write; without, the row's status
   * stays what the verifier wrote. The status is the verifier's; the outcome is the night's.
   */
  recordOutcome(
    runId: number,
    outcome: NightlyRunOutcome,
    t: number,
    status?: RunStatus,
  ): Promise<void>;
  /**
   * The earliest time in [`since`, `before`) that no nightly run (`verify`, the `VERIFY_CRON`
   * run) which finished, exit 0 or 1, covered with its window; runs that never finished leave
   * their window open (see `firstUnjudged`); null when all of it is covered or there is no
   * nightly. A scheduled run's first window reaches back to it: the run of a window before may
   * have died with the process that led (`kill -9`, a restart at its fire time), which no later
   * process remembered.
   */
  nightlyCoveredUntil(before: number, since: number): Promise<number | null>;
  /**
   * Claims for the nightly window [from, to) the jobs two windows could both count and no run
   * has claimed (`unclaimedOfWindow`): a run writes this before it reads its counts
   * (`countedInWindow`), so the next window leaves out what it counted. Returns how many of
   * each way were claimed. On PostgreSQL a row another session holds is not waited for: left
   * unclaimed, it is counted by the window it was recorded in. In the same transaction, taking
   * the receipt writers' turn on PostgreSQL, it raises how far the nightly runs have counted
   * (`nightlyCountedThrough`) to `to`, or, when the window is not over yet by the run's clock
   * `at` nor the database's, the later of the two: a receipt whose
   * row is written after the claim is recorded no earlier, so one stamped before `to` and
   * written after the run read its counts is the next window's, not counted by none.
   */
  claimWindowJobs(from: number, to: number, at: number): Promise<{ date: number; late: number }>;
  /**
   * The jobs recorded in [from, to) and dated before it that no run has claimed
   * (`unclaimedOfWindow` `late`): a run of the window counts them (`countedLate`), so one left
   * after its claim (a row another session held, a claim not stored) is counted by it unclaimed,
   * and a run of the window it is dated in, done again, would count it too. How many, and the
   * first `limit` of them.
   */
  lateNotClaimed(from: number, to: number, limit: number): Promise<LateNotClaimed>;
}

/** Jobs recorded late in a window that its run could not claim (`lateNotClaimed`). */
export interface LateNotClaimed {
  jobs: number;
  first: string[];
}

/**
 * How a nightly run (`verify`, `VERIFY_CRON`) ended, kept in its run row's summary beside the
 * verifier's counts. The run row is finished when the jobs settle, before the ledger is read:
 * without these fields a night that exited 1 or 2 read as `completed` on the status page.
 * Rows written before they were kept have none of them.
 */
export interface NightlyRunOutcome {
  /** `verified`, `no_jobs`, `too_few_jobs`, `discrepancies`, `ledger_findings`, `incomplete`. */
  outcome: string;
  /** What cron was told: 0, 1 or 2. */
  exitCode: number;
  /** Why the run could not finish, or null. */
  reason: string | null;
  /** Findings of the credit vaults' ledger; null when the run did not read it. */
  ledgerFindings: number | null;
}

/** The `locks` row a verifier's heartbeat is written to. */
export const heartbeatName = (owner: string) => `verifier:${owner}`;

/** The verificationrun store of either dialect. */
export function createVerificationRunStore(store: Store): VerificationRunStore {
  return store.kind === "postgres"
    ? pgTwins().createPgVerificationRunStore(store)
    : sqliteVerificationRunStore(store);
}

const sqliteVerificationRunStore = perConnectionModule(createSqliteVerificationRunStore);

function createSqliteVerificationRunStore(store: SqliteStore): VerificationRunStore {
  const { db, sqlite } = store;
  // Raw SQL: an upsert that renews only the expiry.
  const writeHeartbeat = sqlite.prepare(
    `INSERT INTO locks (name, owner, acquired_at, expires_at) VALUES (@name, @owner, @t, @until)
     ON CONFLICT(name) DO UPDATE SET expires_at = excluded.expires_at`,
  );
  // Raw SQL, prepared once: run on every heartbeat tick, next to the statements above.
  const dropHeartbeat = sqlite.prepare("DELETE FROM locks WHERE name = ? AND owner = ?");
  // Raw SQL: a correlated NOT EXISTS over the heartbeat named after each run's owner.
  const abandonStale = sqlite.prepare(
    `UPDATE verification_runs SET status = 'abandoned', finished_at = @t
     WHERE status = 'running' AND owner <> @owner
       AND owner NOT IN (SELECT value FROM json_each(@live)) AND NOT EXISTS (
       SELECT 1 FROM locks WHERE locks.name = 'verifier:' || verification_runs.owner
         AND locks.expires_at > @at)`,
  );
  const dropStaleHeartbeats = sqlite.prepare(
    `DELETE FROM locks WHERE name LIKE 'verifier:%' AND expires_at <= @at
       AND owner NOT IN (SELECT value FROM json_each(@live))`,
  );
  const runningOwners = sqlite
    .prepare("SELECT DISTINCT owner FROM verification_runs WHERE status = 'running' AND owner <> ?")
    .pluck();
  // Raw SQL: reads the exit code inside the summary JSON the nightly wrote.
  const nightlyFloor = sqlite
    .prepare(
      `SELECT min(window_from) FROM verification_runs WHERE trigger = 'verify' AND window_to <= ?`,
    )
    .pluck();
  const judgedWindows = sqlite.prepare(
    `SELECT window_from AS "from", window_to AS "to" FROM verification_runs
     WHERE trigger = 'verify' AND window_to <= ? AND window_to > ?
       AND json_extract(summary, '$.exitCode') IN (0, 1)`,
  );
  const abandonOwner = sqlite.prepare(
    `UPDATE verification_runs SET status = 'abandoned', finished_at = ?
     WHERE status = 'running' AND owner = ?`,
  );

  function closeAbandoned(closer: RunCloser): number {
    const { owner, t, leaseAt = t, deadOwners, liveOwners = [] } = closer;
    const live = JSON.stringify(liveOwners);
    let closed = 0;
    for (const other of deadOwners) {
      if (other === owner) continue;
      closed += abandonOwner.run(t, other).changes;
      releaseLeasesOf(db, other);
    }
    closed += abandonStale.run({ t, at: leaseAt, owner, live }).changes;
    dropStaleHeartbeats.run({ at: leaseAt, live });
    return closed;
  }

  const closeTx = sqlite.transaction(closeAbandoned);
  const openTx = sqlite.transaction(
    (run: Parameters<VerificationRunStore["open"]>[0], closer: RunCloser) => {
      const closed = closeAbandoned(closer);
      writeHeartbeat.run({
        name: heartbeatName(closer.owner),
        owner: closer.owner,
        t: closer.leaseAt ?? closer.t,
        until: run.heartbeatUntil,
      });
      const runId = db
        .insert(verificationRuns)
        .values({
          trigger: run.trigger,
          status: "running",
          windowFrom: run.window?.from ?? null,
          windowTo: run.window?.to ?? null,
          startedAt: closer.t,
          owner: closer.owner,
        })
        .returning({ id: verificationRuns.id })
        .get().id;
      return { runId, closed };
    },
  );

  const from = sql.placeholder("from");
  const to = sql.placeholder("to");
  const claimDate = db
    .update(jobs)
    .set({ nightlyCounted: "date" })
    .where(unclaimedOfWindow(jobs, "date", from, to))
    .prepare();
  const claimLate = db
    .update(jobs)
    .set({ nightlyCounted: "late" })
    .where(unclaimedOfWindow(jobs, "late", from, to))
    .prepare();
  const raiseCounted = db
    .insert(nightlyCountedThrough)
    .values({ id: 1, through: sql.placeholder("through") })
    .onConflictDoUpdate({
      target: nightlyCountedThrough.id,
      set: { through: sql`max(${nightlyCountedThrough.through}, excluded.through)` },
    })
    .prepare();
  const claimTx = sqlite.transaction((window: { from: number; to: number; at: number }) => {
    // In the write transaction, as the receipts' inserts read it: a receipt written after this
    // is recorded at or past the window's end (not past the clocks' now: a window that ends
    // later would have later receipts dated forward).
    const through = Math.min(window.to, Math.max(window.at, Date.now()));
    raiseCounted.run({ through });
    const claimed = { from: window.from, to: window.to };
    return { date: claimDate.run(claimed).changes, late: claimLate.run(claimed).changes };
  });
  const lateLeft = db
    .select({ jobId: jobs.jobId })
    .from(jobs)
    .where(unclaimedOfWindow(jobs, "late", from, to))
    .orderBy(jobs.recordedAt, jobs.jobId)
    .prepare();

  return {
    async runningOwners(owner) {
      return runningOwners.all(owner) as string[];
    },
    async claimWindowJobs(fromMs, toMs, at) {
      return claimTx.immediate({ from: fromMs, to: toMs, at });
    },
    async lateNotClaimed(fromMs, toMs, limit) {
      const ids = (lateLeft.all({ from: fromMs, to: toMs }) as { jobId: string }[]).map(
        (r) => r.jobId,
      );
      return { jobs: ids.length, first: ids.slice(0, limit) };
    },
    async closeAbandoned(closer) {
      return closeTx.immediate(closer);
    },
    async open(run, closer) {
      return openTx.immediate(run, closer);
    },
    async beat(owner, t, until) {
      writeHeartbeat.run({ name: heartbeatName(owner), owner, t, until });
    },
    async dropHeartbeat(owner) {
      dropHeartbeat.run(heartbeatName(owner), owner);
    },
    async finish(runId, status, summary, t) {
      db.update(verificationRuns)
        .set({ status, finishedAt: status === "running" ? null : t, summary })
        .where(eq(verificationRuns.id, runId))
        .run();
    },
    async nightlyCoveredUntil(before, since) {
      const floor = (nightlyFloor.get(before) as number | null) ?? null;
      return firstUnjudged(
        floor,
        since,
        before,
        judgedWindows.all(before, since) as JudgedWindow[],
      );
    },
    async recordOutcome(runId, o, t, status) {
      // Raw SQL in the value: the fields are set inside the stored summary, in one statement,
      // so nothing the verifier wrote there is lost (json_set writes a SQL NULL as JSON null).
      // A number is bound as a REAL, which json_set writes `1.0`: the counts are cast first.
      db.update(verificationRuns)
        .set({
          ...(status ? { status } : {}),
          finishedAt: t,
          summary: sql`json_set(coalesce(${verificationRuns.summary}, '{}'),
            '$.outcome', ${o.outcome}, '$.exitCode', CAST(${o.exitCode} AS INTEGER),
            '$.reason', ${o.reason},
            '$.ledgerFindings', CAST(${o.ledgerFindings} AS INTEGER))`,
        })
        .where(eq(verificationRuns.id, runId))
        .run();
    },
  };
}
