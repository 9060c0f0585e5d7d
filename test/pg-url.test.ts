import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { openSqliteStore } from "../src/db/client.js";
import { poolConfig } from "../src/db/pg/client.js";
import { effectiveSslMode, type PostgresTarget, parseDatabaseUrl } from "../src/db/url.js";
import { demoOptionsFromFlags } from "../src/demo/options.js";
import { cliArgv } from "./support/service-process.js";

describe("DATABASE_URL selects the store", () => {
  it("keeps SQLite for a path, :memory: and file: URLs", () => {
    expect(parseDatabaseUrl("./data/decentral-audit.db")).toEqual({
      kind: "sqlite",
      path: "./data/decentral-audit.db",
    });
    expect(parseDatabaseUrl("/var/lib/audit.db")).toEqual({
      kind: "sqlite",
      path: "/var/lib/audit.db",
    });
    expect(parseDatabaseUrl(":memory:")).toEqual({ kind: "sqlite", path: ":memory:" });
    expect(parseDatabaseUrl("file:data/a.db")).toEqual({ kind: "sqlite", path: "data/a.db" });
    expect(parseDatabaseUrl("file:///srv/a.db")).toEqual({ kind: "sqlite", path: "/srv/a.db" });
    // Opened by path, a parameter would be part of the file's name: a new, empty store.
    expect(() => parseDatabaseUrl("file:/srv/a.db?mode=ro")).toThrow(
      "DATABASE_URL file: URL parameters are not supported (?mode=ro): give the file's path alone",
    );
    expect(parseDatabaseUrl("C:\\audit\\a.db")).toEqual({
      kind: "sqlite",
      path: "C:\\audit\\a.db",
    });
  });

  it("selects PostgreSQL for postgres:// and postgresql://, with every part parsed", () => {
    expect(
      parseDatabaseUrl("postgres://audit:s%40cret@db.internal:6543/ledger?sslmode=verify-full"),
    ).toEqual({
      kind: "postgres",
      host: "db.internal",
      port: 6543,
      user: "audit",
      password: "s@cret",
      database: "ledger",
      sslmode: "verify-full",
      redacted: "postgres://audit:***@db.internal:6543/ledger?sslmode=verify-full",
    });
    const defaults = parseDatabaseUrl("postgresql://audit@localhost/audit") as PostgresTarget;
    expect(defaults).toMatchObject({ kind: "postgres", port: 5432, password: undefined });
    expect(defaults.sslmode).toBeUndefined();
    expect(parseDatabaseUrl("postgres://u:p@[::1]:5432/d")).toMatchObject({ host: "::1" });
  });

  it("refuses any other scheme, and a PostgreSQL URL missing what a connection needs", () => {
    for (const url of ["mysql://u:p@h/db", "http://h/db", "sqlite://a.db", "redis://h"]) {
      expect(() => parseDatabaseUrl(url), url).toThrow(/DATABASE_URL scheme .* is not supported/);
    }
    expect(() => parseDatabaseUrl("postgres://u@h")).toThrow(/names no database/);
    expect(() => parseDatabaseUrl("postgres://h/db")).toThrow(/names no user/);
    expect(() => parseDatabaseUrl("postgres://u@h/db?sslmode=prefer")).toThrow(
      /sslmode "prefer" is not supported/,
    );
    expect(() => parseDatabaseUrl("postgres://u@h/db?connect_timeout=3")).toThrow(
      /parameter "connect_timeout" is not supported/,
    );
  });

  it("takes TLS from the URL or DATABASE_SSLMODE, and verifies remote hosts by default", () => {
    const remote = parseDatabaseUrl("postgres://u@db.example.com/d") as PostgresTarget;
    const local = parseDatabaseUrl("postgres://u@127.0.0.1/d") as PostgresTarget;
    const pinned = parseDatabaseUrl("postgres://u@db.example.com/d?sslmode=require");
    expect(effectiveSslMode(remote, undefined)).toBe("verify-full");
    expect(effectiveSslMode(local, undefined)).toBe("disable");
    expect(effectiveSslMode(remote, "require")).toBe("require");
    expect(effectiveSslMode(pinned as PostgresTarget, undefined)).toBe("require");
    expect(() => effectiveSslMode(pinned as PostgresTarget, "disable")).toThrow(
      /sslmode=require but DATABASE_SSLMODE says disable/,
    );
  });
});

describe("connection settings of the PostgreSQL pool", () => {
  const settings = { poolSize: 4, statementTimeoutMs: 5000 };
  it("maps each sslmode to the driver's TLS checks", () => {
    const remote = parseDatabaseUrl("postgres://u:p@db.example.com:6432/d") as PostgresTarget;
    const verified = poolConfig(remote, settings);
    expect(verified).toMatchObject({
      host: "db.example.com",
      port: 6432,
      user: "u",
      password: "p",
      database: "d",
      max: 4,
      statement_timeout: 5000,
      // Production's connect timeout; only tests shorten it (settings.connectTimeoutMs).
      connectionTimeoutMillis: 5000,
      ssl: { rejectUnauthorized: true },
    });
    expect((verified.ssl as { checkServerIdentity?: unknown }).checkServerIdentity).toBeUndefined();
    const ca = poolConfig(remote, { ...settings, sslmode: "verify-ca" }).ssl as {
      checkServerIdentity?: () => unknown;
    };
    expect(ca.checkServerIdentity?.()).toBeUndefined();
    expect(poolConfig(remote, { ...settings, sslmode: "require" }).ssl).toEqual({
      rejectUnauthorized: false,
    });
    expect(poolConfig(remote, { ...settings, sslmode: "disable" }).ssl).toBe(false);
    const local = parseDatabaseUrl("postgres://u@localhost/d") as PostgresTarget;
    expect(poolConfig(local, { ...settings, statementTimeoutMs: 0 })).not.toHaveProperty(
      "statement_timeout",
    );
    expect(poolConfig(local, settings).ssl).toBe(false);
  });

  it("names its sessions as the URL's application_name says, else decentral-audit", () => {
    const named = parseDatabaseUrl(
      "postgres://u@localhost/d?application_name=audit-host-b&sslmode=disable",
    ) as PostgresTarget;
    expect(poolConfig(named, settings).application_name).toBe("audit-host-b");
    const plain = parseDatabaseUrl("postgres://u@localhost/d") as PostgresTarget;
    expect(poolConfig(plain, settings).application_name).toBe("decentral-audit");
  });
});

describe("configuration of the PostgreSQL store", () => {
  it("documents defaults for pool size, statement timeout and TLS", () => {
    const config = loadConfig({});
    expect(config.DATABASE_POOL_SIZE).toBe(10);
    expect(config.DATABASE_STATEMENT_TIMEOUT_MS).toBe(30_000);
    expect(config.DATABASE_SSLMODE).toBeUndefined();
    const set = loadConfig({
      DATABASE_URL: "postgres://u:p@h/d",
      DATABASE_POOL_SIZE: "4",
      DATABASE_STATEMENT_TIMEOUT_MS: "0",
      DATABASE_SSLMODE: "verify-ca",
    });
    expect(set).toMatchObject({
      DATABASE_URL: "postgres://u:p@h/d",
      DATABASE_POOL_SIZE: 4,
      DATABASE_STATEMENT_TIMEOUT_MS: 0,
      DATABASE_SSLMODE: "verify-ca",
    });
  });

  it("refuses an unsupported DATABASE_URL at start, naming the key and never the password", () => {
    let caught: unknown;
    try {
      loadConfig({ DATABASE_URL: "mysql://root:hunter2@h/db", DATABASE_POOL_SIZE: "0" });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const issues = (caught as ConfigError).issues;
    expect(issues.map((i) => i.key).sort()).toEqual(["DATABASE_POOL_SIZE", "DATABASE_URL"]);
    expect((caught as ConfigError).message).toMatch(
      /DATABASE_URL: scheme "mysql:" is not supported/,
    );
    expect((caught as ConfigError).message).not.toContain("hunter2");
  });

  it("takes a PostgreSQL URL for the demo and refuses other schemes before its log folder is made", () => {
    expect(demoOptionsFromFlags({ db: "postgres://u:p@localhost/demo" }).db).toBe(
      "postgres://u:p@localhost/demo",
    );
    expect(() => demoOptionsFromFlags({ db: "mysql://u:p@localhost/demo" })).toThrow(
      /DATABASE_URL scheme "mysql:" is not supported/,
    );
    expect(demoOptionsFromFlags({ db: "./data/demo.db" }).db).toBe("./data/demo.db");
  });

  it("never opens a PostgreSQL URL as a SQLite file", () => {
    expect(() => openSqliteStore("postgres://u:hunter2@localhost:5432/audit")).toThrow(
      /needs a SQLite file, but DATABASE_URL selects PostgreSQL \(postgres:\/\/u:\*\*\*@/,
    );
    expect(() => openSqliteStore("postgres://u:hunter2@localhost:5432/audit")).not.toThrow(
      /hunter2/,
    );
  });
});

describe("the CLI with a PostgreSQL or unsupported DATABASE_URL", () => {
  const cwd = mkdtempSync(join(tmpdir(), "pg-url-cli-"));
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  /** Runs the CLI in an empty working directory, as a deployment would. */
  function cli(databaseUrl: string, ...args: string[]) {
    const result = spawnSync(process.execPath, cliArgv(args), {
      cwd,
      encoding: "utf8",
      env: { ...process.env, DATABASE_URL: databaseUrl },
    });
    return { code: result.status, stderr: result.stderr };
  }

  it("says a PostgreSQL server it cannot reach by its password-free URL, and creates no postgres: folder", () => {
    // Waited for within --timeout first (a restart as cron starts the run), then said.
    const run = cli(
      "postgres://audit:hunter2@127.0.0.1:1/audit",
      ...["verify", "--since", "24h", "--timeout", "2s"],
    );
    expect(run.code).toBe(2);
    // What is left of the 2 s once the process started.
    expect(run.stderr).toMatch(/database not reachable; waiting for it up to [0-2] s/);
    expect(run.stderr).toContain("cannot reach PostgreSQL at");
    expect(run.stderr).toContain("postgres://audit:***@127.0.0.1:1/audit");
    expect(run.stderr).not.toContain("hunter2");
    expect(readdirSync(cwd)).toEqual([]);
  });

  it("refuses an unsupported scheme at start with a message naming DATABASE_URL", () => {
    const run = cli("mysql://root:hunter2@localhost/audit", "tokens", "list");
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/DATABASE_URL: scheme "mysql:" is not supported/);
    expect(run.stderr).not.toContain("hunter2");
    expect(readdirSync(cwd)).toEqual([]);
  });
});
