import type { TransactionFacts } from "../../chain/transaction-facts.js";
import type { Profile } from "../profiles.js";
import { type CheckList, fail, pass } from "./check-list.js";
import type { UsableLock } from "./escrow.js";

/**
 * When a job's lock was released, settled or refunded alike: not before the lock, and within
 * the profile's window of it (a refund, which comes only after the window, within the window and
 * the receipt skew). A release before its lock paid out of escrow that other customers' locks
 * hold; one long after it kept the customer's credits locked (answering their next jobs 402) for
 * that long.
 */

/** The closing roles, whose release of the lock is timed. */
type ClosingRole = "settlement" | "refund";

/**
 * `<role>.after_escrow` and `<role>.within_window`. Within one slot the order is not seen
 * (`getTransaction` gives none), so a release in the lock's own slot is after it.
 */
export function releaseTimeChecks(
  role: ClosingRole,
  profile: Profile,
  release: TransactionFacts,
  lock: UsableLock,
  list: CheckList,
) {
  const noun = role === "settlement" ? "the settlement" : "the refund";
  list.add(
    release.slot >= lock.slot
      ? pass(`${role}.after_escrow`, { afterSlot: lock.slot }, { slot: release.slot })
      : fail(
          `${role}.after_escrow`,
          `${noun} landed before the escrow`,
          { afterSlot: lock.slot },
          { slot: release.slot },
        ),
  );
  // Every node dates a finalized transaction: one that leaves the time out (the operator's,
  // say) would otherwise pass a release that held the customer's credits for months.
  if (release.blockTime === null || lock.blockTime === null) {
    const undated = lock.blockTime === null ? "the escrow" : release.signature;
    list.gap(
      `${role}.within_window`,
      "block_time_unknown",
      `the node reported no block time for ${undated}: whether ${noun} came within the window is not known`,
    );
    return;
  }
  const elapsed = release.blockTime - lock.blockTime;
  // A refund is due only once the window has passed with no proof (the protocol refunds a job
  // not proven within it), so it lands after the window: it is late once the lock would be
  // judged unreleased (the window and the receipt skew), as `decide` times a lock nobody closes.
  const maxSeconds =
    profile.settlementWindowSeconds + (role === "refund" ? profile.receiptTimeSkewSeconds : 0);
  const expected = { maxSeconds };
  list.add(
    elapsed <= maxSeconds
      ? pass(`${role}.within_window`, expected, { seconds: elapsed })
      : fail(`${role}.within_window`, `${noun} came after the window`, expected, {
          seconds: elapsed,
        }),
  );
}
