import type { TransactionFacts } from "../chain/transaction-facts.js";
import { TREASURY_UNKNOWN } from "../store/custody-rules.js";
import { jobStatusWord } from "../store/jobs-api-rules.js";
import { maxConflictSignatures } from "../store/receipt-rules.js";
import type { Role } from "./check-catalogue.js";
import { amountsOf } from "./checks/amounts.js";
import { answeredModel } from "./checks/charge.js";
import type {
  CheckInput,
  CheckResult,
  EvaluatedVerdict,
  Evaluation,
  Unserved,
} from "./checks/check-input.js";
import { CheckList, fail, pass, skip } from "./checks/check-list.js";
import { creditsHeaderCheck } from "./checks/credits.js";
import { escrowChecks, lockWithinCeiling, singleLock, type UsableLock } from "./checks/escrow.js";
import {
  jobsApiAnswerNotFinal,
  jobsApiMatchesChain,
  jobsApiMatchesReceipt,
} from "./checks/jobs-api.js";
import { fingerprintUnique } from "./checks/key.js";
import { parseJobMemos } from "./checks/memos.js";
import { receiptTime } from "./checks/receipt-time.js";
import { refundChecks, refundNames } from "./checks/refund.js";
import { settlementChecks, settlementNames } from "./checks/settlement.js";
import { jobSignatures, stolenSignatures, uniqueSignatures } from "./checks/signatures.js";
import type { RoleTx } from "./checks/transaction.js";
import { usageConsistent } from "./checks/usage.js";
import { movesCredits } from "./money-movements.js";

export type {
  ChainAmounts,
  CheckInput,
  CheckResult,
  Custody,
  EvaluatedVerdict,
  Evaluation,
  ReceiptForChecks,
  Unserved,
} from "./checks/check-input.js";
export { MAX_NAMED_BY } from "./checks/check-input.js";
export { type CreditsSpan, creditsHeaderMatches } from "./checks/credits.js";
export { type MemoKind, memoJobOf, parseJobMemos } from "./checks/memos.js";
export { jobSignatures, signatureOwner } from "./checks/signatures.js";

/**
 * The protocol checks (PROTOCOL.md section 3), composed by `evaluateJob`. Each role's rules
 * live in checks/ (transaction.ts for what every role shares, escrow, settlement, charge,
 * refund, signatures, jobs-api; amounts.ts for the money a job owns), the names in
 * check-catalogue.ts and the money reading in money-movements.ts. They are pure functions of
 * a receipt, the finalized facts of the transactions it names, a profile and what the store
 * has pinned (credit vaults, the learned treasury). Nothing here touches the store or the network, so every verdict can
 * be recomputed from stored evidence.
 *
 * The operator signs every byte of these transactions, so a check never takes an account for
 * what it claims to be: the credit vault is a fact of the API key, the treasury is pinned or
 * learned, and every balance change and token instruction is explained by the job's role.
 *
 * Invariant: a check whose input is missing because an earlier check failed is skipped with a
 * reason naming that check, so one fault shows up as the check it really breaks.
 */

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
  const unserved = input.unserved ?? new Map<string, Unserved>();
  const list = new CheckList();
  const learned: Evaluation["learned"] = { creditVault: null, treasuryCandidate: null };
  const stolen = stolenSignatures(input);
  // The lock judged: the receipt's, or the jobs API's when the receipt's is not served.
  const escrowNames = [job.escrowTx, job.apiEscrowTx].filter((s): s is string => s !== null);
  const escrowSig = escrowNames.find((s) => !unserved.has(s)) ?? escrowNames[0] ?? null;
  // Transactions whose own checks defer to signatures.unique: another job's, or named by this
  // job for two steps.
  const deferred = new Map(
    [...stolen].map(([sig, owner]) => [sig, `the transaction belongs to ${owner}`]),
  );
  for (const s of [job.settlementTx, job.apiSettlementTx]) {
    if (s !== null && s === escrowSig && !deferred.has(s)) {
      deferred.set(s, "this job names it for two steps");
    }
  }
  const txOf = (role: Role, signature: string): RoleTx | null => {
    const facts = transactions.get(signature);
    return facts ? { role, signature, facts, stolenBy: deferred.get(signature) ?? null } : null;
  };
  const roles = new Map<string, Role[]>();
  const played = (signature: string, role: Role) =>
    roles.set(signature, [...new Set([...(roles.get(signature) ?? []), role])]);

  // Two keys made to share the job's key fingerprint: whatever ties its lock to the key ties
  // it to either customer.
  const shared = fingerprintUnique(input);
  if (shared !== null) list.add(shared);

  // Escrow. One no endpoint serves gets its escrow.exists with the other unserved ones, below.
  const escrow = escrowSig === null ? null : txOf("escrow", escrowSig);
  let lock: UsableLock | null = null;
  if (escrow === null && escrowSig !== null && unserved.has(escrowSig)) {
    list.skipAll(escrowAfterExists, `${unservedWhat(unserved, [escrowSig])} (see escrow.exists)`);
  } else if (escrow === null) {
    list.unverifiable = "the receipt names no escrow transaction";
    list.add(skip("escrow.exists", list.unverifiable));
  } else {
    played(escrow.signature, "escrow");
    lock = escrowChecks(input, escrow, list, learned);
    list.add(receiptTime(input, escrow));
  }
  const escrowSkip =
    escrow === null
      ? escrowSig !== null && unserved.has(escrowSig)
        ? `${unservedWhat(unserved, [escrowSig])} (see escrow.exists)`
        : "no escrow transaction"
      : "the escrow is not a sound lock for this job (see escrow.*)";
  // Settled or refunded, a lock above the most the job can cost held the customer's credits.
  list.add(lockWithinCeiling(input, lock, escrowSkip));

  // Closing transactions: settlement or refund, told apart by this job's memo.
  const closingNames = [...new Set([job.settlementTx, job.apiSettlementTx])].filter(
    (s): s is string => s !== null && s !== escrowSig,
  );
  const closings = closingNames
    .map((s) => txOf("settlement", s))
    .filter((c): c is RoleTx => c !== null);
  const kindsFor = (facts: TransactionFacts) =>
    parseJobMemos(profile, facts.memos)
      .filter((m) => m.jobId === job.jobId)
      .map((m) => m.kind);
  // A second lock of this job, named anywhere (a conflicting receipt, the jobs API), took the
  // credits twice for one job id, whatever its settlement or refund says.
  list.add(
    singleLock(input, escrowSig, jobSignatures(job), (facts) => kindsFor(facts).includes("escrow")),
  );
  // What conflicting receipts of this job id name: more locks and closings of the same job.
  const conflicting = (job.conflictSignatures ?? [])
    .filter((s) => s !== escrowSig && !closings.some((c) => c.signature === s))
    .map((s) => txOf("settlement", s))
    .filter((c): c is RoleTx => c !== null);
  // One that moved credits and carries none of this job's memos is no step of it, yet the
  // job's own receipt names it: whether its money is looked at must not turn on the memo the
  // operator wrote (none, or another job id's).
  const unexplainedTxs = conflicting.filter(
    (c) => movesCredits(profile, c.facts) && kindsFor(c.facts).length === 0,
  );
  const unexplained = unexplainedTxs.map((c) => c.signature);
  // A list past `maxConflictSignatures` holds the mark that more further signatures were named
  // than are kept: a step past the cap (a second lock, a refund) is judged only once the escrow
  // scan keeps it (one that paid out of escrow or of the key's vault), so the job cannot pass,
  // whatever the kept ones show.
  const named = job.conflictSignatures?.length ?? 0;
  const overflow = named > maxConflictSignatures;
  list.add(
    unexplained.length === 0 && !overflow
      ? pass("signatures.explained", { unexplained: [] }, { unexplained })
      : fail(
          "signatures.explained",
          overflow
            ? `this job names ${named} further signatures (conflicting receipts, steps a jobs API answer dropped, ledger lines under its memo), more than the ${maxConflictSignatures} the verifier follows: a step past them is judged only once the escrow scan finds it paid out of escrow or of the key's vault`
            : `a conflicting receipt of this job names ${unexplained.join(", ")}, which moved credits and carries no memo of this job: no step of the job explains it`,
          { unexplained: [] },
          overflow ? { unexplained, conflictSignatures: named } : { unexplained },
        ),
  );
  // Each conflicting transaction is one step for the amounts: a closing when it carries a
  // settle or refund memo of the job, else a lock when it carries its escrow memo; the jobs
  // API's lock is counted as such already.
  const conflictClosings = conflicting.filter((c) =>
    kindsFor(c.facts).some((k) => k === "settle" || k === "refund"),
  );
  const extraLocks = conflicting
    .filter(
      (c) =>
        kindsFor(c.facts).includes("escrow") &&
        !conflictClosings.includes(c) &&
        c.signature !== job.apiEscrowTx,
    )
    .map((c) => ({ ...c, role: "escrow" as const }));
  closings.push(...conflictClosings);
  // Named steps no endpoint serves, by role: the lock, and the closing steps (a signature
  // named only by a conflicting receipt is taken for one: its role is not recorded).
  const unservedLocks = escrowNames.filter((s) => unserved.has(s));
  const unservedClosings = [
    ...new Set([...closingNames, ...(job.conflictSignatures ?? [])]),
  ].filter((s) => unserved.has(s) && !escrowNames.includes(s));
  const settlements = closings.filter((c) => kindsFor(c.facts).includes("settle"));
  const refunds = closings
    .filter((c) => kindsFor(c.facts).includes("refund"))
    .map((c) => ({ ...c, role: "refund" as const }));
  // A signature named as escrow and as a closing step serves two roles of one job.
  for (const s of [job.settlementTx, job.apiSettlementTx]) {
    if (s !== null && s === escrowSig) played(s, "settlement");
  }
  // An answer other than 2xx gave the caller no completion (a 504 even says "timed out,
  // credits refunded"; a 402 or a 500 carries an error, whatever usage its body names):
  // whatever the chain shows, the job must end with its lock returned, and a settlement of it
  // charges for an answer never given.
  const unanswered = job.httpStatus !== null && (job.httpStatus < 200 || job.httpStatus > 299);
  const isRefund =
    refunds.length > 0 ||
    unanswered ||
    (settlements.length === 0 && jobStatusWord(job.apiStatus) === "refunded");

  let outcome: { kind: "settled" | "refunded" | "none"; charge: bigint | null } = {
    kind: "none",
    charge: null,
  };
  if (isRefund) {
    list.skipAll(settlementNames, "the job was refunded, not settled");
    list.add(skip("charge.model", "the job was refunded, not settled"));
    const refund =
      refunds[0] ??
      (closings[0] && settlements.length === 0
        ? { ...closings[0], role: "refund" as const }
        : undefined);
    if (refund === undefined && settlements.length > 0) {
      list.skipAll(
        refundNames.filter((n) => n !== "refund.not_settled"),
        "the job was settled instead of refunded (see refund.not_settled)",
      );
      list.add(
        fail(
          "refund.not_settled",
          `the caller was answered ${job.httpStatus}${job.httpStatus === 504 ? " (timed out, credits refunded)" : " (an error, no completion)"} but the job was settled`,
          { refunded: true },
          settlements.map((s) => s.signature),
        ),
      );
      outcome = { kind: "settled", charge: null };
    } else if (refund === undefined && unservedClosings.length > 0) {
      list.skipAll(
        refundNames.filter((n) => n !== "refund.exists"),
        `${unservedWhat(unserved, unservedClosings)} (see refund.exists)`,
      );
    } else if (refund === undefined) {
      // Not a finding yet: a refund the receipt does not name may still come from the jobs
      // API. Until one does, the lock is money not shown returned, and the job is not verified.
      const reason =
        unanswered && escrow !== null
          ? `the caller was answered ${job.httpStatus} and no transaction known returns the job's lock`
          : "no refund transaction is known for this refunded job";
      list.unverifiable ??= reason;
      list.skipAll(refundNames, reason);
    } else {
      played(refund.signature, "refund");
      refundChecks(input, refund, settlements, refunds, lock, escrowSkip, list);
      outcome = { kind: "refunded", charge: 0n };
    }
  } else {
    list.skipAll(refundNames, "the job was settled, not refunded");
    list.add(answeredModel(job));
    const price =
      job.model !== null && Object.hasOwn(profile.pricing, job.model)
        ? profile.pricing[job.model]
        : undefined;
    list.add(
      usageConsistent(
        job,
        job.model === null ? null : { name: job.model, hiddenTokens: price?.hiddenTokens },
      ),
    );
    const settlement =
      settlements.find((s) => s.signature === job.settlementTx) ?? settlements[0] ?? closings[0];
    if (settlement === undefined && unservedClosings.length > 0) {
      list.skipAll(
        settlementNames.filter((n) => n !== "settlement.exists"),
        `${unservedWhat(unserved, unservedClosings)} (see settlement.exists)`,
      );
    } else if (settlement === undefined) {
      if (jobStatusWord(job.apiStatus) === "settled") {
        list.add(
          fail(
            "settlement.exists",
            "the jobs API says settled but names no settlement transaction",
            { settlementTx: "a signature" },
            { apiStatus: job.apiStatus, settlementTx: null },
          ),
        );
      } else {
        const reason = "the receipt names no settlement transaction";
        list.unverifiable ??= reason;
        list.add(skip("settlement.exists", reason));
      }
      list.skipAll(
        settlementNames.filter((n) => n !== "settlement.exists"),
        "no settlement transaction (see settlement.exists)",
      );
    } else {
      for (const s of settlements) played(s.signature, "settlement");
      played(settlement.signature, "settlement");
      const money = settlementChecks(
        input,
        settlement,
        settlements,
        lock,
        escrowSkip,
        list,
        learned,
      );
      outcome = { kind: "settled", charge: money?.charge ?? null };
    }
  }

  // A named step no endpoint serves: its role's `.exists` fails (never landed) or is skipped
  // (pruned), in place of the pass of another named step of that role that did land. A
  // closing step of a job that was to be refunded is a refund.
  const neverLanded = new Set<CheckResult>();
  const closingRole: Role = isRefund && outcome.kind !== "settled" ? "refund" : "settlement";
  for (const [role, names, landed] of [
    ["escrow", unservedLocks, escrow === null ? [] : [escrow]],
    [closingRole, unservedClosings, closings],
  ] as const) {
    if (names.length === 0) continue;
    const check = unservedExists(role, names, landed, job, unserved);
    if (check.outcome === "fail") neverLanded.add(check);
    else list.unverifiable ??= check.reason;
    list.replace(check);
  }

  list.add(uniqueSignatures(input, stolen, roles));
  list.add(jobsApiMatchesReceipt(job, unserved));
  const locked = escrow !== null && movesCredits(profile, escrow.facts);
  list.add(jobsApiMatchesChain(job, outcome, locked));
  if (jobsApiAnswerNotFinal(job)) list.unproven.add("jobs_api_not_final");
  creditsHeaderCheck(list, job, input.creditsSpan ?? null);

  if (job.worker === null && list.outcome("settlement.exists") === "pass") {
    list.unverifiable ??= "neither the receipt nor the jobs API names the worker";
  }
  // What landed is judged first: a failing check among it is a discrepancy, whatever else
  // never landed; a job whose only finding is a step that never landed is `dropped`.
  const failed = list.checks.some((c) => c.outcome === "fail" && !neverLanded.has(c));
  const verdict: EvaluatedVerdict = failed
    ? "discrepancy"
    : neverLanded.size > 0
      ? "dropped"
      : list.unverifiable !== null
        ? "unverifiable"
        : list.unproven.size > 0
          ? "partially_verified"
          : "verified";
  if (verdict !== "partially_verified" && verdict !== "verified") {
    learned.creditVault = null;
    learned.treasuryCandidate = null;
    // A gap would not change this verdict: a vault held since cannot make it stale.
    learned.untiedVault = null;
    learned.vaultOwner = null;
  }
  return {
    verdict,
    checks: list.checks,
    // A closing with both this job's settle and refund memos still paid its worker. What a
    // conflicting receipt names that no step explains moved money all the same: read as a
    // closing (what it put into escrow counted escrowed), counted by the job owning it.
    amounts: amountsOf(
      input,
      escrow,
      extraLocks,
      [...closings, ...unexplainedTxs],
      refunds.filter((r) => !settlements.some((s) => s.signature === r.signature)),
      lock,
      // One that moved no credits (failed, or only lamports) and carries none of its memos
      // still paid its fee, as it would named by the receipt: counted by the job owning it.
      conflicting.filter((c) => !movesCredits(profile, c.facts) && kindsFor(c.facts).length === 0),
    ),
    // A verdict that failed for another reason keeps the treasury's gap, if it has it: its
    // treasury figure counted the one payee besides the worker and the vault as the treasury
    // while it was learned, and the job is decided again once it is (`waitsForTreasury`).
    unproven:
      verdict === "partially_verified"
        ? [...list.unproven]
        : list.unproven.has(TREASURY_UNKNOWN)
          ? [TREASURY_UNKNOWN]
          : [],
    learned,
  };
}

/** The escrow checks that follow escrow.exists, skipped when the lock is not served. */
const escrowAfterExists = [
  "escrow.program",
  "escrow.finalized",
  "escrow.succeeded",
  "escrow.memo",
  "escrow.instructions",
  "escrow.balances",
  "escrow.source",
  "escrow.vault",
] as const;

/** Why the checks resting on these unserved signatures are skipped. */
function unservedWhat(unserved: ReadonlyMap<string, Unserved>, signatures: readonly string[]) {
  return signatures.some((s) => unserved.get(s)?.state === "dropped")
    ? "the transaction named never landed"
    : "the node no longer serves the transaction named";
}

/**
 * `<role>.exists` for named steps no endpoint serves: a fail when one never landed, a skip when
 * the node pruned them. The evidence says who named each, and which steps of the role landed.
 */
function unservedExists(
  role: Role,
  signatures: readonly string[],
  landed: readonly RoleTx[],
  job: CheckInput["job"],
  unserved: ReadonlyMap<string, Unserved>,
): CheckResult {
  const dropped = signatures.some((s) => unserved.get(s)?.state === "dropped");
  const namers = (s: string) => {
    const named = [
      ...(s === job.escrowTx || s === job.settlementTx ? ["receipt"] : []),
      ...(s === job.apiEscrowTx || s === job.apiSettlementTx ? ["jobs API"] : []),
    ];
    // Kept with the job and named as a step too: the step says what it is (see audit-record).
    return named.length > 0 || !(job.conflictSignatures ?? []).includes(s)
      ? named
      : ["conflicting receipt"];
  };
  const reason = signatures
    .map((s) => {
      const why = unserved.get(s)!.reason;
      return signatures.length === 1 ? why : `${s}: ${why}`;
    })
    .join("; ");
  return {
    name: `${role}.exists`,
    outcome: dropped ? "fail" : "skip",
    reason,
    expected:
      signatures.length === 1
        ? { signature: signatures[0], namedBy: namers(signatures[0]!) }
        : { signatures: signatures.map((s) => ({ signature: s, namedBy: namers(s) })) },
    actual:
      landed.length === 0
        ? null
        : { landed: landed.map((t) => ({ signature: t.signature, slot: t.facts.slot })) },
  };
}
