import { and, eq, isNotNull, not, or, sql } from "drizzle-orm";
import type { PgDb } from "../../db/pg/client.js";
import { jobs } from "../../db/pg/schema.js";
import { verdictIsOpen } from "../../db/schema.js";
import { type KeyCheckSpan, sharedSpan } from "../key-checks.js";
import type { PgExecutor } from "./executor.js";
import { reopenJobsPg } from "./job-queue.js";
import { awaitNamerWriters, holdNamerStripes } from "./namer-locks.js";

/*
 * `key_check` on PostgreSQL (see src/store/key-checks.ts). A receipt naming a fingerprint's
 * second key check is recorded on one host while a verifier judges a job of the first key on
 * another: the writer holds the fingerprint's stripe of the namers' advisory locks SHARED from
 * before it reads the spans until it commits, and the verifier waits for such writers before it
 * reads them (`keyCheckSpansPg` with `db`), as for the namers of a signature
 * (src/store/pg/namer-locks.ts): a verifier reading after a writer's barrier sees its key check,
 * and one reading before it holds its job leased (or judged), which the writer's send-back, a
 * later statement, finds and reopens. Two writers of the two keys at once: the second to read the
 * spans after writing sees the first's key check once it committed, and one that read before
 * that commit is waited for by any verifier reading after it.
 */

/** The stripe of a fingerprint among the namers' locks (a name no signature has). */
const stripeName = (key: string) => `key_fingerprint:${key}`;

/** The key check span of each of `keys` (fingerprints) that has one. */
export async function keyCheckSpansPg(
  tx: PgExecutor,
  keys: readonly string[],
  barrier?: PgDb,
): Promise<Map<string, KeyCheckSpan>> {
  const spans = new Map<string, KeyCheckSpan>();
  const wanted = [...new Set(keys)];
  if (wanted.length === 0) return spans;
  if (barrier) await awaitNamerWriters(barrier, wanted.map(stripeName));
  const rows = await tx.execute<{ key: string; least: string | null; greatest: string | null }>(
    sql`SELECT k AS key,
      (SELECT key_check FROM jobs WHERE key_fingerprint = k AND key_check IS NOT NULL
        ORDER BY key_check LIMIT 1) AS least,
      (SELECT key_check FROM jobs WHERE key_fingerprint = k AND key_check IS NOT NULL
        ORDER BY key_check DESC LIMIT 1) AS greatest
    FROM unnest(${sql.param(wanted)}::text[]) AS k`,
  );
  for (const row of rows.rows) {
    if (row.least !== null && row.greatest !== null) {
      spans.set(row.key, { least: row.least, greatest: row.greatest });
    }
  }
  return spans;
}

/** Holds the stripes of `keys` until the caller's transaction ends; call before the spans. */
export async function holdKeyStripes(tx: PgExecutor, keys: readonly string[]): Promise<void> {
  await holdNamerStripes(tx, keys.map(stripeName));
}

/** `reopenSharedKeys` on PostgreSQL, inside the receipt write's transaction. */
export async function reopenSharedKeysPg(
  tx: PgExecutor,
  keys: readonly string[],
  before: ReadonlyMap<string, KeyCheckSpan>,
  now: number,
): Promise<number> {
  if (keys.length === 0) return 0;
  const after = await keyCheckSpansPg(tx, keys);
  const judged = or(not(verdictIsOpen(jobs.verdict)), isNotNull(jobs.leaseOwner))!;
  let reopened = 0;
  for (const key of keys) {
    if (sharedSpan(before.get(key)) || !sharedSpan(after.get(key))) continue;
    reopened += await reopenJobsPg(
      tx,
      { where: and(eq(jobs.keyFingerprint, key), isNotNull(jobs.keyCheck), judged)! },
      now,
    );
  }
  return reopened;
}
