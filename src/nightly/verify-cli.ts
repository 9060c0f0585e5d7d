import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Command } from "commander";
import { pino } from "pino";
import { rpcFromConfig } from "../chain/quorum.js";
import type { Config } from "../config.js";
import { openStore } from "../db/client.js";
import { migrateStore } from "../db/migrate.js";
import { AppError } from "../errors.js";
import { createLedgerReader } from "../ledger/reader.js";
import { ledgerWindowCheck } from "../ledger/window-check.js";
import { createLogger } from "../log.js";
import { createVerifier } from "../verify/engine.js";
import { profileStatus } from "../verify/profile-status.js";
import { loadProfile } from "../verify/profiles.js";
import { runVerifyCommand, type VerifyFlags, verifyWindow } from "./verify-command.js";

type Helpers = {
  withCommonOptions(command: Command): Command;
  configFromFlags(flags: Record<string, unknown>): Config;
};

/** Registers `verify`: the nightly verification of a window, with exit codes 0, 1 and 2. */
export function registerVerifyCommand(program: Command, helpers: Helpers): void {
  helpers
    .withCommonOptions(
      program
        .command("verify")
        .description(
          "bring every job of a window to a final verdict; exit 0 all verified, 1 a job is not, 2 could not finish",
        )
        .option(
          "--since <duration>",
          "window of this length ending when the run starts, e.g. 24h, 90m, 7d",
        )
        .option("--window <name>", "yesterday: the previous UTC day, [00:00, 00:00)")
        .option("--from <instant>", "window start, inclusive (YYYY-MM-DD or ISO 8601, UTC)")
        .option("--to <instant>", "window end, exclusive (default now)")
        .option("--timeout <duration>", "give up after this long (exit 2)", "30m")
        .option("--min-jobs <n>", "exit 1 when the window holds fewer jobs than this", "0")
        .option("--json", "print the summary as JSON")
        .option("--markdown", "print the summary as Markdown")
        .option("--out <file>", "write the summary to a file"),
    )
    .action(async (flags: VerifyFlags & Record<string, unknown>) => {
      const config = helpers.configFromFlags(flags);
      // Bad flags are refused before the database is opened or the RPC is asked anything.
      verifyWindow(flags, Date.now());
      if (flags.out !== undefined && !existsSync(dirname(resolve(flags.out)))) {
        throw new AppError("validation_failed", `--out: no folder ${dirname(resolve(flags.out))}`, {
          field: "out",
        });
      }
      // Logs go to stderr: stdout carries the summary, which --json callers parse.
      const log = createLogger(
        { level: config.LOG_LEVEL === "info" ? "warn" : config.LOG_LEVEL },
        pino.destination(2),
      );
      const store = openStore(config.DATABASE_URL);
      const rpc = rpcFromConfig(config, log);
      try {
        migrateStore(store);
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
        store.close();
      }
    });
}
