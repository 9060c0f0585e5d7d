import cliProgress from "cli-progress";
import { busyTimeoutOf, type Store, setBusyTimeout } from "../db/client.js";
import { AppError } from "../errors.js";
import { outFile, refuseUnwritableOut, writeFileWhole } from "../file-output.js";
import { shownValue } from "../instant.js";
import { durationRefusal, parseDuration, windowFromFlags } from "../reports/period.js";
import {
  givenUpOnHung,
  type NightlyOptions,
  type NightlyProgress,
  type NightlySummary,
  runNightlyVerification,
  type SettlingEngine,
  unansweredSummary,
} from "./nightly-run.js";
import { summaryToJson, summaryToMarkdown, summaryToText, tooFewJobs } from "./summary-format.js";

/** Flags of `decentral-audit verify`, as commander parses them. */
export interface VerifyFlags {
  since?: string;
  window?: string;
  from?: string;
  to?: string;
  timeout?: string;
  minJobs?: string;
  json?: boolean;
  markdown?: boolean;
  out?: string;
}

export interface VerifyIo {
  out(text: string): void;
  err(line: string): void;
  /** Draw a progress bar (stderr is a TTY). */
  progress: boolean;
  now?: () => number;
}

/** The longest `--timeout`: 24 days, under the 2^31 - 1 ms a Node timer can wait. */
const MAX_VERIFY_TIMEOUT_MS = 24 * 24 * 3_600_000;

/** How often `verify` shortens SQLite's busy timeout to the run's time left. */
const BUSY_BOUND_TICK_MS = 250;

/** Default `--timeout`: 30 minutes. */
export const DEFAULT_VERIFY_TIMEOUT_MS = 30 * 60_000;

/** The window, timeout and `--min-jobs` from the flags; a bad flag is an AppError naming it. */
export function verifyWindow(flags: VerifyFlags, now: number) {
  const bad = (field: string, message: string) =>
    new AppError("validation_failed", `--${field}: ${message}`, { field });
  const { from, to } = windowFromFlags(flags, now);
  // A window not over yet cannot be judged: its summary would say clean (exit 0) of receipts
  // still to come, and the run would be listed as covering time no receipt was counted in.
  if (to > now) {
    throw bad(
      "to",
      `${shownValue(flags.to ?? "")} is after now (${new Date(now).toISOString()}): a window is verified once it has ended (leave --to out to end it now)`,
    );
  }
  const timeoutMs =
    flags.timeout === undefined ? DEFAULT_VERIFY_TIMEOUT_MS : parseDuration(flags.timeout);
  if (timeoutMs === null) throw bad("timeout", durationRefusal(flags.timeout ?? "", "30m"));
  // A timer cannot wait longer (Node fires it at once instead); a run that long is a mistake.
  if (timeoutMs > MAX_VERIFY_TIMEOUT_MS) {
    throw bad("timeout", `at most 24d (a run's timers wait no longer): ${flags.timeout}`);
  }
  const minJobsText = flags.minJobs?.trim() ?? "0";
  if (!/^\d{1,9}$/.test(minJobsText)) {
    throw bad("min-jobs", `not a whole number of jobs: ${flags.minJobs}`);
  }
  // One summary format: with both, one of them would be dropped without a word.
  if (flags.json && flags.markdown) {
    throw bad("json", "cannot be given with --markdown: give one of them");
  }
  const out = outFile(flags.out);
  if (out !== undefined) refuseUnwritableOut(out);
  return { from, to, timeoutMs, minJobs: Number(minJobsText) };
}

/** Renders the summary in the format the flags ask for. */
export function renderSummary(summary: NightlySummary, flags: VerifyFlags): string {
  if (flags.json) return summaryToJson(summary);
  if (flags.markdown) return summaryToMarkdown(summary);
  return summaryToText(summary);
}

/** Progress as a bar on a TTY, else a plain line whenever the count of final jobs moves. */
function progressReporter(io: VerifyIo) {
  if (io.progress) {
    const bar = new cliProgress.SingleBar(
      { format: "verifying [{bar}] {value}/{total} final | {detail}", stream: process.stderr },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p: NightlyProgress) {
        const detail = `verified ${p.byVerdict.verified}, partially ${p.byVerdict.partially_verified}, discrepancy ${p.byVerdict.discrepancy}`;
        if (!started) {
          bar.start(p.total, p.final, { detail });
          started = true;
        }
        bar.setTotal(p.total);
        bar.update(p.final, { detail });
      },
      stop: () => started && bar.stop(),
    };
  }
  let last = -1;
  return {
    update(p: NightlyProgress) {
      if (p.final === last) return;
      last = p.final;
      io.err(
        `verify: ${p.final}/${p.total} final (verified ${p.byVerdict.verified}, partially ${p.byVerdict.partially_verified}, discrepancy ${p.byVerdict.discrepancy})`,
      );
    },
    stop: () => {},
  };
}

/**
 * `decentral-audit verify`: runs the nightly verification of a window and prints (or writes
 * with `--out`) its summary. Returns the exit code: 0 nothing found, 1 a job not verified, a
 * credit vault ledger finding or fewer jobs than `--min-jobs`, 2 the run could not finish.
 */
export async function runVerifyCommand(
  store: Store,
  engine: SettlingEngine,
  flags: VerifyFlags,
  io: VerifyIo,
  extra: Pick<
    NightlyOptions,
    | "preflight"
    | "signal"
    | "profile"
    | "ledger"
    | "startedTick"
    | "rpcQuorum"
    | "rpcStats"
    | "closeGraceMs"
  > & {
    /**
     * How long past `--timeout` the run may go on (its summary's reads and closing writes)
     * before it is given up on: a database that stops answering without closing its
     * connections (a server hung, a network dropping its packets) held `verify --timeout 10s`
     * until it answered again, or for ever. Given up, the summary says so (exit 2) and `onHang`
     * is called: the run's calls into the database are still waiting.
     */
    hang?: { marginMs: number; onHang(): void };
  } = {},
): Promise<0 | 1 | 2> {
  const now = io.now ?? Date.now;
  const window = verifyWindow(flags, now());
  const progress = progressReporter(io);
  // SQLite's wait for another process's write lock never outlasts the run's time: once it is
  // up, each write that closes the run (its job leases, its run row, its heartbeat, the nightly
  // lock) takes the lock at once or not at all: held by a serve's ledger round, each waited out
  // the 5 s busy timeout up to 8 times, and `--timeout 5m` ended after 7 min 9 s. Before, a
  // write begun a second before the deadline waited its whole 5 s; and a wait holds the event
  // loop, so one timer set for the deadline ran late, after the next writes had waited theirs
  // (`--timeout 30s` with the lock taken as the ledger's read ended: 46 s, the tail's four
  // writes 5 s each). Kept by a short tick instead. The store is this command's own.
  const startedTick = extra.startedTick ?? performance.now();
  let fullWaitMs: number | null = null;
  try {
    fullWaitMs = busyTimeoutOf(store);
  } catch {
    // A store already closed: the run says the database did not answer; no wait to bound.
  }
  const boundWait = () => {
    if (fullWaitMs === null) return;
    const left = window.timeoutMs - (performance.now() - startedTick);
    try {
      setBusyTimeout(store, Math.min(fullWaitMs, Math.max(0, left)));
    } catch {
      // Closed meanwhile: nothing is left to close.
    }
  };
  boundWait();
  const bounding = setInterval(boundWait, BUSY_BOUND_TICK_MS);
  bounding.unref();
  let summary: NightlySummary;
  const { hang, ...options } = extra;
  try {
    const run = runNightlyVerification(store, engine, {
      ...window,
      ...options,
      now,
      onProgress: (p) => progress.update(p),
      boundWaits: boundWait,
    });
    const startedAt = now() - Math.round(performance.now() - startedTick);
    summary =
      hang === undefined
        ? await run
        : await givenUpOnHung(run, window.timeoutMs + hang.marginMs, startedTick, () => {
            hang.onHang();
            return unansweredSummary(window, startedAt, now(), hang.marginMs, "--timeout");
          });
  } finally {
    clearInterval(bounding);
    progress.stop();
  }
  const text = renderSummary(summary, flags);
  const out = outFile(flags.out);
  if (out) {
    writeFileWhole(out, text);
    io.err(`summary written to ${out} (exit code ${summary.exitCode})`);
  } else {
    io.out(text);
  }
  if (summary.reason) io.err(`verify: ${summary.reason}`);
  const tooFew = tooFewJobs(summary);
  if (tooFew) io.err(`verify: ${tooFew}`);
  return summary.exitCode;
}
