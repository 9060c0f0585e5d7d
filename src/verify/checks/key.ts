import type { CheckInput, CheckResult } from "./check-input.js";
import { fail } from "./check-list.js";

/**
 * `key.fingerprint_unique`: a fingerprint is 64 bits, and whoever mints the API keys (the
 * operator) can make two keys share one in about 2^32 hashes; the audit would take them for one
 * customer, and the second key's jobs locked from the first one's credit vault would pass
 * `escrow.source`. The key check recorded beside the fingerprint tells the two keys apart:
 * a fingerprint recorded with two key checks was made to collide, on purpose, by the minter.
 * Every job of it that names a key check fails, whichever key came first (the vault pinned for
 * the fingerprint may be either's). Written only when it fails; a job naming no key check is
 * judged on its fingerprint as before.
 */
export function fingerprintUnique(input: CheckInput): CheckResult | null {
  const { job, custody } = input;
  if (!job.keyFingerprint || !job.keyCheck || custody?.keyShared !== true) return null;
  return fail(
    "key.fingerprint_unique",
    `receipts of key fingerprint ${job.keyFingerprint} name two or more key checks: two API keys share the fingerprint, which only whoever made the keys can bring about; the credit vault pinned for it is not proven to be this job's customer's`,
    { keyChecks: 1 },
    { keyFingerprint: job.keyFingerprint, keyCheck: job.keyCheck, keyChecks: "two or more" },
  );
}
