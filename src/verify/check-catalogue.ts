/**
 * Every check by its stable name, with what it proves. Reports, the API and the README group
 * findings by these names, so a check that is not listed here does not compile.
 */
export const checkCatalogue = {
  "escrow.exists": "the receipt names the escrow transaction and the chain has it",
  "escrow.finalized": "it is finalized (checks only run at finalized)",
  "escrow.succeeded": "meta.err is null (a failed transaction moves no tokens)",
  "escrow.memo": "an SPL Memo names this job, and no memo names another job or step",
  "escrow.program": "the profile's escrow program was invoked (a profile gap while unknown)",
  "escrow.instructions":
    "only token transfers (top level and inner): no Approve, SetAuthority, Burn, CloseAccount, MintTo, Freeze, ...",
  "escrow.balances": "no balance changed in any other mint or token program",
  "escrow.source":
    "the lock was taken from one account, the credit vault of the caller's API key (configured, declared by the receipt, or learned from the key's first lock)",
  "escrow.vault": "all that left the credit vault arrived in the escrow vault, and nothing else",
  "escrow.covers_charge": "the lock is at least the charge",
  "escrow.within_ceiling":
    "the lock is at most the requested model's price at the request's max_tokens (the default where the proxy saw none set): the most the job can cost",
  "receipt.time":
    "the receipt's time (which places the job in a report period) is within the profile's skew of the job's span on chain: after its lock, before its settlement window ends",
  "escrow.single":
    "the job locked the credits once: no other answer for its id (conflicting receipt, jobs API) names a second lock of it",
  "settlement.exists": "the settlement transaction is named and the chain has it",
  "settlement.finalized": "it is finalized",
  "settlement.succeeded": "meta.err is null",
  "settlement.memo": "an SPL Memo names this job, and no memo names another job or step",
  "settlement.program":
    "the profile's settlement program was invoked (a profile gap while unknown)",
  "settlement.instructions": "only token transfers, as for the escrow",
  "settlement.balances":
    "only the escrow account paid out; no other account and no other mint changed",
  "settlement.worker_paid": "the worker named in the receipt was paid",
  "settlement.split": "worker share = floor(charge x rate) for an allowed (or pinned) rate",
  "settlement.recipients":
    "nobody but the worker, the treasury (pinned or learned) and the job's own credit vault was paid",
  "settlement.conserves_lock": "what left escrow = lock = worker + treasury + returned",
  "settlement.after_escrow": "the settlement's slot is not before the escrow's",
  "settlement.within_window": "settled within the profile's window of the escrow",
  "settlement.single": "the job was settled once: the headers and the jobs API name one settlement",
  "charge.model": "the response names the model the caller asked for",
  "charge.matches_price": "the charge is the requested model's price for the recorded usage",
  "refund.exists": "the refund transaction is named and the chain has it",
  "refund.finalized": "it is finalized",
  "refund.succeeded": "meta.err is null",
  "refund.memo": "an SPL Memo names this job, and no memo names another job or step",
  "refund.program": "the profile's escrow program was invoked (a profile gap while unknown)",
  "refund.instructions": "only token transfers, as for the escrow",
  "refund.balances": "only the escrow account paid out; no other account and no other mint changed",
  "refund.complete": "the whole lock went back to the credit vault it came from",
  "refund.after_escrow":
    "the refund's slot is not before the escrow's: a refund before its lock paid out of other locks",
  "refund.within_window":
    "refunded within the profile's window of the escrow: a later refund held the credits locked",
  "refund.not_settled": "a refunded job was not also settled",
  "refund.single":
    "the job was refunded once: its receipts and the jobs API name one refund transaction",
  "signatures.explained":
    "every transaction a conflicting receipt of this job names that moved credits is a step of the job (it carries the job's escrow, settle or refund memo and is judged as one), and the job names no more further signatures than the verifier follows",
  "signatures.unique":
    "each signature serves one job in one role (receipts and jobs-API answers of every job compared)",
  "jobs_api.matches_receipt": "the jobs API agrees with the headers (escrow, settlement, worker)",
  "jobs_api.matches_chain": "the jobs API's status and credits charged agree with the chain",
  "credits.header":
    "x-decentral-credits-remaining (whole credits) is a balance the credit vault held between the job's lock and its response (applied once the ledger has read the vault that far)",
  "amounts.storable":
    "every amount read for the job fits the store (at most 2^53 - 1 base units or lamports); a job beyond it is not verified, and its amounts are not written (written only when one does not fit)",
  "escrow.rpc_quorum":
    "RPC_QUORUM endpoints answered the escrow's facts and finalized status identically (written only while they disagree)",
  "settlement.rpc_quorum":
    "RPC_QUORUM endpoints answered the settlement's facts and finalized status identically (written only while they disagree)",
} as const;

export type CheckName = keyof typeof checkCatalogue;

export const checkNames = Object.keys(checkCatalogue) as CheckName[];

/** The three transactions of a job; each gets the same transaction-level checks. */
export type Role = "escrow" | "settlement" | "refund";

/**
 * Why a job whose checks all passed is still not `verified`: a money check its own data left
 * unproven. Profile-level gaps (a program id the profile does not know) are not listed per job:
 * they are reported once, see `profileGaps`.
 */
export const unprovenCodes = {
  vault_untied:
    "the credit vault is not tied to the customer (no key fingerprint or declared vault, and no configured vault that no other key holds)",
  usage_unknown: "usage was not recorded: the charge is bounded by the lock only",
  price_unknown: "the profile has no price for the requested model",
  model_unknown: "the receipt does not say which model was asked for",
  treasury_unknown: "the treasury is not pinned and not learned yet",
  worker_unknown:
    "the profile pins its workers' payout rates, and not this worker's: its rate (and that it is a worker at all) is not known",
  inner_instructions_unknown:
    "the node did not report inner instructions, and other programs were invoked",
} as const;

export type UnprovenCode = keyof typeof unprovenCodes;
