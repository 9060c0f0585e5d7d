import { and, count, eq, inArray, or, sql } from "drizzle-orm";
import { creditVaults, jobs, profilePins, treasuryEvidence } from "../../db/pg/schema.js";
import { waitsForTreasuryTerm } from "../../db/schema.js";
import type { CustodyProfile, LearnedPins } from "../custody.js";
import { untiedJobsWhere } from "../custody-rules.js";
import type { PgExecutor } from "./executor.js";
import { namingHeldRows } from "./held-rows.js";
import { reopenJobsPg } from "./job-queue.js";

/**
 * `createCustodyPinning` on PostgreSQL (see src/store/custody.ts): custody's writes that compose
 * inside the verdict writer's transaction. Pins never move once set, and two processes learning
 * the same pin at once end with one pin, the first.
 *
 * - A key's credit vault: `INSERT … ON CONFLICT DO NOTHING`, then a re-read. A concurrent insert
 *   of the same key waits on the unique index until the first transaction ends, then does
 *   nothing; under READ COMMITTED the re-read is a new statement with a new snapshot, so it sees
 *   the committed first pin. The vaults of a batch are inserted in key order, so two writers
 *   never wait on each other's keys in a cycle (the configured pins are upserted in key order
 *   too).
 * - A vault learned is one key's: a key does not learn a vault another key holds. No unique
 *   index can say so (a deployment may configure one vault for two keys, and a database written
 *   before this rule may hold a learned vault twice), and a row lock cannot guard a row that is
 *   not there yet, so learning takes a transaction-level advisory lock, one for every vault:
 *   the check of the holders and the insert happen while no other writer learns a vault, and a
 *   writer waiting for the lock reads, once it has it, the pins the first one committed. Only
 *   the first jobs of keys learn, so waiting on one lock costs little. Like the treasury's, it
 *   is taken before any row lock of the transaction (`pinAll` comes first).
 * - The treasury: learning reads a count and then writes (the count reaching
 *   `treasuryLearnAfter`), which `ON CONFLICT` alone cannot make safe: two transactions each
 *   adding one agreeing settlement would each count without the other's and neither would pin.
 *   A transaction-level advisory lock per profile serializes learning, as SQLite's IMMEDIATE
 *   transaction does; the caller takes it first, before any row lock (`lockTreasuryLearning`).
 */
export interface PgCustodyPinning {
  /**
   * Takes the profile's treasury-learning lock until the transaction ends. Call it first in a
   * transaction that will count treasury evidence (nothing to do when the profile pins one).
   */
  lockTreasuryLearning(tx: PgExecutor): Promise<void>;
  /**
   * Pins what each evaluation learned, as `pin` does one by one on SQLite (the first of a batch
   * wins a key, and a vault). Per item: false when another job pinned something else first, this
   * key to another vault or this vault to another key, or when the account its lock went into
   * is pinned as a credit vault or learned as one by another item (stale; in that last case the
   * key's own vault is pinned all the same), or a keyless lock's `untiedVault` is held or learned
   * (stale). Keyless verdicts already written on a lock from a vault pinned here are sent back.
   * Call it before any row lock.
   */
  pinAll(
    tx: PgExecutor,
    items: readonly {
      job: { jobId: string; keyFingerprint?: string | null };
      learned: LearnedPins;
    }[],
    t: number,
  ): Promise<boolean[]>;
  /**
   * Records a settlement's treasury candidate; once `treasuryLearnAfter` settlements agree the
   * address is pinned, and jobs left unproven for want of it are queued again.
   */
  countTreasuryEvidence(
    tx: PgExecutor,
    jobId: string,
    candidate: { signature: string; address: string },
    t: number,
  ): Promise<void>;
  /**
   * Whether the treasury is learned by now (false when the profile names it): a verdict that
   * waits for it (`waitsForTreasury`) and is written after it was pinned is stale. Read in the
   * verdict writers' turn: only a verdict writer pins the treasury, so none can between this
   * read and the commit.
   */
  treasuryLearned(tx: PgExecutor): Promise<boolean>;
}

/**
 * Namespace of this program's two-key advisory locks (the single-key space, where the migration
 * lock lives, does not overlap it): the first 4 bytes of sha256("decentral-audit:treasury") as
 * a signed 32-bit integer.
 */
export const TREASURY_LOCK_CLASS = 420_816_328;

/**
 * The lock every writer learning a credit vault takes (class, then 0): the first 4 bytes of
 * sha256("decentral-audit:credit-vaults") as a signed 32-bit integer.
 */
export const VAULT_LOCK_CLASS = -1_362_200_956;

/**
 * Jobs that waited for the treasury are decided again once it is known (as on SQLite; the SQL
 * of `waitsForTreasury`).
 */
// `unproven` is json, kept as written; LIKE reads its text as SQLite's does.
export const treasuryWaiters = waitsForTreasuryTerm(jobs.verdict, sql`(${jobs.unproven})::text`);

/** Keyless jobs judged on a lock from `vault` while no key held it (see `untiedJobsWhere`). */
export const untiedJobsOf = (vault: string) =>
  untiedJobsWhere(jobs, sql.raw("c.actual ->> 'vault'"), vault);

/** Custody's writes for the verdict writer's transaction on PostgreSQL. */
export function createPgCustodyPinning(profile: CustodyProfile): PgCustodyPinning {
  /**
   * Pins the owner of the credit vaults a lock showed as the escrow authority, when the profile
   * names none and none is pinned (as on SQLite: the first written wins); tells, per item,
   * whether the owner it learned (if any) is the one pinned. A concurrent insert waits on the
   * primary key until the first transaction ends, then does nothing, and the re-read (a new
   * statement under READ COMMITTED) sees the committed first pin.
   */
  const pinAuthority = async (
    tx: PgExecutor,
    items: readonly { learned: LearnedPins }[],
    t: number,
  ): Promise<(item: { learned: LearnedPins }) => boolean> => {
    const owners = items.flatMap((i) => (i.learned.vaultOwner ? [i.learned.vaultOwner] : []));
    if ((profile.escrowAuthority ?? null) !== null || owners.length === 0) return () => true;
    await tx
      .insert(profilePins)
      .values({
        profile: profile.name,
        name: "escrow_authority",
        value: owners[0]!,
        evidence: 1,
        pinnedAt: t,
      })
      .onConflictDoNothing();
    const [pin] = await tx
      .select({ value: profilePins.value })
      .from(profilePins)
      .where(and(eq(profilePins.profile, profile.name), eq(profilePins.name, "escrow_authority")));
    return (item) => !item.learned.vaultOwner || item.learned.vaultOwner === pin?.value;
  };
  return {
    async lockTreasuryLearning(tx) {
      if (profile.treasury !== null) return;
      // Raw SQL: drizzle has no builder for advisory locks.
      await tx.execute(
        sql`SELECT pg_advisory_xact_lock(${TREASURY_LOCK_CLASS}::int, hashtext(${profile.name}))`,
      );
    },

    async pinAll(tx, items, t) {
      const learning: { item: (typeof items)[number]; key: string; vault: string }[] = [];
      for (const item of items) {
        const key = item.job.keyFingerprint;
        const vault = item.learned.creditVault;
        if (key && vault !== null) learning.push({ item, key, vault });
      }
      // A lock's escrow account that passed as nobody's vault on the pins its slice read, and
      // is a credit vault now (pinned since) or is learned as one by another job of the batch:
      // that verdict is stale. Verdict writers take turns (pg/verdicts.ts), so no other writer
      // pins a vault between this read and the commit.
      // So is a keyless lock's verdict that passed as drawn on a vault no key held (see
      // `untiedVault`), once a key holds that vault.
      const escrows = [
        ...new Set(
          items.flatMap((i) => [
            ...(i.learned.escrowAccount ? [i.learned.escrowAccount] : []),
            ...(i.learned.untiedVault ? [i.learned.untiedVault] : []),
          ]),
        ),
      ];
      const pinnedEscrows = new Set<string>();
      if (escrows.length > 0) {
        for (const row of await tx
          .select({ vault: creditVaults.vault })
          .from(creditVaults)
          .where(inArray(creditVaults.vault, escrows))) {
          pinnedEscrows.add(row.vault);
        }
      }
      const learnedInBatch = (item: (typeof items)[number]) => {
        const escrow = item.learned.escrowAccount ?? null;
        return (
          escrow !== null &&
          learning.some((l) => l.item.job.jobId !== item.job.jobId && l.vault === escrow)
        );
      };
      const untiedFresh = (item: (typeof items)[number]) => {
        const untied = item.learned.untiedVault ?? null;
        return (
          untied === null ||
          (!pinnedEscrows.has(untied) &&
            !learning.some((l) => l.item.job.jobId !== item.job.jobId && l.vault === untied))
        );
      };
      const escrowFresh = (item: (typeof items)[number]) => {
        const escrow = item.learned.escrowAccount ?? null;
        return escrow === null || (!pinnedEscrows.has(escrow) && !learnedInBatch(item));
      };
      const fresh = (item: (typeof items)[number]) => escrowFresh(item) && untiedFresh(item);
      const authorityFresh = await pinAuthority(tx, items, t);
      // A verdict stale only because another job of the batch learns its escrow account still
      // pins its key's vault, as on SQLite: where the first lock drew from is true whatever it
      // went into, and two first locks into each other's vault then both find it next round.
      const pinsOwn = (item: (typeof items)[number]) => escrowFresh(item) || learnedInBatch(item);
      if (learning.length === 0) return items.map((i) => fresh(i) && authorityFresh(i));
      // Raw SQL: drizzle has no builder for advisory locks.
      await tx.execute(sql`SELECT pg_advisory_xact_lock(${VAULT_LOCK_CLASS}::int, 0)`);
      const keys = [...new Set(learning.map((l) => l.key))];
      const vaults = [...new Set(learning.map((l) => l.vault))];
      // Every pin of these keys and of these vaults, as committed before this writer took the
      // lock; the batch's items are then decided in order, as SQLite's writer does one by one.
      const pinned = new Map<string, string>();
      const holders = new Map<string, Set<string>>();
      const hold = (key: string, vault: string) => {
        pinned.set(key, vault);
        holders.set(vault, (holders.get(vault) ?? new Set()).add(key));
      };
      for (const row of await tx
        .select({ key: creditVaults.keyFingerprint, vault: creditVaults.vault })
        .from(creditVaults)
        .where(
          or(inArray(creditVaults.keyFingerprint, keys), inArray(creditVaults.vault, vaults)),
        )) {
        hold(row.key, row.vault);
      }
      const inserts = new Map<string, { vault: string; jobId: string; reopensKeyless: boolean }>();
      const refused = new Set<(typeof items)[number]>();
      for (const { item, key, vault } of learning) {
        // A verdict stale for a vault pinned before this batch pins nothing, as on SQLite.
        if (!pinsOwn(item)) continue;
        if (pinned.has(key)) continue; // Checked against the re-read below.
        if ([...(holders.get(vault) ?? [])].some((k) => k !== key)) {
          refused.add(item);
          continue;
        }
        hold(key, vault);
        inserts.set(key, {
          vault,
          jobId: item.job.jobId,
          reopensKeyless: item.learned.reopensKeyless !== false,
        });
      }
      if (inserts.size > 0) {
        const inOrder = [...inserts.keys()].sort();
        await tx
          .insert(creditVaults)
          .values(
            inOrder.map((key) => ({
              keyFingerprint: key,
              vault: inserts.get(key)!.vault,
              source: "learned" as const,
              jobId: inserts.get(key)!.jobId,
              pinnedAt: t,
            })),
          )
          .onConflictDoNothing({ target: creditVaults.keyFingerprint });
      }
      // Read again: a configured pin written by a process starting now takes no lock, and wins.
      const now = new Map<string, string>();
      for (const row of await tx
        .select({ key: creditVaults.keyFingerprint, vault: creditVaults.vault })
        .from(creditVaults)
        .where(inArray(creditVaults.keyFingerprint, keys))) {
        now.set(row.key, row.vault);
      }
      // A vault this batch pinned: keyless verdicts already written on a lock from it are
      // looked at again (as on SQLite). Those of this batch are stale above.
      for (const [key, { vault, reopensKeyless }] of inserts) {
        if (reopensKeyless && now.get(key) === vault) {
          await namingHeldRows(untiedJobsOf(vault), () =>
            reopenJobsPg(tx, { where: untiedJobsOf(vault) }, t),
          );
        }
      }
      return items.map(
        (item) =>
          fresh(item) &&
          authorityFresh(item) &&
          (item.learned.creditVault === null ||
            !item.job.keyFingerprint ||
            (!refused.has(item) && now.get(item.job.keyFingerprint) === item.learned.creditVault)),
      );
    },

    async countTreasuryEvidence(tx, jobId, candidate, t) {
      if (profile.treasury !== null) return;
      await tx
        .insert(treasuryEvidence)
        .values({
          profile: profile.name,
          signature: candidate.signature,
          address: candidate.address,
          jobId,
          seenAt: t,
        })
        .onConflictDoNothing();
      const [pin] = await tx
        .select({ value: profilePins.value })
        .from(profilePins)
        .where(and(eq(profilePins.profile, profile.name), eq(profilePins.name, "treasury")));
      if (pin !== undefined) return;
      const [agreeing] = await tx
        .select({ n: count() })
        .from(treasuryEvidence)
        .where(
          and(
            eq(treasuryEvidence.profile, profile.name),
            eq(treasuryEvidence.address, candidate.address),
          ),
        );
      const settlements = Number(agreeing?.n ?? 0);
      if (settlements < profile.treasuryLearnAfter) return;
      await tx
        .insert(profilePins)
        .values({
          profile: profile.name,
          name: "treasury",
          value: candidate.address,
          evidence: settlements,
          pinnedAt: t,
        })
        .onConflictDoNothing();
      await namingHeldRows(treasuryWaiters, () =>
        reopenJobsPg(tx, { where: treasuryWaiters }, t, { dueAt: 0 }),
      );
    },

    async treasuryLearned(tx) {
      if (profile.treasury !== null) return false;
      const [pin] = await tx
        .select({ value: profilePins.value })
        .from(profilePins)
        .where(and(eq(profilePins.profile, profile.name), eq(profilePins.name, "treasury")));
      return pin !== undefined;
    },
  };
}
