import { describeDisagreement, type RpcDisagreement } from "../chain/quorum.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import type { ReceiptSource, Verdict } from "../db/schema.js";
import { isStorableUnits, MAX_STORED_UNITS } from "../money.js";
import { backoff } from "../retry.js";
import { isFinalAnswer, jobStatusWord } from "../store/jobs-api-rules.js";
import type { EscrowUnread } from "../store/ledger.js";
import type { SignatureRow } from "../store/signatures.js";
import { creditsHeaderAwaitsLedger } from "./checks/credits.js";
import {
  type CheckResult,
  type CreditsSpan,
  type Custody,
  type Evaluation,
  evaluateJob,
  jobSignatures,
  type ReceiptForChecks,
  type Unserved,
} from "./checks.js";
import {
  coverWaitUntil,
  ESCROW_COVER_RECHECK_MS,
  type EscrowCoverView,
  type EscrowCoverWait,
  escrowCoverWait,
  overdueMessage,
} from "./escrow-cover.js";
import type { Profile } from "./profiles.js";

/**
 * What the verifier does with one claimed job, given what is known of its signatures: a pure
 * function, so every rule of "when is a job final, and as what" is here and testable without
 * a store or a node. Signatures no endpoint serves are set aside: one that never landed before
 * its blockhash expired (dropped), and one "not found" `maxFetchMisses` times over
 * `fetchMissSpanMs` after it was finalized (pruned). Then, over the others, in order:
 * - endpoints of a quorum that disagree: `rpc_disagreement`, retried, every answer as evidence;
 * - RPC trouble this round: `error`, retried with backoff;
 * - a streamed job whose settlement the backfill is still looking for: `awaiting_finality`;
 * - a transaction not finalized and fetched yet: `awaiting_finality`, due on the poll grid when
 *   it should be final by the cluster's pace (or at the next poll, or backed off while unseen);
 * - otherwise every check runs (checks.ts) on the transactions that landed and decides, and
 *   their money is counted; a clean verdict (verified, partially verified) waits as
 *   `awaiting_finality` while the jobs API is being asked about the job (`jobsApiWaitMs`).
 *   Given `escrow`, a job whose transactions are all in waits, unjudged, until the escrow scan
 *   has read past them (escrow-cover.ts).
 *   A signature set aside fails its role's `.exists` (dropped) or skips
 *   it (pruned): a failing check among the landed transactions makes the job a `discrepancy`;
 *   else one that never landed makes it `dropped`, one pruned `unverifiable`. An amount the
 *   store cannot hold makes the job `unverifiable` (a finding still decides it), its amounts
 *   not written.
 */

type Commitment = "processed" | "confirmed" | "finalized";

/**
 * What deciding a job reads before it knows whether the job is judged now (`decideWaiting`): the
 * signatures it names, the backfill's and the jobs API's word on its settlement, and the queue
 * columns the timing and the verdict write use. A claim returns this much of a job.
 */
export interface WaitingJob
  extends Pick<
    DecideJob,
    | "jobId"
    | "escrowTx"
    | "settlementTx"
    | "apiEscrowTx"
    | "apiSettlementTx"
    | "conflictSignatures"
    | "apiStatus"
    | "keyFingerprint"
    | "verdictAt"
    | "verifyAttempts"
    | "backfillState"
    | "backfillNextAt"
  > {
  verdict?: Verdict;
}

/** The job as claimed: what the checks read, and the queue columns the timing uses. */
export interface DecideJob extends ReceiptForChecks {
  verdictAt: number | null;
  verifyAttempts: number;
  backfillState: "pending" | "done" | "gave_up" | null;
  backfillNextAt: number | null;
  /** Who recorded the job: the proxy asks the jobs API about every job it records. */
  source: ReceiptSource;
  /** When the job was first recorded (ms since epoch). */
  recordedAt: number;
}

/** What the round knows of the signatures its jobs name. */
export interface SignatureView {
  /** The stored row of a signature (its state, commitment and misses). */
  row(
    signature: string,
  ):
    | (Pick<SignatureRow, "state" | "commitment" | "notFoundSlot" | "notFoundSince"> &
        Partial<Pick<SignatureRow, "notFoundCount">>)
    | undefined;
  /** The finalized transaction's facts, once fetched. */
  facts(signature: string): TransactionFacts | undefined;
  /** RPC trouble of this round, by signature. */
  trouble: ReadonlyMap<string, string>;
  /** Quorum endpoints that disagreed this round, by signature. */
  disagreements: ReadonlyMap<string, RpcDisagreement>;
  /**
   * When each landed signature polled this round should be final (ms), from the pace of the
   * cluster's finalized slot; absent when the pace is not known yet.
   */
  finalityDue?: ReadonlyMap<string, number>;
  /**
   * When each never-seen signature polled this round may first be dropped (ms): the finalized
   * slot past its first miss by `dropAfterSlots`, by the pace of the finalized slot.
   */
  dropDue?: ReadonlyMap<string, number>;
  /**
   * What a drop let through after its hold rests on, by signature (an endpoint that could not
   * be asked, one alone showing a status it backs with nothing signed): said in its reason.
   */
  dropNotes?: ReadonlyMap<string, string>;
  /** Jobs naming each signature (at most MAX_NAMED_BY ids) and how many there are. */
  named: ReadonlyMap<string, readonly string[]>;
  namedTotal: ReadonlyMap<string, number>;
  /** Does job `jobId` name `signature` (any role)? Asked beyond the `named` list. */
  names?: (jobId: string, signature: string) => boolean;
}

/** The store's pins as the job's checks see them. */
export interface CustodyView {
  custody: Custody;
  /** The treasury learned from agreeing settlements, when the profile pins none. */
  learnedTreasury: string | null;
  /**
   * The escrow authority learned from the first lock written, when the profile names none:
   * the job is judged as under a profile naming it (every credit vault and escrow account
   * owned by it, and spent by it alone).
   */
  learnedEscrowAuthority?: string | null;
}

/** When to look again. */
export interface DecideTiming {
  now: number;
  /** Status poll interval; jobs waiting on finality are due on its grid. */
  pollIntervalMs: number;
  /** First retry delay after RPC trouble; doubles per attempt up to `maxBackoffMs`. */
  errorBackoffMs: number;
  maxBackoffMs: number;
  /** How soon to look again at a job waiting for the settlement backfill. */
  backfillWaitMs: number;
  /**
   * How long after its recording a job the settlement backfill is asking about waits for the
   * jobs API's answer before a clean verdict is given without it (0: never waits).
   */
  jobsApiWaitMs?: number;
  /** The same for a job the proxy recorded and asks about itself (0: never waits). */
  proxyJobsApiWaitMs?: number;
  /** Jitter source. Default `Math.random`. */
  random?: () => number;
  /**
   * The round polls the never-seen signatures of a job left waiting itself, between the job's
   * looks (`Decision.watchAt`), and sends the job back at once when one shows up: the job's own
   * next look is then put off to when its signatures may be dropped (by the pace of the
   * finalized slot), not claimed, written and decided again at every poll that learns nothing.
   */
  watchesUnseen?: boolean;
}

export interface Decision<J extends WaitingJob = DecideJob> {
  job: J;
  verdict: Verdict;
  nextVerifyAt: number;
  lastError: string | null;
  commitment: Commitment | null;
  evaluation: Evaluation | null;
  /** Checks written for a verdict reached without an evaluation (endpoints that disagree). */
  checks: CheckResult[] | null;
  /**
   * A verdict held back until the escrow scan, or the ledger, has read past the job
   * (escrow-cover.ts).
   */
  escrowWait?: EscrowCoverWait;
  /**
   * The credit vault a clean evaluation learned, pinned with a verdict held for the ledger's
   * read of it: the ledger reads pinned vaults, so without the pin it would never come.
   */
  pins?: Evaluation["learned"];
  /**
   * With `watchesUnseen`: when the job's never-seen signatures are to be polled next, before
   * `nextVerifyAt` (the round polls them, and makes the job due if one is seen).
   */
  watchAt?: number;
}

/**
 * How far off the next look at a never-seen signature is, in multiples of how long it has been
 * unseen (see `decide`).
 */
const UNSEEN_SPACING = 3;

/**
 * The furthest off a job whose never-seen signatures the round watches is looked at again, in
 * longest backoffs (`watchesUnseen`).
 */
const UNSEEN_LOOK_MAX = 3;

const commitmentRank: Record<Commitment, number> = { processed: 0, confirmed: 1, finalized: 2 };

/**
 * Decides one job. `credits`: the ledger's balances of the job's credit vault from its lock
 * through its response (read before, see `creditSpans` in src/store/ledger.ts), for
 * `credits.header`; null when the vault is not known. `escrow`: how far the escrow scan has
 * read, which the job's checks wait for (escrow-cover.ts); null where no scan runs.
 * `escrowUnread`: the escrow scan's entries under the job's memo whose transaction no endpoint
 * served (`escrow_pending.unread`, read wherever a scan ran): one may be a second payout out of
 * escrow, so the job is not judged while one is held. Endpoints that disagreed on one make the
 * job `rpc_disagreement`; one not served makes it wait, as for the scan, then `error`, retried
 * (never `verified` on a payout nobody read).
 */
export function decide<J extends DecideJob>(
  job: J,
  signatures: SignatureView,
  profile: Profile,
  custody: CustodyView,
  timing: DecideTiming,
  credits: CreditsSpan | null = null,
  escrow: EscrowCoverView | null = null,
  escrowUnread: readonly EscrowUnread[] = [],
): Decision<J> {
  const judged = judgeWaiting(job, signatures, profile, timing);
  if ("verdict" in judged) return judged;
  const { commitment, unserved, served } = judged;
  const t = timing.now;
  const base = { job, evaluation: null, checks: null, lastError: null };
  const sigs = jobSignatures(job);

  const transactions = new Map<string, TransactionFacts>();
  for (const s of served) transactions.set(s, signatures.facts(s)!);
  if (escrowUnread.length > 0) {
    const disputed = escrowUnread.flatMap((e) =>
      e.disagreement === null ? [] : [{ signature: e.signature, disagreement: e.disagreement }],
    );
    const retryAt = t + retryDelayOf(timing, job.verifyAttempts, timing.errorBackoffMs);
    if (disputed.length > 0) {
      const check = quorumCheck("settlement", disputed);
      return {
        ...base,
        verdict: "rpc_disagreement",
        nextVerifyAt: retryAt,
        lastError: `escrow paid out under this job's memo in a transaction the endpoints disagree on: ${check.reason}`,
        commitment,
        checks: [check],
      };
    }
    // Not served yet is what a node a little behind its listing says: the job waits as it
    // does for the scan, then is RPC trouble, retried, until a scan reads the transaction.
    const until = coverWaitUntil(job, transactions);
    if (t < until) {
      const recheckMs = escrow?.recheckMs ?? ESCROW_COVER_RECHECK_MS;
      return {
        ...base,
        verdict: "awaiting_finality",
        nextVerifyAt: Math.min(until, t + recheckMs),
        commitment,
        escrowWait: { slot: -1, until, pending: true },
      };
    }
    const named = escrowUnread.map((e) => `${e.signature} (${e.reason})`).join("; ");
    return {
      ...base,
      verdict: "error",
      nextVerifyAt: retryAt,
      lastError: `the escrow vault's transaction listed under this job's memo was not read, and may pay out of escrow: ${named}; judged once it is`,
      commitment,
    };
  }
  const escrowWait =
    escrow !== null && unserved.size === 0 ? escrowCoverWait(job, transactions, escrow, t) : null;
  if (escrowWait !== null) {
    // A second payout out of escrow in the same breath as the job's last step is found by the
    // scan's next pass: verified now, the job would be taken back seconds later. Its checks
    // run once the scan has read past it (one evaluation a job, not two; a failing check shows
    // that much later too).
    const recheckMs = escrow?.recheckMs ?? ESCROW_COVER_RECHECK_MS;
    const { overdue } = escrowWait;
    if (overdue === undefined) {
      const nextVerifyAt = Math.min(escrowWait.until, t + recheckMs);
      return { ...base, verdict: "awaiting_finality", nextVerifyAt, commitment, escrowWait };
    }
    if (overdue.coveredSlot !== null && overdue.coveredSlot >= escrowWait.slot) {
      // Read past, its entries still held: the next completed scan judges them.
      const wait = { ...escrowWait, until: t + recheckMs };
      return {
        ...base,
        verdict: "awaiting_finality",
        nextVerifyAt: t + recheckMs,
        commitment,
        escrowWait: wait,
      };
    }
    return {
      ...base,
      verdict: "error",
      nextVerifyAt: t + retryDelayOf(timing, job.verifyAttempts, timing.errorBackoffMs),
      lastError: overdueMessage(escrowWait),
      commitment,
    };
  }
  const learnedAuthority =
    profile.escrowAuthority === null ? (custody.learnedEscrowAuthority ?? null) : null;
  const evaluation = evaluateJob({
    job,
    profile:
      learnedAuthority === null ? profile : { ...profile, escrowAuthority: learnedAuthority },
    transactions,
    unserved,
    namedBy: signatures.named,
    namedByTotal: signatures.namedTotal,
    custody: custody.custody,
    learnedTreasury: custody.learnedTreasury,
    creditsSpan: credits,
    ...(signatures.names ? { names: signatures.names } : {}),
  });
  const decided = {
    ...base,
    nextVerifyAt: t,
    commitment: unserved.size > 0 ? commitment : sigs.length > 0 ? ("finalized" as const) : null,
  };
  const answerBy = jobsApiAnswerBy(job, timing);
  if (answerBy !== null && t < answerBy && isClean(evaluation.verdict)) {
    // The answer may name a second settlement the receipt left out: a clean verdict given
    // now could be taken back seconds later, after a backend read it. The answer's write
    // sends the job back to the verifier as soon as it comes.
    return { ...base, verdict: "awaiting_finality", nextVerifyAt: answerBy, commitment };
  }
  const vault = credits?.vault;
  if (
    escrow !== null &&
    vault !== undefined &&
    isClean(evaluation.verdict) &&
    creditsHeaderAwaitsLedger(job, credits) &&
    (custody.custody.pinned?.vault === vault ||
      custody.custody.configured.has(vault) ||
      evaluation.learned.creditVault === vault)
  ) {
    // The ledger, running beside, has not read the credit vault past the response: the header
    // may match no balance once it has (a discrepancy), so a clean verdict now could be taken
    // back a round later.
    const until = coverWaitUntil(job, transactions);
    if (t < until) {
      const recheckMs = escrow.recheckMs ?? ESCROW_COVER_RECHECK_MS;
      return {
        ...base,
        verdict: "awaiting_finality",
        nextVerifyAt: Math.min(until, t + recheckMs),
        commitment,
        escrowWait: { slot: -1, until, pending: false, vault },
        pins: { creditVault: evaluation.learned.creditVault, treasuryCandidate: null },
      };
    }
  }
  const unstorable = unstorableAmounts(evaluation.amounts);
  if (unstorable.length === 0) return { ...decided, verdict: evaluation.verdict, evaluation };
  // An amount the store cannot hold (a mint whose authority minted past 2^63, say) would fail
  // the whole batch's write, round after round, and no job beside it would ever be decided.
  // The job is decided on its own instead: its checks are kept as evidence (amounts there are
  // decimal strings), its amounts are not written, and it is never `verified`; a failed check
  // still makes it a discrepancy.
  const storable: CheckResult = {
    name: "amounts.storable",
    outcome: "skip",
    reason: `${unstorable.map(([name, units]) => `${name} ${units}`).join(", ")}: beyond ${MAX_STORED_UNITS}, the most the store holds; the job's amounts are not written`,
    expected: { maxUnits: MAX_STORED_UNITS.toString() },
    actual: Object.fromEntries(unstorable.map(([name, units]) => [name, units.toString()])),
  };
  const verdict =
    evaluation.verdict === "discrepancy" || evaluation.verdict === "dropped"
      ? evaluation.verdict
      : "unverifiable";
  return {
    ...decided,
    verdict,
    evaluation: {
      ...evaluation,
      verdict,
      checks: [...evaluation.checks, storable],
      amounts: {
        escrowedUnits: null,
        chargedUnits: null,
        workerPaidUnits: null,
        treasuryPaidUnits: null,
        refundedUnits: null,
        expectedChargeUnits: null,
        feesLamports: null,
        escrowPaidUnits: null,
        sharedReturnUnits: null,
      },
      unproven: verdict === "discrepancy" ? evaluation.unproven : [],
    },
  };
}

/**
 * The decision for a job that is not judged now: endpoints that disagree, RPC trouble, a
 * settlement the backfill is still looking for, or a transaction not finalized and fetched
 * yet. Null when every transaction the job waits for is in: its checks run (`decide`), on the
 * whole job row.
 */
export function decideWaiting<J extends WaitingJob>(
  job: J,
  signatures: SignatureView,
  profile: Profile,
  timing: DecideTiming,
): Decision<J> | null {
  const judged = judgeWaiting(job, signatures, profile, timing);
  return "verdict" in judged ? judged : null;
}

/** Jitter spreads retries of many jobs so they do not hit a recovering node together. */
function retryDelayOf(timing: DecideTiming, attempt: number, baseMs: number): number {
  return Math.round(
    backoff(attempt, {
      baseMs,
      maxMs: timing.maxBackoffMs,
      jitter: [0.75, 1.25],
      random: timing.random,
    }),
  );
}

/**
 * `<role>.rpc_quorum`: the endpoints disagreed on these transactions of the role. One check a
 * role: two of a role's transactions disputed (a settlement the header names and another the
 * jobs API names) were two checks of one name, and the verdict's write failed on the name (the
 * job stayed `error`, never `rpc_disagreement`).
 */
function quorumCheck(
  role: "escrow" | "settlement",
  each: readonly { signature: string; disagreement: RpcDisagreement }[],
): CheckResult {
  const [first] = each;
  if (each.length === 1 && first) {
    const d = first.disagreement;
    return {
      name: `${role}.rpc_quorum`,
      outcome: "skip",
      reason: describeDisagreement(d),
      expected: { quorum: d.quorum, method: d.method, signature: first.signature },
      actual: { answers: d.answers },
    };
  }
  return {
    name: `${role}.rpc_quorum`,
    outcome: "skip",
    reason: each.map((e) => `${e.signature}: ${describeDisagreement(e.disagreement)}`).join("; "),
    expected: each.map((e) => ({
      quorum: e.disagreement.quorum,
      method: e.disagreement.method,
      signature: e.signature,
    })),
    actual: each.map((e) => ({ signature: e.signature, answers: e.disagreement.answers })),
  };
}

/** Where a job's signatures stand: their lowest commitment, those no endpoint serves, the rest. */
interface Standing {
  commitment: Commitment | null;
  unserved: Map<string, Unserved>;
  served: string[];
}

/** `decideWaiting`'s decision, or, for a job judged now, where its signatures stand. */
function judgeWaiting<J extends WaitingJob>(
  job: J,
  signatures: SignatureView,
  profile: Profile,
  timing: DecideTiming,
): Decision<J> | Standing {
  const t = timing.now;

  const sigs = jobSignatures(job);
  const base = { job, evaluation: null, checks: null, lastError: null };
  const row = (s: string) => signatures.row(s);
  const roleOf = (sig: string): "escrow" | "settlement" =>
    sig === job.escrowTx || sig === job.apiEscrowTx ? "escrow" : "settlement";
  const retryDelay = (attempt: number, baseMs: number) => retryDelayOf(timing, attempt, baseMs);

  const commitments = sigs.map((s) => row(s)?.commitment ?? null);
  const commitment =
    commitments.length === 0 || commitments.includes(null)
      ? null
      : commitments.reduce((a, b) => (commitmentRank[a!] <= commitmentRank[b!] ? a : b));

  // Signatures no endpoint serves are judged by the checks as missing; the job waits only for
  // the others.
  const unserved = new Map<string, Unserved>();
  for (const s of sigs) {
    const r = row(s);
    if (r?.state === "dropped") {
      unserved.set(s, {
        state: "dropped",
        reason: `never landed: still unknown ${profile.dropAfterSlots} slots after slot ${r.notFoundSlot} (history searched); its blockhash has expired${
          signatures.dropNotes?.has(s) ? `; ${signatures.dropNotes.get(s)}` : ""
        }`,
      });
    } else if (r?.state === "pruned") {
      unserved.set(s, { state: "pruned", reason: prunedReason(r, t) });
    }
  }
  const served = sigs.filter((s) => !unserved.has(s));
  // Endpoints that disagree say nothing about the job: it waits, with every answer as evidence.
  const disputed = served.filter((s) => signatures.disagreements.has(s));
  if (disputed.length > 0) {
    const byRole = new Map<"escrow" | "settlement", string[]>();
    for (const s of disputed) byRole.set(roleOf(s), [...(byRole.get(roleOf(s)) ?? []), s]);
    const checks = [...byRole].map(([role, disputedOfRole]) =>
      quorumCheck(
        role,
        disputedOfRole.map((s) => ({
          signature: s,
          disagreement: signatures.disagreements.get(s)!,
        })),
      ),
    );
    return {
      ...base,
      verdict: "rpc_disagreement",
      nextVerifyAt: t + retryDelay(job.verifyAttempts, timing.errorBackoffMs),
      lastError: checks.map((c) => c.reason).join("; "),
      commitment,
      checks,
    };
  }
  const troubled = served.filter((s) => signatures.trouble.has(s));
  if (troubled.length > 0) {
    return {
      ...base,
      verdict: "error",
      nextVerifyAt: t + retryDelay(job.verifyAttempts, timing.errorBackoffMs),
      lastError: troubled.map((s) => signatures.trouble.get(s)).join("; "),
      commitment,
    };
  }

  // A streamed job's settlement comes from the backfill: wait for it unless it is over, or
  // the lock is older than the protocol lets a job go unsettled (its window, plus the skew
  // allowed a receipt's clock). Past that the job is judged on what is known: a lock nobody
  // closes is never "waiting" (the backfill asks for hours), and a nightly run must end. A
  // settlement the backfill brings later sends the job back to the verifier.
  const hasClosing = job.settlementTx !== null || job.apiSettlementTx !== null;
  const closeBy = lockCloseBy(job, signatures, profile);
  if (
    !hasClosing &&
    job.backfillState === "pending" &&
    jobStatusWord(job.apiStatus) !== "settled" &&
    (closeBy === null || t < closeBy)
  ) {
    const next = Math.max(t + timing.backfillWaitMs, job.backfillNextAt ?? 0);
    return {
      ...base,
      verdict: "awaiting_finality",
      nextVerifyAt: closeBy === null ? next : Math.min(next, closeBy),
      commitment,
    };
  }

  const notReady = served.filter((s) => signatures.facts(s) === undefined);
  if (notReady.length > 0) {
    // A signature unseen for a while is polled less often: the next look is three times as far
    // off as it has been unseen (plus a poll interval), up to the longest backoff, so its polls
    // come at 2, 10, 42 s... without a count of misses written on every poll. One that shows
    // up late still waits for finality (about 13 s on mainnet) once it landed, which covers
    // most of the wider spacing; at twice as far (2, 6, 14, 30, 62, 122 s) a never-seen one
    // (the stub's thousands) cost seven polls before its drop, each a claim, a status request
    // and a verdict write. The first miss may have been written by another process: a clock
    // ahead of this one's only makes the polls come at the poll interval until the clocks meet.
    // A finalized transaction no endpoint returned is looked for as far off as it has been
    // missing (2, 4, 8 s...): misses spaced out over real time, so a node lagging for a minute
    // does not use them all up, and it is final already, so nothing else waits for it.
    let unseenFor = -1;
    for (const s of notReady) {
      const r = row(s);
      const spacing =
        r?.state === "unknown"
          ? UNSEEN_SPACING
          : r?.state === "finalized" && r.notFoundSince !== null
            ? 1
            : 0;
      if (spacing > 0) {
        unseenFor = Math.max(unseenFor, spacing * Math.max(0, t - (r?.notFoundSince ?? t)));
      }
    }
    let delay =
      unseenFor >= 0 ? retryDelay(0, unseenFor + timing.pollIntervalMs) : timing.pollIntervalMs;
    const grid = timing.pollIntervalMs;
    // The wider spacing must not put off the drop: a never-seen signature is looked at again
    // when it may be dropped, if that comes sooner (by the pace; none known, none such look).
    const dropAt = Math.min(...notReady.map((s) => signatures.dropDue?.get(s) ?? Infinity));
    if (dropAt > t) delay = Math.min(delay, Math.max(dropAt - t, timing.pollIntervalMs));
    // A landed transaction is not final before the finalized slot reaches it: the job is looked
    // at again when the last of its transactions should be, not at every poll on the way (six
    // polls a job on mainnet), and never later than the longest backoff (a node's pace could lie).
    const finalAt = Math.max(...notReady.map((s) => signatures.finalityDue?.get(s) ?? 0));
    if (finalAt - t > delay) delay = Math.min(finalAt - t, Math.max(delay, timing.maxBackoffMs));
    // Due times snap to a grid so jobs waiting on finality are polled together, in one batch.
    const nextVerifyAt = Math.ceil((t + delay) / grid) * grid;
    // Every signature it waits for never seen: the round polls them at that time itself, and the
    // job is looked at again when they may be dropped (by the pace; at most three longest
    // backoffs off, as the pace could lie and the drop is judged on the slot read then), or
    // sooner when one shows up. No pace known yet (a verifier's first polls), or a drop already
    // due, the job keeps its own look.
    if (
      timing.watchesUnseen &&
      dropAt !== Infinity &&
      dropAt > t &&
      notReady.every((s) => row(s)?.state === "unknown")
    ) {
      const look = Math.min(dropAt - t, UNSEEN_LOOK_MAX * timing.maxBackoffMs);
      const jobAt = Math.ceil((t + Math.max(look, timing.pollIntervalMs)) / grid) * grid;
      if (jobAt > nextVerifyAt) {
        return {
          ...base,
          verdict: "awaiting_finality",
          nextVerifyAt: jobAt,
          commitment,
          watchAt: nextVerifyAt,
        };
      }
    }
    return { ...base, verdict: "awaiting_finality", nextVerifyAt, commitment };
  }

  return { commitment, unserved, served };
}

/**
 * When a never-seen signature first missed at `since` is polled next, at `t`: as far off as
 * three times how long it has been unseen, plus a poll interval, up to the longest backoff,
 * on the poll grid (the spacing `decide` gives a job waiting for it).
 */
export function unseenPollAt(
  since: number,
  t: number,
  timing: Pick<DecideTiming, "pollIntervalMs" | "maxBackoffMs" | "random">,
): number {
  const delay = backoff(0, {
    baseMs: UNSEEN_SPACING * Math.max(0, t - since) + timing.pollIntervalMs,
    maxMs: timing.maxBackoffMs,
    jitter: [0.75, 1.25],
    random: timing.random,
  });
  const grid = timing.pollIntervalMs;
  return Math.ceil((t + Math.round(delay)) / grid) * grid;
}

const isClean = (verdict: Evaluation["verdict"]) =>
  verdict === "verified" || verdict === "partially_verified";

/**
 * Until when a clean verdict waits for the jobs API's answer: while no answer has given a final
 * status (settled, refunded or failed) and someone is asking: the settlement
 * backfill, about a job it holds a key for, up to `jobsApiWaitMs` after the job's recording;
 * else the proxy, about each job it records, up to `proxyJobsApiWaitMs` (its questions and
 * their retries end within it, and a proxy killed before asking leaves nobody to ask). Null
 * when it does not wait. A failure the checks find does not wait: no answer undoes it.
 */
function jobsApiAnswerBy(job: DecideJob, timing: DecideTiming): number | null {
  const waitMs =
    job.backfillState === "pending"
      ? (timing.jobsApiWaitMs ?? 0)
      : job.source === "proxy"
        ? (timing.proxyJobsApiWaitMs ?? 0)
        : 0;
  if (waitMs <= 0) return null;
  // "processing" or "settling" is no answer yet, even naming the settlement: the final one may
  // name a second settlement, and gives the status and charge compared with the chain.
  const answered = job.apiCheckedAt !== null && isFinalAnswer({ status: job.apiStatus });
  return answered ? null : job.recordedAt + waitMs;
}

/**
 * When the job's lock (the receipt's, else the jobs API's), once its facts are known, must
 * have been settled or refunded: its block time plus the settlement window and the receipt
 * skew, in ms. Null while no lock's time is known.
 */
function lockCloseBy(
  job: Pick<DecideJob, "escrowTx" | "apiEscrowTx">,
  signatures: SignatureView,
  profile: Profile,
): number | null {
  for (const s of [job.escrowTx, job.apiEscrowTx]) {
    const blockTime = s === null ? null : (signatures.facts(s)?.blockTime ?? null);
    if (blockTime !== null) {
      return (blockTime + profile.settlementWindowSeconds + profile.receiptTimeSkewSeconds) * 1000;
    }
  }
  return null;
}

/** What was seen of a transaction counted as pruned: how many answers, over how long. */
function prunedReason(
  row: Pick<SignatureRow, "notFoundSince"> & Partial<Pick<SignatureRow, "notFoundCount">>,
  t: number,
) {
  const since = row.notFoundSince;
  const times = row.notFoundCount === undefined ? "" : ` ${row.notFoundCount} times`;
  const over =
    since === null ? "" : ` over ${Math.round((t - since) / 1000)} s since ${iso(since)}`;
  return `the status is finalized but getTransaction answered "not found"${times}${over}, each time asked of every endpoint that answered (one that did not is not waited for): the node no longer serves the transaction (pruned)`;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The job's amounts that do not fit the store, by name. */
function unstorableAmounts(amounts: Evaluation["amounts"]): [string, bigint][] {
  return Object.entries(amounts).filter(
    (entry): entry is [string, bigint] => entry[1] !== null && !isStorableUnits(entry[1]),
  );
}
