import type { TransactionFacts } from "../chain/transaction-facts.js";
import type { CheckOutcome } from "../db/schema.js";
import { type CheckName, checkCatalogue, type Role, type UnprovenCode } from "./check-catalogue.js";
import {
  forbiddenTokenInstructions,
  foreignChanges,
  innerInstructionsHidden,
  type LockReading,
  type Payees,
  readLock,
  readRelease,
} from "./money-movements.js";
import { type Profile, priceUnits } from "./profiles.js";

/**
 * The protocol checks (PROTOCOL.md section 3) as pure functions of a receipt, the finalized
 * facts of the transactions it names, a profile and what the store has pinned (credit vaults,
 * the learned treasury). Nothing here touches the store or the network, so every verdict can
 * be recomputed from stored evidence.
 *
 * The operator signs every byte of these transactions, so a check never takes an account for
 * what it claims to be: the credit vault is a fact of the API key, the treasury is pinned or
 * learned, and every balance change and token instruction is explained by the job's role.
 *
 * Invariant: a check whose input is missing because an earlier check failed is skipped with a
 * reason naming that check, so one fault shows up as the check it really breaks.
 */

/** Descriptions by check name (see check-catalogue.ts). */
export const checkDescriptions: Readonly<Record<CheckName, string>> = checkCatalogue;

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
  maxTokens: number | null;
  httpStatus: number | null;
  /** Fingerprint of the caller's API key: one key spends one credit vault. */
  keyFingerprint?: string | null;
  /** The credit vault the receipt's sender declares as the key's. */
  creditVault?: string | null;
  apiStatus: string | null;
  apiCreditsChargedUnits: bigint | null;
  apiEscrowTx: string | null;
  apiSettlementTx: string | null;
  apiWorker: string | null;
  apiCheckedAt: number | null;
  /** Signatures named by conflicting receipts of this job id (see `jobs.conflict_signatures`). */
  conflictSignatures?: readonly string[] | null;
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

export interface ChainAmounts {
  escrowedUnits: bigint | null;
  chargedUnits: bigint | null;
  workerPaidUnits: bigint | null;
  treasuryPaidUnits: bigint | null;
  refundedUnits: bigint | null;
  expectedChargeUnits: bigint | null;
  feesLamports: bigint | null;
}

export type EvaluatedVerdict = "verified" | "partially_verified" | "discrepancy" | "unverifiable";

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
  };
}

/** What ties credit vaults to the customer. */
export interface Custody {
  /** The vault pinned for the job's key fingerprint (configured or learned). */
  pinned: { vault: string; source: "configured" | "learned" } | null;
  /** Vaults the deployment lists as its own (any key). */
  configured: ReadonlySet<string>;
  /** The key a vault is pinned to, if any (a learned vault belongs to one key). */
  keyOfVault?: (vault: string) => string | null;
}

export interface CheckInput {
  job: ReceiptForChecks;
  profile: Profile;
  /** Finalized facts of every signature the job names, by signature. */
  transactions: ReadonlyMap<string, TransactionFacts>;
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
  const all = [
    job.escrowTx,
    job.apiEscrowTx,
    job.settlementTx,
    job.apiSettlementTx,
    ...(job.conflictSignatures ?? []),
  ];
  return [...new Set(all.filter((s): s is string => s !== null))];
}

/**
 * The one job a transaction's money is counted for in reports: the job its memos name, when
 * they name exactly one job that a receipt names; otherwise the first job (by id) naming it.
 * Every job naming a signature computes the same owner, so each movement is counted once.
 */
export function signatureOwner(
  profile: Profile,
  facts: TransactionFacts,
  namers: readonly string[],
  names?: (jobId: string, signature: string) => boolean,
): string | null {
  const memoJobs = [...new Set(parseJobMemos(profile, facts.memos).map((m) => m.jobId))];
  const memoJob = memoJobs.length === 1 ? memoJobs[0]! : null;
  // `namers` lists at most MAX_NAMED_BY jobs; the memo's job is asked about directly.
  if (memoJob !== null && (namers.includes(memoJob) || names?.(memoJob, facts.signature))) {
    return memoJob;
  }
  return [...namers].sort()[0] ?? null;
}

const pass = (name: CheckName, expected: unknown, actual: unknown): CheckResult => ({
  name,
  outcome: "pass",
  reason: null,
  expected,
  actual,
});
const fail = (
  name: CheckName,
  reason: string,
  expected: unknown,
  actual: unknown,
): CheckResult => ({ name, outcome: "fail", reason, expected, actual });
const skip = (name: CheckName, reason: string): CheckResult => ({
  name,
  outcome: "skip",
  reason,
  expected: null,
  actual: null,
});

const sum = (values: Iterable<bigint>) => {
  let total = 0n;
  for (const v of values) total += v;
  return total;
};

/** Worker shares the profile allows for this worker, in basis points. */
function allowedRates(profile: Profile, worker: string | null): number[] {
  const pinned = worker === null ? undefined : profile.payout.workerRatesBps[worker];
  return pinned === undefined ? profile.payout.ratesBps : [pinned];
}

const memoKindOf: Record<Role, MemoKind> = {
  escrow: "escrow",
  settlement: "settle",
  refund: "refund",
};

/** Collects checks and what they leave unproven. */
class Ledger {
  readonly checks: CheckResult[] = [];
  readonly unproven = new Set<UnprovenCode>();
  unverifiable: string | null = null;

  add(...checks: CheckResult[]) {
    this.checks.push(...checks);
  }
  /** A skip that leaves a money fact of this job unproven. */
  gap(name: CheckName, code: UnprovenCode, reason: string) {
    this.unproven.add(code);
    this.checks.push(skip(name, reason));
  }
  skipAll(names: readonly CheckName[], reason: string) {
    for (const name of names) this.checks.push(skip(name, reason));
  }
  outcome(name: CheckName): CheckOutcome | undefined {
    return this.checks.find((c) => c.name === name)?.outcome;
  }
  /** A later finding about an earlier check's subject replaces that check's result. */
  replace(check: CheckResult) {
    const i = this.checks.findIndex((c) => c.name === check.name);
    if (i >= 0) this.checks[i] = check;
    else this.checks.push(check);
  }
}

/** A transaction a job names, in the role it plays for it. */
interface RoleTx {
  role: Role;
  signature: string;
  facts: TransactionFacts;
  /**
   * Another job owns it, or this job names it for two steps: `signatures.unique` reports that,
   * and the transaction's own checks defer to it.
   */
  stolenBy: string | null;
}

/**
 * The checks every role shares. Returns true when the transaction can be read for money: it
 * succeeded, names this job alone, belongs to it, and carries only transfers.
 */
function roleChecks(input: CheckInput, tx: RoleTx, ledger: Ledger): boolean {
  const { job, profile } = input;
  const { role, signature, facts } = tx;
  const programId =
    role === "settlement" ? profile.programs.settlement : profile.programs.jobEscrow;
  const programName = role === "settlement" ? "settlement" : "job_escrow";
  ledger.add(
    programId === null
      ? skip(`${role}.program`, `the profile does not know the ${programName} program id`)
      : facts.programs.includes(programId)
        ? pass(`${role}.program`, programId, facts.programs)
        : fail(
            `${role}.program`,
            `the ${programName} program was not invoked`,
            programId,
            facts.programs,
          ),
    pass(`${role}.exists`, { signature }, { signature, slot: facts.slot }),
    pass(`${role}.finalized`, "finalized", "finalized"),
  );
  if (facts.succeeded) ledger.add(pass(`${role}.succeeded`, { err: null }, { err: null }));
  else
    ledger.add(
      fail(
        `${role}.succeeded`,
        "the transaction failed on chain: it paid its fee and moved no tokens",
        { err: null },
        { err: facts.err },
      ),
    );
  const later = [`${role}.memo`, `${role}.instructions`] as const;
  if (tx.stolenBy !== null) {
    ledger.skipAll(later, `${tx.stolenBy} (see signatures.unique)`);
    return false;
  }
  const wanted = `${memoPrefix(profile, role)}${job.jobId}`;
  const named = parseJobMemos(profile, facts.memos);
  const others = named.filter((m) => m.jobId !== job.jobId || m.kind !== memoKindOf[role]);
  const memoOk = facts.memos.some((m) => m.trim() === wanted) && others.length === 0;
  ledger.add(
    memoOk
      ? pass(`${role}.memo`, wanted, facts.memos)
      : fail(
          `${role}.memo`,
          others.length > 0
            ? `its memos also name ${others.map((m) => `${m.kind}:${m.jobId}`).join(", ")}: one transaction serves one job in one step`
            : `no memo names ${job.jobId}`,
          wanted,
          facts.memos,
        ),
  );
  const forbidden = forbiddenTokenInstructions(facts);
  if (forbidden.length > 0) {
    ledger.add(
      fail(
        `${role}.instructions`,
        `the transaction also ran ${[...new Set(forbidden.map((f) => f.kind))].join(", ")}`,
        { allowed: ["transfer", "transferChecked"] },
        forbidden,
      ),
    );
  } else if (innerInstructionsHidden(profile, facts)) {
    ledger.gap(
      `${role}.instructions`,
      "inner_instructions_unknown",
      "the node reported no inner instructions, and other programs were invoked",
    );
  } else {
    ledger.add(
      pass(
        `${role}.instructions`,
        { allowed: ["transfer", "transferChecked"] },
        facts.tokenInstructions.map((ix) => ix.kind),
      ),
    );
  }
  return facts.succeeded && memoOk && forbidden.length === 0;
}

function memoPrefix(profile: Profile, role: Role): string {
  return role === "escrow"
    ? profile.memo.escrowPrefix
    : role === "settlement"
      ? profile.memo.settlePrefix
      : profile.memo.refundPrefix;
}

/** The lock as the later checks use it, once the escrow checks passed. */
interface UsableLock {
  reading: LockReading;
  creditVault: string;
  escrowAccount: string;
  slot: number;
  blockTime: number | null;
}

/** Escrow checks; returns the lock when settlement and refund checks can rest on it. */
function escrowChecks(
  input: CheckInput,
  tx: RoleTx,
  ledger: Ledger,
  learned: Evaluation["learned"],
): UsableLock | null {
  const { job, profile } = input;
  const readable = roleChecks(input, tx, ledger);
  const later = ["escrow.balances", "escrow.source", "escrow.vault"] as const;
  if (!readable) {
    const reason = !tx.facts.succeeded
      ? "the escrow failed on chain (see escrow.succeeded)"
      : tx.stolenBy !== null
        ? "see signatures.unique"
        : "see escrow.memo and escrow.instructions";
    ledger.skipAll(later, reason);
    return null;
  }
  const facts = tx.facts;
  const foreign = foreignChanges(profile, facts);
  ledger.add(
    foreign.length === 0
      ? pass("escrow.balances", [], [])
      : fail("escrow.balances", "balances changed in another mint or token program", [], foreign),
  );

  const reading = readLock(profile, facts);
  // Source: the one account debited must be the key's credit vault.
  let creditVault: string | null = null;
  const sources = reading.sources;
  if (sources.length !== 1) {
    ledger.add(
      fail(
        "escrow.source",
        sources.length === 0
          ? "nothing was debited for the lock"
          : `the lock drew on ${sources.length} accounts; it must come from the key's credit vault alone`,
        { from: "the key's credit vault, alone" },
        sources,
      ),
    );
  } else {
    const source = sources[0]!.account;
    const sourceOwner = sources[0]!.owner;
    const custody = input.custody ?? { pinned: null, configured: new Set<string>() };
    const ties: { by: string; vault: string }[] = [];
    if (custody.pinned)
      ties.push({ by: `${custody.pinned.source} for the key`, vault: custody.pinned.vault });
    if (job.creditVault) ties.push({ by: "declared by the receipt", vault: job.creditVault });
    const mismatched = ties.filter((t) => t.vault !== source);
    const listed = custody.configured.size === 0 || custody.configured.has(source);
    // Every credit vault of the model is a token account of the escrow authority: a lock
    // from any other owner's account is not a customer's credits.
    const ownerOk =
      profile.escrowAuthority === null ||
      sourceOwner === null ||
      sourceOwner === profile.escrowAuthority;
    // A vault pinned to another key is that customer's: this key cannot learn it as its own.
    const otherKey =
      custody.pinned === null && job.keyFingerprint ? (custody.keyOfVault?.(source) ?? null) : null;
    const takenByOther = otherKey !== null && otherKey !== job.keyFingerprint;
    if (mismatched.length > 0 || !listed || !ownerOk || takenByOther) {
      ledger.add(
        fail(
          "escrow.source",
          mismatched.length > 0
            ? `the lock was taken from ${source}, not the key's credit vault ${mismatched[0]!.vault} (${mismatched[0]!.by})`
            : !listed
              ? `the lock was taken from ${source}, which is not one of the configured credit vaults`
              : !ownerOk
                ? `the lock was taken from ${source}, owned by ${sourceOwner}, not by the escrow authority that owns every credit vault`
                : `the lock was taken from ${source}, the credit vault of another API key (${otherKey})`,
          {
            vault:
              mismatched[0]?.vault ?? (listed ? "the key's credit vault" : [...custody.configured]),
          },
          { vault: source, owner: sourceOwner },
        ),
      );
    } else if (ties.length > 0 || custody.configured.size > 0) {
      creditVault = source;
      // A vault declared by the receipt or allowed by the deployment's list is pinned for the
      // key too, so a later lock of the key cannot come from another listed vault.
      if (custody.pinned === null && job.keyFingerprint) learned.creditVault = source;
      ledger.add(
        pass(
          "escrow.source",
          { vault: ties[0]?.vault ?? "a configured credit vault", tiedBy: ties.map((t) => t.by) },
          { vault: source },
        ),
      );
    } else if (job.keyFingerprint) {
      // The key's first lock: its vault is pinned for every later job of this key.
      creditVault = source;
      learned.creditVault = source;
      ledger.add(
        pass(
          "escrow.source",
          { vault: "the key's credit vault (learned now: this is the key's first lock)" },
          { vault: source },
        ),
      );
    } else {
      creditVault = source;
      ledger.gap(
        "escrow.source",
        "vault_untied",
        `the lock came from ${source}, but nothing ties that vault to the customer`,
      );
    }
  }

  // Vault: everything taken arrived in the escrow account, and nothing went elsewhere.
  const expected = {
    vault: reading.escrowAccount ?? "one escrow account",
    taken: reading.lock.toString(),
    paidElsewhere: [],
  };
  const actual = {
    locked: reading.lock.toString(),
    taken: reading.taken.toString(),
    paidElsewhere: reading.elsewhere,
  };
  const vaultProblem =
    reading.escrowAccount === null
      ? "the lock paid several accounts: there is no single escrow account"
      : reading.lock === 0n
        ? "nothing was locked in the escrow vault"
        : reading.elsewhere.length > 0
          ? "the lock also paid accounts other than the escrow vault"
          : reading.taken !== reading.lock
            ? "more left the credit vault than arrived in the escrow vault"
            : null;
  ledger.add(
    vaultProblem === null
      ? pass("escrow.vault", expected, actual)
      : fail("escrow.vault", vaultProblem, expected, actual),
  );
  const usable =
    creditVault !== null &&
    vaultProblem === null &&
    foreign.length === 0 &&
    ledger.outcome("escrow.source") !== "fail";
  return usable
    ? {
        reading,
        creditVault: creditVault!,
        escrowAccount: reading.escrowAccount!,
        slot: facts.slot,
        blockTime: facts.blockTime,
      }
    : null;
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

const settlementNames: readonly CheckName[] = [
  "settlement.program",
  "settlement.exists",
  "settlement.finalized",
  "settlement.succeeded",
  "settlement.memo",
  "settlement.instructions",
  ...settlementMoneyChecks,
  "settlement.single",
];

const refundNames: readonly CheckName[] = [
  "refund.program",
  "refund.exists",
  "refund.finalized",
  "refund.succeeded",
  "refund.memo",
  "refund.instructions",
  "refund.balances",
  "refund.complete",
  "refund.not_settled",
];

/** What the settlement moved, for the amounts and the jobs-API comparison. */
interface SettlementMoney {
  charge: bigint;
}

function settlementChecks(
  input: CheckInput,
  tx: RoleTx,
  settlements: RoleTx[],
  lock: UsableLock | null,
  escrowSkip: string,
  ledger: Ledger,
  learned: Evaluation["learned"],
): SettlementMoney | null {
  const { job, profile } = input;
  const readable = roleChecks(input, tx, ledger);
  const single = () => {
    const distinct = settlements.map((s) => s.signature);
    ledger.add(
      distinct.length <= 1
        ? pass("settlement.single", 1, distinct)
        : fail(
            "settlement.single",
            "the headers and the jobs API name two different settlements of this job",
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
    ledger.skipAll(settlementMoneyChecks, reason);
    single();
    return null;
  }
  const S = tx.facts;
  const treasury = profile.treasury ?? input.learnedTreasury ?? null;
  const payees: Payees = {
    creditVault: lock.creditVault,
    escrowAccount: lock.escrowAccount,
    worker: job.worker,
    treasury,
    vaultOwner: profile.escrowAuthority,
  };
  const r = readRelease(profile, S, payees);
  misdirectedReturn(lock, r.misdirected, ledger);
  const foreign = foreignChanges(profile, S);
  ledger.add(
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
    ledger.add(skip("settlement.worker_paid", noWorker));
  } else if (r.worker > 0n) {
    workerPaid = true;
    ledger.add(
      pass(
        "settlement.worker_paid",
        { worker: job.worker },
        { worker: job.worker, amount: r.worker.toString() },
      ),
    );
  } else {
    ledger.add(
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
    ledger.add(skip("settlement.split", noWorker));
  } else if (!workerPaid) {
    ledger.add(
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
    ledger.add(
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

  // Nobody but worker, treasury and the credit vault was paid. A worker who got nothing is
  // worker_paid's finding; its share paid elsewhere is the same cause, not a second one.
  if (job.worker === null) {
    ledger.add(skip("settlement.recipients", noWorker));
  } else if (!workerPaid) {
    ledger.add(
      skip(
        "settlement.recipients",
        "the receipt's worker was not paid (see settlement.worker_paid)",
      ),
    );
  } else if (r.unexplained.length > 0) {
    ledger.add(
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
    ledger.gap(
      "settlement.recipients",
      "treasury_unknown",
      `the treasury is not known yet; ${candidate.owner ?? candidate.account} took the rest of the charge and counts towards learning it`,
    );
  } else {
    ledger.add(pass("settlement.recipients", { treasury }, r.payees));
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
  ledger.add(
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

  // Ordering and time window.
  ledger.add(
    S.slot >= lock.slot
      ? pass("settlement.after_escrow", { afterSlot: lock.slot }, { slot: S.slot })
      : fail(
          "settlement.after_escrow",
          "the settlement landed before the escrow",
          { afterSlot: lock.slot },
          { slot: S.slot },
        ),
  );
  if (S.blockTime === null || lock.blockTime === null) {
    ledger.add(skip("settlement.within_window", "the node reported no block time"));
  } else {
    const elapsed = S.blockTime - lock.blockTime;
    const expected = { maxSeconds: profile.settlementWindowSeconds };
    ledger.add(
      elapsed <= profile.settlementWindowSeconds
        ? pass("settlement.within_window", expected, { seconds: elapsed })
        : fail("settlement.within_window", "the settlement came after the window", expected, {
            seconds: elapsed,
          }),
    );
  }

  // The lock covers the charge.
  ledger.add(
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
  priceChecks(input, charge, ledger);
  single();
  return { charge };
}

/**
 * `charge.matches_price`: the charge against the requested model's price. Usage above the
 * request's `max_tokens`, or a charge above the price at `max_tokens` (the default when the
 * request set none), fails whatever else is known; usage or a price that is unknown leaves the
 * charge unproven, bounded by that maximum.
 */
function priceChecks(input: CheckInput, charge: bigint, ledger: Ledger): void {
  const { job, profile } = input;
  const name = "charge.matches_price";
  if (job.model === null) {
    ledger.gap(name, "model_unknown", "the receipt does not name the model asked for");
    return;
  }
  const ceilingTokens = job.maxTokens ?? profile.defaultMaxTokens;
  const ceiling = priceUnits(profile, job.model, ceilingTokens);
  const tokens = job.completionTokens;
  if (tokens !== null && tokens > ceilingTokens) {
    ledger.add(
      fail(
        name,
        `the recorded usage (${tokens} completion tokens) exceeds the request's max_tokens (${ceilingTokens}${job.maxTokens === null ? ", the profile's default" : ""})`,
        { completionTokensAtMost: ceilingTokens },
        { completionTokens: tokens, charge: charge.toString() },
      ),
    );
    return;
  }
  if (ceiling !== null && charge > ceiling) {
    ledger.add(
      fail(
        name,
        `the charge exceeds the price of ${job.model} at ${ceilingTokens} completion tokens, the most this request could cost`,
        { chargeAtMost: ceiling.toString(), maxTokens: ceilingTokens },
        { charge: charge.toString() },
      ),
    );
    return;
  }
  if (tokens === null) {
    ledger.gap(
      name,
      "usage_unknown",
      "usage was not recorded: the charge is bounded by the lock only",
    );
    return;
  }
  const expectedCharge = priceUnits(profile, job.model, tokens);
  if (expectedCharge === null) {
    ledger.gap(
      name,
      "price_unknown",
      `the profile has no price for model ${JSON.stringify(job.model)} at ${tokens} completion tokens`,
    );
    return;
  }
  const expected = {
    model: job.model,
    completionTokens: tokens,
    charge: expectedCharge.toString(),
  };
  const actual = { charge: charge.toString() };
  ledger.add(
    charge === expectedCharge
      ? pass(name, expected, actual)
      : fail(
          name,
          "the charge differs from the requested model's price for the recorded usage",
          expected,
          actual,
        ),
  );
}

/** Remainders or refunds sent to a customer's vault other than the one the lock came from. */
function misdirectedReturn(
  lock: UsableLock,
  misdirected: { account: string; owner: string | null; amount: string }[],
  ledger: Ledger,
) {
  if (misdirected.length === 0) return;
  ledger.replace(
    fail(
      "escrow.source",
      `money of this lock went back to ${misdirected.map((m) => m.account).join(", ")}, not to the credit vault it came from`,
      { returnedTo: lock.creditVault },
      { returnedTo: misdirected },
    ),
  );
}

function refundChecks(
  input: CheckInput,
  tx: RoleTx,
  settledToo: RoleTx[],
  lock: UsableLock | null,
  escrowSkip: string,
  ledger: Ledger,
) {
  const { profile } = input;
  const readable = roleChecks(input, tx, ledger);
  if (!readable || lock === null) {
    const reason = !tx.facts.succeeded
      ? "the refund failed on chain (see refund.succeeded)"
      : tx.stolenBy !== null
        ? "see signatures.unique"
        : !readable
          ? "see refund.memo and refund.instructions"
          : escrowSkip;
    ledger.skipAll(["refund.balances", "refund.complete"], reason);
  } else {
    const r = readRelease(profile, tx.facts, {
      creditVault: lock.creditVault,
      escrowAccount: lock.escrowAccount,
      worker: null,
      treasury: null,
      vaultOwner: profile.escrowAuthority,
    });
    misdirectedReturn(lock, r.misdirected, ledger);
    const foreign = foreignChanges(profile, tx.facts);
    ledger.add(
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
    ledger.add(
      ok
        ? pass("refund.complete", expected, actual)
        : fail(
            "refund.complete",
            "the whole lock did not return to the credit vault it came from",
            expected,
            actual,
          ),
    );
  }
  ledger.add(
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

/** Signatures this job names that another job's memo (or an earlier role) claims. */
function stolenSignatures(input: CheckInput): Map<string, string> {
  const { job, profile, transactions, namedBy } = input;
  const stolen = new Map<string, string>();
  for (const signature of jobSignatures(job)) {
    const names = namedBy.get(signature) ?? [job.jobId];
    if (names.every((id) => id === job.jobId)) continue;
    const facts = transactions.get(signature);
    const owners = facts
      ? [...new Set(parseJobMemos(profile, facts.memos).map((m) => m.jobId))]
      : [];
    if (!owners.includes(job.jobId)) {
      const owner = owners[0] ?? signatureOwnerAmong(names, job.jobId);
      if (owner !== null) stolen.set(signature, owner);
    }
  }
  return stolen;
}

/** With no memo to decide, the first job by id owns a shared signature. */
function signatureOwnerAmong(names: readonly string[], self: string): string | null {
  const first = [...names].sort()[0] ?? self;
  return first === self ? null : first;
}

function uniqueSignatures(
  input: CheckInput,
  stolen: Map<string, string>,
  roles: Map<string, Role[]>,
): CheckResult {
  const { namedBy, namedByTotal } = input;
  const findings: unknown[] = [];
  for (const [signature, owner] of stolen) {
    const names = namedBy.get(signature) ?? [];
    findings.push({
      signature,
      owner,
      namedBy: names,
      jobsNaming: namedByTotal?.get(signature) ?? names.length,
    });
  }
  for (const [signature, played] of roles) {
    if (played.length > 1) findings.push({ signature, roles: played });
  }
  if (findings.length === 0)
    return pass("signatures.unique", "each signature serves only this job", []);
  const reason =
    stolen.size > 0
      ? `a signature of another job is named by this receipt (replayed receipt): ${[...stolen.values()][0]} owns it`
      : "one signature is named for two steps of this job";
  return fail("signatures.unique", reason, [], findings);
}

/** What the jobs API said agrees with the recorded headers. */
function jobsApiMatchesReceipt(job: ReceiptForChecks): CheckResult {
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

/** What the jobs API said agrees with the chain: status, and credits charged. */
function jobsApiMatchesChain(
  job: ReceiptForChecks,
  outcome: { kind: "settled" | "refunded" | "none"; charge: bigint | null },
): CheckResult {
  const name = "jobs_api.matches_chain";
  if (job.apiCheckedAt === null) return skip(name, "the jobs API was not consulted");
  const status = job.apiStatus;
  if (status !== "settled" && status !== "refunded") {
    return skip(name, `the jobs API's answer (${status ?? "no status"}) is not final`);
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
  const ledger = new Ledger();
  const learned: Evaluation["learned"] = { creditVault: null, treasuryCandidate: null };
  const stolen = stolenSignatures(input);
  // Transactions whose own checks defer to signatures.unique: another job's, or named by this
  // job for two steps.
  const deferred = new Map(
    [...stolen].map(([sig, owner]) => [sig, `the transaction belongs to ${owner}`]),
  );
  const escrowNamed = job.escrowTx ?? job.apiEscrowTx;
  for (const s of [job.settlementTx, job.apiSettlementTx]) {
    if (s !== null && s === escrowNamed && !deferred.has(s)) {
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

  // Escrow.
  const escrowSig = job.escrowTx ?? job.apiEscrowTx;
  const escrow = escrowSig === null ? null : txOf("escrow", escrowSig);
  let lock: UsableLock | null = null;
  if (escrow === null) {
    ledger.unverifiable = "the receipt names no escrow transaction";
    ledger.add(skip("escrow.exists", ledger.unverifiable));
  } else {
    played(escrow.signature, "escrow");
    lock = escrowChecks(input, escrow, ledger, learned);
  }
  const escrowSkip =
    escrow === null
      ? "no escrow transaction"
      : "the escrow is not a sound lock for this job (see escrow.*)";

  // Closing transactions: settlement or refund, told apart by this job's memo.
  const closings = [...new Set([job.settlementTx, job.apiSettlementTx])]
    .filter((s): s is string => s !== null && s !== escrowSig)
    .map((s) => txOf("settlement", s))
    .filter((c): c is RoleTx => c !== null);
  const kindsFor = (facts: TransactionFacts) =>
    parseJobMemos(profile, facts.memos)
      .filter((m) => m.jobId === job.jobId)
      .map((m) => m.kind);
  // What conflicting receipts of this job id name: more locks and closings of the same job.
  const conflicting = (job.conflictSignatures ?? [])
    .filter((s) => s !== escrowSig && !closings.some((c) => c.signature === s))
    .map((s) => txOf("settlement", s))
    .filter((c): c is RoleTx => c !== null);
  const extraLocks = conflicting
    .filter((c) => kindsFor(c.facts).includes("escrow"))
    .map((c) => ({ ...c, role: "escrow" as const }));
  closings.push(
    ...conflicting.filter((c) => kindsFor(c.facts).some((k) => k === "settle" || k === "refund")),
  );
  const settlements = closings.filter((c) => kindsFor(c.facts).includes("settle"));
  const refunds = closings
    .filter((c) => kindsFor(c.facts).includes("refund"))
    .map((c) => ({ ...c, role: "refund" as const }));
  // A signature named as escrow and as a closing step serves two roles of one job.
  for (const s of [job.settlementTx, job.apiSettlementTx]) {
    if (s !== null && s === escrowSig) played(s, "settlement");
  }
  // A 504 answered the caller "timed out, credits refunded": whatever the chain shows, the
  // job must end refunded, and a settlement of it charges for an answer never given.
  const isRefund =
    refunds.length > 0 ||
    job.httpStatus === 504 ||
    (settlements.length === 0 && job.apiStatus === "refunded");

  let outcome: { kind: "settled" | "refunded" | "none"; charge: bigint | null } = {
    kind: "none",
    charge: null,
  };
  if (isRefund) {
    ledger.skipAll(settlementNames, "the job was refunded, not settled");
    ledger.add(skip("charge.model", "the job was refunded, not settled"));
    const refund =
      refunds[0] ??
      (closings[0] && settlements.length === 0
        ? { ...closings[0], role: "refund" as const }
        : undefined);
    if (refund === undefined && settlements.length > 0) {
      ledger.skipAll(
        refundNames.filter((n) => n !== "refund.not_settled"),
        "the job was settled instead of refunded (see refund.not_settled)",
      );
      ledger.add(
        fail(
          "refund.not_settled",
          "the caller was answered 504 (timed out, credits refunded) but the job was settled",
          { refunded: true },
          settlements.map((s) => s.signature),
        ),
      );
      outcome = { kind: "settled", charge: null };
    } else if (refund === undefined) {
      const reason = "no refund transaction is known for this refunded job";
      ledger.unverifiable ??= reason;
      ledger.skipAll(refundNames, reason);
    } else {
      played(refund.signature, "refund");
      refundChecks(input, refund, settlements, lock, escrowSkip, ledger);
      outcome = { kind: "refunded", charge: 0n };
    }
  } else {
    ledger.skipAll(refundNames, "the job was settled, not refunded");
    const responseModel = job.responseModel ?? null;
    ledger.add(
      job.model === null || responseModel === null
        ? skip(
            "charge.model",
            "the receipt does not record both the requested and the answered model",
          )
        : responseModel === job.model
          ? pass("charge.model", job.model, responseModel)
          : fail(
              "charge.model",
              `the caller asked for ${job.model} but the response names ${responseModel}`,
              job.model,
              responseModel,
            ),
    );
    const settlement =
      settlements.find((s) => s.signature === job.settlementTx) ?? settlements[0] ?? closings[0];
    if (settlement === undefined) {
      if (job.apiStatus === "settled") {
        ledger.add(
          fail(
            "settlement.exists",
            "the jobs API says settled but names no settlement transaction",
            { settlementTx: "a signature" },
            { apiStatus: job.apiStatus, settlementTx: null },
          ),
        );
      } else {
        const reason = "the receipt names no settlement transaction";
        ledger.unverifiable ??= reason;
        ledger.add(skip("settlement.exists", reason));
      }
      ledger.skipAll(
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
        ledger,
        learned,
      );
      outcome = { kind: "settled", charge: money?.charge ?? null };
    }
  }

  ledger.add(uniqueSignatures(input, stolen, roles));
  ledger.add(jobsApiMatchesReceipt(job));
  ledger.add(jobsApiMatchesChain(job, outcome));

  if (job.worker === null && ledger.outcome("settlement.exists") === "pass") {
    ledger.unverifiable ??= "neither the receipt nor the jobs API names the worker";
  }
  const failed = ledger.checks.some((c) => c.outcome === "fail");
  const verdict: EvaluatedVerdict = failed
    ? "discrepancy"
    : ledger.unverifiable !== null
      ? "unverifiable"
      : ledger.unproven.size > 0
        ? "partially_verified"
        : "verified";
  if (verdict !== "partially_verified" && verdict !== "verified") {
    learned.creditVault = null;
    learned.treasuryCandidate = null;
  }
  return {
    verdict,
    checks: ledger.checks,
    amounts: amountsOf(input, escrow, extraLocks, closings, refunds, lock),
    unproven: verdict === "partially_verified" ? [...ledger.unproven] : [],
    learned,
  };
}

/**
 * The money of the transactions this job owns (see `signatureOwner`): a replayed receipt owns
 * nothing it replays, so every on-chain movement is counted for exactly one job.
 */
function amountsOf(
  input: CheckInput,
  escrow: RoleTx | null,
  extraLocks: RoleTx[],
  closings: RoleTx[],
  refunds: RoleTx[],
  lock: UsableLock | null,
): ChainAmounts {
  const { job, profile, namedBy } = input;
  const owns = (tx: RoleTx) =>
    signatureOwner(profile, tx.facts, namedBy.get(tx.signature) ?? [job.jobId], input.names) ===
    job.jobId;
  const amounts: ChainAmounts = {
    escrowedUnits: null,
    chargedUnits: null,
    workerPaidUnits: null,
    treasuryPaidUnits: null,
    refundedUnits: null,
    expectedChargeUnits:
      job.completionTokens === null ? null : priceUnits(profile, job.model, job.completionTokens),
    feesLamports: null,
  };
  // A second lock named only by the jobs API moved the customer's money too (its mismatch is
  // jobs_api.matches_receipt's finding): it is counted like the first.
  const apiLockFacts =
    job.apiEscrowTx !== null && job.apiEscrowTx !== escrow?.signature
      ? input.transactions.get(job.apiEscrowTx)
      : undefined;
  const locks = [
    escrow,
    apiLockFacts
      ? {
          role: "escrow" as const,
          signature: job.apiEscrowTx!,
          facts: apiLockFacts,
          stolenBy: null,
        }
      : null,
    ...extraLocks,
  ].filter((t): t is RoleTx => t !== null);
  const owned = [...locks, ...closings].filter((t) => owns(t));
  const known = [...locks, ...closings];
  if (known.length > 0) amounts.feesLamports = sum(owned.map((t) => t.facts.fee));
  if (locks.length > 0) {
    amounts.escrowedUnits = sum(
      locks.map((l) => (owns(l) && l.facts.succeeded ? readLock(profile, l.facts).lock : 0n)),
    );
  }
  if (closings.length === 0) return amounts;
  const creditVault =
    lock?.creditVault ??
    (escrow ? readLock(profile, escrow.facts).sources[0]?.account : undefined) ??
    job.creditVault ??
    "";
  const escrowAccount =
    lock?.escrowAccount ??
    (escrow ? readLock(profile, escrow.facts).escrowAccount : null) ??
    profile.escrowVault ??
    "";
  const treasury = profile.treasury ?? input.learnedTreasury ?? null;
  const refundSigs = new Set(refunds.map((r) => r.signature));
  let worker = 0n;
  let treasuryPaid = 0n;
  let charged = 0n;
  let returned = 0n;
  for (const c of closings) {
    if (!owns(c) || !c.facts.succeeded) continue;
    const r = readRelease(profile, c.facts, {
      creditVault,
      escrowAccount,
      worker: refundSigs.has(c.signature) ? null : job.worker,
      treasury,
      vaultOwner: profile.escrowAuthority,
    });
    worker += r.worker;
    treasuryPaid += r.treasury;
    returned += r.returned;
    charged += r.worker + r.treasury + r.unexplainedTotal;
  }
  amounts.workerPaidUnits = worker;
  amounts.treasuryPaidUnits = treasuryPaid;
  amounts.chargedUnits = charged;
  amounts.refundedUnits = returned;
  return amounts;
}
