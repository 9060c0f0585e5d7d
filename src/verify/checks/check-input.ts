import type { TransactionFacts } from "../../chain/transaction-facts.js";
import type { CheckOutcome, ReceiptSource } from "../../db/schema.js";
import type { VerdictAmounts } from "../../store/verdicts.js";
import type { CheckName, UnprovenCode } from "../check-catalogue.js";
import type { Profile } from "../profiles.js";
import type { ClosingNamer } from "./shared-closing.js";

/** What the checks read (a job, its transactions' facts, the profile, the pins) and give back. */

/** What a check needs from a job row. */
export interface ReceiptForChecks {
  jobId: string;
  escrowTx: string | null;
  settlementTx: string | null;
  worker: string | null;
  /** The model the caller asked for: the job is priced by it. */
  model: string | null;
  /** The model the response named (the operator writes it); null when not recorded. */
  responseModel?: string | null;
  completionTokens: number | null;
  /** The rest of the usage the operator claimed (see `usage.consistent`); null when unknown. */
  promptTokens?: number | null;
  totalTokens?: number | null;
  reasoningTokens?: number | null;
  rejectedPredictionTokens?: number | null;
  /** Bytes of the answer tokens could have made, where the recorder saw it (`jobs.answer_bytes`). */
  answerBytes?: number | null;
  /** Tool and function calls in that answer (`jobs.answer_tool_calls`). */
  answerToolCalls?: number | null;
  maxTokens: number | null;
  /** The choices the request asked for (`n`) beyond one; null or absent: one. */
  choices?: number | null;
  httpStatus: number | null;
  /** Fingerprint of the caller's API key: one key spends one credit vault. */
  keyFingerprint?: string | null;
  /**
   * The key's next 64 bits (`jobs.key_check`), never its identity: tells apart two keys made to
   * share a fingerprint. Null when the recorder did not send it.
   */
  keyCheck?: string | null;
  /** The credit vault the receipt's sender declares as the key's. */
  creditVault?: string | null;
  apiStatus: string | null;
  apiCreditsChargedUnits: bigint | null;
  /** `credits_charged` as the jobs API sent it when it is no credit amount. */
  apiCreditsChargedUnread?: string | null;
  apiEscrowTx: string | null;
  apiSettlementTx: string | null;
  apiWorker: string | null;
  /** `usage.completion_tokens` as the jobs API named it (`jobs.api_completion_tokens`). */
  apiCompletionTokens?: number | null;
  apiCheckedAt: number | null;
  /** `x-decentral-credits-remaining` in base units (credits x 10,000); null when absent. */
  creditsRemainingUnits?: bigint | null;
  /** The header as sent when it is no credit amount (`credits.header` fails on it). */
  creditsRemainingUnread?: string | null;
  /** Signatures named by conflicting receipts of this job id (see `jobs.conflict_signatures`). */
  conflictSignatures?: readonly string[] | null;
  /** The receipt's time (ms since epoch), by which reports place the job in a period. */
  createdAt?: number | null;
  /**
   * Who recorded the job. A proxy receipt's null `maxTokens` means the request set none; an
   * ingested one's may only mean its sender did not record it.
   */
  source?: ReceiptSource;
  /** Whether the request asked for a stream (`jobs.stream`); null when not recorded. */
  stream?: boolean | null;
  /** Whether a proxied stream's request asked for its usage (`jobs.usage_asked`). */
  usageAsked?: boolean | null;
  /** Whether the request the proxy read sent a `prediction` (`jobs.prediction_sent`). */
  predictionSent?: boolean | null;
  /** The method of the request the proxy forwarded (`jobs.request_method`); null when unknown. */
  requestMethod?: string | null;
  /** Its path, without the query (`jobs.request_path`); null when unknown. */
  requestPath?: string | null;
  /** How the proxy's capture ended (`jobs.capture_state`): `aborted` read no whole answer. */
  captureState?: "open" | "complete" | "aborted";
}

export interface CheckResult {
  name: CheckName;
  outcome: CheckOutcome;
  /** Why it failed or was skipped; null on pass. */
  reason: string | null;
  /** Evidence; amounts are decimal strings. */
  expected: unknown;
  actual: unknown;
}

/** The amounts the checks read from the chain: the ones the verdict writes, one shape for both. */
export type ChainAmounts = VerdictAmounts;

export type EvaluatedVerdict =
  | "verified"
  | "partially_verified"
  | "discrepancy"
  | "dropped"
  | "unverifiable";

/**
 * A signature the job names that no endpoint serves: `dropped` never landed (its blockhash
 * expired), `pruned` landed but the node no longer returns it. `reason` says what was seen.
 */
export interface Unserved {
  state: "dropped" | "pruned";
  reason: string;
}

export interface Evaluation {
  verdict: EvaluatedVerdict;
  checks: CheckResult[];
  amounts: ChainAmounts;
  /** For `partially_verified`: which money checks the job's own data left unproven. */
  unproven: UnprovenCode[];
  /** What this evaluation teaches the store, to pin when the verdict is written. */
  learned: {
    /** The key's credit vault, from its first lock (when nothing pinned it before). */
    creditVault: string | null;
    /** A settlement's one payee besides worker and credit vault, while the treasury is unknown. */
    treasuryCandidate: { signature: string; address: string } | null;
    /**
     * The account the lock went into, taken for escrow because no pin made it a customer's
     * credit vault (a profile with no escrow vault): a pin of it written first makes the
     * verdict stale.
     */
    escrowAccount?: string | null;
    /**
     * The vault a lock drew on for a receipt naming no key and no vault, passed because no key
     * held it: a key that holds it by the time the verdict is written makes the verdict stale.
     */
    untiedVault?: string | null;
    /**
     * The owner of the lock's credit vault (and of its escrow account), under a profile that
     * names no escrow authority and while none is learned: pinned as the escrow authority with
     * the first verdict written; one that learned another is stale.
     */
    vaultOwner?: string | null;
    /**
     * Whether a key learning `creditVault` makes keyless verdicts on it stale: not where the
     * deployment lists one credit vault, whose keyless locks pass whoever holds it.
     */
    reopensKeyless?: boolean;
  };
}

/** What the ledger knows of the job's credit vault over the job's span. */
export interface CreditsSpan {
  /** The credit vault the job's lock came from. */
  vault: string;
  /**
   * Its balance after each line from the lock through the response, oldest first: through the
   * lines the chain dated within the clocks' slack after the response's second (`headerSpanEnd`
   * in src/store/ledger-rules.ts).
   */
  balancesUnits: readonly bigint[];
  /**
   * How many of `balancesUnits`, the first ones, surely came before the response; the rest
   * may have come after it.
   */
  ordered: number;
  /**
   * Every line of the span is read (and the history listed past it): a header that matches
   * none of `balancesUnits` will match nothing.
   */
  covered: boolean;
}

/** What ties credit vaults to the customer. */
export interface Custody {
  /** The vault pinned for the job's key fingerprint (configured or learned). */
  pinned: { vault: string; source: "configured" | "learned" } | null;
  /** Vaults the deployment lists as its own (any key). */
  configured: ReadonlySet<string>;
  /** The key a vault is pinned to, if any (a learned vault belongs to one key). */
  keyOfVault?: (vault: string) => string | null;
  /**
   * The job's key fingerprint was recorded with two or more key checks: two API keys share it
   * (`key.fingerprint_unique`).
   */
  keyShared?: boolean;
  /**
   * Credit vaults the locks of the other jobs naming this job's settlement or refund drew on:
   * money a closing this job owns sends there out of escrow is a return to a customer's vault.
   */
  namerVaults?: ReadonlySet<string>;
  /**
   * The workers of the other jobs naming this job's settlement or refund: what a closing this
   * job owns pays them is worker pay, not money to a payee nobody names.
   */
  namerWorkers?: ReadonlySet<string>;
  /**
   * For each settlement or refund of this job that other jobs name too: every job naming it
   * (this one included), with its worker and its locks' facts. Each report group takes its own
   * job's part of such a transaction (`closingShares`).
   */
  closingNamers?: ReadonlyMap<string, readonly ClosingNamer[]>;
}

export interface CheckInput {
  job: ReceiptForChecks;
  profile: Profile;
  /** Finalized facts of every signature the job names, by signature, but the unserved ones. */
  transactions: ReadonlyMap<string, TransactionFacts>;
  /**
   * Signatures the job names that no endpoint serves (dropped, pruned): the checks judge the
   * transactions that landed, and each of these fails (dropped) or skips (pruned) its role's
   * `.exists`.
   */
  unserved?: ReadonlyMap<string, Unserved>;
  /**
   * For each signature the job names, the ids of jobs naming it in any role, receipt or jobs
   * API (this one included), in id order, at most `MAX_NAMED_BY` of them.
   */
  namedBy: ReadonlyMap<string, readonly string[]>;
  /** How many jobs name each signature, when more than `namedBy` lists. */
  namedByTotal?: ReadonlyMap<string, number>;
  custody?: Custody;
  /** The treasury learned from agreeing settlements, when the profile pins none. */
  learnedTreasury?: string | null;
  /** Does job `jobId` name `signature` (in any role)? Asked beyond the `namedBy` cap. */
  names?: (jobId: string, signature: string) => boolean;
  /** The ledger's balances of the lock's credit vault over the job's span, if known. */
  creditsSpan?: CreditsSpan | null;
}

/** Job ids listed per signature in the evidence of `signatures.unique`. */
export const MAX_NAMED_BY = 10;
