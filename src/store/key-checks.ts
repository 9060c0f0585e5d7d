import { and, eq, isNotNull, not, or } from "drizzle-orm";
import type { SqliteStore } from "../db/client.js";
import { jobs, verdictIsOpen } from "../db/schema.js";
import { reopenJobs } from "./job-queue.js";
import { perConnection } from "./prepared.js";

/*
 * Two API keys with one fingerprint (16 hex digits, 64 bits of the key's SHA-256) cost whoever
 * mints the keys, the operator, about 2^32 hashes. Each receipt may carry the key's next 64 bits
 * (`key_check`): one fingerprint recorded with two key checks is two keys the audit would
 * otherwise take for one customer, one vault pin serving both. `key.fingerprint_unique` fails
 * the jobs of such a fingerprint that name a key check; a fingerprint's least and greatest key
 * check (`jobs_key_check`, one index probe each) tell whether it has two.
 */

/** The least and greatest key check recorded with a fingerprint; null when it has none. */
export interface KeyCheckSpan {
  least: string;
  greatest: string;
}

/** Whether a fingerprint's jobs name two or more key checks: two keys share it. */
export const sharedSpan = (span: KeyCheckSpan | null | undefined) =>
  span !== null && span !== undefined && span.least !== span.greatest;

/** The fingerprints `receipts` name with a key check, each once. */
export function checkedKeys(
  receipts: readonly { keyFingerprint?: string | null; keyCheck?: string | null }[],
): string[] {
  const keys = new Set<string>();
  for (const r of receipts) {
    if (r.keyFingerprint && r.keyCheck) keys.add(r.keyFingerprint);
  }
  return [...keys];
}

const statementsOf = perConnection((store: SqliteStore) => ({
  // Each an ORDER BY … LIMIT 1 through `jobs_key_check`: one probe, however many jobs the key has.
  span: store.sqlite.prepare(
    `SELECT (SELECT key_check FROM jobs WHERE key_fingerprint = @key AND key_check IS NOT NULL
         ORDER BY key_check LIMIT 1) AS least,
       (SELECT key_check FROM jobs WHERE key_fingerprint = @key AND key_check IS NOT NULL
         ORDER BY key_check DESC LIMIT 1) AS greatest`,
  ),
}));

/** The key check span of each of `keys` (fingerprints) that has one. */
export function keyCheckSpans(store: SqliteStore, keys: readonly string[]) {
  const st = statementsOf(store);
  const spans = new Map<string, KeyCheckSpan>();
  for (const key of new Set(keys)) {
    const row = st.span.get({ key }) as { least: string | null; greatest: string | null };
    if (row.least !== null && row.greatest !== null) {
      spans.set(key, { least: row.least, greatest: row.greatest });
    }
  }
  return spans;
}

/** Judged, or being judged: a final verdict, or a lease a reopen drops. */
export const judgedOrHeld = or(not(verdictIsOpen(jobs.verdict)), isNotNull(jobs.leaseOwner))!;

/**
 * Inside the receipt write's transaction, after its receipts are written: each fingerprint of
 * `keys` that has come to name a second key check (`before`, its span before the write, named
 * one or none) has its jobs naming a key check that were judged, or are being judged, sent back
 * to the verifier. They were judged while the fingerprint seemed one key's; their checks now
 * fail (a job naming none is judged as before, and left alone). Sent once, when the second key
 * check comes: a job judged later reads the spans when it is judged.
 */
export function reopenSharedKeys(
  store: SqliteStore,
  keys: readonly string[],
  before: ReadonlyMap<string, KeyCheckSpan>,
  now: number,
): number {
  if (keys.length === 0) return 0;
  const after = keyCheckSpans(store, keys);
  let reopened = 0;
  for (const key of keys) {
    if (sharedSpan(before.get(key)) || !sharedSpan(after.get(key))) continue;
    reopened += reopenJobs(
      store,
      { where: and(eq(jobs.keyFingerprint, key), isNotNull(jobs.keyCheck), judgedOrHeld)! },
      now,
    );
  }
  return reopened;
}
