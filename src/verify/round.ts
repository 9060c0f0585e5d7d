import PQueue from "p-queue";
import { implausibleBlockTime } from "../chain/block-time.js";
import { factsFromJson } from "../chain/facts-json.js";
import { reparseStored } from "../chain/parse-transaction.js";
import { type RpcDisagreement, RpcDisagreementError } from "../chain/quorum.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import { isBusyError } from "../db/client.js";
import { finalVerdicts } from "../db/schema.js";
import { AppError } from "../errors.js";
import { judgeNamedBeside } from "../ledger/escrow-scan.js";
import type { Logger } from "../log.js";
import { backoff } from "../retry.js";
import type { CustodyStore } from "../store/custody.js";
import type {
  ClaimedJob,
  JobQueueStore,
  PutOffCursor,
  PutOffJob,
  QueueFilter,
} from "../store/job-queue.js";
import type { LedgerStore } from "../store/ledger.js";
import { VERDICT_NOT_WRITTEN } from "../store/queue-rules.js";
import {
  type FetchedItem,
  pairKey,
  type SignatureRow,
  type SignatureStore,
} from "../store/signatures.js";
import type { VerdictStore, VerdictWrite } from "../store/verdicts.js";
import { usagePrice } from "./checks/charge.js";
import type { ClosingNamer } from "./checks/shared-closing.js";
import {
  type CreditsSpan,
  jobSignatures,
  MAX_NAMED_BY,
  memoJobOf,
  parseJobMemos,
} from "./checks.js";
import { custodyViews } from "./custody.js";
import {
  type DecideJob,
  type Decision,
  decide,
  decideWaiting,
  unseenPollAt,
  type WaitingJob,
} from "./decide.js";
import { createEndpointSlotBook } from "./endpoint-slots.js";
import { coverViewOf, type EscrowCoverConfig, gateOf, waitMessage } from "./escrow-cover.js";
import { MOVEMENT_KINDS, readLock } from "./money-movements.js";
import type { Profile } from "./profiles.js";
import { createSlotClock } from "./slot-clock.js";
import { longestLookMs, type VerifierOptions } from "./verifier-options.js";
import type { SignatureStatusLike, VerifierRpc } from "./verifier-rpc.js";

/**
 * One verification round: claim due jobs under a lease, poll the statuses of their signatures
 * that are not final yet, fetch each newly finalized transaction once, decide every job and
 * write the decisions. No RPC call is made inside a database transaction, and the work is cut
 * into short synchronous stretches with the event loop served between them (the proxy may
 * share this process).
 */

/**
 * Jobs decided and written per synchronous stretch. A job's verdict with its ~30 check rows
 * takes ~0.2 ms to write, so eight keep each stretch near 1-2 ms.
 */
const SLICE = 8;

/** Jobs claimed per statement (~2.5 ms on SQLite); a round claims up to `claimBatchSize`. */
const CLAIM_SLICE = 250;

/** Jobs waiting for their transactions (no checks to write) decided and written per stretch. */
const WAITING_SLICE = 64;

/**
 * Signature statuses written per synchronous stretch (~20 µs each, with the re-read); twice as
 * many signatures are tracked (given their rows and read) per stretch.
 */
const STATUS_SLICE = 128;

/** Signatures in one full getSignatureStatuses request (the RPC's limit, the pool's batch). */
const FULL_STATUS_REQUEST = 256;
/**
 * Longest wait of a fetched transaction for the others of its batch to be stored with, while
 * fetches of the round are still out (none out, it is stored at once).
 */
const STORE_WAIT_MS = 50;

/**
 * Never-seen signatures a round keeps polling between its jobs' looks, at most (a few hundred
 * bytes each): past it, a job waiting for one is looked at on each poll of its signatures.
 */
const WATCH_MAX = 50_000;

/**
 * A never-seen signature the round polls itself (see `DecideTiming.watchesUnseen`): first
 * missed at `since`, polled next at `pollAt`, for `jobs`, each looked at again by `until` anyway.
 */
interface Watched {
  since: number;
  pollAt: number;
  until: number;
  /** Nearly always one. */
  jobs: string[];
}

/** A fetch's end: its answer, what it threw, or null when the round stopped it. */
type FetchOutcome =
  | { ok: true; result: Awaited<ReturnType<VerifierRpc["getTransaction"]>> }
  | { ok: false; error: unknown }
  | null;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export interface RoundDeps {
  queue: JobQueueStore;
  signatures: SignatureStore;
  verdicts: VerdictStore;
  custody: CustodyStore;
  /**
   * The credit vaults' ledger: the balances `credits.header` compares the header with, and how
   * far the escrow scan has read.
   */
  ledger: Pick<
    LedgerStore,
    "creditSpans" | "escrowCoverage" | "escrowUnread" | "unnamedSteps" | "keepEscrowSteps"
  >;
  /**
   * Where a job's verdict waits for the escrow scan to read past it (src/verify/escrow-cover.ts):
   * this process's scan and the gate to it (`serve`), or another process's while it runs (a
   * nightly `verify` beside `serve`). None: verdicts do not wait.
   */
  escrowCover?: EscrowCoverConfig;
  /** Vaults the deployment lists as its own. */
  configuredVaults: ReadonlySet<string>;
  rpc: VerifierRpc;
  profile: Profile;
  options: VerifierOptions;
  owner: string;
  now: () => number;
  /**
   * The time leases and due times are written and judged by (`LockStore.sharedNow`: the
   * database server's clock on PostgreSQL, which verifiers on every host read alike; `now`
   * follows it). None: the host's own (one host).
   */
  sharedNow?: () => Promise<number>;
  /**
   * Other lease owners known to run now on this host, whose leases a claim leaves alone even
   * when their expiry has passed (see `JobQueueStore.claim`). None: leases are judged by expiry
   * alone.
   */
  liveOwners?: () => Promise<readonly string[]>;
  log: Logger;
}

/**
 * Runs one round over `filter`; resolves with how many jobs it claimed, or made due (a watched
 * signature seen): 0 when there was nothing to do. `judged`, when given, gets the id of each job
 * the round wrote a final verdict for.
 */
export type Round = ((
  filter: QueueFilter | null,
  runId: number | null,
  signal: AbortSignal,
  judged?: Set<string>,
) => Promise<number>) & {
  /**
   * When the next watched signature is to be polled (on the clock of the rounds' `t`), or null
   * when none is watched: a loop with nothing due runs a round then.
   */
  nextWatchedAt(): number | null;
};

export function createRound(deps: RoundDeps): Round {
  const { queue, signatures, rpc, profile, options, owner, now } = deps;
  /**
   * Grid cell (time / pollIntervalMs) of the last status poll. A few signatures are polled at
   * most once per cell: a job arriving between two polls waits for the next one instead of
   * costing a request of its own. A backlog is polled at once.
   */
  let lastPollCell = -1;
  /** No decision puts a job's next look further off than this (see `claim`'s `farAfter`). */
  const longestLook = longestLookMs(options);
  /** How fast the finalized slot moves: when a landed transaction will be final. */
  const slotClock = createSlotClock({ minSpanMs: options.pollIntervalMs });
  /** Each endpoint's finalized slots as read: where a drop's window starts on each. */
  const endpointSlots = createEndpointSlotBook({ keepMs: 2 * options.dropHoldMs });
  /**
   * What a drop let through after its hold rests on (an endpoint that could not answer, or one
   * alone showing a status it backs with no signed transaction), by signature: said in the
   * verdict's reason. Bounded: the oldest are forgotten.
   */
  const dropNotes = new Map<string, string>();
  const noteDrop = (signature: string, note: string) => {
    dropNotes.delete(signature);
    dropNotes.set(signature, note);
    if (dropNotes.size > DROP_NOTES_KEPT) dropNotes.delete(dropNotes.keys().next().value!);
  };
  /**
   * Signatures shown short of finalized, by when this round first saw them so: one that stays
   * so past the drop hold is looked for on every endpoint. A failover pool asks its first
   * endpoint alone, and one answering "confirmed" for a phantom held its job for ever.
   */
  const unfinal = new Map<string, number>();
  /** Signatures whose not-final status the other endpoints overruled, by who showed it. */
  const overruled = new Map<string, string[]>();
  /**
   * Is the finalized slot read long enough ago to read it again (five poll intervals)? One read
   * "later" than now was read before the clock went back: due, not the step later.
   */
  const slotReadDue = (t: number) => {
    const readAt = slotClock.latest()?.t ?? Number.NEGATIVE_INFINITY;
    return readAt <= t - 5 * options.pollIntervalMs || readAt > t;
  };
  /**
   * Never-seen signatures of jobs left waiting, by signature. A poll that finds them still
   * unseen (thousands of jobs whose transactions have not landed) costs a status request per
   * 256 of them and nothing in the database: their jobs are neither claimed, nor written, nor
   * decided again. One that shows up makes its jobs due at once. In memory only: after a
   * restart each job is back by its own next look (its drop, or the longest backoff).
   */
  const watch = new Map<string, Watched>();

  /** Whether this round has taken up the watch a verifier before it may have kept. */
  let adopted = false;

  /**
   * Watches the never-seen signatures of jobs put off past this poll, all of whose signatures
   * are unseen: a verifier before this one (this process's before a restart, another that
   * led) may have put them off to their drop, up to three longest backoffs away, while it
   * watched them in memory. Without this, one that landed meanwhile was seen only at that
   * look. They are polled at once, a full status request per poll, then at their own spacing.
   */
  async function adoptPutOff(t: number, signal: AbortSignal) {
    adopted = true;
    const room = WATCH_MAX - watch.size;
    if (room <= 0) return;
    let taken = 0;
    const sigsOf = (job: PutOffJob) => [
      ...new Set(
        [job.escrowTx, job.apiEscrowTx, job.settlementTx, job.apiSettlementTx].filter(
          (sig): sig is string => sig !== null,
        ),
      ),
    ];
    // A page at a time, each with the signature rows it names: reading them all at once (up to
    // WATCH_MAX jobs) held the event loop the proxy shares for a quarter of a second at start.
    let read = 0;
    let from: PutOffCursor | undefined;
    while (read < room) {
      if (signal.aborted) return;
      const limit = Math.min(STATUS_SLICE, room - read);
      const part = await queue.putOff(t + options.pollIntervalMs, t + longestLook, limit, from);
      read += part.length;
      const last = part.at(-1);
      if (last === undefined) return;
      from = { nextVerifyAt: last.nextVerifyAt, jobId: last.jobId };
      const rows = await signatures.load([...new Set(part.flatMap(sigsOf))]);
      for (const job of part) {
        const sigs = sigsOf(job);
        const unseen = sigs.map((sig) => rows.get(sig));
        if (
          sigs.length === 0 ||
          unseen.some((r) => r?.state !== "unknown" || r.notFoundSince === null)
        )
          continue;
        sigs.forEach((sig, i) => {
          const since = unseen[i]!.notFoundSince!;
          let entry = watch.get(sig);
          if (!entry) {
            if (watch.size >= WATCH_MAX) return;
            const pollAt = t + Math.floor(taken++ / FULL_STATUS_REQUEST) * options.pollIntervalMs;
            entry = { since, pollAt, until: 0, jobs: [] };
            watch.set(sig, entry);
          }
          entry.until = Math.max(entry.until, job.nextVerifyAt);
          if (!entry.jobs.includes(job.jobId)) entry.jobs.push(job.jobId);
        });
      }
      if (part.length < limit) return;
      await yieldToEventLoop();
    }
  }

  /** The claimed jobs are looked at whole now: their signatures are watched for them no more. */
  function unwatch(claimed: readonly WaitingJob[]) {
    if (watch.size === 0) return;
    for (const job of claimed) {
      for (const sig of jobSignatures(job)) {
        const entry = watch.get(sig);
        if (!entry) continue;
        entry.jobs = entry.jobs.filter((id) => id !== job.jobId);
        if (entry.jobs.length === 0) watch.delete(sig);
      }
    }
  }

  /** Watched signatures due at `t`, but those of `polled` (asked about for a claimed job). */
  function dueWatched(t: number, polled: ReadonlySet<string>): string[] {
    const due: string[] = [];
    for (const [sig, entry] of watch) {
      // Its jobs are back by now on their own (or were taken by another verifier).
      if (entry.until <= t) watch.delete(sig);
      else if (entry.pollAt <= t && !polled.has(sig)) due.push(sig);
    }
    return due;
  }

  /** Watches the never-seen signatures of the decisions that ask for it (`watchAt`). */
  function watchDecided(
    decisions: readonly Decision<WaitingJob>[],
    rows: ReadonlyMap<string, SignatureRow>,
    t: number,
  ) {
    for (const d of decisions) {
      if (d.watchAt === undefined) continue;
      for (const sig of jobSignatures(d.job)) {
        const row = rows.get(sig);
        if (row?.state !== "unknown") continue;
        let entry = watch.get(sig);
        if (!entry) {
          if (watch.size >= WATCH_MAX) continue;
          entry = { since: row.notFoundSince ?? t, pollAt: d.watchAt, until: 0, jobs: [] };
          watch.set(sig, entry);
        }
        entry.pollAt = Math.min(entry.pollAt, d.watchAt);
        entry.until = Math.max(entry.until, d.nextVerifyAt);
        if (!entry.jobs.includes(d.job.jobId)) entry.jobs.push(d.job.jobId);
      }
    }
  }

  /**
   * Takes the statuses of watched signatures (asked by the round's own poll, or now when it made
   * none; "failed": that poll failed): the jobs of one seen are made due; one still unseen is
   * polled again as spaced (a poll in trouble, at the next poll). Returns the jobs made due.
   */
  async function pollWatched(
    sigs: readonly string[],
    answer: readonly (SignatureStatusLike | null)[] | "failed" | undefined,
    t: number,
    signal: AbortSignal,
  ): Promise<number> {
    let statuses = answer;
    if (statuses === undefined) {
      try {
        statuses = await rpc.getSignatureStatuses([...sigs], { signal });
      } catch (error) {
        if (isBusyError(error)) throw error;
        statuses = "failed";
      }
    }
    if (signal.aborted) return 0;
    const news = new Set<string>();
    sigs.forEach((sig, i) => {
      const entry = watch.get(sig);
      if (!entry) return;
      const status = statuses === "failed" ? undefined : statuses[i];
      if (status) {
        for (const jobId of entry.jobs) news.add(jobId);
        watch.delete(sig);
        return;
      }
      entry.pollAt =
        status === undefined
          ? (Math.floor(t / options.pollIntervalMs) + 1) * options.pollIntervalMs
          : unseenPollAt(entry.since, t, options);
      if (entry.pollAt >= entry.until) watch.delete(sig);
    });
    return news.size === 0 ? 0 : queue.makeDue([...news], now());
  }

  const round = async function round(
    filter: QueueFilter | null,
    runId: number | null,
    signal: AbortSignal,
    judged?: Set<string>,
  ): Promise<number> {
    if (signal.aborted) return 0;
    // In pieces, each one short write (a claim of 1,000 held SQLite's write lock, and the
    // event loop, for ~10 ms); one `t` and `leaseAt` for all, so a piece never takes a job it
    // leased again. A job reopened between two pieces (a reverify, a new receipt) lost that
    // lease, and the next piece may take it again: the round keeps one row a job, the later
    // one, read after the reopen, whose lease is the one the verdict write holds.
    const t = deps.sharedNow ? await deps.sharedNow() : now();
    // A look further off than any this verifier writes was written before its clock went back
    // (NTP, a VM restored): due now, not that step later.
    const liveOwners = deps.liveOwners ? await deps.liveOwners() : [];
    const lease = {
      t,
      leaseAt: t,
      leaseMs: options.leaseMs,
      farAfter: t + longestLook,
      liveOwners,
    };
    const byId = new Map<string, ClaimedJob>();
    while (byId.size < options.claimBatchSize && !signal.aborted) {
      const limit = Math.min(CLAIM_SLICE, options.claimBatchSize - byId.size);
      const piece = await queue.claim(owner, filter, { ...lease, limit });
      for (const job of piece) byId.set(job.jobId, job);
      if (piece.length < limit) break;
      await yieldToEventLoop();
    }
    // After the claim: a job it took is looked at now, not watched. A run over a window (the
    // nightly's) leaves the others' jobs to the verifier that serves them all.
    if (!adopted && filter === null && !signal.aborted) await adoptPutOff(t, signal);
    let claimed = [...byId.values()];
    unwatch(claimed);
    const allSigs = [...new Set(claimed.flatMap((j) => jobSignatures(j)))];
    const watchedDue = dueWatched(t, new Set(allSigs));
    if (claimed.length === 0) {
      if (watchedDue.length === 0 || signal.aborted) return 0;
      return pollWatched(watchedDue, undefined, t, signal);
    }
    const claimedCount = claimed.length;

    // Make sure every signature has its row, then see which still need the chain.
    const rows = new Map<string, SignatureRow>();
    for (const part of chunks(allSigs, STATUS_SLICE * 2)) {
      for (const [signature, row] of await signatures.track(part, now())) rows.set(signature, row);
      await yieldToEventLoop();
    }
    const trouble = new Map<string, string>();
    const disagreements = new Map<string, RpcDisagreement>();
    const finalityDue = new Map<string, number>();
    const dropDue = new Map<string, number>();

    const needStatus = allSigs.filter((s) => {
      const state = rows.get(s)?.state;
      return state === "unknown" || state === "landed";
    });
    // The cell of the claim, not of this moment: a claim just before a cell's end would
    // otherwise poll for the next cell and push the jobs it hands back a cell further.
    const cell = Math.floor(lease.t / options.pollIntervalMs);
    // A full claim or a full request's worth of signatures is a backlog: waiting for the next
    // cell batches nothing more, so it is polled now, round after round at the RPC's pace.
    // A cell before the last poll's is a clock gone back (NTP, a VM restored): a new cell too,
    // or no job was polled for as long as the step.
    const pollNow =
      cell !== lastPollCell ||
      claimedCount >= options.claimBatchSize ||
      needStatus.length >= FULL_STATUS_REQUEST;
    if (needStatus.length > 0 && !pollNow && !signal.aborted) {
      // Nothing is learnt of these jobs before the next poll: they go back untouched, due at
      // the next cell, in one statement. Deciding them "awaiting finality" wrote each one, and
      // a backlog was claimed and written over and over within one cell, learning nothing.
      const unpolled = new Set(needStatus);
      // A signature found dropped does not decide its job alone: the transactions that landed
      // are judged too, so the job waits for the poll of the others like any other.
      const deferred = claimed.filter((job) => jobSignatures(job).some((sig) => unpolled.has(sig)));
      if (deferred.length > 0) {
        const ids = new Set(deferred.map((job) => job.jobId));
        await queue.releaseLeases(owner, [...ids], (cell + 1) * options.pollIntervalMs);
        claimed = claimed.filter((job) => !ids.has(job.jobId));
      }
    }
    /** The statuses of the watched signatures due, asked with the claimed jobs' ones. */
    let watchedAnswer: (SignatureStatusLike | null)[] | "failed" | undefined;
    if (needStatus.length > 0 && pollNow && !signal.aborted) {
      lastPollCell = cell;
      try {
        // One request per 256 signatures for both: the claimed jobs' and the watched ones.
        const answers = [
          ...(await rpc.getSignatureStatuses([...needStatus, ...watchedDue], { signal })),
        ];
        watchedAnswer = answers.slice(needStatus.length);
        const statuses = answers.slice(0, needStatus.length);
        await overruleUnbacked(needStatus, statuses, signal);
        if (signal.aborted) return claimed.length;
        const missing = needStatus.filter((_, i) => !statuses[i]);
        const landing = statuses.some((s) => s && s.confirmationStatus !== "finalized");
        let currentSlot: number | null = null;
        if (missing.length > 0 && !signal.aborted) {
          currentSlot = await rpc.getSlot("finalized", { signal });
        }
        // Landed ones need the slot only to time their next look: it is read now and then (an
        // RPC limit is shared with the fetches), and estimated by the pace in between.
        else if (landing && !signal.aborted && slotReadDue(now())) {
          currentSlot = await rpc.getSlot("finalized", { signal }).catch(() => null);
        }
        if (signal.aborted) return claimed.length;
        // "Dropped" is for good: one endpoint's "not found" (a lagging node answers it for a
        // minute) is not enough. A signature this poll would drop is looked for on every
        // endpoint, statuses and transactions, first. Seen anywhere, it is not dropped, and
        // not taken as seen either (an endpoint showing what the others do not could be the
        // one lying): it waits as RPC trouble, and the next poll asks again. While an
        // endpoint cannot answer, or one alone shows it with nothing its fee payer signed, or
        // one has not moved the drop window since the first miss, the drop waits too, but only
        // for `dropHoldMs` after the signature was first missed: then the others' "not found"
        // stands, so no endpoint, dead, lying or frozen, keeps a phantom from being dropped.
        const held = new Set<string>();
        if (currentSlot !== null && rpc.findAnywhere) {
          const slot = currentSlot;
          const droppable = missing.filter((s) =>
            wouldDrop(rows.get(s), slot, profile, rpc.agreedMisses === true || overruled.has(s)),
          );
          // The look costs a getTransaction a signature on each endpoint, at the RPC's rate: a
          // round looks for as many as it may fetch, and the others wait their turn (their
          // drop due a round's fetch time later per such share). Looked for all at once, 2,000
          // never-seen signatures held the round (and every other job, a new one not polled
          // once) for over four minutes at 8 requests a second.
          const share = Math.max(1, fetchBudget());
          const dropping = droppable.slice(0, share);
          if (droppable.length > share) {
            const t = now();
            const turnMs = options.fetchSecondsPerRound * 1000;
            droppable.slice(share).forEach((s, i) => {
              held.add(s);
              dropDue.set(s, t + Math.ceil((i + 1) / share) * turnMs);
            });
          }
          if (dropping.length > 0) {
            try {
              const lookAt = now();
              const { found, unanswered, lowestSlot, slots, unbacked } = await rpc.findAnywhere(
                dropping,
                signal,
              );
              if (slots) endpointSlots.note(slots, lookAt);
              const t = now();
              const waited = (since: number) => `${Math.round((t - since) / 1000)} s`;
              for (const signature of found.keys()) {
                const since = rows.get(signature)?.notFoundSince ?? t;
                const alone = unbacked?.get(signature);
                // An endpoint's "found" backed by nothing signed holds the drop for the hold
                // only: a lie costs it nothing, and it held a phantom's job for ever.
                if (alone !== undefined && t - since >= options.dropHoldMs) {
                  noteDrop(
                    signature,
                    `shown only by ${alone.join(", ")}, with no transaction its fee payer signed, while the other endpoints answered not found for ${waited(since)}`,
                  );
                  continue;
                }
                held.add(signature);
                trouble.set(
                  signature,
                  alone === undefined
                    ? "one endpoint answers not found, another shows it: the endpoints disagree"
                    : `one endpoint answers not found, ${alone.join(", ")} shows it, with no transaction its fee payer signed: the drop waits ${Math.round(options.dropHoldMs / 1000)} s from the first miss`,
                );
              }
              for (const s of dropping) {
                const since = rows.get(s)?.notFoundSince ?? t;
                if (found.has(s)) continue;
                if (t - since >= options.dropHoldMs) {
                  if (unanswered.length > 0) {
                    noteDrop(
                      s,
                      `${unanswered.join(", ")} could not be asked; the others answered not found for ${waited(since)}`,
                    );
                  }
                  continue;
                }
                if (unanswered.length > 0) {
                  held.add(s);
                  trouble.set(
                    s,
                    `not found, and ${unanswered.join(", ")} could not be asked: the drop waits`,
                  );
                  continue;
                }
                // The first miss's slot is one endpoint's answer (a lagging one, or one lying far
                // too low): the window is counted on every endpoint's own slots since then.
                const behind = slots
                  ? endpointSlots.behind(slots, since, profile.dropAfterSlots)
                  : [];
                if (behind.length > 0) {
                  held.add(s);
                  trouble.set(
                    s,
                    `not found; ${behind
                      .map((b) =>
                        b.moved === null
                          ? `${b.endpoint} not read since the first miss`
                          : `${b.endpoint} ${b.moved} slots on`,
                      )
                      .join(
                        ", ",
                      )}: the drop waits until each endpoint is ${profile.dropAfterSlots} slots past the first miss`,
                  );
                } else if (
                  typeof lowestSlot === "number" &&
                  !wouldDrop(rows.get(s), lowestSlot, profile, rpc.agreedMisses === true)
                ) {
                  // The first miss's slot and this poll's may be two endpoints' (a lagging one
                  // and one that took over from it): the window is counted on every endpoint.
                  held.add(s);
                  trouble.set(
                    s,
                    `not found; the endpoints' finalized slots differ (${slot}, and ${lowestSlot} on the one furthest behind): the drop waits until each is ${profile.dropAfterSlots} slots past the first miss`,
                  );
                }
              }
            } catch (error) {
              if (isBusyError(error)) throw error;
              for (const s of dropping) {
                held.add(s);
                trouble.set(
                  s,
                  `not found, and not looked for on every endpoint: ${message(error)}`,
                );
              }
            }
            if (signal.aborted) return claimed.length;
          }
        }
        // A slice at a time: a round's 2,000 signatures in one synchronous stretch held the
        // event loop (the proxy's) for tens of ms, and the write lock that long.
        const t = now();
        if (currentSlot !== null) slotClock.observe(currentSlot, t);
        const pace = slotClock.msPerSlot();
        const finalized = currentSlot ?? slotClock.estimate(t);
        if (landing && pace !== null && finalized !== null) {
          statuses.forEach((s, i) => {
            if (!s || s.confirmationStatus === "finalized" || s.disagreement) return;
            // Final once the finalized slot reaches it; a slot's margin for the node's lag.
            finalityDue.set(needStatus[i]!, t + (Math.max(0, s.slot - finalized) + 1) * pace);
          });
        }
        const polled = needStatus
          .map((signature, i) => ({ signature, status: statuses[i] ?? null }))
          .filter((p) => !held.has(p.signature));
        // A status the other endpoints overruled is their agreed "not found": dropped like one
        // never seen once past the window, whatever it was shown as before.
        const slices = [
          ...chunks(
            polled.filter((p) => !overruled.has(p.signature)),
            STATUS_SLICE,
          ).map((slice) => ({ slice, agreed: rpc.agreedMisses === true })),
          ...chunks(
            polled.filter((p) => overruled.has(p.signature)),
            STATUS_SLICE,
          ).map((slice) => ({ slice, agreed: true })),
        ];
        let firstMisses = false;
        for (const { slice, agreed } of slices) {
          const after = await signatures.recordStatuses(
            slice,
            {
              currentSlot,
              dropAfterSlots: profile.dropAfterSlots,
              agreedMisses: agreed,
              t,
            },
            rows,
          );
          for (const [signature, row] of after) {
            rows.set(signature, row);
            if (row.notFoundSince === t && row.state !== "dropped") firstMisses = true;
          }
          await yieldToEventLoop();
        }
        // Each endpoint's slot, read after the first misses are written: where each endpoint's
        // count of their drop window starts (see endpoint-slots.ts). Unread, a drop waits.
        if (firstMisses && rpc.finalizedSlots && !signal.aborted) {
          const read = await rpc.finalizedSlots(signal).catch(() => null);
          if (read) endpointSlots.note(read.slots, t);
        }
        // When a never-seen signature may be dropped: the store drops it once the finalized
        // slot is past its first miss's by `dropAfterSlots`; a slot's margin for the node's lag.
        if (pace !== null && finalized !== null) {
          for (const { signature, status } of polled) {
            const row = rows.get(signature);
            if (status !== null || row?.state !== "unknown" || row.notFoundSlot === null) continue;
            const slots = row.notFoundSlot + profile.dropAfterSlots + 2 - finalized;
            dropDue.set(signature, t + Math.max(0, slots) * pace);
          }
        }
        statuses.forEach((s, i) => {
          if (s?.disagreement) disagreements.set(needStatus[i]!, s.disagreement);
        });
      } catch (error) {
        if (isBusyError(error)) throw error; // the database, not the node: retry the round
        // A stopped round decides nothing: the calls it cut short are nobody's trouble.
        if (signal.aborted) return claimed.length;
        watchedAnswer ??= "failed";
        for (const s of needStatus) trouble.set(s, `getSignatureStatuses: ${message(error)}`);
      }
    }
    const madeDue =
      watchedDue.length === 0 || signal.aborted
        ? 0
        : await pollWatched(watchedDue, watchedAnswer, t, signal);

    const keep = (signature: string, row: SignatureRow | undefined) => {
      if (row) rows.set(signature, row);
    };
    // Facts by signature: stored ones, or, where the stored answer is one no longer read (see
    // `storedFacts`), those fetched again this round.
    const factsCache = new Map<string, TransactionFacts | null>();
    const storedOf = (sig: string) => {
      const row = rows.get(sig);
      if (!row || row.facts === null) return undefined;
      let facts = factsCache.get(sig);
      if (facts === undefined) {
        facts = storedFacts(row);
        factsCache.set(sig, facts);
      }
      return facts;
    };
    const factsOf = (sig: string) => storedOf(sig) ?? undefined;
    // The jobs still claimed: those handed back are neither fetched for nor decided here.
    const unfetched = [...new Set(claimed.flatMap((j) => jobSignatures(j)))].filter((s) => {
      const row = rows.get(s);
      if (row?.state !== "finalized" || trouble.has(s)) return false;
      return row.facts === null || storedOf(s) === null;
    });
    const { kept, handBack, toFetch } = shareOut(claimed, unfetched, fetchBudget());
    if (handBack.length > 0) {
      await queue.releaseLeases(owner, handBack);
      claimed = kept;
    }
    // Fetches run while the jobs whose transactions are already in are decided: the RPC stays
    // busy through the database writes, so a round costs about its fetches' time at the rate.
    const fetches = new PQueue({ concurrency: options.fetchConcurrency });
    const fetched = new Map<string, Promise<void>>();
    // Fetched transactions are stored several to a transaction instead of a commit each (WAL
    // writes on SQLite, a WAL flush on PostgreSQL): 6 to 10% less CPU per verified job in a
    // scratch round. A fetch hands its transaction over and frees its slot at once; a batch is
    // stored when it holds a full slot's worth (fetchConcurrency), when no fetch of the round is
    // still out to join it, or STORE_WAIT_MS after its first, and what is left when the round
    // ends at once. A round of a few fetches (one job's two) waited the whole STORE_WAIT_MS
    // for fetches that were never coming before its jobs were decided.
    const toStore: {
      item: FetchedItem;
      resolve: (row: SignatureRow | undefined) => void;
      reject: (error: unknown) => void;
    }[] = [];
    const storing = new Set<Promise<unknown>>();
    /** Signatures whose fetch started; the round ends once their transactions are stored. */
    const started = new Set<string>();
    let ending = false;
    let storeTimer: NodeJS.Timeout | undefined;
    /** Fetches of the round whose answer has not come back yet (queued or in flight). */
    let fetchesOut = toFetch.length;
    /**
     * The write lock another process held past the busy timeout, seen by a store of this round:
     * the round is retried as a whole, so what is fetched after it is not stored. Each such
     * store waited out SQLite's busy timeout again, on the event loop, one per fetch in flight:
     * `verify --timeout 30s` beside a held lock ended after 68 s, its deadline's timer unrun.
     */
    let lockedOut: unknown;
    const storeBatch = () => {
      clearTimeout(storeTimer);
      storeTimer = undefined;
      const batch = toStore.splice(0);
      if (batch.length === 0) return;
      const items = batch.map((b) => b.item);
      const stored = (
        lockedOut === undefined ? signatures.recordFetchedAll(items) : Promise.reject(lockedOut)
      ).then(
        (rows) => {
          for (const b of batch) b.resolve(rows.get(b.item.signature));
        },
        (error: unknown) => {
          if (isBusyError(error)) lockedOut ??= error;
          for (const b of batch) b.reject(error);
        },
      );
      storing.add(stored);
      void stored.finally(() => storing.delete(stored));
    };
    const storeFetched = (signature: string, result: FetchedItem["fetched"]) =>
      new Promise<SignatureRow | undefined>((resolve, reject) => {
        const memoJob = memoJobOf(profile, result.facts.memos);
        toStore.push({ item: { signature, fetched: result, t: now(), memoJob }, resolve, reject });
        if (ending || fetchesOut === 0 || toStore.length >= options.fetchConcurrency) storeBatch();
        else storeTimer ??= setTimeout(storeBatch, STORE_WAIT_MS);
      });
    /** What a database failure while storing a fetch means: busy fails the round, else trouble. */
    const storeFailed = (signature: string, error: unknown) => {
      // The database, not the node, was in the way: the round is retried as a whole.
      if (isBusyError(error)) throw error;
      trouble.set(signature, `storing the transaction: ${message(error)}`);
    };
    /** What a fetch's answer means for its signature: stored, a miss, or trouble. */
    const takeAnswer = async (signature: string, outcome: FetchOutcome) => {
      if (!outcome) return;
      if (outcome.ok) {
        const { result } = outcome;
        // Whatever RPC the verifier is given, a block time the chain cannot have is the
        // node's trouble like an answer that does not parse: one no date held stopped every
        // slice it was in, and a job is never judged by it.
        const wrong =
          result?.facts.blockTime == null
            ? null
            : implausibleBlockTime(result.facts.blockTime, now());
        if (wrong !== null) {
          trouble.set(signature, `getTransaction: malformed transaction: ${wrong}`);
          return;
        }
        // Stored facts are never written over: facts fetched again for an answer no longer
        // read serve this round.
        if (result !== null && factsCache.get(signature) === null) {
          factsCache.set(signature, result.facts);
        }
        try {
          if (lockedOut !== undefined) throw lockedOut;
          keep(
            signature,
            result === null
              ? // The status said finalized but no endpoint returned it.
                await signatures.recordFetchMiss(signature, options.maxFetchMisses, {
                  t: now(),
                  minSpanMs: options.fetchMissSpanMs,
                })
              : await storeFetched(signature, result),
          );
        } catch (error) {
          storeFailed(signature, error);
        }
        return;
      }
      const { error } = outcome;
      if (isBusyError(error)) throw error;
      if (error instanceof RpcDisagreementError) {
        disagreements.set(signature, error.disagreement);
        return;
      }
      // An answer that does not parse, or is another signature's transaction, is the
      // node's trouble, not a sign that the transaction is gone: retried with backoff, never
      // counted as a miss (a node lying for ten seconds made honest jobs unverifiable).
      trouble.set(signature, `getTransaction: ${message(error)}`);
    };
    for (const signature of toFetch) {
      const done = fetches
        .add(async () => {
          if (signal.aborted) return null;
          started.add(signature);
          try {
            return {
              ok: true as const,
              result: await rpc.getTransaction(signature, "finalized", { signal }),
            };
          } catch (error) {
            // A stopped round leaves the signature as it was: not trouble, not a miss.
            if (signal.aborted) return null;
            return { ok: false as const, error };
          }
        })
        .then(async (outcome) => {
          fetchesOut--;
          try {
            await takeAnswer(signature, outcome);
          } finally {
            // The last answer in: nothing else of the round will join the batch waiting.
            if (fetchesOut === 0) storeBatch();
          }
        });
      // Awaited by the slice of its jobs; a rejection seen first here is not unhandled.
      done.catch(() => {});
      fetched.set(signature, done);
    }
    /** Waits for the fetches a slice needs; a database failure in any of them fails the round. */
    const fetchesOf = (slice: readonly WaitingJob[]) =>
      Promise.all(slice.flatMap((job) => jobSignatures(job).flatMap((s) => fetched.get(s) ?? [])));

    /** Dropped or pruned: no endpoint serves it, so its job is judged without it. */
    const unserved = (sig: string) => {
      const state = rows.get(sig)?.state;
      return state === "dropped" || state === "pruned";
    };
    const named = new Map<string, string[]>();
    const namedTotal = new Map<string, number>();
    const namesAny = new Set<string>();
    /**
     * Which jobs name the signatures of a slice's jobs whose transactions are all known (only
     * those are evaluated; a signature no endpoint serves is judged missing, not waited for):
     * asked once per signature per round. A memo naming one job that the list leaves out (past
     * its cap, or named only by a conflicting receipt) is asked about directly: that job may
     * own the transaction.
     */
    async function nameSignatures(slice: readonly DecideJob[]) {
      const sigs = [
        ...new Set(
          slice
            .map((job) => jobSignatures(job).filter((s) => !unserved(s)))
            .filter((own) => own.every((s) => factsOf(s) !== undefined))
            .flat(),
        ),
      ].filter((s) => !namedTotal.has(s));
      if (sigs.length === 0) return;
      const found = await signatures.jobsNaming(sigs, MAX_NAMED_BY);
      for (const [sig, ids] of found.named) named.set(sig, ids);
      for (const [sig, n] of found.totals) namedTotal.set(sig, n);
      for (const sig of sigs) if (!namedTotal.has(sig)) namedTotal.set(sig, 0);
      const askNames: { jobId: string; signature: string }[] = [];
      const memoJobs: { signature: string; memoJob: string }[] = [];
      for (const signature of sigs) {
        const memoJob = memoJobOf(profile, factsOf(signature)!.memos);
        if (memoJob === null) continue;
        if (!(named.get(signature) ?? []).includes(memoJob)) {
          askNames.push({ jobId: memoJob, signature });
        }
        // A row stored without it (by the ledger reader, or before the column) gets it now:
        // until then every receipt naming the signature sends the memo's job back here.
        if (rows.get(signature)?.memoJob === null) memoJobs.push({ signature, memoJob });
      }
      for (const key of await signatures.namesAny(askNames)) namesAny.add(key);
      await signatures.recordMemoJobs(memoJobs);
    }
    const view = {
      row: (s: string) => rows.get(s),
      facts: factsOf,
      trouble,
      disagreements,
      finalityDue,
      dropDue,
      dropNotes,
      named,
      namedTotal,
      names: (jobId: string, signature: string) => namesAny.has(pairKey(jobId, signature)),
    };

    // Decide and write a few jobs at a time, yielding between slices: the proxy shares this
    // event loop, and a synchronous stretch of more than a millisecond or two shows in its p99.
    // Pins are read per slice: a vault learned from one job's lock binds the next job of its key.
    // Jobs left waiting this round (a signature neither fetched nor being fetched) are decided
    // without evaluation: their writes carry no check rows, so they go many to a transaction.
    const waits = (job: WaitingJob) =>
      jobSignatures(job).some((s) => !unserved(s) && factsOf(s) === undefined && !fetched.has(s));
    const slices = [
      ...chunks(
        claimed.filter((job) => waits(job)),
        WAITING_SLICE,
      ),
      ...chunks(
        claimed.filter((job) => !waits(job)),
        SLICE,
      ),
    ];
    /**
     * For each job of the slice, the credit vaults the locks of the other jobs naming its
     * settlement or refund drew on, and those jobs' workers: a settlement naming two jobs of two keys sends each
     * remainder home, and the job owning it counts the other key's return as refunded only
     * where it knows that vault for a customer's. Known by a clean job's pin alone, a key with
     * no clean job yet (the shared settlement fails both jobs) left it unaccounted, and the
     * figure hung on the order the jobs were judged in. A lock fetched this round is waited
     * for; one stored before is read from the store.
     */
    async function namerLockVaults(slice: readonly DecideJob[]): Promise<
      Map<
        string,
        {
          vaults: ReadonlySet<string>;
          workers: ReadonlySet<string>;
          closings: ReadonlyMap<string, readonly ClosingNamer[]>;
        }
      >
    > {
      const others = new Map<string, Set<string>>();
      const closingsOf = new Map<string, Set<string>>();
      /** A transaction carrying the settle or refund memos of two jobs or more. */
      const closesSeveral = (sig: string) => {
        const facts = factsOf(sig);
        if (facts === undefined) return false;
        const jobs = parseJobMemos(profile, facts.memos)
          .filter((m) => m.kind === "settle" || m.kind === "refund")
          .map((m) => m.jobId);
        return new Set(jobs).size > 1;
      };
      /** Jobs naming a signature of the slice's jobs: their rows are read for the split. */
      const namerIds = new Set<string>();
      for (const job of slice) {
        const closers = new Set([job.settlementTx, job.apiSettlementTx]);
        // Every signature the job names, not its settlement's alone: a job reads a transaction
        // carrying its settle or refund memo as a closing whatever named it (the jobs API
        // naming it the escrow, a conflicting receipt), and takes its part of it when the
        // owner gives that part up. Split only where the job named it as its settlement, the
        // owner gave up a part no job took (a report total below the chain's), or a job took
        // a part the owner kept (above it).
        for (const sig of jobSignatures(job)) {
          if (!closers.has(sig) && !closesSeveral(sig)) continue;
          for (const id of named.get(sig) ?? []) {
            if (id === job.jobId) continue;
            namerIds.add(id);
            const sigs = closingsOf.get(job.jobId) ?? new Set<string>();
            sigs.add(sig);
            closingsOf.set(job.jobId, sigs);
            if (!closers.has(sig)) continue;
            const set = others.get(job.jobId) ?? new Set<string>();
            set.add(id);
            others.set(job.jobId, set);
          }
        }
      }
      const out = new Map<
        string,
        {
          vaults: ReadonlySet<string>;
          workers: ReadonlySet<string>;
          closings: ReadonlyMap<string, readonly ClosingNamer[]>;
        }
      >();
      if (closingsOf.size === 0) return out;
      const inSlice = new Map(slice.map((j) => [j.jobId, j]));
      const otherRows = await queue.rowsOf([...namerIds].filter((id) => !inSlice.has(id)));
      const judgedRow = new Map(otherRows.map((r) => [r.jobId, r]));
      const namers = [...slice, ...otherRows];
      const rowOf = new Map(namers.map((r) => [r.jobId, r]));
      const workerOf = new Map(namers.map((r) => [r.jobId, r.worker ?? r.apiWorker]));
      const locksOf = new Map(
        namers.map((r) => [
          r.jobId,
          [...new Set([r.escrowTx, r.apiEscrowTx])].filter((s): s is string => s !== null),
        ]),
      );
      const lockSigs = [...new Set([...locksOf.values()].flat())];
      await Promise.all(lockSigs.flatMap((s) => fetched.get(s) ?? []));
      const missing = lockSigs.filter((s) => factsOf(s) === undefined);
      const loaded = missing.length > 0 ? await signatures.load(missing) : new Map();
      const lockFacts = (sig: string): TransactionFacts | undefined => {
        const known = factsOf(sig);
        if (known !== undefined) return known;
        const row = loaded.get(sig);
        if (row === undefined || row.facts === null) return undefined;
        try {
          return storedFacts(row) ?? undefined;
        } catch {
          return undefined;
        }
      };
      /** Given up on (dropped, pruned): a lock that moved nothing, not one still to come. */
      const givenUp = (sig: string) => {
        const state = (rows.get(sig) ?? loaded.get(sig))?.state;
        return state === "dropped" || state === "pruned";
      };
      const fetchedAt = (sig: string): number => (rows.get(sig) ?? loaded.get(sig))?.fetchedAt ?? 0;
      // Each shared closing read once per round: every job of the slice naming it sees the
      // same namers.
      const closingNamers = new Map<string, ClosingNamer[]>();
      /** Jobs judged before a lock their split reads was stored: sent back to be judged. */
      const stale = new Map<string, number>();
      const claimedIds = new Set(claimed.map((j) => j.jobId));
      for (const sigs of closingsOf.values()) {
        for (const sig of sigs) {
          if (closingNamers.has(sig)) continue;
          const list: ClosingNamer[] = [];
          let latest = fetchedAt(sig);
          for (const id of named.get(sig) ?? []) {
            if (!rowOf.has(id)) continue;
            const sigsOfLocks = (locksOf.get(id) ?? []).filter((l) => !givenUp(l));
            const facts = sigsOfLocks.map((l) => ({ signature: l, facts: lockFacts(l) }));
            const known = facts.every((f) => f.facts !== undefined);
            for (const l of sigsOfLocks) latest = Math.max(latest, fetchedAt(l));
            const row = rowOf.get(id)!;
            list.push({
              jobId: id,
              worker: workerOf.get(id) ?? null,
              charge:
                row.completionTokens === null
                  ? null
                  : usagePrice(profile, row, row.completionTokens),
              locks: known ? facts.map((f) => ({ signature: f.signature, facts: f.facts! })) : null,
            });
          }
          closingNamers.set(sig, list);
          if (list.some((n) => n.locks === null)) continue;
          for (const n of list) {
            const row = judgedRow.get(n.jobId);
            if (row === undefined || claimedIds.has(n.jobId)) continue;
            if (!finalVerdicts.includes(row.verdict) || row.leaseOwner !== null) continue;
            if ((row.verdictAt ?? 0) < latest)
              stale.set(n.jobId, Math.max(stale.get(n.jobId) ?? 0, latest));
          }
        }
      }
      // A namer judged before a lock of another namer was stored read the closing without that
      // lock: the whole of it, or its split, stayed in the wrong job's figures until that job
      // was judged again for another reason. Sent back now; once judged it is newer than every
      // lock and is left alone.
      if (stale.size > 0) {
        const before = Math.max(...stale.values());
        await queue.reopenStale([...stale.keys()], before, now());
      }
      for (const jobId of closingsOf.keys()) {
        const ids = others.get(jobId) ?? new Set<string>();
        const vaults = new Set<string>();
        const workers = new Set<string>();
        for (const id of ids) {
          const worker = workerOf.get(id);
          if (worker) workers.add(worker);
          for (const sig of locksOf.get(id) ?? []) {
            const facts = lockFacts(sig);
            if (facts === undefined || !facts.succeeded) continue;
            const reading = readLock(profile, facts);
            for (const m of reading.sources) {
              if (m.account !== reading.escrowAccount) vaults.add(m.account);
            }
          }
        }
        const closings = new Map<string, readonly ClosingNamer[]>();
        for (const sig of closingsOf.get(jobId) ?? []) closings.set(sig, closingNamers.get(sig)!);
        out.set(jobId, { vaults, workers, closings });
      }
      return out;
    }

    /**
     * Decides jobs whose checks may run: each read whole first (the claim read what deciding a
     * job still waiting needs), with the jobs naming their signatures, the pins and the credit
     * vault's balances. A job no longer stored is left out.
     */
    async function judge(jobs: readonly ClaimedJob[]): Promise<Decision[]> {
      const rows = new Map(
        (await queue.rowsOf(jobs.map((j) => j.jobId))).map((row) => [row.jobId, row]),
      );
      const slice = jobs.flatMap((job) => rows.get(job.jobId) ?? []);
      await nameSignatures(slice);
      const views = await custodyViews(
        deps.custody,
        profile,
        deps.configuredVaults,
        slice,
        factsOf,
      );
      const namerVaults = await namerLockVaults(slice);
      for (const [i, job] of slice.entries()) {
        const namer = namerVaults.get(job.jobId);
        if (namer !== undefined) {
          views[i]!.custody.namerVaults = namer.vaults;
          views[i]!.custody.namerWorkers = namer.workers;
          views[i]!.custody.closingNamers = namer.closings;
        }
      }
      const credits = await creditSpans(slice, factsOf);
      const cover = deps.escrowCover;
      const read = cover
        ? await deps.ledger.escrowCoverage(
            cover.vault,
            slice.map((j) => j.jobId),
          )
        : null;
      // Read wherever a scan ran (`serve`'s, or this nightly run's), whether or not one runs now.
      const unread =
        profile.escrowVault === null
          ? new Map()
          : await deps.ledger.escrowUnread(
              profile.escrowVault,
              slice.map((j) => j.jobId),
            );
      const t = now();
      const escrow = cover && read ? coverViewOf(cover, read, t) : null;
      return slice.map((job, i) =>
        decide(
          job,
          view,
          profile,
          views[i]!,
          { ...options, now: t },
          credits[i]!,
          escrow,
          unread.get(job.jobId),
        ),
      );
    }
    /**
     * The steps of `jobs` read final that paid out of escrow under another job's memo too: that
     * job keeps the transaction (or it is held for the scan), as when the escrow scan reads it.
     */
    async function judgeBeside(jobs: readonly ClaimedJob[]) {
      const vault = profile.escrowVault;
      if (vault === null) return;
      const steps = jobs.flatMap((job) =>
        jobSignatures(job).flatMap((signature) => {
          const facts = rows.get(signature)?.state === "finalized" ? factsOf(signature) : undefined;
          return facts === undefined ? [] : [{ job: job.jobId, signature, facts }];
        }),
      );
      const { kept, held } = await judgeNamedBeside(deps.ledger, profile, vault, steps, now());
      for (const jobId of new Set(kept.map((p) => p.job))) {
        const signatures = kept.filter((p) => p.job === jobId).map((p) => p.signature);
        deps.log.warn(
          { vault, jobId, signatures },
          "job judged again: escrow paid out under its memo in a transaction another job names",
        );
      }
      if (held.length > 0) {
        deps.log.info(
          { vault, held },
          "held for the escrow scan: escrow paid out under their memo in a transaction another job names",
        );
      }
    }
    try {
      for (const slice of slices) {
        await fetchesOf(slice);
        // Stopping: what was fetched is stored; the jobs go back to the queue with their leases.
        if (signal.aborted) break;
        // A job left waiting is decided on what the claim read: no checks run, so neither its
        // whole row, nor its signatures' namers, pins or balances are read.
        const timing = { ...options, now: now(), watchesUnseen: watch.size < WATCH_MAX };
        const decisions: Decision<WaitingJob>[] = [];
        const rest: ClaimedJob[] = [];
        for (const job of slice) {
          const waiting = waits(job) ? decideWaiting(job, view, profile, timing) : null;
          if (waiting === null) rest.push(job);
          else decisions.push(waiting);
        }
        if (rest.length > 0) decisions.push(...(await judge(rest)));
        // Before the verdicts: a keep that fails (a busy store, a crash) leaves them unwritten,
        // to be judged again, where after a written verdict nothing read the step again. A job
        // that gains the step, or names it, loses its lease here and is judged again.
        if (rest.length > 0) await judgeBeside(rest);
        await write(decisions, runId, judged);
        watchDecided(decisions, rows, timing.now);
        const held = decisions.flatMap((d) =>
          d.escrowWait ? [{ jobId: d.job.jobId, wait: d.escrowWait }] : [],
        );
        gateOf(deps.escrowCover)?.waiting(held);
        for (const { jobId, wait } of held) deps.log.debug({ jobId, ...wait }, waitMessage(wait));
        await yieldToEventLoop();
      }
    } catch (error) {
      // A verdict write that found the lock held: the fetches in flight store nothing either.
      if (isBusyError(error)) lockedOut ??= error;
      throw error;
    } finally {
      // Nothing of this round outlives it: fetches not started are dropped (their promises
      // never settle), those in flight end and what they fetched is stored at once.
      ending = true;
      fetches.clear();
      await fetches.onIdle();
      storeBatch();
      await Promise.allSettled([...started].map((s) => fetched.get(s)));
      await Promise.allSettled([...storing]);
    }
    return claimed.length + madeDue;
  };
  return Object.assign(round, {
    nextWatchedAt() {
      let next: number | null = null;
      for (const entry of watch.values()) {
        if (next === null || entry.pollAt < next) next = entry.pollAt;
      }
      return next;
    },
  });

  /** getTransaction calls this round may make: its share of the RPC's current rate. */
  /**
   * Looks on every endpoint for the signatures shown short of finalized for longer than the
   * drop hold (and than the drop window at the slots' pace). One only some endpoints show,
   * none of them with a transaction its fee payer signed, is taken as not found (its status
   * set to null in `statuses`), and remembered as overruled: the drop then goes by the others,
   * and the verdict names the endpoints that showed it. A real transaction is served signed
   * and is never overruled.
   */
  async function overruleUnbacked(
    asked: readonly string[],
    statuses: (SignatureStatusLike | null)[],
    signal: AbortSignal,
  ): Promise<void> {
    const t = now();
    const pace = slotClock.msPerSlot();
    const bound = Math.max(options.dropHoldMs, pace === null ? 0 : profile.dropAfterSlots * pace);
    const stale: string[] = [];
    asked.forEach((signature, i) => {
      const status = statuses[i];
      if (!status || status.confirmationStatus === "finalized" || status.disagreement) {
        unfinal.delete(signature);
        if (status) overruled.delete(signature);
        return;
      }
      const since = unfinal.get(signature);
      if (since === undefined || since > t) {
        unfinal.set(signature, t);
        if (unfinal.size > DROP_NOTES_KEPT) unfinal.delete(unfinal.keys().next().value!);
      } else if (overruled.has(signature) || t - since >= bound) stale.push(signature);
    });
    if (stale.length === 0 || !rpc.findAnywhere) return;
    let look: Awaited<ReturnType<NonNullable<VerifierRpc["findAnywhere"]>>>;
    try {
      look = await rpc.findAnywhere(stale.slice(0, Math.max(1, fetchBudget())), signal);
    } catch (error) {
      if (isBusyError(error)) throw error;
      return;
    }
    const overrule = new Set<string>();
    for (const [signature, by] of look.unbacked ?? []) {
      if (look.unanswered.length > 0) continue;
      overrule.add(signature);
      overruled.set(signature, [...by]);
      if (overruled.size > DROP_NOTES_KEPT) overruled.delete(overruled.keys().next().value!);
      const since = unfinal.get(signature) ?? t;
      noteDrop(
        signature,
        `shown ${statuses[asked.indexOf(signature)]?.confirmationStatus ?? "landed"} only by ${by.join(", ")}, never finalized and with no transaction its fee payer signed, while the other endpoints answered not found for ${Math.round((t - since) / 1000)} s`,
      );
    }
    for (const signature of stale) {
      if (!overrule.has(signature)) overruled.delete(signature);
    }
    asked.forEach((signature, i) => {
      if (overruled.has(signature)) statuses[i] = null;
    });
  }

  function fetchBudget(): number {
    const rate = rpc.requestRate?.();
    if (rate === undefined || !Number.isFinite(rate)) return Number.POSITIVE_INFINITY;
    return Math.max(options.fetchConcurrency, Math.ceil(rate * options.fetchSecondsPerRound));
  }

  /**
   * Per job: the ledger's balances of the credit vault its lock came from (the lock's one
   * source account), from the lock through the response; null without a credits header, a
   * fetched escrow or a single source.
   */
  async function creditSpans(
    slice: readonly (DecideJob & { recordedAt: number; respondedAt?: number | null })[],
    factsOf: (signature: string) => TransactionFacts | undefined,
  ): Promise<(CreditsSpan | null)[]> {
    const requests = slice.flatMap((job) => {
      const lockTx = job.escrowTx ?? job.apiEscrowTx;
      const facts = lockTx === null ? undefined : factsOf(lockTx);
      if (lockTx === null || !facts || job.creditsRemainingUnits == null) return [];
      const vaults = [...new Set(readLock(profile, facts).sources.map((s) => s.account))];
      if (vaults.length !== 1) return [];
      return [
        {
          jobId: job.jobId,
          vault: vaults[0]!,
          lockTx,
          recordedAt: job.recordedAt,
          respondedAt: job.respondedAt ?? null,
          settlementTx: job.settlementTx,
        },
      ];
    });
    const spans = requests.length > 0 ? await deps.ledger.creditSpans(requests) : new Map();
    const vaultOf = new Map(requests.map((r) => [r.jobId, r.vault]));
    return slice.map((job) => {
      const span = spans.get(job.jobId);
      const vault = vaultOf.get(job.jobId);
      return span && vault ? { vault, ...span } : null;
    });
  }

  /** Writes one slice's decisions, guarded by this owner's leases, and logs the final ones. */
  async function write(
    decisions: Decision<WaitingJob>[],
    runId: number | null,
    judged?: Set<string>,
  ) {
    // A wait longer than the verifier's own (the backfill's next ask, a jobs API answer due by
    // a recording time the clock has since gone back past) is looked at again within it.
    const furthest = now() + longestLook;
    const writes = decisions.map(
      (d): VerdictWrite => ({
        job: d.job,
        verdict: d.verdict,
        nextVerifyAt: Math.min(d.nextVerifyAt, furthest),
        lastError: d.lastError,
        commitment: d.commitment,
        evaluation: d.evaluation,
        checks: d.evaluation?.checks ?? d.checks,
        ...(d.pins ? { pins: d.pins } : {}),
      }),
    );
    let final: boolean[];
    try {
      final = await deps.verdicts.write(writes, { owner, runId, t: now() });
    } catch (error) {
      // The database, not a job, was in the way: the round is retried as a whole.
      if (isBusyError(error)) throw error;
      // One job's write failed the slice's transaction (a value no column holds, say): the
      // slice is written again job by job, so that job alone is held back, not its neighbours
      // round after round.
      final = [];
      const refusals = new Map<string, unknown>();
      for (const w of writes) final.push(await writeAlone(w, runId, refusals));
    }
    decisions.forEach((d, i) => {
      if (!final[i]) return;
      judged?.add(d.job.jobId);
      const checks = d.evaluation?.checks ?? d.checks ?? [];
      deps.log.info(
        {
          jobId: d.job.jobId,
          verdict: d.verdict,
          failed: checks.filter((c) => c.outcome === "fail").map((c) => c.name),
          // Judged before and sent back since: the line of the write that sent it back says why.
          ...(d.job.verdictAt === null
            ? {}
            : { judgedAgain: { after: new Date(d.job.verdictAt).toISOString() } }),
        },
        "job verdict",
      );
    });
  }

  /**
   * Writes one decision on its own. When it still fails, the job is parked as `error` with the
   * failure as its last error, due again after the error backoff (growing with its attempts),
   * and the round goes on; a failure to park it fails the round. `refusals`, by pin: a write
   * refused on a row another session holds (a job its pin reopens) after waits of seconds (4.3 s
   * on PostgreSQL); a later job of the slice making the same pin is parked with that refusal
   * without waiting again: every job of a key learning its vault waited as long, one by one.
   */
  async function writeAlone(
    w: VerdictWrite,
    runId: number | null,
    refusals: Map<string, unknown>,
  ): Promise<boolean> {
    const pins = pinsOf(w);
    try {
      const earlier = pins.map((pin) => refusals.get(pin)).find((e) => e !== undefined);
      if (earlier !== undefined) throw earlier;
      const [final] = await deps.verdicts.write([w], { owner, runId, t: now() });
      return final ?? false;
    } catch (error) {
      if (isBusyError(error)) throw error;
      if (error instanceof AppError && error.code === "locked") {
        for (const pin of pins) refusals.set(pin, error);
      }
      const t = now();
      const lastError = `${VERDICT_NOT_WRITTEN}${message(error)}`;
      deps.log.error({ jobId: w.job.jobId, err: error }, "verdict not written; job held back");
      const delay = backoff(w.job.verifyAttempts, {
        baseMs: options.errorBackoffMs,
        maxMs: options.maxBackoffMs,
        jitter: [0.75, 1.25],
      });
      await deps.verdicts.write(
        [
          {
            job: w.job,
            verdict: "error",
            nextVerifyAt: t + Math.round(delay),
            lastError,
            commitment: w.commitment,
            evaluation: null,
            checks: null,
          },
        ],
        { owner, runId, t },
      );
      return false;
    }
  }
}

/**
 * What a verdict write pins, which may reopen other jobs: its key's credit vault, the treasury.
 */
function pinsOf(w: VerdictWrite): string[] {
  const learned = w.evaluation?.learned;
  const pins: string[] = [];
  if (learned?.creditVault) pins.push(`vault ${w.job.keyFingerprint} ${learned.creditVault}`);
  if (learned?.treasuryCandidate) pins.push("treasury");
  return pins;
}

/**
 * Would this poll's "not found" drop the signature? The store's rule (`recordStatuses`): never
 * seen, or seen only at processed (at any commitment short of finalized when k endpoints agree
 * it is missing), and missing for more than `dropAfterSlots` since the first miss.
 */
/** Notes on drops kept for their verdicts' reasons (see `dropNotes`). */
const DROP_NOTES_KEPT = 10_000;

function wouldDrop(
  row: SignatureRow | undefined,
  currentSlot: number,
  profile: Profile,
  agreedMisses: boolean,
) {
  if (!row || row.notFoundSlot === null) return false;
  const droppable =
    row.state === "unknown" ||
    (row.state === "landed" && (row.commitment === "processed" || agreedMisses));
  return droppable && currentSlot > row.notFoundSlot + profile.dropAfterSlots;
}

/**
 * Splits a claim by fetch work: jobs are kept, in claim order, while the transactions they still
 * need fetched fit in `budget` (the first such job always does, so every round moves); a job
 * needing nothing fetched (waiting for finality, or with its facts stored) is always kept. The
 * others are handed back to the queue. Returns the signatures the kept jobs need fetched.
 */
export function shareOut<J extends WaitingJob>(
  claimed: readonly J[],
  unfetched: readonly string[],
  budget: number,
): { kept: J[]; handBack: string[]; toFetch: string[] } {
  if (unfetched.length <= budget)
    return { kept: [...claimed], handBack: [], toFetch: [...unfetched] };
  const pending = new Set(unfetched);
  const planned = new Set<string>();
  const kept: J[] = [];
  const handBack: string[] = [];
  for (const job of claimed) {
    const needs = jobSignatures(job).filter((s) => pending.has(s) && !planned.has(s));
    if (needs.length === 0 || planned.size === 0 || planned.size + needs.length <= budget) {
      kept.push(job);
      for (const s of needs) planned.add(s);
    } else {
      handBack.push(job.jobId);
    }
  }
  return { kept, handBack, toFetch: [...planned] };
}

/**
 * Stored facts, or facts derived again from the stored raw response when they were stored by
 * an older version that read fewer facts (the raw response is the evidence; facts are derived).
 * Facts stored before a transfer's or burn's signing authority was kept are read again too:
 * without it, a release a delegate signed that also names the escrow authority unsigned after
 * the signer passes `escrow.vault` each time the job is judged again (a reverify). So are facts
 * that hold no token balances after the transaction: stored from an answer without them,
 * before such an answer was unreadable, they said no money moved, and an honest settlement
 * paid nobody. Null when the raw response no longer reads (that answer, say): the transaction
 * is fetched again.
 */
function storedFacts(row: SignatureRow): TransactionFacts | null {
  try {
    const facts = factsFromJson(row.facts);
    if (row.raw === null || !(signersUnkept(facts) || facts.ownersAfter === undefined)) {
      return facts;
    }
  } catch (error) {
    if (row.raw === null) throw error;
  }
  return reparseStored(row.raw, row.signature);
}

/** A transfer or burn out of an account whose signing authority the facts do not keep. */
function signersUnkept(facts: TransactionFacts): boolean {
  return facts.tokenInstructions.some(
    (ix) => ix.source !== undefined && MOVEMENT_KINDS.has(ix.kind) && ix.authority === undefined,
  );
}

export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
