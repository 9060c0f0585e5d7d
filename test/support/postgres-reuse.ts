import pg from "pg";

/**
 * Reuse of a test's PostgreSQL database by the next test of its block (test/support/
 * dialects.ts): a copy of the run's migrated database and its drop cost 190-260 ms of the
 * server's at load 1.5 (520-700 ms on a loaded runner); checking one and emptying the tables a
 * test wrote, 20-40 ms.
 *
 * A database is handed on only when nothing a test could change beside its rows has changed:
 * no catalog row of the database (tables, columns, indexes, triggers, functions, grants,
 * schemas, comments, ...) and no row of the shared catalogs about it (`ALTER DATABASE`, its
 * settings, its grants and owners) was written, added or removed since it was made or last
 * reset (each row written carries its transaction's id, `xmin`: newer than the database's
 * `CREATE` or the last reset's means changed; a count per catalog finds removals), the rows
 * the migrations left (the migrations' own log) are those, no other session is connected and
 * no prepared transaction of it is left. Then the tables the test wrote are emptied (a small
 * one never vacuumed nor analyzed by `DELETE`, which leaves the planner guessing as it does on
 * a new table; any other by `TRUNCATE`, which also resets its size and statistics), planner
 * statistics are removed and the sequences set back to the template's values.
 */

/** A database of a block: its URL and the newest transaction id its state is known after. */
export interface ReusableDatabase {
  readonly url: string;
  /** Rows written by a later transaction than this one are changes a test made. */
  knownThrough: string;
}

/** A fresh copy's state, read once per template: what a reset compares and restores. */
interface TemplateState {
  readonly check: string;
  readonly catalogNames: readonly string[];
  readonly catalogs: readonly number[];
  readonly shared: readonly number[];
  readonly seeded: readonly { name: string; rows: number }[];
  readonly emptied: readonly string[];
  readonly sequences: readonly { name: string; lastValue: string; isCalled: boolean }[];
}

interface CheckRow {
  others: number;
  prepared: number;
  statistics: number;
  database_changed: boolean;
  catalogs: [number, number][];
  shared: [number, number][];
  seeded: [number, number][];
  emptied: [number, number, number][];
  sequences: [string, boolean][];
}

/**
 * The database's catalogs compared: creating or dropping nearly any object adds or removes its
 * dependencies' rows (pg_depend); the others are those `ALTER`, `GRANT`, `COMMENT` and
 * `CREATE OR REPLACE` write in place of a row. Every catalog of the database (about 60) cost a
 * new session 20-100 ms of the server's to read, as much as a copy.
 */
const checkedCatalogs = [
  "pg_attrdef",
  "pg_attribute",
  "pg_class",
  "pg_constraint",
  "pg_default_acl",
  "pg_depend",
  "pg_description",
  "pg_event_trigger",
  "pg_index",
  "pg_largeobject_metadata",
  "pg_namespace",
  "pg_policy",
  "pg_proc",
  "pg_rewrite",
  "pg_sequence",
  "pg_trigger",
  "pg_type",
];

/** Counts and rows newer than `$1` in one catalog, by a filter on it. */
const countAndNewer = (from: string) =>
  `(SELECT json_build_array(count(*), count(*) FILTER (WHERE age(xmin) < age($1::text::xid))) FROM ${from})`;

const states = new Map<string, Promise<TemplateState | undefined>>();

async function withClient<T>(url: string, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

/** Reads what a fresh copy holds (the first copy made from `template` in this process). */
async function readState(client: pg.Client): Promise<TemplateState> {
  const catalogNames = checkedCatalogs;
  const tables = (
    await client.query<{ name: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%'
        ORDER BY 1`,
    )
  ).rows.map((row) => row.name);
  const sequenceNames = (
    await client.query<{ name: string }>(
      `SELECT format('%I.%I', schemaname, sequencename) AS name FROM pg_sequences ORDER BY 1`,
    )
  ).rows.map((row) => row.name);
  const rows: number[] = [];
  for (const table of tables) {
    const { rows: counted } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${table}`,
    );
    rows.push(counted[0]?.n ?? 0);
  }
  const seeded = tables.flatMap((name, i) =>
    (rows[i] ?? 0) > 0 ? [{ name, rows: rows[i] ?? 0 }] : [],
  );
  const emptied = tables.filter((_, i) => rows[i] === 0);
  const database = "(SELECT oid FROM pg_database WHERE datname = current_database())";
  const sharedFilters = [
    `pg_db_role_setting WHERE setdatabase = ${database}`,
    `pg_shdepend WHERE dbid = ${database}`,
    `pg_shdescription WHERE classoid = 'pg_database'::regclass AND objoid = ${database}`,
    `pg_shseclabel WHERE classoid = 'pg_database'::regclass AND objoid = ${database}`,
  ];
  const check = `SELECT
    (SELECT count(*)::int FROM pg_prepared_xacts WHERE database = current_database()) AS prepared,
    (SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database()
        AND backend_type = 'client backend' AND pid <> pg_backend_pid()) AS others,
    (SELECT count(*)::int FROM pg_statistic WHERE starelid >= 16384) AS statistics,
    (SELECT age(xmin) < age($1::text::xid) FROM pg_database WHERE datname = current_database())
      AS database_changed,
    json_build_array(${catalogNames.map((name) => countAndNewer(`pg_catalog.${name}`)).join(", ")}) AS catalogs,
    json_build_array(${sharedFilters.map(countAndNewer).join(", ")}) AS shared,
    json_build_array(${seeded.map(({ name }) => countAndNewer(name)).join(", ")}) AS seeded,
    json_build_array(${emptied
      .map(
        (name) =>
          `(SELECT json_build_array(pg_relation_size(oid), relpages, reltuples) FROM pg_class WHERE oid = '${name.replaceAll("'", "''")}'::regclass)`,
      )
      .join(", ")}) AS emptied,
    json_build_array(${sequenceNames
      .map((name) => `(SELECT json_build_array(last_value::text, is_called) FROM ${name})`)
      .join(", ")}) AS sequences`;
  // Read with a threshold no row can be newer than: the counts and the sequences.
  const { rows: read } = await client.query<CheckRow>(check, ["3"]);
  const fresh = read[0];
  if (fresh === undefined) throw new Error("the template's state was not read");
  return {
    check,
    catalogNames,
    catalogs: fresh.catalogs.map(([count]) => count),
    shared: fresh.shared.map(([count]) => count),
    seeded,
    emptied,
    sequences: sequenceNames.map((name, i) => {
      const [lastValue, isCalled] = fresh.sequences[i] ?? ["", false];
      return { name, lastValue, isCalled };
    }),
  };
}

/**
 * Prepares a new copy of `template` at `url` for reuse: notes the transaction that made it,
 * and reads the template's state when this process has not yet. Undefined when that failed:
 * the database is then used once, as before.
 */
export async function madeForReuse(
  template: string,
  url: string,
): Promise<ReusableDatabase | undefined> {
  try {
    return await withClient(url, async (client) => {
      const { rows } = await client.query<{ xid: string }>(
        "SELECT xmin::text AS xid FROM pg_database WHERE datname = current_database()",
      );
      const knownThrough = rows[0]?.xid;
      if (knownThrough === undefined) return undefined;
      if (!states.has(template)) {
        const state = readState(client).catch(() => undefined);
        states.set(template, state);
        await state;
      }
      return { url, knownThrough };
    });
  } catch {
    return undefined;
  }
}

/** Why `database` cannot be handed on, or undefined when it was reset and can. */
export async function resetForReuse(
  template: string,
  database: ReusableDatabase,
): Promise<string | undefined> {
  const state = await states.get(template);
  if (state === undefined) return "the template's state was not read";
  try {
    return await withClient(database.url, async (client) => {
      // A closed pool's sessions leave the server a moment after its end() returns.
      let row: CheckRow | undefined;
      for (const deadline = Date.now() + 1_000; ; ) {
        row = (await client.query<CheckRow>(state.check, [database.knownThrough])).rows[0];
        if (row === undefined || row.others === 0 || Date.now() >= deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      const why = differences(state, row);
      if (why !== undefined) return why;
      const checked = row as CheckRow;
      const deleted: string[] = [];
      const truncated: string[] = [];
      state.emptied.forEach((name, i) => {
        const [bytes, pages, tuples] = checked.emptied[i] ?? [0, 0, -1];
        if (bytes === 0) return;
        // Under 10 pages, never vacuumed nor analyzed: the planner still takes it for a new
        // table (10 pages guessed); a larger one, or one it has read, gets a new empty file.
        if (bytes < 10 * 8192 && pages === 0 && tuples < 0) deleted.push(name);
        else truncated.push(name);
      });
      const sequences = state.sequences.filter(
        ({ lastValue, isCalled }, i) =>
          checked.sequences[i]?.[0] !== lastValue || checked.sequences[i]?.[1] !== isCalled,
      );
      if (
        deleted.length === 0 &&
        truncated.length === 0 &&
        sequences.length === 0 &&
        checked.statistics === 0
      ) {
        return undefined;
      }
      const statements = [
        "BEGIN",
        // Without the tables' triggers and foreign-key checks (a superuser's setting).
        "SET LOCAL session_replication_role = replica",
        "SET LOCAL lock_timeout = '5s'",
        ...deleted.map((name) => `DELETE FROM ${name}`),
        ...(truncated.length > 0 ? [`TRUNCATE ${truncated.join(", ")} CASCADE`] : []),
        ...(checked.statistics > 0
          ? ["DELETE FROM pg_catalog.pg_statistic WHERE starelid >= 16384"]
          : []),
        ...(sequences.length > 0
          ? [
              `SELECT ${sequences
                .map(
                  ({ name, lastValue, isCalled }) =>
                    `setval('${name.replaceAll("'", "''")}', ${BigInt(lastValue)}, ${isCalled})`,
                )
                .join(", ")}`,
            ]
          : []),
        "SELECT xid(pg_current_xact_id())::text AS xid",
        "COMMIT",
      ];
      const results = (await client.query(statements.join(";\n"))) as unknown as pg.QueryResult[];
      const xid = results.at(-2)?.rows[0]?.xid as string | undefined;
      if (xid === undefined) return "the reset's transaction id was not read";
      database.knownThrough = xid;
      return undefined;
    });
  } catch (error) {
    // A role that is not a superuser (TEST_POSTGRES_URL), or a server before PostgreSQL 13: no
    // database of this template is checked again, each store is a new copy.
    if (["42501", "42883"].includes((error as { code?: string }).code ?? "")) {
      states.set(template, Promise.resolve(undefined));
    }
    return `reset failed: ${(error as Error).message}`;
  }
}

/** What differs between a used database and the template, or undefined when only rows do. */
function differences(state: TemplateState, row: CheckRow | undefined): string | undefined {
  if (row === undefined) return "its state was not read";
  if (row.others > 0) return `${row.others} other session(s) still connected`;
  if (row.prepared > 0) return `${row.prepared} prepared transaction(s) left`;
  if (row.database_changed) return "the database's own row was changed (ALTER DATABASE, GRANT)";
  const catalog = row.catalogs.findIndex(
    ([count, newer], i) => newer > 0 || count !== state.catalogs[i],
  );
  if (catalog >= 0) return `its ${state.catalogNames[catalog]} was changed`;
  const shared = row.shared.findIndex(
    ([count, newer], i) => newer > 0 || count !== state.shared[i],
  );
  if (shared >= 0) return `a shared catalog's rows about the database changed (${shared})`;
  const seeded = row.seeded.findIndex(
    ([count, newer], i) => newer > 0 || count !== state.seeded[i]?.rows,
  );
  if (seeded >= 0) return `the migrations' rows of ${state.seeded[seeded]?.name} changed`;
  return undefined;
}
