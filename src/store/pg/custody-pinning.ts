import { and, count, eq, inArray, sql } from "drizzle-orm";
import { creditVaults, jobs, profilePins, treasuryEvidence } from "../../db/pg/schema.js";
import type { CustodyProfile, LearnedPins } from "../custody.js";
import type { PgExecutor } from "./executor.js";
import { reopenJobsPg } from "./job-queue.js";

/**
 * `createCustodyPinning` on PostgreSQL (see src/store/custody.ts): custody's writes that compose
 * inside the verdict writer's transaction. Pins never move once set, and two processes learning
 * the same pin at once end with one pin, the first.
 *
 * - A key's credit vault: `INSERT … ON CONFLICT DO NOTHING`, then a re-read. A concurrent insert
 *   of the same key waits on the unique index until the first transaction ends, then does
 *   nothing; under READ COMMITTED the re-read is a new statement with a new snapshot, so it sees
 *   the committed first pin. No lock is held longer than the insert's own, and the vaults of a
 *   batch are inserted in key order, so two writers never wait on each other's keys in a cycle.
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
   * wins a key). Per item: false when another job pinned something else first (stale).
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
}

/**
 * Namespace of this program's two-key advisory locks (the single-key space, where the migration
 * lock lives, does not overlap it): the first 4 bytes of sha256("decentral-audit:treasury") as
 * a signed 32-bit integer.
 */
export const TREASURY_LOCK_CLASS = 420_816_328;

/** Jobs that waited for the treasury are decided again once it is known (as on SQLite). */
const treasuryWaiters = and(
  eq(jobs.verdict, "partially_verified"),
  // Raw SQL: `unproven` is json, kept as written; LIKE reads its text as SQLite's does.
  sql`${jobs.unproven}::text LIKE '%"treasury_unknown"%'`,
)!;

/** Custody's writes for the verdict writer's transaction on PostgreSQL. */
export function createPgCustodyPinning(profile: CustodyProfile): PgCustodyPinning {
  return {
    async lockTreasuryLearning(tx) {
      if (profile.treasury !== null) return;
      // Raw SQL: drizzle has no builder for advisory locks.
      await tx.execute(
        sql`SELECT pg_advisory_xact_lock(${TREASURY_LOCK_CLASS}::int, hashtext(${profile.name}))`,
      );
    },

    async pinAll(tx, items, t) {
      const wanted = new Map<string, { vault: string; jobId: string }>();
      for (const { job, learned } of items) {
        if (learned.creditVault === null || !job.keyFingerprint) continue;
        if (!wanted.has(job.keyFingerprint)) {
          wanted.set(job.keyFingerprint, { vault: learned.creditVault, jobId: job.jobId });
        }
      }
      const pinned = new Map<string, string>();
      if (wanted.size > 0) {
        const keys = [...wanted.keys()].sort();
        await tx
          .insert(creditVaults)
          .values(
            keys.map((key) => ({
              keyFingerprint: key,
              vault: wanted.get(key)!.vault,
              source: "learned" as const,
              jobId: wanted.get(key)!.jobId,
              pinnedAt: t,
            })),
          )
          .onConflictDoNothing({ target: creditVaults.keyFingerprint });
        for (const row of await tx
          .select({ key: creditVaults.keyFingerprint, vault: creditVaults.vault })
          .from(creditVaults)
          .where(inArray(creditVaults.keyFingerprint, keys))) {
          pinned.set(row.key, row.vault);
        }
      }
      return items.map(({ job, learned }) =>
        learned.creditVault === null || !job.keyFingerprint
          ? true
          : pinned.get(job.keyFingerprint) === learned.creditVault,
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
      await reopenJobsPg(tx, { where: treasuryWaiters }, t, { dueAt: 0 });
    },
  };
}
