import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { isQuorumRpc, rpcFromConfig } from "../chain/quorum.js";
import type { Config } from "../config.js";
import type { Store } from "../db/client.js";
import { openStoreWaitingFor } from "../db/open.js";
import { createLedgerReader } from "../ledger/reader.js";
import { ledgerWindowCheck } from "../ledger/window-check.js";
import { createLogger, type Logger } from "../log.js";
import { createVerifier } from "../verify/engine.js";
import { profileStatus } from "../verify/profile-status.js";
import { loadProfile } from "../verify/profiles.js";
import type { VerifierOptions } from "../verify/verifier-options.js";
import { hangMarginMs } from "./nightly-run.js";
import { runVerifyCommand, type VerifyFlags, verifyWindow } from "./verify-command.js";

/**
 * The `verify` command's run: checks the flags, then opens the database and the RPC, brings
 * the window's jobs to a final verdict, prints the summary and sets the exit code. Loaded only
 * when `verify` runs (verify-cli.ts), so other commands and `--help` never load the verifier.
 */
export async function runVerifyFromCli(
  config: Config,
  flags: VerifyFlags & Record<string, unknown>,
  out: (text: string) => void = (text) => process.stdout.write(text),
): Promise<void> {
  // Bad flags (and an --out that cannot be written) are refused before the database is opened
  // or the RPC is asked anything.
  const { timeoutMs } = verifyWindow(flags, Date.now());
  // The run's time is counted from the process's start (performance.now() is 0 there): cron or
  // a supervisor gives the command its --timeout, not the part left once modules loaded, which
  // on a busy host took 12 s and made `--timeout 30s` run 45 s.
  const startedTick = 0;
  // Logs go to stderr: stdout carries the summary, which --json callers parse.
  const log = createLogger(
    { level: config.LOG_LEVEL === "info" ? "warn" : config.LOG_LEVEL },
    pino.destination(2),
  );
  // A mistyped path must not become an empty store whose window is "all verified" (exit 0).
  // A database restarting as cron starts the run is waited for within the run's time.
  const openWithinMs = Math.max(0, timeoutMs - (performance.now() - startedTick));
  const store = await openStoreWaiting(config, Math.min(openWithinMs, MAX_OPEN_WAIT_MS), log);
  const rpc = rpcFromConfig(config, log);
  let hung = false;
  try {
    const profile = loadProfile(config.AUDIT_PROFILE);
    const verifier = createVerifier({
      store,
      rpc,
      profile,
      log,
      custody: config.CREDIT_VAULTS,
      options: { ...nightlyVerifierOptions(config), closeGraceMs: config.VERIFY_CLOSE_GRACE_MS },
      // Beside a `serve` whose scan runs, its `/audit` readers read this run's verdicts: they
      // wait for that scan to read past the job, as serve's own do. With no scan running, the
      // run's own scan, after judging, judges again what it finds (before the summary).
      ...(profile.escrowVault === null
        ? {}
        : {
            escrowCover: {
              vault: profile.escrowVault,
              liveWithinMs: ESCROW_SCAN_LIVE_MS,
              recheckMs: config.VERIFY_POLL_MS,
            },
          }),
    });
    const reader = createLedgerReader({
      store,
      rpc,
      profile,
      log,
      custody: config.CREDIT_VAULTS,
    });
    const ledger = ledgerWindowCheck({
      store,
      reader,
      profile,
      graceSeconds: config.LEDGER_GRACE_SECONDS,
    });
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      process.exitCode = await runVerifyCommand(
        store,
        verifier,
        flags,
        {
          out,
          err: (line) => console.error(line),
          progress: process.stderr.isTTY === true,
        },
        {
          preflight: () => rpc.getSlot("finalized"),
          ...(isQuorumRpc(rpc) ? { rpcQuorum: rpc } : {}),
          rpcStats: () => rpc.stats(),
          signal: abort.signal,
          profile: () => profileStatus(store, profile),
          ledger,
          startedTick,
          closeGraceMs: config.VERIFY_CLOSE_GRACE_MS,
          ...(store.kind === "postgres"
            ? {
                hang: {
                  marginMs: hangMarginMs(
                    config.DATABASE_STATEMENT_TIMEOUT_MS,
                    config.VERIFY_CLOSE_GRACE_MS,
                  ),
                  onHang: () => {
                    hung = true;
                  },
                },
              }
            : {}),
        },
      );
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  } finally {
    await rpc.close();
    // Given up on a database that answers nothing: its pool waits for the calls still out, so
    // the process ends here, its summary printed, rather than when (if) the server answers.
    if (hung) {
      const closed = Promise.resolve(store.close()).catch(() => {});
      await Promise.race([closed, sleep(1000)]);
      process.exit(2);
    }
    await store.close();
  }
}

/**
 * The longest `verify` waits for its database at start (a restart or a failover takes seconds
 * to a minute): a wrong URL is said within two minutes, not at the end of a 30 min timeout.
 */
const MAX_OPEN_WAIT_MS = 120_000;

/**
 * The nightly run's verifier options. Jobs another process (serve) is verifying are looked at
 * again every poll, so the run ends within about one poll interval of its last job becoming
 * final. A job serve put off for the jobs API's answer (up to `JOBS_API_WAIT_MS`) waits for
 * it: taken for a look written before a clock step, it was given the clean verdict the wait
 * holds back.
 */
/**
 * How recently another process's escrow scan must have run for this run's verdicts to wait for
 * it: `serve` writes where its scan stands every `LEDGER_POLL_MS` (10 s by default).
 */
const ESCROW_SCAN_LIVE_MS = 120_000;

export function nightlyVerifierOptions(
  config: Pick<Config, "VERIFY_POLL_MS" | "JOBS_API_WAIT_MS" | "VERIFY_DROP_HOLD_MS">,
): Partial<VerifierOptions> {
  return {
    pollIntervalMs: config.VERIFY_POLL_MS,
    jobsApiHeldElsewhereMs: config.JOBS_API_WAIT_MS,
    dropHoldMs: config.VERIFY_DROP_HOLD_MS,
  };
}

/**
 * Opens the store (create: false), again while the database cannot be reached for at most
 * `ms` (`openStoreWaitingFor`): cron's hour is often the database's maintenance hour.
 */
export function openStoreWaiting(config: Config, ms: number, log: Logger): Promise<Store> {
  return openStoreWaitingFor(config, ms, (error) =>
    log.warn(
      { err: error, waitS: Math.round(ms / 1000) },
      `database not reachable; waiting for it up to ${Math.round(ms / 1000)} s`,
    ),
  );
}
