import type { Store } from "../db/client.js";
import { createLockStore, type LockHolder } from "../store/locks.js";

export type { LockHolder } from "../store/locks.js";

/**
 * Takes the named lock for `owner` until `now + ttlMs`, unless another owner holds it and its
 * expiry has not passed (see `LockStore.acquire`). Resolves with the holder that blocked it,
 * or null when the lock is ours.
 */
export function acquireLock(
  store: Store,
  name: string,
  owner: string,
  ttlMs: number,
  now: number = Date.now(),
): Promise<LockHolder | null> {
  return createLockStore(store).acquire(name, owner, ttlMs, now);
}

/** The holder of the named lock, its expiry passed or not, or null. */
export function lockHolder(store: Store, name: string): Promise<LockHolder | null> {
  return createLockStore(store).holder(name);
}

/** Releases the lock if `owner` still holds it; a lock taken over after expiry is left alone. */
export function releaseLock(store: Store, name: string, owner: string): Promise<void> {
  return createLockStore(store).release(name, owner);
}

/** Takes the lock from `deadOwner` (a process known to be gone) for `owner`; true if taken. */
export function takeOverLock(
  store: Store,
  name: string,
  deadOwner: string,
  owner: string,
  ttlMs: number,
  now: number = Date.now(),
): Promise<boolean> {
  return createLockStore(store).takeOver(name, deadOwner, owner, ttlMs, now);
}

/** The time a lock shared across hosts is judged by (see `LockStore.sharedNow`). */
export function sharedLockNow(store: Store, hostNow: number): Promise<number> {
  return createLockStore(store).sharedNow(hostNow);
}
