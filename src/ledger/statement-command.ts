import { type Command, Option } from "commander";
import { isBase58OfLength } from "../chain/base58.js";
import type { Config } from "../config.js";
import { AppError } from "../errors.js";
import { outFile, refuseUnwritableOut, writeFileWhole } from "../file-output.js";
import { printable } from "../printable-text.js";
import { type WindowFlags, windowFromFlags } from "../reports/period.js";

/**
 * What the statement commands run on, loaded by their actions: `--help` and the other commands
 * never pay for the store, the chain client or the ledger reader.
 */
async function loadStatementModules() {
  const [
    { pino },
    { rpcFromConfig },
    { openStore },
    { createLogger },
    { createAccountSnapshotsStore },
    { loadProfile },
    { accountSnapshotToJson, createAccountSnapshotter },
    { createLedgerReader },
    { buildStatement, statementToCsv, statementToJson },
  ] = await Promise.all([
    import("pino"),
    import("../chain/quorum.js"),
    import("../db/open.js"),
    import("../log.js"),
    import("../store/account-snapshots.js"),
    import("../verify/profiles.js"),
    import("./account-snapshots.js"),
    import("./reader.js"),
    import("./statement.js"),
  ]);
  return {
    pino,
    rpcFromConfig,
    openStore,
    createLogger,
    createAccountSnapshotsStore,
    loadProfile,
    accountSnapshotToJson,
    createAccountSnapshotter,
    createLedgerReader,
    buildStatement,
    statementToCsv,
    statementToJson,
  };
}

type Helpers = {
  withDatabaseOption(command: Command): Command;
  configFromFlags(flags: Record<string, unknown>): Config;
};

type StatementFlags = WindowFlags & {
  vault?: string;
  format: string;
  out?: string;
  sync?: boolean;
};

/** Refuses a `--vault` that is not a base58 address of 32 bytes, naming the flag. */
function refuseBadVault(vault: string | undefined): void {
  if (vault !== undefined && !isBase58OfLength(vault, 32)) {
    throw new AppError("validation_failed", "--vault: not a base58 address of 32 bytes", {
      field: "vault",
    });
  }
}

/** Registers `report statement` under the `report` command. */
export function registerStatementCommand(report: Command, helpers: Helpers): void {
  helpers
    .withDatabaseOption(
      report
        .command("statement")
        .description(
          "each credit vault's statement for a period (UTC): opening, deposits, locks, returns, closing by ledger and on chain, every unexplained line",
        )
        .option("--since <duration>", "period of this length ending now, e.g. 24h, 7d")
        .option("--window <name>", "yesterday: the previous UTC day, [00:00, 00:00)")
        .option("--from <instant>", "start, inclusive (YYYY-MM-DD, ISO 8601 or epoch seconds)")
        .option("--to <instant>", "end, exclusive (as --from; default now)")
        .option("--vault <address>", "only this credit vault")
        .option("--sync", "read each vault's new history from the chain first")
        .addOption(new Option("--rpc <urls>", "Solana RPC URLs for --sync (SOLANA_RPC_URLS)"))
        .addOption(new Option("--profile <name|file>", "protocol profile (AUDIT_PROFILE)"))
        .option("--format <format>", "csv or json", "json")
        .option("--out <file>", "write to a file instead of stdout (- is stdout)"),
    )
    .action(async (flags: StatementFlags) => {
      const { from, to } = windowFromFlags(flags, Date.now());
      if (flags.format !== "csv" && flags.format !== "json") {
        throw new AppError("validation_failed", "--format: csv or json", { field: "format" });
      }
      refuseBadVault(flags.vault);
      const config = helpers.configFromFlags(flags);
      const {
        pino,
        rpcFromConfig,
        openStore,
        createLogger,
        loadProfile,
        createLedgerReader,
        buildStatement,
        statementToCsv,
        statementToJson,
      } = await loadStatementModules();
      const profile = loadProfile(config.AUDIT_PROFILE);
      const out = outFile(flags.out);
      if (out) refuseUnwritableOut(out);
      const store = await openStore(config, { create: false });
      let text: string;
      // Vaults whose history --sync could not read: the statement still prints (it says how
      // far each vault is read), but the command fails, so a script does not take it as new.
      const unsynced: string[] = [];
      try {
        if (flags.sync) {
          const log = createLogger({ level: "warn" }, pino.destination(2));
          const rpc = rpcFromConfig(config, log);
          try {
            const reader = createLedgerReader({
              store,
              rpc,
              profile,
              log,
              custody: config.CREDIT_VAULTS,
            });
            const failed = (vault: string, message: string) =>
              unsynced.push(`--sync could not read vault ${vault}: ${message}`);
            if (flags.vault) {
              await reader.syncVault(flags.vault).catch((error: unknown) => {
                failed(flags.vault ?? "", error instanceof Error ? error.message : String(error));
              });
            } else await reader.syncAll({ onVaultError: failed });
          } finally {
            await rpc.close();
          }
        }
        const statement = await buildStatement(
          store,
          { from, to, ...(flags.vault ? { vault: flags.vault } : {}) },
          { profile, graceSeconds: config.LEDGER_GRACE_SECONDS },
        );
        text =
          flags.format === "csv"
            ? statementToCsv(statement)
            : `${JSON.stringify(statementToJson(statement), null, 2)}\n`;
      } finally {
        await store.close();
      }
      if (out) writeFileWhole(out, text);
      else process.stdout.write(text);
      for (const line of unsynced) console.error(`error: ${printable(line)}`);
      if (unsynced.length > 0) process.exitCode = 2;
    });

  helpers
    .withDatabaseOption(
      report
        .command("account-snapshot")
        .description(
          "ask Decentral's GET /v1/account (DECENTRAL_API_KEY) now and compare it with the key's credit vault on chain; keeps the snapshot",
        )
        .option("--list", "only print the snapshots kept, newest first")
        .option("--vault <address>", "with --list: only this credit vault")
        .addOption(new Option("--rpc <urls>", "Solana RPC URLs (SOLANA_RPC_URLS)"))
        .addOption(new Option("--upstream <url>", "Decentral API base URL (DECENTRAL_BASE_URL)"))
        // Its credit mint: a vault's address holding another mint holds no credits.
        .addOption(new Option("--profile <name|file>", "protocol profile (AUDIT_PROFILE)")),
    )
    .action(async (flags: { list?: boolean; vault?: string }) => {
      // A mistyped vault would list nothing, read as "no snapshots of this vault".
      refuseBadVault(flags.vault);
      // A snapshot is always of the key's own vault: without --list, one asked of another was
      // taken of the key's and printed as if it were of the one asked for.
      if (flags.vault !== undefined && !flags.list) {
        throw new AppError(
          "validation_failed",
          "--vault: only with --list; a snapshot is taken of DECENTRAL_API_KEY's own vault",
          { field: "vault" },
        );
      }
      const config = helpers.configFromFlags(flags);
      const {
        pino,
        rpcFromConfig,
        openStore,
        createLogger,
        createAccountSnapshotsStore,
        loadProfile,
        accountSnapshotToJson,
        createAccountSnapshotter,
      } = await loadStatementModules();
      const store = await openStore(config, { create: false });
      try {
        if (flags.list) {
          const list = await createAccountSnapshotsStore(store).list(
            flags.vault ? { vault: flags.vault } : {},
          );
          process.stdout.write(
            `${JSON.stringify({ snapshots: list.map(accountSnapshotToJson) }, null, 2)}\n`,
          );
          return;
        }
        if (!config.DECENTRAL_API_KEY) {
          throw new AppError("validation_failed", "DECENTRAL_API_KEY is not set", {
            field: "DECENTRAL_API_KEY",
          });
        }
        const log = createLogger({ level: "warn" }, pino.destination(2));
        const rpc = rpcFromConfig(config, log);
        try {
          const snapshot = await createAccountSnapshotter({
            store,
            rpc,
            profile: loadProfile(config.AUDIT_PROFILE),
            baseUrl: config.DECENTRAL_BASE_URL,
            apiKey: config.DECENTRAL_API_KEY,
            custody: config.CREDIT_VAULTS,
            log,
          }).take();
          process.stdout.write(`${JSON.stringify(accountSnapshotToJson(snapshot), null, 2)}\n`);
          // A difference is a finding, like an unexplained line: exit 1 (2 when nothing compared).
          if (snapshot.error !== null) process.exitCode = 2;
          else if (snapshot.usdcDifferenceUnits !== 0n || snapshot.creditsDifference !== 0) {
            process.exitCode = 1;
          }
        } finally {
          await rpc.close();
        }
      } finally {
        await store.close();
      }
    });
}
