import type { Store } from "../db/client.js";

/** Who holds a lock and until when. */
export interface LockHolder {
  owner: string;
  acquiredAt: number;
  expiresAt: number;
}

/**
 * Takes the named lock for `owner` until `now + ttlMs`, unless another owner holds it and its
 * expiry has not passed. One statement, so two processes racing for it cannot both win: the
 * upsert only overwrites an expired row (or one of the same owner). Returns the holder that
 * blocked it, or null when the lock is ours.
 */
export function acquireLock(
  store: Store,
  name: string,
  owner: string,
  ttlMs: number,
  now: number = Date.now(),
): LockHolder | null {
  const changed = store.sqlite
    .prepare(
      `INSERT INTO locks (name, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, acquired_at = excluded.acquired_at,
         expires_at = excluded.expires_at
       WHERE locks.expires_at <= excluded.acquired_at OR locks.owner = excluded.owner`,
    )
    .run(name, owner, now, now + ttlMs).changes;
  if (changed === 1) return null;
  const row = store.sqlite
    .prepare("SELECT owner, acquired_at, expires_at FROM locks WHERE name = ?")
    .get(name) as { owner: string; acquired_at: number; expires_at: number } | undefined;
  // The holder released it between the two statements: report it as free but not ours.
  if (!row) return { owner: "(released meanwhile)", acquiredAt: now, expiresAt: now };
  return { owner: row.owner, acquiredAt: row.acquired_at, expiresAt: row.expires_at };
}

/** Releases the lock if `owner` still holds it; a lock taken over after expiry is left alone. */
export function releaseLock(store: Store, name: string, owner: string): void {
  store.sqlite.prepare("DELETE FROM locks WHERE name = ? AND owner = ?").run(name, owner);
}
