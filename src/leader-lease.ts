import { randomBytes } from "node:crypto";
import { isBusyError, retryWhileBusy, type Store } from "./db/client.js";
import { ownerIsDead, ownerName } from "./host-identity.js";
import type { Logger } from "./log.js";
import { createLockStore, type LockHolder } from "./store/locks.js";

/** Options of a leader lease; every optional one has a default. */
export interface LeaderLeaseOptions {
  store: Store;
  log: Logger;
  /** Lock name in the store. Default `serve-leader`. */
  name?: string;
  /** How long a lease lasts without renewal, in ms. Default 10,000. */
  ttlMs?: number;
  /** How often the lease is renewed (or asked for), in ms. Default 1,000. */
  heartbeatMs?: number;
  /** Called when this process becomes the leader. */
  onGain(): void;
  /** Called when this process stops being the leader; awaited before the lease is asked again. */
  onLose(): Promise<void>;
}

export interface LeaderLease {
  /**
   * This process's owner name in the lock (`<host>/<pid>/<random>`, the host with its PID
   * namespace on Linux: see `thisHost`).
   */
  readonly owner: string;
  isLeader(): boolean;
  /**
   * Stops renewing, calls `onLose` at once if leading, and releases the lock after it. Called
   * again, resolves with the first call.
   */
  stop(): Promise<void>;
}

/**
 * Holds a lease on the leader lock of the store so that exactly one of the `serve` processes
 * sharing it runs the background work (verifier, settlement backfill, ledger). The leader
 * renews its lease every heartbeat; a leader that dies stops renewing and another process takes
 * over once it has seen the lease go unrenewed for its TTL (on its own monotonic clock: the
 * expiry written by the holder's wall clock is not trusted), or at its next heartbeat when the
 * holder was a process of this host and PID namespace whose pid is gone (a worker killed by the
 * OS). A leader that cannot
 * reach the store stops leading once its lease would have run out, as another process may take
 * it then. A leader whose event loop stalled past its lease may briefly overlap with the next
 * one: the verifier's job leases keep that safe.
 */
export function holdLeaderLease(options: LeaderLeaseOptions): LeaderLease {
  const { log } = options;
  const name = options.name ?? "serve-leader";
  const ttlMs = options.ttlMs ?? 10_000;
  const heartbeatMs = options.heartbeatMs ?? 1000;
  const owner = ownerName(randomBytes(4).toString("hex"));
  const locks = createLockStore(options.store);
  let leading = false;
  /** When the lease last renewed was asked for, on the monotonic clock. */
  let renewedAt = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let beat: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | undefined;
  /** Fires when the lease held would run out unrenewed, whether the renewal fails or hangs. */
  let expiry: NodeJS.Timeout | undefined;
  /** The `onLose` of a lease that ran out, awaited before this process leads again. */
  let expired: Promise<void> = Promise.resolve();

  // A renewal that never answers (a connection whose peer vanished, a table lock held past the
  // lease) would otherwise keep this process leading beside the one that took the lease.
  function armExpiry() {
    clearTimeout(expiry);
    if (!leading || stopped) return;
    expiry = setTimeout(runOut, Math.max(0, renewedAt + ttlMs - performance.now()));
    expiry.unref();
  }

  function runOut() {
    if (!leading || stopped) return;
    leading = false;
    log.warn({ owner }, "leader lease ran out unrenewed; stopping the verifier and the backfill");
    expired = options.onLose();
  }

  // A SQLite store's lease connection does not wait for the write lock (its wait would hold
  // the event loop of a worker that proxies): a write that finds it taken (another worker's
  // receipts, for about a ms) is tried again from a timer, a few times within the heartbeat.
  const whileBusy = <T>(write: () => Promise<T>) =>
    retryWhileBusy(write, { attempts: 8, baseDelayMs: 1, maxDelayMs: 64 });

  /** Another owner's lease as last read, and when (monotonic) it was first read so. */
  let watched: { owner: string; acquiredAt: number; since: number } | undefined;
  /**
   * How long `holder` has gone unrenewed as this process saw it: since the first heartbeat
   * that read its present renewal (each renewal writes a new `acquiredAt`).
   */
  function unrenewedFor(holder: LockHolder, at: number): number {
    if (watched?.owner !== holder.owner || watched.acquiredAt !== holder.acquiredAt)
      watched = { owner: holder.owner, acquiredAt: holder.acquiredAt, since: at };
    return at - watched.since;
  }

  async function heartbeat() {
    let ours = false;
    // Taken before asking: the lease the store grants runs from no earlier than this.
    const asked = performance.now();
    try {
      // Another's lease is judged by this process's monotonic clock, never by the expiry it
      // wrote: the wall clock stepped forward (NTP, a VM resumed) made a live leader's lease
      // look expired, and the lease moved; stepped back, a hung leader's kept it for the step.
      // A leader renews at once: while its own lease has not run out (`armExpiry`), no other
      // process can have seen it unrenewed for a TTL.
      const seen = leading ? undefined : await whileBusy(() => locks.holder(name));
      let holder: LockHolder | null = seen ?? null;
      if (!seen || seen.owner === owner) {
        // Not ours when another process took it between the two statements: then watched. A
        // claim, never `acquire`: that judged such a lease by its wall-clock expiry, and a host
        // whose clock ran ahead by more than the TTL took it live (two leaders for a heartbeat).
        holder = await whileBusy(() => locks.claim(name, owner, ttlMs));
      }
      ours = holder === null;
      if (holder && ownerIsDead(holder.owner)) {
        ours = await whileBusy(() => locks.takeOver(name, holder.owner, owner, ttlMs));
        if (ours) log.info({ previous: holder.owner }, "leader lock taken from a dead process");
      } else if (holder && unrenewedFor(holder, asked) >= ttlMs) {
        // Only the lease watched: a renewal between the read and this write kept it alive.
        ours = await whileBusy(() =>
          locks.takeOver(name, holder.owner, owner, ttlMs, undefined, holder.acquiredAt),
        );
        if (ours) log.info({ previous: holder.owner }, "leader lock taken: not renewed in its TTL");
      }
    } catch (error) {
      // The store is busy or failing: keep leading until the lease would have run out (another
      // process may take it then), trying again each heartbeat.
      if (isBusyError(error)) log.debug("leader lock busy; renewed next heartbeat");
      else log.warn({ err: error }, "leader lock not renewed");
      if (leading && !stopped && performance.now() - renewedAt >= ttlMs) runOut();
      await expired;
      return;
    }
    // A grant that answered after its own lease ran out is none: asked for again next heartbeat.
    if (ours && performance.now() - asked >= ttlMs) ours = false;
    if (ours) renewedAt = asked;
    // The background work of a lease that ran out has stopped before it starts again.
    await expired;
    if (stopped) return;
    if (ours && !leading) {
      leading = true;
      log.info({ owner }, "leader: running the verifier and the backfill");
      options.onGain();
      armExpiry();
    } else if (ours) {
      armExpiry();
    } else if (!ours && leading) {
      leading = false;
      log.warn({ owner }, "leader lock lost; stopping the verifier and the backfill");
      await options.onLose();
    }
  }

  const tick = () => {
    beat = heartbeat().finally(() => {
      if (!stopped) {
        timer = setTimeout(tick, heartbeatMs);
        timer.unref();
      }
    });
  };
  tick();

  return {
    owner,
    isLeader: () => leading,
    stop() {
      stopping ??= resign();
      return stopping;
    },
  };

  async function resign() {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(expiry);
    // Told to stop now, before the caller closes what the background work uses.
    const losing = leading ? options.onLose() : Promise.resolve();
    leading = false;
    await beat;
    await losing;
    await expired;
    try {
      // A drain's last receipts hold the write lock as the lease is given up: waited for (a few
      // seconds at most, from timers), or the lease stayed held and the next leader waited out
      // its TTL.
      await retryWhileBusy(() => locks.release(name, owner), {
        attempts: 14,
        baseDelayMs: 5,
        maxDelayMs: 250,
      });
    } catch (error) {
      log.warn({ err: error }, "leader lock not released; it expires on its own");
    }
  }
}
