import { and, eq, gt, inArray, isNull, like, lte, ne, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { jobs, locks, nightlyCountedThrough, verificationRuns } from "../../db/pg/schema.js";
import { unclaimedOfWindow } from "../queue-rules.js";
import { firstUnjudged } from "../run-rules.js";
import type { RunCloser, VerificationRunStore } from "../verification-runs.js";
import type { PgExecutor } from "./executor.js";
import { takeReceiptWriterTurn } from "./group-commit.js";
import { releaseLeasesOfPg } from "./job-queue.js";
import { serverNowMs } from "./server-clock.js";

/**
 * Verification runs and their owners' heartbeats on PostgreSQL (contract and SQLite version in
 * src/store/verification-runs.ts). Every verifier of every host closes abandoned runs at start
 * and on each heartbeat, so closers run concurrently; they take one transaction-level advisory
 * lock (below) and so run one after the other, as SQLite's write transactions do.
 */

const heartbeatName = (owner: string) => `verifier:${owner}`;

/**
 * Serializes closers (`pg_advisory_xact_lock`, released at commit). Each statement of a closer
 * is guarded and would count a run once on its own, but two closers lock runs and jobs rows in
 * different orders (their own dead owners first, then a scan of stale runs) and could deadlock.
 * The key is derived from a name so it cannot collide with another module's constant.
 */
const closersLock = sql`SELECT pg_advisory_xact_lock(hashtextextended('decentral-audit:verification-runs:close', 0))`;

async function writeHeartbeat(tx: PgExecutor, owner: string, t: number, until: number) {
  // An upsert that renews only the expiry: atomic under concurrent beats.
  await tx
    .insert(locks)
    .values({ name: heartbeatName(owner), owner, acquiredAt: t, expiresAt: until })
    .onConflictDoUpdate({ target: locks.name, set: { expiresAt: sql`excluded.expires_at` } });
}

/** Closes the runs of dead owners (releasing their leases) and the runs whose heartbeat expired. */
async function closeAbandoned(tx: PgExecutor, closer: RunCloser) {
  const { owner, t, leaseAt = t, deadOwners, liveOwners = [] } = closer;
  // Raw SQL: the owners known alive, as a JSON array bound once.
  const notLive = (column: typeof verificationRuns.owner | typeof locks.owner) =>
    sql`${column} NOT IN (SELECT json_array_elements_text(${JSON.stringify(liveOwners)}::json))`;
  await tx.execute(closersLock);
  let closed = 0;
  for (const other of deadOwners) {
    if (other === owner) continue;
    const abandoned = await tx
      .update(verificationRuns)
      .set({ status: "abandoned", finishedAt: t })
      .where(and(eq(verificationRuns.status, "running"), eq(verificationRuns.owner, other)));
    closed += abandoned.rowCount ?? 0;
    await releaseLeasesOfPg(tx, other);
  }
  // Raw SQL in the condition: the heartbeat is named after each run's owner.
  const stale = await tx
    .update(verificationRuns)
    .set({ status: "abandoned", finishedAt: t })
    .where(
      and(
        eq(verificationRuns.status, "running"),
        ne(verificationRuns.owner, owner),
        notLive(verificationRuns.owner),
        sql`NOT EXISTS (SELECT 1 FROM ${locks}
          WHERE ${locks.name} = 'verifier:' || ${verificationRuns.owner}
            AND ${locks.expiresAt} > ${leaseAt})`,
      ),
    );
  closed += stale.rowCount ?? 0;
  await tx
    .delete(locks)
    .where(
      and(like(locks.name, "verifier:%"), lte(locks.expiresAt, leaseAt), notLive(locks.owner)),
    );
  return closed;
}

export function createPgVerificationRunStore(store: PgStore): VerificationRunStore {
  const { db } = store;
  return {
    async runningOwners(owner) {
      const rows = await db
        .selectDistinct({ owner: verificationRuns.owner })
        .from(verificationRuns)
        .where(and(eq(verificationRuns.status, "running"), ne(verificationRuns.owner, owner)));
      return rows.map((r) => r.owner);
    },
    async closeAbandoned(closer) {
      return db.transaction((tx) => closeAbandoned(tx, closer));
    },
    async open(run, closer) {
      return db.transaction(async (tx) => {
        const closed = await closeAbandoned(tx, closer);
        await writeHeartbeat(tx, closer.owner, closer.leaseAt ?? closer.t, run.heartbeatUntil);
        const [row] = await tx
          .insert(verificationRuns)
          .values({
            trigger: run.trigger,
            status: "running",
            windowFrom: run.window?.from ?? null,
            windowTo: run.window?.to ?? null,
            startedAt: closer.t,
            owner: closer.owner,
          })
          .returning({ id: verificationRuns.id });
        if (!row) throw new Error("verification run not inserted");
        return { runId: row.id, closed };
      });
    },
    async beat(owner, t, until) {
      await writeHeartbeat(db, owner, t, until);
    },
    async dropHeartbeat(owner) {
      await db
        .delete(locks)
        .where(and(eq(locks.name, heartbeatName(owner)), eq(locks.owner, owner)));
    },
    async finish(runId, status, summary, t) {
      await db
        .update(verificationRuns)
        .set({ status, finishedAt: status === "running" ? null : t, summary })
        .where(eq(verificationRuns.id, runId));
    },
    async claimWindowJobs(fromMs, toMs, at) {
      // The rows are locked SKIP LOCKED, as a claim's are: a row another session holds (a
      // verdict write, an operator's SELECT ... FOR UPDATE) held the run's close until the
      // statement timeout. Left unclaimed, it is counted by the window it was recorded in.
      return db.transaction(async (tx) => {
        // The receipt writers' turn: a group that stamped its receipts before the window's end
        // commits before the mark is raised, and one after it reads the raised mark.
        await takeReceiptWriterTurn(tx);
        await tx
          .insert(nightlyCountedThrough)
          .values({
            id: 1,
            through: sql`least(${toMs}::bigint, greatest(${at}::bigint, ${serverNowMs()}))`,
          })
          .onConflictDoUpdate({
            target: nightlyCountedThrough.id,
            set: { through: sql`greatest(${nightlyCountedThrough.through}, excluded.through)` },
          });
        const claim = async (how: "date" | "late") => {
          const free = tx
            .select({ jobId: jobs.jobId })
            .from(jobs)
            .where(unclaimedOfWindow(jobs, how, fromMs, toMs))
            .for("update", { skipLocked: true });
          const rows = await tx
            .update(jobs)
            .set({ nightlyCounted: how })
            .where(and(inArray(jobs.jobId, free), isNull(jobs.nightlyCounted)))
            .returning({ jobId: jobs.jobId });
          return rows.length;
        };
        return { date: await claim("date"), late: await claim("late") };
      });
    },
    async lateNotClaimed(fromMs, toMs, limit) {
      const rows = await db
        .select({ jobId: jobs.jobId })
        .from(jobs)
        .where(unclaimedOfWindow(jobs, "late", fromMs, toMs))
        .orderBy(jobs.recordedAt, jobs.jobId);
      return { jobs: rows.length, first: rows.slice(0, limit).map((r) => r.jobId) };
    },
    async nightlyCoveredUntil(before, since) {
      const { summary, trigger, windowFrom, windowTo } = verificationRuns;
      const [first] = await db
        .select({ floor: sql<string | number | null>`min(${windowFrom})` })
        .from(verificationRuns)
        .where(and(eq(trigger, "verify"), lte(windowTo, before)));
      // Raw SQL in the condition: the exit code inside the summary (a `json` column).
      const judged = await db
        .select({ from: windowFrom, to: windowTo })
        .from(verificationRuns)
        .where(
          and(
            eq(trigger, "verify"),
            lte(windowTo, before),
            gt(windowTo, since),
            sql`${summary}->>'exitCode' IN ('0', '1')`,
          ),
        );
      const floor = first?.floor == null ? null : Number(first.floor);
      return firstUnjudged(
        floor,
        since,
        before,
        judged.map((w) => ({ from: Number(w.from), to: Number(w.to) })),
      );
    },
    async recordOutcome(runId, o, t, status) {
      // Raw SQL in the value: the fields join the stored summary in one statement (the column
      // is `json`, merged as `jsonb`), so nothing the verifier wrote there is lost.
      const fields = JSON.stringify({
        outcome: o.outcome,
        exitCode: o.exitCode,
        reason: o.reason,
        ledgerFindings: o.ledgerFindings,
      });
      await db
        .update(verificationRuns)
        .set({
          ...(status ? { status } : {}),
          finishedAt: t,
          summary: sql`(coalesce(${verificationRuns.summary}::jsonb, '{}'::jsonb)
            || ${fields}::jsonb)::json`,
        })
        .where(eq(verificationRuns.id, runId));
    },
  };
}
