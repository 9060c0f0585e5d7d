import type { TokenChange, TransactionFacts } from "../chain/transaction-facts.js";
import type { CheckOutcome } from "../db/schema.js";
import { type Profile, priceUnits } from "./profiles.js";

/**
 * The protocol checks (PROTOCOL.md section 3) as pure functions of a receipt, the finalized
 * facts of the transactions it names and a profile. Nothing here touches the store or the
 * network, so every verdict can be recomputed from stored evidence.
 *
 * Invariant: a check whose input is missing because an earlier check failed is skipped with a
 * reason naming that check, so one fault shows up as the checks it really breaks, not as a
 * cascade of failures.
 */

/**
 * Every check, by its stable name (reports and the API group findings by these names). `X` below
 * is `escrow`, `settlement` or `refund`: each of those transactions gets the same five checks.
 */
export const checkDescriptions: Readonly<Record<string, string>> = {
  "X.exists": "the receipt names the transaction and the chain has it",
  "X.finalized": "it is finalized (checks only run at finalized)",
  "X.succeeded": "meta.err is null (a failed transaction moves no tokens)",
  "X.memo": "an SPL Memo names this job (`<prefix><job_id>`)",
  "X.program": "the profile's program for this step was invoked (skipped while unknown)",
  "escrow.vault":
    "all that left the credit vault went into the profile's escrow vault (skipped while unknown)",
  "escrow.covers_charge": "the lock is at least the charge",
  "settlement.worker_paid": "the worker named in the receipt was paid",
  "settlement.split": "worker share = floor(charge x rate) for an allowed (or pinned) rate",
  "settlement.recipients": "nobody but worker, treasury and the credit vault was paid",
  "settlement.conserves_lock": "what left escrow = lock = worker + treasury + returned",
  "settlement.after_escrow": "the settlement's slot is not before the escrow's",
  "settlement.within_window": "settled within the profile's window of the escrow",
  "settlement.single": "the headers and the jobs API do not name two settlements",
  "charge.matches_price": "the charge is the model's price for the recorded usage",
  "refund.complete": "the whole lock went back to the credit vault",
  "refund.not_settled": "a refunded job was not also settled",
  "signatures.unique": "no signature of another job is named by this receipt",
  "jobs_api.matches_receipt": "the jobs API agrees with the headers (escrow, settlement, worker)",
};

/** What a check needs from a job row. */
export interface ReceiptForChecks {
  jobId: string;
  escrowTx: string | null;
  settlementTx: string | null;
  worker: string | null;
  model: string | null;
  completionTokens: number | null;
  maxTokens: number | null;
  httpStatus: number | null;
  apiStatus: string | null;
  apiCreditsChargedUnits: bigint | null;
  apiEscrowTx: string | null;
  apiSettlementTx: string | null;
  apiWorker: string | null;
  apiCheckedAt: number | null;
}

export interface CheckResult {
  name: string;
  outcome: CheckOutcome;
  /** Why it failed or was skipped; null on pass. */
  reason: string | null;
  /** Evidence; amounts are decimal strings. */
  expected: unknown;
  actual: unknown;
}

export interface ChainAmounts {
  escrowedUnits: bigint | null;
  chargedUnits: bigint | null;
  workerPaidUnits: bigint | null;
  treasuryPaidUnits: bigint | null;
  refundedUnits: bigint | null;
  expectedChargeUnits: bigint | null;
  feesLamports: bigint | null;
}

export interface Evaluation {
  verdict: "verified" | "discrepancy" | "unverifiable";
  checks: CheckResult[];
  amounts: ChainAmounts;
}

export interface CheckInput {
  job: ReceiptForChecks;
  profile: Profile;
  /** Finalized facts of every signature the job names, by signature. */
  transactions: ReadonlyMap<string, TransactionFacts>;
  /**
   * For each signature the job names, the ids of jobs naming it (this one included), at most
   * `MAX_NAMED_BY` of them: evidence stays small even when thousands of receipts replay one
   * signature.
   */
  namedBy: ReadonlyMap<string, readonly string[]>;
  /** How many jobs name each signature, when more than `namedBy` lists. */
  namedByTotal?: ReadonlyMap<string, number>;
}

/** Job ids listed per signature in the evidence of `signatures.unique`. */
export const MAX_NAMED_BY = 10;

export type MemoKind = "escrow" | "settle" | "refund";

/** Reads `<prefix><job_id>` memos of a transaction under the profile's conventions. */
export function parseJobMemos(
  profile: Profile,
  memos: readonly string[],
): { kind: MemoKind; jobId: string }[] {
  const prefixes: [MemoKind, string][] = [
    ["escrow", profile.memo.escrowPrefix],
    ["settle", profile.memo.settlePrefix],
    ["refund", profile.memo.refundPrefix],
  ];
  const found: { kind: MemoKind; jobId: string }[] = [];
  for (const raw of memos) {
    const memo = raw.trim();
    for (const [kind, prefix] of prefixes) {
      if (memo.startsWith(prefix) && memo.length > prefix.length) {
        found.push({ kind, jobId: memo.slice(prefix.length) });
      }
    }
  }
  return found;
}

/** The signatures a job names: receipt headers first, then what the jobs API added. */
export function jobSignatures(job: ReceiptForChecks): string[] {
  const all = [job.escrowTx, job.apiEscrowTx, job.settlementTx, job.apiSettlementTx];
  return [...new Set(all.filter((s): s is string => s !== null))];
}

const str = (value: bigint | null) => (value === null ? null : value.toString());

const pass = (name: string, expected: unknown, actual: unknown): CheckResult => ({
  name,
  outcome: "pass",
  reason: null,
  expected,
  actual,
});
const fail = (name: string, reason: string, expected: unknown, actual: unknown): CheckResult => ({
  name,
  outcome: "fail",
  reason,
  expected,
  actual,
});
const skip = (name: string, reason: string): CheckResult => ({
  name,
  outcome: "skip",
  reason,
  expected: null,
  actual: null,
});

/** Token changes of the profile's credit mint under one of its token programs. */
function creditChanges(profile: Profile, facts: TransactionFacts): TokenChange[] {
  return facts.tokenChanges.filter(
    (c) =>
      c.mint === profile.usdcMint &&
      (c.programId === null || profile.tokenPrograms.includes(c.programId)),
  );
}

const sum = (values: Iterable<bigint>) => {
  let total = 0n;
  for (const v of values) total += v;
  return total;
};

const isTreasury = (profile: Profile, c: TokenChange) =>
  profile.treasury !== null && (c.account === profile.treasury || c.owner === profile.treasury);

/** Money movements of the escrow lock. */
interface EscrowMoves {
  lock: bigint;
  /** Everything that left the accounts the lock came from. */
  taken: bigint;
  /** Credits to accounts other than the escrow vault (only when the vault is known). */
  elsewhere: { account: string; owner: string | null; amount: string }[];
  /** Token accounts the lock came from: the user's credit vault. */
  sources: Set<string>;
}

function escrowMoves(profile: Profile, facts: TransactionFacts): EscrowMoves {
  const changes = creditChanges(profile, facts);
  const lock =
    profile.escrowVault !== null
      ? sum(
          changes
            .filter((c) => c.account === profile.escrowVault && c.delta > 0n)
            .map((c) => c.delta),
        )
      : sum(changes.filter((c) => c.delta > 0n).map((c) => c.delta));
  const debits = changes.filter((c) => c.delta < 0n);
  const sources = new Set(debits.map((c) => c.account));
  const taken = -sum(debits.map((c) => c.delta));
  const elsewhere =
    profile.escrowVault === null
      ? []
      : changes
          .filter((c) => c.delta > 0n && c.account !== profile.escrowVault)
          .map((c) => ({ account: c.account, owner: c.owner, amount: c.delta.toString() }));
  return { lock, taken, elsewhere, sources };
}

/** Money movements out of escrow at settlement or refund, sorted by recipient. */
interface ReleaseMoves {
  /** What left escrow. */
  outflow: bigint;
  worker: bigint;
  treasury: bigint;
  /** Returned to the credit vault the lock came from. */
  returned: bigint;
  /** Paid to accounts that are none of the above (only computed when the treasury is known). */
  unexplained: { account: string; owner: string | null; amount: bigint }[];
  /** Owners of every account paid, for evidence. */
  payees: { account: string; owner: string | null; amount: string }[];
}

function releaseMoves(
  profile: Profile,
  facts: TransactionFacts,
  creditVaults: ReadonlySet<string>,
  worker: string | null,
): ReleaseMoves {
  const changes = creditChanges(profile, facts);
  const credits = changes.filter((c) => c.delta > 0n);
  const debits = changes.filter((c) => c.delta < 0n);
  const outflow =
    profile.escrowVault !== null
      ? -sum(debits.filter((c) => c.account === profile.escrowVault).map((c) => c.delta))
      : -sum(debits.map((c) => c.delta));
  let workerPaid = 0n;
  let treasury = 0n;
  let returned = 0n;
  const unexplained: ReleaseMoves["unexplained"] = [];
  for (const c of credits) {
    if (worker !== null && c.owner === worker) workerPaid += c.delta;
    else if (creditVaults.has(c.account)) returned += c.delta;
    else if (profile.treasury === null || isTreasury(profile, c)) treasury += c.delta;
    else unexplained.push({ account: c.account, owner: c.owner, amount: c.delta });
  }
  return {
    outflow,
    worker: workerPaid,
    treasury,
    returned,
    unexplained,
    payees: credits.map((c) => ({
      account: c.account,
      owner: c.owner,
      amount: c.delta.toString(),
    })),
  };
}

/** Worker shares the profile allows for this worker, in basis points. */
function allowedRates(profile: Profile, worker: string | null): number[] {
  const pinned = worker === null ? undefined : profile.payout.workerRatesBps[worker];
  return pinned === undefined ? profile.payout.ratesBps : [pinned];
}

/** One transaction's standard checks: it exists, is finalized, succeeded and names the job. */
function transactionChecks(
  prefix: string,
  signature: string,
  facts: TransactionFacts,
  memoPrefix: string,
  jobId: string,
  program: { name: string; id: string | null },
): CheckResult[] {
  const wanted = `${memoPrefix}${jobId}`;
  const programCheck =
    program.id === null
      ? skip(`${prefix}.program`, `the profile does not know the ${program.name} program id`)
      : facts.programs.includes(program.id)
        ? pass(`${prefix}.program`, program.id, facts.programs)
        : fail(
            `${prefix}.program`,
            `the ${program.name} program was not invoked`,
            program.id,
            facts.programs,
          );
  return [
    programCheck,
    pass(`${prefix}.exists`, { signature }, { signature, slot: facts.slot }),
    pass(`${prefix}.finalized`, "finalized", "finalized"),
    facts.succeeded
      ? pass(`${prefix}.succeeded`, { err: null }, { err: null })
      : fail(
          `${prefix}.succeeded`,
          "the transaction failed on chain: it paid its fee and moved no tokens",
          { err: null },
          { err: facts.err },
        ),
    facts.memos.some((m) => m.trim() === wanted)
      ? pass(`${prefix}.memo`, wanted, facts.memos)
      : fail(`${prefix}.memo`, `no memo names ${jobId}`, wanted, facts.memos),
  ];
}

/**
 * Runs every check for one job whose named transactions are all finalized and fetched. The
 * caller handles signatures that are missing from the chain (not landed, dropped, pruned).
 */
export function evaluateJob(given: CheckInput): Evaluation {
  // A receipt without a worker (allowed by ingest) is checked against the worker the jobs API
  // names; with neither, nobody can say who should have been paid.
  const input: CheckInput = {
    ...given,
    job: { ...given.job, worker: given.job.worker ?? given.job.apiWorker },
  };
  const { job, profile, transactions } = input;
  const checks: CheckResult[] = [];
  const amounts: ChainAmounts = {
    escrowedUnits: null,
    chargedUnits: null,
    workerPaidUnits: null,
    treasuryPaidUnits: null,
    refundedUnits: null,
    expectedChargeUnits: null,
    feesLamports: null,
  };
  let unverifiable: string | null = null;

  const fees = jobSignatures(job)
    .map((s) => transactions.get(s)?.fee)
    .filter((f): f is bigint => f !== undefined);
  amounts.feesLamports = fees.length > 0 ? sum(fees) : null;

  // Escrow.
  const escrowSig = job.escrowTx ?? job.apiEscrowTx;
  const escrow = escrowSig === null ? undefined : transactions.get(escrowSig);
  let escrowUsable = false;
  let moves: EscrowMoves | null = null;
  if (escrowSig === null || escrow === undefined) {
    unverifiable = "the receipt names no escrow transaction";
    checks.push(skip("escrow.exists", unverifiable));
  } else {
    const base = transactionChecks(
      "escrow",
      escrowSig,
      escrow,
      profile.memo.escrowPrefix,
      job.jobId,
      { name: "job_escrow", id: profile.programs.jobEscrow },
    );
    moves = escrowMoves(profile, escrow);
    amounts.escrowedUnits = escrow.succeeded ? moves.lock : 0n;
    if (profile.escrowVault === null) {
      base.push(skip("escrow.vault", "the profile does not know the escrow vault"));
    } else if (!escrow.succeeded) {
      base.push(skip("escrow.vault", "the escrow failed on chain (see escrow.succeeded)"));
    } else {
      // Everything taken from the credit vault must land in the escrow vault: a lock that
      // also pays someone else moves the user's money outside the protocol.
      const expected = {
        vault: profile.escrowVault,
        locked: "more than 0",
        taken: moves.lock.toString(),
        paidElsewhere: [],
      };
      const actual = {
        locked: moves.lock.toString(),
        taken: moves.taken.toString(),
        paidElsewhere: moves.elsewhere,
      };
      const reason =
        moves.lock === 0n
          ? "nothing was locked in the escrow vault"
          : moves.elsewhere.length > 0
            ? "the lock also paid accounts other than the escrow vault"
            : moves.taken !== moves.lock
              ? "more left the credit vault than arrived in the escrow vault"
              : null;
      base.push(
        reason === null
          ? pass("escrow.vault", expected, actual)
          : fail("escrow.vault", reason, expected, actual),
      );
    }
    checks.push(...base);
    escrowUsable = base.every((c) => c.outcome !== "fail");
  }
  const escrowSkipReason = escrowUsable
    ? null
    : escrowSig === null
      ? "no escrow transaction"
      : "the escrow transaction is not a successful lock for this job (see escrow.*)";

  // Closing transactions: settlement or refund, told apart by memo.
  const closingSigs = [...new Set([job.settlementTx, job.apiSettlementTx])].filter(
    (s): s is string => s !== null,
  );
  const closings = closingSigs
    .map((signature) => ({ signature, facts: transactions.get(signature) }))
    .filter((c): c is { signature: string; facts: TransactionFacts } => c.facts !== undefined);
  const kindsFor = (facts: TransactionFacts) =>
    parseJobMemos(profile, facts.memos)
      .filter((m) => m.jobId === job.jobId)
      .map((m) => m.kind);
  const settlements = closings.filter((c) => kindsFor(c.facts).includes("settle"));
  const refunds = closings.filter((c) => kindsFor(c.facts).includes("refund"));
  const isRefund =
    refunds.length > 0 ||
    (settlements.length === 0 && (job.httpStatus === 504 || job.apiStatus === "refunded"));

  const settlementNames = [
    "settlement.exists",
    "settlement.finalized",
    "settlement.succeeded",
    "settlement.memo",
    "settlement.worker_paid",
    "settlement.split",
    "settlement.recipients",
    "settlement.conserves_lock",
    "settlement.after_escrow",
    "settlement.within_window",
    "settlement.single",
    "escrow.covers_charge",
    "charge.matches_price",
  ];
  const refundNames = [
    "refund.exists",
    "refund.finalized",
    "refund.succeeded",
    "refund.memo",
    "refund.complete",
    "refund.not_settled",
  ];

  if (isRefund) {
    for (const name of settlementNames)
      checks.push(skip(name, "the job was refunded, not settled"));
    amounts.chargedUnits = 0n;
    amounts.workerPaidUnits = 0n;
    amounts.treasuryPaidUnits = 0n;
    const refund = refunds[0] ?? closings[0];
    if (refund === undefined) {
      const reason = "no refund transaction is known for this refunded job";
      if (unverifiable === null) unverifiable = reason;
      for (const name of refundNames) checks.push(skip(name, reason));
    } else {
      const base = transactionChecks(
        "refund",
        refund.signature,
        refund.facts,
        profile.memo.refundPrefix,
        job.jobId,
        { name: "job_escrow", id: profile.programs.jobEscrow },
      );
      checks.push(...base);
      const usable = base.every((c) => c.outcome !== "fail");
      if (!usable) checks.push(skip("refund.complete", "see refund.*"));
      else if (escrowSkipReason !== null || moves === null) {
        checks.push(skip("refund.complete", escrowSkipReason ?? "no escrow"));
      } else {
        const r = releaseMoves(profile, refund.facts, moves.sources, null);
        amounts.refundedUnits = r.returned;
        const ok = r.outflow === moves.lock && r.returned === moves.lock;
        const expected = { released: moves.lock.toString(), returned: moves.lock.toString() };
        const actual = {
          released: r.outflow.toString(),
          returned: r.returned.toString(),
          payees: r.payees,
        };
        checks.push(
          ok
            ? pass("refund.complete", expected, actual)
            : fail(
                "refund.complete",
                "the whole lock did not return to the credit vault",
                expected,
                actual,
              ),
        );
      }
      const settledToo = closings.filter((c) => kindsFor(c.facts).includes("settle"));
      checks.push(
        settledToo.length === 0
          ? pass("refund.not_settled", [], [])
          : fail(
              "refund.not_settled",
              "the job was refunded and also settled",
              [],
              settledToo.map((s) => s.signature),
            ),
      );
    }
  } else {
    for (const name of refundNames) checks.push(skip(name, "the job was settled, not refunded"));
    const settlement =
      settlements.find((s) => s.signature === job.settlementTx) ?? settlements[0] ?? closings[0];
    if (settlement === undefined) {
      const apiSaysSettled = job.apiStatus === "settled";
      if (apiSaysSettled) {
        checks.push(
          fail(
            "settlement.exists",
            "the jobs API says settled but names no settlement transaction",
            { settlementTx: "a signature" },
            { apiStatus: job.apiStatus, settlementTx: null },
          ),
        );
      } else {
        const reason = "the receipt names no settlement transaction";
        if (unverifiable === null) unverifiable = reason;
        checks.push(skip("settlement.exists", reason));
      }
      for (const name of settlementNames.slice(1)) {
        checks.push(skip(name, "no settlement transaction (see settlement.exists)"));
      }
    } else {
      checks.push(
        ...settlementChecks(
          input,
          settlement,
          settlements,
          escrow ?? null,
          moves,
          escrowSkipReason,
          amounts,
        ),
      );
    }
  }

  checks.push(uniqueSignatures(input));
  checks.push(jobsApiMatches(job));

  if (
    job.worker === null &&
    checks.some((c) => c.name === "settlement.exists" && c.outcome === "pass")
  ) {
    unverifiable ??= "neither the receipt nor the jobs API names the worker";
  }
  const failed = checks.some((c) => c.outcome === "fail");
  const verdict = failed ? "discrepancy" : unverifiable !== null ? "unverifiable" : "verified";
  return { verdict, checks, amounts };
}

function settlementChecks(
  input: CheckInput,
  settlement: { signature: string; facts: TransactionFacts },
  settlements: { signature: string; facts: TransactionFacts }[],
  escrow: TransactionFacts | null,
  moves: EscrowMoves | null,
  escrowSkipReason: string | null,
  amounts: ChainAmounts,
): CheckResult[] {
  const { job, profile } = input;
  const S = settlement.facts;
  const out = transactionChecks(
    "settlement",
    settlement.signature,
    S,
    profile.memo.settlePrefix,
    job.jobId,
    { name: "settlement", id: profile.programs.settlement },
  );
  const succeeded = S.succeeded;
  const notMoved = "the settlement failed on chain and moved no tokens (see settlement.succeeded)";
  const r = releaseMoves(profile, S, moves?.sources ?? new Set(), job.worker);
  // The charge is what the user did not get back: everything paid out of escrow to anyone but
  // the credit vault, so a payment to the wrong wallet still counts as charged.
  const charge = r.worker + r.treasury + sum(r.unexplained.map((u) => u.amount));
  const expectedCharge =
    job.completionTokens === null ? null : priceUnits(profile, job.model, job.completionTokens);
  amounts.expectedChargeUnits = expectedCharge;
  if (succeeded) {
    amounts.workerPaidUnits = r.worker;
    amounts.treasuryPaidUnits = r.treasury;
    amounts.chargedUnits = charge;
    amounts.refundedUnits = r.returned;
  } else {
    amounts.workerPaidUnits = 0n;
    amounts.treasuryPaidUnits = 0n;
    amounts.chargedUnits = 0n;
    amounts.refundedUnits = 0n;
  }

  // The worker named in the receipt is paid.
  let workerPaid = false;
  if (!succeeded) out.push(skip("settlement.worker_paid", notMoved));
  else if (job.worker === null)
    out.push(
      skip("settlement.worker_paid", "neither the receipt nor the jobs API names the worker"),
    );
  else if (r.worker > 0n) {
    workerPaid = true;
    out.push(
      pass(
        "settlement.worker_paid",
        { worker: job.worker },
        { worker: job.worker, amount: r.worker.toString() },
      ),
    );
  } else {
    out.push(
      fail(
        "settlement.worker_paid",
        `the worker named in the receipt (${job.worker}) received nothing`,
        { worker: job.worker },
        { payees: r.payees },
      ),
    );
  }

  // The split matches the rate.
  if (!workerPaid)
    out.push(
      skip("settlement.split", "the receipt's worker was not paid (see settlement.worker_paid)"),
    );
  else {
    const rates = allowedRates(profile, job.worker);
    const allowed = rates.map((bps) => (charge * BigInt(bps)) / 10_000n);
    const expected = {
      charge: charge.toString(),
      rateBps: rates,
      workerShare: allowed.map(String),
    };
    const actual = { workerShare: r.worker.toString(), treasuryShare: r.treasury.toString() };
    out.push(
      allowed.includes(r.worker)
        ? pass("settlement.split", expected, actual)
        : fail(
            "settlement.split",
            "the worker's share matches no allowed payout rate",
            expected,
            actual,
          ),
    );
  }

  // Nothing paid to anyone but worker, treasury and the user's credit vault.
  if (!succeeded) out.push(skip("settlement.recipients", notMoved));
  else if (profile.treasury === null) {
    out.push(skip("settlement.recipients", "the profile does not know the treasury"));
  } else if (!workerPaid) {
    out.push(
      skip(
        "settlement.recipients",
        "the receipt's worker was not paid (see settlement.worker_paid)",
      ),
    );
  } else if (moves === null || escrowSkipReason !== null) {
    out.push(skip("settlement.recipients", escrowSkipReason ?? "no escrow"));
  } else {
    const actual = r.unexplained.map((u) => ({
      account: u.account,
      owner: u.owner,
      amount: u.amount.toString(),
    }));
    out.push(
      actual.length === 0
        ? pass("settlement.recipients", [], [])
        : fail(
            "settlement.recipients",
            "the settlement paid accounts that are not the worker, treasury or credit vault",
            [],
            actual,
          ),
    );
  }

  // Worker + treasury + remainder = lock.
  if (!succeeded) out.push(skip("settlement.conserves_lock", notMoved));
  else if (moves === null || escrowSkipReason !== null) {
    out.push(skip("settlement.conserves_lock", escrowSkipReason ?? "no escrow"));
  } else {
    const paidOut = r.worker + r.treasury + r.returned + sum(r.unexplained.map((u) => u.amount));
    const expected = { lock: moves.lock.toString(), released: moves.lock.toString() };
    const actual = {
      released: r.outflow.toString(),
      worker: r.worker.toString(),
      treasury: r.treasury.toString(),
      returned: r.returned.toString(),
      unexplained: sum(r.unexplained.map((u) => u.amount)).toString(),
      total: paidOut.toString(),
    };
    out.push(
      r.outflow === moves.lock && paidOut === moves.lock
        ? pass("settlement.conserves_lock", expected, actual)
        : fail(
            "settlement.conserves_lock",
            "what left escrow does not add up to the lock",
            expected,
            actual,
          ),
    );
  }

  // Ordering and time window.
  if (escrow === null || escrowSkipReason !== null) {
    out.push(skip("settlement.after_escrow", escrowSkipReason ?? "no escrow"));
    out.push(skip("settlement.within_window", escrowSkipReason ?? "no escrow"));
  } else {
    out.push(
      S.slot >= escrow.slot
        ? pass("settlement.after_escrow", { afterSlot: escrow.slot }, { slot: S.slot })
        : fail(
            "settlement.after_escrow",
            "the settlement landed before the escrow",
            { afterSlot: escrow.slot },
            { slot: S.slot },
          ),
    );
    if (S.blockTime === null || escrow.blockTime === null) {
      out.push(skip("settlement.within_window", "the node reported no block time"));
    } else {
      const elapsed = S.blockTime - escrow.blockTime;
      const expected = { maxSeconds: profile.settlementWindowSeconds };
      out.push(
        elapsed <= profile.settlementWindowSeconds
          ? pass("settlement.within_window", expected, { seconds: elapsed })
          : fail("settlement.within_window", "the settlement came after the window", expected, {
              seconds: elapsed,
            }),
      );
    }
  }

  // One settlement per job.
  const distinct = settlements.map((s) => s.signature);
  out.push(
    distinct.length <= 1
      ? pass("settlement.single", 1, distinct)
      : fail(
          "settlement.single",
          "the headers and the jobs API name two different settlements of this job",
          1,
          distinct,
        ),
  );

  // The lock covers the charge.
  if (!succeeded) out.push(skip("escrow.covers_charge", notMoved));
  else if (moves === null || escrowSkipReason !== null) {
    out.push(skip("escrow.covers_charge", escrowSkipReason ?? "no escrow"));
  } else {
    out.push(
      moves.lock >= charge
        ? pass(
            "escrow.covers_charge",
            { atLeast: charge.toString() },
            { lock: moves.lock.toString() },
          )
        : fail(
            "escrow.covers_charge",
            "the charge exceeds what was locked",
            { atLeast: charge.toString() },
            { lock: moves.lock.toString() },
          ),
    );
  }

  // The charge matches the model's price.
  if (!succeeded) out.push(skip("charge.matches_price", notMoved));
  else if (job.completionTokens === null)
    out.push(skip("charge.matches_price", "usage was not recorded"));
  else if (expectedCharge === null) {
    out.push(
      skip(
        "charge.matches_price",
        `the profile has no price for model ${JSON.stringify(job.model)}`,
      ),
    );
  } else {
    const expected = {
      model: job.model,
      completionTokens: job.completionTokens,
      charge: str(expectedCharge),
    };
    const actual = { charge: charge.toString() };
    out.push(
      charge === expectedCharge
        ? pass("charge.matches_price", expected, actual)
        : fail(
            "charge.matches_price",
            "the charge differs from the model's price for the recorded usage",
            expected,
            actual,
          ),
    );
  }
  return out;
}

/** A signature named by several jobs belongs to the job its memo names; the others fail. */
function uniqueSignatures(input: CheckInput): CheckResult {
  const { job, profile, transactions, namedBy, namedByTotal } = input;
  const stolen: {
    signature: string;
    owner: string | null;
    namedBy: readonly string[];
    jobsNaming: number;
  }[] = [];
  for (const signature of jobSignatures(job)) {
    const names = namedBy.get(signature) ?? [job.jobId];
    if (names.every((id) => id === job.jobId)) continue;
    const facts = transactions.get(signature);
    const owners = facts ? parseJobMemos(profile, facts.memos).map((m) => m.jobId) : [];
    if (!owners.includes(job.jobId)) {
      stolen.push({
        signature,
        owner: owners[0] ?? null,
        namedBy: names,
        jobsNaming: namedByTotal?.get(signature) ?? names.length,
      });
    }
  }
  return stolen.length === 0
    ? pass("signatures.unique", "each signature serves only this job", [])
    : fail(
        "signatures.unique",
        "a signature of another job is named by this receipt (replayed receipt)",
        [],
        stolen,
      );
}

/** What the jobs API said agrees with the recorded headers. */
function jobsApiMatches(job: ReceiptForChecks): CheckResult {
  const name = "jobs_api.matches_receipt";
  if (job.apiCheckedAt === null) return skip(name, "the jobs API was not consulted");
  const pairs: [string, string | null, string | null][] = [
    ["escrowTx", job.escrowTx, job.apiEscrowTx],
    ["settlementTx", job.settlementTx, job.apiSettlementTx],
    ["worker", job.worker, job.apiWorker],
  ];
  const compared = pairs.filter(([, header, api]) => header !== null && api !== null);
  const differing = compared.filter(([, header, api]) => header !== api);
  const expected = Object.fromEntries(compared.map(([k, header]) => [k, header]));
  const actual = Object.fromEntries(compared.map(([k, , api]) => [k, api]));
  if (compared.length === 0)
    return skip(name, "the jobs API and the headers share no field to compare");
  return differing.length === 0
    ? pass(name, expected, actual)
    : fail(
        name,
        `the jobs API disagrees with the headers on ${differing.map(([k]) => k).join(", ")}`,
        expected,
        actual,
      );
}
