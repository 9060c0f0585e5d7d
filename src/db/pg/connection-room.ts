import type pg from "pg";

/** The connections a PostgreSQL server lets this program's role open to its database. */
export interface ConnectionRoom {
  /** The least of the limits below that apply. */
  connections: number;
  /** `max_connections` less the slots it keeps for superusers and reserved roles. */
  server: number;
  maxConnections: number;
  /**
   * The login role's `CONNECTION LIMIT` (the role connections are made as, whatever role a
   * session then sets), the database's; null when unlimited (-1).
   */
  role: number | null;
  database: number | null;
  /**
   * The port the server took this connection on (`inet_server_port()`); null over a Unix
   * socket. Another port than the URL's: something stands between (a pooler, a forwarded port).
   */
  serverPort: number | null;
}

/**
 * Reads how many connections the server allows: `max_connections` less
 * `superuser_reserved_connections` (and `reserved_connections`, PostgreSQL 16 on), and the
 * role's and the database's `CONNECTION LIMIT` when set. Taken as limits whoever connects (a
 * superuser may pass them, but an operator who set one means it). Connections others hold are
 * not subtracted: a `verify`, a `psql` or another `serve` beside need room of their own.
 */
export async function readConnectionRoom(pool: pg.Pool): Promise<ConnectionRoom> {
  const { rows } = await pool.query<{
    max: string;
    reserved: string;
    role: number | null;
    database: number | null;
    port: number | null;
  }>(
    `SELECT current_setting('max_connections') AS max,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
       (SELECT rolconnlimit FROM pg_roles WHERE rolname = session_user) AS role,
       (SELECT datconnlimit FROM pg_database WHERE datname = current_database()) AS database,
       inet_server_port() AS port`,
  );
  const row = rows[0] as (typeof rows)[number];
  const maxConnections = Number(row.max);
  const server = Math.max(0, maxConnections - Number(row.reserved));
  const limit = (value: number | null) => (value === null || value < 0 ? null : value);
  const role = limit(row.role);
  const database = limit(row.database);
  const connections = Math.min(
    server,
    ...[role, database].filter((value): value is number => value !== null),
  );
  return { connections, server, maxConnections, role, database, serverPort: row.port };
}

/** Connections a group-committing receipt writer keeps of its own (`openPgWriterConnection`). */
export const WRITER_CONNECTIONS = 2;
