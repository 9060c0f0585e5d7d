import { and, count, desc, eq, inArray, notInArray, or, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import {
  creditVaults,
  jobs,
  ledgerLines,
  profilePins,
  treasuryEvidence,
} from "../../db/pg/schema.js";
import type {
  CustodyConfig,
  CustodyProfile,
  CustodyStore,
  TreasuryStatus,
  VaultPin,
} from "../custody.js";
import { sharedSpan } from "../key-checks.js";
import { treasuryWaiters, untiedJobsOf } from "./custody-pinning.js";
import type { PgExecutor } from "./executor.js";
import { boundRowLockWaits, takeReceiptWriterTurn } from "./group-commit.js";
import { reopenJobsPg } from "./job-queue.js";
import { keyCheckSpansPg } from "./key-checks.js";
import { lockVault } from "./ledger.js";
import { inPgTransaction } from "./write-transaction.js";

/**
 * The custody store on PostgreSQL (see src/store/custody.ts for the contract). Vaults configured
 * by key are pinned when the store opens, over anything learned; the writes a verdict makes are
 * in custody-pinning.ts.
 */
export function createPgCustodyStore(
  store: PgStore,
  profile: CustodyProfile,
  opened?: CustodyConfig,
): CustodyStore {
  const { db } = store;
  const config = opened ?? { vaults: [], byKey: {} };
  // The configured pins are written as the store opens; the first read waits for them (and
  // fails with their error), so no check ever sees a learned vault a configuration overrides.
  // A failed attempt (the database away or busy at start) is made again by the next read,
  // rather than failing every read of this long-lived store until the process restarts.
  const configure = (): Promise<void> => {
    const attempt = pinConfigured(db, config.byKey).then(() =>
      opened !== undefined && profile.treasury !== null ? decideTreasuryWaiters(db) : undefined,
    );
    attempt.catch(() => {
      if (configured === attempt) configured = null;
    });
    return attempt;
  };
  let configured: Promise<void> | null = configure();

  return {
    async pins(keys, vaults) {
      configured ??= configure();
      await configured;
      const byKey = new Map<string, VaultPin>();
      const keyOfVault = new Map<string, string>();
      const wantedKeys = [...new Set(keys)];
      if (wantedKeys.length > 0) {
        for (const row of await db
          .select({
            key: creditVaults.keyFingerprint,
            vault: creditVaults.vault,
            source: creditVaults.source,
          })
          .from(creditVaults)
          .where(inArray(creditVaults.keyFingerprint, wantedKeys))) {
          byKey.set(row.key, { vault: row.vault, source: row.source });
        }
      }
      const wantedVaults = [...new Set(vaults)];
      if (wantedVaults.length > 0) {
        for (const row of await db
          .select({ key: creditVaults.keyFingerprint, vault: creditVaults.vault })
          .from(creditVaults)
          .where(inArray(creditVaults.vault, wantedVaults))) {
          if (!keyOfVault.has(row.vault)) keyOfVault.set(row.vault, row.key);
        }
      }
      const treasury =
        profile.treasury !== null ? null : ((await learnedTreasury(db, profile))?.value ?? null);
      const escrowAuthority =
        (profile.escrowAuthority ?? null) !== null
          ? null
          : await learnedEscrowAuthority(db, profile);
      // After the claim committed: waits for receipt writers of these keys (pg/key-checks.ts).
      const sharedKeys = new Set<string>();
      for (const [key, span] of await keyCheckSpansPg(db, wantedKeys, db)) {
        if (sharedSpan(span)) sharedKeys.add(key);
      }
      return { byKey, keyOfVault, treasury, escrowAuthority, sharedKeys };
    },
    treasuryStatus: () => pgTreasuryStatus(store, profile),
  };
}

/**
 * `treasuryStatus` on PostgreSQL: the learned treasury with its evidence, or the five leading
 * candidates while learning.
 */
export async function pgTreasuryStatus(
  store: PgStore,
  profile: CustodyProfile,
): Promise<TreasuryStatus> {
  const pinned = await learnedTreasury(store.db, profile);
  if (pinned) return { source: "learned", address: pinned.value, settlements: pinned.evidence };
  const settlements = count();
  const candidates = await store.db
    .select({ address: treasuryEvidence.address, settlements })
    .from(treasuryEvidence)
    .where(eq(treasuryEvidence.profile, profile.name))
    .groupBy(treasuryEvidence.address)
    .orderBy(desc(settlements))
    .limit(5);
  // count() comes back from node-postgres as a string: a count is a number here.
  return {
    source: "learning",
    candidates: candidates.map((c) => ({ address: c.address, settlements: Number(c.settlements) })),
  };
}

async function learnedTreasury(db: PgExecutor, profile: CustodyProfile) {
  const [row] = await db
    .select({ value: profilePins.value, evidence: profilePins.evidence })
    .from(profilePins)
    .where(and(eq(profilePins.profile, profile.name), eq(profilePins.name, "treasury")));
  return row;
}

/** The escrow authority learned from the first lock written (see `LearnedPins.vaultOwner`). */
export async function learnedEscrowAuthority(
  db: PgExecutor,
  profile: CustodyProfile,
): Promise<string | null> {
  const [row] = await db
    .select({ value: profilePins.value })
    .from(profilePins)
    .where(and(eq(profilePins.profile, profile.name), eq(profilePins.name, "escrow_authority")));
  return row?.value ?? null;
}

/**
 * How long the writes made as the store opens wait for a row another session holds locked, in
 * ms: they hold the receipt writers' turn, so every receipt waited as long (up to the statement
 * timeout). Past it the opening fails, and the next read makes it again (see `configure`).
 */
const CONFIGURE_LOCK_WAIT_MS = 1000;

/**
 * Jobs left waiting to learn the treasury, under a profile that now names it, are decided again
 * (see src/store/custody.ts `treasuryWaiters`): a probe first, so an opening with none writes
 * nothing; the receipt writers' turn before the rows, as every writer of job rows takes it.
 */
async function decideTreasuryWaiters(db: PgExecutor) {
  const [waiting] = await db.select({ id: jobs.jobId }).from(jobs).where(treasuryWaiters).limit(1);
  if (waiting === undefined) return;
  const t = Date.now();
  await inPgTransaction(db, async (tx) => {
    await takeReceiptWriterTurn(tx);
    await boundRowLockWaits(tx, CONFIGURE_LOCK_WAIT_MS);
    await reopenJobsPg(tx, { where: treasuryWaiters }, t, { dueAt: 0 });
  });
}

/**
 * Pins the configured vaults: one upsert, atomic on PostgreSQL, whose update is guarded (a pin
 * that already says so is not rewritten), so processes starting at once all end on the same row.
 */
async function pinConfigured(db: PgExecutor, byKey: Readonly<Record<string, string>>) {
  const entries = Object.entries(byKey).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return;
  const t = Date.now();
  await inPgTransaction(db, async (tx) => {
    // Each configured vault's ledger lock (in one order), then the receipt writers' turn, before
    // any row: a ledger batch holds its vault's lock while it waits for the turn, and a receipt
    // group holding the turn comes to the jobs reopened below; taking the vault lock after
    // those rows closed a cycle of the three, one aborted as a deadlock.
    for (const vault of [...new Set(entries.map(([, v]) => v))].sort()) {
      await lockVault(tx, vault);
    }
    await takeReceiptWriterTurn(tx);
    await boundRowLockWaits(tx, CONFIGURE_LOCK_WAIT_MS);
    const held = await upsertConfigured(tx, entries, t);
    // A vault a key holds from now on: keyless locks from it are no longer no key's.
    for (const vault of held) await reopenJobsPg(tx, { where: untiedJobsOf(vault) }, t);
    // A vault configured for a key is that customer's: another key that learned it (its first
    // lock came from there) loses the pin, and its verified jobs are looked at again.
    const voided = await tx
      .delete(creditVaults)
      .where(
        and(
          eq(creditVaults.source, "learned"),
          inArray(
            creditVaults.vault,
            entries.map(([, vault]) => vault),
          ),
          notInArray(
            creditVaults.keyFingerprint,
            entries.map(([key]) => key),
          ),
        ),
      )
      .returning({ key: creditVaults.keyFingerprint, vault: creditVaults.vault });
    if (voided.length === 0) return;
    // So are that key's locks of the vault the ledger released: open again, the next ledger
    // round classifies them anew, where the pin now shows they are no job's lock of this key.
    // Under each vault's ledger lock (taken above): a ledger round of the vault never works
    // from release flags read before this change.
    for (const v of voided) {
      await tx
        .update(ledgerLines)
        .set({ released: false })
        .where(
          and(
            eq(ledgerLines.vault, v.vault),
            eq(ledgerLines.kind, "lock"),
            eq(ledgerLines.released, true),
            inArray(
              ledgerLines.jobId,
              tx.select({ jobId: jobs.jobId }).from(jobs).where(eq(jobs.keyFingerprint, v.key)),
            ),
          ),
        );
    }
    await reopenJobsPg(
      tx,
      {
        where: and(
          inArray(
            jobs.keyFingerprint,
            voided.map((v) => v.key),
          ),
          inArray(jobs.verdict, ["verified", "partially_verified"]),
        )!,
      },
      t,
    );
  });
}

/** Upserts the configured pins; returns the vaults of the pins it wrote or changed. */
async function upsertConfigured(
  db: PgExecutor,
  entries: [string, string][],
  t: number,
): Promise<Set<string>> {
  const written = await db
    .insert(creditVaults)
    .values(
      entries.map(([key, vault]) => ({
        keyFingerprint: key,
        vault,
        source: "configured" as const,
        jobId: null,
        pinnedAt: t,
      })),
    )
    .onConflictDoUpdate({
      target: creditVaults.keyFingerprint,
      set: { vault: sql`excluded.vault`, source: "configured" },
      setWhere: or(
        sql`${creditVaults.vault} <> excluded.vault`,
        sql`${creditVaults.source} <> 'configured'`,
      ),
    })
    .returning({ vault: creditVaults.vault });
  return new Set(written.map((r) => r.vault));
}
