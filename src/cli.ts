import { realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Command, CommanderError, Option } from "commander";
import { registerTokenCommands } from "./auth/token-commands.js";
import type { ConfigInput } from "./config.js";
import { parseDatabaseUrl, refuseInMemoryStore } from "./db/url.js";
import { registerDemoCommand } from "./demo/command.js";
import { AppError, isAppError, messageOf, wholeNumberFlag } from "./errors.js";
import { registerLocalnetCommand } from "./localnet/command.js";
import { registerVerifyCommand } from "./nightly/verify-cli.js";
import { printable } from "./printable-text.js";
import { registerReportCommands } from "./reports/report-command.js";

/** The flag of commands that only read or write the store. */
function withDatabaseOption(command: Command): Command {
  return command.addOption(
    new Option("--db <path|url>", "SQLite database file, or postgres:// URL (DATABASE_URL)"),
  );
}

/** Flags of commands that read the store and the chain; each maps to a config key. */
function withCommonOptions(command: Command): Command {
  return withDatabaseOption(command)
    .addOption(new Option("--rpc <urls>", "Solana RPC URLs, comma-separated (SOLANA_RPC_URLS)"))
    .addOption(new Option("--profile <name|file>", "protocol profile (AUDIT_PROFILE)"));
}

/** Maps parsed flags to config keys; flags win over the environment. */
/** The settings a flag stands for, by the flag's name as commander keys it. */
const flagSettings = {
  db: ["--db", "DATABASE_URL"],
  rpc: ["--rpc", "SOLANA_RPC_URLS"],
  profile: ["--profile", "AUDIT_PROFILE"],
  port: ["--port", "PORT"],
  workers: ["--workers", "WORKERS"],
  host: ["--host", "HOST"],
  upstream: ["--upstream", "DECENTRAL_BASE_URL"],
  verifyCron: ["--verify-cron", "VERIFY_CRON"],
} as const satisfies Record<string, readonly [string, keyof ConfigInput]>;

/**
 * The configuration's validation (zod, croner), loaded before any action runs, not at start-up:
 * `--help`, `--version` and usage errors never pay for it. Commander has refused a bad flag by
 * then, so nothing is read before a mistyped command line is refused, as before.
 */
let configModule: typeof import("./config.js") | undefined;

export async function loadConfigModule(): Promise<typeof import("./config.js")> {
  configModule ??= await import("./config.js");
  return configModule;
}

export function configFromFlags(flags: Record<string, unknown>) {
  if (!configModule) throw new Error("configFromFlags: loadConfigModule() first");
  const { ConfigError, loadConfig } = configModule;
  const overrides: ConfigInput = {};
  const given = new Map<string, string>();
  for (const [name, [flag, key]] of Object.entries(flagSettings)) {
    const value = flags[name];
    if (typeof value !== "string") continue;
    // An empty setting in the environment means unset; an empty flag was meant to say
    // something (`--rpc ""` from a variable that was not set), and the default it would fall
    // back to (mainnet, ./data) is not what was asked for.
    // `--verify-cron ""` alone means something: no in-process nightly, whatever VERIFY_CRON says.
    if (value.trim() === "" && name !== "verifyCron") {
      throw new AppError("validation_failed", `${flag}: empty value`, { field: flag.slice(2) });
    }
    overrides[key] = value;
    given.set(key, flag);
  }
  try {
    return loadConfig(process.env, overrides);
  } catch (error) {
    // Named as the user wrote it: `--port: Too big`, not the environment variable's name.
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(
      error.issues.map((i) => {
        const flag = given.get(i.key);
        return flag ? { ...i, key: `${flag} (${i.key})` } : i;
      }),
    );
  }
}

export function buildProgram(): Command {
  const program = new Command()
    // Usage errors exit 2, like every other failure to run: exit 1 means "found a discrepancy"
    // to `verify`'s callers, and a mistyped flag in a crontab must not read as fraud.
    .exitOverride()
    .name("decentral-audit")
    .description(
      "Records Decentral job receipts and proves from the Solana chain that each job was charged and settled as its receipt says.",
    )
    .version(packageVersion(), "-V, --version")
    .showHelpAfterError()
    .hook("preAction", async () => {
      await loadConfigModule();
    });

  withCommonOptions(
    program
      .command("serve")
      .description("run the recording proxy, ingest API, verifier and audit API")
      .option("--port <port>", "HTTP port (PORT)")
      .option("--workers <n>", "processes sharing the port; default one per core (WORKERS)")
      .option("--host <host>", "interface to listen on (HOST)")
      .option("--upstream <url>", "Decentral API base URL (DECENTRAL_BASE_URL)")
      .option("--verify-cron <expr>", "run the nightly verification in-process (VERIFY_CRON)"),
  ).action(async (flags) => {
    const config = configFromFlags(flags);
    // What it records in memory would be gone when it stops, and no other command sees it
    // meanwhile. The other commands refuse one as they open their store, which must exist.
    refuseInMemoryStore(config.DATABASE_URL);
    // Loaded here, not at the top: `--help`, `verify` and `report` never pay for the service.
    const { runServeUntilStopped } = await import("./serve-cluster.js");
    // A stop signal drains it, a hangup (the terminal or session serve ran in closed) too: by
    // default it ended every process at once, cutting the responses in flight and their
    // receipts. A second signal kills.
    await runServeUntilStopped(config, fail);
  });

  withDatabaseOption(
    program
      .command("import")
      .description("import receipts from a JSONL or CSV file (- for stdin)")
      .argument("<file>", "JSONL or CSV file, or - for stdin")
      .option("--format <format>", "jsonl or csv (default: from the extension or the content)")
      .option(
        "--allow-empty",
        "exit 0 for a file holding no receipt (else refused with exit 2: an empty export is more often a broken one)",
      ),
  ).action(async (file: string, flags) => {
    const config = configFromFlags(flags);
    const { openStoreWaitingFor, runImportCommand, reconnectWithinMs } = await loadImport();
    // Receipts imported into a mistyped path would sit in a new store no `verify` reads. A
    // database restarting or failing over is waited for as long as a batch's lost connection.
    const store = await openStoreWaitingFor(config, reconnectWithinMs, (error) =>
      console.error(
        `the database is not reachable (${messageOf(error)}); waiting for it up to ${reconnectWithinMs / 1000} s`,
      ),
    );
    // Told to stop, it commits what it read and prints its summary: it used to die at once
    // with exit 143 and no word of how far it got. A second signal ends it at once.
    const abort = new AbortController();
    const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
    const onSignal = (name: NodeJS.Signals) => {
      for (const s of signals) process.off(s, onSignal);
      abort.abort(name);
    };
    for (const s of signals) process.once(s, onSignal);
    try {
      process.exitCode = await runImportCommand(store, file, flags, {
        stdin: process.stdin,
        out: (line) => console.log(line),
        err: (line) => console.error(line),
        progress: process.stderr.isTTY === true,
        signal: abort.signal,
      });
    } finally {
      for (const s of signals) process.off(s, onSignal);
      await store.close();
    }
    // Stopped, it ends by the signal it was sent, its summary out: its supervisor sees it
    // stopped so (a shell, 128 + its number; systemd, a clean stop), and a wait for a named
    // pipe's writer left in the thread pool holds no exit.
    if (abort.signal.aborted) endBySignal(abort.signal.reason as NodeJS.Signals);
  });

  const tx = program.command("tx").description("Solana transactions");
  tx.command("inspect")
    .description("print the facts of one transaction as JSON")
    .argument(
      "<target>",
      "transaction signature, saved getTransaction response file, or - for stdin",
    )
    .addOption(
      new Option(
        "--rpc <urls>",
        "Solana RPC URLs; the first is used, or all with --quorum (SOLANA_RPC_URLS)",
      ),
    )
    .addOption(
      new Option("--commitment <level>", "commitment for a fetched transaction")
        .choices(["confirmed", "finalized"])
        .default("finalized"),
    )
    .addOption(
      new Option(
        "--quorum <k>",
        "ask every RPC URL, show each one's facts and whether k of them agree (exit 1 if not)",
      ),
    )
    .action(async (target: string, flags) => {
      const config = configFromFlags(flags);
      if (flags.quorum !== undefined) {
        const { inspectWithQuorum } = await import("./chain/quorum-inspect.js");
        const inspection = await inspectWithQuorum(target, {
          config,
          // Its upper bound, the number of RPC URLs, is checked where they are known.
          quorum: wholeNumberFlag("quorum", flags.quorum, 2, Number.MAX_SAFE_INTEGER),
          commitment: flags.commitment,
        });
        console.log(JSON.stringify(inspection, null, 2));
        if (!inspection.agreed) process.exitCode = 1;
        return;
      }
      const { inspectTransaction } = await import("./chain/inspect.js");
      const facts = await inspectTransaction(target, { config, commitment: flags.commitment });
      console.log(JSON.stringify(facts, null, 2));
    });

  const db = program.command("db").description("database maintenance");
  withDatabaseOption(db.command("migrate").description("apply pending migrations")).action(
    async (flags) => {
      const config = configFromFlags(flags);
      refuseInMemoryStore(config.DATABASE_URL);
      const target = parseDatabaseUrl(config.DATABASE_URL);
      if (target.kind === "postgres") {
        const [{ postgresSettings }, { migratePostgresUrl }, { postgresOpenError }] =
          await Promise.all([
            import("./db/pg/client.js"),
            import("./db/pg/migrate.js"),
            loadStore(),
          ]);
        const { applied } = await migratePostgresUrl(
          config.DATABASE_URL,
          postgresSettings(config),
        ).catch((error: unknown) => {
          throw postgresOpenError(error, target.redacted);
        });
        console.log(`migrated ${target.redacted} (${applied} migrations applied)`);
        return;
      }
      const { openStore } = await loadStore();
      const store = await openStore(config);
      await store.close();
      console.log(`migrated ${config.DATABASE_URL}`);
    },
  );

  db.command("copy")
    .description(
      "copy a SQLite store into PostgreSQL, every table, then compare row counts and money sums per table (exit 1 on any difference); a rerun continues an interrupted copy",
    )
    .requiredOption("--from <path>", "SQLite database file to copy")
    .requiredOption("--to <url>", "postgres:// URL of the database to fill")
    .option("--batch <rows>", "rows per batch", "1000")
    .action(async (flags) => {
      const batchRows = wholeNumberFlag("batch", flags.batch, 1, Number.MAX_SAFE_INTEGER);
      const [{ runCopyCommand }, { postgresSettings }] = await Promise.all([
        import("./db/copy.js"),
        import("./db/pg/client.js"),
      ]);
      process.exitCode = await runCopyCommand(
        {
          from: flags.from,
          to: flags.to,
          batchRows,
          settings: postgresSettings(configFromFlags({})),
        },
        (line) => console.log(line),
        (line) => console.error(line),
      );
    });

  registerLocalnetCommand(program);
  registerDemoCommand(program);

  const helpers = { withCommonOptions, withDatabaseOption, configFromFlags };
  registerTokenCommands(program, helpers);
  registerReportCommands(program, helpers);
  registerVerifyCommand(program, helpers);

  refuseRepeatedOptions(program);
  return program;
}

/** The words the program was run with (commander keeps them on the program, `rawArgs`). */
function argvOf(command: Command): readonly string[] {
  let root = command;
  while (root.parent) root = root.parent;
  const raw = (root as Command & { rawArgs?: unknown }).rawArgs;
  return Array.isArray(raw) ? (raw as string[]) : [];
}

/**
 * Refuses a flag that takes a value given twice, or given another flag as its value. Commander
 * keeps the last one silently, so `tokens create --role read ... --role admin` (a default and an
 * override, or a script's flag and a user's) made an admin token without a word. A switch said twice says it once. The
 * values are not printed: one may be a URL with a key in it.
 */
function refuseRepeatedOptions(command: Command): void {
  // Every flag this command takes, `--help` too, by its long and short spelling.
  const flags = new Set(["--help", "-h"]);
  for (const option of command.options) {
    if (option.long) flags.add(option.long);
    if (option.short) flags.add(option.short);
  }
  for (const option of command.options) {
    if (!option.required && !option.optional) continue;
    let given = false;
    command.on(`option:${option.name()}`, (value: unknown) => {
      // Commander gives a flag that takes a value the next word, whatever it is: `verify --out
      // --json` wrote the summary to a file named `--json` and exited 0, and `tokens create
      // --name --db x.db` made a token named `--db` in the default store. A value that is
      // another flag of the command is a value forgotten. An optional value never takes one.
      // Given with `=` (`--out=--json`), the value was meant: a file or name spelled so.
      const taken = typeof value === "string" ? value.split("=", 1)[0]! : "";
      const attached =
        option.long !== undefined && argvOf(command).includes(`${option.long}=${value}`);
      if (option.required && flags.has(taken) && !attached) {
        const flag = option.long ?? option.flags;
        // Not kept either: `verify` says a run that could not start in its `--out` file.
        command.setOptionValue(option.attributeName(), undefined);
        command.error(
          `error: ${flag} takes a value, and the next word is the flag ${taken}: give ${flag} its value`,
          { code: "decentral-audit.flagAsValue" },
        );
      }
      if (given) {
        command.error(`error: ${option.long ?? option.flags}: given more than once; give it once`, {
          code: "decentral-audit.repeatedOption",
        });
      }
      given = true;
    });
  }
  for (const sub of command.commands) refuseRepeatedOptions(sub);
}

/**
 * The database and the import, loaded by the commands that use them, so that `--help` and
 * the other commands do not pay for them (the `start-up` bench section measures this).
 */
async function loadStore() {
  return await import("./db/open.js");
}

async function loadImport() {
  const [store, { runImportCommand, reconnectWithinMs }] = await Promise.all([
    loadStore(),
    import("./recorder/import-command.js"),
  ]);
  return { ...store, runImportCommand, reconnectWithinMs };
}

/**
 * Prints a one-line reason for a failure and exits 2. Commander has already printed its own
 * usage errors; help and version exit 0. A stack trace is printed only with LOG_LEVEL=debug.
 */
export function fail(error: unknown): never {
  if (error instanceof CommanderError) {
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  // No ConfigError can have been thrown before the configuration's module was loaded.
  if (configModule && error instanceof configModule.ConfigError) {
    console.error(error.message);
    process.exit(2);
  }
  // A database failure's cause (a connection ended, a statement cancelled), not the statement
  // the query builder wraps it in, which said neither and printed the query and its values.
  const message = messageOf(error);
  // A message may echo input (a file name, a flag's value): printed as one inert line.
  console.error(`error: ${printable(message)}`);
  if (
    !isAppError(error) &&
    error instanceof Error &&
    /^(debug|trace)$/.test(process.env.LOG_LEVEL ?? "")
  ) {
    console.error(error.stack);
  }
  process.exit(2);
}

/**
 * A reader that stops early (`report ... | head -3`) closes the pipe: the next write to stdout
 * fails with EPIPE, which unhandled printed a stack and exited 1, "discrepancy" to a cron, for
 * figures that were computed. The reader took what it wanted, so the run's own exit code stands
 * (a report's 0, `verify`'s 0 or 1) and nothing is printed. Any other failure to write (a full
 * disk under `> file`) lost output nobody chose to drop: said in one line, and a run that would
 * have exited 0 exits 2. `serve` logs through its own stream, which drops a closed pipe itself.
 */
export function guardOutputStreams(): void {
  let lost = false;
  for (const [name, stream] of [
    ["stdout", process.stdout],
    ["stderr", process.stderr],
  ] as const) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") return;
      // A message stderr could not show (its terminal gone) is no lost result: no exit 2.
      if (name === "stderr") return;
      lost = true;
      process.stderr.write(`error: stdout: ${printable(error.code ?? error.message)}\n`);
    });
  }
  process.on("exit", (code) => {
    if (lost && code === 0) process.exitCode = 2;
  });
}

/** Ends this process by `signal`'s default action, its listeners removed. */
function endBySignal(signal: NodeJS.Signals): void {
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
}

/** Entry point of the `decentral-audit` binary. */
export async function runCli(argv: string[] = process.argv): Promise<void> {
  guardOutputStreams();
  await buildProgram().parseAsync(argv).catch(fail);
}

/** The version in package.json (one folder up from src/ and from dist/ alike). */
function packageVersion(): string {
  const manifest = createRequire(import.meta.url)("../package.json") as { version: string };
  return manifest.version;
}

/** Is this module the script node was started with (not imported, not `node -e`)? */
function startedAsScript(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

// Run from source too (`node --import tsx src/cli.ts serve`), not only through bin/.
if (startedAsScript()) await runCli(process.argv);
