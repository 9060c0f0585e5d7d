import { type SQL, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { chainTransactions } from "../../db/pg/schema.js";
import { finalVerdicts } from "../../db/schema.js";
import { pairKey } from "../signature-pairs.js";
import { fetchedColumns } from "../signature-rules.js";
import type {
  FetchedItem,
  ObservedStatus,
  SignatureRow,
  SignatureStore,
  StatusPoll,
} from "../signatures.js";
import type { PgExecutor } from "./executor.js";
import { awaitNamerWriters } from "./namer-locks.js";

/**
 * The signature state machine on PostgreSQL (contract, states and the SQLite version in
 * src/store/signatures.ts). Every change is one guarded UPDATE whose CASE reads the row as it
 * is when the UPDATE locks it (READ COMMITTED re-reads a row another transaction changed), so
 * two processes recording the same signature end as if one ran after the other. Statements
 * that lock several rows lock them in signature order (the inserts of `track`, the `FOR
 * UPDATE` of `recordStatuses`, whose updates touch only the rows it locked, and the given-up
 * reset), so two of them never deadlock.
 */

type Polled = { signature: string; status: ObservedStatus | null };

/** Ranks a commitment column or parameter in SQL. */
const rank = (value: SQL) =>
  sql`CASE ${value} WHEN 'finalized' THEN 2 WHEN 'confirmed' THEN 1 WHEN 'processed' THEN 0 ELSE -1 END`;

/** A JS array as ONE parameter (drizzle would otherwise spread it into a list). */
const textArray = (values: readonly (string | null)[]) => sql`${sql.param([...values])}::text[]`;

/**
 * Splits a poll into passes in which each signature appears once, keeping order: applying the
 * passes one after the other is applying the poll row by row, as SQLite does.
 */
function passes(polled: readonly Polled[]): Polled[][] {
  const out: Polled[][] = [];
  const seen = new Map<string, number>();
  for (const p of polled) {
    const n = seen.get(p.signature) ?? 0;
    seen.set(p.signature, n + 1);
    let pass = out[n];
    if (!pass) {
      pass = [];
      out[n] = pass;
    }
    pass.push(p);
  }
  return out;
}

const givenUp = sql`state IN ('pruned', 'dropped')`;
const settled = sql`c.state IN ('finalized', 'pruned')`;

type Poll = StatusPoll;

/** A pass of found statuses as rows `p (signature, commitment, slot)`. */
const foundArrays = (found: readonly Polled[]) =>
  sql`unnest(${textArray(found.map((p) => p.signature))},
    ${textArray(found.map((p) => p.status?.confirmationStatus ?? null))},
    ${sql.param(found.map((p) => p.status?.slot ?? null))}::bigint[])
    AS p(signature, commitment, slot)`;

/**
 * Whether found status `p` changes row `c`: a row neither finalized nor pruned whose state,
 * commitment (it only rises), slot or misses it moves. The SQLite statement says the same.
 */
const foundChanges = sql`(NOT ${settled} AND (
  c.state IS DISTINCT FROM (CASE WHEN p.commitment = 'finalized' THEN 'finalized' ELSE 'landed' END)
  OR ${rank(sql`p.commitment`)} > ${rank(sql`c.commitment`)} OR c.slot IS DISTINCT FROM p.slot
  OR c.not_found_count <> 0 OR c.not_found_since IS NOT NULL OR c.not_found_slot IS NOT NULL))`;

/** Whether row `c`, missing from this poll, is dropped by it. */
const drops = (poll: Poll) => {
  const current = sql`${poll.currentSlot}::bigint`;
  const agreed = sql.raw(poll.agreedMisses ? "TRUE" : "FALSE");
  return sql`((c.state = 'unknown'
      OR (c.state = 'landed' AND (c.commitment = 'processed' OR ${agreed})))
    AND ${current} IS NOT NULL
    AND ${current} > coalesce(c.not_found_slot, ${current}) + ${poll.dropAfterSlots}::bigint)`;
};

/**
 * Whether row `c`'s first miss slot is more than a drop window past this poll's finalized slot:
 * no endpoint's finalized slot (a node's lie, or one far ahead of all the others), read again
 * from this poll, or that one answer kept the signature from ever being dropped.
 */
const slotBehind = (poll: Poll) => sql`(${poll.currentSlot}::bigint IS NOT NULL
  AND c.not_found_slot IS NOT NULL
  AND ${poll.currentSlot}::bigint + ${poll.dropAfterSlots}::bigint < c.not_found_slot)`;

/** Whether a missing status changes row `c`: its first miss, the slot of it, or its drop. */
const missingChanges = (poll: Poll) => sql`(c.state IN ('unknown', 'landed') AND (
  c.not_found_since IS NULL
  OR (c.not_found_slot IS NULL AND ${poll.currentSlot}::bigint IS NOT NULL)
  OR ${slotBehind(poll)}
  OR ${drops(poll)}))`;

export function createPgSignatureStore(store: PgStore): SignatureStore {
  const { db } = store;

  async function load(signatures: readonly string[]): Promise<Map<string, SignatureRow>> {
    const rows = new Map<string, SignatureRow>();
    if (signatures.length === 0) return rows;
    // One array parameter, not one parameter a signature: drizzle's building of long IN lists
    // cost ~100 ms of CPU per 2,000 signatures on the serving process's event loop.
    for (const row of await db
      .select()
      .from(chainTransactions)
      .where(sql`${chainTransactions.signature} = ANY(${textArray(signatures)})`)) {
      rows.set(row.signature, row as SignatureRow);
    }
    return rows;
  }

  // Raw SQL: each column is one guarded CASE (as on SQLite) over a whole pass of the poll
  // joined from arrays, one statement instead of a round trip per signature. Only rows the
  // status changes are written (see `foundChanges`).
  async function writeFound(tx: PgExecutor, found: readonly Polled[], t: number) {
    if (found.length === 0) return;
    await tx.execute(sql`UPDATE chain_transactions c SET
        state = CASE WHEN p.commitment = 'finalized' THEN 'finalized' ELSE 'landed' END,
        commitment = CASE WHEN ${rank(sql`c.commitment`)} >= ${rank(sql`p.commitment`)}
          THEN c.commitment ELSE p.commitment END,
        slot = p.slot,
        status_checked_at = ${t}::bigint,
        not_found_count = 0,
        not_found_since = NULL,
        not_found_slot = NULL
      FROM ${foundArrays(found)}
      WHERE c.signature = p.signature AND ${foundChanges}`);
  }

  // A signature never seen, or seen only at processed (a minority fork can lose it), can be
  // dropped; one seen confirmed and missing now is a lagging node (e.g. after failover), which
  // the next poll sorts out, unless k endpoints agree it is missing (`agreedMisses`). Only the
  // first miss and the drop are written (see `missingChanges`). Raw SQL: a guarded CASE.
  async function writeMissing(tx: PgExecutor, missing: readonly Polled[], poll: Poll) {
    if (missing.length === 0) return;
    const current = sql`${poll.currentSlot}::bigint`;
    await tx.execute(sql`UPDATE chain_transactions c SET
        state = CASE WHEN ${drops(poll)} THEN 'dropped' ELSE c.state END,
        status_checked_at = ${poll.t}::bigint,
        not_found_since = coalesce(c.not_found_since, ${poll.t}::bigint),
        not_found_slot = CASE WHEN ${slotBehind(poll)} THEN ${current}
          ELSE coalesce(c.not_found_slot, ${current}) END
      WHERE c.signature = ANY(${textArray(missing.map((p) => p.signature))})
        AND ${missingChanges(poll)}`);
  }

  /**
   * One UPDATE for every fetched transaction, its columns joined from arrays (`json` columns
   * as their text). Guarded by `facts IS NULL`: the first process to store a transaction wins,
   * and of a signature given twice the first item, as the UPDATE a transaction made before.
   */
  function storeFetched(tx: PgExecutor, items: readonly FetchedItem[]) {
    const first = new Map<string, FetchedItem>();
    for (const item of items) if (!first.has(item.signature)) first.set(item.signature, item);
    const rows = [...first.values()].map(({ signature, fetched, t, memoJob }) => ({
      signature,
      ...fetchedColumns(fetched.facts, fetched.raw, t, memoJob),
    }));
    const json = (value: unknown) => (value === null ? null : JSON.stringify(value));
    return tx.execute(sql`UPDATE chain_transactions c SET
        state = 'finalized',
        commitment = 'finalized',
        memo_job = v.memo_job,
        slot = v.slot,
        block_time = v.block_time,
        fee_lamports = v.fee_lamports,
        succeeded = v.succeeded,
        err = v.err::json,
        facts = v.facts::json,
        raw = v.raw,
        fetched_at = v.fetched_at
      FROM unnest(
        ${textArray(rows.map((r) => r.signature))},
        ${textArray(rows.map((r) => r.memoJob))},
        ${sql.param(rows.map((r) => r.slot))}::bigint[],
        ${sql.param(rows.map((r) => r.blockTime))}::bigint[],
        ${textArray(rows.map((r) => r.feeLamports.toString()))}::bigint[],
        ${sql.param(rows.map((r) => r.succeeded))}::boolean[],
        ${textArray(rows.map((r) => json(r.err)))},
        ${textArray(rows.map((r) => json(r.facts)))},
        ${textArray(rows.map((r) => r.raw))},
        ${sql.param(rows.map((r) => r.fetchedAt))}::bigint[])
        AS v(signature, memo_job, slot, block_time, fee_lamports, succeeded, err, facts, raw,
          fetched_at)
      WHERE c.signature = v.signature AND c.facts IS NULL`);
  }

  async function recordFetchedAll(
    items: readonly FetchedItem[],
  ): Promise<Map<string, SignatureRow>> {
    if (items.length === 0) return new Map();
    const signatures = [...new Set(items.map((i) => i.signature))];
    if (signatures.length === 1) {
      // One row: one statement, which is its own transaction.
      await storeFetched(db, items);
    } else {
      // The rows are locked first in the database's order of signatures, as the status writes
      // lock theirs, so two processes storing or polling overlapping sets wait for each other
      // instead of both waiting on each other. One UPDATE for all of them: a statement a
      // transaction was a round trip each, two a job, in every batch the verifier fetches.
      await db.transaction(async (tx) => {
        await tx.execute(sql`SELECT 1 FROM chain_transactions
          WHERE signature = ANY(${textArray(signatures)})
          ORDER BY signature FOR UPDATE`);
        await storeFetched(tx, items);
      });
    }
    return load(signatures);
  }

  return {
    async track(signatures, t) {
      // Sorted and unique: concurrent inserts of overlapping sets meet in the same order, so
      // one waits for the other instead of both waiting on each other. ON CONFLICT DO NOTHING:
      // the first process to insert a signature wins, the other keeps its row.
      // One statement over one array parameter (see `load`); unnest keeps the array's order.
      // Read first: a job polled again has its rows, and then nothing is written.
      const rows = await load(signatures);
      const sorted = [...new Set(signatures)].filter((s) => !rows.has(s)).sort();
      if (sorted.length === 0) return rows;
      await db.execute(sql`INSERT INTO chain_transactions (signature, first_seen_at)
        SELECT signature, ${t}::bigint FROM unnest(${textArray(sorted)}) AS s (signature)
        ON CONFLICT (signature) DO NOTHING`);
      for (const [signature, row] of await load(sorted)) rows.set(signature, row);
      return rows;
    },
    load,
    async recordStatuses(polled, poll) {
      if (polled.length === 0) return new Map();
      const sorted = [...new Set(polled.map((p) => p.signature))].sort();
      await db.transaction(async (tx) => {
        // SELECT … FOR UPDATE in signature order first, and the updates below touch only the
        // rows it locked, so two polls of overlapping sets cannot deadlock. Only the rows the
        // poll changes are locked (a lock writes the row too), unless a signature comes twice:
        // then a later pass may change a row the first one left, and all are. A row another
        // process moved between the lock and the updates is left to the next poll.
        const all = passes(polled);
        let locked: { signature: string }[];
        if (all.length > 1) {
          locked = (
            await tx.execute<{ signature: string }>(sql`SELECT signature FROM chain_transactions
              WHERE signature = ANY(${textArray(sorted)}) ORDER BY signature FOR UPDATE`)
          ).rows;
        } else {
          const found = polled.filter((p) => p.status !== null);
          const missing = polled.filter((p) => p.status === null).map((p) => p.signature);
          // The signatures as the index condition, the guards as a filter: an OR of the two
          // guards alone was planned as a scan of the whole table.
          locked = (
            await tx.execute<{ signature: string }>(sql`SELECT c.signature FROM chain_transactions c
              WHERE c.signature = ANY(${textArray(sorted)})
                AND ((c.signature = ANY(${textArray(missing)}) AND ${missingChanges(poll)})
                  OR EXISTS (SELECT 1 FROM ${foundArrays(found)}
                    WHERE p.signature = c.signature AND ${foundChanges}))
              ORDER BY c.signature FOR UPDATE`)
          ).rows;
        }
        const held = new Set(locked.map((r) => r.signature));
        if (held.size === 0) return;
        for (const pass of all) {
          const mine = pass.filter((p) => held.has(p.signature));
          await writeFound(
            tx,
            mine.filter((p) => p.status !== null),
            poll.t,
          );
          await writeMissing(
            tx,
            mine.filter((p) => p.status === null),
            poll,
          );
        }
      });
      // Every polled row as it is now, changed by this poll or not: another process may have
      // moved one this poll left alone (finalized and fetched it, say).
      return load(sorted);
    },
    async recordFetched(signature, fetched, t) {
      return (await recordFetchedAll([{ signature, fetched, t }])).get(signature);
    },
    recordFetchedAll,
    async recordMemoJobs(found) {
      if (found.length === 0) return;
      const sorted = [...found].sort((a, b) => (a.signature < b.signature ? -1 : 1));
      // The rows are locked in signature order first, as the fetch and status writes lock
      // theirs, so two writers of overlapping rows wait instead of deadlocking; only rows still
      // without a memo job. A value written is never changed (a row's facts never change).
      await db.transaction(async (tx) => {
        await tx.execute(sql`SELECT 1 FROM chain_transactions
          WHERE signature = ANY(${textArray(sorted.map((f) => f.signature))})
            AND memo_job IS NULL AND facts IS NOT NULL
          ORDER BY signature FOR UPDATE`);
        await tx.execute(sql`UPDATE chain_transactions c SET memo_job = f.memo_job
          FROM unnest(${textArray(sorted.map((f) => f.signature))},
            ${textArray(sorted.map((f) => f.memoJob))}) AS f (signature, memo_job)
          WHERE c.signature = f.signature AND c.memo_job IS NULL AND c.facts IS NOT NULL`);
      });
    },
    async recordFetchMiss(signature, maxMisses, { t, minSpanMs }) {
      // Raw SQL: the counter and the state move together in one guarded CASE.
      await db.execute(sql`UPDATE chain_transactions SET
          not_found_count = not_found_count + 1,
          not_found_since = coalesce(not_found_since, ${t}::bigint),
          state = CASE WHEN state = 'finalized' AND not_found_count + 1 >= ${maxMisses}::bigint
            AND ${t}::bigint - coalesce(not_found_since, ${t}::bigint) >= ${minSpanMs}::bigint
            THEN 'pruned' ELSE state END
        WHERE signature = ${signature} AND facts IS NULL`);
      return (await load([signature])).get(signature);
    },
    async jobsNaming(signatures, limit) {
      const named = new Map<string, string[]>();
      const totals = new Map<string, number>();
      const unique = [...new Set(signatures)];
      if (unique.length === 0) return { named, totals };
      // A receipt naming one of them, being written on another host, is waited for: the read
      // below then sees its job, or that receipt finds this verifier's job and reopens it
      // (namer-locks.ts).
      await awaitNamerWriters(db, unique);
      // Raw SQL, one round trip for all signatures: per signature, a UNION of the four index
      // ranges (as on SQLite) cut at `limit` in id order, and counted in full only when the cut
      // was reached (the CASE evaluates the count only then). Ids compare bytewise (COLLATE
      // "C"), as SQLite compares them, whatever the database's collation.
      // When none of those names it, the jobs naming it as a conflict signature, as there.
      const byReceipt = sql`SELECT job_id FROM jobs WHERE escrow_tx = s.sig
        UNION SELECT job_id FROM jobs WHERE settlement_tx = s.sig
        UNION SELECT job_id FROM jobs WHERE api_escrow_tx = s.sig
          AND api_escrow_tx IS DISTINCT FROM escrow_tx
        UNION SELECT job_id FROM jobs WHERE api_settlement_tx = s.sig
          AND api_settlement_tx IS DISTINCT FROM settlement_tx`;
      const naming = sql`${byReceipt}
        UNION SELECT job_id FROM job_conflict_signatures WHERE signature = s.sig
          AND NOT EXISTS (${byReceipt})`;
      const result = await db.execute<{ sig: string; ids: string[]; total: string }>(sql`
        SELECT s.sig, ids.ids,
          CASE WHEN cardinality(ids.ids) < ${limit}::int THEN cardinality(ids.ids)
            ELSE (SELECT count(*) FROM (${naming}) AS every_one) END AS total
        FROM unnest(${textArray(unique)}) AS s(sig)
        CROSS JOIN LATERAL (
          SELECT coalesce(array_agg(job_id ORDER BY job_id COLLATE "C"), '{}') AS ids
          FROM (SELECT job_id FROM (${naming}) AS named ORDER BY job_id COLLATE "C" LIMIT ${limit}::int) AS first
        ) AS ids`);
      for (const row of result.rows) {
        named.set(row.sig, row.ids);
        totals.set(row.sig, Number(row.total));
      }
      return { named, totals };
    },
    async namesAny(pairs, { judged = false } = {}) {
      const found = new Set<string>();
      if (pairs.length === 0) return found;
      // As for `jobsNaming`: a receipt or answer naming one of them is committed first.
      await awaitNamerWriters(
        db,
        pairs.map((p) => p.signature),
      );
      // Raw SQL, one round trip for all pairs: the four signature columns, and the conflicting
      // receipts' signatures as a JSON array (`@>` is false, not an error, on a non-array).
      const result = await db.execute<{ job_id: string; sig: string }>(sql`
        SELECT p.job_id, p.sig
        FROM unnest(${textArray(pairs.map((p) => p.jobId))}, ${textArray(pairs.map((p) => p.signature))})
          AS p(job_id, sig)
        WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = p.job_id
          AND (p.sig IN (j.escrow_tx, j.settlement_tx, j.api_escrow_tx, j.api_settlement_tx)
            OR j.conflict_signatures::jsonb @> jsonb_build_array(p.sig))
          AND (NOT ${judged}::boolean OR j.verdict = ANY (${textArray([...finalVerdicts])})))`);
      for (const row of result.rows) found.add(pairKey(row.job_id, row.sig));
      return found;
    },
  };
}

/**
 * `createGivenUpReset` on PostgreSQL: signatures of a job given up on (dropped, pruned) are
 * looked for again, its conflicting receipts' signatures too. Composes inside the caller's transaction (`reverify` in job-queue.ts);
 * returns how many signatures were reset. Raw SQL: the rows are locked in signature order
 * first (`FOR UPDATE` under an ORDER BY), the order every multi-row writer of this table uses,
 * and a row another transaction moved out of a given-up state meanwhile is re-checked and left.
 */
export async function resetGivenUpPg(tx: PgExecutor, jobId: string): Promise<number> {
  const result = await tx.execute(sql`WITH given_up AS (
      SELECT signature FROM chain_transactions
      WHERE ${givenUp} AND signature IN (
        SELECT unnest(ARRAY[escrow_tx, settlement_tx, api_escrow_tx, api_settlement_tx])
        FROM jobs WHERE job_id = ${jobId}
        UNION SELECT jsonb_array_elements_text(CASE WHEN json_typeof(conflict_signatures) = 'array'
          THEN conflict_signatures::jsonb ELSE '[]'::jsonb END)
        FROM jobs WHERE job_id = ${jobId})
      ORDER BY signature
      FOR UPDATE)
    UPDATE chain_transactions c
      SET state = CASE c.state WHEN 'pruned' THEN 'finalized' ELSE 'unknown' END,
        not_found_count = 0, not_found_slot = NULL, not_found_since = NULL
    FROM given_up WHERE c.signature = given_up.signature`);
  return result.rowCount ?? 0;
}
