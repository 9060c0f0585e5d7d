import { and, desc, eq, gte, inArray, isNotNull, isNull, lt, max, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { accountSnapshots, creditVaults } from "../db/schema.js";
import { pgTwins } from "./pg-twins.js";
import { perConnectionModule } from "./prepared.js";

/** One `GET /v1/account` answer against the vault's balance (see `accountSnapshots`). */
export interface AccountSnapshot {
  id: number;
  takenAt: number;
  keyFingerprint: string;
  vault: string | null;
  creditsRemaining: number | null;
  usdcValueUnits: bigint | null;
  vaultUnits: bigint | null;
  vaultSlot: number | null;
  creditsDifference: number | null;
  usdcDifferenceUnits: bigint | null;
  error: string | null;
}

export type NewAccountSnapshot = Omit<AccountSnapshot, "id">;

export interface AccountSnapshotsStore {
  /** Keeps one snapshot; returns it with its id. */
  record(snapshot: NewAccountSnapshot): Promise<AccountSnapshot>;
  /** The newest snapshots first (all vaults, or one), at most `limit`. */
  list(options?: { vault?: string; limit?: number }): Promise<AccountSnapshot[]>;
  /** The newest snapshot of a vault taken in `[from, to)` (ms), or undefined. */
  latestIn(vault: string, from: number, to: number): Promise<AccountSnapshot | undefined>;
  /** The newest snapshot that compared something, of each vault. */
  latestPerVault(): Promise<AccountSnapshot[]>;
  /** The vault pinned to a key fingerprint (`credit_vaults`), or null. */
  pinnedVaultOf(keyFingerprint: string): Promise<string | null>;
}

/** The accountsnapshots store of either dialect. */
export function createAccountSnapshotsStore(store: Store): AccountSnapshotsStore {
  return store.kind === "postgres"
    ? pgTwins().createPgAccountSnapshotsStore(store)
    : sqliteAccountSnapshotsStore(store);
}

const sqliteAccountSnapshotsStore = perConnectionModule(createSqliteAccountSnapshotsStore);

function createSqliteAccountSnapshotsStore(store: SqliteStore): AccountSnapshotsStore {
  const { db } = store;
  const insert = db
    .insert(accountSnapshots)
    .values({
      takenAt: sql.placeholder("takenAt"),
      keyFingerprint: sql.placeholder("keyFingerprint"),
      vault: sql.placeholder("vault"),
      creditsRemaining: sql.placeholder("creditsRemaining"),
      usdcValueUnits: sql.placeholder("usdcValueUnits"),
      vaultUnits: sql.placeholder("vaultUnits"),
      vaultSlot: sql.placeholder("vaultSlot"),
      creditsDifference: sql.placeholder("creditsDifference"),
      usdcDifferenceUnits: sql.placeholder("usdcDifferenceUnits"),
      error: sql.placeholder("error"),
    })
    .returning()
    .prepare();
  const newest = db
    .select()
    .from(accountSnapshots)
    .orderBy(desc(accountSnapshots.id))
    .limit(sql.placeholder("limit"))
    .prepare();
  const newestOf = db
    .select()
    .from(accountSnapshots)
    .where(eq(accountSnapshots.vault, sql.placeholder("vault")))
    .orderBy(desc(accountSnapshots.takenAt), desc(accountSnapshots.id))
    .limit(sql.placeholder("limit"))
    .prepare();
  const latestIn = db
    .select()
    .from(accountSnapshots)
    .where(
      and(
        eq(accountSnapshots.vault, sql.placeholder("vault")),
        gte(accountSnapshots.takenAt, sql.placeholder("from")),
        lt(accountSnapshots.takenAt, sql.placeholder("to")),
      ),
    )
    .orderBy(desc(accountSnapshots.takenAt), desc(accountSnapshots.id))
    .limit(1)
    .prepare();
  const latestPerVault = db
    .select()
    .from(accountSnapshots)
    .where(
      inArray(
        accountSnapshots.id,
        db
          .select({ id: max(accountSnapshots.id) })
          .from(accountSnapshots)
          .where(and(isNotNull(accountSnapshots.vault), isNull(accountSnapshots.error)))
          .groupBy(accountSnapshots.vault),
      ),
    )
    .prepare();
  const pinned = db
    .select({ vault: creditVaults.vault })
    .from(creditVaults)
    .where(eq(creditVaults.keyFingerprint, sql.placeholder("fingerprint")))
    .prepare();

  return {
    async record(snapshot) {
      return insert.get(snapshot) as AccountSnapshot;
    },
    async list(options = {}) {
      const limit = options.limit ?? 100;
      return options.vault ? newestOf.all({ vault: options.vault, limit }) : newest.all({ limit });
    },
    async latestIn(vault, from, to) {
      return latestIn.get({ vault, from, to });
    },
    async latestPerVault() {
      return latestPerVault.all();
    },
    async pinnedVaultOf(keyFingerprint) {
      return pinned.get({ fingerprint: keyFingerprint })?.vault ?? null;
    },
  };
}
