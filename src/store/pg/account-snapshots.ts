import { and, desc, eq, gte, inArray, isNotNull, isNull, lt, max, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { accountSnapshots, creditVaults } from "../../db/pg/schema.js";
import type { AccountSnapshot, AccountSnapshotsStore } from "../account-snapshots.js";

/**
 * Account snapshots on PostgreSQL (see src/store/account-snapshots.ts): inserts that never
 * conflict (the id is an identity column) and reads; nothing to guard.
 */
export function createPgAccountSnapshotsStore(store: PgStore): AccountSnapshotsStore {
  const { db } = store;
  const newest = db
    .select()
    .from(accountSnapshots)
    .orderBy(desc(accountSnapshots.id))
    .limit(sql.placeholder("limit"))
    .prepare("snapshots_newest");
  const newestOf = db
    .select()
    .from(accountSnapshots)
    .where(eq(accountSnapshots.vault, sql.placeholder("vault")))
    .orderBy(desc(accountSnapshots.takenAt), desc(accountSnapshots.id))
    .limit(sql.placeholder("limit"))
    .prepare("snapshots_newest_of");
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
    .prepare("snapshots_latest_in");
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
    .prepare("snapshots_latest_per_vault");
  const pinned = db
    .select({ vault: creditVaults.vault })
    .from(creditVaults)
    .where(eq(creditVaults.keyFingerprint, sql.placeholder("fingerprint")))
    .prepare("snapshots_pinned_vault");

  return {
    async record(snapshot) {
      const [row] = await db.insert(accountSnapshots).values(snapshot).returning();
      return row as AccountSnapshot;
    },
    async list(options = {}) {
      const limit = options.limit ?? 100;
      return options.vault
        ? newestOf.execute({ vault: options.vault, limit })
        : newest.execute({ limit });
    },
    async latestIn(vault, from, to) {
      return (await latestIn.execute({ vault, from, to }))[0];
    },
    latestPerVault: () => latestPerVault.execute(),
    async pinnedVaultOf(keyFingerprint) {
      return (await pinned.execute({ fingerprint: keyFingerprint }))[0]?.vault ?? null;
    },
  };
}
