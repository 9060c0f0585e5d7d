import pg from "pg";
import { describe, expect, inject, it, vi } from "vitest";
import { useDialectStores } from "./support/dialects.js";
import { connectionsLeftOpen } from "./support/postgres.js";

/**
 * test/support/dialects.ts: a PostgreSQL dialect block gives each test a fresh migrated store
 * of its own, makes no database it does not use, and drops every one it made after the block.
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

describe("a PostgreSQL dialect block", () => {
  const stores = useDialectStores("postgres");
  let first = "";

  it("starts its first store's copy before the first test and makes no other database", async () => {
    // Made before this test asks for a store: the copy was started in the block's beforeAll.
    await vi.waitFor(() => expect(stores.databases).toHaveLength(1), { timeout: 30_000 });
    const store = await stores.open();
    first = nameOf(stores.lastUrl);
    // The block's only database is the store's: no empty one that nobody uses beside it.
    expect(stores.databases).toEqual([first]);
    expect(store.kind).toBe("postgres");
    if (store.kind !== "postgres") return;
    // Migrated and empty; a row written here must not reach the next test's store.
    const { rows } = await store.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM jobs");
    expect(rows[0]?.n).toBe(0);
    await store.pool.query("CREATE TABLE left_by_first_test (x int)");
  });

  it("gives the next test a fresh migrated store of its own, the last one closed", async () => {
    expect(await connectionsLeftOpen([first])).toBe(0);
    const store = await stores.open();
    expect(nameOf(stores.lastUrl)).not.toBe(first);
    expect(store.kind).toBe("postgres");
    if (store.kind !== "postgres") return;
    const { rows } = await store.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM jobs");
    expect(rows[0]?.n).toBe(0);
    const left = await store.pool.query("SELECT to_regclass('left_by_first_test') AS t");
    expect(left.rows[0]?.t).toBeNull();
    madeByBlock = stores.databases;
  });
});

describe("after a PostgreSQL dialect block", () => {
  it("has dropped every database it made: its two stores' and the copy made for a third", async () => {
    // The block's list, read after its end: the copy made ahead is in it once made.
    expect(madeByBlock).toHaveLength(3);
    expect(await existing(madeByBlock)).toEqual([]);
  });
});
