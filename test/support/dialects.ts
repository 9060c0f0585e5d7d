import { afterAll, afterEach, beforeAll, beforeEach } from "vitest";
import type { Store } from "../../src/db/client.js";
import { openPostgres } from "../../src/db/pg/client.js";
import { usePostgresDatabase } from "./postgres.js";
import { createTestStore } from "./store.js";

/** The two stores every store-level test runs against. */
export const dialects = ["sqlite", "postgres"] as const;
export type Dialect = (typeof dialects)[number];

/** Opens fresh, migrated, empty stores of one dialect for the tests of a describe block. */
export interface DialectStores {
  readonly dialect: Dialect;
  /**
   * A new empty store with every migration applied; closed after the test, or after the block
   * when opened outside a test (in `beforeAll`).
   */
  open(): Promise<Store>;
  /** The URL of the last store opened (`:memory:` for SQLite). */
  readonly lastUrl: string;
  /**
   * The names of the PostgreSQL databases the block has made so far (none for SQLite): its
   * stores' and the copy made ahead for its next store, all dropped after the block.
   */
  readonly databases: readonly string[];
}

/**
 * Declares the stores of `dialect` for the enclosing describe block (call it at the top of a
 * `describe.each(dialects)` body). SQLite stores are in memory; each PostgreSQL store is a new
 * database on the run's test server (a copy of one migrated for the run), dropped after the
 * block.
 */
export function useDialectStores(dialect: Dialect): DialectStores {
  const inTest: Store[] = [];
  const inBlock: Store[] = [];
  let testRunning = false;
  // Every database of the block is a copy made here: none of usePostgresDatabase's own.
  const database = dialect === "postgres" ? usePostgresDatabase({ url: false }) : null;
  let lastUrl = ":memory:";
  // One database migrated for the run (or, when the run has none, for the block), copied for
  // each store: a copy costs a fraction of running every migration again (seconds per store
  // on a loaded 2-core runner).
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
  // The first store's copy is started before the block's tests (below); from a block's second
  // store on, the copy for the next one is made while the test that opened this one runs: a
  // copy is hundreds of ms of the server's on a loaded runner, which each store waited for.
  let spare: Promise<string> | undefined;
  let opened = 0;
  const copy = async (db: NonNullable<typeof database>) =>
    db.create({ template: await migratedTemplate(db) });
  const nextCopy = (db: NonNullable<typeof database>) => {
    const taken = spare ?? copy(db);
    spare = undefined;
    if (++opened >= 2) {
      spare = taken.then(
        () => copy(db),
        () => copy(db),
      );
      // Awaited when taken (or at the block's end): a failure is that store's, never unhandled.
      spare.catch(() => undefined);
    }
    return taken;
  };
  beforeAll(() => {
    if (database === null) return;
    // Not awaited: the copy is made while the file's own hooks and the first test set up, and
    // the first open() takes it (or fails with its error; never unhandled). A block that opens
    // no store drops it with the others, as it dropped the empty database made here before.
    spare = copy(database);
    spare.catch(() => undefined);
  });
  beforeEach(() => {
    testRunning = true;
  });
  afterEach(async () => {
    testRunning = false;
    for (const store of inTest.splice(0)) await store.close();
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
    async open() {
      if (database === null) {
        return keep(createTestStore());
      }
      lastUrl = await nextCopy(database);
      return keep(openPostgres(lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 }));
    },
  };
}
