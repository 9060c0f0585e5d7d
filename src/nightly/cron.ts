import { Cron } from "croner";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import type { LedgerWindowResult } from "../ledger/window-check.js";
import type { Logger } from "../log.js";
import { createVerificationRunStore, type NightlyRunOutcome } from "../store/verification-runs.js";
import type { ProfileStatus } from "../verify/profile-status.js";
import {
  givenUpOnHung,
  type NightlyOptions,
  type NightlySummary,
  runNightlyVerification,
  type SettlingEngine,
  unansweredSummary,
} from "./nightly-run.js";
import { DEFAULT_VERIFY_TIMEOUT_MS } from "./verify-command.js";

export interface NightlyScheduleDeps {
  store: Store;
  engine: SettlingEngine;
  log: Logger;
  /** e.g. an RPC `getSlot`: a rejection makes the run end "could not finish". */
  preflight?: () => Promise<unknown>;
  /** The RPC quorum's standing (see `NightlyOptions.rpcQuorum`). */
  rpcQuorum?: NightlyOptions["rpcQuorum"];
  /** The RPC's attempt counts (see `NightlyOptions.rpcStats`). */
  rpcStats?: NightlyOptions["rpcStats"];
  /** The profile's gaps, said once in each run's summary. */
  profile?: () => Promise<ProfileStatus>;
  /** The credit vaults' ledger of each window (see `NightlyOptions.ledger`). */
  ledger?: NightlyOptions["ledger"];
  /** Timeout of each run. Default 30 min. */
  timeoutMs?: number;
  /**
   * How long past its timeout a run is given up on (`hangMarginMs`; PostgreSQL): a server that
   * stops answering without closing its connections held the run, and with it every later fire
   * of the schedule (croner starts none while one runs), until it answered again, or for ever.
   */
  hangMarginMs?: number;
  now?: () => number;
}

/** Used only when the schedule has no fire time before a run (a degenerate expression). */
const FALLBACK_WINDOW_MS = 24 * 3_600_000;

/**
 * The window [from, to) of a scheduled run at `at`. `to` is the schedule's latest fire time at
 * or before `at`, not the moment the run starts: croner starts a run at or after its fire time,
 * late when the process was busy, and a late run must still cover the scheduled window. `from`
 * is the fire time before that, or `openFrom` when it is earlier: the start of time no finished
 * run has covered yet (fires skipped while a run was still going, a run that could not finish),
 * so consecutive windows leave nothing out and count nothing twice.
 */
export function scheduledWindow(
  schedule: Pick<Cron, "previousRuns">,
  at: number,
  openFrom: number | null,
): { from: number; to: number } {
  // previousRuns is strictly before its reference; +1 ms takes in a fire at exactly `at`.
  const [fire, before] = schedule.previousRuns(2, new Date(at + 1));
  const to = fire?.getTime() ?? at;
  const scheduledFrom = before?.getTime() ?? to - FALLBACK_WINDOW_MS;
  const from = openFrom !== null && openFrom < scheduledFrom ? openFrom : scheduledFrom;
  return { from, to };
}

/**
 * The ledger's findings as the summary's log line counts them: how many of each kind, not the
 * entries. Listed whole (hundreds of unreleased locks after a night the schedule missed), they
 * made the line tens of KiB, and the log's one-line limit (4 KiB, see src/serve-log.ts) cut
 * every string of it to a few dozen characters: an incomplete run's `reason` read "escrow: the
 * escrow vault's payouts under the window's jobs' mem…". The entries are the window's credit
 * vault statement's (`report statement`), and `verify` prints them.
 */
export function ledgerCounts(ledger: LedgerWindowResult): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(ledger).map(([kind, value]) => [
      kind,
      Array.isArray(value) ? value.length : value,
    ]),
  );
}

/** How many windows back a scheduled run's first window may reach for the last finished run. */
const LOOK_BACK_WINDOWS = 7;

/**
 * Where the first scheduled run of this process starts its window: the earliest time of the
 * last week of windows that no nightly which finished covered (`firstUnjudged`), when it lies
 * before the scheduled window.
 * In a cluster the leader that ran the schedule can die in its run (kill -9, OOM) or just
 * before its fire time, and the next leader's first run covered its own window only: the night
 * in between was never judged by any nightly, and nothing said so. Older gaps (a schedule set
 * again after months) are left to `verify --from --to`, rather than one run that cannot finish.
 * A store that cannot answer leaves the run its own window.
 */
async function firstOpenFrom(
  deps: NightlyScheduleDeps,
  schedule: Pick<Cron, "previousRuns">,
  at: number,
): Promise<number | null> {
  const { from, to } = scheduledWindow(schedule, at, null);
  try {
    const since = from - LOOK_BACK_WINDOWS * (to - from);
    return await createVerificationRunStore(deps.store).nightlyCoveredUntil(from, since);
  } catch (error) {
    deps.log.warn({ err: error }, "nightly verification: the last finished run not read");
    return null;
  }
}

/**
 * `serve --verify-cron "0 2 * * *"`: the nightly verification in-process, on a UTC cron
 * schedule. The same run as `decentral-audit verify` (same lock, so a CLI run and the cron run
 * never overlap); its summary becomes one log line. Each run verifies the window between the
 * schedule's previous fire time and this one (see `scheduledWindow`): "0 0 * * *" verifies the
 * previous UTC day even when the run starts late. A run still going when the next is due is
 * not started twice; the next window then starts where the last finished one ended. An invalid
 * expression fails start-up naming VERIFY_CRON.
 */
export function scheduleNightlyVerification(expression: string, deps: NightlyScheduleDeps) {
  const now = deps.now ?? Date.now;
  const timeoutMs = deps.timeoutMs ?? DEFAULT_VERIFY_TIMEOUT_MS;
  // Start of the time no finished run has covered. Kept in memory between runs; the first run
  // reads it from the store (`firstOpenFrom`), as the process that ran the last may be gone.
  let openFrom: number | null = null;
  let first = true;
  const judge = async (at: number, startedTick: number, givenUp: NightlyOptions["givenUp"]) => {
    const from = first ? await firstOpenFrom(deps, job, at) : openFrom;
    const window = scheduledWindow(job, at, from);
    const summary = await runNightlyVerification(deps.store, deps.engine, {
      ...window,
      timeoutMs,
      signal: stopping.signal,
      startedTick,
      givenUp,
      now,
      // In serve, whose verifier holds proxied jobs for the jobs API's answer.
      waitsForJobsApi: true,
      ...(deps.preflight ? { preflight: deps.preflight } : {}),
      ...(deps.rpcQuorum ? { rpcQuorum: deps.rpcQuorum } : {}),
      ...(deps.rpcStats ? { rpcStats: deps.rpcStats } : {}),
      ...(deps.profile ? { profile: deps.profile } : {}),
      ...(deps.ledger ? { ledger: deps.ledger } : {}),
    });
    return { window, summary, givenUp: false };
  };
  const logSummary = (summary: NightlySummary, message: string) => {
    const { findings, ledger, ...rest } = summary;
    deps.log[summary.exitCode === 0 ? "info" : "warn"](
      {
        nightly: {
          ...rest,
          findings: findings.slice(0, 10),
          ...(ledger ? { ledger: ledgerCounts(ledger) } : {}),
        },
      },
      message,
    );
  };
  const run = async () => {
    const at = now();
    const startedTick = performance.now();
    let reported: NightlyRunOutcome | null = null;
    const judging = judge(at, startedTick, () => reported);
    const margin = deps.hangMarginMs;
    const { window, summary, givenUp } =
      margin === undefined
        ? await judging
        : await givenUpOnHung(judging, timeoutMs + margin, startedTick, () => {
            const window = scheduledWindow(job, at, openFrom);
            const summary = unansweredSummary(window, at, now(), margin, "timeout");
            const { outcome, exitCode, reason } = summary;
            reported = { outcome, exitCode, reason, ledgerFindings: null };
            return { window, summary, givenUp: true };
          });
    if (givenUp) {
      // Its window is judged again by the next run (the first run's look back is taken again,
      // as it may not have been read). The run goes on once the database answers: out of time
      // by then, it frees the lock and closes its row with the outcome logged now, and is
      // logged as it ends.
      judging.then(
        ({ summary: late }) =>
          logSummary(late, `nightly verification given up on ended: ${late.outcome}`),
        (error) => deps.log.error({ err: error }, "nightly verification given up on failed"),
      );
      if (!first) openFrom = window.from;
    } else {
      first = false;
      openFrom = summary.exitCode === 2 ? window.from : window.to;
    }
    logSummary(summary, `nightly verification: ${summary.outcome}`);
    return summary;
  };
  // The service stopping ends a run going on as interrupted: left to run, it read on through
  // the RPC pool and the database as they closed, and said "the RPC pool is closed".
  const stopping = new AbortController();
  let job: Cron;
  try {
    job = new Cron(
      expression,
      {
        timezone: "UTC",
        protect: true,
        catch: (error) => deps.log.error({ err: error }, "nightly verification failed"),
      },
      async () => {
        await run();
      },
    );
  } catch (cause) {
    throw new AppError(
      "validation_failed",
      `VERIFY_CRON: not a cron expression: ${expression}`,
      { field: "VERIFY_CRON" },
      { cause },
    );
  }
  return {
    /** Next scheduled run, or null when none. */
    nextRun: () => job.nextRun(),
    /** Runs once now, outside the schedule (tests, manual trigger). */
    runNow: run,
    /** No run starts from now on, and one going on ends as interrupted. */
    stop: () => {
      job.stop();
      stopping.abort(new Error("the service is stopping"));
    },
  };
}
