import type { Command } from "commander";
import type { Config } from "../config.js";
import { sayNotStartedAsJson } from "./not-started.js";
import type { VerifyFlags } from "./verify-command.js";

type Helpers = {
  withCommonOptions(command: Command): Command;
  configFromFlags(flags: Record<string, unknown>): Config;
};

/** Registers `verify`: the nightly verification of a window, with exit codes 0, 1 and 2. */
export function registerVerifyCommand(program: Command, helpers: Helpers): void {
  const verify = helpers
    .withCommonOptions(
      program
        .command("verify")
        .description(
          "bring every job of a window to a final verdict; exit 0 nothing found, 1 a job not verified (discrepancy, dropped, unverifiable), a credit vault ledger finding or fewer jobs than --min-jobs, 2 could not finish",
        )
        .option(
          "--since <duration>",
          "window of this length ending when the run starts, e.g. 24h, 90m, 7d",
        )
        .option("--window <name>", "yesterday: the previous UTC day, [00:00, 00:00)")
        .option(
          "--from <instant>",
          "window start, inclusive (YYYY-MM-DD, ISO 8601 or epoch seconds; UTC)",
        )
        .option("--to <instant>", "window end, exclusive (as --from; default now)")
        .option("--timeout <duration>", "give up after this long (exit 2)", "30m")
        .option("--min-jobs <n>", "exit 1 when the window holds fewer jobs than this", "0")
        .option("--json", "print the summary as JSON")
        .option("--markdown", "print the summary as Markdown")
        .option("--out <file>", "write the summary to a file (- is stdout)"),
    )
    .action(async (flags: VerifyFlags & Record<string, unknown>) => {
      // With --json, a run that fails before its summary still prints one JSON object.
      let printed = false;
      const out = (text: string) => {
        printed = true;
        process.stdout.write(text);
      };
      try {
        const config = helpers.configFromFlags(flags);
        // Loaded here: `--help` and the other commands never load the verifier.
        const { runVerifyFromCli } = await import("./verify-run.js");
        await runVerifyFromCli(config, flags, out);
      } catch (error) {
        if (!printed) sayNotStartedAsJson(flags, error);
        throw error;
      }
    });
  // A flag commander refuses (unknown, without its value) ends the run before the action.
  verify.exitOverride((error) => {
    if (error.exitCode !== 0) sayNotStartedAsJson(verify.opts(), error);
    throw error;
  });
}
