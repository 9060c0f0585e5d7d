import { isFinalAnswer, jobStatusWord } from "../../store/jobs-api-rules.js";
import type { CheckResult, ReceiptForChecks } from "./check-input.js";
import { fail, pass, skip } from "./check-list.js";

/** What Decentral's jobs API answered, against the receipt and against the chain. */

/**
 * What the jobs API said agrees with the recorded headers. A field on which one side names a
 * signature no endpoint serves (`unserved`) is that signature's `.exists` finding, not a second
 * one here: a made-up signature says nothing about the transactions that landed.
 */
export function jobsApiMatchesReceipt(
  job: ReceiptForChecks,
  unserved: ReadonlyMap<string, unknown> = new Map(),
): CheckResult {
  const name = "jobs_api.matches_receipt";
  if (job.apiCheckedAt === null) return skip(name, "the jobs API was not consulted");
  const pairs: [string, string | null, string | null][] = [
    ["escrowTx", job.escrowTx, job.apiEscrowTx],
    ["settlementTx", job.settlementTx, job.apiSettlementTx],
    ["worker", job.worker, job.apiWorker],
  ];
  const compared = pairs.filter(([, header, api]) => header !== null && api !== null);
  const differing = compared.filter(([, header, api]) => header !== api);
  const notServed = (s: string | null) => s !== null && unserved.has(s);
  const real = differing.filter(([, header, api]) => !notServed(header) && !notServed(api));
  const expected = Object.fromEntries(compared.map(([k, header]) => [k, header]));
  const actual = Object.fromEntries(compared.map(([k, , api]) => [k, api]));
  if (compared.length === 0)
    return skip(name, "the jobs API and the headers share no field to compare");
  if (real.length === 0 && differing.length > 0) {
    return {
      name,
      outcome: "skip",
      reason: `the jobs API and the headers differ only on ${differing.map(([k]) => k).join(", ")}, where one names a transaction no endpoint serves (see its .exists check)`,
      expected,
      actual,
    };
  }
  return real.length === 0
    ? pass(name, expected, actual)
    : fail(
        name,
        `the jobs API disagrees with the headers on ${real.map(([k]) => k).join(", ")}`,
        expected,
        actual,
      );
}

/**
 * What the jobs API said agrees with the chain: status, and credits charged. `locked`: the
 * job's escrow transaction moved credits, so a job that ends without a charge owes a return.
 */
export function jobsApiMatchesChain(
  job: ReceiptForChecks,
  outcome: { kind: "settled" | "refunded" | "none"; charge: bigint | null },
  locked: boolean,
): CheckResult {
  const name = "jobs_api.matches_chain";
  if (job.apiCheckedAt === null) return skip(name, "the jobs API was not consulted");
  const status = jobStatusWord(job.apiStatus);
  // A failed job is final too (nothing more will settle it): the customer owes nothing for
  // it, so its lock must have come back, and a settlement of it charged for a job that failed.
  if (status === "failed") return failedJobMatchesChain(job, outcome, locked);
  if (status !== "settled" && status !== "refunded") {
    return skip(
      name,
      `the jobs API's last answer (${status ?? "no status"}) is not final: its status and credits charged are not compared with the chain, and the job is asked about again until it gives one (see jobs_api_not_final)`,
    );
  }
  const expected = {
    status: outcome.kind,
    creditsChargedUnits: outcome.charge?.toString() ?? null,
  };
  const actual = {
    status,
    creditsChargedUnits: job.apiCreditsChargedUnits?.toString() ?? null,
  };
  if (outcome.kind !== "none" && status !== outcome.kind) {
    return fail(
      name,
      `the jobs API says ${status}, the chain shows the job ${outcome.kind}`,
      expected,
      actual,
    );
  }
  const unread = job.apiCreditsChargedUnread ?? null;
  if (unread !== null) return unreadCharge(name, expected, unread);
  const chainCharge = outcome.kind === "refunded" ? 0n : outcome.charge;
  if (job.apiCreditsChargedUnits !== null && chainCharge !== null) {
    if (job.apiCreditsChargedUnits !== chainCharge) {
      return fail(
        name,
        "the jobs API's credits charged differ from what the chain charged",
        { ...expected, creditsChargedUnits: chainCharge.toString() },
        actual,
      );
    }
  } else if (outcome.kind === "none") {
    return skip(name, "the chain shows no closing transaction to compare with");
  }
  return pass(name, expected, actual);
}

/**
 * The jobs API answered, but with no final status (`settling`, `processing`, a word the protocol
 * does not list): what it says the customer was charged was never compared with the chain, so
 * the job is not `verified` on it. A final answer later sends the job back to the verifier.
 */
export function jobsApiAnswerNotFinal(job: ReceiptForChecks): boolean {
  return job.apiCheckedAt !== null && !isFinalAnswer({ status: job.apiStatus });
}

function failedJobMatchesChain(
  job: ReceiptForChecks,
  outcome: { kind: "settled" | "refunded" | "none"; charge: bigint | null },
  locked: boolean,
): CheckResult {
  const name = "jobs_api.matches_chain";
  const expected = { status: "failed", lockReturned: locked, creditsChargedUnits: "0" };
  const actual = {
    chain: outcome.kind,
    chainChargeUnits: outcome.charge?.toString() ?? null,
    creditsChargedUnits: job.apiCreditsChargedUnits?.toString() ?? null,
  };
  if (outcome.kind === "settled") {
    return fail(
      name,
      "the jobs API says failed, the chain shows the job settled",
      expected,
      actual,
    );
  }
  if (outcome.kind === "none" && locked) {
    // As for a job it calls refunded: the return may exist unnamed (the vault statement sees
    // it, or a lock left out), so the job waits unverifiable rather than failing on a guess.
    return skip(
      name,
      "the jobs API says failed, and no transaction it or the receipt names returns the job's lock",
    );
  }
  const unread = job.apiCreditsChargedUnread ?? null;
  if (unread !== null) return unreadCharge(name, expected, unread);
  if (job.apiCreditsChargedUnits !== null && job.apiCreditsChargedUnits !== 0n) {
    return fail(name, "the jobs API charges credits for a job it says failed", expected, actual);
  }
  return pass(name, expected, actual);
}

/**
 * The jobs API sent `credits_charged` that is no credit amount: what it says the customer paid
 * cannot be what the chain shows, whatever that is, so it fails rather than compares nothing.
 */
function unreadCharge(name: "jobs_api.matches_chain", expected: unknown, unread: string) {
  return fail(name, `the jobs API's credits_charged is not a credit amount: ${unread}`, expected, {
    creditsCharged: unread,
  });
}
