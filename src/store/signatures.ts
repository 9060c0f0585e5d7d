import { and, eq, isNotNull, isNull, sql } from "drizzle-orm";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import type { SqliteStore, Store } from "../db/client.js";
import { chainTransactions, finalVerdicts } from "../db/schema.js";
import { pgTwins } from "./pg-twins.js";
import {
  nullableParam,
  param,
  perConnectionModule,
  prepareRawRows,
  prepareRows,
} from "./prepared.js";
import { pairKey } from "./signature-pairs.js";
import { fetchedColumns } from "./signature-rules.js";

/**
 * The signature state machine: one `chain_transactions` row per signature any job names.
 * States only move forward (unknown -> landed -> finalized; dropped and pruned end the search
 * until a re-verification), commitment never goes down, a finalized transaction is fetched
 * once and shared by every job naming it, and the first process to store it wins.
 *
 * Every change is written as guarded SQL, never as values computed from a row read earlier:
 * another process may have moved the row meanwhile, and counters are incremented in SQL so no
 * miss is lost. Each method returns the rows as the database now holds them.
 */

export type SignatureRow = typeof chainTransactions.$inferSelect;

/** A status as a node reported it; null when the node knows nothing of the signature. */
export interface ObservedStatus {
  slot: number;
  confirmationStatus: "processed" | "confirmed" | "finalized" | null;
}

/** A transaction fetched from a node, to be stored under its signature. */
export interface FetchedItem {
  signature: string;
  fetched: { facts: TransactionFacts; raw: unknown };
  /** When it was fetched (ms since epoch). */
  t: number;
  /** The one job its memos name under the verifier's profile (`memoJobOf`), if known. */
  memoJob?: string | null;
}

/** What a poll of statuses knew besides the statuses. */
export interface StatusPoll {
  /** The chain's finalized slot, when it was read. */
  currentSlot: number | null;
  dropAfterSlots: number;
  t: number;
  /**
   * Each missing status is k endpoints' agreed "not found" (`RPC_QUORUM` k >= 2): a signature
   * one endpoint once showed landed, even confirmed, is dropped like one never seen. A status
   * short of finalized comes from one endpoint, and one lie ("confirmed" for a phantom) kept
   * the job waiting for ever. Alone, one endpoint's miss is a lagging node's.
   */
  agreedMisses?: boolean;
}

export interface SignatureStore {
  /** Gives every signature its row (state `unknown`) unless it has one; returns all rows. */
  track(signatures: readonly string[], t: number): Promise<Map<string, SignatureRow>>;
  /** The rows of these signatures, as stored. */
  load(signatures: readonly string[]): Promise<Map<string, SignatureRow>>;
  /**
   * Records one poll's statuses in one transaction. A missing status records the first miss
   * (its time and the current slot); a signature never seen (or seen only at processed) is
   * dropped once the current slot is past the first miss's slot by `dropAfterSlots`. A status
   * that changes nothing of the row (still missing, found as it was) writes nothing: a backlog
   * waiting for finality is polled without rewriting its rows. Returns every polled row as
   * the database now holds it. `known`: the rows as the caller read them before the poll
   * (`track`); one still stored exactly so, for which the poll changes nothing, may be returned
   * as given instead of read again (SQLite checks a few columns instead of reading the row).
   */
  recordStatuses(
    polled: readonly { signature: string; status: ObservedStatus | null }[],
    poll: StatusPoll,
    known?: ReadonlyMap<string, SignatureRow>,
  ): Promise<Map<string, SignatureRow>>;
  /** Stores a fetched finalized transaction unless another process stored it first. */
  recordFetched(
    signature: string,
    fetched: { facts: TransactionFacts; raw: unknown },
    t: number,
  ): Promise<SignatureRow | undefined>;
  /**
   * `recordFetched` for several transactions in one transaction (one commit); returns their
   * rows as stored.
   */
  recordFetchedAll(items: readonly FetchedItem[]): Promise<Map<string, SignatureRow>>;
  /**
   * Writes the one job the memos of stored transactions name (`memoJobOf`) where the row has
   * none yet: rows the ledger reader stored, or stored before the column existed. Rows without
   * facts are left alone. It never changes a value written: the facts of a row never change.
   */
  recordMemoJobs(found: readonly { signature: string; memoJob: string }[]): Promise<void>;
  /**
   * The status said finalized but no endpoint returned the transaction (a lagging or pruning
   * node): the miss counts while nobody has stored the transaction, the first one's time is
   * kept, and it is pruned at `maxMisses` misses spanning at least `minSpanMs` (a node lagging
   * for a minute must not make a landed transaction unverifiable for good).
   */
  recordFetchMiss(
    signature: string,
    maxMisses: number,
    span: { t: number; minSpanMs: number },
  ): Promise<SignatureRow | undefined>;
  /**
   * Which jobs name each signature in any role, receipt or jobs API (or, when none does, as a
   * conflict signature: a conflicting receipt's): up to `limit` ids in id order, and the total,
   * counted by SQLite (a signature replayed by thousands of receipts
   * costs each of them an index count, not a list of all the others). On PostgreSQL it first
   * waits for the receipts and answers naming one of them that are being written on another
   * connection (src/store/pg/namer-locks.ts); SQLite's writes are one at a time already.
   */
  jobsNaming(
    signatures: readonly string[],
    limit: number,
  ): Promise<{ named: Map<string, string[]>; totals: Map<string, number> }>;
  /**
   * The pairs in which the job names the signature in any role, conflicting receipts included;
   * on PostgreSQL after the same wait as `jobsNaming`. `judged`: only jobs with a final verdict.
   */
  namesAny(
    pairs: readonly { jobId: string; signature: string }[],
    options?: { judged?: boolean },
  ): Promise<Set<string>>;
}

export { pairKey };

/** Ranks a commitment column or parameter in SQL. */
const rank = (column: string) =>
  `CASE ${column} WHEN 'finalized' THEN 2 WHEN 'confirmed' THEN 1 WHEN 'processed' THEN 0 ELSE -1 END`;

/** The signature store of either dialect. */
export function createSignatureStore(store: Store): SignatureStore {
  return store.kind === "postgres"
    ? pgTwins().createPgSignatureStore(store)
    : sqliteSignatureStore(store);
}

const sqliteSignatureStore = perConnectionModule(createSqliteSignatureStore);

function createSqliteSignatureStore(store: SqliteStore): SignatureStore {
  const { db, sqlite } = store;

  // Raw SQL: each update is one guarded CASE per column, which the query builder cannot say.
  // Each returns the row as written: reading the round's rows again after the writes cost as
  // much as the writes. A poll that would change nothing but the time of the poll writes
  // nothing (see `recordStatuses`).
  const statusFound = prepareRawRows(
    store,
    chainTransactions,
    `UPDATE chain_transactions SET
       state = CASE WHEN @commitment = 'finalized' THEN 'finalized' ELSE 'landed' END,
       commitment = CASE WHEN ${rank("commitment")} >= ${rank("@commitment")}
         THEN commitment ELSE @commitment END,
       slot = @slot,
       status_checked_at = @t,
       not_found_count = 0,
       not_found_since = NULL,
       not_found_slot = NULL
     WHERE signature = @signature AND state NOT IN ('finalized', 'pruned')
       AND (state IS NOT (CASE WHEN @commitment = 'finalized' THEN 'finalized' ELSE 'landed' END)
         OR ${rank("@commitment")} > ${rank("commitment")} OR slot IS NOT @slot
         OR not_found_count <> 0 OR not_found_since IS NOT NULL OR not_found_slot IS NOT NULL)
     RETURNING *`,
  );
  // A signature never seen, or seen only at processed (a minority fork can lose it), can be
  // dropped; one seen confirmed and missing now is a lagging node (e.g. after failover), which
  // the next poll sorts out, unless k endpoints agree it is missing (`agreedMisses`). Only the
  // first miss is written (its time and slot), and the drop: later misses change nothing. Raw
  // SQL: a guarded CASE.
  const drops = `(state = 'unknown'
      OR (state = 'landed' AND (commitment = 'processed' OR @agreedMisses = 1)))
    AND @currentSlot IS NOT NULL
    AND @currentSlot > coalesce(not_found_slot, @currentSlot) + @dropAfterSlots`;
  // A first miss's slot more than a drop window past the finalized slot read now was no
  // endpoint's finalized slot (a node's lie, or one far ahead of all the others): it is read
  // again from this poll, or that one answer kept the signature from ever being dropped.
  const slotBehind = `(@currentSlot IS NOT NULL AND not_found_slot IS NOT NULL
      AND @currentSlot + @dropAfterSlots < not_found_slot)`;
  const statusMissing = prepareRawRows(
    store,
    chainTransactions,
    `UPDATE chain_transactions SET
       state = CASE WHEN ${drops} THEN 'dropped' ELSE state END,
       status_checked_at = @t,
       not_found_since = coalesce(not_found_since, @t),
       not_found_slot = CASE WHEN ${slotBehind} THEN @currentSlot
         ELSE coalesce(not_found_slot, @currentSlot) END
     WHERE signature = @signature AND state IN ('unknown', 'landed')
       AND (not_found_since IS NULL OR (not_found_slot IS NULL AND @currentSlot IS NOT NULL)
         OR ${slotBehind} OR (${drops}))
     RETURNING *`,
  );
  // What a status poll's row is compared by (`rowKey`) for the JSON list `signatures`: a row
  // read again only when it moved since the caller read it. Raw SQL: raw rows of json_each.
  const keysOf = sqlite
    .prepare(
      `SELECT signature, state, commitment, slot, first_seen_at, status_checked_at,
         not_found_since, not_found_count, not_found_slot,
         memo_job IS NULL AND block_time IS NULL AND fee_lamports IS NULL AND succeeded IS NULL
           AND err IS NULL AND facts IS NULL AND raw IS NULL AND fetched_at IS NULL
       FROM chain_transactions WHERE signature IN (SELECT value FROM json_each(@signatures))`,
    )
    .raw(true) as unknown as { all(p: { signatures: string }): unknown[][] };
  // Raw SQL: the counter and the state move together in one guarded CASE.
  const fetchMissed = sqlite.prepare(
    `UPDATE chain_transactions SET
       not_found_count = not_found_count + 1,
       not_found_since = coalesce(not_found_since, @t),
       state = CASE WHEN state = 'finalized' AND not_found_count + 1 >= @maxMisses
         AND @t - coalesce(not_found_since, @t) >= @minSpanMs THEN 'pruned' ELSE state END
     WHERE signature = @signature AND facts IS NULL`,
  );

  // Jobs naming one signature in any role, from the receipt or the jobs API. Each branch is an
  // index range; UNION removes a job named twice. Ordered by id: the first is the owner of a
  // shared signature whose memo decides nothing (see signatureOwner). Raw SQL: a UNION of
  // index ranges, measured faster than one OR over four columns.
  const namingUnion = `SELECT job_id FROM jobs WHERE escrow_tx = @sig
    UNION SELECT job_id FROM jobs WHERE settlement_tx = @sig
    UNION SELECT job_id FROM jobs WHERE api_escrow_tx = @sig AND api_escrow_tx IS NOT escrow_tx
    UNION SELECT job_id FROM jobs WHERE api_settlement_tx = @sig
      AND api_settlement_tx IS NOT settlement_tx`;
  const namingIds = sqlite
    .prepare(`${namingUnion} ORDER BY job_id LIMIT @limit`)
    .pluck() as unknown as { all(p: { sig: string; limit: number }): string[] };
  const namingCount = sqlite
    .prepare(`SELECT count(*) FROM (${namingUnion})`)
    .pluck() as unknown as { get(p: { sig: string }): number };
  // Jobs naming it only as a conflict signature (a conflicting receipt, a jobs API answer's
  // earlier step, a ledger line kept with them): asked when no receipt or answer names it, so
  // the first of them owns a transaction no memo decides (a payout with no memo).
  const conflictIds = sqlite
    .prepare(
      "SELECT job_id FROM job_conflict_signatures WHERE signature = @sig ORDER BY job_id LIMIT @limit",
    )
    .pluck() as unknown as { all(p: { sig: string; limit: number }): string[] };
  const conflictCount = sqlite
    .prepare("SELECT count(*) FROM job_conflict_signatures WHERE signature = @sig")
    .pluck() as unknown as { get(p: { sig: string }): number };
  // Raw SQL: json_each over the conflicting receipts' signatures.
  const namesStatement = sqlite.prepare(
    `SELECT 1 FROM jobs WHERE job_id = @jobId
       AND (@sig IN (escrow_tx, settlement_tx, api_escrow_tx, api_settlement_tx)
         OR EXISTS (SELECT 1 FROM json_each(conflict_signatures) WHERE value = @sig))
       AND (@judged = 0 OR verdict IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")}))`,
  );

  // A list of signatures is one JSON parameter (json_each), not one parameter each: drizzle
  // spent ~100 ms of CPU building and preparing the IN lists and VALUES rows of 2,000
  // signatures, a round's worth, in one synchronous stretch of a serving process. Prepared
  // once, its rows mapped by a plan made once (drizzle's own mapping cost more than the read).
  const loadStatement = prepareRows(
    store,
    chainTransactions,
    db
      .select()
      .from(chainTransactions)
      .where(
        sql`${chainTransactions.signature} IN (SELECT value FROM json_each(${sql.placeholder("signatures")}))`,
      ),
  );
  function load(signatures: readonly string[]): Map<string, SignatureRow> {
    const rows = new Map<string, SignatureRow>();
    if (signatures.length === 0) return rows;
    for (const row of loadStatement.all({ signatures: JSON.stringify(signatures) })) {
      rows.set(row.signature, row);
    }
    return rows;
  }
  const storeFetched = db
    .update(chainTransactions)
    .set({
      state: "finalized",
      commitment: "finalized",
      slot: param("slot"),
      blockTime: param("blockTime"),
      feeLamports: param("feeLamports"),
      succeeded: param("succeeded"),
      err: nullableParam("err", chainTransactions.err),
      facts: param("facts"),
      raw: param("raw"),
      fetchedAt: param("fetchedAt"),
      memoJob: param("memoJob"),
    })
    .where(
      and(
        eq(chainTransactions.signature, sql.placeholder("signature")),
        isNull(chainTransactions.facts),
      ),
    )
    .prepare();

  const storeAllFetched = sqlite.transaction((items: readonly FetchedItem[]) => {
    for (const { signature, fetched, t, memoJob } of items) {
      storeFetched.run({ signature, ...fetchedColumns(fetched.facts, fetched.raw, t, memoJob) });
    }
  });
  const storeMemoJob = db
    .update(chainTransactions)
    .set({ memoJob: param("memoJob") })
    .where(
      and(
        eq(chainTransactions.signature, sql.placeholder("signature")),
        isNull(chainTransactions.memoJob),
        isNotNull(chainTransactions.facts),
      ),
    )
    .prepare();
  const storeMemoJobs = sqlite.transaction(
    (found: readonly { signature: string; memoJob: string }[]) => {
      for (const f of found) storeMemoJob.run(f);
    },
  );

  // Raw SQL: INSERT … SELECT from json_each (see `load`); the other columns take their defaults.
  const insertMissingStatement = sqlite.prepare(
    `INSERT INTO chain_transactions (signature, first_seen_at)
       SELECT value, @t FROM json_each(@signatures) WHERE true
       ON CONFLICT (signature) DO NOTHING`,
  );
  const insertMissing = sqlite.transaction((signatures: readonly string[], t: number) => {
    insertMissingStatement.run({ signatures: JSON.stringify(signatures), t });
  });

  const writeStatuses = sqlite.transaction(
    (
      polled: readonly { signature: string; status: ObservedStatus | null }[],
      poll: StatusPoll,
    ): Map<string, SignatureRow> => {
      const rows = new Map<string, SignatureRow>();
      const unchanged: string[] = [];
      for (const { signature, status } of polled) {
        const [row] = status
          ? statusFound.all({
              signature,
              commitment: status.confirmationStatus,
              slot: status.slot,
              t: poll.t,
            })
          : statusMissing.all({
              signature,
              currentSlot: poll.currentSlot,
              dropAfterSlots: poll.dropAfterSlots,
              agreedMisses: poll.agreedMisses ? 1 : 0,
              t: poll.t,
            });
        if (row) rows.set(signature, row);
        else unchanged.push(signature);
      }
      // Every polled row as it is now: a row this poll left alone may have been moved by
      // another process (finalized and fetched, say), and a decision must not read it stale.
      for (const [signature, row] of load(unchanged)) rows.set(signature, row);
      return rows;
    },
  );

  async function recordFetchedAll(
    items: readonly FetchedItem[],
  ): Promise<Map<string, SignatureRow>> {
    storeAllFetched.immediate(items);
    return load(items.map((i) => i.signature));
  }

  return {
    async track(signatures, t) {
      // Read first: a job polled again has its rows, and then nothing is written.
      const rows = load(signatures);
      const missing = signatures.filter((s) => !rows.has(s));
      if (missing.length === 0) return rows;
      insertMissing.immediate(missing, t);
      for (const [signature, row] of load(missing)) rows.set(signature, row);
      return rows;
    },
    async load(signatures) {
      return load(signatures);
    },
    async recordStatuses(polled, poll, known) {
      // A miss of a signature whose first miss is written, and that no drop can take, changes
      // nothing of its row as read: if it is still stored so, it is returned as read, with
      // neither the UPDATE that would find nothing to do, nor a read of every column, nor the
      // write lock (a backlog of unseen signatures is polled again and again). A row moved
      // since takes the usual way, in the write transaction.
      const rows = new Map<string, SignatureRow>();
      const quiet = new Map<string, SignatureRow>();
      for (const { signature, status } of polled) {
        const row = known?.get(signature);
        if (status === null && row !== undefined && missChangesNothing(row, poll)) {
          quiet.set(signature, row);
        }
      }
      if (quiet.size > 0) {
        for (const stored of keysOf.all({ signatures: JSON.stringify([...quiet.keys()]) })) {
          const row = quiet.get(stored[0] as string)!;
          if (stored[9] === 1 && rowKey(row).every((v, i) => v === stored[i])) {
            rows.set(row.signature, row);
          }
        }
      }
      const rest = rows.size === 0 ? polled : polled.filter((p) => !rows.has(p.signature));
      if (rest.length === 0) return rows;
      for (const [signature, row] of writeStatuses.immediate(rest, poll)) rows.set(signature, row);
      return rows;
    },
    async recordFetched(signature, fetched, t) {
      return (await recordFetchedAll([{ signature, fetched, t }])).get(signature);
    },
    recordFetchedAll,
    async recordMemoJobs(found) {
      if (found.length === 0) return;
      storeMemoJobs.immediate(found);
    },
    async recordFetchMiss(signature, maxMisses, { t, minSpanMs }) {
      fetchMissed.run({ signature, maxMisses, t, minSpanMs });
      return load([signature]).get(signature);
    },
    async jobsNaming(signatures, limit) {
      const named = new Map<string, string[]>();
      const totals = new Map<string, number>();
      for (const sig of new Set(signatures)) {
        let ids = namingIds.all({ sig, limit });
        let count = namingCount;
        if (ids.length === 0) {
          ids = conflictIds.all({ sig, limit });
          count = conflictCount;
        }
        named.set(sig, ids);
        totals.set(sig, ids.length < limit ? ids.length : count.get({ sig }));
      }
      return { named, totals };
    },
    async namesAny(pairs, { judged = false } = {}) {
      const found = new Set<string>();
      for (const { jobId, signature } of pairs) {
        if (namesStatement.get({ jobId, sig: signature, judged: judged ? 1 : 0 }) !== undefined) {
          found.add(pairKey(jobId, signature));
        }
      }
      return found;
    },
  };
}

/**
 * Whether a status poll's "not found" would leave this row as it is (the guard of the missing
 * status's UPDATE): unseen or landed, its first miss written with a slot, no facts, and not
 * droppable at this poll's slot, counted for any state and commitment (no drop is ever skipped).
 */
function missChangesNothing(row: SignatureRow, poll: StatusPoll): boolean {
  return (
    (row.state === "unknown" || row.state === "landed") &&
    row.notFoundSince !== null &&
    row.notFoundSlot !== null &&
    row.memoJob === null &&
    row.blockTime === null &&
    row.feeLamports === null &&
    row.succeeded === null &&
    row.err === null &&
    row.facts === null &&
    row.raw === null &&
    row.fetchedAt === null &&
    (poll.currentSlot === null ||
      (poll.currentSlot <= row.notFoundSlot + poll.dropAfterSlots &&
        poll.currentSlot + poll.dropAfterSlots >= row.notFoundSlot))
  );
}

/** The columns `keysOf` reads, in its order. */
const rowKey = (r: SignatureRow) => [
  r.signature,
  r.state,
  r.commitment,
  r.slot,
  r.firstSeenAt,
  r.statusCheckedAt,
  r.notFoundSince,
  r.notFoundCount,
  r.notFoundSlot,
];

/**
 * Signatures of a job given up on (dropped, pruned) are looked for again: the node may have
 * been the wrong one, which is what a re-verification is usually asked for. The conflicting
 * receipts' signatures too (`conflict_signatures`: a step a jobs API answer named once, a
 * ledger line under the job's memo): a second lock named while still unsent was given up as
 * never landed, and, sent later (a durable nonce keeps it valid), the job went on saying so.
 * Composes inside the caller's write transaction (see `reverifyJob` in job-queue.ts); raw SQL:
 * a CASE over a UNION of the job's four signature columns and its JSON list.
 */
export function createGivenUpReset(store: SqliteStore): (jobId: string) => void {
  const statement = store.sqlite.prepare(
    `UPDATE chain_transactions
       SET state = CASE state WHEN 'pruned' THEN 'finalized' ELSE 'unknown' END,
         not_found_count = 0, not_found_slot = NULL, not_found_since = NULL
     WHERE state IN ('pruned', 'dropped') AND signature IN (
       SELECT escrow_tx FROM jobs WHERE job_id = @jobId UNION SELECT settlement_tx FROM jobs WHERE job_id = @jobId
       UNION SELECT api_escrow_tx FROM jobs WHERE job_id = @jobId
       UNION SELECT api_settlement_tx FROM jobs WHERE job_id = @jobId
       UNION SELECT value FROM jobs, json_each(CASE WHEN json_type(conflict_signatures) = 'array'
         THEN conflict_signatures ELSE '[]' END) WHERE job_id = @jobId)`,
  );
  return (jobId) => {
    statement.run({ jobId });
  };
}
