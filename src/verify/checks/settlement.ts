import type { CheckName } from "../check-catalogue.js";
import { foreignChanges, type Payees, payableWorker, readRelease } from "../money-movements.js";
import type { Profile } from "../profiles.js";
import { priceChecks } from "./charge.js";
import type { CheckInput, Evaluation } from "./check-input.js";
import { type CheckList, fail, pass, skip } from "./check-list.js";
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
 * The settlement: the named worker paid at an allowed rate, nobody but worker, treasury and
 * credit vault paid, the lock conserved, after the escrow and within the window, the lock
 * covering the charge, and one settlement only.
 */

/** Worker shares the profile allows for this worker, in basis points. */
function allowedRates(profile: Profile, worker: string | null): number[] {
  const pinned = worker === null ? undefined : profile.payout.workerRatesBps[worker];
  return pinned === undefined ? profile.payout.ratesBps : [pinned];
}

/** A worker outside a profile that pins its workers' rates; a profile pinning none pins no one. */
function unpinnedWorker(profile: Profile, worker: string): boolean {
  const pinned = profile.payout.workerRatesBps;
  return Object.keys(pinned).length > 0 && !Object.hasOwn(pinned, worker);
}

const settlementMoneyChecks = [
  "settlement.balances",
  "settlement.worker_paid",
  "settlement.split",
  "settlement.recipients",
  "settlement.conserves_lock",
  "settlement.after_escrow",
  "settlement.within_window",
  "escrow.covers_charge",
  "charge.matches_price",
] as const;

export const settlementNames: readonly CheckName[] = [
  "settlement.program",
  "settlement.exists",
  "settlement.finalized",
  "settlement.succeeded",
  "settlement.memo",
  "settlement.instructions",
  ...settlementMoneyChecks,
  "settlement.single",
];

/** What the settlement moved, for the amounts and the jobs-API comparison. */
interface SettlementMoney {
  charge: bigint;
}

/** Who names a settlement of `job`: its headers, the jobs API, or neither (kept with the job). */
function settlementOrigin(
  job: Pick<CheckInput["job"], "settlementTx" | "apiSettlementTx">,
  signature: string,
): string {
  const named = [
    signature === job.settlementTx ? "the headers" : null,
    signature === job.apiSettlementTx ? "the jobs API" : null,
  ].filter((n) => n !== null);
  return named.length > 0
    ? `named by ${named.join(" and ")}`
    : "found on chain under its settle memo or named by another receipt or answer";
}

export function settlementChecks(
  input: CheckInput,
  tx: RoleTx,
  settlements: RoleTx[],
  lock: UsableLock | null,
  escrowSkip: string,
  list: CheckList,
  learned: Evaluation["learned"],
): SettlementMoney | null {
  const { job, profile } = input;
  const readable = roleChecks(input, tx, list);
  const single = () => {
    const distinct = settlements.map((s) => s.signature);
    list.add(
      distinct.length <= 1
        ? pass("settlement.single", 1, distinct)
        : fail(
            "settlement.single",
            `${distinct.length} settlements of this job: ${distinct.map((s) => `one ${settlementOrigin(job, s)}`).join(", ")}`,
            1,
            distinct,
          ),
    );
  };
  if (!readable || lock === null) {
    const reason = !tx.facts.succeeded
      ? "the settlement failed on chain and moved no tokens (see settlement.succeeded)"
      : tx.stolenBy !== null
        ? "see signatures.unique"
        : !readable
          ? "see settlement.memo and settlement.instructions"
          : escrowSkip;
    list.skipAll(settlementMoneyChecks, reason);
    single();
    return null;
  }
  const S = tx.facts;
  const treasury = profile.treasury ?? input.learnedTreasury ?? null;
  const worker = payableWorker(profile, job.worker, lock.reading.sources[0]?.owner ?? null);
  const payees: Payees = {
    creditVault: lock.creditVault,
    escrowAccount: lock.escrowAccount,
    worker,
    treasury,
    vaultOwner: lockOwner(profile.escrowAuthority, lock.reading),
  };
  const r = readRelease(profile, S, payees);
  misdirectedReturn(lock, r.misdirected, list, profile.escrowAuthority);
  escrowOwnedAtRelease(lock, S, tx.signature, list, profile.escrowAuthority);
  ownersUnnamed(list, profile.escrowAuthority, S, [
    { account: lock.escrowAccount, check: "escrow.vault" },
    { account: lock.creditVault, check: "escrow.source" },
  ]);
  const foreign = foreignChanges(profile, S);
  list.add(
    foreign.length === 0 && r.foreignDebits.length === 0
      ? pass("settlement.balances", [], [])
      : fail(
          "settlement.balances",
          r.foreignDebits.length > 0
            ? "accounts other than the escrow account paid out in the settlement"
            : "balances changed in another mint or token program",
          { debited: [lock.escrowAccount] },
          { foreignDebits: r.foreignDebits, otherMints: foreign },
        ),
  );
  // The charge is what the user did not get back: everything the escrow paid to anyone but the
  // credit vault, so a payment to the wrong wallet still counts as charged.
  const charge = r.worker + r.treasury + r.unexplainedTotal;

  // The worker named in the receipt is paid. Without a worker named anywhere the checks that
  // need one are skipped; the customer's side (price, conservation, returns) is still judged.
  let workerPaid = false;
  const noWorker = "neither the receipt nor the jobs API names the worker";
  if (job.worker === null) {
    list.add(skip("settlement.worker_paid", noWorker));
  } else if (worker === null) {
    list.add(
      fail(
        "settlement.worker_paid",
        `the worker named in the receipt (${job.worker}) owns the credit vaults: money paid to it stays in customers' custody and pays no worker`,
        { worker: "a worker's wallet, not the owner of the credit vaults" },
        { worker: job.worker, payees: r.payees },
      ),
    );
  } else if (r.worker > 0n) {
    workerPaid = true;
    list.add(
      pass(
        "settlement.worker_paid",
        { worker: job.worker },
        { worker: job.worker, amount: r.worker.toString() },
      ),
    );
  } else {
    list.add(
      fail(
        "settlement.worker_paid",
        `the worker named in the receipt (${job.worker}) received nothing`,
        { worker: job.worker },
        { payees: r.payees },
      ),
    );
  }

  // The split matches the rate.
  if (job.worker === null) {
    list.add(skip("settlement.split", noWorker));
  } else if (!workerPaid) {
    list.add(
      skip("settlement.split", "the receipt's worker was not paid (see settlement.worker_paid)"),
    );
  } else {
    const rates = allowedRates(profile, job.worker);
    const allowed = rates.map((bps) => (charge * BigInt(bps)) / 10_000n);
    const expected = {
      charge: charge.toString(),
      rateBps: rates,
      workerShare: allowed.map(String),
    };
    const actual = { workerShare: r.worker.toString(), treasuryShare: r.treasury.toString() };
    if (!allowed.includes(r.worker)) {
      list.add(
        fail(
          "settlement.split",
          "the worker's share matches no allowed payout rate",
          expected,
          actual,
        ),
      );
    } else if (unpinnedWorker(profile, job.worker)) {
      // A profile that pins its workers' rates (the registry, as far as it is known) names
      // them all: a payee outside it at the generic rates could be the operator's own wallet
      // taking the worker's share, or a staked worker paid the unstaked rate.
      list.gap(
        "settlement.split",
        "worker_unknown",
        `the worker ${job.worker} is not among the profile's pinned workers (payout.workerRatesBps): its rate is not known`,
      );
    } else {
      list.add(pass("settlement.split", expected, actual));
    }
  }

  // Nobody but worker, treasury and the credit vault was paid. A worker who got nothing is
  // worker_paid's finding; its share paid elsewhere is the same cause, not a second one.
  if (job.worker === null) {
    list.add(skip("settlement.recipients", noWorker));
  } else if (!workerPaid) {
    list.add(
      skip(
        "settlement.recipients",
        "the receipt's worker was not paid (see settlement.worker_paid)",
      ),
    );
  } else if (r.unexplained.length > 0) {
    list.add(
      fail(
        "settlement.recipients",
        treasury === null
          ? "the settlement paid several accounts besides the worker and the credit vault; at most one can be the treasury"
          : "the settlement paid accounts that are not the worker, the treasury or the credit vault",
        { treasury: treasury ?? "one payee (learning)" },
        r.unexplained,
      ),
    );
  } else if (treasury === null && r.treasuryCandidates.length === 1) {
    const candidate = r.treasuryCandidates[0]!;
    learned.treasuryCandidate = {
      signature: tx.signature,
      address: candidate.owner ?? candidate.account,
    };
    list.gap(
      "settlement.recipients",
      "treasury_unknown",
      `the treasury is not known yet; ${candidate.owner ?? candidate.account} took the rest of the charge and counts towards learning it`,
    );
  } else {
    list.add(pass("settlement.recipients", { treasury }, r.payees));
  }

  // Worker + treasury + remainder = lock (a remainder sent to the wrong vault is escrow.source's).
  const paidOut = r.worker + r.treasury + r.returned + r.misdirectedTotal + r.unexplainedTotal;
  const conserved = r.outflow === lock.reading.lock && paidOut === lock.reading.lock;
  const conserveEvidence = {
    released: r.outflow.toString(),
    worker: r.worker.toString(),
    treasury: r.treasury.toString(),
    returned: r.returned.toString(),
    unexplained: r.unexplainedTotal.toString(),
    total: paidOut.toString(),
  };
  const lockEvidence = {
    lock: lock.reading.lock.toString(),
    released: lock.reading.lock.toString(),
  };
  list.add(
    charge > lock.reading.lock
      ? skip(
          "settlement.conserves_lock",
          "the charge exceeds the lock, so escrow paid out more than it held for this job (see escrow.covers_charge)",
        )
      : conserved
        ? pass("settlement.conserves_lock", lockEvidence, conserveEvidence)
        : fail(
            "settlement.conserves_lock",
            "what left escrow does not add up to the lock",
            lockEvidence,
            conserveEvidence,
          ),
  );

  releaseTimeChecks("settlement", profile, S, lock, list);

  // The lock covers the charge.
  list.add(
    lock.reading.lock >= charge
      ? pass(
          "escrow.covers_charge",
          { atLeast: charge.toString() },
          { lock: lock.reading.lock.toString() },
        )
      : fail(
          "escrow.covers_charge",
          "the charge exceeds what was locked",
          { atLeast: charge.toString() },
          { lock: lock.reading.lock.toString() },
        ),
  );

  // The charge is the requested model's price for the recorded usage, and never more than
  // the price at the request's max_tokens, the most the job could cost whatever the usage.
  priceChecks(input, charge, list);
  single();
  return { charge };
}
