import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { sql, TransactionRollbackError } from "drizzle-orm";
import type pg from "pg";
import type { PgStore } from "../../db/pg/client.js";
import { WRITER_CONNECTIONS } from "../../db/pg/connection-room.js";
import { openPgSidePool } from "../../db/pg/pool.js";
import { jobApiAnswers, jobs, receiptConflicts } from "../../db/pg/schema.js";
import { backoff } from "../../retry.js";
import type { WriteUnit } from "../write-unit.js";
import type { PgExecutor, PgTx } from "./executor.js";
import { noteServerNowMs, serverNowMs } from "./server-clock.js";

/**
 * Two-key advisory lock class of the receipt writers: the first 4 bytes of
 * sha256("decentral-audit:receipt-writers") as a signed 32-bit integer.
 */
export const RECEIPT_WRITER_LOCK_CLASS = -1_823_318_440;

/**
 * Receipt writers take turns (a transaction-level advisory lock, before any row lock): a group
 * is many statements, each task's insert or update moving the rollup rows of its model, worker,
 * key and hour (a statement trigger, each statement in key order), and a receipt locking its
 * job's row. Two hosts' groups met on those shared rows in the order their tasks came, which
 * deadlocked (PostgreSQL aborted one group after its deadlock_timeout; the writer logged "could
 * not record receipts; will retry" and its callers waited on). Groups of one deployment's few
 * models and workers share those rows anyway and waited on each other there; taking turns up
 * front only makes the wait come first. Raw SQL: drizzle has no builder for advisory locks.
 */
export async function takeReceiptWriterTurn(tx: PgExecutor): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(${RECEIPT_WRITER_LOCK_CLASS}::int, 0)`);
}

/**
 * Bounds each row-lock wait of the rest of `tx` to `ms`; past it the statement fails with SQLSTATE
 * 55P03. Work holding the receipt writers' turn that waited unbounded for a row held by a session
 * outside the service (an operator's `SELECT … FOR UPDATE`) kept every receipt waiting as long.
 */
export async function boundRowLockWaits(tx: PgExecutor, ms: number): Promise<void> {
  await tx.execute(sql`SELECT set_config('lock_timeout', ${String(ms)}, true)`);
}

/**
 * Runs `run` (a transaction of its own whose row-lock waits `boundRowLockWaits` cut) again, up to
 * `tries` times in all, while a row stays held locked (SQLSTATE 55P03), backing off between
 * tries (from `backoffBaseMs`, doubling); each try takes the receipt writers' turn anew, so
 * receipts pass in between. The last try's failure is thrown as `refuse` makes it.
 */
export async function retryWhileRowLocked<T>(
  run: () => Promise<T>,
  tries: number,
  refuse: (error: unknown) => unknown = (error) => error,
  backoffBaseMs = 200,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (sqlStateOf(error) !== "55P03") throw error;
      if (attempt >= tries) throw await refuse(error);
      await sleep(backoff(attempt, { baseMs: backoffBaseMs, maxMs: 10 * backoffBaseMs }));
    }
  }
}

/**
 * How long a write holding the receipt writers' turn waits for a job row another session holds
 * locked, per try, in ms (`heldRowWaitMs`; each try after the first backs off a fifth of it,
 * doubling). PostgreSQL only: SQLite has no row locks. The stores' own bound when unset.
 */
export interface HeldRowWaitOptions {
  heldRowWaitMs?: number;
}

/** The back-off base between tries of a write waiting `waitMs` per try (200 ms for 1 s). */
export const heldRowBackoffMs = (waitMs: number) => waitMs / 5;

/** The receipt writer's wait for its turn lasts at least this long per try (see `turnWaitMs`). */
const MIN_TURN_WAIT_MS = 60_000;

/**
 * How long the receipt writer waits for its turn per try, given the session's statement timeout
 * (0: none, and no bound of its own either). The turn is held by a whole group of another host
 * (or a verdict or ledger write), many statements each bounded by that timeout: cancelled at it,
 * the wait was taken for the database away and the proxy refused paid work until the turn freed.
 */
export function turnWaitMs(statementTimeoutMs: number): number {
  if (statementTimeoutMs <= 0) return 0;
  // PostgreSQL takes a statement_timeout up to 2^31 - 1 ms: four of the longest timeout the
  // config takes were refused, and every receipt group failed with it.
  return Math.min(MAX_PG_TIMEOUT_MS, Math.max(MIN_TURN_WAIT_MS, 4 * statementTimeoutMs));
}

/** The longest statement_timeout PostgreSQL takes, in ms. */
const MAX_PG_TIMEOUT_MS = 2_147_483_647;

/** The receipt writer waited `turnWaitMs` for its turn: the database answers, others write. */
export class ReceiptTurnWaitError extends Error {
  override name = "ReceiptTurnWaitError";
}

export function sqlStateOf(error: unknown): unknown {
  let failure = error as { code?: unknown; cause?: unknown } | null;
  while (failure && failure.code === undefined && failure.cause instanceof Error) {
    failure = failure.cause as { code?: unknown; cause?: unknown };
  }
  return failure?.code;
}

/**
 * The receipt writer's turn, waited for under a statement timeout of its own (`turnWaitMs`); the
 * session's timeout is back for the group's statements from the one that took the turn on, and
 * with it the group's bound on a wait for a row lock (`lockWaitMs`, 0: none). Returns the
 * transaction's id, for `commitStatus` when the answer to its COMMIT is lost.
 */
async function takeWriterTurnBounded(
  tx: PgExecutor,
  statementTimeoutMs: number,
  lockWaitMs: number,
  waiting: (pid: number | null) => void,
  stopping: () => boolean,
): Promise<GroupSession | null> {
  const waitMs = turnWaitMs(statementTimeoutMs);
  // A statement's timeout is the one set when it starts: the lock's is the wait's, and the
  // set_config beside it (run once the lock is taken) puts the session's back for the rest.
  // A lock_timeout set with it bounds the group's row waits, not the wait for the turn.
  // The backend's pid lets a writer that closes cancel the wait (`cancelTurnWait`); the
  // server's clock, read with it, dates the group's receipts (`noteServerNowMs`).
  // Which server this is, since when (`SERVER_LIFE`), tells a question about the group's fate
  // asked of another (`commitStatus`) from one asked of this one.
  const before = Date.now();
  const opening = sql`pg_backend_pid() AS pid, ${serverNowMs()}::text AS now, pg_current_xact_id()::text AS xid, ${sql.raw(SERVER_LIFE)} AS life`;
  const [session] = (
    await tx.execute<{ pid: number; now: string; xid: string; life: string }>(
      waitMs === 0
        ? sql`SELECT ${opening}`
        : sql`SELECT set_config('statement_timeout', ${String(waitMs)}, true), ${opening}`,
    )
  ).rows;
  if (session) noteServerNowMs(Number(session.now), before, Date.now());
  const xid = session ? { xid: session.xid, pid: session.pid, life: session.life } : null;
  waiting(session?.pid ?? null);
  const afterTurn = sql`set_config('statement_timeout', ${String(statementTimeoutMs)}, true),
    set_config('lock_timeout', ${String(lockWaitMs)}, true)`;
  if (stopping()) {
    // The writer stops past its time: a group begun since (the next of a backlog) takes the
    // turn only when it is free. Waited for, it kept the stop up to the turn's own timeout.
    const [turn] = (
      await tx.execute<{ got: boolean }>(
        sql`SELECT pg_try_advisory_xact_lock(${RECEIPT_WRITER_LOCK_CLASS}::int, 0) AS got, ${afterTurn}`,
      )
    ).rows;
    waiting(null);
    if (turn?.got === true) return xid;
    throw new ReceiptTurnWaitError("the receipt writers' turn was taken as the writer stopped");
  }
  try {
    await tx.execute(
      sql`SELECT pg_advisory_xact_lock(${RECEIPT_WRITER_LOCK_CLASS}::int, 0), ${afterTurn}`,
    );
  } catch (error) {
    waiting(null);
    if (waitMs === 0 || sqlStateOf(error) !== "57014") throw error;
    throw new ReceiptTurnWaitError(
      `the receipt writers' turn stayed taken for ${waitMs} ms (other writers are slow)`,
      { cause: error },
    );
  }
  waiting(null);
  return xid;
}

/**
 * A unit of a group waited `lockWaitMs` for a row another session holds locked (an operator's
 * `SELECT … FOR UPDATE`, a long transaction): the group was rolled back, the unit at `index`
 * is to blame, the others are not.
 */
export class ReceiptRowLockedError extends Error {
  override name = "ReceiptRowLockedError";
  constructor(
    readonly index: number,
    options: { cause: unknown },
  ) {
    super(`a receipt write waited for a row another session holds locked`, options);
  }
}

/** Runs unit `index` of a group; a wait for a row lock cut at the group's bound names it. */
async function runUnit(unit: WriteUnit<unknown>, index: number, tx: PgExecutor): Promise<unknown> {
  try {
    return await unit.runPostgres(tx);
  } catch (error) {
    if (sqlStateOf(error) === "55P03") throw new ReceiptRowLockedError(index, { cause: error });
    throw error;
  }
}

/**
 * A group whose every unit ran and whose connection was lost at its COMMIT (or just before):
 * its transaction id and what its units returned, for `commitStatus` to tell whether it landed.
 */
export interface CommitInDoubt extends GroupSession {
  values: unknown[];
}

/** A group's transaction id (`pg_current_xact_id`) and the server process that ran it. */
export interface GroupSession {
  xid: string;
  pid: number;
  /** The server that ran it, and since its last crash recovery (`SERVER_LIFE`). */
  life: string;
}

/**
 * Which server answers, and since its last crash recovery: its start time, and when its shared
 * statistics were last reset, which a crash recovery does (its unflushed transactions are gone,
 * their ids given out again; the start time stays) and a checkpoint or clean restart does not.
 * Another server has another start time: a standby promoted after a failover, which never saw
 * what the primary did past what it had received. Both are read from memory.
 */
const SERVER_LIFE = `pg_postmaster_start_time()::text || ' ' || coalesce((SELECT stats_reset FROM pg_stat_archiver)::text, '')`;

/**
 * The transaction `tx` is in (its id assigned now) and the server process running it, for
 * `commitStatus` should the answer to its COMMIT be lost.
 */
export async function transactionSession(tx: PgExecutor): Promise<GroupSession | null> {
  const [session] = (
    await tx.execute<{ pid: number; xid: string; life: string }>(
      sql`SELECT pg_backend_pid() AS pid, pg_current_xact_id()::text AS xid, ${sql.raw(SERVER_LIFE)} AS life`,
    )
  ).rows;
  return session ? { xid: session.xid, pid: session.pid, life: session.life } : null;
}

const inDoubt = new WeakMap<object, CommitInDoubt>();

/** What a group that failed with `error` had done, when it failed after its last unit ran. */
export function commitInDoubt(error: unknown): CommitInDoubt | null {
  return typeof error === "object" && error !== null ? (inDoubt.get(error) ?? null) : null;
}

/**
 * Runs `body` (a group's units) in a transaction; a failure after the body ran (the COMMIT's
 * answer lost) carries the transaction's id and the body's values (`commitInDoubt`).
 */
export async function inGroupTransaction<T>(
  db: PgStore["db"],
  takeTurn: (tx: PgExecutor) => Promise<GroupSession | null>,
  body: (tx: PgTx) => Promise<T[]>,
): Promise<T[]> {
  let done: CommitInDoubt | null = null;
  try {
    return await db.transaction(async (tx) => {
      const session = await takeTurn(tx);
      const values = await body(tx);
      if (session !== null) done = { ...session, values };
      return values;
    });
  } catch (error) {
    if (done !== null && typeof error === "object" && error !== null) inDoubt.set(error, done);
    throw error;
  }
}

/** What the server says of a transaction: `pg_xact_status` (null: too old, or not known). */
export type CommitStatus = "committed" | "aborted" | "in progress" | null;

/**
 * How long a transaction whose connection was lost at its COMMIT may stay open on the server
 * before its session is ended, in ms. A server that saw the connection go ends it at once.
 */
export const IN_DOUBT_OPEN_MS = 2000;

/** `PgWriterConnection.commitStatus`, asked on a connection of `pool`. */
export async function pgCommitStatus(
  pool: pg.Pool,
  { xid, life }: GroupSession,
): Promise<CommitStatus> {
  const { rows } = await pool.query<{ status: CommitStatus }>(
    `SELECT CASE WHEN ${SERVER_LIFE} = $2 THEN pg_xact_status($1::xid8) END AS status`,
    [xid, life],
  );
  return rows[0]?.status ?? null;
}

/** `PgWriterConnection.endInDoubt`, on a connection of `pool`. */
export async function endPgSessionInDoubt(
  pool: pg.Pool,
  { xid, pid, life }: GroupSession,
): Promise<void> {
  // `backend_xid` is the 32-bit id: the low half of the 64-bit one `pg_current_xact_id` gave.
  // The pid and the server's life as well: after a failover or a crash recovery the id and
  // pid may be another session's there.
  const low = (BigInt(xid) & 0xffff_ffffn).toString();
  await pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE pid = $1 AND backend_xid = $2::xid AND ${SERVER_LIFE} = $3`,
    [pid, low, life],
  );
}

/**
 * The fate of a transaction lost at its COMMIT, once the server knows it: waited for while it
 * is still open there (its backend has not yet seen the connection go), and its session ended
 * past `IN_DOUBT_OPEN_MS` (a COMMIT that never reached it: nothing of it lands). Null when the
 * server answering may have given its id to another (`commitStatus`). Throws as `pool` does
 * (the server away): the fate is then still unknown; so it is, "in progress", when the session
 * outlives `until` (`performance.now()`; a role that may not end it).
 */
export async function settledCommitStatus(
  pool: pg.Pool,
  session: GroupSession,
  until = Number.POSITIVE_INFINITY,
): Promise<CommitStatus> {
  const since = performance.now();
  for (let tries = 0; ; tries++) {
    if (tries > 0) {
      if (performance.now() >= until) return "in progress";
      await sleep(backoff(tries, { baseMs: 5, maxMs: 500 }));
    }
    if (tries > 0 && performance.now() - since >= IN_DOUBT_OPEN_MS) {
      await endPgSessionInDoubt(pool, session);
    }
    const status = await pgCommitStatus(pool, session);
    if (status !== "in progress") return status;
  }
}

/** How one unit of a PostgreSQL group ended: its value, or the error it failed with alone. */
export type UnitOutcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** The transactions a group-committing writer runs on PostgreSQL (pooled connections). */
export interface PgWriterConnection {
  /**
   * Runs `units` in order in one transaction; their values, or throws (nothing written, unless
   * `commitInDoubt` of the error says the COMMIT was sent: see `commitStatus`). A unit that
   * waits longer than `lockWaitMs` (0 or none: no bound but the statement timeout) for a row
   * lock ends the group with a `ReceiptRowLockedError` naming it.
   */
  together(units: readonly WriteUnit<unknown>[], lockWaitMs?: number): Promise<unknown[]>;
  /**
   * Runs `units` in one transaction with a savepoint each: a unit that throws an error for which
   * `failsAlone` is true is rolled back alone and reported; any other error ends the group (a
   * row lock waited for past `lockWaitMs` as in `together`).
   */
  isolated(
    units: readonly WriteUnit<unknown>[],
    failsAlone: (error: unknown) => boolean,
    lockWaitMs?: number,
  ): Promise<UnitOutcome[]>;
  /**
   * Whether the group's transaction (`commitInDoubt`) committed, asked on a connection of its
   * own: the answer to a COMMIT lost with its connection says nothing of whether it landed.
   * Null (not known) when the server answering may have given its id to another transaction:
   * another server (a standby promoted after a failover, which never saw what the group did),
   * or this one after a crash recovery (`SERVER_LIFE`).
   */
  commitStatus(session: GroupSession): Promise<CommitStatus>;
  /**
   * Ends the session whose group transaction is still open: its connection gone where the
   * server did not see it go (a network dropping packets), it held the writers' turn and its
   * group's rows until TCP keepalive or an idle timeout ended it, hours by default. Its COMMIT
   * never reached the server (it would have ended the transaction), so nothing of it is lost.
   */
  endInDoubt(session: GroupSession): Promise<void>;
  /** Resolves once the database answers a trivial query. */
  ping(): Promise<void>;
  /**
   * Writes of no consequence (no row matched) to each table a receipt writes, as the writer's
   * role: throws while the database refuses them (read-only, a privilege revoked, row-level
   * security admitting no receipt), as a receipt's own write would. PostgreSQL checks the first
   * two before it looks for rows; a receipt row, inserted and undone, meets the third.
   */
  probeWrite(): Promise<void>;
  /**
   * Cancels a wait for the receipt writers' turn under way (a writer closing past its time):
   * it fails as a `ReceiptTurnWaitError`; a group begun later takes the turn only if it is free.
   */
  cancelTurnWait(): Promise<void>;
  /** Ends the writer's own connection. */
  close(): Promise<void>;
}

/**
 * The writer's transactions run on a connection of its own, never one of the store's pool: the
 * writer commits one group at a time, and reads holding the whole pool cannot make it wait (the
 * pool fails a wait of 5 s as a database away, and the proxy then refuses paid work). A second
 * connection serves a ping or probe made while a group still holds the first.
 */
export function openPgWriterConnection(shared: PgStore): PgWriterConnection {
  const own = openPgSidePool(shared, WRITER_CONNECTIONS);
  const store = { db: own.db, pool: own.pool };
  const statement = shared.config.statement_timeout;
  /** The backend waiting for the turn, if one is. */
  let waitingPid: number | null = null;
  /** Told to stop waiting: later groups take the turn only when it is free. */
  let stopping = false;
  const takeTurn = (tx: PgExecutor, lockWaitMs = 0) =>
    takeWriterTurnBounded(
      tx,
      typeof statement === "number" ? statement : 0,
      lockWaitMs,
      (pid) => {
        waitingPid = pid;
      },
      () => stopping,
    );
  return {
    close: own.close,
    async cancelTurnWait() {
      stopping = true;
      // The pool's second connection: the first is the one waiting. A cancel that reaches the
      // backend before its lock statement does finds it idle and does nothing: sent again
      // while that wait is still under way.
      for (let tries = 0; waitingPid !== null && tries < 40; tries++) {
        await store.pool.query("SELECT pg_cancel_backend($1)", [waitingPid]);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    together: (units, lockWaitMs) =>
      inGroupTransaction(
        store.db,
        (tx) => takeTurn(tx, lockWaitMs),
        async (tx) => {
          const values: unknown[] = [];
          for (const [index, unit] of units.entries()) values.push(await runUnit(unit, index, tx));
          return values;
        },
      ),
    isolated: (units, failsAlone, lockWaitMs) =>
      inGroupTransaction(
        store.db,
        (tx) => takeTurn(tx, lockWaitMs),
        async (tx) => {
          const outcomes: UnitOutcome[] = [];
          for (const [index, unit] of units.entries()) {
            try {
              // A nested drizzle transaction is a savepoint.
              const value = await tx.transaction((inner: PgTx) => runUnit(unit, index, inner));
              outcomes.push({ ok: true, value });
            } catch (error) {
              if (error instanceof ReceiptRowLockedError || !failsAlone(error)) throw error;
              outcomes.push({ ok: false, error });
            }
          }
          return outcomes;
        },
      ),
    commitStatus: (session) => pgCommitStatus(store.pool, session),
    endInDoubt: (session) => endPgSessionInDoubt(store.pool, session),
    async ping() {
      await store.pool.query("SELECT 1");
    },
    async probeWrite() {
      await store.db.transaction(async (tx) => {
        // Its receipt row, inserted and undone, moves rollup rows as a receipt's insert does.
        await takeTurn(tx);
        for (const table of [jobs, receiptConflicts, jobApiAnswers]) {
          await tx.execute(sql`INSERT INTO ${table} SELECT * FROM ${table} WHERE false`);
        }
        await tx
          .update(jobs)
          .set({ updatedAt: sql`${jobs.updatedAt}` })
          .where(sql`false`);
        await tx
          .update(receiptConflicts)
          .set({ receivedAt: sql`${receiptConflicts.receivedAt}` })
          .where(sql`false`);
        // A statement that writes no row passes a check made per row (row-level security with
        // no policy that admits a receipt, a trigger): one receipt row, inserted and undone.
        await tx
          .transaction(async (probe) => {
            const t = Date.now();
            await probe.insert(jobs).values({
              jobId: `job_0probe${randomBytes(8).toString("hex")}`,
              source: "proxy",
              receiptHash: "probe",
              createdAt: t,
              recordedAt: t,
              updatedAt: t,
            });
            probe.rollback();
          })
          .catch((error: unknown) => {
            if (!(error instanceof TransactionRollbackError)) throw error;
          });
      });
    },
  };
}
