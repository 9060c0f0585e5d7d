import pg from "pg";
import { describe, expect, inject, it, vi } from "vitest";
import type { Store } from "../src/db/client.js";
import { useDialectStores } from "./support/dialects.js";
import { connectionsLeftOpen } from "./support/postgres.js";

/**
 * test/support/dialects.ts: a PostgreSQL dialect block gives each test an empty migrated store
 * of its own (a database an earlier test left with nothing but rows, emptied, or a new copy),
 * makes no database it does not use, and drops every one it made after the block.
 */

const nameOf = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));

/** Which of `names` are databases on the run's server now. */
async function existing(names: readonly string[]): Promise<string[]> {
  const value = inject("postgres");
  if ("unavailable" in value) throw new Error(value.unavailable);
  const client = new pg.Client({ connectionString: value.adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname = ANY($1::text[]) ORDER BY datname",
      [names],
    );
    return rows.map((row) => row.datname);
  } finally {
    await client.end();
  }
}

let madeByBlock: readonly string[] = [];

/** Adds a verification run to `store`'s database and returns its id, from its sequence. */
async function addRun(store: Store): Promise<string> {
  if (store.kind !== "postgres") throw new Error("a PostgreSQL store was expected");
  const { rows } = await store.pool.query<{ id: string }>(
    `INSERT INTO verification_runs (trigger, status, started_at, owner)
     VALUES ('manual', 'done', 1, 'test') RETURNING id::text AS id`,
  );
  return rows[0]?.id ?? "";
}

async function runs(store: Store): Promise<number> {
  if (store.kind !== "postgres") throw new Error("a PostgreSQL store was expected");
  const { rows } = await store.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM verification_runs",
  );
  return rows[0]?.n ?? -1;
}

describe("a PostgreSQL dialect block", () => {
  const stores = useDialectStores("postgres");
  let first = "";
  let leftOpen: pg.Client | undefined;
  let heldOpen = "";
  let granted = "";

  it("starts its first store's copy before the first test and makes no other database", async () => {
    // Made before this test asks for a store: the copy was started in the block's beforeAll.
    await vi.waitFor(() => expect(stores.databases).toHaveLength(1), { timeout: 30_000 });
    const store = await stores.open();
    first = nameOf(stores.lastUrl);
    // The block's only database is the store's: no empty one that nobody uses beside it.
    expect(stores.databases).toEqual([first]);
    expect(store.kind).toBe("postgres");
    expect(await runs(store)).toBe(0);
    // Rows, and a sequence moved on, that must not reach the next test's store.
    expect(await addRun(store)).toBe("1");
    expect(await addRun(store)).toBe("2");
  });

  it("gives the next test the same database emptied, its sequences started again", async () => {
    expect(await connectionsLeftOpen([first])).toBe(0);
    const store = await stores.open();
    // Reused, not copied again: the first test changed nothing but rows.
    expect(nameOf(stores.lastUrl)).toBe(first);
    expect(stores.databases).toEqual([first]);
    expect(await runs(store)).toBe(0);
    expect(await addRun(store)).toBe("1");
    if (store.kind !== "postgres") return;
    // A fault a test injects: the next test must not meet it.
    await store.pool.query(`CREATE FUNCTION refuse_runs() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'refused'; END $$`);
    await store.pool.query(
      "CREATE TRIGGER refuse_runs BEFORE INSERT ON verification_runs FOR EACH ROW EXECUTE FUNCTION refuse_runs()",
    );
  });

  it("does not hand on a database whose schema a test changed; two stores of a test differ", async () => {
    const store = await stores.open();
    granted = nameOf(stores.lastUrl);
    expect(granted).not.toBe(first);
    expect(stores.notHandedOn.map(({ url }) => nameOf(url))).toEqual([first]);
    expect(await addRun(store)).toBe("1");
    const other = await stores.open();
    expect(nameOf(stores.lastUrl)).not.toBe(first);
    expect(other).not.toBe(store);
    expect(new Set(stores.databases).size).toBe(stores.databases.length);
    expect(await runs(other)).toBe(0);
    if (store.kind !== "postgres") return;
    const { rows } = await store.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 'refuse_runs'",
    );
    expect(rows[0]?.n).toBe(0);
    // A grant changes nothing but a table's privileges: not handed on either.
    await store.pool.query("GRANT SELECT ON verification_runs TO PUBLIC");
  });

  it("does not hand on a database a session still holds", async () => {
    await stores.open();
    heldOpen = nameOf(stores.lastUrl);
    leftOpen = new pg.Client({ connectionString: stores.lastUrl });
    await leftOpen.connect();
  });

  it("gives the next tests databases no session holds", async () => {
    try {
      const reasons = stores.notHandedOn.map(({ url, why }) => [nameOf(url), why]);
      expect(reasons.some(([name, why]) => name === heldOpen && /session/.test(why ?? ""))).toBe(
        true,
      );
      // The table granted to PUBLIC in the test before.
      expect(reasons.some(([name, why]) => name === granted && /pg_class/.test(why ?? ""))).toBe(
        true,
      );
      await stores.open();
      expect(nameOf(stores.lastUrl)).not.toBe(heldOpen);
    } finally {
      await leftOpen?.end();
    }
    madeByBlock = stores.databases;
  });
});

describe("after a PostgreSQL dialect block", () => {
  it("has dropped every database it made", async () => {
    // The block's list, read after its end.
    expect(madeByBlock.length).toBeGreaterThanOrEqual(4);
    expect(await existing(madeByBlock)).toEqual([]);
  });
});
