import {
  and,
  asc,
  count,
  desc,
  eq,
  gt,
  gte,
  inArray,
  isNotNull,
  isNull,
  lt,
  lte,
  max,
  min,
  ne,
  not,
  or,
  type SQL,
  sql,
} from "drizzle-orm";
import { PgTransaction } from "drizzle-orm/pg-core";
import type { PgStore } from "../../db/pg/client.js";
import {
  chainTransactions,
  checkResults,
  creditVaults,
  escrowPending,
  escrowScans,
  jobs,
  ledgerCursors,
  ledgerDaily,
  ledgerLines,
} from "../../db/pg/schema.js";
import { finalVerdicts, recordedAfterDate } from "../../db/schema.js";
import { AppError } from "../../errors.js";
import { creditsHeaderMatches as headerMatches } from "../../verify/checks/credits.js";
import type {
  CreditSpan,
  EscrowUnread,
  FetchedTransaction,
  GapLines,
  HeaderCheck,
  HeaderSpan,
  KindSums,
  LedgerLineRow,
  LedgerStore,
  LineKind,
  LineRead,
  LineWaiting,
  ReviewResult,
  StoredGap,
} from "../ledger.js";
import {
  balanceControlOf,
  balanceControlToText,
  escrowMemoJobOf,
  escrowStepsOf,
  foreignChangesOf,
  foreignChangesToText,
  foreignHoldingOf,
  foreignHoldingToText,
  gapBetween,
  type HeaderSpanEnd,
  HeaderSpanReading,
  type HealAttempt,
  headerMatchLasts,
  headerSpanCovered,
  headerSpanEnd,
  healedOrder,
  healMakingRoom,
  type JobDebit,
  type JobLockLine,
  type JobTie,
  jobKeepingLine,
  jobOfUnexplainedDebit,
  jobsALineNames,
  type KeepPair,
  lockOfClosingNamer,
  lockOwner,
  lockTiedToNoVault,
  type MemoJob,
  mayReturnTo,
  memoJobsOf,
  memoJobsOfLine,
  memoJobsToText,
  mixedMemoLineOf,
  type NamedSettlement,
  type NamedSteps,
  namedStepsSelection,
  outstandingOf,
  provisionalLockUnits,
  type ResponseTimes,
  settledShareOfLocks,
  settledUnits,
  sharedPaidOut,
  slotChainOrder,
  walkAsync,
  walkInSlices,
  walkLines,
  withSharedReturn,
} from "../ledger-rules.js";
import { maxKeptSignatures, maxKeptWithPayouts, namedPastVault } from "../receipt-rules.js";
import type { PgExecutor } from "./executor.js";
import {
  boundRowLockWaits,
  type HeldRowWaitOptions,
  heldRowBackoffMs,
  retryWhileRowLocked,
  takeReceiptWriterTurn,
} from "./group-commit.js";
import { heldJobIds, namingHeldRows, rowsHeldError } from "./held-rows.js";
import { keepWithJobPg, reopenHoldersPg, reopenJobsPg } from "./job-queue.js";
import { RunAgainError, retryOnConflict } from "./write-transaction.js";

/**
 * How long a ledger write holding the receipt writers' turn waits for a row another session
 * holds locked (a job row: an operator's `SELECT … FOR UPDATE`, a long transaction), per try, in
 * ms; and how many tries, the turn let go between them, before the write is refused naming the
 * job. Unbounded, one such row kept the batch waiting the statement timeout with the turn held,
 * and every receipt waited as long (9.8 s with a 10 s timeout); the batch then failed as the
 * database away, and the whole round with it.
 */
const LEDGER_LOCK_WAIT_MS = 1000;
const LEDGER_LOCK_TRIES = 3;

/**
 * The ledger store on PostgreSQL: the same statements and behaviour as the SQLite one in
 * src/store/ledger.ts (its comments are the specification), with these differences:
 *
 * - Every write of a vault's ledger (`storePage`, `recordReads`, `review`) first takes the
 *   vault's transaction-level advisory lock, so two readers of one vault (the leader and one
 *   started by mistake) run their read-then-write one after the other, as SQLite's IMMEDIATE
 *   transactions do. Under it the writes stay safe on their own too: the cursor advance is an
 *   `UPDATE … WHERE <the cursor seen> RETURNING` (a page stored first makes the second a no-op),
 *   line inserts are `ON CONFLICT DO NOTHING`, and a line is read by `UPDATE … WHERE state =
 *   'listed'`, so a line (and its daily sum, kept by the `ledger_daily_lines` trigger) counts once.
 * - Readers that make several statements of one answer (the verifier's `creditSpans`, the
 *   statement's header checks and gaps) read one snapshot (REPEATABLE READ, read only) while the
 *   reader writes.
 * - Lines are listed, read and classified a batch at a time (`unnest` of the batch's columns,
 *   `classifyMany`, `outstandingMany`): a few statements per page instead of several round trips per
 *   line, with the kinds and release flags the line-by-line SQLite code leaves.
 * - Sums come back from node-postgres as numeric strings: converted with `BigInt`/`Number`.
 * - Text is sorted with `COLLATE "C"` (byte order, as SQLite's BINARY), whatever the database's
 *   collation.
 */

/** Orders lines (the same as src/store/ledger.ts). */
const ORD_SPAN = 1_000_000_000;
const DAY = 86_400;
/** Rows per multi-row statement (well under PostgreSQL's 65,535 parameters). */
const BATCH = 500;
/** Lines a span read asks for at a time (`spansFrom`). */
const SPAN_PAGE = 1000;
/**
 * Lines a review's walk asks for at a time (`walkLines`): a page of 2,000 took 50 to 200 ms on a
 * loaded host, each slice of the walk holding the vault's lock that long at least.
 */
const WALK_PAGE = 500;
/**
 * Lines a gap heal moves up in one transaction while it makes room (`healMakingRoom`; SQLite
 * moves `ROOM_LINES_PER_MOVE`): a new ord is a new entry in every index of the line (some 20),
 * and 1,000 lines held the vault's lock 56 to 304 ms each (p50 133 ms) on a loaded host.
 */
export const PG_ROOM_LINES_PER_MOVE = 200;
/** What a review did to credits headers (`decideHeaders`). */
type HeaderCounts = Pick<ReviewResult, "headersDecided" | "headersPassed" | "reopened">;

/** Adds what `decideHeaders` did to a review's `result`. */
function addHeaders(result: ReviewResult, headers: HeaderCounts): void {
  result.headersDecided += headers.headersDecided;
  result.headersPassed += headers.headersPassed;
  result.reopened += headers.reopened;
}

/** First key of the two-key advisory lock of a vault's ledger writes (second: hashtext(vault)). */
const VAULT_LOCK_CLASS = 1_049_101;

const snapshot = { isolationLevel: "repeatable read", accessMode: "read only" } as const;

const lineColumns = {
  signature: ledgerLines.signature,
  ord: ledgerLines.ord,
  slot: ledgerLines.slot,
  blockTime: ledgerLines.blockTime,
  preUnits: ledgerLines.preUnits,
  postUnits: ledgerLines.postUnits,
  deltaUnits: ledgerLines.deltaUnits,
  memo: ledgerLines.memo,
  memoKind: ledgerLines.memoKind,
  memoJobId: ledgerLines.memoJobId,
  memoJobs: ledgerLines.memoJobs,
  kind: ledgerLines.kind,
  jobId: ledgerLines.jobId,
  depositInUnits: ledgerLines.depositInUnits,
};
const lineWithState = { ...lineColumns, state: ledgerLines.state };

type LineDb = Omit<LedgerLineRow, "deltaUnits" | "memoJobs"> & {
  deltaUnits: bigint | null;
  memoJobs: string | null;
};

function toLine(r: LineDb): LedgerLineRow {
  return {
    signature: r.signature,
    ord: r.ord,
    slot: r.slot,
    blockTime: r.blockTime,
    preUnits: r.preUnits,
    postUnits: r.postUnits,
    deltaUnits: r.deltaUnits ?? 0n,
    memo: r.memo,
    memoKind: r.memoKind,
    memoJobId: r.memoJobId,
    memoJobs: memoJobsOf(r.memoJobs),
    kind: r.kind,
    jobId: r.jobId,
    // Only when some: rows read before it was kept, and most lines, hold none.
    ...(r.depositInUnits == null ? {} : { depositInUnits: r.depositInUnits }),
  };
}

const emptySums = (): KindSums => ({
  lock: { lines: 0, units: 0n },
  return: { lines: 0, units: 0n },
  deposit: { lines: 0, units: 0n },
  unexplained: { lines: 0, units: 0n },
  none: { lines: 0, units: 0n },
});

/** A sum of money as numeric text from node-postgres (0 over no rows). */
const sumUnits = (column: unknown) =>
  sql<bigint>`coalesce(sum(${column}), 0)`.mapWith((v: string | number) => BigInt(v));
const byteOrder = (column: unknown) => sql`${column} COLLATE "C"`;
/** One bound array parameter of `type` (drizzle would spread a JS array into a list). */
const typedArray = (values: readonly unknown[], type: "text" | "bigint" | "boolean") =>
  sql`${sql.param([...values])}::${sql.raw(type)}[]`;
const textArray = (values: readonly string[]) => typedArray(values, "text");
/**
 * `unnest(<one array per column>) AS alias (names)` of `rows`: one parameter per column however
 * many rows, each column named with its array type and how a row gives its value.
 */
function unnestOf<R>(
  rows: readonly R[],
  alias: string,
  columns: Record<string, ["text" | "bigint" | "boolean", (row: R, i: number) => unknown]>,
) {
  const names = Object.keys(columns);
  const arrays = Object.values(columns).map(([type, pick]) => typedArray(rows.map(pick), type));
  return sql`unnest(${sql.join(arrays, sql`, `)}) AS ${sql.raw(alias)} (${sql.raw(names.join(", "))})`;
}

type Classifiable = {
  signature: string;
  delta: bigint;
  memoKind: LineRead["memoKind"];
  memoJobId: string | null;
  memoJobs: readonly MemoJob[] | null;
  /** Money in escrow did not pay (`LineRead.depositIn`). */
  depositIn: bigint | null;
};

const asClassifiableRead = (l: LineRead): Classifiable => ({
  signature: l.signature,
  delta: l.delta,
  memoKind: l.memoKind,
  memoJobId: l.memoJobId,
  memoJobs: l.memoJobs ?? null,
  depositIn: l.depositIn ?? null,
});

const asClassifiable = (r: LedgerLineRow): Classifiable => ({
  signature: r.signature,
  delta: r.deltaUnits,
  memoKind: r.memoKind,
  memoJobId: r.memoJobId,
  memoJobs: r.memoJobs ?? null,
  depositIn: r.depositInUnits ?? null,
});

/** Items by key, in their order. */
function groupBy<T>(items: readonly T[], key: (item: T) => string | null): Map<string | null, T[]> {
  const out = new Map<string | null, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = out.get(k);
    if (group) group.push(item);
    else out.set(k, [item]);
  }
  return out;
}

/** Serializes the ledger writes of one vault until the transaction ends (see the module comment). */
export async function lockVault(tx: PgExecutor, vault: string): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(${VAULT_LOCK_CLASS}::int, hashtext(${vault}))`);
}

/**
 * Takes the vault's ledger lock and lets it go at once, as any other ledger writer of the vault
 * would: how long that waits is how long the vault's writers are held back.
 */
export async function takeVaultLock(store: PgStore, vault: string): Promise<void> {
  await store.db.transaction((tx) => lockVault(tx, vault));
}

/** The columns of a line a statement finding names (its transaction and memo). */
const findingColumns = {
  signature: ledgerLines.signature,
  slot: ledgerLines.slot,
  blockTime: ledgerLines.blockTime,
  memo: ledgerLines.memo,
  memoJobId: ledgerLines.memoJobId,
};

/** The ledger store on PostgreSQL (see `LedgerStore` in src/store/ledger.ts). */
export function createPgLedgerStore(store: PgStore, options: HeldRowWaitOptions = {}): LedgerStore {
  const heldRowWaitMs = options.heldRowWaitMs ?? LEDGER_LOCK_WAIT_MS;
  /**
   * The receipt writers' turn, then every row-lock wait of the rest of `tx` bounded: what a
   * ledger write locks under the turn is job rows and its vault's own rows, which no receipt
   * holds long.
   */
  async function takeTurn(tx: PgExecutor): Promise<void> {
    await takeReceiptWriterTurn(tx);
    await boundRowLockWaits(tx, heldRowWaitMs);
  }

  /**
   * Runs a ledger write's transaction, again while a row it waits for under the turn stays held
   * (`retryWhileRowLocked`: the turn let go between tries), and refuses it at last naming the
   * job: rolled back whole, its lines stay as they were for the next round to read, and the
   * jobs they would send back to the verifier are sent then.
   */
  const whileRowsHeld = <T>(write: () => Promise<T>): Promise<T> =>
    retryWhileRowLocked(
      write,
      LEDGER_LOCK_TRIES,
      (error) =>
        rowsHeldError(
          store,
          error,
          { tries: LEDGER_LOCK_TRIES, waitMs: heldRowWaitMs },
          "the vault's ledger write was not made; the next round makes it again",
        ),
      heldRowBackoffMs(heldRowWaitMs),
    );

  const { db } = store;

  /**
   * Writes a batch of reads: the transactions fetched, the lines read. Retried as a deadlock
   * victim: a line kept with a job writes that job's row, which a receipt or answer of the same
   * jobs may hold; refused (`whileRowsHeld`) when the row stays held.
   */
  const writeReads = (
    vault: string,
    reads: readonly LineRead[],
    fetched: readonly FetchedTransaction[],
    now: number,
  ) =>
    whileRowsHeld(() =>
      retryOnConflict(() =>
        db.transaction(async (tx) => {
          await lockVault(tx, vault);
          const givenUp = await givenUpAmong(tx, fetched);
          await upsertTransactions(tx, fetched, now);
          await readLines(tx, vault, reads, now);
          // Found on chain after all: the jobs judged without them are judged again.
          await reopenHoldersPg(tx, givenUp, now);
        }),
      ),
    );

  /**
   * Jobs whose row a batch of reads found held by another session (an admin's open
   * transaction): a later batch leaves the lines kept with them listed while the row is held
   * still, without waiting for it again, and reads them once it is free.
   */
  const heldBefore = new Set<string>();

  /** The jobs among `ids` another session holds the row of now (none waited for). */
  async function stillHeld(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const held = new Set(await heldJobIds(store, inArray(jobs.jobId, [...ids])));
    for (const id of ids) if (!held.has(id)) heldBefore.delete(id);
    return held;
  }

  /** The held jobs a `locked` refusal names. */
  const heldJobsOf = (error: unknown): Set<string> => {
    const ids = error instanceof AppError && error.code === "locked" ? error.details.jobIds : [];
    return new Set(Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : []);
  };

  /**
   * The lines of `reads` whose memo names a job of `held` whose row neither names nor keeps
   * them yet (`notNamedYet`): keeping one writes the held row. Each with that job.
   */
  async function linesWaitingFor(
    reads: readonly LineRead[],
    held: ReadonlySet<string>,
  ): Promise<LineWaiting[]> {
    if (held.size === 0) return [];
    const pairs = reads.flatMap((l) =>
      memoJobsOfLine(l)
        .filter((m) => held.has(m.jobId))
        .map((m) => ({ signature: l.signature, job: m.jobId })),
    );
    const { open } = await notNamedYet(db, pairs);
    const waiting = new Map<string, LineWaiting>();
    for (const { signature, job } of open) {
      if (!waiting.has(signature)) waiting.set(signature, { signature, jobId: job });
    }
    return [...waiting.values()];
  }

  const vaultIs = (vault: string) => eq(ledgerLines.vault, vault);
  // The newest line that knows the vault's owner: one that does not show it (a SOL transfer
  // carries no token balances) says nothing of whose the vault is.
  const newestKnownOwner = async (vault: string) =>
    (
      await db
        .select({ ...findingColumns, owner: ledgerLines.otherOwner })
        .from(ledgerLines)
        .where(
          and(vaultIs(vault), eq(ledgerLines.state, "read"), isNotNull(ledgerLines.ownerAfter)),
        )
        .orderBy(desc(ledgerLines.ord))
        .limit(1)
    )[0];
  const periodOf = (from: number, to: number) =>
    and(gte(ledgerLines.blockTime, from), lt(ledgerLines.blockTime, to));
  const moves = and(eq(ledgerLines.state, "read"), ne(ledgerLines.deltaUnits, 0n));
  /** The nearest block time of the vault's lines below (or above) a line, in chain order. */
  const datedNeighbour = (below: boolean) =>
    sql`(SELECT b.block_time FROM ledger_lines b WHERE b.vault = ledger_lines.vault
      AND ${below ? sql`b.ord < ledger_lines.ord` : sql`b.ord > ledger_lines.ord`}
      AND b.block_time IS NOT NULL ORDER BY b.ord ${below ? sql`DESC` : sql`ASC`} LIMIT 1)`;
  /** A line with no block time whose dated neighbours leave it possibly in [from, to). */
  const undatedWithin = (from: number, to: number) =>
    and(
      isNull(ledgerLines.blockTime),
      sql`coalesce(${datedNeighbour(true)}, ${from}) < ${to}`,
      sql`coalesce(${datedNeighbour(false)}, ${from}) >= ${from}`,
    );

  async function cursorRow(q: PgExecutor, vault: string) {
    const [row] = await q
      .select({
        syncedAt: ledgerCursors.syncedAt,
        finalThrough: ledgerCursors.finalThrough,
        balanceUnits: ledgerCursors.balanceUnits,
        balanceSlot: ledgerCursors.balanceSlot,
        balanceForeign: ledgerCursors.balanceForeign,
        balanceControl: ledgerCursors.balanceControl,
        slot: sql<
          number | null
        >`coalesce(${ledgerCursors.syncTopSlot}, ${ledgerCursors.newestSlot})`.mapWith(Number),
        chainedOrd: ledgerCursors.chainedOrd,
        judgedThrough: ledgerCursors.judgedThrough,
        judgedAt: ledgerCursors.judgedAt,
        lastError: ledgerCursors.lastError,
      })
      .from(ledgerCursors)
      .where(eq(ledgerCursors.vault, vault));
    return row;
  }

  /** Which of `signatures` the vault holds a line of. */
  async function heldOf(q: PgExecutor, vault: string, signatures: readonly string[]) {
    if (signatures.length === 0) return new Set<string>();
    const rows = await q
      .select({ signature: ledgerLines.signature })
      .from(ledgerLines)
      .where(and(vaultIs(vault), inArray(ledgerLines.signature, [...signatures])));
    return new Set(rows.map((r) => r.signature));
  }

  async function selectCursor(q: PgExecutor, vault: string) {
    const [row] = await q
      .select({
        vault: ledgerCursors.vault,
        newestSignature: ledgerCursors.newestSignature,
        newestSlot: ledgerCursors.newestSlot,
        syncTop: ledgerCursors.syncTop,
        syncTopSlot: ledgerCursors.syncTopSlot,
        syncBefore: ledgerCursors.syncBefore,
        // Named with their table: the builder writes a column of the one table selected from
        // bare ("vault"), which inside this subquery is ledger_lines' own, so it matched every line
        // of every vault and read them all (SQLite: a scan of ledger_lines at every cursor read).
        syncBeforeSlot: sql<number | null>`(SELECT slot FROM ledger_lines
          WHERE ledger_lines.vault = ledger_cursors.vault
            AND ledger_lines.signature = ledger_cursors.sync_before)`.mapWith(Number),
        syncNumber: ledgerCursors.syncNumber,
        syncIndex: ledgerCursors.syncIndex,
      })
      .from(ledgerCursors)
      .where(eq(ledgerCursors.vault, vault));
    return row;
  }

  /**
   * Whether any API key is pinned to `vault` (see `canPayFrom`), read once per transaction: a
   * batch's classification and its releases read it each (a round trip per batch more), and
   * judged by what each read, which a key pinned on another host between the two could change.
   */
  const pinnedIn = new WeakMap<object, Map<string, Promise<boolean>>>();
  function isPinned(q: PgExecutor, vault: string): Promise<boolean> {
    const read = async () => {
      const rows = await q
        .select({ one: sql<number>`1` })
        .from(creditVaults)
        .where(eq(creditVaults.vault, vault))
        .limit(1);
      return rows.length > 0;
    };
    // Outside a transaction (the pool), each read is its own.
    if (!(q instanceof PgTransaction)) return read();
    let byVault = pinnedIn.get(q);
    if (byVault === undefined) {
      byVault = new Map();
      pinnedIn.set(q, byVault);
    }
    let pinned = byVault.get(vault);
    if (pinned === undefined) {
      pinned = read();
      byVault.set(vault, pinned);
    }
    return pinned;
  }

  /**
   * What is still out of each debit of each of `jobIds` in `vault` (`outstandingOf`), with the
   * lines `extra` adds as locks, and which debits the flags release: the SQLite store's
   * `outstanding` for a batch of jobs in three queries.
   */
  async function outstandingMany(
    q: PgExecutor,
    vault: string,
    jobIds: Iterable<string>,
    extra: readonly LedgerLineRow[],
    provisional: boolean,
  ): Promise<{ out: Map<string, Map<string, bigint>>; released: Set<string> }> {
    const ids = [...new Set(jobIds)];
    const out = new Map<string, Map<string, bigint>>();
    const released = new Set<string>();
    if (ids.length === 0) return { out, released };
    const any = textArray(ids);
    const rows = await q
      .select({
        signature: ledgerLines.signature,
        ord: ledgerLines.ord,
        deltaUnits: ledgerLines.deltaUnits,
        kind: ledgerLines.kind,
        jobId: ledgerLines.jobId,
        released: ledgerLines.released,
      })
      .from(ledgerLines)
      .where(
        and(
          vaultIs(vault),
          sql`${ledgerLines.jobId} = ANY (${any})`,
          lt(ledgerLines.deltaUnits, 0n),
          inArray(ledgerLines.kind, ["lock", "unexplained"]),
        ),
      );
    // A line counts once: as the return of the job it was filed under, else (a deposit until
    // its lock is read, say) for the job its settle or refund memo names.
    // Only what escrow paid in: the customer's own money in the same line is a deposit.
    const returns = await q.execute<{ job: string; units: string }>(sql`SELECT job,
        coalesce(sum(units), 0) AS units FROM (
        SELECT job_id AS job, delta_units - coalesce(deposit_in_units, 0) AS units
        FROM ledger_lines WHERE vault = ${vault} AND job_id = ANY (${any}) AND kind = 'return'
        UNION ALL SELECT memo_job_id, delta_units - coalesce(deposit_in_units, 0) FROM ledger_lines
        WHERE vault = ${vault} AND memo_kind IN ('settle', 'refund') AND delta_units > 0
          AND memo_job_id = ANY (${any}) AND kind IS DISTINCT FROM 'return') AS r
      GROUP BY job`);
    const returned = new Map(returns.rows.map((r) => [r.job, BigInt(r.units)]));
    const settlements = sql`ARRAY[${jobs.settlementTx}, ${jobs.apiSettlementTx}]`;
    const receiptLock = sql<boolean>`EXISTS (SELECT 1 FROM ledger_lines l
      WHERE l.vault = ${vault} AND l.signature = ${jobs.escrowTx})`.mapWith(Boolean);
    const paid = await q
      .select({
        jobId: jobs.jobId,
        keyFingerprint: jobs.keyFingerprint,
        creditVault: jobs.creditVault,
        escrowTx: jobs.escrowTx,
        settlementTx: jobs.settlementTx,
        apiSettlementTx: jobs.apiSettlementTx,
        escrowPaidUnits: jobs.escrowPaidUnits,
        sharedReturnUnits: jobs.sharedReturnUnits,
        chargedUnits: jobs.chargedUnits,
        // What the other decided jobs naming its settlement read it paying out beyond their own
        // locks (`sharedPaidOut`).
        sharedOverflowUnits: sql<string>`(SELECT coalesce(sum(o.charged_units
            - coalesce(o.escrow_paid_units, o.charged_units)), 0) FROM jobs o
          WHERE o.job_id <> ${jobs.jobId}
            AND o.verdict IN (${sql.raw(finalVerdicts.map((v) => `'${v}'`).join(", "))})
            AND (o.settlement_tx IN (${jobs.settlementTx}, ${jobs.apiSettlementTx})
              OR (o.api_settlement_tx IN (${jobs.settlementTx}, ${jobs.apiSettlementTx})
                AND o.api_settlement_tx IS NOT NULL
                AND o.api_settlement_tx IS DISTINCT FROM o.settlement_tx)))`.mapWith(
          (v: string | number) => BigInt(v),
        ),
        pinned: creditVaults.vault,
        decided: inArray(jobs.verdict, [...finalVerdicts]).mapWith(Boolean),
        receiptLock,
        // The settlement landed: the verifier's row of it, a line of this vault it moved, or a
        // line of this vault bringing money back with the job's settle memo (`JobSettlement`).
        landed: sql<boolean>`EXISTS (SELECT 1 FROM chain_transactions c
            WHERE c.signature = ANY (${settlements}) AND c.state = 'finalized' AND c.succeeded)
          OR EXISTS (SELECT 1 FROM ledger_lines l WHERE l.vault = ${vault}
            AND l.signature = ANY (${settlements}) AND l.state = 'read' AND l.succeeded)
          OR EXISTS (SELECT 1 FROM ledger_lines l WHERE l.vault = ${vault}
            AND l.memo_kind = 'settle' AND l.delta_units > 0 AND l.memo_job_id = ${jobs.jobId}
            AND coalesce(l.deposit_in_units, 0) < l.delta_units
            AND l.state = 'read' AND l.succeeded)`.mapWith(Boolean),
      })
      .from(jobs)
      .leftJoin(creditVaults, eq(creditVaults.keyFingerprint, jobs.keyFingerprint))
      .where(sql`${jobs.jobId} = ANY (${any})`);
    const pinned = await isPinned(q, vault);
    const settlementOf = new Map(
      paid.map((p) => [
        p.jobId,
        {
          tie: {
            keyFingerprint: p.keyFingerprint,
            declaredVault: p.creditVault,
            pinnedVault: p.pinned,
            receiptNamesLock: p.receiptLock,
            receiptNamesEscrow: p.escrowTx !== null,
          },
          decided: p.decided,
          paidOutUnits: sharedPaidOut(p.escrowPaidUnits ?? p.chargedUnits, p.sharedOverflowUnits),
          landed: p.landed,
          sharedReturnUnits: p.sharedReturnUnits,
        },
      ]),
    );
    // Grouped once: a round reviews every open lock of the vault, thousands of jobs.
    const rowsOf = groupBy(rows, (r) => r.jobId);
    const extraOf = groupBy(extra, (l) => l.jobId);
    // The stored facts of the locks and settlements of the jobs a statement counts settled
    // before the verifier decides them: only what the locks put into escrow counts.
    const provisionalJobs = provisional ? paid.filter((p) => !p.decided && p.landed) : [];
    const factsOf = new Map<string, string>();
    if (provisionalJobs.length > 0) {
      const signatures = provisionalJobs.flatMap((p) => [
        ...[p.settlementTx, p.apiSettlementTx].filter((sig): sig is string => sig !== null),
        ...(rowsOf.get(p.jobId) ?? []).map((r) => r.signature),
        ...(extraOf.get(p.jobId) ?? []).map((l) => l.signature),
      ]);
      const found = await q
        .select({
          signature: chainTransactions.signature,
          facts: sql<string>`${chainTransactions.facts}::text`,
        })
        .from(chainTransactions)
        .where(
          and(
            sql`${chainTransactions.signature} = ANY (${textArray([...new Set(signatures)])})`,
            isNotNull(chainTransactions.facts),
          ),
        );
      for (const f of found) factsOf.set(f.signature, f.facts);
    }
    const provisionalOf = new Map(
      provisionalJobs.map((p) => [
        p.jobId,
        [p.settlementTx, p.apiSettlementTx].flatMap((sig) => {
          const facts = sig === null ? undefined : factsOf.get(sig);
          return facts === undefined ? [] : [facts];
        }),
      ]),
    );
    // Every lock line, in every vault read, of each job tied to no vault (`lockTiedToNoVault`):
    // such a job's locks may be filed in each vault they drew on (`settledShareOfLocks`).
    const untied = ids.filter((job) => {
      const s = settlementOf.get(job);
      return s !== undefined && lockTiedToNoVault(s.tie);
    });
    const lockLinesOf = new Map<string, JobLockLine[]>();
    if (untied.length > 0) {
      const found = await q
        .select({
          jobId: ledgerLines.jobId,
          signature: ledgerLines.signature,
          vault: ledgerLines.vault,
          slot: ledgerLines.slot,
          deltaUnits: ledgerLines.deltaUnits,
          facts: sql<string | null>`${chainTransactions.facts}::text`,
        })
        .from(ledgerLines)
        .leftJoin(
          chainTransactions,
          and(
            eq(chainTransactions.signature, ledgerLines.signature),
            isNotNull(chainTransactions.facts),
          ),
        )
        .where(
          and(
            sql`${ledgerLines.vault} IN (SELECT ${ledgerCursors.vault} FROM ${ledgerCursors})`,
            sql`${ledgerLines.jobId} = ANY (${textArray(untied)})`,
            eq(ledgerLines.kind, "lock"),
            lt(ledgerLines.deltaUnits, 0n),
          ),
        );
      for (const f of found) {
        const job = f.jobId!;
        lockLinesOf.set(job, [
          ...(lockLinesOf.get(job) ?? []),
          {
            signature: f.signature,
            vault: f.vault,
            slot: Number(f.slot),
            units: -(f.deltaUnits ?? 0n),
            facts: f.facts,
          },
        ]);
      }
      // This statement's late locks of the vault, not stored as locks yet.
      const late = extra.filter(
        (l) =>
          l.jobId !== null &&
          l.deltaUnits < 0n &&
          untied.includes(l.jobId) &&
          !(lockLinesOf.get(l.jobId) ?? []).some(
            (o) => o.vault === vault && o.signature === l.signature,
          ),
      );
      const lateFacts = new Map<string, string>();
      if (late.length > 0) {
        const rows = await q
          .select({
            signature: chainTransactions.signature,
            facts: sql<string>`${chainTransactions.facts}::text`,
          })
          .from(chainTransactions)
          .where(
            and(
              sql`${chainTransactions.signature} = ANY (${textArray(late.map((l) => l.signature))})`,
              isNotNull(chainTransactions.facts),
            ),
          );
        for (const r of rows) lateFacts.set(r.signature, r.facts);
      }
      for (const l of late) {
        lockLinesOf.set(l.jobId!, [
          ...(lockLinesOf.get(l.jobId!) ?? []),
          {
            signature: l.signature,
            vault,
            slot: l.slot,
            units: -l.deltaUnits,
            facts: lateFacts.get(l.signature) ?? null,
          },
        ]);
      }
    }
    for (const job of ids) {
      const mine = rowsOf.get(job) ?? [];
      const late = extraOf.get(job) ?? [];
      const lateSigs = new Set(late.map((l) => l.signature));
      const debits: JobDebit[] = mine.map((r) => ({
        signature: r.signature,
        ord: r.ord,
        units: -(r.deltaUnits ?? 0n),
        lock: r.kind === "lock" || lateSigs.has(r.signature),
      }));
      const stored = new Set(mine.map((r) => r.signature));
      for (const l of late) {
        if (stored.has(l.signature) || l.deltaUnits >= 0n) continue;
        debits.push({ signature: l.signature, ord: l.ord, units: -l.deltaUnits, lock: true });
      }
      // Counted settled before the verifier decides: only what the locks put into escrow, less
      // what came back of it (the returns cover that part).
      const settlementFacts = provisionalOf.get(job);
      const back = returned.get(job) ?? 0n;
      const intoEscrow = debits.reduce(
        (sum, d) =>
          !d.lock
            ? sum
            : sum +
              (settlementFacts === undefined
                ? d.units
                : provisionalLockUnits(
                    d.units,
                    vault,
                    factsOf.get(d.signature) ?? null,
                    settlementFacts,
                  )),
        0n,
      );
      const locked =
        settlementFacts === undefined ? intoEscrow : intoEscrow > back ? intoEscrow - back : 0n;
      const settlement = settlementOf.get(job);
      let settled = settlement ? settledUnits(settlement, vault, pinned, locked, provisional) : 0n;
      const lockLines = lockLinesOf.get(job);
      if (settled > 0n && lockLines !== undefined) {
        const share = settledShareOfLocks(settled, vault, lockLines);
        if (share !== null) settled = share;
      }
      const backAll = settlement ? withSharedReturn(back, settlement, vault, pinned) : back;
      out.set(job, outstandingOf(debits, backAll, settled));
      for (const r of mine) if (r.released) released.add(r.signature);
    }
    return { out, released };
  }

  /** Releases the debits of `jobIds` in `vault` nothing is still out of; how many it released. */
  async function releaseAccounted(
    tx: PgExecutor,
    vault: string,
    jobIds: Iterable<string>,
  ): Promise<number> {
    const { out, released } = await outstandingMany(tx, vault, jobIds, [], false);
    const release: string[] = [];
    for (const perJob of out.values()) {
      for (const [signature, left] of perJob) {
        if (left === 0n && !released.has(signature)) release.push(signature);
      }
    }
    if (release.length === 0) return 0;
    await tx
      .update(ledgerLines)
      .set({ released: true })
      .where(and(vaultIs(vault), sql`${ledgerLines.signature} = ANY (${textArray(release)})`));
    return release.length;
  }

  /**
   * What each read line is, by the receipts recorded now: `classify` of the SQLite store for a
   * batch, with two queries for the whole batch (the jobs naming its signatures, and the jobs
   * whose lock this vault paid by memo). With `inOrder`, a line's escrow memo counts for the
   * lines after it, as when each line is written before the next is classified; without, the
   * stored lines are all there is (classifying never changes what the next line reads).
   */
  async function classifyMany(
    q: PgExecutor,
    vault: string,
    lines: readonly Classifiable[],
    inOrder = false,
  ): Promise<{ kind: LineKind; jobId: string | null }[]> {
    const moving = [...new Set(lines.filter((l) => l.delta !== 0n).map((l) => l.signature))];
    // Every job naming a debit as its lock: of those that can pay from this vault, the one its
    // escrow memo names, else receipts first, the first by id (`lockOwner`), owns it. Every job
    // naming a credit as its settlement: the one its memo names, if any, owns it.
    const lock = new Map<string, { jobId: string; tie: JobTie }[]>();
    const apiLock = new Map<string, { jobId: string; tie: JobTie }[]>();
    // Jobs naming a debit as their settlement or refund (`lockOfClosingNamer`).
    const closing = new Map<string, { jobId: string; tie: JobTie }[]>();
    const ret = new Map<
      string,
      Map<string, Pick<JobTie, "keyFingerprint" | "declaredVault" | "pinnedVault">>
    >();
    if (moving.length > 0) {
      const any = textArray(moving);
      const rows = await q
        .select({
          jobId: jobs.jobId,
          escrowTx: jobs.escrowTx,
          apiEscrowTx: jobs.apiEscrowTx,
          settlementTx: jobs.settlementTx,
          apiSettlementTx: jobs.apiSettlementTx,
          keyFingerprint: jobs.keyFingerprint,
          creditVault: jobs.creditVault,
          pinned: creditVaults.vault,
        })
        .from(jobs)
        .leftJoin(creditVaults, eq(creditVaults.keyFingerprint, jobs.keyFingerprint))
        .where(
          or(
            sql`${jobs.escrowTx} = ANY (${any})`,
            sql`${jobs.apiEscrowTx} = ANY (${any}) AND ${jobs.apiEscrowTx} IS DISTINCT FROM ${jobs.escrowTx}`,
            sql`${jobs.settlementTx} = ANY (${any})`,
            sql`${jobs.apiSettlementTx} = ANY (${any}) AND ${jobs.apiSettlementTx} IS DISTINCT FROM ${jobs.settlementTx}`,
          ),
        );
      const named = (signature: string | null, r: (typeof rows)[number]) => {
        if (signature === null) return;
        const tie = {
          keyFingerprint: r.keyFingerprint,
          declaredVault: r.creditVault,
          pinnedVault: r.pinned,
        };
        const jobIds = ret.get(signature);
        if (jobIds) jobIds.set(r.jobId, tie);
        else ret.set(signature, new Map([[r.jobId, tie]]));
      };
      const every = (
        map: Map<string, { jobId: string; tie: JobTie }[]>,
        signature: string | null,
        r: (typeof rows)[number],
        receiptNamesLock: boolean,
      ) => {
        if (signature === null) return;
        const tie = {
          keyFingerprint: r.keyFingerprint,
          declaredVault: r.creditVault,
          pinnedVault: r.pinned,
          receiptNamesLock,
          receiptNamesEscrow: r.escrowTx !== null,
        };
        map.set(signature, [...(map.get(signature) ?? []), { jobId: r.jobId, tie }]);
      };
      for (const r of rows) {
        every(lock, r.escrowTx, r, true);
        if (r.apiEscrowTx !== r.escrowTx) every(apiLock, r.apiEscrowTx, r, false);
        every(closing, r.settlementTx, r, true);
        if (r.apiSettlementTx !== r.settlementTx) every(closing, r.apiSettlementTx, r, false);
        named(r.settlementTx, r);
        named(r.apiSettlementTx, r);
      }
    }
    const pinned = lock.size + apiLock.size + ret.size > 0 ? await isPinned(q, vault) : false;
    // The jobs a credit's memos name, first memo first: money in under a job's escrow memo is
    // no honest step, and is that job's as a settle or refund memo's would be.
    const returnIds = (l: Classifiable) =>
      l.delta > 0n ? memoJobsOfLine(l).map((m) => m.jobId) : [];
    const memoIds = [...new Set(lines.flatMap(returnIds))];
    // Jobs whose lock this vault paid: a debit with their escrow memo, or their recorded lock.
    const lockedHere = new Set<string>();
    if (memoIds.length > 0) {
      const ids = textArray(memoIds);
      const rows = await q.execute<{ job: string }>(sql`SELECT memo_job_id AS job
        FROM ledger_lines WHERE vault = ${vault} AND memo_kind = 'escrow' AND delta_units < 0
          AND memo_job_id = ANY (${ids})
        UNION SELECT job_id FROM ledger_lines WHERE vault = ${vault} AND job_id = ANY (${ids})
          AND kind = 'lock'`);
      for (const r of rows.rows) if (r.job !== null) lockedHere.add(r.job);
    }
    return lines.map((line) => {
      if (inOrder && line.memoKind === "escrow" && line.delta < 0n && line.memoJobId !== null) {
        lockedHere.add(line.memoJobId);
      }
      if (line.delta === 0n) return { kind: "none", jobId: null };
      if (line.delta < 0n) {
        const named = [...(lock.get(line.signature) ?? []), ...(apiLock.get(line.signature) ?? [])];
        const job =
          lockOwner(named, escrowMemoJobOf(line), vault, pinned) ??
          lockOfClosingNamer(closing.get(line.signature) ?? [], line, vault, pinned);
        if (job !== undefined) {
          if (inOrder) lockedHere.add(job.jobId);
          return { kind: "lock", jobId: job.jobId };
        }
        return { kind: "unexplained", jobId: jobOfUnexplainedDebit(memoJobsOfLine(line)) };
      }
      // Money escrow paid none of (the customer's own top-up under a job's memo): a deposit.
      if ((line.depositIn ?? 0n) >= line.delta) return { kind: "deposit", jobId: null };
      for (const job of returnIds(line)) {
        const namer = ret.get(line.signature)?.get(job);
        if (lockedHere.has(job) || (namer !== undefined && mayReturnTo(namer, vault, pinned))) {
          return { kind: "return", jobId: job };
        }
      }
      return { kind: "deposit", jobId: null };
    });
  }

  /**
   * Keeps each line's transaction with the jobs it is kept with when they name it nowhere yet
   * (up to `maxKeptSignatures`, one past those followed), and sends the jobs that gained one
   * back to the verifier: the job `jobKeepingLine` gives, and, for a line whose memos name
   * several, each job it would be filed under were that job's memo its only one (see
   * `keepersOf` in src/store/ledger.ts). One guarded UPDATE per line and job: a receipt or an
   * answer writing the same job at once is waited for, and the row re-read, before the guard
   * holds. The pairs whose job is not recorded go to `unrecorded`, for `keepWithJobsRecorded`
   * before the transaction commits.
   */
  async function keepWithJobs(
    tx: PgExecutor,
    vault: string,
    lines: readonly { line: Classifiable; c: { kind: LineKind; jobId: string | null } }[],
    now: number,
    unrecorded: KeepPair[],
  ): Promise<void> {
    const keep = new Map<string, { signature: string; job: string }>();
    const add = (signature: string, job: string) =>
      keep.set(`${job} ${signature}`, { signature, job });
    const alone: { line: Classifiable; job: string }[] = [];
    for (const { line, c } of lines) {
      const filed = jobKeepingLine(c);
      if (filed !== null) add(line.signature, filed);
      for (const m of line.memoJobs ?? []) {
        if (m.jobId === filed) continue;
        alone.push({
          line: { ...line, memoKind: m.kind, memoJobId: m.jobId, memoJobs: null },
          job: m.jobId,
        });
      }
    }
    if (alone.length > 0) {
      const kinds = await classifyMany(
        tx,
        vault,
        alone.map((a) => a.line),
      );
      for (const [i, a] of alone.entries()) {
        if (jobKeepingLine(kinds[i]!) === a.job) add(a.line.signature, a.job);
      }
    }
    const { open, absent } = await notNamedYet(tx, [...keep.values()]);
    unrecorded.push(...absent);
    await keepPairs(tx, open, now);
  }

  /**
   * Keeps each signature with its job (guarded, see `keepWithJobPg`) and sends the jobs that
   * gained one back to the verifier.
   */
  async function keepPairs(
    tx: PgExecutor,
    pairs: readonly KeepPair[],
    now: number,
    cap: number = maxKeptSignatures,
  ): Promise<string[]> {
    if (pairs.length === 0) return [];
    // In job id order, as other writers of several jobs lock them, so two wait, not deadlock.
    const sorted = [...pairs].sort((a, b) => (a.job < b.job ? -1 : a.job > b.job ? 1 : 0));
    // After the receipt writers' turn, before the first job row: a receipt group locks its
    // existing jobs in the order its receipts came, not by id, and deadlocked with this.
    await takeTurn(tx);
    const gained: string[] = [];
    for (const { signature, job } of sorted) {
      const kept = await namingHeldRows(eq(jobs.jobId, job), () =>
        keepWithJobPg(tx, job, signature, now, cap),
      );
      if (kept !== null) gained.push(job);
    }
    if (gained.length > 0) await reopenJobsPg(tx, { jobIds: gained }, now);
    return [...new Set(gained)];
  }

  /**
   * Keeps the lines whose job was not recorded when `keepWithJobs` read it with that job if it is
   * recorded now, as the last writes of the transaction. A receipt creating the job committed
   * after that read, and a verifier claimed the job before this transaction committed: the
   * claim, which keeps the lines read early (`keepEarlyLinesPg`), saw none of this transaction's,
   * the job was judged without its unnamed refund and never again. Under the receipt writers'
   * turn, so a receipt committing later is claimed only after this commit, and sees the lines.
   */
  async function keepWithJobsRecorded(
    tx: PgExecutor,
    unrecorded: readonly KeepPair[],
    now: number,
  ): Promise<void> {
    if (unrecorded.length === 0) return;
    await takeTurn(tx);
    // A later statement than the turn: it sees every receipt committed before it was granted.
    await keepPairs(tx, (await notNamedYet(tx, unrecorded)).open, now);
  }

  /** What the jobs of `pairs` name of their steps, as committed now: one read. */
  function namedStepsOf(tx: PgExecutor, pairs: readonly KeepPair[]): Promise<NamedSteps[]> {
    return tx
      .select(namedStepsSelection(jobs))
      .from(jobs)
      .where(sql`${jobs.jobId} = ANY (${textArray([...new Set(pairs.map((p) => p.job))])})`);
  }

  /**
   * The pairs of `pairs` whose job, as committed now, neither names the signature nor keeps it
   * already: one read for a batch. Most lines a batch files under a job are its own steps (its
   * lock, its settlement's return), which `keepWithJobPg` leaves alone; its guarded UPDATE per
   * line was a round trip each (a third of a ledger batch's statements) and took the receipt
   * writers' turn for nothing. What is left still goes through the guard, under the row lock.
   * `absent`: the pairs whose job is not recorded.
   */
  async function notNamedYet(
    tx: PgExecutor,
    pairs: readonly KeepPair[],
  ): Promise<{ open: KeepPair[]; absent: KeepPair[] }> {
    if (pairs.length === 0) return { open: [], absent: [] };
    const rows = await namedStepsOf(tx, pairs);
    const byId = new Map(rows.map((r) => [r.jobId, r]));
    const open = pairs.filter(({ signature, job }) => {
      const row = byId.get(job);
      if (row === undefined) return false;
      const named = [row.escrowTx, row.settlementTx, row.apiEscrowTx, row.apiSettlementTx];
      return (
        !named.includes(signature) && !(Array.isArray(row.kept) && row.kept.includes(signature))
      );
    });
    return { open, absent: pairs.filter(({ job }) => !byId.has(job)) };
  }

  /**
   * Stores a line's kind and the releases it causes (inside the caller's transaction). A line
   * kept with a job that did not name it (`jobKeepingLine`) sends that job back to the verifier.
   */
  async function applyKind(
    tx: PgExecutor,
    vault: string,
    line: Classifiable,
    c: { kind: LineKind; jobId: string | null },
    now: number,
    unrecorded: KeepPair[],
  ): Promise<number> {
    await tx
      .update(ledgerLines)
      .set({ kind: c.kind, jobId: c.jobId })
      .where(and(vaultIs(vault), eq(ledgerLines.signature, line.signature)));
    await keepWithJobs(tx, vault, [{ line, c }], now, unrecorded);
    return releaseAccounted(tx, vault, jobsALineNames(line, c.jobId));
  }

  /**
   * Of `signatures`, the finalized transactions naming no account of `vault`'s, with where the
   * chain put them (`NamedSettlement`).
   */
  async function settlementsOutside(
    q: PgExecutor,
    vault: string,
    signatures: readonly string[],
  ): Promise<Map<string, NamedSettlement["outsideAt"]>> {
    if (signatures.length === 0) return new Map();
    const rows = await q
      .select({
        signature: chainTransactions.signature,
        slot: chainTransactions.slot,
        blockTime: chainTransactions.blockTime,
      })
      .from(chainTransactions)
      .where(
        and(
          sql`${chainTransactions.signature} = ANY (${textArray(signatures)})`,
          eq(chainTransactions.state, "finalized"),
          isNotNull(chainTransactions.facts),
          sql`NOT EXISTS (SELECT 1 FROM json_array_elements_text(${chainTransactions.facts} -> 'accounts') a
            WHERE a = ${vault})`,
        ),
      );
    return new Map(
      rows.map((r) => [
        r.signature,
        r.slot === null ? null : { slot: r.slot, blockTime: r.blockTime },
      ]),
    );
  }

  /**
   * Where each span of a job whose response came at its `ResponseTimes` and whose receipt names
   * `settlementTx` ends among `vault`'s lines (`headerSpanEnd`), the settlements' lines in one
   * read.
   */
  async function spanEndsOf(
    q: PgExecutor,
    vault: string,
    asks: readonly (ResponseTimes & { jobId: string; settlementTx: string | null })[],
  ): Promise<HeaderSpanEnd[]> {
    const named = [...new Set(asks.flatMap((a) => (a.settlementTx ? [a.settlementTx] : [])))];
    const lines =
      named.length === 0
        ? []
        : await q
            .select({
              signature: ledgerLines.signature,
              ord: ledgerLines.ord,
              blockTime: ledgerLines.blockTime,
              state: ledgerLines.state,
              succeeded: ledgerLines.succeeded,
              memoKind: ledgerLines.memoKind,
              memoJobId: ledgerLines.memoJobId,
              memoJobs: ledgerLines.memoJobs,
              // The jobs whose settle or refund memo a succeeded line of the vault below it carries.
              // (The outer line by its table's name: a selected column is written unqualified.)
              settledBefore: sql<string[]>`ARRAY(SELECT e.memo_job_id FROM ledger_lines e
                WHERE e.vault = ledger_lines.vault AND e.ord < ledger_lines.ord
                  AND e.memo_kind IN ('settle', 'refund') AND e.succeeded
                  AND e.memo_job_id = ANY (${textArray(asks.map((a) => a.jobId))}))`,
              depositInUnits: ledgerLines.depositInUnits,
            })
            .from(ledgerLines)
            .where(and(vaultIs(vault), sql`${ledgerLines.signature} = ANY (${textArray(named)})`));
    const lineOf = new Map(lines.map((l) => [l.signature, l]));
    const outside = await settlementsOutside(
      q,
      vault,
      named.filter((s) => !lineOf.has(s)),
    );
    return asks.map((a) => {
      const line = a.settlementTx === null ? undefined : lineOf.get(a.settlementTx);
      return headerSpanEnd(a, a.jobId, {
        named: a.settlementTx !== null,
        outside: a.settlementTx !== null && outside.has(a.settlementTx),
        outsideAt: a.settlementTx === null ? null : outside.get(a.settlementTx),
        line: line
          ? {
              ...line,
              memoJobs: memoJobsOf(line.memoJobs),
              settledBefore: line.settledBefore.includes(a.jobId),
            }
          : null,
      });
    });
  }

  /**
   * The vault's balance after each line from the lock at `lockOrd` through the job's response
   * (`end`), how many first ones surely came before it (`HeaderSpanReading`), and whether every
   * line of that span is read and the history listed past it.
   */
  async function spanFrom(
    q: PgExecutor,
    vault: string,
    lockOrd: number,
    end: HeaderSpanEnd,
    finalThrough: number | null,
    header: bigint | null = null,
  ): Promise<HeaderSpan> {
    const span = new HeaderSpanReading(end);
    let ord = lockOrd;
    let spanEnded = false;
    while (!spanEnded) {
      const rows = await spanLines(q, vault, ord, 256);
      for (const r of rows) {
        if (!span.take(r)) {
          spanEnded = true;
          break;
        }
        ord = r.ord + 1;
        // Every reader stops at the balance its header matches: what lies past it is never
        // asked, and a receipt recorded long after its lock spans every line between.
        if (header !== null && r.postUnits !== null && headerMatches(header, r.postUnits)) {
          return { end, balances: span.balances, ordered: span.ordered, covered: !span.unread };
        }
      }
      if (rows.length < 256) break;
    }
    // Past the span, or the history is listed through its end (the chain had finalized past
    // it when it was listed): nothing more will match.
    const covered = !span.unread && headerSpanCovered(end, spanEnded, finalThrough);
    return { end, balances: span.balances, ordered: span.ordered, covered };
  }

  /** Up to `limit` of `vault`'s lines from `ord` on, in order, as a header's span reads them. */
  function spanLines(q: PgExecutor, vault: string, ord: number, limit: number) {
    return q
      .select({
        ord: ledgerLines.ord,
        slot: ledgerLines.slot,
        blockTime: ledgerLines.blockTime,
        postUnits: ledgerLines.postUnits,
        state: ledgerLines.state,
      })
      .from(ledgerLines)
      .where(and(vaultIs(vault), gte(ledgerLines.ord, ord)))
      .orderBy(asc(ledgerLines.ord))
      .limit(limit);
  }

  /**
   * `spanFrom` of many spans of one vault at once: the vault's lines are read once, a page at a
   * time from the first span's lock, each span taking what it would have read alone, until
   * every span has ended (or its header matched). A review or a statement checks every open
   * lock's header: one span each was two or three round trips a lock, most of a ledger round.
   */
  async function spansFrom(
    q: PgExecutor,
    vault: string,
    asks: readonly {
      jobId: string;
      lockOrd: number;
      recordedAt: number;
      respondedAt: number | null;
      settlementTx: string | null;
      header: bigint | null;
    }[],
    finalThrough: number | null,
  ): Promise<HeaderSpan[]> {
    const ends = await spanEndsOf(q, vault, asks);
    const spans = asks.map((a, i) => ({
      ...a,
      reading: new HeaderSpanReading(ends[i]!),
      ended: false,
      matched: false,
    }));
    const order = [...spans].sort((a, b) => a.lockOrd - b.lockOrd);
    let waiting = spans.length;
    let started = 0;
    let active: typeof spans = [];
    let ord = order[0]?.lockOrd ?? 0;
    while (waiting > 0) {
      const rows = await spanLines(q, vault, ord, SPAN_PAGE);
      for (const r of rows) {
        // Each span starts at the first line at or after its lock (the lock's own line).
        while (started < order.length && order[started]!.lockOrd <= r.ord) {
          active.push(order[started++]!);
        }
        for (const span of active) {
          if (span.ended || span.matched) continue;
          if (!span.reading.take(r)) {
            span.ended = true;
            waiting--;
            continue;
          }
          // As `spanFrom`: what lies past the balance a header matches is never asked.
          if (
            span.header !== null &&
            r.postUnits !== null &&
            headerMatches(span.header, r.postUnits)
          ) {
            span.matched = true;
            waiting--;
          }
        }
        active = active.filter((span) => !span.ended && !span.matched);
        ord = r.ord + 1;
        if (waiting === 0) break;
      }
      if (rows.length < SPAN_PAGE) break;
    }
    return spans.map(({ reading, ended, matched }) => ({
      end: reading.end,
      balances: reading.balances,
      ordered: reading.ordered,
      covered: !reading.unread && (matched || headerSpanCovered(reading.end, ended, finalThrough)),
    }));
  }

  /**
   * The credits header of each lock against the balances up to its job's response (null for a
   * lock of no job or a job with no header), in `locks`' order: one read of the jobs, then
   * `spansFrom`.
   */
  async function headerChecks(
    q: PgExecutor,
    vault: string,
    locks: readonly LedgerLineRow[],
    finalThrough: number | null,
  ): Promise<(HeaderCheck | null)[]> {
    const ids = [...new Set(locks.flatMap((l) => (l.jobId === null ? [] : [l.jobId])))];
    if (ids.length === 0) return locks.map(() => null);
    const rows = await q
      .select({
        jobId: jobs.jobId,
        header: jobs.creditsRemainingUnits,
        recordedAt: jobs.recordedAt,
        respondedAt: jobs.respondedAt,
        settlementTx: jobs.settlementTx,
      })
      .from(jobs)
      .where(sql`${jobs.jobId} = ANY (${textArray(ids)})`);
    const jobOf = new Map(rows.map((r) => [r.jobId, r]));
    const asked = locks.flatMap((lock) => {
      const job = lock.jobId === null ? undefined : jobOf.get(lock.jobId);
      if (job === undefined || job.header === null) return [];
      return [
        {
          lock,
          jobId: job.jobId,
          header: job.header,
          recordedAt: job.recordedAt,
          respondedAt: job.respondedAt,
          settlementTx: job.settlementTx,
        },
      ];
    });
    const spans = await spansFrom(
      q,
      vault,
      asked.map((a) => ({ ...a, lockOrd: a.lock.ord })),
      finalThrough,
    );
    const checkOf = new Map<LedgerLineRow, HeaderCheck>();
    for (const [i, { lock, header }] of asked.entries()) {
      const span = spans[i]!;
      const at = span.balances.findIndex((b) => headerMatches(header, b));
      checkOf.set(lock, {
        jobId: lock.jobId!,
        headerUnits: header,
        balancesUnits: at >= 0 ? span.balances.slice(0, at) : span.balances,
        matched: at >= 0,
        decided: at >= 0 || span.covered,
        lasting: at >= 0 && headerMatchLasts(span.end, at < span.ordered),
      });
    }
    return locks.map((lock) => checkOf.get(lock) ?? null);
  }

  /** The span of a job's lock (`signature`) in `vault`; nothing known while it is not read. */
  async function spanOfLock(
    q: PgExecutor,
    vault: string,
    jobId: string,
    signature: string,
    times: ResponseTimes,
    settlementTx: string | null,
    finalThrough: number | null,
    header: bigint | null = null,
  ): Promise<HeaderSpan> {
    const [lock] = await q
      .select({ ord: ledgerLines.ord, state: ledgerLines.state })
      .from(ledgerLines)
      .where(and(vaultIs(vault), eq(ledgerLines.signature, signature)));
    const [end] = await spanEndsOf(q, vault, [{ ...times, jobId, settlementTx }]);
    if (lock?.state !== "read") return { end: end!, balances: [], ordered: 0, covered: false };
    return spanFrom(q, vault, lock.ord, end!, finalThrough, header);
  }

  /** The last movement at or before `ord`: where a comparison of balances starts. */
  async function movementAtOrBefore(q: PgExecutor, vault: string, ord: number) {
    const [row] = await q
      .select(lineColumns)
      .from(ledgerLines)
      .where(and(vaultIs(vault), lte(ledgerLines.ord, ord), moves))
      .orderBy(desc(ledgerLines.ord))
      .limit(1);
    return row ? toLine(row) : null;
  }

  /** The held lines of the one slot of a gap's two lines, when they are together; else null. */
  async function slotBlock(q: PgExecutor, vault: string, gap: GapLines) {
    const slotOf = async (signature: string) =>
      (
        await q
          .select({ slot: ledgerLines.slot })
          .from(ledgerLines)
          .where(and(vaultIs(vault), eq(ledgerLines.signature, signature)))
      )[0]?.slot;
    const slot = await slotOf(gap.afterSignature);
    if (slot === undefined || slot !== (await slotOf(gap.beforeSignature))) return null;
    const lines = (
      await q
        .select({
          signature: ledgerLines.signature,
          ord: ledgerLines.ord,
          state: ledgerLines.state,
          preUnits: ledgerLines.preUnits,
          postUnits: ledgerLines.postUnits,
          deltaUnits: ledgerLines.deltaUnits,
        })
        .from(ledgerLines)
        .where(and(vaultIs(vault), eq(ledgerLines.slot, slot)))
        .orderBy(asc(ledgerLines.ord))
    ).map((r) => ({ ...r, read: r.state === "read" }));
    const low = lines[0]!.ord;
    const high = lines.at(-1)!.ord;
    const [within] = await q
      .select({ n: count() })
      .from(ledgerLines)
      .where(and(vaultIs(vault), gte(ledgerLines.ord, low), lte(ledgerLines.ord, high)));
    if (within?.n !== lines.length) return null;
    return { slot: Number(slot), lines, low, high };
  }

  /**
   * Moves each read line of the walk's next page above `afterOrd` held just above a line of a
   * later slot down to its place by its transaction's slot; returns where the walk must start
   * (see `placeBySlot` in src/store/ledger.ts).
   */
  async function placeBySlot(tx: PgExecutor, vault: string, afterOrd: number): Promise<number> {
    let from = afterOrd;
    const txSlot = sql`coalesce(c.slot, l.slot)`;
    for (;;) {
      const [r] = (
        await tx.execute(sql`SELECT signature, ord, slot FROM (
            SELECT l.signature, l.ord, l.state, ${txSlot} AS slot,
              lag(${txSlot}) OVER (ORDER BY l.ord) AS below
            FROM ledger_lines l LEFT JOIN chain_transactions c ON c.signature = l.signature
            WHERE l.vault = ${vault} AND l.ord >= coalesce((SELECT max(ord) FROM ledger_lines
              WHERE vault = ${vault} AND ord <= ${from}), ${from})
              AND l.ord <= coalesce((SELECT ord FROM ledger_lines WHERE vault = ${vault}
                AND ord > ${from} ORDER BY ord LIMIT 1 OFFSET ${WALK_PAGE - 1}),
                ${Number.MAX_SAFE_INTEGER})) AS o
          WHERE state = 'read' AND ord > ${from} AND below > slot ORDER BY ord LIMIT 1`)
      ).rows as { signature: string; ord: string | number; slot: string | number }[];
      if (r === undefined) return from;
      const ord = Number(r.ord);
      const [place] = (
        await tx.execute(sql`SELECT coalesce(
            (SELECT l.ord FROM ledger_lines l LEFT JOIN chain_transactions c
               ON c.signature = l.signature
             WHERE l.vault = ${vault} AND l.ord < ${ord} AND ${txSlot} <= ${Number(r.slot)}
             ORDER BY l.ord DESC LIMIT 1),
            (SELECT min(ord) - 1 FROM ledger_lines WHERE vault = ${vault})) AS after`)
      ).rows as { after: string | number }[];
      const after = Number(place!.after);
      await tx
        .update(ledgerLines)
        .set({ ord: sql`${ledgerLines.ord} + 1` })
        .where(and(vaultIs(vault), gt(ledgerLines.ord, after), lt(ledgerLines.ord, ord)));
      await tx
        .update(ledgerLines)
        .set({ ord: after + 1 })
        .where(and(vaultIs(vault), eq(ledgerLines.signature, r.signature)));
      await tx
        .update(ledgerLines)
        .set({ gapAfterSignature: null, gapAfterSlot: null, gapUnits: null })
        .where(and(vaultIs(vault), isNotNull(ledgerLines.gapUnits), gt(ledgerLines.ord, after)));
      from = Math.min(from, after);
    }
  }

  /**
   * Walks on from the cursor's mark for a slice (`walkLines`), placing each page's lines by slot
   * first (`placeBySlot`), storing the gaps it finds and counting them in `result`, and moves the
   * mark: whether lines are left.
   */
  async function walkOn(tx: PgExecutor, vault: string, result: ReviewResult): Promise<boolean> {
    const chained = (await cursorRow(tx, vault))?.chainedOrd ?? -1;
    const { walked, more, gaps } = await walkAsync(
      walkLines<LineDb & { state: string }>(
        chained,
        await movementAtOrBefore(tx, vault, chained),
        toLine,
        WALK_PAGE,
      ),
      async (ord) => {
        const from = await placeBySlot(tx, vault, ord);
        const rows = await tx
          .select(lineWithState)
          .from(ledgerLines)
          .where(and(vaultIs(vault), gt(ledgerLines.ord, from)))
          .orderBy(asc(ledgerLines.ord))
          .limit(WALK_PAGE);
        if (from === ord) return { rows };
        return { rows, restart: { from, prev: await movementAtOrBefore(tx, vault, from) } };
      },
    );
    for (const gap of gaps) {
      await tx
        .update(ledgerLines)
        .set({
          gapAfterSignature: gap.afterSignature,
          gapAfterSlot: gap.fromSlot,
          gapUnits: gap.missingUnits,
        })
        .where(and(vaultIs(vault), eq(ledgerLines.signature, gap.beforeSignature)));
      result.gaps++;
    }
    if (walked !== chained) {
      await tx
        .update(ledgerCursors)
        .set({ chainedOrd: walked })
        .where(eq(ledgerCursors.vault, vault));
    }
    return more;
  }

  /**
   * Which of the transactions about to be stored a row gave up on (dropped, pruned; see
   * `reopenHolders` in src/store/job-queue.ts). Their rows locked in signature order, the
   * order of `upsertTransactions` and every writer of the table: a poll dropping one meanwhile
   * is waited for and seen, and one after finds it finalized and leaves it. When one is given
   * up already, the receipt writers' turn first, before its row, as `reverify` takes them: the
   * reverify of its job, holding the turn and waiting for the row, closed a circle.
   */
  async function givenUpAmong(
    tx: PgExecutor,
    fetched: readonly FetchedTransaction[],
  ): Promise<string[]> {
    if (fetched.length === 0) return [];
    const named = sql`${chainTransactions.signature} = ANY (${textArray(fetched.map((f) => f.signature))})`;
    const givenUp = sql`${chainTransactions.state} IN ('dropped', 'pruned')`;
    const seen = await tx
      .select({ signature: chainTransactions.signature })
      .from(chainTransactions)
      .where(and(named, givenUp));
    if (seen.length > 0) await takeTurn(tx);
    const rows = await tx
      .select({ signature: chainTransactions.signature, givenUp: sql<boolean>`${givenUp}` })
      .from(chainTransactions)
      .where(named)
      .orderBy(sql`${chainTransactions.signature} COLLATE "C"`)
      .for("update");
    const found = rows.filter((r) => r.givenUp).map((r) => r.signature);
    // Given up between the two reads (a poll committing meanwhile): the turn is not to be taken
    // holding its row, which a reverify holding the turn waits for. Run again, turn first.
    if (found.length > 0 && seen.length === 0) {
      throw new RunAgainError("a transaction read was given up on meanwhile");
    }
    return found;
  }

  /**
   * Stores fetched transactions, each once; a row already holding facts is kept as it is (the
   * first of two fetches of one signature wins, as when written one after the other). In
   * signature order, so writers of `chain_transactions` lock its rows in one order.
   */
  async function upsertTransactions(
    tx: PgExecutor,
    fetched: readonly FetchedTransaction[],
    t: number,
  ) {
    const once = new Map<string, FetchedTransaction>();
    for (const f of fetched) if (!once.has(f.signature)) once.set(f.signature, f);
    const sorted = [...once.values()].sort((a, b) =>
      a.signature < b.signature ? -1 : a.signature > b.signature ? 1 : 0,
    );
    for (let at = 0; at < sorted.length; at += BATCH) {
      await tx
        .insert(chainTransactions)
        .values(
          sorted.slice(at, at + BATCH).map((f) => ({
            signature: f.signature,
            state: "finalized" as const,
            commitment: "finalized" as const,
            slot: f.slot,
            blockTime: f.blockTime,
            feeLamports: BigInt(f.fee),
            succeeded: f.succeeded,
            // JSON texts as given, kept byte for byte by the `json` type.
            err: sql`${f.err}::json`,
            facts: sql`${f.facts}::json`,
            raw: f.raw,
            firstSeenAt: t,
            fetchedAt: t,
          })),
        )
        .onConflictDoUpdate({
          target: chainTransactions.signature,
          set: {
            state: "finalized",
            commitment: "finalized",
            slot: sql`excluded.slot`,
            blockTime: sql`excluded.block_time`,
            feeLamports: sql`excluded.fee_lamports`,
            succeeded: sql`excluded.succeeded`,
            err: sql`excluded.err`,
            facts: sql`excluded.facts`,
            raw: sql`excluded.raw`,
            fetchedAt: sql`excluded.fetched_at`,
          },
          setWhere: sql`${chainTransactions.facts} IS NULL`,
        });
    }
  }

  /**
   * Writes read lines (oldest first) with their kinds, and the releases they cause: the SQLite
   * store's line-by-line `readLine` + `classify` + `applyKind`, in a few statements per batch.
   * Kinds come out the same (`classifyMany` in order). Releases are applied after the batch;
   * a debit whose return comes later in the same batch is released either way (by that
   * return), so the flags end the same.
   */
  async function readLines(tx: PgExecutor, vault: string, reads: readonly LineRead[], now: number) {
    if (reads.length === 0) return;
    const listed = new Set(
      (
        await tx
          .select({ signature: ledgerLines.signature })
          .from(ledgerLines)
          .where(
            and(
              vaultIs(vault),
              eq(ledgerLines.state, "listed"),
              sql`${ledgerLines.signature} = ANY (${textArray(reads.map((l) => l.signature))})`,
            ),
          )
      ).map((r) => r.signature),
    );
    // A line another process read first keeps what it wrote; a line given twice is read once.
    const fresh = reads.filter((l) => listed.delete(l.signature));
    if (fresh.length === 0) return;
    const kinds = await classifyMany(tx, vault, fresh.map(asClassifiableRead), true);
    // UPDATE … FROM unnest of the batch's columns: one statement, a parameter per column, still
    // guarded by state = 'listed'.
    // The block time becomes the transaction's (see `LineRead`); the daily sums follow it.
    await tx.execute(sql`UPDATE ledger_lines AS l SET state = 'read', succeeded = v.succeeded,
        slot = coalesce(v.slot, l.slot), block_time = coalesce(v.block_time, l.block_time),
        pre_units = v.pre_units, post_units = v.post_units, delta_units = v.delta_units,
        memo = v.memo, memo_kind = v.memo_kind, memo_job_id = v.memo_job_id,
        memo_jobs = v.memo_jobs, kind = v.kind,
        job_id = v.job_id, foreign_changes = v.foreign_changes, opened = v.opened,
        other_owner = v.other_owner, owner_after = v.owner_after, delegate = v.delegate,
        hidden_debit_units = v.hidden_debit_units, deposit_in_units = v.deposit_in_units,
        set_aside = v.set_aside,
        -- A line read before, read again (listed again by a migration), that pays out credits
        -- its first reading did not see: listed now, so the next nightly run judges it even
        -- where a run judged its time already. So is a line read earlier than it was listed
        -- (a node dating a theft just past a night's window, which that run then judged).
        listed_at = CASE WHEN l.delta_units IS NOT NULL AND v.hidden_debit_units IS NOT NULL
            AND l.hidden_debit_units IS DISTINCT FROM v.hidden_debit_units
          THEN ${now}::bigint WHEN v.block_time < l.block_time THEN ${now}::bigint
          ELSE l.listed_at END
      FROM ${unnestOf(fresh, "v", {
        signature: ["text", (l) => l.signature],
        slot: ["bigint", (l) => l.slot ?? null],
        block_time: ["bigint", (l) => l.blockTime],
        succeeded: ["boolean", (l) => l.succeeded],
        pre_units: ["bigint", (l) => l.pre],
        post_units: ["bigint", (l) => l.post],
        delta_units: ["bigint", (l) => l.delta],
        memo: ["text", (l) => l.memo],
        memo_kind: ["text", (l) => l.memoKind],
        memo_job_id: ["text", (l) => l.memoJobId],
        memo_jobs: ["text", (l) => memoJobsToText(l.memoJobs)],
        kind: ["text", (_, i) => kinds[i]!.kind],
        job_id: ["text", (_, i) => kinds[i]!.jobId],
        foreign_changes: ["text", (l) => foreignChangesToText(l.foreign)],
        opened: ["boolean", (l) => l.opened ?? null],
        other_owner: ["text", (l) => l.otherOwner ?? null],
        // A line naming another owner knows the owner, however it was read.
        owner_after: ["text", (l) => l.ownerAfter ?? l.otherOwner ?? null],
        delegate: ["text", (l) => l.delegate ?? null],
        hidden_debit_units: ["bigint", (l) => l.hiddenDebit ?? null],
        deposit_in_units: ["bigint", (l) => l.depositIn ?? null],
        set_aside: ["text", (l) => l.setAside ?? null],
      })}
      WHERE l.vault = ${vault} AND l.signature = v.signature AND l.state = 'listed'`);
    // The cursor's slots of a line are its transaction's once read (see `LineRead.slot`).
    await tx.execute(sql`UPDATE ledger_cursors AS c SET
        newest_slot = coalesce((SELECT l.slot FROM ledger_lines l
          WHERE l.vault = c.vault AND l.signature = c.newest_signature), c.newest_slot),
        sync_top_slot = coalesce((SELECT l.slot FROM ledger_lines l
          WHERE l.vault = c.vault AND l.signature = c.sync_top), c.sync_top_slot)
      WHERE c.vault = ${vault}`);
    // A line set aside is not the vault's newest (the next sync's `until`): the line below it is.
    for (const l of fresh) {
      if (l.setAside == null) continue;
      await tx.execute(sql`UPDATE ledger_cursors SET (newest_signature, newest_slot) = (
          SELECT b.signature, b.slot FROM ledger_lines a
          JOIN ledger_lines b ON b.vault = a.vault AND b.ord < a.ord AND b.set_aside IS NULL
          WHERE a.vault = ${vault} AND a.signature = ${l.signature} ORDER BY b.ord DESC LIMIT 1)
        WHERE vault = ${vault} AND newest_signature = ${l.signature}`);
    }
    const unrecorded: KeepPair[] = [];
    await keepWithJobs(
      tx,
      vault,
      fresh.map((l, i) => ({ line: asClassifiableRead(l), c: kinds[i]! })),
      now,
      unrecorded,
    );
    // The jobs whose debits the batch may account for now: released once, after the batch,
    // from what the vault holds for them by then.
    await releaseAccounted(
      tx,
      vault,
      fresh.flatMap((l, i) => jobsALineNames(asClassifiableRead(l), kinds[i]!.jobId)),
    );
    await keepWithJobsRecorded(tx, unrecorded, now);
  }

  /**
   * A review's first transaction, with the first slice of its walk and, when that is through,
   * the credits headers: what it did, and whether the walk has lines left (`walkOn`, each slice
   * under the vault's lock again, then `decideHeaders`).
   */
  async function review(
    tx: PgExecutor,
    vault: string,
    now: number,
  ): Promise<{ result: ReviewResult; walking: boolean }> {
    const result: ReviewResult = {
      classified: 0,
      released: 0,
      headersDecided: 0,
      reopened: 0,
      headersPassed: 0,
      gaps: 0,
    };
    // Lines kept with jobs not recorded when read: kept at the end if recorded by then.
    const unrecorded: KeepPair[] = [];
    const unclassified = await tx
      .select(lineColumns)
      .from(ledgerLines)
      .where(and(vaultIs(vault), eq(ledgerLines.state, "read"), isNull(ledgerLines.kind)))
      .orderBy(asc(ledgerLines.ord));
    const firstKinds = await classifyMany(
      tx,
      vault,
      unclassified.map((r) => asClassifiable(toLine(r))),
    );
    for (const [i, r] of unclassified.entries()) {
      await applyKind(tx, vault, asClassifiable(toLine(r)), firstKinds[i]!, now, unrecorded);
      result.classified++;
    }
    const again = await tx
      .select(lineColumns)
      .from(ledgerLines)
      .where(and(vaultIs(vault), inArray(ledgerLines.kind, ["unexplained", "deposit"])))
      .orderBy(asc(ledgerLines.ord));
    const kindsNow = await classifyMany(
      tx,
      vault,
      again.map((r) => asClassifiable(toLine(r))),
    );
    for (const [i, r] of again.entries()) {
      const line = toLine(r);
      const c = kindsNow[i]!;
      if (c.kind === line.kind && c.jobId === line.jobId) continue;
      result.released += await applyKind(tx, vault, asClassifiable(line), c, now, unrecorded);
      result.classified++;
    }
    // A line whose memos name several jobs, filed under one: each other job it names that is
    // recorded only now is kept with it now.
    const mixed = (
      await tx
        .select(lineColumns)
        .from(ledgerLines)
        .where(
          and(
            vaultIs(vault),
            isNotNull(ledgerLines.memoJobs),
            eq(ledgerLines.state, "read"),
            isNotNull(ledgerLines.kind),
          ),
        )
        .orderBy(asc(ledgerLines.ord))
    ).map(toLine);
    await keepWithJobs(
      tx,
      vault,
      mixed.map((line) => ({
        line: asClassifiable(line),
        c: { kind: line.kind!, jobId: line.jobId },
      })),
      now,
      unrecorded,
    );
    // An open lock read before either key was pinned is checked again: a job that cannot pay
    // from this vault now does not keep another customer's debit as its lock. So is a released
    // lock that only a jobs API answer names, of a job whose receipt names another escrow: filed
    // so before that answer stopped making a lock (`canPayFrom`). Those are few, the jobs whose
    // answer names another escrow than the receipt, read through the partial index
    // `jobs_api_escrow_tx` (its predicate, then the rest). Then the locks accounted for now.
    const answerOnly = tx
      .select({ signature: jobs.apiEscrowTx })
      .from(jobs)
      .where(
        sql`${jobs.apiEscrowTx} IS NOT NULL
          AND ${jobs.apiEscrowTx} IS DISTINCT FROM ${jobs.escrowTx} AND ${jobs.escrowTx} IS NOT NULL`,
      );
    /** The vault's lock lines meeting `condition`, in ledger order. */
    const locksWhere = (condition: SQL) => locksOf(tx, vault, condition);
    const openLocks = (await locksWhere(not(ledgerLines.released))).map(toLine);
    const releasedAnswerOnly = (
      await locksWhere(and(ledgerLines.released, inArray(ledgerLines.signature, answerOnly)) as SQL)
    ).map(toLine);
    openLocks.push(...releasedAnswerOnly);
    const locksNow = await classifyMany(tx, vault, openLocks.map(asClassifiable));
    const openJobs = new Set<string>();
    for (const [i, line] of openLocks.entries()) {
      const c = locksNow[i]!;
      if (c.kind !== line.kind || c.jobId !== line.jobId) {
        result.released += await applyKind(tx, vault, asClassifiable(line), c, now, unrecorded);
        result.classified++;
      }
      if (c.kind === "lock" && c.jobId !== null) openJobs.add(c.jobId);
    }
    result.released += await releaseAccounted(tx, vault, openJobs);
    // Before the credits headers: a lock's span runs by ord (`placeBySlot`, a page at a time).
    const walking = await walkOn(tx, vault, result);
    // A walk with lines left: the headers wait for its last slice, as on SQLite.
    if (!walking) addHeaders(result, await decideHeaders(tx, vault, now));
    await keepWithJobsRecorded(tx, unrecorded, now);
    return { result, walking };
  }

  /** The vault's lock lines that meet `condition`, by ord. */
  const locksOf = (tx: PgExecutor, vault: string, condition: SQL) =>
    tx
      .select(lineColumns)
      .from(ledgerLines)
      .where(and(vaultIs(vault), eq(ledgerLines.kind, "lock"), condition))
      .orderBy(asc(ledgerLines.ord));

  /**
   * Decides the vault's open credits headers, and passes or reopens the jobs whose header waited
   * for its span, by the lines in their place by slot: what it did.
   */
  async function decideHeaders(tx: PgExecutor, vault: string, now: number): Promise<HeaderCounts> {
    const finalThrough = (await cursorRow(tx, vault))?.finalThrough ?? null;
    const result = { headersDecided: 0, headersPassed: 0, reopened: 0 };
    // The partial index's own predicate, then the undecided among them.
    const headerOpen = (
      await locksOf(
        tx,
        vault,
        sql`${ledgerLines.headerOk} IS NOT TRUE AND ${ledgerLines.headerOk} IS NULL`,
      )
    ).map(toLine);
    const checks = await headerChecks(tx, vault, headerOpen, finalThrough);
    const decided = headerOpen.flatMap((line, i) => {
      const check = checks[i]!;
      if (check === null || check.lasting) return [{ signature: line.signature, ok: true }];
      // A match that may not last (`headerMatchLasts`) waits, as one not decided does.
      return !check.matched && check.decided ? [{ signature: line.signature, ok: false }] : [];
    });
    if (decided.length > 0) {
      // Raw SQL: drizzle's update builder has no `UPDATE … FROM unnest(arrays)`.
      await tx.execute(sql`UPDATE ledger_lines AS l SET header_ok = d.ok
        FROM ${unnestOf(decided, "d", {
          signature: ["text", (d) => d.signature],
          ok: ["boolean", (d) => d.ok],
        })}
        WHERE l.vault = ${vault} AND l.signature = d.signature`);
      result.headersDecided += decided.length;
    }
    // The same span the verifier reads. A header that matches a balance passes where it stands;
    // one that matches none in a span now read in full changes the verdict: that job is reopened
    // (see `review` in src/store/ledger.ts).
    const waiting = await tx
      .select({
        jobId: jobs.jobId,
        lockTx: sql<string | null>`coalesce(${jobs.escrowTx}, ${jobs.apiEscrowTx})`,
        recordedAt: jobs.recordedAt,
        respondedAt: jobs.respondedAt,
        header: jobs.creditsRemainingUnits,
        settlementTx: jobs.settlementTx,
      })
      .from(checkResults)
      .innerJoin(jobs, eq(jobs.jobId, checkResults.jobId))
      .where(
        and(
          eq(checkResults.outcome, "skip"),
          eq(checkResults.name, "credits.header"),
          // Every term of the partial index `check_results_header_waiting`: the few waiting.
          isNotNull(checkResults.expected),
          // The vault the verifier's skip names: a field of the json `expected`.
          sql`${checkResults.expected}->>'vault' = ${vault}`,
          inArray(jobs.verdict, [...finalVerdicts]),
          isNotNull(jobs.creditsRemainingUnits),
        ),
      );
    const reopen: string[] = [];
    // Each job's span from its lock, nothing while the lock is not read (`spanOfLock`): the
    // locks in one read, the spans in one pass.
    const lockTxs = [...new Set(waiting.flatMap((j) => (j.lockTx === null ? [] : [j.lockTx])))];
    const lockLines =
      lockTxs.length === 0
        ? []
        : await tx
            .select({ signature: ledgerLines.signature, ord: ledgerLines.ord })
            .from(ledgerLines)
            .where(
              and(
                vaultIs(vault),
                eq(ledgerLines.state, "read"),
                sql`${ledgerLines.signature} = ANY (${textArray(lockTxs)})`,
              ),
            );
    const ordOf = new Map(lockLines.map((l) => [l.signature, l.ord]));
    const spanned = waiting.flatMap((j) => {
      const lockOrd = j.lockTx === null ? undefined : ordOf.get(j.lockTx);
      return lockOrd === undefined || j.header === null
        ? []
        : [{ ...j, header: j.header, lockOrd }];
    });
    const spans = await spansFrom(tx, vault, spanned, finalThrough);
    const passed: { jobId: string; expected: string; actual: string }[] = [];
    for (const [i, j] of spanned.entries()) {
      const span = spans[i]!;
      const at = span.balances.findIndex((b) => headerMatches(j.header, b));
      const matched = at >= 0 && at < span.ordered ? span.balances[at] : undefined;
      if (matched !== undefined) {
        passed.push({
          jobId: j.jobId,
          expected: JSON.stringify({ headerUnits: j.header.toString(), vault }),
          actual: JSON.stringify({ balanceUnits: matched.toString() }),
        });
      } else if (span.covered) {
        reopen.push(j.jobId);
      }
    }
    // The receipt writers' turn before these check rows and the jobs reopened below, as the
    // verdict writers take it before their jobs and check rows (see `keepWithJobs`); only now:
    // a late receipt's span (an import) runs over every line since its lock, and read under the
    // turn it kept every receipt writer waiting meanwhile.
    if (passed.length > 0 || reopen.length > 0) await takeTurn(tx);
    if (passed.length > 0) {
      // Raw SQL: drizzle's update builder has no `UPDATE … FROM unnest(arrays)`.
      await tx.execute(sql`UPDATE check_results AS c SET outcome = 'pass', reason = NULL,
          expected = p.expected::json, actual = p.actual::json, checked_at = ${now}::bigint
        FROM ${unnestOf(passed, "p", {
          job_id: ["text", (p) => p.jobId],
          expected: ["text", (p) => p.expected],
          actual: ["text", (p) => p.actual],
        })}
        WHERE c.job_id = p.job_id AND c.name = 'credits.header' AND c.outcome = 'skip'`);
      result.headersPassed += passed.length;
    }
    result.reopened = await namingHeldRows(inArray(jobs.jobId, reopen), () =>
      reopenJobsPg(tx, { jobIds: reopen }, now),
    );
    return result;
  }

  function sumsByKind(
    rows: readonly { kind: LineKind; lines: number; units: bigint }[],
    into: KindSums,
  ) {
    for (const r of rows) {
      into[r.kind].lines += r.lines;
      into[r.kind].units += r.units;
    }
  }

  const lineSums = (q: PgExecutor, vault: string, from: number, to: number) =>
    q
      .select({
        kind: sql<LineKind>`${ledgerLines.kind}`,
        lines: count(),
        units: sumUnits(ledgerLines.deltaUnits),
      })
      .from(ledgerLines)
      .where(and(vaultIs(vault), periodOf(from, to), isNotNull(ledgerLines.kind)))
      .groupBy(ledgerLines.kind);

  const countLines = async (where: ReturnType<typeof and>) => {
    const [row] = await db.select({ n: count() }).from(ledgerLines).where(where);
    return row?.n ?? 0;
  };

  /** Open locks of a period: kind `lock`, not released by the line flags. */
  const openLocksPeriod = (vault: string, from: number, to: number) =>
    db
      .select(lineColumns)
      .from(ledgerLines)
      .where(
        and(
          vaultIs(vault),
          eq(ledgerLines.kind, "lock"),
          not(ledgerLines.released),
          periodOf(from, to),
        ),
      )
      .orderBy(asc(ledgerLines.ord));

  return {
    async escrowScanOf(vault) {
      const [row] = await db
        .select({
          newestSignature: escrowScans.newestSignature,
          newestSlot: escrowScans.newestSlot,
          syncTop: escrowScans.syncTop,
          syncTopSlot: escrowScans.syncTopSlot,
          syncBefore: escrowScans.syncBefore,
          coveredSlot: escrowScans.coveredSlot,
          syncCoveredSlot: escrowScans.syncCoveredSlot,
        })
        .from(escrowScans)
        .where(eq(escrowScans.vault, vault));
      return row ?? null;
    },
    async escrowCoverage(vault, jobIds) {
      const [scan] = await db
        .select({ coveredSlot: escrowScans.coveredSlot, scannedAt: escrowScans.updatedAt })
        .from(escrowScans)
        .where(eq(escrowScans.vault, vault));
      const held =
        jobIds.length === 0
          ? []
          : await db
              .selectDistinct({ jobId: escrowPending.jobId })
              .from(escrowPending)
              .where(
                and(eq(escrowPending.vault, vault), inArray(escrowPending.jobId, [...jobIds])),
              );
      return {
        coveredSlot: scan?.coveredSlot ?? null,
        pending: new Set(held.map((r) => r.jobId)),
        scannedAt: scan ? Number(scan.scannedAt) : null,
      };
    },
    async escrowUnread(vault, jobIds) {
      const byJob = new Map<string, EscrowUnread[]>();
      if (jobIds.length === 0) return byJob;
      const rows = await db
        .select({
          jobId: escrowPending.jobId,
          signature: escrowPending.signature,
          reason: escrowPending.unread,
          disagreement: escrowPending.disagreement,
        })
        .from(escrowPending)
        .where(
          and(
            eq(escrowPending.vault, vault),
            inArray(escrowPending.jobId, [...jobIds]),
            isNotNull(escrowPending.unread),
          ),
        )
        .orderBy(escrowPending.jobId, escrowPending.signature);
      for (const r of rows) {
        const entry = {
          signature: r.signature,
          reason: r.reason ?? "",
          disagreement: (r.disagreement ?? null) as EscrowUnread["disagreement"],
        };
        byJob.set(r.jobId, [...(byJob.get(r.jobId) ?? []), entry]);
      }
      return byJob;
    },
    async earliestJobAt() {
      const [row] = await db.select({ at: sql<string | null>`min(${jobs.createdAt})` }).from(jobs);
      return row?.at == null ? null : Number(row.at);
    },
    async unnamedSteps(pairs) {
      if (pairs.length === 0) return { open: [], unclosed: [], absent: [] };
      return escrowStepsOf(pairs, await namedStepsOf(db, pairs));
    },
    async escrowScanFigures(vault) {
      const result = await db.execute<{ scanned_at: string | null; pending: string }>(sql`
        SELECT (SELECT ${escrowScans.updatedAt} FROM ${escrowScans}
            WHERE ${escrowScans.vault} = ${vault}) AS scanned_at,
          (SELECT count(*) FROM ${escrowPending} WHERE ${escrowPending.vault} = ${vault}) AS pending`);
      const row = result.rows[0];
      return {
        scannedAt: row?.scanned_at == null ? null : Number(row.scanned_at),
        pending: Number(row?.pending ?? 0),
      };
    },
    async namedPastSteps(limit) {
      return (
        db
          .select({
            job: escrowPending.jobId,
            signature: escrowPending.signature,
            creditVault: creditVaults.vault,
          })
          .from(escrowPending)
          .innerJoin(jobs, eq(jobs.jobId, escrowPending.jobId))
          .leftJoin(creditVaults, eq(creditVaults.keyFingerprint, jobs.keyFingerprint))
          // Never marked (`named_by`): the condition lets escrow_pending_unmarked serve.
          .where(and(eq(escrowPending.vault, namedPastVault), isNull(escrowPending.namedBy)))
          // The ones not fetched yet first (see the SQLite store).
          .orderBy(
            sql`${escrowPending.unread} IS NOT NULL`,
            escrowPending.listedAt,
            escrowPending.jobId,
            escrowPending.signature,
          )
          .limit(limit)
      );
    },
    async pendingEscrowSteps(vault, limit, unclosedBefore, after) {
      const past =
        after === null
          ? sql`true`
          : sql`(${escrowPending.listedAt}, ${escrowPending.jobId}, ${escrowPending.signature})
              > (${after.listedAt}::bigint, ${after.job}::text, ${after.signature}::text)`;
      const rows = await db
        .select({
          job: escrowPending.jobId,
          signature: escrowPending.signature,
          listedAt: escrowPending.listedAt,
        })
        .from(escrowPending)
        // Not the rows a recorded job's own step holds: their job's claim judges them (see the
        // SQLite store); escrow_pending_unmarked holds the rest in this order.
        .where(
          sql`${escrowPending.vault} = ${vault} AND ${escrowPending.namedBy} IS NULL
            AND EXISTS (SELECT 1 FROM ${jobs} WHERE ${jobs.jobId} = ${escrowPending.jobId}
              AND (${jobs.settlementTx} IS NOT NULL OR ${jobs.apiSettlementTx} IS NOT NULL
                OR (CASE WHEN json_typeof(${jobs.conflictSignatures}) = 'array'
                  THEN json_array_length(${jobs.conflictSignatures}) ELSE 0 END) > 0
                OR ${escrowPending.listedAt} < ${unclosedBefore}))
            AND ${past}`,
        )
        .orderBy(escrowPending.listedAt, escrowPending.jobId, escrowPending.signature)
        .limit(limit);
      return rows.map((r) => ({ ...r, listedAt: Number(r.listedAt) }));
    },
    async keepEscrowSteps(vault, change, state, now) {
      return whileRowsHeld(() =>
        retryOnConflict(() =>
          db.transaction(async (tx) => {
            // The receipt writers' turn before the first row this writes, when it may send a
            // job back (as `keepPairs` takes it): taken after writing `escrow_pending` rows, a
            // write keeping a payout and one holding the same rows unread waited on each other
            // until the deadlock detector chose (about a second each, the turn held meanwhile).
            if (
              change.keep.length > 0 ||
              change.release.length > 0 ||
              change.hold.some((p) => p.unread !== undefined)
            ) {
              await takeTurn(tx);
            }
            const keep = (await notNamedYet(tx, change.keep)).open;
            const gained = await keepPairs(tx, keep, now, maxKeptWithPayouts);
            // A job whose entry turns unread is not judged until it is read; one whose unread
            // entry goes is judged again without it.
            const unreadChanged = new Set<string>();
            for (const p of change.release) {
              const dropped = await tx
                .delete(escrowPending)
                .where(
                  and(
                    eq(escrowPending.jobId, p.job),
                    eq(escrowPending.signature, p.signature),
                    eq(escrowPending.vault, vault),
                  ),
                )
                .returning({ unread: escrowPending.unread });
              if (dropped.some((r) => r.unread !== null)) unreadChanged.add(p.job);
            }
            for (const p of change.releasePast ?? []) {
              await tx
                .delete(escrowPending)
                .where(
                  and(
                    eq(escrowPending.jobId, p.job),
                    eq(escrowPending.signature, p.signature),
                    eq(escrowPending.vault, namedPastVault),
                  ),
                );
            }
            for (const p of change.unreadPast ?? []) {
              await tx
                .update(escrowPending)
                .set({ unread: p.reason })
                .where(
                  and(
                    eq(escrowPending.jobId, p.job),
                    eq(escrowPending.signature, p.signature),
                    eq(escrowPending.vault, namedPastVault),
                  ),
                );
            }
            // Named past a job's kept ones: only those fetched once (each is read at least once).
            // Not those a recorded job's own step holds: kept until their job is. Named-past
            // rows are never marked: both sides read escrow_pending_unmarked alone (through
            // escrow_pending_listed, each write read every marked row held before the hour).
            await tx
              .delete(escrowPending)
              .where(
                and(
                  lt(escrowPending.listedAt, change.pruneBefore),
                  isNull(escrowPending.namedBy),
                  or(
                    and(eq(escrowPending.vault, vault), isNull(escrowPending.unread)),
                    and(eq(escrowPending.vault, namedPastVault), isNotNull(escrowPending.unread)),
                  ),
                ),
              );
            const unread = change.hold.filter((p) => p.unread !== undefined);
            if (unread.length > 0) {
              const before = await tx
                .select({ job: escrowPending.jobId, signature: escrowPending.signature })
                .from(escrowPending)
                .where(
                  and(
                    eq(escrowPending.vault, vault),
                    inArray(escrowPending.jobId, [...new Set(unread.map((p) => p.job))]),
                    isNotNull(escrowPending.unread),
                  ),
                );
              const was = new Set(before.map((r) => `${r.job} ${r.signature}`));
              for (const p of unread) {
                if (!was.has(`${p.job} ${p.signature}`)) unreadChanged.add(p.job);
              }
            }
            if (change.hold.length > 0) {
              await tx
                .insert(escrowPending)
                .values(
                  change.hold.map((p) => ({
                    jobId: p.job,
                    signature: p.signature,
                    vault,
                    blockTime: p.blockTime,
                    listedAt: now,
                    unread: p.unread?.reason ?? null,
                    disagreement: p.unread?.disagreement ?? null,
                    namedBy: p.namedBy ?? null,
                  })),
                )
                .onConflictDoUpdate({
                  target: [escrowPending.jobId, escrowPending.signature, escrowPending.vault],
                  // As the SQLite store: an unread hold writes why; a recorded job's step's hold
                  // makes a listing's row one that is not pruned.
                  set: {
                    unread: sql`CASE WHEN excluded.unread IS NOT NULL THEN excluded.unread
                      ELSE ${escrowPending.unread} END`,
                    disagreement: sql`CASE WHEN excluded.unread IS NOT NULL
                      THEN excluded.disagreement ELSE ${escrowPending.disagreement} END`,
                    namedBy: sql`coalesce(${escrowPending.namedBy}, excluded.named_by)`,
                  },
                  setWhere: sql`excluded.unread IS NOT NULL
                    OR (${escrowPending.namedBy} IS NULL AND excluded.named_by IS NOT NULL)`,
                });
            }
            const reopen = [...unreadChanged].filter((j) => !gained.includes(j)).sort();
            const changed = [...unreadChanged];
            if (reopen.length > 0) {
              await namingHeldRows(inArray(jobs.jobId, reopen), () =>
                reopenJobsPg(tx, { jobIds: reopen }, now),
              );
            }
            if (state !== null) {
              await tx
                .insert(escrowScans)
                .values({ vault, ...state, kept: gained.length, updatedAt: now })
                .onConflictDoUpdate({
                  target: escrowScans.vault,
                  set: {
                    ...state,
                    kept: sql`${escrowScans.kept} + excluded.kept`,
                    updatedAt: now,
                  },
                });
            }
            return { gained, unreadChanged: changed };
          }),
        ),
      );
    },
    async pinnedVaults() {
      const rows = await db
        .select({ vault: creditVaults.vault })
        .from(creditVaults)
        // GROUP BY, not DISTINCT: DISTINCT cannot order by the collated expression.
        .groupBy(creditVaults.vault)
        .orderBy(byteOrder(creditVaults.vault));
      return rows.map((r) => r.vault);
    },
    async statementVaults() {
      // A UNION sorts by its output column only: the collation is set in the select lists,
      // which the builder's union does not write.
      const { rows } = await db.execute<{ vault: string }>(
        sql`SELECT vault COLLATE "C" AS vault FROM ledger_cursors
          UNION SELECT vault COLLATE "C" FROM credit_vaults ORDER BY 1`,
      );
      return rows.map((r) => r.vault);
    },
    async keysOf(vault) {
      const rows = await db
        .select({ key: creditVaults.keyFingerprint })
        .from(creditVaults)
        .where(eq(creditVaults.vault, vault))
        .orderBy(byteOrder(creditVaults.keyFingerprint));
      return rows.map((r) => r.key);
    },
    async cursor(vault, now) {
      await db.insert(ledgerCursors).values({ vault, updatedAt: now }).onConflictDoNothing();
      return (await selectCursor(db, vault))!;
    },
    async storePage(vault, seen, page, last, now, finalThrough = null) {
      return db.transaction(async (tx) => {
        await lockVault(tx, vault);
        const top = seen.syncTop ?? page[0]?.signature ?? null;
        const topSlot = seen.syncTopSlot ?? page[0]?.slot ?? null;
        // The sync lists everything up to its first page's newest entry: what was final before
        // that page was asked for is listed once the sync completes.
        const first = seen.syncBefore === null;
        const listedFinal = first
          ? sql`${finalThrough}::bigint`
          : sql`${ledgerCursors.syncFinalThrough}`;
        const common = {
          pagesRead: sql`${ledgerCursors.pagesRead} + 1`,
          lastError: null,
          updatedAt: now,
        };
        // Guarded advance: only from the cursor this page was listed from (another process that
        // stored it first moved the cursor, and this one changes nothing).
        const moved = await tx
          .update(ledgerCursors)
          .set(
            last
              ? {
                  ...common,
                  newestSignature: top ?? seen.newestSignature,
                  newestSlot: top ? topSlot : seen.newestSlot,
                  syncTop: null,
                  syncTopSlot: null,
                  syncBefore: null,
                  syncIndex: 0,
                  syncNumber: sql`${ledgerCursors.syncNumber} + 1`,
                  syncedAt: now,
                  // GREATEST skips nulls: a sync that read no finalized time keeps the last.
                  finalThrough: sql`GREATEST(${ledgerCursors.finalThrough}, ${listedFinal})`,
                  syncFinalThrough: null,
                }
              : {
                  ...common,
                  syncTop: top,
                  syncTopSlot: topSlot,
                  syncBefore: page.at(-1)!.signature,
                  syncIndex: seen.syncIndex + page.length,
                  ...(first ? { syncFinalThrough: finalThrough } : {}),
                },
          )
          .where(
            and(
              eq(ledgerCursors.vault, vault),
              sql`${ledgerCursors.syncBefore} IS NOT DISTINCT FROM ${seen.syncBefore}`,
              eq(ledgerCursors.syncNumber, seen.syncNumber),
              sql`${ledgerCursors.newestSignature} IS NOT DISTINCT FROM ${seen.newestSignature}`,
            ),
          )
          .returning({ vault: ledgerCursors.vault });
        if (moved.length === 0) return false;
        if (page.length > 0) {
          // The listing's hot path (up to 1,000 lines a page): one INSERT … SELECT FROM unnest
          // of five arrays, five parameters whatever the page's size; a line already listed
          // (by another process, or an earlier sync) stays as it is.
          await tx.execute(sql`INSERT INTO ledger_lines
              (vault, signature, ord, slot, block_time, succeeded, listed_at)
            SELECT ${vault}, t.signature, t.ord, t.slot, t.block_time, t.succeeded, ${now}::bigint
            FROM ${unnestOf(page, "t", {
              signature: ["text", (e) => e.signature],
              ord: [
                "bigint",
                (_, i) => (seen.syncNumber + 1) * ORD_SPAN - (seen.syncIndex + i) - 1,
              ],
              slot: ["bigint", (e) => e.slot],
              block_time: ["bigint", (e) => e.blockTime],
              succeeded: ["boolean", (e) => e.err === null],
            })}
            ON CONFLICT (vault, signature) DO NOTHING`);
        }
        return true;
      });
    },
    async heldLines(vault, signatures) {
      return heldOf(db, vault, signatures);
    },
    async relistBelow(vault) {
      const [row] = await db
        .select({ below: ledgerCursors.relistBelow })
        .from(ledgerCursors)
        .where(eq(ledgerCursors.vault, vault));
      return row?.below ?? null;
    },
    async setRelistBelow(vault, below) {
      await db
        .update(ledgerCursors)
        .set({ relistBelow: below })
        .where(eq(ledgerCursors.vault, vault));
    },
    async lineBelow(vault, signature) {
      const at = db
        .select({ ord: ledgerLines.ord })
        .from(ledgerLines)
        .where(and(vaultIs(vault), eq(ledgerLines.signature, signature)));
      const [below] = await db
        .select({ signature: ledgerLines.signature })
        .from(ledgerLines)
        .where(and(vaultIs(vault), lt(ledgerLines.ord, sql`(${at})`)))
        .orderBy(desc(ledgerLines.ord))
        .limit(1);
      return below?.signature ?? null;
    },
    async heldWithinBelow(vault, top, signature, lines) {
      const { rows } = await db.execute(sql`SELECT 1 FROM (SELECT b.signature FROM ledger_lines a
          JOIN ledger_lines b ON b.vault = a.vault AND b.ord < a.ord
          WHERE a.vault = ${vault} AND a.signature = ${top} ORDER BY b.ord DESC LIMIT ${lines}) w
        WHERE w.signature = ${signature}`);
      return rows.length > 0;
    },
    async storedGaps(vault, limit) {
      const rows = await db
        .select({ after: ledgerLines.gapAfterSignature, before: ledgerLines.signature })
        .from(ledgerLines)
        .where(and(vaultIs(vault), isNotNull(ledgerLines.gapUnits)))
        .orderBy(desc(ledgerLines.ord))
        .limit(limit);
      return rows.map((r) => ({ afterSignature: r.after!, beforeSignature: r.before }));
    },
    async healGap(vault, gap: GapLines, listing, now, signal) {
      const none = { inserted: 0 };
      const heal = () =>
        db.transaction(async (tx): Promise<HealAttempt> => {
          await lockVault(tx, vault);
          // A sync in progress numbers its next pages from the cursor: healed another time.
          const current = await selectCursor(tx, vault);
          if (!current || current.syncBefore !== null) return none;
          const lineOf = async (signature: string) =>
            (
              await tx
                .select({ ord: ledgerLines.ord, slot: ledgerLines.slot })
                .from(ledgerLines)
                .where(and(vaultIs(vault), eq(ledgerLines.signature, signature)))
            )[0];
          const earlier = await lineOf(gap.afterSignature);
          const later = await lineOf(gap.beforeSignature);
          if (!earlier || !later || earlier.ord >= later.ord) return none;
          // Only what the chain can hold between the two: a slot outside theirs is no such line.
          const within = listing.filter((e) => e.slot >= earlier.slot && e.slot <= later.slot);
          const held = await heldOf(
            tx,
            vault,
            within.map((e) => e.signature),
          );
          const between = await tx
            .select({ signature: ledgerLines.signature, ord: ledgerLines.ord })
            .from(ledgerLines)
            .where(
              and(vaultIs(vault), gt(ledgerLines.ord, earlier.ord), lt(ledgerLines.ord, later.ord)),
            )
            .orderBy(asc(ledgerLines.ord));
          const healed = healedOrder(earlier.ord, later.ord, between, within, held);
          if (healed === null) return none;
          if (healed.shiftBy > 0) return { lacking: healed.shiftBy };
          const moved = healed.lines.filter((l) => l.entry === undefined);
          if (moved.length > 0) {
            await tx.execute(sql`UPDATE ledger_lines AS l SET ord = m.ord
            FROM ${unnestOf(moved, "m", {
              signature: ["text", (m) => m.signature],
              ord: ["bigint", (m) => m.ord],
            })}
            WHERE l.vault = ${vault} AND l.signature = m.signature`);
          }
          const added = healed.lines.filter((l) => l.entry !== undefined);
          await tx.execute(sql`INSERT INTO ledger_lines
            (vault, signature, ord, slot, block_time, succeeded, listed_at)
          SELECT ${vault}, t.signature, t.ord, t.slot, t.block_time, t.succeeded, ${now}::bigint
          FROM ${unnestOf(added, "t", {
            signature: ["text", (l) => l.signature],
            ord: ["bigint", (l) => l.ord],
            slot: ["bigint", (l) => l.entry!.slot],
            block_time: ["bigint", (l) => l.entry!.blockTime],
            succeeded: ["boolean", (l) => l.entry!.err === null],
          })}
          ON CONFLICT (vault, signature) DO NOTHING`);
          // The walk compares every movement from the earlier line again, and finds the gaps
          // that are still there.
          await tx
            .update(ledgerLines)
            .set({ gapAfterSignature: null, gapAfterSlot: null, gapUnits: null })
            .where(
              and(
                vaultIs(vault),
                isNotNull(ledgerLines.gapUnits),
                gt(ledgerLines.ord, earlier.ord),
              ),
            );
          // Lowered, never raised: lines above a walk's mark that it has not compared yet
          // (below another heal's, or not read yet) were taken as compared.
          await tx
            .update(ledgerCursors)
            .set({
              // least() passes over a NULL mark (nothing compared yet), which stays NULL.
              chainedOrd: sql`CASE WHEN ${ledgerCursors.chainedOrd} IS NULL THEN NULL
                ELSE least(${ledgerCursors.chainedOrd}, ${earlier.ord}) END`,
            })
            .where(eq(ledgerCursors.vault, vault));
          return { inserted: added.length };
        });
      const laterOrd = async (tx: PgExecutor) =>
        (
          await tx
            .select({ ord: ledgerLines.ord })
            .from(ledgerLines)
            .where(and(vaultIs(vault), eq(ledgerLines.signature, gap.beforeSignature)))
        )[0]?.ord;
      return healMakingRoom(
        {
          heal,
          async roomTop(room) {
            const from = await laterOrd(db);
            if (from === undefined) return null;
            const { rows } = await db.execute<{ ord: string }>(sql`SELECT a.ord FROM ledger_lines a
              WHERE a.vault = ${vault} AND a.ord >= ${from} AND NOT EXISTS
                (SELECT 1 FROM ledger_lines b WHERE b.vault = a.vault AND b.ord > a.ord
                   AND b.ord <= a.ord + ${room}::bigint)
              ORDER BY a.ord LIMIT 1`);
            return rows[0] ? Number(rows[0].ord) : null;
          },
          moveUp: (top, room) =>
            db.transaction(async (tx) => {
              await lockVault(tx, vault);
              const from = await laterOrd(tx);
              if (from === undefined || from > top) return null;
              const { rows: taken } = await tx.execute(sql`SELECT 1 FROM ledger_lines
                WHERE vault = ${vault} AND ord > ${top} AND ord <= ${top + room} LIMIT 1`);
              if (taken.length > 0) return null;
              const { rows } = await tx.execute<{ ord: string }>(sql`SELECT ord FROM ledger_lines
                WHERE vault = ${vault} AND ord >= ${from} AND ord <= ${top}
                ORDER BY ord DESC LIMIT 1 OFFSET ${PG_ROOM_LINES_PER_MOVE - 1}`);
              const bottom = rows[0] ? Number(rows[0].ord) : from;
              await tx
                .update(ledgerLines)
                .set({ ord: sql`${ledgerLines.ord} + ${room}` })
                .where(
                  and(vaultIs(vault), gte(ledgerLines.ord, bottom), lte(ledgerLines.ord, top)),
                );
              // The walk's mark moves with its line, so it neither skips nor repeats a comparison.
              await tx
                .update(ledgerCursors)
                .set({ chainedOrd: sql`${ledgerCursors.chainedOrd} + ${room}` })
                .where(
                  and(
                    eq(ledgerCursors.vault, vault),
                    gte(ledgerCursors.chainedOrd, bottom),
                    lte(ledgerCursors.chainedOrd, top),
                  ),
                );
              return bottom > from ? bottom - 1 : null;
            }),
        },
        signal,
      );
    },
    async slotAround(vault, gap: GapLines) {
      const block = await slotBlock(db, vault, gap);
      if (block === null) return null;
      const [above] = await db
        .select({ signature: ledgerLines.signature })
        .from(ledgerLines)
        .where(and(vaultIs(vault), gt(ledgerLines.ord, block.high)))
        .orderBy(asc(ledgerLines.ord))
        .limit(1);
      const [below] = await db
        .select({ signature: ledgerLines.signature })
        .from(ledgerLines)
        .where(and(vaultIs(vault), lt(ledgerLines.ord, block.low)))
        .orderBy(desc(ledgerLines.ord))
        .limit(1);
      return {
        slot: block.slot,
        signatures: block.lines.map((l) => l.signature),
        above: above?.signature ?? null,
        below: below?.signature ?? null,
      };
    },
    async reorderSlot(vault, gap: GapLines, order) {
      return db.transaction(async (tx) => {
        await lockVault(tx, vault);
        const current = await selectCursor(tx, vault);
        if (!current || current.syncBefore !== null) return false;
        const block = await slotBlock(tx, vault, gap);
        if (block === null) return false;
        const { lines, low, high } = block;
        if (lines.some((l) => l.signature === current.newestSignature)) return false;
        const [next] = await tx
          .select({ state: ledgerLines.state, preUnits: ledgerLines.preUnits })
          .from(ledgerLines)
          .where(
            and(
              vaultIs(vault),
              gt(ledgerLines.ord, high),
              or(eq(ledgerLines.state, "listed"), ne(ledgerLines.deltaUnits, 0n)),
            ),
          )
          .orderBy(asc(ledgerLines.ord))
          .limit(1);
        if (next?.state !== "read" || next.preUnits === null) return false;
        const below = await movementAtOrBefore(tx, vault, low - 1);
        const placed = slotChainOrder(below?.postUnits ?? null, next.preUnits, lines, order);
        if (placed === null) return false;
        await tx.execute(sql`UPDATE ledger_lines AS l SET ord = m.ord
          FROM ${unnestOf(placed, "m", {
            signature: ["text", (m) => m.signature],
            ord: ["bigint", (m) => m.ord],
          })}
          WHERE l.vault = ${vault} AND l.signature = m.signature`);
        await tx
          .update(ledgerLines)
          .set({ gapAfterSignature: null, gapAfterSlot: null, gapUnits: null })
          .where(
            and(vaultIs(vault), isNotNull(ledgerLines.gapUnits), gt(ledgerLines.ord, low - 1)),
          );
        const chained = (await cursorRow(tx, vault))?.chainedOrd ?? low - 1;
        await tx
          .update(ledgerCursors)
          .set({ chainedOrd: Math.min(chained, low - 1) })
          .where(eq(ledgerCursors.vault, vault));
        return true;
      });
    },
    async listedSignatures(vault, throughSec) {
      const rows = await db
        .select({ signature: ledgerLines.signature })
        .from(ledgerLines)
        .where(
          and(
            vaultIs(vault),
            eq(ledgerLines.state, "listed"),
            throughSec === undefined
              ? undefined
              : or(isNull(ledgerLines.blockTime), lte(ledgerLines.blockTime, throughSec)),
          ),
        )
        .orderBy(asc(ledgerLines.ord));
      return rows.map((r) => r.signature);
    },
    async storedTransaction(signature) {
      const [row] = await db
        .select({
          signature: chainTransactions.signature,
          facts: sql<string>`${chainTransactions.facts}::text`,
          raw: chainTransactions.raw,
        })
        .from(chainTransactions)
        .where(and(eq(chainTransactions.signature, signature), isNotNull(chainTransactions.facts)));
      return row;
    },
    async lockLinesOf(vault, jobIds) {
      if (jobIds.length === 0) return [];
      const byMemo = and(
        eq(ledgerLines.memoKind, "escrow"),
        lt(ledgerLines.deltaUnits, 0n),
        inArray(ledgerLines.memoJobId, [...jobIds]),
      );
      const kept = and(eq(ledgerLines.kind, "lock"), inArray(ledgerLines.jobId, [...jobIds]));
      const rows = await db
        .selectDistinct({
          signature: ledgerLines.signature,
          memoJobId: ledgerLines.memoJobId,
          memoKind: ledgerLines.memoKind,
          deltaUnits: ledgerLines.deltaUnits,
          kind: ledgerLines.kind,
          jobId: ledgerLines.jobId,
        })
        .from(ledgerLines)
        .where(and(vaultIs(vault), or(byMemo, kept)));
      const wanted = new Set(jobIds);
      const out = new Map<string, { signature: string; jobId: string }>();
      const add = (signature: string, jobId: string | null) => {
        if (jobId !== null && wanted.has(jobId))
          out.set(`${signature} ${jobId}`, { signature, jobId });
      };
      for (const r of rows) {
        if (r.memoKind === "escrow" && (r.deltaUnits ?? 0n) < 0n) add(r.signature, r.memoJobId);
        if (r.kind === "lock") add(r.signature, r.jobId);
      }
      return [...out.values()];
    },
    async storedTransactions(signatures) {
      if (signatures.length === 0) return new Map();
      const rows = await db
        .select({
          signature: chainTransactions.signature,
          facts: sql<string>`${chainTransactions.facts}::text`,
          raw: chainTransactions.raw,
        })
        .from(chainTransactions)
        .where(
          and(
            sql`${chainTransactions.signature} = ANY (${textArray([...signatures])})`,
            isNotNull(chainTransactions.facts),
          ),
        );
      return new Map(rows.map((row) => [row.signature, row]));
    },
    async recordReads(vault, reads, fetched, now) {
      if (reads.length === 0 && fetched.length === 0) return [];
      // Lines kept with a job whose row an earlier batch found held wait, the row held still.
      const named = [...new Set(reads.flatMap((l) => memoJobsOfLine(l).map((m) => m.jobId)))];
      const waiting = await linesWaitingFor(
        reads,
        await stillHeld(named.filter((id) => heldBefore.has(id))),
      );
      for (;;) {
        const aside = new Set(waiting.map((w) => w.signature));
        const rest = reads.filter((l) => !aside.has(l.signature));
        try {
          if (rest.length > 0 || fetched.length > 0) await writeReads(vault, rest, fetched, now);
          return waiting;
        } catch (error) {
          // Refused on a held job row: the lines kept with that job wait, the rest go on.
          const held = heldJobsOf(error);
          const more = await linesWaitingFor(rest, held);
          if (more.length === 0) throw error;
          for (const id of held) heldBefore.add(id);
          waiting.push(...more);
        }
      }
    },
    async newestListedSlot(vault) {
      const [row] = await db
        .select({ slot: sql<number | null>`max(${ledgerLines.slot})`.mapWith(Number) })
        .from(ledgerLines)
        .where(vaultIs(vault));
      return row?.slot ?? null;
    },
    async setBalance(vault, balance, at) {
      await db
        .update(ledgerCursors)
        .set({
          balanceUnits: balance.amount,
          balanceSlot: balance.slot,
          balanceAt: at,
          balanceForeign: foreignHoldingToText(balance.foreign),
          updatedAt: at,
        })
        .where(eq(ledgerCursors.vault, vault));
    },
    async setControl(vault, control, at) {
      await db
        .update(ledgerCursors)
        .set({ balanceControl: balanceControlToText(control, at), updatedAt: at })
        .where(eq(ledgerCursors.vault, vault));
    },
    async setError(vault, message, at) {
      await db
        .update(ledgerCursors)
        .set({ lastError: message, updatedAt: at })
        .where(eq(ledgerCursors.vault, vault));
    },
    async review(vault, now = Date.now()) {
      // It updates checks and then reopens jobs, while a verdict writer locks jobs and then
      // replaces their checks: a deadlock between the two rolls this back whole; run it again.
      const { result, walking } = await whileRowsHeld(() =>
        retryOnConflict(() =>
          db.transaction(async (tx) => {
            await lockVault(tx, vault);
            return review(tx, vault, now);
          }),
        ),
      );
      await walkInSlices(walking, () =>
        retryOnConflict(() =>
          db.transaction(async (tx) => {
            await lockVault(tx, vault);
            return walkOn(tx, vault, result);
          }),
        ),
      );
      if (walking) {
        const headers = await whileRowsHeld(() =>
          retryOnConflict(() =>
            db.transaction(async (tx) => {
              await lockVault(tx, vault);
              return decideHeaders(tx, vault, now);
            }),
          ),
        );
        addHeaders(result, headers);
      }
      return result;
    },
    async creditSpans(requests) {
      return db.transaction(async (tx) => {
        const out = new Map<string, CreditSpan>();
        const finalThrough = new Map<string, number | null>();
        for (const r of requests) {
          if (!finalThrough.has(r.vault)) {
            finalThrough.set(r.vault, (await cursorRow(tx, r.vault))?.finalThrough ?? null);
          }
          const span = await spanOfLock(
            tx,
            r.vault,
            r.jobId,
            r.lockTx,
            { recordedAt: r.recordedAt, respondedAt: r.respondedAt },
            r.settlementTx ?? null,
            finalThrough.get(r.vault)!,
          );
          out.set(r.jobId, {
            balancesUnits: span.balances,
            ordered: span.ordered,
            covered: span.covered,
          });
        }
        return out;
      }, snapshot);
    },
    async oldestFinalThrough() {
      const [row] = await db
        .select({
          at: sql<number | null>`min(coalesce(${ledgerCursors.finalThrough}, 0))`.mapWith(Number),
        })
        .from(ledgerCursors);
      return row?.at ?? null;
    },
    async markJudged(vault, through, at) {
      // GREATEST in the UPDATE itself: two runs at once keep the later marks.
      await db
        .update(ledgerCursors)
        .set({
          judgedThrough: sql`greatest(coalesce(${ledgerCursors.judgedThrough}, 0), ${through})`,
          judgedAt: sql`greatest(coalesce(${ledgerCursors.judgedAt}, 0), ${at})`,
        })
        .where(eq(ledgerCursors.vault, vault));
    },
    async listedSince(vault, since, beforeSec) {
      const rows = await db
        .select({ signature: ledgerLines.signature, blockTime: ledgerLines.blockTime })
        .from(ledgerLines)
        .where(
          and(
            vaultIs(vault),
            gt(ledgerLines.listedAt, since),
            lt(ledgerLines.blockTime, beforeSec),
          ),
        )
        .orderBy(asc(ledgerLines.listedAt), asc(ledgerLines.signature));
      return rows.map((r) => ({ signature: r.signature, blockTime: Number(r.blockTime) }));
    },
    async historyStart(vault) {
      const [r] = await db
        .select({
          signature: ledgerLines.signature,
          slot: ledgerLines.slot,
          blockTime: ledgerLines.blockTime,
          state: ledgerLines.state,
          opened: ledgerLines.opened,
        })
        .from(ledgerLines)
        .where(vaultIs(vault))
        .orderBy(asc(ledgerLines.ord))
        .limit(1);
      if (!r) return null;
      return {
        signature: r.signature,
        slot: Number(r.slot),
        blockTime: r.blockTime === null ? null : Number(r.blockTime),
        read: r.state === "read",
        opened: r.opened,
      };
    },
    async setOpened(vault, signature, opened) {
      await db
        .update(ledgerLines)
        .set({ opened })
        .where(and(vaultIs(vault), eq(ledgerLines.signature, signature)));
    },

    async cursorFigures(vault) {
      const r = await cursorRow(db, vault);
      if (!r) return undefined;
      return {
        syncedAt: r.syncedAt,
        finalThrough: r.finalThrough,
        balanceUnits: r.balanceUnits,
        balanceSlot: r.balanceSlot,
        balanceForeign: foreignHoldingOf(r.balanceForeign),
        balanceControl: balanceControlOf(r.balanceControl),
        newestSlot: r.slot,
        judgedThrough: r.judgedThrough,
        judgedAt: r.judgedAt,
        lastError: r.lastError,
      };
    },
    async openingUnits(vault, fromSec) {
      return db.transaction(async (tx) => {
        const [first] = await tx
          .select({ pre: ledgerLines.preUnits })
          .from(ledgerLines)
          .where(and(vaultIs(vault), moves))
          .orderBy(asc(ledgerLines.ord))
          .limit(1);
        if (first === undefined || first.pre === null) return null;
        const day = Math.floor(fromSec / DAY);
        const [whole] = await tx
          .select({ units: sumUnits(ledgerDaily.units) })
          .from(ledgerDaily)
          .where(and(eq(ledgerDaily.vault, vault), lt(ledgerDaily.day, day)));
        const [partial] = await tx
          .select({ units: sumUnits(ledgerLines.deltaUnits) })
          .from(ledgerLines)
          .where(
            and(
              vaultIs(vault),
              eq(ledgerLines.state, "read"),
              periodOf(day * DAY, fromSec),
              isNotNull(ledgerLines.kind),
            ),
          );
        // Lines read but not classified yet (before a review round) still count in the opening.
        const [unread] = await tx
          .select({ units: sumUnits(ledgerLines.deltaUnits) })
          .from(ledgerLines)
          .where(
            and(
              vaultIs(vault),
              eq(ledgerLines.state, "read"),
              isNull(ledgerLines.kind),
              lt(ledgerLines.blockTime, fromSec),
            ),
          );
        return first.pre + (whole?.units ?? 0n) + (partial?.units ?? 0n) + (unread?.units ?? 0n);
      }, snapshot);
    },
    async periodSums(vault, fromSec, toSec) {
      return db.transaction(async (tx) => {
        const sums = emptySums();
        const firstDay = Math.ceil(fromSec / DAY);
        const endDay = Math.floor(toSec / DAY);
        // Money escrow did not pay in, inside lines filed as returns: the period's deposits.
        const [moved] = await tx
          .select({ units: sumUnits(ledgerLines.depositInUnits) })
          .from(ledgerLines)
          .where(
            and(
              vaultIs(vault),
              isNotNull(ledgerLines.depositInUnits),
              periodOf(fromSec, toSec),
              eq(ledgerLines.kind, "return"),
            ),
          );
        const depositIn = moved?.units ?? 0n;
        sums.return.units -= depositIn;
        sums.deposit.units += depositIn;
        if (firstDay >= endDay) {
          sumsByKind(await lineSums(tx, vault, fromSec, toSec), sums);
          return sums;
        }
        const daily = await tx
          .select({
            kind: ledgerDaily.kind,
            lines: sql<number>`sum(${ledgerDaily.lines})`.mapWith(Number),
            units: sumUnits(ledgerDaily.units),
          })
          .from(ledgerDaily)
          .where(
            and(
              eq(ledgerDaily.vault, vault),
              gte(ledgerDaily.day, firstDay),
              lt(ledgerDaily.day, endDay),
            ),
          )
          .groupBy(ledgerDaily.kind);
        sumsByKind(daily, sums);
        sumsByKind(await lineSums(tx, vault, fromSec, firstDay * DAY), sums);
        sumsByKind(await lineSums(tx, vault, endDay * DAY, toSec), sums);
        return sums;
      }, snapshot);
    },
    async latestRecordedAfter(from, to) {
      const [row] = await db
        .select({ at: max(jobs.recordedAt) })
        .from(jobs)
        .where(
          and(
            recordedAfterDate(jobs.createdAt, jobs.recordedAt),
            gte(jobs.recordedAt, to),
            gte(jobs.createdAt, from),
            lt(jobs.createdAt, to),
          ),
        );
      return row?.at ?? null;
    },
    async countDatedIn(from, to) {
      const [row] = await db
        .select({ n: count() })
        .from(jobs)
        .where(and(gte(jobs.createdAt, from), lt(jobs.createdAt, to)));
      return row?.n ?? 0;
    },
    async earliestDatedBefore(from, to) {
      const [row] = await db
        .select({ at: min(jobs.createdAt) })
        .from(jobs)
        .where(
          and(
            recordedAfterDate(jobs.createdAt, jobs.recordedAt),
            gte(jobs.recordedAt, from),
            lt(jobs.recordedAt, to),
            lt(jobs.createdAt, from),
          ),
        );
      return row?.at ?? null;
    },
    async pendingCounts(vault, fromSec, toSec) {
      const listed = and(vaultIs(vault), eq(ledgerLines.state, "listed"));
      // Not a line listed again that keeps its kind: the per-kind sums count it already.
      const inPeriod = await countLines(
        and(listed, periodOf(fromSec, toSec), isNull(ledgerLines.kind)),
      );
      const upTo = await countLines(
        and(listed, or(lt(ledgerLines.blockTime, toSec), isNull(ledgerLines.blockTime))),
      );
      const all = await countLines(listed);
      const unclassified = await countLines(
        and(vaultIs(vault), eq(ledgerLines.state, "read"), isNull(ledgerLines.kind)),
      );
      return { inPeriod, upTo: upTo + unclassified, all: all + unclassified };
    },
    async reviewLines(vault, fromSec, toSec) {
      const rows = await db
        .select(lineColumns)
        .from(ledgerLines)
        .where(
          and(
            vaultIs(vault),
            inArray(ledgerLines.kind, ["unexplained", "deposit"]),
            periodOf(fromSec, toSec),
          ),
        )
        .orderBy(asc(ledgerLines.ord));
      const lines = rows.map(toLine);
      const now = await classifyMany(db, vault, lines.map(asClassifiable));
      return lines.map((line, i) => ({ ...line, now: now[i]! }));
    },
    async overdueLocks(vault, fromSec, toSec, windowSeconds, asOfSec, extra = []) {
      const candidates = [...(await openLocksPeriod(vault, fromSec, toSec)).map(toLine), ...extra];
      const due = candidates.filter(
        (l) => l.blockTime !== null && l.blockTime + windowSeconds < asOfSec && l.jobId !== null,
      );
      if (due.length === 0) return [];
      // One snapshot: the debits, returns and settlements of the jobs read together.
      const { out } = await db.transaction(
        (tx) =>
          outstandingMany(
            tx,
            vault,
            due.map((l) => l.jobId!),
            extra,
            true,
          ),
        snapshot,
      );
      return due.flatMap((l) => {
        const left = out.get(l.jobId!)?.get(l.signature) ?? -l.deltaUnits;
        return left > 0n ? [{ ...l, outstandingUnits: left }] : [];
      });
    },
    async headerChecks(vault, fromSec, toSec, extra = []) {
      return db.transaction(async (tx) => {
        const finalThrough = (await cursorRow(tx, vault))?.finalThrough ?? null;
        const open = await tx
          .select(lineColumns)
          .from(ledgerLines)
          .where(
            and(
              vaultIs(vault),
              eq(ledgerLines.kind, "lock"),
              sql`${ledgerLines.headerOk} IS NOT TRUE`,
              periodOf(fromSec, toSec),
            ),
          )
          .orderBy(asc(ledgerLines.ord));
        const checks = await headerChecks(tx, vault, [...open.map(toLine), ...extra], finalThrough);
        return checks.filter((check): check is HeaderCheck => check !== null);
      }, snapshot);
    },
    async foreignLines(vault, fromSec, toSec) {
      const rows = await db
        .select({
          ...findingColumns,
          changes: ledgerLines.foreignChanges,
        })
        .from(ledgerLines)
        .where(and(vaultIs(vault), isNotNull(ledgerLines.foreignChanges), periodOf(fromSec, toSec)))
        .orderBy(asc(ledgerLines.ord));
      return rows.map(({ changes, ...r }) => ({ ...r, changes: foreignChangesOf(changes!) }));
    },
    async ownerLines(vault, fromSec, toSec) {
      const rows = await db
        .select({
          ...findingColumns,
          owner: ledgerLines.otherOwner,
        })
        .from(ledgerLines)
        .where(and(vaultIs(vault), isNotNull(ledgerLines.otherOwner), periodOf(fromSec, toSec)))
        .orderBy(asc(ledgerLines.ord));
      return rows.map(({ owner, ...r }) => ({ ...r, owner: owner! }));
    },
    async ownerNow(vault) {
      const r = await newestKnownOwner(vault);
      if (r?.owner == null) return null;
      return { ...r, owner: r.owner };
    },
    async ownerShownLine(vault) {
      const r = await newestKnownOwner(vault);
      return r === undefined ? null : { signature: r.signature, slot: r.slot };
    },
    async mixedMemoLines(vault, fromSec, toSec) {
      const rows = await db
        .select(lineColumns)
        .from(ledgerLines)
        .where(
          and(
            vaultIs(vault),
            isNotNull(ledgerLines.memoJobs),
            periodOf(fromSec, toSec),
            eq(ledgerLines.state, "read"),
            ne(ledgerLines.deltaUnits, 0n),
          ),
        )
        .orderBy(asc(ledgerLines.ord));
      return rows.map(toLine).map(mixedMemoLineOf);
    },
    async delegateLines(vault, fromSec, toSec) {
      const rows = await db
        .select({
          ...findingColumns,
          delegate: ledgerLines.delegate,
        })
        .from(ledgerLines)
        .where(and(vaultIs(vault), isNotNull(ledgerLines.delegate), periodOf(fromSec, toSec)))
        .orderBy(asc(ledgerLines.ord));
      return rows.map(({ delegate, ...r }) => ({ ...r, delegate: delegate! }));
    },
    async hiddenDebitLines(vault, fromSec, toSec) {
      const rows = await db
        .select({
          ...findingColumns,
          deltaUnits: ledgerLines.deltaUnits,
          hiddenUnits: ledgerLines.hiddenDebitUnits,
        })
        .from(ledgerLines)
        .where(
          and(vaultIs(vault), isNotNull(ledgerLines.hiddenDebitUnits), periodOf(fromSec, toSec)),
        )
        .orderBy(asc(ledgerLines.ord));
      return rows.map(({ deltaUnits, hiddenUnits, ...r }) => ({
        ...r,
        deltaUnits: deltaUnits ?? 0n,
        hiddenUnits: hiddenUnits!,
      }));
    },
    async setAsideLines(vault, fromSec, toSec) {
      const rows = await db
        .select({
          signature: ledgerLines.signature,
          slot: ledgerLines.slot,
          blockTime: ledgerLines.blockTime,
          why: ledgerLines.setAside,
        })
        .from(ledgerLines)
        .where(
          and(
            vaultIs(vault),
            isNotNull(ledgerLines.setAside),
            or(periodOf(fromSec, toSec), undatedWithin(fromSec, toSec)),
          ),
        )
        .orderBy(asc(ledgerLines.ord));
      return rows.map((r) => ({ ...r, why: r.why! }));
    },
    async gaps(vault, fromSec, toSec) {
      return db.transaction(async (tx) => {
        const stored = await tx
          .select({
            signature: ledgerLines.signature,
            slot: ledgerLines.slot,
            afterSignature: ledgerLines.gapAfterSignature,
            afterSlot: ledgerLines.gapAfterSlot,
            units: ledgerLines.gapUnits,
          })
          .from(ledgerLines)
          .where(and(vaultIs(vault), isNotNull(ledgerLines.gapUnits), periodOf(fromSec, toSec)))
          .orderBy(asc(ledgerLines.ord));
        const out: StoredGap[] = stored.map((g) => ({
          afterSignature: g.afterSignature!,
          beforeSignature: g.signature,
          fromSlot: g.afterSlot!,
          toSlot: g.slot,
          missingUnits: g.units!,
        }));
        // Movements above the walk's position (unread lines below them) are compared here.
        const chained = (await cursorRow(tx, vault))?.chainedOrd ?? -1;
        const tail = await tx
          .select(lineColumns)
          .from(ledgerLines)
          .where(
            and(
              vaultIs(vault),
              gt(ledgerLines.ord, chained),
              moves,
              lt(ledgerLines.blockTime, toSec),
            ),
          )
          .orderBy(asc(ledgerLines.ord));
        if (tail.length > 0) {
          let prev = await movementAtOrBefore(tx, vault, chained);
          for (const line of tail.map(toLine)) {
            const gap = gapBetween(prev, line);
            if (gap && line.blockTime !== null && line.blockTime >= fromSec) out.push(gap);
            prev = line;
          }
        }
        return out;
      }, snapshot);
    },
    async movementAround(vault, toSec) {
      const [next] = await db
        .select({ pre: ledgerLines.preUnits })
        .from(ledgerLines)
        .where(and(vaultIs(vault), gte(ledgerLines.blockTime, toSec), moves))
        .orderBy(asc(ledgerLines.blockTime), asc(ledgerLines.ord))
        .limit(1);
      if (next !== undefined) return { next: next.pre, last: null };
      return { next: null, last: await lastBefore(vault, toSec) };
    },
    lastMovementBefore: (vault, toSec) => lastBefore(vault, toSec),
    async newestMovement(vault) {
      const [last] = await db
        .select({
          signature: ledgerLines.signature,
          slot: ledgerLines.slot,
          blockTime: ledgerLines.blockTime,
          postUnits: ledgerLines.postUnits,
        })
        .from(ledgerLines)
        .where(and(vaultIs(vault), moves))
        .orderBy(desc(ledgerLines.ord))
        .limit(1);
      return last === undefined
        ? null
        : {
            signature: last.signature,
            slot: Number(last.slot),
            blockTime: last.blockTime === null ? null : Number(last.blockTime),
            postUnits: last.postUnits,
          };
    },
  };

  async function lastBefore(vault: string, toSec: number): Promise<bigint | null> {
    const [last] = await db
      .select({ post: ledgerLines.postUnits })
      .from(ledgerLines)
      .where(and(vaultIs(vault), lt(ledgerLines.blockTime, toSec), moves))
      .orderBy(desc(ledgerLines.blockTime), desc(ledgerLines.ord))
      .limit(1);
    return last?.post ?? null;
  }
}
