import { AppError } from "../errors.js";

/**
 * What `DATABASE_URL` selects. A path, `:memory:` or a `file:` URL is a SQLite file (the
 * embedded default); `postgres://` and `postgresql://` select PostgreSQL. Any other scheme is
 * refused: before this check, `postgres://...` was taken for a relative file path and a folder
 * named `postgres:` appeared in the working directory.
 */

/** TLS modes accepted in `sslmode` (the libpq names the node driver can honour). */
export const sslModes = ["disable", "require", "verify-ca", "verify-full"] as const;
export type SslMode = (typeof sslModes)[number];

export interface SqliteTarget {
  kind: "sqlite";
  /** File path for better-sqlite3, or `:memory:`. */
  path: string;
}

export interface PostgresTarget {
  kind: "postgres";
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  /** `sslmode` from the URL, if it named one. */
  sslmode: SslMode | undefined;
  /**
   * `application_name` from the URL, if it named one: what `pg_stat_activity` shows for each of
   * this process's sessions (a host's name, so its sessions can be found and ended apart).
   */
  applicationName?: string | undefined;
  /** The URL with its password replaced by `***`, safe to print and log. */
  redacted: string;
}

export type DatabaseTarget = SqliteTarget | PostgresTarget;

/** Thrown for a DATABASE_URL this program cannot open; the message names the variable. */
export class DatabaseUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DatabaseUrlError";
  }
}

/** Default PostgreSQL port, as libpq. */
const POSTGRES_DEFAULT_PORT = 5432;

/** Query parameters understood on a PostgreSQL URL; any other is refused, not ignored. */
const postgresParams = new Set(["sslmode", "application_name"]);

/**
 * Parses `DATABASE_URL`. A value with no `scheme://` (and not `file:`) is a file path, as it
 * always was, including Windows drive paths such as `C:\data\audit.db`. A scheme other than
 * `file:`, `postgres:` and `postgresql:` is refused with a message naming DATABASE_URL.
 */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  if (url === "") throw new DatabaseUrlError("DATABASE_URL is empty");
  // Taken as written, ` ./data/audit.db` or a `.env` line saved with CRLF (`audit.db\r`) named
  // another file: `serve` created a new empty store there and recorded into it, while `verify`
  // with the setting written right read the real one and found none of the new jobs.
  if (url.trim() !== url) {
    throw new DatabaseUrlError(
      "DATABASE_URL starts or ends with whitespace (a space, a tab, a line end such as a .env file saved with CRLF leaves): it would name another file or host; remove it",
    );
  }
  if (url.startsWith("file:")) {
    const path = url.slice("file:".length).replace(/^\/\/(?=\/)/, "");
    if (path === "") throw new DatabaseUrlError("DATABASE_URL file: URL names no file");
    // The file is opened by its path, not as an SQLite URI: `?mode=ro` would become part of
    // the name, a new empty store beside the real one. Only `mode=memory` is read (and an
    // in-memory store is then refused by the commands that share theirs).
    const query = path.indexOf("?");
    if (query !== -1 && new URLSearchParams(path.slice(query + 1)).get("mode") !== "memory") {
      throw new DatabaseUrlError(
        `DATABASE_URL file: URL parameters are not supported (${path.slice(query)}): give the file's path alone`,
      );
    }
    return { kind: "sqlite", path };
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1];
  // A one-letter scheme is a Windows drive letter; anything else followed by ':' is a URL.
  if (scheme === undefined || (scheme.length === 1 && !url.startsWith(`${scheme}://`))) {
    return { kind: "sqlite", path: url };
  }
  const lower = scheme.toLowerCase();
  if (lower !== "postgres" && lower !== "postgresql") {
    throw new DatabaseUrlError(
      `DATABASE_URL scheme "${lower}:" is not supported: use a SQLite file path (or file:PATH, :memory:) or a postgres:// / postgresql:// URL`,
    );
  }
  return parsePostgresUrl(url);
}

/**
 * Whether a SQLite `DATABASE_URL` names an in-memory database: `:memory:`, `file::memory:`, or
 * a `file:` URL with `mode=memory`. Such a database starts empty in each process and is gone
 * when it ends, so no command can find there what `serve` or `import` wrote.
 */
export function isInMemorySqlite(url: string): boolean {
  const target = parseDatabaseUrl(url);
  if (target.kind !== "sqlite") return false;
  const query = target.path.indexOf("?");
  const file = query === -1 ? target.path : target.path.slice(0, query);
  if (file === ":memory:") return true;
  return (
    url.startsWith("file:") &&
    query !== -1 &&
    new URLSearchParams(target.path.slice(query + 1)).get("mode") === "memory"
  );
}

/**
 * Thrown when a command is pointed at an in-memory SQLite database (`:memory:`): it would start
 * empty, so `verify` would find nothing to verify and exit 0, `tokens create` would print a
 * token no service knows, a report would sum nothing, and what `serve` records would be gone
 * when it stops. Tests and `demo` open one in their own process, not through these commands.
 */
export class InMemoryStoreError extends AppError {
  constructor(url: string) {
    super(
      "validation_failed",
      `${url} is an in-memory database, which keeps nothing between processes: give --db / DATABASE_URL a database file or a postgres:// URL`,
      { field: "DATABASE_URL" },
    );
    this.name = "InMemoryStoreError";
  }
}

/** Refuses an in-memory `DATABASE_URL`, for every command that shares its store with others. */
export function refuseInMemoryStore(url: string): void {
  if (isInMemorySqlite(url)) throw new InMemoryStoreError(url);
}

function parsePostgresUrl(url: string): PostgresTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DatabaseUrlError(
      "DATABASE_URL is not a valid PostgreSQL URL (expected postgres://user:password@host:port/database)",
    );
  }
  const decode = (part: string, what: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw new DatabaseUrlError(`DATABASE_URL ${what} is not valid percent-encoding`);
    }
  };
  const host = decode(parsed.hostname, "host").replace(/^\[(.*)\]$/, "$1");
  if (host === "") throw new DatabaseUrlError("DATABASE_URL names no host (postgres://HOST/db)");
  const database = decode(parsed.pathname.replace(/^\//, ""), "database name");
  if (database === "" || database.includes("/")) {
    throw new DatabaseUrlError(
      "DATABASE_URL names no database (postgres://user:password@host:port/DATABASE)",
    );
  }
  const user = decode(parsed.username, "user");
  if (user === "")
    throw new DatabaseUrlError("DATABASE_URL names no user (postgres://USER@host/db)");
  const password = parsed.password === "" ? undefined : decode(parsed.password, "password");
  const port = parsed.port === "" ? POSTGRES_DEFAULT_PORT : Number(parsed.port);
  for (const key of parsed.searchParams.keys()) {
    if (!postgresParams.has(key)) {
      throw new DatabaseUrlError(
        `DATABASE_URL parameter "${key}" is not supported (supported: ${[...postgresParams].join(", ")})`,
      );
    }
  }
  const mode = parsed.searchParams.get("sslmode");
  if (mode !== null && !(sslModes as readonly string[]).includes(mode)) {
    throw new DatabaseUrlError(
      `DATABASE_URL sslmode "${mode}" is not supported: use one of ${sslModes.join(", ")} (the driver cannot fall back from TLS to plain text, so prefer and allow are refused)`,
    );
  }
  const redactedUrl = new URL(parsed.href);
  if (redactedUrl.password !== "") redactedUrl.password = "***";
  return {
    kind: "postgres",
    host,
    port,
    user,
    password,
    database,
    sslmode: (mode ?? undefined) as SslMode | undefined,
    applicationName: parsed.searchParams.get("application_name") ?? undefined,
    redacted: redactedUrl.href,
  };
}

/** True for hosts reached without leaving the machine, where TLS protects nothing. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host) || host.startsWith("/");
}

/**
 * The TLS mode used for a PostgreSQL target: the URL's `sslmode`, else `DATABASE_SSLMODE`,
 * else `disable` on the loopback interface and `verify-full` anywhere else (a remote database
 * is reached over TLS with its certificate and host name checked unless told otherwise).
 * The URL and the setting must agree when both are given.
 */
export function effectiveSslMode(target: PostgresTarget, configured: SslMode | undefined): SslMode {
  if (target.sslmode !== undefined && configured !== undefined && target.sslmode !== configured) {
    throw new DatabaseUrlError(
      `DATABASE_URL says sslmode=${target.sslmode} but DATABASE_SSLMODE says ${configured}: set one`,
    );
  }
  return target.sslmode ?? configured ?? (isLoopbackHost(target.host) ? "disable" : "verify-full");
}
