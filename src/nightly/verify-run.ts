import { pino } from "pino";
import { rpcFromConfig } from "../chain/quorum.js";
import type { Config } from "../config.js";
import { openStore } from "../db/open.js";
import { createLedgerReader } from "../ledger/reader.js";
import { ledgerWindowCheck } from "../ledger/window-check.js";
import { createLogger } from "../log.js";
import { createVerifier } from "../verify/engine.js";
import { profileStatus } from "../verify/profile-status.js";
import { loadProfile } from "../verify/profiles.js";
import { runVerifyCommand, type VerifyFlags, verifyWindow } from "./verify-command.js";

/**
 * The `verify` command's run: checks the flags, then opens the database and the RPC, brings
 * the window's jobs to a final verdict, prints the summary and sets the exit code. Loaded only
 * when `verify` runs (verify-cli.ts), so other commands and `--help` never load the verifier.
 */
export async function runVerifyFromCli(
  config: Config,
  flags: VerifyFlags & Record<string, unknown>,
): Promise<void> {
  // Bad flags (and an --out that cannot be written) are refused before the database is opened
  // or the RPC is asked anything.
  verifyWindow(flags, Date.now());
  // Logs go to stderr: stdout carries the summary, which --json callers parse.
  const log = createLogger(
    { level: config.LOG_LEVEL === "info" ? "warn" : config.LOG_LEVEL },
    pino.destination(2),
  );
  // A mistyped path must not become an empty store whose window is "all verified" (exit 0).
  const store = await openStore(config, { create: false });
  const rpc = rpcFromConfig(config, log);
  try {
    const profile = loadProfile(config.AUDIT_PROFILE);
    const verifier = createVerifier({
      store,
      rpc,
      profile,
      log,
      custody: config.CREDIT_VAULTS,
      // Jobs another process (serve) is verifying are looked at again every poll, so the
      // run ends within about one poll interval of its last job becoming final.
      options: { pollIntervalMs: config.VERIFY_POLL_MS },
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
          out: (text) => process.stdout.write(text),
          err: (line) => console.error(line),
          progress: process.stderr.isTTY === true,
        },
        {
          preflight: () => rpc.getSlot("finalized"),
          signal: abort.signal,
          profile: () => profileStatus(store, profile),
          ledger,
        },
      );
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  } finally {
    await rpc.close();
    await store.close();
  }
}
