import { RpcDisagreementError } from "../chain/quorum.js";
import type { AddressSignatureInfo } from "../chain/rpc-pool.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import type { Logger } from "../log.js";
import {
  createLedgerStore,
  type EscrowScanChange,
  type EscrowScanState,
  type EscrowUnread,
  type HeldEscrowStep,
  type LedgerStore,
  type PendingEscrowStep,
} from "../store/ledger.js";
import { ESCROW_UNCLOSED_WAIT_MS, type KeepPair } from "../store/ledger-rules.js";
import { parseJobMemos } from "../verify/checks/memos.js";
import { isCredit } from "../verify/money-movements.js";
import type { Profile } from "../verify/profiles.js";
import { cursorGoesNowhere } from "./listing-cursor.js";
import type { LedgerRpc } from "./reader.js";

/**
 * Finds the escrow vault's payouts under a recorded job's memo that the job does not name: a
 * second settlement of a streamed job (whose headers carry no settlement, the jobs API naming
 * one) that returns nothing to the customer's vault touches only escrow, the worker and the
 * treasury, so no credit vault's ledger reads it.
 *
 * The escrow vault holds every customer's locks: its history is listed (`getSignaturesForAddress`,
 * whose entries carry each transaction's top-level memos) but not kept. An entry whose memo
 * names a recorded job that neither names nor keeps its signature is fetched, and kept with the
 * job (as a conflicting receipt's signature is: `settlement.single`, `escrow.single` judge it)
 * only when it paid out of the escrow vault: anyone may send a unit into escrow under any memo,
 * only the escrow authority can take one out. The job goes back to the verifier. An entry whose
 * listed memos name no job is fetched too, and judged by the memos it holds (`readUnnamed`): a
 * program's call writes a memo no listing names.
 *
 * `scanNew` (serve's rounds) goes on from a cursor kept in the store (`escrow_scans`); the first
 * reads back to the earliest recorded job, and at least `ESCROW_PENDING_MS`. An entry naming a
 * job not recorded yet is held (`escrow_pending`) and judged at a later scan. One of a recorded
 * job whose transaction no endpoint serves, or the endpoints disagree on, is held `unread` until
 * it is read, and the job is not judged meanwhile (src/verify/decide.ts): dropped after an hour
 * instead, an endpoint keeping up a lie about a second payout that long let the job through as
 * `verified`. `scanSince` (the nightly run) reads back to a time, for the jobs of its
 * window whatever the cursor passed before they were recorded (an import).
 */

export interface EscrowScanDeps {
  store: Store;
  rpc: LedgerRpc;
  profile: Profile;
  log: Logger;
  now?: () => number;
  /** Entries per listing page, 1..1000. Default 1000. */
  pageSize?: number;
  /** Transactions fetched at once. Default 8. */
  fetchConcurrency?: number;
  /** Pages one `scanNew` lists at most; a scan longer than that goes on at the next. Default 20. */
  pagesPerRound?: number;
}

export interface EscrowScanResult {
  /** The escrow vault scanned; null when the profile names none (nothing is scanned). */
  vault: string | null;
  /** Entries listed. */
  listed: number;
  /**
   * Transactions fetched: listed under a recorded job's memo the job does not name, or under no
   * job's memo at all (a program's call may have written one).
   */
  fetched: number;
  /** Jobs that gained a transaction, sent back to the verifier. */
  kept: string[];
  /**
   * Jobs sent back to the verifier because an entry under their memo turned unread (they wait
   * for it) or an unread one was read and not kept (judged again without it).
   */
  heldBack: string[];
  /**
   * The first transaction its listing named under a recorded job's memo that no endpoint served
   * (held, and judged once one does), said; null when every one was read.
   */
  unread: string | null;
  /** A `scanNew` that listed its most pages before reaching where the last scan ended. */
  more: boolean;
  /**
   * A `scanNew` that completed a scan: the finalized slot when that scan began, through which
   * every payout out of escrow was judged or held (`escrow_scans.covered_slot`); else null.
   */
  covered: number | null;
  /**
   * A `scanSince` that read through: the newest entry it listed (or the `after` it was given,
   * when nothing newer was listed), where a scan of the same run can go on from.
   */
  newest?: EscrowListed | null;
}

/** An entry of the escrow vault's listing, where a later scan can stop (`scanSince`'s `after`). */
export interface EscrowListed {
  signature: string;
  slot: number;
}

/** A candidate entry whose transaction could not be read, and why. */
type UnreadPair = KeepPair & { unread: Omit<EscrowUnread, "signature"> };

const notServed: Omit<EscrowUnread, "signature"> = {
  reason: "no endpoint serves the transaction at finalized (the listing names it)",
  disagreement: null,
};

/** Why a fetch failed, with the endpoints' answers when they disagreed. */
function whyUnread(error: unknown): Omit<EscrowUnread, "signature"> {
  if (error instanceof RpcDisagreementError) {
    return { reason: error.message, disagreement: error.disagreement };
  }
  return { reason: error instanceof Error ? error.message : String(error), disagreement: null };
}

/** The most entries `unnamedRead` remembers, of pages that failed: a few pages' worth. */
const UNNAMED_READ_MAX = 5_000;

/** A first scan reads from this long before the earliest recorded job. */
const FIRST_SCAN_SLACK_MS = 5 * 60_000;

/**
 * How long an entry naming a job not recorded yet is held for judging later: a proxy records a
 * job when its answer ends, which the operator can hold open after paying out. A receipt
 * recorded later than that (an import) is the nightly run's (`scanSince` over its window). An
 * entry of a recorded job whose transaction is not served is held until it is.
 */
export const ESCROW_PENDING_MS = 60 * 60_000;

/** How long an entry of a job naming no closing step yet waits (see src/store/ledger-rules.ts). */
export { ESCROW_UNCLOSED_WAIT_MS };

/**
 * How often one scanner asks again for a signature named past a job's kept ones that was not
 * served: asked each round, 1,500 made-up names cost a page of 1,000 fetches at every round of
 * `serve` for the hour they are held (2.2 to 2.5 s a round at 5 ms a fetch).
 */
export const NAMED_PAST_RETRY_MS = 5 * 60_000;

/**
 * The memo texts of a listing entry's `memo` (`[len] text; [len] text`, as nodes join the
 * top-level memos). A text holding `; [n] ` itself splits in two here; harmless: a job named
 * by a piece is only a reason to fetch the transaction, whose own memos decide.
 */
export function listedMemoTexts(memo: string): string[] {
  return memo
    .split(/; (?=\[\d+\] )/)
    .map((part) => part.replace(/^\[\d+\] /, ""))
    .filter((part) => part.length > 0);
}

/** Did the transaction pay credits out of `vault`? Only its owner (or delegate) can. */
export function paidOutOf(profile: Profile, vault: string, facts: TransactionFacts): boolean {
  if (!facts.succeeded) return false;
  return (
    facts.tokenChanges.some((c) => c.account === vault && isCredit(profile, c) && c.delta < 0n) ||
    facts.tokenInstructions.some((i) => i.source === vault && (i.amount ?? 1n) > 0n)
  );
}

/** A transaction a job names, read for it (by the verifier). */
export interface NamedStep {
  job: string;
  signature: string;
  facts: TransactionFacts;
}

/**
 * Judges, as the scan judges a listed entry, the steps jobs name (`steps`, read by the verifier)
 * that paid out of `vault` under memos naming other jobs: the scan fetches no entry its listed
 * job names itself, so a second payout of one job made inside another's own lock, settlement or
 * refund, under a memo a call wrote (which no listing names), was judged for the namer alone.
 * Each other recorded job that neither names nor keeps the transaction keeps it now (and goes
 * back to the verifier); one naming no closing step yet (a step made less than
 * `ESCROW_UNCLOSED_WAIT_MS` ago), or not recorded, has it held pending (as a listed entry's),
 * named by the job whose step it is (`namedBy`): such a row is not pruned, and the job is
 * judged on it whenever it is recorded and names a closing step (or the wait has passed), by
 * its claim (src/store/job-queue.ts; the scan's pending pages leave such rows out). Held an hour from the
 * verifier's read, as a listing's entry, a job recorded later (its answer held, its receipt
 * imported) or one no scan looked at within the hour stayed `verified`. A job recorded while
 * the hold was written, or naming its closing step meanwhile, and claimed before the hold was
 * there, is asked about again after: kept now (else judged `verified` until a scan ran).
 * Honest steps name one job each: nothing is read or written for them. Returns the pairs kept
 * (with a job that gained them) and those held.
 */
export async function judgeNamedBeside(
  ledger: Pick<LedgerStore, "unnamedSteps" | "keepEscrowSteps">,
  profile: Profile,
  vault: string,
  steps: readonly NamedStep[],
  now: number,
): Promise<{ kept: KeepPair[]; held: KeepPair[] }> {
  const pairs: KeepPair[] = [];
  const seen = new Set<string>();
  const blockTimes = new Map<string, number | null>();
  const namers = new Map<string, string>();
  for (const { job, signature, facts } of steps) {
    if (!paidOutOf(profile, vault, facts)) continue;
    for (const { jobId } of parseJobMemos(profile, facts.memos)) {
      const key = `${jobId} ${signature}`;
      if (jobId === job || seen.has(key)) continue;
      seen.add(key);
      pairs.push({ signature, job: jobId });
      blockTimes.set(signature, facts.blockTime);
      namers.set(signature, job);
    }
  }
  if (pairs.length === 0) return { kept: [], held: [] };
  // As a listed entry: one of a job naming no closing step yet waits for the name (or the wait).
  const waitFrom = Math.floor((now - ESCROW_UNCLOSED_WAIT_MS) / 1000);
  const judged = async (of: readonly KeepPair[]) => {
    const { open, unclosed, absent } = await ledger.unnamedSteps(of);
    const due = unclosed.filter((p) => (blockTimes.get(p.signature) ?? waitFrom) < waitFrom);
    return { keep: [...open, ...due], waiting: unclosed.filter((p) => !due.includes(p)), absent };
  };
  const first = await judged(pairs);
  // Held until its job is recorded (and names a closing step), however late: see above.
  const hold: HeldEscrowStep[] = [...first.waiting, ...first.absent].map((p) => ({
    ...p,
    blockTime: blockTimes.get(p.signature) ?? null,
    namedBy: namers.get(p.signature)!,
  }));
  if (first.keep.length === 0 && hold.length === 0) return { kept: [], held: [] };
  const change = { keep: first.keep, hold, release: [], pruneBefore: now - ESCROW_PENDING_MS };
  const { gained } = await ledger.keepEscrowSteps(vault, change, null, now);
  const kept = first.keep.filter((p) => gained.includes(p.job));
  // A job recorded while the hold was written, or one naming no closing step that named it
  // meanwhile, may have been claimed (and judged) before the hold was there to read: asked
  // again once it is, it keeps the step now (and goes back to the verifier).
  let held: KeepPair[] = [...first.waiting, ...first.absent];
  if (held.length > 0) {
    const again = await judged(held);
    const still = new Set([...again.waiting, ...again.absent]);
    const release = held.filter((p) => !still.has(p));
    if (release.length > 0) {
      const change = { keep: again.keep, hold: [], release, pruneBefore: now - ESCROW_PENDING_MS };
      const late = await ledger.keepEscrowSteps(vault, change, null, now);
      kept.push(...again.keep.filter((p) => late.gained.includes(p.job)));
      held = held.filter((p) => still.has(p));
    }
  }
  held = held.map(({ job, signature }) => ({ job, signature }));
  return { kept, held };
}

export function createEscrowScanner(deps: EscrowScanDeps) {
  const { rpc, profile, log } = deps;
  const now = deps.now ?? Date.now;
  const pageSize = deps.pageSize ?? 1000;
  const pagesPerRound = deps.pagesPerRound ?? 20;
  const fetchConcurrency = deps.fetchConcurrency ?? 8;
  const ledger = createLedgerStore(deps.store);
  /**
   * The entries naming no job that a scan read before another of them was not read, which
   * failed it: each finalized transaction's facts when it paid out of escrow, else null. The
   * next scan lists them again and fetches only the rest: fetched again, a page of them that
   * one entry not served failed was read whole at every scan, and on a node failing one fetch
   * in a hundred a page of 1,000 never completed. Gone once their page is judged.
   */
  const unnamedRead = new Map<string, TransactionFacts | null>();
  /** When a signature named past a job's kept ones was last not served, by `job signature`. */
  const namedPastUnreadAt = new Map<string, number>();
  const none = (vault: string | null): EscrowScanResult => ({
    vault,
    listed: 0,
    fetched: 0,
    kept: [],
    heldBack: [],
    unread: null,
    more: false,
    covered: null,
  });

  /**
   * One page newest first, cut at the first entry dated before `notBeforeSec`, and at the last
   * scan's newest entry (`until`, by its signature or an older slot) whether or not the node
   * stopped there. A node that lists `before` itself again, or only entries the scan listed
   * above it (pages that go round), is said to, not followed for ever.
   */
  async function page(
    vault: string,
    bound: {
      before: string | null;
      until: { signature: string; slot: number | null } | null;
      notBeforeSec: number | null;
    },
    signal?: AbortSignal,
    /** The signatures this scan listed so far (added to): a page of them only is a loop. */
    seen?: Set<string>,
  ): Promise<{ entries: AddressSignatureInfo[]; ended: boolean }> {
    const listed = await rpc.getSignaturesForAddress(vault, {
      limit: pageSize,
      ...(bound.before ? { before: bound.before } : {}),
      ...(bound.until ? { until: bound.until.signature } : {}),
      ...(signal ? { signal } : {}),
    });
    const again =
      bound.before === null ? null : cursorGoesNowhere(listed, bound.before, seen ?? new Set());
    if (again !== null) {
      throw new AppError("rpc_unavailable", `getSignaturesForAddress ${vault}: ${again}`);
    }
    if (seen) for (const e of listed) seen.add(e.signature);
    const { notBeforeSec, until } = bound;
    const cut = listed.findIndex(
      (e) =>
        (notBeforeSec !== null && e.blockTime !== null && e.blockTime < notBeforeSec) ||
        (until !== null &&
          (e.signature === until.signature || (until.slot !== null && e.slot < until.slot))),
    );
    return cut >= 0
      ? { entries: listed.slice(0, cut), ended: true }
      : { entries: listed, ended: listed.length < pageSize };
  }

  /**
   * The (signature, job) pairs of a listing whose memos name a job. A failed transaction moves
   * nothing, but whether it failed is the fetched transaction's word, not the listing's.
   */
  function namedPairs(
    entries: readonly AddressSignatureInfo[],
  ): (KeepPair & { blockTime: number | null })[] {
    const pairs: (KeepPair & { blockTime: number | null })[] = [];
    for (const e of entries) {
      if (e.memo === null) continue;
      for (const m of parseJobMemos(profile, listedMemoTexts(e.memo))) {
        pairs.push({ signature: e.signature, job: m.jobId, blockTime: e.blockTime });
      }
    }
    return pairs;
  }

  /** Each of `signatures` fetched at finalized, `fetchConcurrency` at once, or why not. */
  async function fetchAll(
    signatures: readonly string[],
    signal?: AbortSignal,
  ): Promise<Map<string, TransactionFacts | Omit<EscrowUnread, "signature">>> {
    const factsOf = new Map<string, TransactionFacts | Omit<EscrowUnread, "signature">>();
    for (let i = 0; i < signatures.length; i += fetchConcurrency) {
      signal?.throwIfAborted();
      const part = signatures.slice(i, i + fetchConcurrency);
      const got = await Promise.allSettled(
        part.map((s) => rpc.getTransaction(s, "finalized", signal ? { signal } : {})),
      );
      signal?.throwIfAborted();
      part.forEach((s, j) => {
        const answer = got[j]!;
        factsOf.set(
          s,
          answer.status === "fulfilled"
            ? (answer.value?.facts ?? notServed)
            : whyUnread(answer.reason),
        );
      });
    }
    return factsOf;
  }

  /**
   * The entries whose listed memos name no job (or whose memos a quorum's endpoints disputed), read: a program of the operator's can write a
   * job's memo by a call (an inner instruction), which no listing names, and the verifier reads
   * it as the job's. Every honest lock, settlement and refund carries its job's memo at top
   * level (PROTOCOL.md), so these are a deposit into escrow or anything but the protocol's
   * steps: few. Those that paid out of escrow under a job's memo become pairs, judged (and held)
   * as listed ones are; one paying out under none is outside every job, and said. One no
   * endpoint serves, or one that paid out served without its inner instructions (where a call's
   * memo would be), fails the scan, which lists it again next time: it names no job that could
   * wait for it, and passed by it could be a second payout of any.
   */
  async function readUnnamed(
    vault: string,
    entries: readonly AddressSignatureInfo[],
    signal?: AbortSignal,
  ): Promise<{
    pairs: (KeepPair & { blockTime: number | null })[];
    known: Map<string, TransactionFacts>;
    fetched: number;
  }> {
    const unnamed = entries.filter(
      (e) =>
        e.memo === null ||
        e.memoDisputed === true ||
        parseJobMemos(profile, listedMemoTexts(e.memo)).length === 0,
    );
    const toFetch = unnamed.map((e) => e.signature).filter((s) => !unnamedRead.has(s));
    const factsOf = await fetchAll(toFetch, signal);
    const pairs: (KeepPair & { blockTime: number | null })[] = [];
    const known = new Map<string, TransactionFacts>();
    // Every entry is read before the first that was not fails the scan: those read are
    // remembered for the next scan, which fetches again only the rest.
    let failure: AppError | null = null;
    if (unnamedRead.size > UNNAMED_READ_MAX) unnamedRead.clear();
    for (const e of unnamed) {
      let facts = unnamedRead.get(e.signature);
      if (facts === undefined) {
        const got = factsOf.get(e.signature);
        if (got === undefined || "reason" in got) {
          failure ??= new AppError(
            "rpc_unavailable",
            `the escrow vault's transaction ${e.signature}, listed under no job's memo, was not read (${
              got?.reason ?? notServed.reason
            }): it may pay out under a memo a program wrote, and the scan does not pass it unread`,
          );
          continue;
        }
        if (paidOutOf(profile, vault, got) && !got.innerInstructionsKnown) {
          // A memo a call wrote is among the inner instructions: without them it is unseen.
          failure ??= new AppError(
            "rpc_unavailable",
            `the escrow vault's transaction ${e.signature}, listed under no job's memo, paid out of escrow and was served without its inner instructions: a memo a program wrote by a call would be among them, and the scan does not pass it unseen`,
          );
          continue;
        }
        facts = paidOutOf(profile, vault, got) ? got : null;
        unnamedRead.set(e.signature, facts);
      }
      if (facts === null) continue;
      known.set(e.signature, facts);
      const named = new Set(parseJobMemos(profile, facts.memos).map((m) => m.jobId));
      if (named.size === 0) {
        log.warn(
          { vault, signature: e.signature },
          "the escrow vault paid out under no job's memo: no job's receipt accounts for it",
        );
      }
      for (const job of named) pairs.push({ signature: e.signature, job, blockTime: e.blockTime });
    }
    if (failure !== null) throw failure;
    for (const e of unnamed) unnamedRead.delete(e.signature);
    return { pairs, known, fetched: toFetch.length };
  }

  /**
   * Judges `candidates` (a recorded job that does not name the transaction): each transaction
   * is fetched, and kept with the job when it paid out of escrow under that job's memo.
   * `unread`: those no endpoint served, or the endpoints disagreed on, with why; judged again
   * at each scan. `read`: the rest, kept or not.
   */
  async function judge(
    vault: string,
    candidates: readonly KeepPair[],
    signal?: AbortSignal,
    /** Transactions this scan read already (an entry whose listing named no job). */
    known: ReadonlyMap<string, TransactionFacts> = new Map(),
    /** Whether a transaction read is kept with the candidate's job. */
    keeps: (c: KeepPair, facts: TransactionFacts) => boolean = (c, facts) =>
      // The transaction's own memos (the listing's are a node's word) name the job.
      paidOutOf(profile, vault, facts) &&
      parseJobMemos(profile, facts.memos).some((m) => m.jobId === c.job),
  ): Promise<{
    keep: KeepPair[];
    read: KeepPair[];
    unread: UnreadPair[];
    fetched: number;
    /** The transactions read, by signature. */
    facts: Map<string, TransactionFacts>;
  }> {
    const signatures = [...new Set(candidates.map((c) => c.signature))].filter(
      (s) => !known.has(s),
    );
    const factsOf = await fetchAll(signatures, signal);
    for (const [s, facts] of known) factsOf.set(s, facts);
    const keep: KeepPair[] = [];
    const read: KeepPair[] = [];
    const unread: UnreadPair[] = [];
    const readFacts = new Map<string, TransactionFacts>();
    for (const c of candidates) {
      const facts = factsOf.get(c.signature);
      if (facts === undefined || "reason" in facts) {
        unread.push({ ...c, unread: facts ?? notServed });
        continue;
      }
      read.push(c);
      readFacts.set(c.signature, facts);
      if (keeps(c, facts)) keep.push(c);
    }
    return { keep, read, unread, fetched: signatures.length, facts: readFacts };
  }

  /**
   * The (signature, job) pairs of the jobs whose memos the transactions of `facts` that paid out
   * of `vault` hold, but those of `seen` (a key `job signature`, added to): a transaction listed
   * under one job's memo may pay out under another's, written by a call its listing does not name.
   */
  function namedBeside(
    vault: string,
    facts: ReadonlyMap<string, TransactionFacts>,
    seen: Set<string>,
  ): KeepPair[] {
    const pairs: KeepPair[] = [];
    for (const [signature, f] of facts) {
      if (!paidOutOf(profile, vault, f)) continue;
      for (const { jobId: job } of parseJobMemos(profile, f.memos)) {
        const key = `${job} ${signature}`;
        if (seen.has(key)) continue;
        seen.add(key);
        pairs.push({ signature, job });
      }
    }
    return pairs;
  }

  /**
   * Judges `first` as a listed page's pairs are judged (recorded jobs now, those of jobs not
   * recorded held, with `waitUnclosed` those of jobs naming no closing step yet held too unless
   * dated `ESCROW_UNCLOSED_WAIT_MS` ago), then, in turn, the pairs of every other job the
   * transactions read name (`namedBeside`), each transaction fetched once. `blockTimeOf`: the
   * listing's block time of a signature, when listed. Returns what to keep, hold and release.
   */
  async function judgeFound(
    vault: string,
    first: readonly KeepPair[],
    known: Map<string, TransactionFacts>,
    blockTimeOf: (signature: string) => number | null,
    waitUnclosed: boolean,
    signal?: AbortSignal,
  ) {
    const keep: KeepPair[] = [];
    const hold: HeldEscrowStep[] = [];
    const release: KeepPair[] = [];
    const unread: UnreadPair[] = [];
    const due = new Set<string>();
    let fetched = 0;
    const seen = new Set<string>();
    const once = (p: KeepPair) => {
      const key = `${p.job} ${p.signature}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    };
    const waitFrom = Math.floor((now() - ESCROW_UNCLOSED_WAIT_MS) / 1000);
    const heldFrom = Math.floor((now() - ESCROW_PENDING_MS) / 1000);
    // An entry a quorum disputed is read as named and as unnamed: each pair judged once.
    for (let pairs = first.filter(once); pairs.length > 0; ) {
      const { open, unclosed, absent } = await ledger.unnamedSteps(pairs);
      const waiting = waitUnclosed
        ? unclosed.filter((p) => {
            const blockTime = blockTimeOf(p.signature);
            return blockTime === null || blockTime >= waitFrom;
          })
        : [];
      const dueNow = unclosed.filter((p) => !waiting.includes(p));
      const judged = await judge(vault, [...open, ...dueNow], signal, known);
      fetched += judged.fetched;
      for (const p of dueNow) due.add(p.job);
      keep.push(...judged.keep);
      release.push(...judged.read);
      unread.push(...judged.unread);
      for (const p of [...absent, ...waiting]) {
        const blockTime = blockTimeOf(p.signature);
        if (blockTime === null || blockTime >= heldFrom) hold.push({ ...p, blockTime });
      }
      for (const [signature, facts] of judged.facts) known.set(signature, facts);
      pairs = namedBeside(vault, judged.facts, seen);
    }
    return { keep, hold, release, unread, due, fetched };
  }

  /**
   * Writes one step into `result`, logging each job that gained a transaction: paid out of
   * escrow again (a warning) when it named a closing step, or gained more than one at once;
   * found on chain when it named none (`unclosed`) and gained one.
   */
  async function write(
    vault: string,
    change: Omit<EscrowScanChange, "pruneBefore">,
    state: EscrowScanState | null,
    result: EscrowScanResult,
    unclosed: ReadonlySet<string> = new Set(),
    namedPast = false,
  ) {
    const at = now();
    const { gained, unreadChanged } = await ledger.keepEscrowSteps(
      vault,
      { ...change, pruneBefore: at - ESCROW_PENDING_MS },
      state,
      at,
    );
    for (const jobId of gained) {
      const signatures = change.keep.filter((k) => k.job === jobId).map((k) => k.signature);
      if (namedPast) {
        log.warn(
          { vault, jobId, signatures },
          "job judged again: a transaction it named past its kept conflict signatures paid out of escrow or of its vault",
        );
      } else if (unclosed.has(jobId) && signatures.length === 1) {
        log.info(
          { vault, jobId, signatures },
          "job judged again: escrow paid out under its memo a settlement or refund it named nowhere yet, kept as found on chain",
        );
      } else {
        log.warn(
          { vault, jobId, signatures },
          "job judged again: escrow paid out under its memo a transaction it does not name",
        );
      }
    }
    for (const jobId of unreadChanged) {
      if (gained.includes(jobId)) continue;
      log.info(
        { vault, jobId },
        "job judged again: an escrow entry under its memo turned unread (the job waits for it), or was read at last",
      );
    }
    result.kept.push(...gained);
    result.heldBack.push(...unreadChanged.filter((j) => !gained.includes(j)));
  }

  /**
   * Judges a listed page: pairs of recorded jobs are judged now, those of jobs not recorded yet
   * (listed within `ESCROW_PENDING_MS`) and those not served are held pending. With
   * `waitUnclosed` (serve's scan), those of jobs naming no closing step yet are held too, unless
   * dated `ESCROW_UNCLOSED_WAIT_MS` ago; without (the nightly run), judged as they stand.
   */
  async function judgePage(
    vault: string,
    entries: readonly AddressSignatureInfo[],
    result: EscrowScanResult,
    state: EscrowScanState | null,
    waitUnclosed: boolean,
    signal?: AbortSignal,
  ) {
    const unnamed = await readUnnamed(vault, entries, signal);
    result.fetched += unnamed.fetched;
    const timeOf = new Map(entries.map((e) => [e.signature, e.blockTime]));
    const blockTimeOf = (signature: string) => timeOf.get(signature) ?? null;
    const found = await judgeFound(
      vault,
      [...namedPairs(entries), ...unnamed.pairs],
      unnamed.known,
      blockTimeOf,
      waitUnclosed,
      signal,
    );
    result.fetched += found.fetched;
    const first = found.unread[0];
    if (first !== undefined && result.unread === null) result.unread = unreadText(first);
    // An unread entry of a recorded job is held however old: its job waits for it.
    const hold = [
      ...found.hold,
      ...found.unread.map((p) => ({ ...p, blockTime: blockTimeOf(p.signature) })),
    ];
    // One read now that an earlier scan held unread (a nightly run listing it again) goes.
    await write(
      vault,
      { keep: found.keep, hold, release: found.release },
      state,
      result,
      found.due,
    );
  }

  /**
   * Judges the pending entries whose job is recorded now and names its closing step, or that
   * were held `ESCROW_UNCLOSED_WAIT_MS`, a page at a time in the order they were held: those
   * still not served stay, and the pages go on past them (one page of them held every entry
   * behind it until the hour dropped it unjudged). Not those a recorded job's own step holds
   * (`namedBy`): their job's claim judges them as the verifier read the step, with no fetch
   * (src/store/job-queue.ts), and a job with one held is looked at again after each completed
   * scan (src/verify/escrow-cover.ts). Walked here, each round read every one of them whose job
   * is not recorded, and an operator's made-up memos can mark any number.
   */
  async function judgePending(vault: string, result: EscrowScanResult, signal?: AbortSignal) {
    let after: PendingEscrowStep | null = null;
    for (;;) {
      signal?.throwIfAborted();
      const pending = await ledger.pendingEscrowSteps(
        vault,
        pageSize,
        now() - ESCROW_UNCLOSED_WAIT_MS,
        after,
      );
      if (pending.length === 0) return;
      const { open, unclosed } = await ledger.unnamedSteps(pending);
      const judged = await judge(vault, [...open, ...unclosed], signal);
      result.fetched += judged.fetched;
      const unread = new Set(judged.unread.map((p) => `${p.job} ${p.signature}`));
      const release = pending.filter((p) => !unread.has(`${p.job} ${p.signature}`));
      const found = new Set(unclosed.map((p) => p.job));
      // Those still unread are held again, with the last fetch's error.
      const hold = judged.unread.map((p) => ({ ...p, blockTime: null }));
      // Other jobs the transactions read name by their memos, judged as a listing's are.
      const seen = new Set(pending.map((p) => `${p.job} ${p.signature}`));
      const beside = await judgeFound(
        vault,
        namedBeside(vault, judged.facts, seen),
        judged.facts,
        () => null,
        true,
        signal,
      );
      for (const job of beside.due) found.add(job);
      await write(
        vault,
        {
          keep: [...judged.keep, ...beside.keep],
          hold: [...hold, ...beside.hold],
          release: [...release, ...beside.release],
        },
        null,
        result,
        found,
      );
      const first = judged.unread[0];
      if (first !== undefined) result.unread ??= unreadText(first);
      if (pending.length < pageSize) return;
      after = pending.at(-1) ?? null;
    }
  }

  /**
   * Reads the oldest `pageSize` signatures jobs named past their kept conflict signatures (held
   * by the store once the list is full: `namedPastVault`) and keeps with its job each that paid
   * credits out of the escrow vault or out of the credit vault pinned for the job's key (never
   * one a receipt declares: the operator's word), whatever its memo: the job
   * named it, and only those accounts' authority moves their credits, so no harmless transaction
   * is kept however many are named. Each read goes; one not served goes behind those not
   * fetched yet, is fetched again when no such one is left (by this scanner not before
   * `NAMED_PAST_RETRY_MS` have passed), and goes `ESCROW_PENDING_MS` after
   * it was named; no job waits for it (the job fails `signatures.explained` already). One page
   * a scan, those not fetched yet first, and none goes before it was fetched once: a flood of
   * made-up names costs a page of fetches a round and delays the reading of a name behind it,
   * but cannot have it dropped unread.
   */
  async function judgeNamedPast(vault: string, result: EscrowScanResult, signal?: AbortSignal) {
    signal?.throwIfAborted();
    const at = now();
    for (const [key, t] of namedPastUnreadAt) {
      if (at - t >= NAMED_PAST_RETRY_MS) namedPastUnreadAt.delete(key);
    }
    // Those not fetched yet come first, so a page with some asked lately holds no other.
    const named = (await ledger.namedPastSteps(pageSize)).filter(
      (p) => !namedPastUnreadAt.has(`${p.job} ${p.signature}`),
    );
    if (named.length === 0) return;
    const vaultOf = new Map(named.map((p) => [`${p.job} ${p.signature}`, p.creditVault]));
    const { open, unclosed } = await ledger.unnamedSteps(named);
    const judged = await judge(vault, [...open, ...unclosed], signal, new Map(), (c, facts) => {
      const own = vaultOf.get(`${c.job} ${c.signature}`) ?? null;
      return paidOutOf(profile, vault, facts) || (own !== null && paidOutOf(profile, own, facts));
    });
    result.fetched += judged.fetched;
    const unread = new Set(judged.unread.map((p) => `${p.job} ${p.signature}`));
    for (const key of unread) namedPastUnreadAt.set(key, at);
    const release = named.filter((p) => !unread.has(`${p.job} ${p.signature}`));
    const unreadPast = judged.unread.map((p) => ({ ...p, reason: p.unread.reason }));
    const change = { keep: judged.keep, hold: [], release: [], releasePast: release, unreadPast };
    await write(vault, change, null, result, new Set(), true);
  }

  /**
   * The lowest finalized slot of the pool's endpoints that tell theirs: the listing's first page
   * may come from any of them, one behind the others included (one endpoint's slot, with the
   * listing served by another behind it, let a verdict through before its payouts were listed).
   */
  async function finalizedEverywhere(signal?: AbortSignal): Promise<number> {
    if (rpc.finalizedSlots) {
      const { slots } = await rpc.finalizedSlots(signal);
      if (slots.size > 0) return Math.min(...slots.values());
    }
    return rpc.getSlot("finalized");
  }

  const unreadText = (p: UnreadPair) =>
    `the escrow vault's transaction ${p.signature}, listed under job ${p.job}'s memo, ${
      p.unread.disagreement === null
        ? "was not served by the RPC"
        : "is one the endpoints disagree on"
    }; the job is not judged until it is read`;

  return {
    /**
     * Judges the entries held pending whose job is recorded now, then scans what the escrow
     * vault listed since the last completed scan (serve's rounds), at most `pagesPerRound`
     * pages a call: a scan in progress goes on from where it stood (`more` says one is). The
     * first reads back to the earliest recorded job, and at least `ESCROW_PENDING_MS`.
     */
    async scanNew(signal?: AbortSignal): Promise<EscrowScanResult> {
      const vault = profile.escrowVault;
      if (vault === null) return none(vault);
      const result = none(vault);
      await judgePending(vault, result, signal);
      await judgeNamedPast(vault, result, signal);
      const state: EscrowScanState = (await ledger.escrowScanOf(vault)) ?? {
        newestSignature: null,
        newestSlot: null,
        syncTop: null,
        syncTopSlot: null,
        syncBefore: null,
        coveredSlot: null,
        syncCoveredSlot: null,
      };
      let notBeforeSec: number | null = null;
      if (state.newestSignature === null) {
        const earliest = await ledger.earliestJobAt();
        const held = now() - ESCROW_PENDING_MS;
        notBeforeSec = Math.floor(
          Math.min(held, earliest === null ? held : earliest - FIRST_SCAN_SLACK_MS) / 1000,
        );
      }
      const until =
        state.newestSignature === null
          ? null
          : { signature: state.newestSignature, slot: state.newestSlot };
      let { syncTop, syncTopSlot, syncBefore, syncCoveredSlot } = state;
      // A scan that begins now lists every entry finalized by this slot, asked first: once it
      // completes, every payout up to it was judged or held (`coveredSlot`).
      if (syncTop === null) syncCoveredSlot = await finalizedEverywhere(signal);
      const seen = new Set<string>();
      for (let pages = 0; pages < pagesPerRound; pages++) {
        signal?.throwIfAborted();
        const { entries, ended } = await page(
          vault,
          { before: syncBefore, until, notBeforeSec },
          signal,
          seen,
        );
        result.listed += entries.length;
        const first = entries[0];
        if (syncTop === null && first) {
          syncTop = first.signature;
          syncTopSlot = first.slot;
        }
        if (ended) {
          // Written even when nothing was listed: when it last wrote is when the scan last ran
          // through (`decentral_audit_escrow_scan_lag_seconds`).
          // A pass begun before its start was recorded (an upgrade) covers what the last did. A
          // lower slot than the last (endpoints behind now) is taken as it is: a verdict waits a
          // little longer, where the higher would let one through on a slot not listed.
          const coveredSlot = syncCoveredSlot ?? state.coveredSlot;
          const covered = { coveredSlot, syncCoveredSlot: null };
          const done =
            syncTop === null
              ? { ...state, syncTop: null, syncTopSlot: null, syncBefore: null, ...covered }
              : {
                  newestSignature: syncTop,
                  newestSlot: syncTopSlot,
                  syncTop: null,
                  syncTopSlot: null,
                  syncBefore: null,
                  ...covered,
                };
          await judgePage(vault, entries, result, done, true, signal);
          return { ...result, covered: coveredSlot };
        }
        syncBefore = entries.at(-1)?.signature ?? syncBefore;
        const progress = { ...state, syncTop, syncTopSlot, syncBefore, syncCoveredSlot };
        await judgePage(vault, entries, result, progress, true, signal);
      }
      return { ...result, more: true };
    },

    /**
     * Judges the entries held pending whose job is recorded now, then scans what the escrow
     * vault listed from `fromMs` to now, whatever the cursor says (a nightly run, for its
     * window's jobs); the cursor is left where it is. The held ones first: an entry an earlier
     * run held unread, listed before this run reads from, was fetched by no later run where no
     * `serve` scans, and its job stayed `error`. `after`: the newest entry an earlier scan of
     * the same run listed (its `newest`), where the listing stops: the run's second scan, after
     * the vaults' read, listed the whole history since `fromMs` again (all of a day's escrow
     * traffic and more, twice a run) and fetched again each transaction the first had read
     * and not kept.
     */
    async scanSince(
      fromMs: number,
      signal?: AbortSignal,
      after: EscrowListed | null = null,
    ): Promise<EscrowScanResult> {
      const vault = profile.escrowVault;
      if (vault === null) return none(vault);
      const result = none(vault);
      await judgePending(vault, result, signal);
      await judgeNamedPast(vault, result, signal);
      const notBeforeSec = Math.floor(fromMs / 1000);
      let before: string | null = null;
      let newest: EscrowListed | null = null;
      const seen = new Set<string>();
      for (;;) {
        signal?.throwIfAborted();
        const bound = { before, until: after, notBeforeSec };
        const { entries, ended } = await page(vault, bound, signal, seen);
        result.listed += entries.length;
        const first = entries[0];
        if (newest === null && first) newest = { signature: first.signature, slot: first.slot };
        await judgePage(vault, entries, result, null, false, signal);
        const last = entries.at(-1);
        if (ended || last === undefined) return { ...result, newest: newest ?? after };
        before = last.signature;
      }
    },
  };
}

export type EscrowScanner = ReturnType<typeof createEscrowScanner>;
