import { type StdioOptions, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Command } from "commander";
import { describe, expect, it } from "vitest";
import { buildProgram, configFromFlags, loadConfigModule } from "../src/cli.js";
import { openSqliteStore, storeFileError } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { runCliInProcess } from "./support/cli-in-process.js";
import { cliArgv } from "./support/service-process.js";

let defaultStore: string | undefined;

/** An empty store of this program, for the commands whose store is not what is tested. */
function emptyStore(): string {
  if (defaultStore === undefined) {
    defaultStore = join(mkdtempSync(join(tmpdir(), "cli-store-")), "audit.db");
    const store = openSqliteStore(defaultStore);
    migrateStore(store);
    store.close();
  }
  return defaultStore;
}

/**
 * At most two CLI processes of this file at once. Each start is most of a second of CPU: the
 * file's seventy, one after the other, took a minute of a 2-core runner mostly waiting on one
 * process; two at once overlap their waits without crowding the other test file's process.
 */
const parallel = 2;
let running = 0;
const queued: (() => void)[] = [];
async function inTurn<T>(work: () => Promise<T>): Promise<T> {
  if (running < parallel) running++;
  else await new Promise<void>((resolve) => queued.push(resolve));
  try {
    return await work();
  } finally {
    const next = queued.shift();
    if (next) next();
    else running--;
  }
}

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a process to its end as spawnSync would (stdin closed at once, output read whole, killed
 * with `killSignal` past `timeout`), without blocking the test's other processes.
 */
function runProcess(
  command: string,
  args: readonly string[],
  options: {
    env?: NodeJS.ProcessEnv;
    stdio?: StdioOptions;
    cwd?: string;
    timeout: number;
    killSignal?: NodeJS.Signals;
    uid?: number;
    gid?: number;
  },
): Promise<Ran> {
  return inTurn(
    () =>
      new Promise<Ran>((resolve, reject) => {
        const child = spawn(command, args, {
          ...(options.env ? { env: options.env } : {}),
          ...(options.cwd ? { cwd: options.cwd } : {}),
          ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid }),
          stdio: options.stdio ?? "pipe",
          timeout: options.timeout,
          killSignal: options.killSignal ?? "SIGTERM",
        });
        child.stdin?.end();
        let stdout = "";
        let stderr = "";
        child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
          stdout += chunk;
        });
        child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
          stderr += chunk;
        });
        child.once("error", reject);
        child.once("close", (status) => resolve({ status, stdout, stderr }));
      }),
  );
}

/**
 * Runs the CLI's command line in this process (test/support/cli-in-process.ts): the message
 * and exit code are what the binary's entry point makes of it. The exit code a process ends
 * with, and what it does with its own streams, are tested with `cliProcess` and `spawnCli`.
 */
function cli(...args: string[]) {
  return cliWithEnv({ DATABASE_URL: emptyStore() }, ...args);
}

function cliWithEnv(env: Record<string, string>, ...args: string[]) {
  return runCliInProcess(args, env);
}

/** Runs the CLI in a child process, as a crontab would run the binary. */
function cliProcess(...args: string[]) {
  return cliProcessWithEnv({ DATABASE_URL: emptyStore() }, ...args);
}

async function cliProcessWithEnv(env: Record<string, string>, ...args: string[]) {
  const result = await runProcess(
    process.execPath,
    cliArgv(args),
    // A bound, so that a `serve` that wrongly starts ends the test instead of hanging it.
    { env: { ...process.env, ...env }, timeout: 30_000 },
  );
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Runs the CLI with the given stdio and folder. Killed outright past 30 s: a process stuck in
 * a blocking open does not run a handler for a gentler signal.
 */
function spawnCli(
  args: readonly string[],
  options: { stdio?: StdioOptions; cwd?: string; extra?: string[]; pipeTo?: string } = {},
): Promise<Ran> {
  const node = [process.execPath, ...cliArgv([...args, ...(options.extra ?? [])])];
  // Through a shell pipeline, stdout is a pipe (`pipe:[...]`); Node's own is a socket.
  const [command, ...rest] = options.pipeTo
    ? ["/bin/sh", "-c", `"$@" | ${options.pipeTo}`, "sh", ...node]
    : node;
  return runProcess(command as string, rest, {
    timeout: 30_000,
    killSignal: "SIGKILL",
    ...(options.stdio ? { stdio: options.stdio } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
}

describe("CLI exit codes", () => {
  it("exits 2, never 1, on a mistyped flag, so cron does not read it as a discrepancy", async () => {
    const run = await cliProcess("verify", "--sinse", "24h");
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("unknown option '--sinse'");
  });

  it("refuses an empty flag and names the flag the user wrote in a bad setting", async () => {
    // `--rpc "$RPC"` with RPC unset: not mainnet, the default it would fall back to.
    const bad = cli("verify", "--since", "1h", "--rpc", "notaurl");
    await Promise.all(
      ["--rpc", "--db", "--profile"].map(async (flag) => {
        const run = await cli("verify", "--since", "1h", flag, "");
        expect(run.code, flag).toBe(2);
        expect(run.stderr.trim(), flag).toBe(`error: ${flag}: empty value`);
      }),
    );
    // Except --verify-cron "": it turns off the in-process nightly the environment sets.
    const before = process.env.VERIFY_CRON;
    process.env.VERIFY_CRON = "0 3 * * *";
    await loadConfigModule();
    try {
      expect(configFromFlags({}).VERIFY_CRON).toBe("0 3 * * *");
      expect(configFromFlags({ verifyCron: "" }).VERIFY_CRON).toBeUndefined();
    } finally {
      if (before === undefined) delete process.env.VERIFY_CRON;
      else process.env.VERIFY_CRON = before;
    }
    expect((await bad).code).toBe(2);
    expect((await bad).stderr).toContain("--rpc (SOLANA_RPC_URLS): Invalid URL");
  });

  it("names a refused profile beside another bad setting in one message, by the flag written", async () => {
    const fromEnv = await cliWithEnv({ AUDIT_PROFILE: "mainnet", PORT: "abc" }, "serve");
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain('  AUDIT_PROFILE: profile "mainnet" is neither');
    expect(fromEnv.stderr).toContain("  PORT: must be a whole number");
    const fromFlags = await cli(
      "verify",
      "--since",
      "1h",
      "--profile",
      "mainnet",
      "--rpc",
      "ftp://x",
    );
    expect(fromFlags.code).toBe(2);
    expect(fromFlags.stderr).toContain('  --profile (AUDIT_PROFILE): profile "mainnet" is neither');
    expect(fromFlags.stderr).toContain("  --rpc (SOLANA_RPC_URLS): Invalid URL");
  });

  // Commander gives a flag that takes a value the next word whatever it is: `verify --out
  // --json` wrote the summary to a file named `--json` and exited 0, `tokens create --name --db
  // x.db` made a token named `--db` in the default store, `localnet --host --json` said only
  // `getaddrinfo ENOTFOUND --json`.
  it("refuses a flag whose value is another of its command's flags, naming both, and does nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-flag-value-"));
    const cases = [
      [["verify", "--since", "1h", "--out", "--json"], "--out", "--json"],
      [
        ["tokens", "create", "--role", "read", "--name", "--db", join(dir, "t.db")],
        "--name",
        "--db",
      ],
      [["localnet", "--host", "--json"], "--host", "--json"],
      [
        ["report", "reconciliation", "--since", "1d", "--format", "--out=x.csv"],
        "--format",
        "--out",
      ],
      [["serve", "--port", "-h"], "--port", "-h"],
    ] as const;
    for (const [args, flag, taken] of cases) {
      const run = await cliWithEnv({ DATABASE_URL: join(dir, "default.db") }, ...args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr, args.join(" ")).toContain(
        `error: ${flag} takes a value, and the next word is the flag ${taken}: give ${flag} its value`,
      );
    }
    // A value that only starts with dashes, not a flag of the command, is a value.
    const named = await cliWithEnv(
      { DATABASE_URL: emptyStore() },
      "tokens",
      "create",
      "--role",
      "read",
      "--name",
      "--grafana",
    );
    expect(named.code).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
    // Nor does `verify` say it could not start in a file named as the flag.
    expect(existsSync("--json")).toBe(false);
  });

  // Given with `=`, the value was meant: `--name=--db` was refused as a value forgotten, and a
  // file named `--json` could be written only as `./--json`.
  it("takes a value given with = that is spelled as another of its command's flags", async () => {
    const db = emptyStore();
    const named = await cliWithEnv(
      { DATABASE_URL: db },
      "tokens",
      "create",
      "--role",
      "read",
      "--name=--db",
    );
    expect(named.stderr).not.toContain("takes a value");
    expect(named.code).toBe(0);
    const listed = await cliWithEnv({ DATABASE_URL: db }, "tokens", "list", "--json");
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('"--db"');
  });

  it("refuses a flag given twice instead of keeping the last, and creates nothing", async () => {
    const since = cli("report", "reconciliation", "--since", "7d", "--since", "1d");
    // A switch said twice says it once.
    const json = cli("tokens", "list", "--json", "--json");
    const run = await cli(
      "tokens",
      "create",
      "--role",
      "read",
      "--name",
      "twice-role",
      "--role",
      "admin",
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("error: --role: given more than once; give it once");
    expect((await cli("tokens", "list", "--json")).stdout).not.toContain("twice-role");
    expect((await since).code).toBe(2);
    expect((await since).stderr).toContain("error: --since: given more than once");
    expect((await since).stdout).toBe("");
    expect((await json).code).toBe(0);
  });

  it("refuses an empty --out rather than print to stdout the report a file was asked for", async () => {
    await Promise.all(
      [
        ["report", "reconciliation", "--since", "7d"],
        ["report", "statement", "--from", "2026-11-01", "--to", "2026-12-01"],
        ["verify", "--since", "1h"],
      ].map(async (args) => {
        const run = await cli(...args, "--out", "");
        expect(run.code, args[0]).toBe(2);
        expect(run.stderr.trim(), args.join(" ")).toBe("error: --out: empty value");
        expect(run.stdout, args.join(" ")).toBe("");
      }),
    );
  });

  it("exits 2 with one line and no stack trace when a file cannot be read", async () => {
    const run = await cli("import", "/nonexistent/receipts.jsonl");
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain("/nonexistent/receipts.jsonl");
  });

  it("prints a file name's escape sequences and line breaks in its error as inert text", async () => {
    const run = await cli("import", "/nonexistent/x\u001b[2J\nall receipts imported.jsonl");
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).not.toContain("\u001b");
    expect(run.stderr).toContain("/nonexistent/x\\u001b[2J\\u000aall receipts imported.jsonl");
  });

  it("exits 0 for --help", async () => {
    expect((await cliProcess("--help")).code).toBe(0);
  });

  it("prints its version and exits 0, run from source as a script", async () => {
    const run = await runProcess(process.execPath, ["--import", "tsx", "src/cli.ts", "--version"], {
      timeout: 50_000,
    });
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe(
      (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version,
    );
  });

  it("exits 2 naming the path when a command that reads the store is given a file that is not there", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-typo-"));
    const typo = join(dir, "typo", "audit.dbx");
    const receipts = join(dir, "receipts.jsonl");
    // The same through the environment, in a folder that exists.
    const sibling = join(dir, "audit.dbx");
    const viaEnv = cliWithEnv(
      { DATABASE_URL: sibling },
      "tokens",
      "create",
      "--role",
      "read",
      "--name",
      "x",
    );
    // An empty file (touched, or a copy that failed) is no store either.
    const empty = join(dir, "empty.db");
    writeFileSync(empty, "");
    const onEmptyRun = cli(
      "verify",
      "--since",
      "24h",
      "--rpc",
      "http://127.0.0.1:9",
      "--db",
      empty,
    );
    // A crontab with a mistyped path must not read as "all verified" from a new empty store.
    await Promise.all(
      [
        ["verify", "--since", "24h", "--rpc", "http://127.0.0.1:9", "--db", typo],
        ["import", receipts, "--db", typo],
        ["report", "reconciliation", "--since", "24h", "--db", typo],
        ["tokens", "list", "--db", typo],
      ].map(async (args) => {
        const run = await cli(...args);
        expect(run.code, args.join(" ")).toBe(2);
        expect(run.stderr).toContain(`no SQLite store at ${typo}`);
        expect(run.stderr).toContain("db migrate");
      }),
    );
    const run = await viaEnv;
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`no SQLite store at ${sibling}`);
    expect(existsSync(join(dir, "typo"))).toBe(false);
    expect(existsSync(sibling)).toBe(false);
    const onEmpty = await onEmptyRun;
    expect(onEmpty.code).toBe(2);
    expect(onEmpty.stderr).toContain(`no SQLite store at ${empty}`);
    expect(statSync(empty).size).toBe(0);
  }, 60_000);

  it("refuses another application's SQLite database with exit 2 and one line, changing nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-foreign-"));
    const foreign = join(dir, "other.db");
    const other = new Database(foreign);
    other.exec("CREATE TABLE g(a); INSERT INTO g VALUES (1)");
    other.close();
    const before = readFileSync(foreign);
    const receipts = join(dir, "receipts.jsonl");
    writeFileSync(receipts, "");
    await Promise.all(
      [
        ["verify", "--window", "yesterday", "--rpc", "http://127.0.0.1:9", "--db", foreign],
        ["report", "reconciliation", "--since", "24h", "--db", foreign],
        ["import", receipts, "--db", foreign],
        ["tokens", "list", "--db", foreign],
        ["db", "migrate", "--db", foreign],
        ["serve", "--workers", "1", "--port", "0", "--db", foreign],
      ].map(async (args) => {
        // serve in a process of its own: refused, it must not start.
        const run = await (args[0] === "serve" ? cliProcess : cli)(...args);
        expect(run.code, args.join(" ")).toBe(2);
        expect(run.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
        expect(run.stderr).toContain(`${foreign} is not a decentral-audit store`);
        expect(run.stderr).toContain("(g)");
      }),
    );
    expect(readFileSync(foreign).equals(before)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(["other.db", "receipts.jsonl"]);
    // Nor is a file that is no SQLite database at all.
    const text = join(dir, "notes.db");
    writeFileSync(text, "these are notes, not a database\n".repeat(200));
    const run = await cli("verify", "--since", "24h", "--rpc", "http://127.0.0.1:9", "--db", text);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${text} is not a decentral-audit store: it is not a SQLite`);
  }, 120_000);

  it("refuses an --out that is a folder before the report is made, naming it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-out-"));
    await Promise.all(
      [
        ["report", "reconciliation", "--since", "24h", "--out", dir],
        ["report", "reconciliation", "--recompute", "--out", dir],
        ["report", "statement", "--since", "24h", "--out", dir],
      ].map(async (args) => {
        const run = await cli(...args);
        expect(run.code, args.join(" ")).toBe(2);
        expect(run.stderr.trim(), args.join(" ")).toBe(
          `error: --out: ${dir} is a folder; give a file name`,
        );
      }),
    );
  }, 60_000);

  it("writes --out into a device, never replacing it: /dev/full is a full disk, exit 2", async () => {
    await Promise.all(
      [
        ["report", "reconciliation", "--since", "24h", "--out", "/dev/full"],
        ["verify", "--since", "24h", "--rpc", "http://127.0.0.1:9", "--out", "/dev/full"],
      ].map(async (args) => {
        const run = await cli(...args);
        expect(run.code, args.join(" ")).toBe(2);
        expect(run.stderr, args.join(" ")).toContain(
          "error: --out: cannot write /dev/full: ENOSPC: no space left on device",
        );
      }),
    );
    expect(statSync("/dev/full").isCharacterDevice()).toBe(true);
  }, 60_000);

  it("writes --out /proc/self/fd/1 (what /dev/stdout links to) into the log stdout appends to", async () => {
    const log = join(mkdtempSync(join(tmpdir(), "cli-stdout-")), "app.log");
    writeFileSync(log, "earlier line\n");
    const fd = openSync(log, "a");
    try {
      const run = await runProcess(
        process.execPath,
        cliArgv([
          ...["report", "reconciliation", "--since", "24h", "--db", emptyStore()],
          ...["--out", "/proc/self/fd/1"],
        ]),
        { stdio: ["ignore", fd, "pipe"], timeout: 30_000 },
      );
      expect(run.stderr).toBe("");
      expect(run.status).toBe(0);
    } finally {
      closeSync(fd);
    }
    const text = readFileSync(log, "utf8");
    expect(text.startsWith("earlier line\n{")).toBe(true);
    expect(JSON.parse(text.slice("earlier line\n".length))).toHaveProperty("totals");
  }, 60_000);

  it("writes --out /dev/fd/1 into the log stdout appends to, and into a pipe", async () => {
    const log = join(mkdtempSync(join(tmpdir(), "cli-stdout-")), "app.log");
    writeFileSync(log, "earlier line\n");
    const before = statSync(log).ino;
    const args = ["report", "reconciliation", "--since", "24h", "--db", emptyStore()];
    const fd = openSync(log, "a");
    try {
      const run = await spawnCli([...args, "--out", "/dev/fd/1"], {
        stdio: ["ignore", fd, "pipe"],
      });
      expect(run.stderr).toBe("");
      expect(run.status).toBe(0);
    } finally {
      closeSync(fd);
    }
    // The log the shell appends to, not a new file renamed over it.
    expect(statSync(log).ino).toBe(before);
    const text = readFileSync(log, "utf8");
    expect(text.startsWith("earlier line\n{")).toBe(true);
    expect(JSON.parse(text.slice("earlier line\n".length))).toHaveProperty("totals");
    // Stdout a pipe (`| mail`): /dev/fd/1 links to `pipe:[...]`, which no folder holds.
    const piped = await spawnCli([...args, "--out", "/dev/fd/1"], { pipeTo: "cat" });
    expect(piped.stderr).toBe("");
    expect(piped.status).toBe(0);
    expect(JSON.parse(piped.stdout)).toHaveProperty("totals");
  }, 60_000);

  it("exits 2 naming the path when --out /dev/stdout cannot be written (a full disk)", async () => {
    const args = ["report", "reconciliation", "--since", "24h", "--db", emptyStore()];
    const full = openSync("/dev/full", "w");
    try {
      const run = await spawnCli([...args, "--out", "/dev/stdout"], {
        stdio: ["ignore", full, "pipe"],
      });
      expect(run.stderr).toContain("error: --out: cannot write /dev/stdout: ENOSPC");
      expect(run.status).toBe(2);
    } finally {
      closeSync(full);
    }
  }, 60_000);

  it("writes --out /dev/stdout into a socket (the journal under systemd), which no path opens", async () => {
    const args = ["report", "reconciliation", "--since", "24h", "--db", emptyStore()];
    // Node's child_process gives stdout a socket pair, as systemd gives the journal's socket.
    await Promise.all(
      ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"].map(async (out) => {
        const run = await spawnCli([...args, "--out", out]);
        expect(run.stderr, out).toBe("");
        expect(run.status, out).toBe(0);
        expect(JSON.parse(run.stdout), out).toHaveProperty("totals");
      }),
    );
  }, 60_000);

  it("writes --out - to stdout, for every command that takes --out, and makes no file -", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "cli-out-dash-"));
    await Promise.all(
      (
        [
          [["report", "reconciliation", "--since", "24h"], '"totals"'],
          [["report", "reconciliation", "--recompute"], "rollups"],
          [["report", "statement", "--since", "24h"], '"vaults"'],
          [["verify", "--since", "24h", "--rpc", "http://127.0.0.1:9"], "jobs"],
        ] as const
      ).map(async ([args, expected]) => {
        const run = await spawnCli([...args, "--db", emptyStore(), "--out", "-"], { cwd });
        expect(run.stdout, args.join(" ")).toContain(expected);
        expect(readdirSync(cwd), args.join(" ")).toEqual([]);
      }),
    );
  }, 120_000);

  it("refuses --out to a named pipe nobody reads with exit 2, instead of waiting forever", async () => {
    const fifo = join(mkdtempSync(join(tmpdir(), "cli-fifo-")), "summary.pipe");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const run = await spawnCli(
      ["report", "reconciliation", "--since", "24h", "--db", emptyStore()],
      {
        extra: ["--out", fifo],
      },
    );
    expect(run.stderr.trim()).toBe(
      `error: --out: nothing reads the named pipe ${fifo}; start its reader first`,
    );
    expect(run.status).toBe(2);
  }, 60_000);

  it("refuses an in-memory database for every command with exit 2 and one line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-memory-"));
    const receipts = join(dir, "receipts.jsonl");
    writeFileSync(receipts, "");
    const commands = [
      ["verify", "--since", "24h", "--rpc", "http://127.0.0.1:9"],
      ["tokens", "create", "--role", "read", "--name", "ops"],
      ["tokens", "list"],
      ["report", "reconciliation", "--since", "24h"],
      ["report", "statement", "--since", "24h"],
      ["import", receipts],
      ["db", "migrate"],
      ["serve", "--workers", "1", "--port", "0", "--profile", "localnet"],
    ];
    const runs = [
      ...commands.map((args) => [":memory:", args] as const),
      ["file::memory:", commands[0]!] as const,
      [`file:${join(dir, "a.db")}?mode=memory`, commands[1]!] as const,
      [`file:${join(dir, "a.db")}?mode=memory`, commands[6]!] as const,
    ];
    // Through the environment too.
    const viaEnv = cliWithEnv(
      { DATABASE_URL: ":memory:" },
      "report",
      "reconciliation",
      "--since",
      "1d",
    );
    await Promise.all(
      runs.map(async ([url, args]) => {
        const what = `${args.join(" ")} --db ${url}`;
        // serve in a process of its own: refused, it must not start.
        const run = await (args[0] === "serve" ? cliProcess : cli)(...args, "--db", url);
        expect(run.code, what).toBe(2);
        expect(run.stderr.trim(), what).toBe(
          `error: ${url} is an in-memory database, which keeps nothing between processes: give --db / DATABASE_URL a database file or a postgres:// URL`,
        );
        // Above all no token that no service would know.
        expect(run.stdout, what).toBe("");
      }),
    );
    const run = await viaEnv;
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(":memory: is an in-memory database");
    expect(readdirSync(dir)).toEqual(["receipts.jsonl"]);
  }, 120_000);

  it("says a --db that is a folder is a folder, naming it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-folder-"));
    const receipts = join(dir, "receipts.jsonl");
    writeFileSync(receipts, "");
    await Promise.all(
      [
        ["verify", "--since", "24h", "--rpc", "http://127.0.0.1:9"],
        ["tokens", "list"],
        ["report", "reconciliation", "--since", "24h"],
        ["import", receipts],
        ["db", "migrate"],
      ].map(async (args) => {
        const run = await cli(...args, "--db", dir);
        expect(run.code, args.join(" ")).toBe(2);
        expect(run.stderr.trim(), args.join(" ")).toBe(
          `error: ${dir} is a folder, not a SQLite database file (check --db / DATABASE_URL)`,
        );
      }),
    );
    expect(readdirSync(dir)).toEqual(["receipts.jsonl"]);
  }, 60_000);

  it("says a --db in a folder that cannot be written names the file and the folder, serve included", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-readonly-"));
    const db = join(dir, "audit.db");
    copyFileSync(emptyStore(), db);
    chmodSync(dir, 0o555);
    // Root writes wherever the mode bits say not: the commands run as nobody then.
    const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const runs = [
      [db, ["verify", "--since", "24h", "--rpc", "http://127.0.0.1:9"]],
      [db, ["report", "reconciliation", "--since", "24h"]],
      [db, ["serve", "--workers", "1", "--port", "0"]],
      [db, ["serve", "--workers", "2", "--port", "0"]],
      [join(dir, "new.db"), ["serve", "--workers", "1", "--port", "0"]],
      [join(dir, "new.db"), ["db", "migrate"]],
    ] as const;
    await Promise.all(
      runs.map(async ([path, args]) => {
        const run = await runProcess(process.execPath, cliArgv([...args, "--db", path]), {
          env: { ...process.env, LOG_LEVEL: "silent" },
          timeout: 30_000,
          ...user,
        });
        expect(run.status, args.join(" ")).toBe(2);
        expect(run.stderr.trim(), args.join(" ")).toMatch(
          new RegExp(
            `^error: cannot use the SQLite store ${path}: its folder ${dir} cannot be written \\((EACCES|EROFS)\\), and SQLite keeps its -wal and -shm files beside it \\(check --db / DATABASE_URL\\)$`,
          ),
        );
      }),
    );
    expect(readdirSync(dir)).toEqual(["audit.db"]);
  }, 120_000);

  it("says a --db file another user owns names the file, its owner and mode", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-foreign-"));
    chmodSync(dir, 0o777);
    const db = join(dir, "audit.db");
    copyFileSync(emptyStore(), db);
    chmodSync(db, 0o600);
    const owner = statSync(db).uid;
    // Root reads whatever the mode bits say not: the command runs as nobody then.
    const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    if (!("uid" in user)) chmodSync(db, 0o000);
    const run = await runProcess(
      process.execPath,
      cliArgv(["report", "reconciliation", "--since", "24h", "--db", db]),
      { env: { ...process.env, LOG_LEVEL: "silent" }, timeout: 30_000, ...user },
    );
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toMatch(
      new RegExp(
        `^error: cannot use the SQLite store ${db}: this user \\(uid \\d+\\) cannot read and write the file \\(EACCES; its owner is uid ${owner}, mode [0-7]+\\) \\(check --db / DATABASE_URL\\)$`,
      ),
    );
  }, 60_000);

  it("says a --db file another user owns and this one may only read names it where a command writes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-readable-"));
    chmodSync(dir, 0o777);
    const db = join(dir, "audit.db");
    copyFileSync(emptyStore(), db);
    chmodSync(db, 0o444);
    const owner = statSync(db).uid;
    const lines = join(dir, "receipts.jsonl");
    writeFileSync(lines, `${JSON.stringify({ job_id: "job_ro", escrow_tx: "1".repeat(64) })}\n`);
    chmodSync(lines, 0o444);
    // Root writes whatever the mode bits say not: the commands run as nobody then.
    const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const run = (args: readonly string[]) =>
      runProcess(process.execPath, cliArgv([...args, "--db", db]), {
        env: { ...process.env, LOG_LEVEL: "silent" },
        timeout: 30_000,
        ...user,
      });
    const writers = [
      ["import", lines],
      ["verify", "--since", "24h", "--rpc", "http://127.0.0.1:9"],
      ["tokens", "create", "--role", "read", "--name", "x"],
      ["serve", "--workers", "1", "--port", "0"],
    ] as const;
    await Promise.all(
      writers.map(async (args) => {
        const ran = await run(args);
        expect(ran.status, args.join(" ")).toBe(2);
        expect(ran.stderr.trim(), args.join(" ")).toMatch(
          new RegExp(
            `^error: cannot use the SQLite store ${db}: this user \\(uid \\d+\\) cannot read and write the file \\(EACCES; its owner is uid ${owner}, mode 444\\) \\(check --db / DATABASE_URL\\)$`,
          ),
        );
      }),
    );
    // A report only reads: a reader's copy serves it.
    const report = await run(["report", "reconciliation", "--since", "24h"]);
    expect(report.stderr).toBe("");
    expect(report.status).toBe(0);
  }, 120_000);

  // A report run as a reader in the store's group left SQLite's -wal and -shm files beside the
  // store, owned by the reader: the owner's next import (or serve, or nightly verify) failed with
  // "attempt to write a readonly database". Two users are needed: run as root only.
  it.runIf(process.getuid?.() === 0)(
    "leaves no -wal or -shm file when a report runs as a reader of the store's group",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "cli-reader-"));
      const [owner, reader] = [
        { uid: 4001, gid: 4001 },
        { uid: 4002, gid: 4001 },
      ];
      chownSync(dir, owner.uid, owner.gid);
      chmodSync(dir, 0o775);
      const db = join(dir, "audit.db");
      copyFileSync(emptyStore(), db);
      chownSync(db, owner.uid, owner.gid);
      chmodSync(db, 0o640);
      const lines = join(dir, "receipts.jsonl");
      writeFileSync(lines, `${JSON.stringify({ job_id: "job_rd", escrow_tx: "1".repeat(64) })}\n`);
      const run = (args: readonly string[], user: { uid: number; gid: number }) =>
        runProcess(process.execPath, cliArgv([...args, "--db", db]), {
          env: { ...process.env, LOG_LEVEL: "silent" },
          timeout: 30_000,
          ...user,
        });
      const report = await run(["report", "reconciliation", "--since", "24h"], reader);
      expect(report.stderr).toBe("");
      expect(report.status).toBe(0);
      expect(readdirSync(dir).sort()).toEqual(["audit.db", "receipts.jsonl"]);
      const imported = await run(["import", lines], owner);
      expect(imported.stderr).not.toContain("readonly");
      expect(imported.status).toBe(0);
    },
    60_000,
  );

  // `fs` said only "EACCES: permission denied, open 'receipts.jsonl'", naming no user.
  it("says an import file this user may not read names it and the user", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-unreadable-"));
    chmodSync(dir, 0o777);
    const db = join(dir, "audit.db");
    copyFileSync(emptyStore(), db);
    chmodSync(db, 0o666);
    const lines = join(dir, "receipts.jsonl");
    writeFileSync(lines, `${JSON.stringify({ job_id: "job_ro", escrow_tx: "1".repeat(64) })}\n`);
    chmodSync(lines, 0o000);
    // Root reads whatever the mode bits say not: the command runs as nobody then.
    const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const run = await runProcess(process.execPath, cliArgv(["import", lines, "--db", db]), {
      env: { ...process.env, LOG_LEVEL: "silent" },
      timeout: 30_000,
      ...user,
    });
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toMatch(
      new RegExp(
        `^error: ${lines}: this user \\(uid \\d+\\) may not read it or a folder on its path \\(EACCES\\); nothing was imported$`,
      ),
    );
  }, 60_000);

  it("says a store on a full disk names the file and that the disk is full", () => {
    const full = Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
    expect((storeFileError("/data/audit.db", full) as Error).message).toBe(
      "cannot use the SQLite store /data/audit.db: the disk holding it is full; free space there (check --db / DATABASE_URL)",
    );
    const other = Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
    expect(storeFileError("/data/audit.db", other)).toBe(other);
  });

  it("says a tx inspect target that is neither a signature nor a file is neither", async () => {
    const run = await cli("tx", "inspect", "notasig");
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe(
      "error: notasig is neither a transaction signature (64 bytes, base58) nor a file",
    );
  }, 60_000);

  it("exits 2 naming the vault and the cause when report statement --sync cannot read it", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "cli-sync-")), "audit.db");
    expect((await cli("db", "migrate", "--db", db)).code).toBe(0);
    const vault = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
    const run = await cliWithEnv(
      { DATABASE_URL: db, CREDIT_VAULTS: vault, LOG_LEVEL: "silent" },
      ...["report", "statement", "--since", "1d", "--sync", "--rpc", "http://127.0.0.1:1"],
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`--sync could not read vault ${vault}: `);
    expect(run.stderr).toContain("ECONNREFUSED");
  }, 60_000);

  it("exits 2 naming --vault when report account-snapshot --list is given one that is no address", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "cli-vault-")), "audit.db");
    expect((await cli("db", "migrate", "--db", db)).code).toBe(0);
    const run = await cli("report", "account-snapshot", "--list", "--vault", "bad", "--db", db);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--vault: not a base58 address");
    // 43 characters of base58 are 43 bytes: a mistyped vault, not one that held nothing.
    const long = await cli(
      "report",
      "statement",
      "--since",
      "1d",
      "--vault",
      "1".repeat(43),
      "--db",
      db,
    );
    expect(long.code).toBe(2);
    expect(long.stderr).toContain("--vault: not a base58 address");
  }, 60_000);

  it("exits 2 naming the flag when a number flag is not plain digits", async () => {
    const copyRun = cli(
      "db",
      "copy",
      "--from",
      "/nonexistent/a.db",
      "--to",
      "postgres://u@h/d",
      "--batch",
      "1e3",
    );
    const inspectRun = cli(
      "tx",
      "inspect",
      "-",
      "--rpc",
      "http://127.0.0.1:9,http://127.0.0.1:10",
      "--quorum",
      "0x2",
    );
    // Two keys of one provider would vote twice.
    const sig = "5".repeat(88);
    const twiceRun = cli(
      "tx",
      "inspect",
      sig,
      "--rpc",
      "http://127.0.0.1:9/?api-key=a,http://127.0.0.1:9/?api-key=b,http://127.0.0.2:9",
      "--quorum",
      "2",
    );
    const [copy, inspect, twice] = await Promise.all([copyRun, inspectRun, twiceRun]);
    expect(copy.code).toBe(2);
    // No bound past the most a number holds: `from 1 to 9007199254740991` read as a limit.
    expect(copy.stderr).toContain('--batch: expected an integer of at least 1, got "1e3"');
    expect(inspect.code).toBe(2);
    expect(inspect.stderr).toContain('--quorum: expected an integer of at least 2, got "0x2"');
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain("a quorum counts each URL as one provider");
    expect(twice.stderr).not.toContain("api-key=b");
  }, 60_000);
});

describe("CLI help and README", () => {
  it("says --db takes a postgres:// URL as well as a SQLite file", async () => {
    const help = await cli("verify", "--help");
    expect(help.stdout).toContain("--db <path|url>");
    expect(help.stdout).toContain("SQLite database file, or postgres:// URL (DATABASE_URL)");
  });

  it("lists every command in the README's commands table", () => {
    const readme = readFileSync("README.md", "utf8");
    const table = readme.slice(readme.indexOf("| command | what it does |"));
    const rows = table.slice(0, table.indexOf("\n\n"));
    const leaves = (command: Command, prefix: string): string[] =>
      command.commands.length === 0
        ? [prefix]
        : command.commands.flatMap((sub) => leaves(sub, `${prefix} ${sub.name()}`.trim()));
    for (const name of leaves(buildProgram(), "")) {
      expect(rows, name).toContain(`\`${name}`);
    }
  });
});
