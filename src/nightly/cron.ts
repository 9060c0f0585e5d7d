import { Cron } from "croner";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import type { Logger } from "../log.js";
import { runNightlyVerification, type SettlingEngine } from "./nightly-run.js";
import { DEFAULT_VERIFY_TIMEOUT_MS } from "./verify-command.js";

export interface NightlyScheduleDeps {
  store: Store;
  engine: SettlingEngine;
  log: Logger;
  /** e.g. an RPC `getSlot`: a rejection makes the run end "could not finish". */
  preflight?: () => Promise<unknown>;
  /** Window of each run, ending at its start. Default 24 h, like `verify --since 24h`. */
  windowMs?: number;
  /** Timeout of each run. Default 30 min. */
  timeoutMs?: number;
  now?: () => number;
}

/** Throws the VERIFY_CRON error for an expression croner cannot parse; starts nothing. */
export function validateCronExpression(expression: string): void {
  try {
    new Cron(expression, { timezone: "UTC", paused: true }).stop();
  } catch (cause) {
    throw new AppError(
      "validation_failed",
      `VERIFY_CRON: not a cron expression: ${expression}`,
      { field: "VERIFY_CRON" },
      { cause },
    );
  }
}

/**
 * `serve --verify-cron "0 2 * * *"`: the nightly verification in-process, on a UTC cron
 * schedule. The same run as `decentral-audit verify` (same lock, so a CLI run and the cron run
 * never overlap); its summary becomes one log line. A run still going when the next is due is
 * not started twice. An invalid expression fails start-up naming VERIFY_CRON.
 */
export function scheduleNightlyVerification(expression: string, deps: NightlyScheduleDeps) {
  const now = deps.now ?? Date.now;
  const windowMs = deps.windowMs ?? 24 * 3_600_000;
  const timeoutMs = deps.timeoutMs ?? DEFAULT_VERIFY_TIMEOUT_MS;
  const run = async () => {
    const to = now();
    const summary = await runNightlyVerification(deps.store, deps.engine, {
      from: to - windowMs,
      to,
      timeoutMs,
      now,
      ...(deps.preflight ? { preflight: deps.preflight } : {}),
    });
    const { findings, ...rest } = summary;
    deps.log[summary.exitCode === 0 ? "info" : "warn"](
      { nightly: { ...rest, findings: findings.slice(0, 20) } },
      `nightly verification: ${summary.outcome}`,
    );
    return summary;
  };
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
    stop: () => job.stop(),
  };
}
