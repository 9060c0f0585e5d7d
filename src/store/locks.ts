import { and, eq, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { locks } from "../db/schema.js";
import { leaseOnConflict, leaseRow } from "./lock-rules.js";
import { pgTwins } from "./pg-twins.js";
import { perConnectionModule } from "./prepared.js";

/** Who holds a lock and until when. */
export interface LockHolder {
  owner: string;
  acquiredAt: number;
  expiresAt: number;
}

/**
 * Named leases in the store (`locks`): the nightly run's lock, and the leader lock that picks
 * the one `serve` worker running the verifier. A holder keeps its lease by taking it again
 * before it expires (a heartbeat); a holder that died stops renewing and its lease runs out.
 */
export interface LockStore {
  /**
   * Takes `name` for `owner` until `now + ttlMs`, unless another owner holds it and its expiry
   * has not passed. Renewing (same owner) extends it. Resolves with the holder that blocked it,
   * or null when the lock is ours.
   */
  acquire(name: string, owner: string, ttlMs: number, now?: number): Promise<LockHolder | null>;
  /**
   * `acquire` that never judges another owner's lease by its expiry: takes `name` when nobody
   * holds it, or renews `owner`'s own lease. For a caller that judges another's lease on its
   * own monotonic clock (`takeOver`): the expiry is the holder's wall clock against this
   * host's, and a clock ahead by more than the lease took a live lease.
   */
  claim(name: string, owner: string, ttlMs: number, now?: number): Promise<LockHolder | null>;
  /**
   * Takes `name` from `deadOwner` (known dead, e.g. its pid is gone) for `owner`, whatever the
   * expiry; only if `deadOwner` still holds it, and when `seenAcquiredAt` is given, only if its
   * lease is still the one taken or renewed then (a holder that renewed since was not dead).
   * Resolves true when the lock is now ours.
   */
  takeOver(
    name: string,
    deadOwner: string,
    owner: string,
    ttlMs: number,
    now?: number,
    seenAcquiredAt?: number,
  ): Promise<boolean>;
  /** Releases `name` if `owner` still holds it; a lock taken over after expiry is left alone. */
  release(name: string, owner: string): Promise<void>;
  /** The current holder of `name` (expired or not), or null. */
  holder(name: string): Promise<LockHolder | null>;
  /**
   * The time to judge a lease's expiry by when its holders may be on other hosts: PostgreSQL's
   * own clock, which every host reads alike (a host whose clock ran ahead of a live holder's
   * by its lease took that lease); on SQLite, one host's file, `hostNow`.
   */
  sharedNow(hostNow: number): Promise<number>;
}

/** The lock store of either dialect. */
export function createLockStore(store: Store): LockStore {
  return store.kind === "postgres" ? pgTwins().createPgLockStore(store) : sqliteLockStore(store);
}

const sqliteLockStore = perConnectionModule(createSqliteLockStore);

function createSqliteLockStore(store: SqliteStore): LockStore {
  const { db } = store;
  // One statement each, so two processes racing for the lock cannot both win (lock-rules.ts).
  const upsert = (rule: "take" | "claim") =>
    db
      .insert(locks)
      .values(leaseRow())
      .onConflictDoUpdate({ target: locks.name, ...leaseOnConflict(locks, rule) })
      .prepare();
  const take = upsert("take");
  const claim = upsert("claim");
  const steal = db
    .update(locks)
    .set({
      owner: sql.placeholder("owner") as unknown as string,
      acquiredAt: sql.placeholder("now") as unknown as number,
      expiresAt: sql.placeholder("until") as unknown as number,
    })
    .where(and(eq(locks.name, sql.placeholder("name")), eq(locks.owner, sql.placeholder("dead"))))
    .prepare();
  const stealSeen = db
    .update(locks)
    .set({
      owner: sql.placeholder("owner") as unknown as string,
      acquiredAt: sql.placeholder("now") as unknown as number,
      expiresAt: sql.placeholder("until") as unknown as number,
    })
    .where(
      and(
        eq(locks.name, sql.placeholder("name")),
        eq(locks.owner, sql.placeholder("dead")),
        eq(locks.acquiredAt, sql.placeholder("seen")),
      ),
    )
    .prepare();
  const read = db
    .select({ owner: locks.owner, acquiredAt: locks.acquiredAt, expiresAt: locks.expiresAt })
    .from(locks)
    .where(eq(locks.name, sql.placeholder("name")))
    .prepare();
  const remove = db
    .delete(locks)
    .where(and(eq(locks.name, sql.placeholder("name")), eq(locks.owner, sql.placeholder("owner"))))
    .prepare();

  const holderOf = (name: string): LockHolder | null => {
    const row = read.get({ name });
    return row ? { owner: row.owner, acquiredAt: row.acquiredAt, expiresAt: row.expiresAt } : null;
  };

  return {
    async acquire(name, owner, ttlMs, now = Date.now()) {
      const changed = take.run({ name, owner, now, until: now + ttlMs }).changes;
      if (changed === 1) return null;
      // The holder released it between the two statements: report it as free but not ours.
      return holderOf(name) ?? { owner: "(released meanwhile)", acquiredAt: now, expiresAt: now };
    },
    async claim(name, owner, ttlMs, now = Date.now()) {
      const changed = claim.run({ name, owner, now, until: now + ttlMs }).changes;
      if (changed === 1) return null;
      return holderOf(name) ?? { owner: "(released meanwhile)", acquiredAt: now, expiresAt: now };
    },
    async takeOver(name, deadOwner, owner, ttlMs, now = Date.now(), seenAcquiredAt) {
      const values = { name, dead: deadOwner, owner, now, until: now + ttlMs };
      const result =
        seenAcquiredAt === undefined
          ? steal.run(values)
          : stealSeen.run({ ...values, seen: seenAcquiredAt });
      return result.changes === 1;
    },
    async release(name, owner) {
      remove.run({ name, owner });
    },
    async holder(name) {
      return holderOf(name);
    },
    async sharedNow(hostNow) {
      return hostNow;
    },
  };
}
