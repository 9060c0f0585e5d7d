import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { setTimeout as delay } from "node:timers/promises";
import PQueue from "p-queue";
import { isBusyError, retryWhileBusy, type Store } from "../db/client.js";
import { deadlineSignal } from "../deadline.js";
import { aliveOnThisHost, deadOnThisHost, ownStartTime, thisHost } from "../host-identity.js";
import type { Logger } from "../log.js";
import type { RoundPacer } from "../request-pressure.js";
import { createSleeper } from "../retry.js";
import { type CustodyConfig, createCustodyStore } from "../store/custody.js";
import { createJobQueueStore, type QueueFilter, type VerdictCounts } from "../store/job-queue.js";
import { createLedgerStore } from "../store/ledger.js";
import { createLockStore } from "../store/locks.js";
import { createSignatureStore } from "../store/signatures.js";
import { createVerdictStore } from "../store/verdicts.js";
import {
  createVerificationRunStore,
  heartbeatName,
  type NightlyRunOutcome,
  type RunStatus,
} from "../store/verification-runs.js";
import type { EscrowCoverConfig } from "./escrow-cover.js";
import { createProfileSweep, type ProfileSweep } from "./profile-sweep.js";
import { type Profile, profileId } from "./profiles.js";
import { createRound, message } from "./round.js";
import { defaultVerifierOptions, type VerifierOptions } from "./verifier-options.js";
import type { VerifierRpc } from "./verifier-rpc.js";

export { defaultVerifierOptions, type VerifierOptions } from "./verifier-options.js";
export type { SignatureStatusLike, VerifierRpc } from "./verifier-rpc.js";

/**
 * The verifier: its loop and its public API. All state lives in SQLite (src/store: the work
 * queue, the signature states, the verdicts, the runs); this loop only decides when to look
 * again. One round (round.ts) claims due jobs under a lease, asks the chain, decides each job
 * (decide.ts, the checks in checks.ts) and writes the verdicts (src/store/verdicts.ts).
 * Invariants:
 * - a job is worked on only under a lease; an expired lease is reclaimable, so a crash never
 *   loses a job;
 * - a verdict, its amounts and its check rows are written in one transaction that first
 *   re-checks the lease owner, so a result is applied once or not at all;
 * - a finalized transaction is fetched once and shared by every job naming it;
 * - no RPC call is made inside a database transaction.
 */

/** Which jobs a run covers: created in [from, to), or these ids. */
export type VerifyFilter = QueueFilter;

export type RunProgress = VerdictCounts;

export interface RunSummary extends RunProgress {
  runId: number;
  status: "completed" | "timed_out" | "interrupted";
  durationMs: number;
  /**
   * A round claimed nothing while a job was due before it began: that job's row another
   * database session held locked (see `waitForDue`), at some time during the run.
   */
  rowsHeld?: true;
  /**
   * Why the run's last round could not read or write the database (a lock another session held
   * past the statement timeout, no connection slot left), when the run ended so: its open jobs
   * wait on the database, not on the RPC.
   */
  databaseTrouble?: string;
  /**
   * Final jobs another profile had judged before the run began, sent back to be judged under
   * this one (src/verify/profile-sweep.ts).
   */
  rejudged: number;
}

export interface Verifier {
  /** Runs the continuous loop (serve): polls on an interval, wakes early on `notify()`. */
  start(): void;
  /** Stops the loop, lets in-flight work finish and releases this owner's leases. */
  stop(): Promise<void>;
  /** New jobs arrived: look now. */
  notify(): void;
  /** These open jobs may be judged now (what they waited for came): made due, and the loop woken. */
  lookAgain(jobIds: readonly string[]): Promise<void>;
  /** Verifies the jobs in `filter` until each has a final verdict or the time is up. */
  runUntilSettled(filter: VerifyFilter, opts: SettleOptions): Promise<RunSummary>;
  /**
   * Judges what of `jobIds` it can now, waiting for none of them: rounds over them while a
   * round finds work and `timeoutMs` lasts. A job leased by another verifier, or put off (its
   * transactions not final, the scan or the ledger not past it, a poll to come), is left as it
   * is. Verdicts go on run `runId` (its check rows); its row is not written. Resolves with the
   * jobs it wrote a final verdict for; a database busy or away ends it (what it judged stands).
   */
  judgeDue(jobIds: readonly string[], opts: JudgeDueOptions): Promise<{ judged: string[] }>;
  /**
   * Closes a run kept open (`holdRun`) with its status and the night's outcome, in one write,
   * and stops its heartbeat. A run not held (it failed meanwhile) keeps its status; the
   * outcome joins its summary.
   */
  endRun(runId: number, status: RunStatus, outcome: NightlyRunOutcome, t: number): Promise<void>;
  /** Sends the job back to the queue (signatures given up on are looked for again) and wakes the loop. */
  reverify(jobId: string): Promise<void>;
  /** Resolves once the loop has nothing due (every job final or waiting for a later time). */
  onIdle(): Promise<void>;
  /** This verifier's lease owner id. */
  readonly owner: string;
}

export interface SettleOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  onProgress?(p: RunProgress): void;
  /**
   * Keeps the run's row `running`, with its heartbeat, once the jobs settle, until `endRun`:
   * a nightly reads the ledger after its jobs settled, and a row already `completed` then
   * showed a night killed in that phase (kill -9, OOM) as a finished one. Kept `running`, the
   * row of a dead process is closed `abandoned` by the next sweep.
   */
  holdRun?: boolean;
  /** Goes on with this held run (its row and heartbeat) rather than opening another. */
  runId?: number;
}

export interface JudgeDueOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** The run its verdicts are written under (a nightly's held row), if any. */
  runId?: number;
}

export interface VerifierDeps {
  store: Store;
  rpc: VerifierRpc;
  profile: Profile;
  log: Logger;
  now?: () => number;
  /** Lease owner id; random by default (unique per process). */
  owner?: string;
  /** Credit vaults the deployment configured (`CREDIT_VAULTS`). */
  custody?: CustodyConfig;
  options?: Partial<VerifierOptions>;
  /**
   * Requests first (src/request-pressure.ts): after a round during which the process began
   * answering requests, the loop pauses as the pacer says. None: rounds follow each other.
   */
  pacer?: RoundPacer;
  /**
   * Where verdicts wait for the escrow scan to read past the job (src/verify/escrow-cover.ts):
   * this process's scan and the gate to it, or another process's while it runs. None: they do
   * not wait.
   */
  escrowCover?: EscrowCoverConfig;
}

/** Creates the verifier over a store, an RPC pool and a profile. */
export function createVerifier(deps: VerifierDeps): Verifier {
  const { store, rpc, profile, log } = deps;
  const hostNow = deps.now ?? Date.now;
  const owner = deps.owner ?? defaultOwner();
  const options: VerifierOptions = { ...defaultVerifierOptions, ...deps.options };
  const custodyConfig = deps.custody ?? { vaults: [], byKey: {} };
  const queue = createJobQueueStore(store);
  const runs = createVerificationRunStore(store);
  /**
   * The time job leases and run heartbeats are written and judged by: on PostgreSQL the
   * server's clock, which verifiers on every host read alike. Judged by each host's wall clock,
   * a host ahead of another by more than a lease took its live leases (two verifiers on the
   * same jobs, the first one's RPC work lost) and closed its live run as abandoned.
   */
  const locks = createLockStore(store);
  /**
   * How far the shared clock is ahead of this host's, measured at each `sharedNow`: 0 on
   * SQLite. Due times (`next_verify_at`) are written on `now`, so on PostgreSQL a job put off
   * by a host whose clock is ahead is due for the others when meant, not that much later (a
   * host behind no longer made them due at once, claimed round after round).
   */
  let sharedOffset = 0;
  const now = () => hostNow() + sharedOffset;
  async function sharedNow(): Promise<number> {
    const host = hostNow();
    const shared = await locks.sharedNow(host);
    sharedOffset = shared - host;
    return shared;
  }
  /** The profile every verdict of this verifier is written under (`jobs.verdict_profile`). */
  const judgedBy = profileId(profile);
  const round = createRound({
    queue,
    signatures: createSignatureStore(store),
    verdicts: createVerdictStore(store, profile, judgedBy),
    custody: createCustodyStore(store, profile, custodyConfig),
    ledger: createLedgerStore(store),
    ...(deps.escrowCover ? { escrowCover: deps.escrowCover } : {}),
    configuredVaults: new Set(custodyConfig.vaults),
    rpc,
    profile,
    options,
    owner,
    now,
    sharedNow,
    // On SQLite leases are written and judged by the host's wall clock: stepped forward past a
    // lease (NTP, a VM resumed), every lease of a live verifier beside this one (the nightly
    // run beside serve) looked expired, and both judged the same jobs, the first one's RPC work
    // and verdicts thrown away. A process of this host that runs now still holds its leases;
    // one that is gone is known dead and its leases are released. On PostgreSQL leases are
    // judged by the server's clock, which no host's step moves.
    ...(store.kind === "sqlite" ? { liveOwners: () => ownersBeatingHere() } : {}),
    log,
  });

  /**
   * Each other owner's heartbeat (`verifier:<owner>` in `locks`) as last read, and when (this
   * process's monotonic clock) it was first read so.
   */
  const beatsSeen = new Map<string, { expiresAt: number | null; since: number }>();

  /**
   * The owners whose leases a claim leaves alone on SQLite: alive on this host, and beating
   * their heartbeat into this database. Alive alone was not enough: a copy of a live store
   * (`VACUUM INTO`, a backup) holds the run row and job leases of the `serve` still working on
   * the original file, and a `verify` run on the copy never took them (the jobs stayed
   * `awaiting_finality` until its --timeout, 15 minutes of a nightly). A heartbeat unchanged for
   * a lease, on this process's monotonic clock, is one no process writes here: a live owner
   * renews it three times a lease, whatever a step of the wall clock did to its value.
   */
  async function ownersBeatingHere(): Promise<string[]> {
    const alive = (await runs.runningOwners(owner)).filter(ownerIsAlive);
    const t = performance.now();
    const beating: string[] = [];
    for (const other of alive) {
      const expiresAt = (await locks.holder(heartbeatName(other)))?.expiresAt ?? null;
      const seen = beatsSeen.get(other);
      if (seen === undefined || seen.expiresAt !== expiresAt) {
        beatsSeen.set(other, { expiresAt, since: t });
        beating.push(other);
      } else if (t - seen.since <= options.leaseMs) {
        beating.push(other);
      }
    }
    return beating;
  }

  let running = false;
  let stopping = false;
  /** Aborted by `stop()`: the round in flight stops between RPC calls. */
  // Every RPC call of a round listens on its round's signal (and stops listening when done):
  // many at once is the normal case, not a leak.
  const abortable = () => {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    return controller;
  };
  let roundsAbort = abortable();
  let loopDone: Promise<void> | null = null;
  /** `notify()` with nobody asleep makes the next sleep return at once. */
  const sleeper = createSleeper({ rememberWake: true });
  let idleWaiters: (() => void)[] = [];
  /** Serialises rounds so the loop and `runUntilSettled` never race on this owner's leases. */
  const rounds = new PQueue({ concurrency: 1 });

  /** The final verdicts of other profiles, in `filter`, judged again from now on. */
  const profileSweep = (filter: VerifyFilter | null) =>
    createProfileSweep({
      queue,
      judgedBy,
      before: now(),
      filter,
      now,
      batch: options.claimBatchSize,
      intervalMs: options.pollIntervalMs,
    });

  /** One step of a sweep; a failure (a busy database) is logged, and the next step tries again. */
  async function sweepStep(sweep: ProfileSweep, idle: boolean): Promise<number> {
    try {
      const reopened = await sweep.step(idle);
      if (reopened > 0) {
        log.info(
          { reopened, total: sweep.reopened, profile: judgedBy },
          "jobs judged under another profile queued to be judged again",
        );
      }
      return reopened;
    } catch (error) {
      log.warn({ err: error }, "jobs judged under another profile not queued yet; retrying");
      await sleep(options.errorBackoffMs);
      return 0;
    }
  }

  const sleep = (ms: number, signal?: AbortSignal) =>
    stopping ? Promise.resolve() : sleeper.sleep(ms, signal);
  const notify = () => sleeper.wake();

  /**
   * A run's owner proves it is alive with a heartbeat, renewed while it has a run open; runs
   * of dead owners are closed as abandoned at the next start of any verifier, and on each
   * heartbeat of a live one (src/store/verification-runs.ts).
   */
  const heartbeatMs = options.leaseMs;
  let openRuns = 0;
  /** Runs kept open past their settlement (`holdRun`), until `endRun` or a failure. */
  const heldRuns = new Set<number>();
  /**
   * Closing writes of runs that failed (a connection cut, a restart, a lock past the statement
   * timeout), tried again at each heartbeat while this owner's heartbeat lives on for another
   * run (serve's own): a failed close there left the nightly's row `running` for as long as the
   * process ran, as the sweeps never close a row whose owner's heartbeat is live.
   */
  const unclosed = new Map<number, () => Promise<void>>();
  let heartbeatTimer: NodeJS.Timeout | undefined;

  /**
   * Who closes abandoned runs, and which owners are known dead now: an owner on this host
   * whose process no longer exists (a restart right after kill -9 needs no wait; its leases
   * are released so its jobs are taken over now rather than at their expiry).
   */
  async function closer() {
    const others = await runs.runningOwners(owner);
    const t = await sharedNow();
    return {
      owner,
      t,
      leaseAt: t,
      deadOwners: others.filter(ownerIsDead),
      liveOwners: others.filter(ownerIsAlive),
    };
  }

  function reportClosed(closed: number) {
    if (closed > 0) log.warn({ runs: closed }, "closed verification runs of dead processes");
  }

  async function closeAbandonedRuns() {
    reportClosed(await runs.closeAbandoned(await closer()));
  }

  async function heartbeatTick() {
    try {
      const at = await sharedNow();
      await runs.beat(owner, at, at + heartbeatMs);
      await closeAbandonedRuns();
      for (const [runId, write] of unclosed) {
        await write();
        unclosed.delete(runId);
        log.info({ runId }, "verification run closed after its closing write had failed");
      }
    } catch (error) {
      // A busy database must not throw out of a timer: the next tick tries again, well before
      // the heartbeat expires (it is renewed three times per lifetime).
      log.warn({ err: error }, "verifier heartbeat not written; retrying");
    }
  }

  /** Opens a run row with its heartbeat; retried from JavaScript while the database is busy. */
  async function startRun(trigger: "serve" | "verify", filter: VerifyFilter | null) {
    const c = await closer();
    const { runId, closed } = await retryWhileBusy(() =>
      runs.open(
        { trigger, window: filter, heartbeatUntil: c.leaseAt + heartbeatMs },
        { ...c, t: now() },
      ),
    );
    reportClosed(closed);
    openRuns++;
    if (!heartbeatTimer) {
      heartbeatTimer = setInterval(heartbeatTick, Math.max(10, heartbeatMs / 3));
      heartbeatTimer.unref();
    }
    return runId;
  }

  /**
   * `work`, again while the database is busy or away (a restart, a table lock held past the
   * statement timeout), until `left()` runs out or `signal` aborts; then the last error.
   */
  async function whileBusyWithin<T>(
    work: () => Promise<T>,
    left: () => number,
    signal?: AbortSignal,
  ): Promise<T> {
    for (;;) {
      try {
        return await work();
      } catch (error) {
        if (!isBusyError(error) || left() <= 0 || signal?.aborted) throw error;
        log.warn(
          { err: error },
          "verification run found the database busy or unreachable; retrying",
        );
        await delay(Math.max(1, Math.min(options.errorBackoffMs, left()))).catch(() => {});
      }
    }
  }

  async function finishRun(runId: number, status: RunStatus, summary: unknown, waitMs = 0) {
    await closeRun(runId, waitMs, () => runs.finish(runId, status, summary, now()));
  }

  /** Writes a run's last row, within `waitMs` of a busy database, then lets its heartbeat go. */
  async function closeRun(runId: number, waitMs: number | "once", write: () => Promise<void>) {
    heldRuns.delete(runId);
    try {
      if (waitMs === "once") {
        await write();
        return;
      }
      // Each try once, the grace checked between them: a nested retry (8 tries with backoff,
      // each waiting serve's 500 ms busy timeout) ran about 6 s past the grace.
      const until = performance.now() + waitMs;
      await whileBusyWithin(write, () => until - performance.now());
    } catch (error) {
      unclosed.set(runId, write);
      throw error;
    } finally {
      openRuns--;
      if (openRuns === 0) {
        // No heartbeat to retry it from now: a row left `running` is closed `abandoned` by the
        // next sweep once the heartbeat is gone, or by its own write at the heartbeat of this
        // process's next run. Forgotten here, it stayed `running` beside that run (a leader
        // that lost its lease in an outage took it back) for as long as the process lived.
        clearInterval(heartbeatTimer);
        heartbeatTimer = undefined;
        try {
          await runs.dropHeartbeat(owner);
        } catch (error) {
          log.warn({ err: error }, "verifier heartbeat not removed; it expires on its own");
        }
      }
    }
  }

  /** Hands this owner's leases back; `attempts` 1 once the run's time is up (at once or never). */
  async function releaseLeases(attempts?: number) {
    try {
      await retryWhileBusy(
        () => queue.releaseLeases(owner),
        attempts === undefined ? {} : { attempts },
      );
    } catch (error) {
      // Not fatal: the leases expire and another verifier takes the jobs over.
      log.warn({ err: error }, "leases not released; they expire on their own");
    }
  }

  /**
   * Extends this owner's leases while a long round (a slow or rate-limited node) is running. A
   * failure (SQLITE_BUSY past the timeout) is logged and retried a second later, never thrown:
   * an exception escaping a timer would kill the process.
   */
  function startLeaseRenewal(): () => void {
    let retry: NodeJS.Timeout | undefined;
    const renew = async () => {
      clearTimeout(retry);
      try {
        await queue.renewLeases(owner, (await sharedNow()) + options.leaseMs);
      } catch (error) {
        log.warn({ err: error }, "lease renewal failed; retrying");
        retry = setTimeout(renew, Math.min(1000, options.leaseMs / 10));
      }
    };
    const timer = setInterval(renew, Math.max(10, options.leaseMs / 3));
    return () => {
      clearInterval(timer);
      clearTimeout(retry);
    };
  }

  const runRound = (
    filter: VerifyFilter | null,
    runId: number | null,
    signal?: AbortSignal,
    judged?: Set<string>,
  ) =>
    rounds.add(async () => {
      const stopRenewal = startLeaseRenewal();
      const started = performance.now();
      deps.pacer?.roundStarts();
      let worked = 0;
      try {
        worked = await round(filter, runId, signal ?? roundsAbort.signal, judged);
        return worked;
      } finally {
        stopRenewal();
        // Inside the queue: a `runUntilSettled` beside the loop waits its turn behind it.
        if (worked > 0) await giveWay(performance.now() - started);
      }
    }) as Promise<number>;

  /** The pause the pacer asks for after a round; `stop()` ends it, nothing else does. */
  async function giveWay(roundMs: number) {
    const pause = deps.pacer?.pauseAfter(roundMs) ?? 0;
    if (pause <= 0 || stopping) return;
    await delay(pause, undefined, { signal: roundsAbort.signal }).catch(() => {});
  }

  async function loop() {
    let runId: number | null = null;
    while (runId === null) {
      if (stopping) return;
      try {
        runId = await startRun("serve", null);
      } catch (error) {
        if (isBusyError(error))
          log.warn({ err: error }, "verifier found the database busy opening its run; retrying");
        else log.error({ err: error }, "verifier could not open its run; retrying");
        await sleep(options.errorBackoffMs);
      }
    }
    let status: "completed" | "failed" = "completed";
    const sweep = profileSweep(null);
    try {
      while (!stopping) {
        let worked = 0;
        const roundAt = now();
        await sweepStep(sweep, false);
        try {
          worked = await runRound(null, runId);
        } catch (error) {
          // Another process holding the write lock (an import, a batch) is retried as a matter
          // of course: a warning, not an error an operator is paged for.
          if (isBusyError(error))
            log.warn({ err: error }, "verification round found the database busy; retrying");
          else log.error({ err: error }, "verification round failed");
          await sleep(options.errorBackoffMs);
          continue;
        }
        if (worked > 0 || (await sweepStep(sweep, true)) > 0) continue;
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const w of waiters) w();
        // Read as the rounds are: a restart or a cut connection landing on this one statement
        // ended the loop, and the process served on with no verifier until it was restarted.
        let due: number | null;
        let t = now();
        try {
          t = await sharedNow();
          due = await queue.nextDue(null, { t, leaseAt: t });
        } catch (error) {
          if (isBusyError(error))
            log.warn({ err: error }, "verifier found the database busy or unreachable; retrying");
          else log.error({ err: error }, "verifier could not read its next due job; retrying");
          await sleep(options.errorBackoffMs);
          continue;
        }
        // Signatures the rounds watch for jobs put off are polled when due, whatever the rest.
        const watched = round.nextWatchedAt();
        const wait = Math.min(
          due === null ? options.idleIntervalMs : waitForDue(due, t, roundAt, options),
          options.idleIntervalMs,
          watched === null ? Number.POSITIVE_INFINITY : Math.max(0, watched - t),
        );
        await sleep(wait);
      }
    } catch (error) {
      status = "failed";
      log.error({ err: error }, "verifier loop stopped");
    } finally {
      await releaseLeases();
      const id = runId;
      await queue
        .countVerdicts(null)
        .then((counts) => finishRun(id, status, counts))
        .catch((error) =>
          log.warn({ err: error }, "verification run not closed; the next start abandons it"),
        );
    }
  }

  return {
    owner,
    start() {
      if (running) return;
      running = true;
      stopping = false;
      roundsAbort = abortable();
      const closing = closeAbandonedRuns().catch((error) =>
        log.warn({ err: error }, "stale verification runs not closed yet"),
      );
      loopDone = closing.then(loop);
    },
    async stop() {
      stopping = true;
      // The round in flight stops between RPC calls instead of finishing a whole claimed batch
      // paced by the RPC rate limit (minutes with a backlog); its jobs' leases are released.
      roundsAbort.abort();
      notify();
      await loopDone;
      await rounds.onIdle();
      await releaseLeases();
      running = false;
      loopDone = null;
      for (const w of idleWaiters) w();
      idleWaiters = [];
    },
    notify,
    async endRun(runId, status, outcome, t) {
      if (!heldRuns.has(runId)) {
        await runs.recordOutcome(runId, outcome, t);
        return;
      }
      // One try, as the outcome was written before: the run's time is spent, and its held row
      // already had the close grace. A row left `running`, its heartbeat gone, is closed
      // `abandoned` by the next sweep.
      await closeRun(runId, "once", () => runs.recordOutcome(runId, outcome, t, status));
    },
    async reverify(jobId: string) {
      await queue.reverify(jobId, now());
      notify();
    },
    async lookAgain(jobIds) {
      if (jobIds.length === 0) return;
      await queue.makeDue(jobIds, now());
      notify();
    },
    onIdle() {
      if (!running) return rounds.onIdle();
      return new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        notify();
      });
    },
    async judgeDue(jobIds, opts) {
      const judged = new Set<string>();
      if (jobIds.length === 0 || opts.timeoutMs <= 0) return { judged: [] };
      const started = performance.now();
      const left = () => opts.timeoutMs - (performance.now() - started);
      const deadline = deadlineSignal(opts.timeoutMs, roundsAbort.signal, opts.signal);
      const filter = { jobIds: [...jobIds] };
      try {
        // A round that claimed nothing had nothing it could judge now: those left are leased
        // by another verifier (serve's, which judges them) or put off until what they wait for
        // comes. Waited for, a nightly beside serve ran out its whole --timeout on a job serve
        // held (6 s against 0.15 s) and exited 2.
        while (left() > 0 && !deadline.signal.aborted && !stopping) {
          // Raced with the deadline: in `serve`'s scheduled run its loop shares these rounds'
          // queue, and a round of its own waiting on a slow node held this one queued behind
          // it (25 s against a budget of 10 s, past the run's --timeout of 20 s).
          const worked = await nothingOnceAborted(
            runRound(filter, opts.runId ?? null, deadline.signal, judged),
            deadline.signal,
          );
          if (worked === 0) break;
        }
      } catch (error) {
        if (!isBusyError(error)) throw error;
        log.warn(
          { err: error },
          "judging jobs sent back found the database busy or unreachable; left for later",
        );
      } finally {
        deadline.clear();
        // Jobs a round cut short had claimed go back now, not when their leases run out.
        if (!running) await releaseLeases(left() > 0 ? undefined : 1);
      }
      return { judged: [...judged] };
    },
    async runUntilSettled(filter, opts) {
      // The run's time on the monotonic clock: a wall clock stepped (NTP, a VM resumed) would
      // end it at once or stretch it by the step. Due times stay wall-clock (the store's).
      const started = performance.now();
      const left = () => opts.timeoutMs - (performance.now() - started);
      // Every statement of the run outside its rounds waits out the database too, within the
      // run's time: one of them cancelled by a table lock held past the statement timeout (a
      // VACUUM FULL, a migration by hand), or cut by a restart, ended a nightly with exit 2
      // while its --timeout had minutes left.
      const settled = <T>(work: () => Promise<T>) => whileBusyWithin(work, left, opts.signal);
      const held = opts.runId !== undefined && heldRuns.has(opts.runId) ? opts.runId : null;
      const runId = held ?? (await settled(() => startRun("verify", filter)));
      let status: RunSummary["status"] = "completed";
      let rowsHeld = false;
      let databaseTrouble: string | null = null;
      let progress = await settled(() => queue.countVerdicts(filter));
      // The run's deadline and its caller's signal reach into a round (its fetches and writes
      // stop at the next step), not only between rounds: one long round ran a nightly verify
      // far past --timeout, and SIGTERM waited for it. One signal for the whole run.
      const runDeadline = deadlineSignal(opts.timeoutMs, roundsAbort.signal, opts.signal);
      const roundSignal = runDeadline.signal;
      const sweep = profileSweep(filter);
      try {
        for (;;) {
          if (opts.signal?.aborted || stopping) {
            status = "interrupted";
            break;
          }
          if (progress.final === progress.total && sweep.done) break;
          if (left() <= 0) {
            status = "timed_out";
            break;
          }
          const settledAll = progress.final === progress.total;
          if ((await sweepStep(sweep, settledAll)) > 0 || settledAll) {
            progress = await settled(() => queue.countVerdicts(filter));
            if (progress.final === progress.total) {
              // Jobs to judge again held locked by another session: tried again a poll later.
              if (sweep.waitsForHeldRows) {
                rowsHeld = true;
                await sleep(Math.max(0, Math.min(options.pollIntervalMs, left())), opts.signal);
              }
              continue;
            }
          }
          let worked = 0;
          const roundAt = now();
          try {
            worked = await runRound(filter, runId, roundSignal);
            databaseTrouble = null;
          } catch (error) {
            // Another process held the write lock past the busy timeout: try again shortly.
            if (!isBusyError(error)) throw error;
            databaseTrouble = message(error);
            log.warn(
              { err: error },
              "verification round found the database busy or unreachable; retrying",
            );
            await sleep(Math.max(0, Math.min(options.errorBackoffMs, left())), opts.signal);
            continue;
          }
          progress = await settled(() => queue.countVerdicts(filter));
          opts.onProgress?.(progress);
          if (worked === 0 && progress.final < progress.total) {
            // Open jobs not due here are waiting for finality, or leased by another process
            // (serve) that is verifying them: look again after one poll interval rather than
            // at the lease expiry, so the run ends within a poll of its jobs becoming final.
            let t = now();
            const due =
              (await settled(async () => {
                t = await sharedNow();
                return queue.nextDue(filter, { t, leaseAt: t });
              })) ?? t + options.pollIntervalMs;
            // A round the deadline or a stop cut before its claim took nothing either: the due
            // job it left was held by no one ("leased by another verifier" was said of it).
            if (due <= roundAt && !roundSignal.aborted) rowsHeld = true;
            const wait = Math.min(
              waitForDue(due, t, roundAt, options),
              left(),
              options.pollIntervalMs,
            );
            await sleep(Math.max(0, wait), opts.signal);
          }
        }
      } catch (error) {
        await finishRun(runId, "failed", { error: message(error), ...progress }).catch(() => {});
        throw error;
      } finally {
        runDeadline.clear();
        // A round cut short by the deadline or a signal decided nothing for the jobs it had
        // claimed: they go back now, not when their leases run out two minutes after the run.
        // Not while this verifier's own loop runs (the demo's): its rounds hold the same owner.
        // Past the run's time, one try: retried with backoff beside a held write lock, it added
        // 2.5 s to the run row's close grace.
        if (!running) await releaseLeases(left() > 0 ? undefined : 1);
      }
      const durationMs = Math.round(performance.now() - started);
      const summary: RunSummary = {
        runId,
        status,
        durationMs,
        ...progress,
        ...(rowsHeld ? { rowsHeld: true as const } : {}),
        ...(databaseTrouble !== null ? { databaseTrouble } : {}),
        rejudged: sweep.reopened,
      };
      const counts = { ...progress, durationMs: summary.durationMs };
      // A run out of time or interrupted is closed now: no ledger read follows it, and its held
      // row's writes waited out another process's write lock past the run's --timeout.
      if (opts.holdRun && status === "completed") {
        // Its counts are written; the row stays `running` (its heartbeat too) until `endRun`.
        heldRuns.add(runId);
        try {
          await whileBusyWithin(
            () => retryWhileBusy(() => runs.finish(runId, "running", counts, now())),
            () => Math.max(0, left()) + options.closeGraceMs,
          );
        } catch (error) {
          log.warn({ err: error }, "verification run counts not written; the run goes on");
        }
      } else {
        // The run's row is closed even when the run's time is up, within a short grace.
        await finishRun(runId, status, counts, Math.max(0, left()) + options.closeGraceMs);
      }
      log.info({ runId, status, ...progress }, "verification run finished");
      return summary;
    },
  };
}

/** How long a round told to stop has to end on its own before `judgeDue` moves on. */
const ROUND_ABORT_GRACE_MS = 500;

/**
 * `round`'s count, or 0 once `signal` has been aborted `ROUND_ABORT_GRACE_MS`: a round still
 * queued behind another (serve's loop's) then starts with the signal aborted and claims
 * nothing; one that does not heed it ends on its own, its writes guarded by its leases.
 */
function nothingOnceAborted(round: Promise<number>, signal: AbortSignal): Promise<number> {
  round.catch(() => {});
  return new Promise<number>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      timer = setTimeout(() => resolve(0), ROUND_ABORT_GRACE_MS);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    round.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    });
  });
}

/**
 * How long to wait, at `t`, for the next job due at `due`, after a round begun at `roundAt`
 * claimed nothing. A job due before the round began that its claim did not take is one whose
 * row another session holds (an operator's `SELECT … FOR UPDATE`, a long transaction, on
 * PostgreSQL): it is looked at again a poll interval later. Waited for at once, the loop claimed
 * nothing round after round as fast as the database answered, for as long as the row stayed
 * locked.
 */
function waitForDue(
  due: number,
  t: number,
  roundAt: number,
  options: { pollIntervalMs: number },
): number {
  return due <= roundAt ? options.pollIntervalMs : due - t;
}

/** A verifier's owner id: `verifier-<uuid>-pid<pid>.<start>@<host>` (no `.<start>` off Linux). */
function defaultOwner(): string {
  const started = ownStartTime();
  return `verifier-${randomUUID()}-pid${process.pid}${started === null ? "" : `.${started}`}@${thisHost()}`;
}

/** The host, pid and start time an owner id names (the host may hold an `@` itself). */
function ownerProcess(owner: string) {
  const match = /-pid(\d+)(?:\.(\d+))?@(.+)$/.exec(owner);
  return match ? { pid: Number(match[1]), started: match[2], host: match[3] as string } : null;
}

/** True when `owner` names a process of this host (and PID namespace) that no longer exists. */
function ownerIsDead(owner: string): boolean {
  const named = ownerProcess(owner);
  return named ? deadOnThisHost(named.host, named.pid) : false;
}

/** True when `owner` names a process of this host that runs now (the one that wrote it). */
function ownerIsAlive(owner: string): boolean {
  const named = ownerProcess(owner);
  return named ? aliveOnThisHost(named.host, named.pid, named.started) : false;
}
