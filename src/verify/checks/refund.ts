import type { CheckName } from "../check-catalogue.js";
import { foreignChanges, readRelease } from "../money-movements.js";
import type { CheckInput } from "./check-input.js";
import { type CheckList, fail, pass } from "./check-list.js";
import {
  escrowOwnedAtRelease,
  lockOwner,
  misdirectedReturn,
  ownersUnnamed,
  type UsableLock,
} from "./escrow.js";
import { releaseTimeChecks } from "./timing.js";
import { type RoleTx, roleChecks } from "./transaction.js";

/**
 * The refund: the whole lock back to the vault it came from, after the lock and within the
 * window, once, and the job not settled too.
 */

export const refundNames: readonly CheckName[] = [
  "refund.program",
  "refund.exists",
  "refund.finalized",
  "refund.succeeded",
  "refund.memo",
  "refund.instructions",
  "refund.balances",
  "refund.complete",
  "refund.after_escrow",
  "refund.within_window",
  "refund.not_settled",
  "refund.single",
];

export function refundChecks(
  input: CheckInput,
  tx: RoleTx,
  settledToo: RoleTx[],
  refunds: RoleTx[],
  lock: UsableLock | null,
  escrowSkip: string,
  list: CheckList,
) {
  const { profile } = input;
  const readable = roleChecks(input, tx, list);
  if (!readable || lock === null) {
    const reason = !tx.facts.succeeded
      ? "the refund failed on chain (see refund.succeeded)"
      : tx.stolenBy !== null
        ? "see signatures.unique"
        : !readable
          ? "see refund.memo and refund.instructions"
          : escrowSkip;
    list.skipAll(
      ["refund.balances", "refund.complete", "refund.after_escrow", "refund.within_window"],
      reason,
    );
  } else {
    const r = readRelease(profile, tx.facts, {
      creditVault: lock.creditVault,
      escrowAccount: lock.escrowAccount,
      worker: null,
      treasury: null,
      vaultOwner: lockOwner(profile.escrowAuthority, lock.reading),
    });
    misdirectedReturn(lock, r.misdirected, list, profile.escrowAuthority);
    escrowOwnedAtRelease(lock, tx.facts, tx.signature, list, profile.escrowAuthority);
    ownersUnnamed(list, profile.escrowAuthority, tx.facts, [
      { account: lock.escrowAccount, check: "escrow.vault" },
      { account: lock.creditVault, check: "escrow.source" },
    ]);
    const foreign = foreignChanges(profile, tx.facts);
    list.add(
      foreign.length === 0 && r.foreignDebits.length === 0
        ? pass("refund.balances", [], [])
        : fail(
            "refund.balances",
            "accounts other than the escrow account paid out, or another mint moved",
            { debited: [lock.escrowAccount] },
            { foreignDebits: r.foreignDebits, otherMints: foreign },
          ),
    );
    const lockUnits = lock.reading.lock;
    // Money sent to another customer's vault is escrow.source's finding; the refund is
    // complete when the whole lock left escrow for customers' vaults and nobody else.
    const ok =
      r.outflow === lockUnits &&
      r.returned + r.misdirectedTotal === lockUnits &&
      r.unexplainedTotal === 0n;
    const expected = {
      released: lockUnits.toString(),
      returned: lockUnits.toString(),
      to: lock.creditVault,
    };
    const actual = {
      released: r.outflow.toString(),
      returned: r.returned.toString(),
      payees: r.payees,
    };
    list.add(
      ok
        ? pass("refund.complete", expected, actual)
        : fail(
            "refund.complete",
            "the whole lock did not return to the credit vault it came from",
            expected,
            actual,
          ),
    );
    releaseTimeChecks("refund", profile, tx.facts, lock, list);
  }
  list.add(
    settledToo.length === 0
      ? pass("refund.not_settled", [], [])
      : fail(
          "refund.not_settled",
          "the job was refunded and also settled",
          [],
          settledToo.map((s) => s.signature),
        ),
  );
  // Only the first refund is judged above: a second one (a conflicting receipt's, the jobs
  // API's) paid out of escrow for this job again, to whoever it names.
  const distinct = [...new Set([tx.signature, ...refunds.map((r) => r.signature)])];
  list.add(
    distinct.length === 1
      ? pass("refund.single", 1, distinct)
      : fail(
          "refund.single",
          "the receipts and the jobs API name more than one refund of this job",
          1,
          distinct,
        ),
  );
}
