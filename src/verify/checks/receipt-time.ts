import type { CheckInput, CheckResult } from "./check-input.js";
import { fail, pass, skip } from "./check-list.js";
import type { RoleTx } from "./transaction.js";

/**
 * `receipt.time`: the receipt's time agrees with the chain. Reports place a job's money in the
 * period of its receipt's time, which whoever records it writes (an ingest or import may say
 * any date): a receipt dated years before its lock would put money in a period where nothing
 * moved, and leave it out of the one where it did. The receipt comes after the job's lock and
 * before its settlement window ends, give or take the profile's skew for clocks.
 */
export function receiptTime(input: CheckInput, escrow: RoleTx): CheckResult {
  const { job, profile } = input;
  const lockTime = escrow.facts.blockTime;
  if (job.createdAt === undefined || job.createdAt === null) {
    return skip("receipt.time", "the receipt's time is not known here");
  }
  if (lockTime === null) return skip("receipt.time", "the node reported no block time");
  const skew = profile.receiptTimeSkewSeconds;
  const earliest = lockTime - skew;
  const latest = lockTime + profile.settlementWindowSeconds + skew;
  const seconds = Math.floor(job.createdAt / 1000);
  const expected = {
    from: new Date(earliest * 1000).toISOString(),
    to: new Date(latest * 1000).toISOString(),
  };
  const actual = {
    receiptTime: new Date(job.createdAt).toISOString(),
    lockBlockTime: new Date(lockTime * 1000).toISOString(),
  };
  if (seconds >= earliest && seconds <= latest) return pass("receipt.time", expected, actual);
  const off =
    seconds < earliest ? `${lockTime - seconds} s before` : `${seconds - lockTime} s after`;
  return fail(
    "receipt.time",
    `the receipt's time is ${off} its lock's block time, outside the profile's span`,
    expected,
    actual,
  );
}
