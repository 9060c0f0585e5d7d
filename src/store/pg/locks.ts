import { and, eq, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { locks } from "../../db/pg/schema.js";
import { leaseOnConflict, leaseRow } from "../lock-rules.js";
import type { LockHolder, LockStore } from "../locks.js";
import { readServerNowMs } from "./server-clock.js";

/**
 * Named leases on PostgreSQL (see src/store/locks.ts). Many processes on many hosts race for
 * the same lock, so each change is one guarded statement: the row lock PostgreSQL takes on
 * conflict makes a racer wait for the winner's commit and then re-check the guard against the
 * row the winner wrote (READ COMMITTED re-evaluates `ON CONFLICT DO UPDATE … WHERE` and
 * `UPDATE … WHERE` on the newest row version), so exactly one holder wins each round.
 */
export function createPgLockStore(store: PgStore): LockStore {
  const { db } = store;
  // INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING (lock-rules.ts): `take` inserts a free
  // name and overwrites an expired lease or our own, a live lease of another owner is left alone
  // (no row back); `claim` only a free name or our own lease, another's never judged by expiry.
  const upsert = (rule: "take" | "claim") =>
    db
      .insert(locks)
      .values(leaseRow())
      .onConflictDoUpdate({ target: locks.name, ...leaseOnConflict(locks, rule) })
      .returning({ owner: locks.owner })
      .prepare(`locks_${rule}`);
  const take = upsert("take");
  const claim = upsert("claim");
  // UPDATE … WHERE owner = dead RETURNING: only while the dead owner still holds it.
  const steal = db
    .update(locks)
    .set({
      owner: sql`${sql.placeholder("owner")}`,
      acquiredAt: sql`${sql.placeholder("now")}`,
      expiresAt: sql`${sql.placeholder("until")}`,
    })
    .where(and(eq(locks.name, sql.placeholder("name")), eq(locks.owner, sql.placeholder("dead"))))
    .returning({ owner: locks.owner })
    .prepare("locks_steal");
  const stealSeen = db
    .update(locks)
    .set({
      owner: sql`${sql.placeholder("owner")}`,
      acquiredAt: sql`${sql.placeholder("now")}`,
      expiresAt: sql`${sql.placeholder("until")}`,
    })
    .where(
      and(
        eq(locks.name, sql.placeholder("name")),
        eq(locks.owner, sql.placeholder("dead")),
        eq(locks.acquiredAt, sql`${sql.placeholder("seen")}`),
      ),
    )
    .returning({ owner: locks.owner })
    .prepare("locks_steal_seen");
  const read = db
    .select({ owner: locks.owner, acquiredAt: locks.acquiredAt, expiresAt: locks.expiresAt })
    .from(locks)
    .where(eq(locks.name, sql.placeholder("name")))
    .prepare("locks_read");
  const remove = db
    .delete(locks)
    .where(and(eq(locks.name, sql.placeholder("name")), eq(locks.owner, sql.placeholder("owner"))))
    .prepare("locks_remove");

  const holderOf = async (name: string): Promise<LockHolder | null> => {
    const [row] = await read.execute({ name });
    return row ? { owner: row.owner, acquiredAt: row.acquiredAt, expiresAt: row.expiresAt } : null;
  };

  return {
    async acquire(name, owner, ttlMs, now = Date.now()) {
      const won = await take.execute({ name, owner, now, until: now + ttlMs });
      if (won.length === 1) return null;
      // The holder released it between the two statements: report it as free but not ours.
      return (
        (await holderOf(name)) ?? { owner: "(released meanwhile)", acquiredAt: now, expiresAt: now }
      );
    },
    async claim(name, owner, ttlMs, now = Date.now()) {
      const won = await claim.execute({ name, owner, now, until: now + ttlMs });
      if (won.length === 1) return null;
      return (
        (await holderOf(name)) ?? { owner: "(released meanwhile)", acquiredAt: now, expiresAt: now }
      );
    },
    async takeOver(name, deadOwner, owner, ttlMs, now = Date.now(), seenAcquiredAt) {
      const values = { name, dead: deadOwner, owner, now, until: now + ttlMs };
      const rows =
        seenAcquiredAt === undefined
          ? await steal.execute(values)
          : await stealSeen.execute({ ...values, seen: seenAcquiredAt });
      return rows.length === 1;
    },
    async release(name, owner) {
      await remove.execute({ name, owner });
    },
    holder: holderOf,
    sharedNow: () => readServerNowMs(db),
  };
}
