import { afterAll, afterEach, beforeAll, beforeEach } from "vitest";
import type { Store } from "../../src/db/client.js";
import { openPostgres } from "../../src/db/pg/client.js";
import { usePostgresDatabase } from "./postgres.js";
import { madeForReuse, type ReusableDatabase, resetForReuse } from "./postgres-reuse.js";
import { createTestStore } from "./store.js";

/** The two stores every store-level test runs against. */
export const dialects = ["sqlite", "postgres"] as const;
export type Dialect = (typeof dialects)[number];

/** Opens fresh, migrated, empty stores of one dialect for the tests of a describe block. */
export interface DialectStores {
  readonly dialect: Dialect;
  /**
   * An empty store with every migration applied, on PostgreSQL a database no other open store
   * uses; closed after the test, or after the block when opened outside a test (in `beforeAll`).
   * A test's PostgreSQL database is a new copy, or one an earlier test of the block used and
   * left with nothing but rows, emptied and its sequences set back.
   */
  open(): Promise<Store>;
  /** The URL of the last store opened (`:memory:` for SQLite). */
  readonly lastUrl: string;
  /**
   * The names of the PostgreSQL databases the block has made so far (none for SQLite): its
   * stores' (each test's store reuses one of them where it can) and the copy made ahead for
   * its next store, all dropped after the block.
   */
  readonly databases: readonly string[];
  /** The block's databases a test left changed beyond its rows, or in use, with the reason. */
  readonly notHandedOn: readonly { url: string; why: string }[];
}

/**
 * Declares the stores of `dialect` for the enclosing describe block (call it at the top of a
 * `describe.each(dialects)` body). SQLite stores are in memory; each PostgreSQL store is a
 * database on the run's test server (a copy of one migrated for the run, reused by the block's
 * later tests once emptied), dropped after the block.
 */
export function useDialectStores(dialect: Dialect): DialectStores {
  const inTest: Store[] = [];
  const inBlock: Store[] = [];
  let testRunning = false;
  // Every database of the block is a copy made here: none of usePostgresDatabase's own.
  const database = dialect === "postgres" ? usePostgresDatabase({ url: false }) : null;
  let lastUrl = ":memory:";
  // One database migrated for the run (or, when the run has none, for the block), copied for
  // the block's stores: a copy costs a fraction of running every migration again (seconds per
  // store on a loaded 2-core runner).
  let template: Promise<string> | undefined;
  const migratedTemplate = (db: NonNullable<typeof database>) => {
    template ??= (async () => db.migratedTemplate ?? (await db.createMigrated()))().catch(
      (error: unknown) => {
        template = undefined;
        throw error;
      },
    );
    return template;
  };
  const copy = async (db: NonNullable<typeof database>): Promise<ReusableDatabase> => {
    const from = await migratedTemplate(db);
    const url = await db.create({ template: from });
    return (await madeForReuse(from, url)) ?? { url, knownThrough: "" };
  };
  // A store's database goes back to the block when its test ends, emptied, for the block's next
  // store (test/support/postgres-reuse.ts): a copy and its drop cost 190-260 ms of the server's
  // at load 1.5 (520-700 ms on a loaded runner), the check and reset 20-40 ms. One a test changed beyond its rows (a trigger, a grant, a setting) is not handed on
  // (it is dropped with the block's others), nor one a session still holds.
  const free: ReusableDatabase[] = [];
  const notHandedOn: { url: string; why: string }[] = [];
  let opened = 0;
  const ofStore = new Map<Store, ReusableDatabase>();
  // The first store's copy is started before the block's tests (below); after a test whose
  // database could not be handed on, the next one's copy is made while the next test sets up.
  let spare: Promise<ReusableDatabase> | undefined;
  const startSpare = (db: NonNullable<typeof database>) => {
    spare = copy(db);
    // Awaited when taken (or at the block's end): a failure is that store's, never unhandled.
    spare.catch(() => undefined);
  };
  const take = async (db: NonNullable<typeof database>) => {
    const reused = free.shift();
    if (reused !== undefined) return reused;
    const taken = spare ?? copy(db);
    spare = undefined;
    return await taken;
  };
  const handBack = async (store: Store) => {
    await store.close();
    const used = ofStore.get(store);
    ofStore.delete(store);
    if (used === undefined || used.knownThrough === "" || template === undefined) return;
    const why = await resetForReuse(await template, used);
    if (why === undefined) free.push(used);
    else notHandedOn.push({ url: used.url, why });
  };
  beforeAll(() => {
    if (database === null) return;
    // Not awaited: the copy is made while the file's own hooks and the first test set up, and
    // the first open() takes it (or fails with its error; never unhandled). A block that opens
    // no store drops it with the others, as it dropped the empty database made here before.
    startSpare(database);
  });
  beforeEach(() => {
    testRunning = true;
  });
  afterEach(async () => {
    testRunning = false;
    // Awaited here, not in the next test: its session on the database is gone when the next
    // test starts, which may count the server's sessions.
    for (const store of inTest.splice(0)) await handBack(store);
    if (database !== null && free.length === 0 && spare === undefined && opened > 0) {
      startSpare(database);
    }
  });
  afterAll(async () => {
    for (const store of inBlock.splice(0)) await store.close();
    // The copy nobody took is dropped with the file's other databases, once it exists.
    await spare?.catch(() => undefined);
  });
  const keep = <S extends Store>(store: S): S => {
    (testRunning ? inTest : inBlock).push(store);
    return store;
  };
  return {
    dialect,
    get lastUrl() {
      return lastUrl;
    },
    get databases() {
      return database?.databases ?? [];
    },
    get notHandedOn() {
      return notHandedOn;
    },
    async open() {
      if (database === null) {
        return keep(createTestStore());
      }
      opened++;
      const taken = await take(database);
      lastUrl = taken.url;
      const store = openPostgres(taken.url, { poolSize: 4, statementTimeoutMs: 30_000 });
      // Only a test's stores go back: a block's (opened in beforeAll) is closed at its end.
      if (testRunning) ofStore.set(store, taken);
      return keep(store);
    },
  };
}
