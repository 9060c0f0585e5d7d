import { sql } from "drizzle-orm";
import type { PgDb } from "../../db/pg/client.js";
import type { PgExecutor } from "./executor.js";

/**
 * Who names a signature, read by a verifier on one host while a receipt naming it is recorded on
 * another (PostgreSQL runs both at once, in READ COMMITTED).
 *
 * A receipt or jobs API answer that names a signature sends the signature's other namers that
 * are judged or being judged back to the verifier (`reopenNamersPg`); an open job nobody holds
 * is left alone, since it reads its namers when claimed. Without more, a verifier could claim
 * such a job R after the writer's reopen looked at it and before the writer committed, read the
 * namers without the writer's new job N, and write a verdict that keeps money N also names:
 * counted twice, and never judged again. Two first receipts of one lock, recorded at the same
 * moment on two hosts, meet the same way, neither seeing the other.
 *
 * So the writer holds, from just before its reopen until it commits, a transaction-level
 * advisory lock on the stripe of each signature it names, SHARED (`holdNamerStripes`), and the
 * verifier, after its claim is committed and before reading the namers of a signature, takes
 * that stripe EXCLUSIVE for an instant (`awaitNamerWriters`): it waits for every writer that
 * holds it to commit. Take a writer W naming s and a verifier's read of s's namers for a job R:
 * - W took the stripe before the read's barrier: the barrier waits for W's commit, and the
 *   read (a later statement, so a later snapshot) sees N.
 * - W took it after the barrier: W's reopen (a later statement, so a later snapshot) runs after
 *   R's claim was committed, so it finds R leased, or final if its verdict was written, and
 *   reopens it. A verdict written after that finds the lease dropped and writes nothing (its
 *   UPDATE checks `lease_owner` again on the row the reopen changed); a verifier that let R go
 *   without a verdict left it open, to be claimed and read again later.
 * Either way R is judged with N among its namers.
 *
 * Writers take their stripes SHARED, so writers never wait for one another here whatever rows
 * they hold, and a group commit calling this once per task may take them in any order. The
 * barrier never holds a stripe while waiting for another (it tries them all at once without
 * waiting, then waits for each busy one alone), so it holds nothing a writer waits for while it
 * waits; a writer queued behind a waiting barrier, should that close a circle, is let ahead by
 * PostgreSQL's deadlock check (after its `deadlock_timeout`), and no transaction is aborted.
 * Signatures are spread over `NAMER_STRIPES` stripes, so a transaction holds at most that many
 * locks in PostgreSQL's shared lock table however many signatures it names (a group of
 * 1,000-receipt batches would otherwise need one per signature, and run out of it); two
 * signatures sharing a stripe only cost a wait.
 */

/**
 * First key of the namers' two-key advisory locks: the first 4 bytes of
 * sha256("decentral-audit:namers") as a signed 32-bit integer.
 */
export const NAMERS_LOCK_CLASS = 1_250_292_070;

/** How many stripes (second keys) signatures are spread over; a power of two. */
export const NAMER_STRIPES = 256;

/** The distinct stripes of `signatures`, as rows `k`; `hashtext` is the server's, one for all. */
const stripesOf = (signatures: readonly string[]) =>
  sql`SELECT DISTINCT hashtext(s) & ${NAMER_STRIPES - 1}::int AS k
    FROM unnest(${sql.param([...signatures])}::text[]) AS s`;

/**
 * Holds the stripes of `signatures` SHARED until the caller's transaction ends. Call it inside
 * that transaction before reading who names them, in a statement of its own: a later statement
 * reads a snapshot taken after the locks were granted. Raw SQL: no builder for advisory locks.
 */
export async function holdNamerStripes(
  tx: PgExecutor,
  signatures: readonly string[],
): Promise<void> {
  if (signatures.length === 0) return;
  await tx.execute(sql`SELECT pg_advisory_xact_lock_shared(${NAMERS_LOCK_CLASS}::int, k)
    FROM (${stripesOf(signatures)}) AS stripes ORDER BY k`);
}

/**
 * Waits until no transaction holds a stripe of `signatures` that it took before this call:
 * every receipt or answer naming one of them that was being written has committed. Runs on the
 * pool, each statement its own transaction, so what it locks is released when the statement
 * ends. All stripes are tried at once without waiting; each one held by a writer is then
 * waited for alone. Raw SQL: no builder for advisory locks.
 */
export async function awaitNamerWriters(db: PgDb, signatures: readonly string[]): Promise<void> {
  if (signatures.length === 0) return;
  const busy = await db.execute<{
    k: number;
  }>(sql`SELECT k FROM (${stripesOf(signatures)}) AS stripes
    WHERE NOT pg_try_advisory_xact_lock(${NAMERS_LOCK_CLASS}::int, k) ORDER BY k`);
  for (const { k } of busy.rows) {
    await db.execute(sql`SELECT pg_advisory_xact_lock(${NAMERS_LOCK_CLASS}::int, ${k}::int)`);
  }
}
