import type { TransactionFacts } from "../../chain/transaction-facts.js";
import type { Profile } from "../profiles.js";
import { type CheckList, fail, pass, skip } from "./check-list.js";
import type { UsableLock } from "./escrow.js";

/**
 * When a job's lock was released, settled or refunded alike: not before the lock, and within
 * the profile's window of it. A release before its lock paid out of escrow that other
 * customers' locks hold; one long after it kept the customer's credits locked (answering their
 * next jobs 402) for that long.
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
  if (release.blockTime === null || lock.blockTime === null) {
    list.add(skip(`${role}.within_window`, "the node reported no block time"));
    return;
  }
  const elapsed = release.blockTime - lock.blockTime;
  const expected = { maxSeconds: profile.settlementWindowSeconds };
  list.add(
    elapsed <= profile.settlementWindowSeconds
      ? pass(`${role}.within_window`, expected, { seconds: elapsed })
      : fail(`${role}.within_window`, `${noun} came after the window`, expected, {
          seconds: elapsed,
        }),
  );
}
