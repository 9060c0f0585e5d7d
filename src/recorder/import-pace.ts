import { setTimeout as sleep } from "node:timers/promises";
import { othersCommitted, type Store } from "../db/client.js";

/**
 * How `import` shares SQLite's one write lock with the processes beside it. A transaction of
 * 1,000 receipts held the lock 140 ms on an idle host and past 500 ms on a loaded one, three
 * quarters of the import's time, and a writer waiting for the lock tries again on SQLite's own
 * schedule (sleeps growing to 100 ms): `serve` waits 500 ms, its event loop held meanwhile (the
 * proxy's answers with it), before it answers 503, and a manual `verify` beside an import could
 * not store its outcome. So a transaction is sized to hold the lock about `holdMs` (from what
 * the last ones took, halving or doubling at most at a step), and while another connection
 * commits (it did within `sharedForMs`: a `serve` renews its lease every second) the lock is
 * left free `yieldMs` between two transactions, as long as a waiter's first sleeps together, so
 * that a waiter takes it within a few tens of ms. Alone on the database, an import holds
 * `aloneHoldMs` and pays no pause. On PostgreSQL, whose writers lock rows, not the database,
 * batches keep their full size.
 */
export interface ImportPace {
  /** Receipts for the next transaction. */
  size(): number;
  /**
   * Waits, just before a transaction (its receipts read and validated meanwhile, the lock
   * free), until the lock has been free long enough.
   */
  before(): Promise<void>;
  /** A transaction writing `count` receipts took `ms`, its wait for the lock included. */
  after(count: number, ms: number): void;
}

/** Time a transaction aims to hold the write lock while others write. */
const holdMs = 30;
/** Time a transaction aims to hold the write lock with no other writer. */
const aloneHoldMs = 100;
/** The lock left free between two transactions while others write. */
const yieldMs = 15;
/** How long after another connection's commit the import keeps sharing. */
const sharedForMs = 5000;
/** Fewest receipts a transaction is cut to, however slow the host. */
const minBatch = 16;

/** The pace of an import into `store` whose transactions hold at most `maxBatch` receipts. */
export function importPace(store: Store, maxBatch: number): ImportPace {
  const others = othersCommitted(store);
  if (others === null) {
    return { size: () => maxBatch, before: async () => {}, after: () => {} };
  }
  // The first transaction's cost is not known yet: a small one.
  let size = Math.min(maxBatch, 100);
  let msPerReceipt = 0;
  let lastEnd = Number.NEGATIVE_INFINITY;
  let sharedUntil = Number.NEGATIVE_INFINITY;
  const resize = (now: number) => {
    if (msPerReceipt === 0) return;
    const target = now < sharedUntil ? holdMs : aloneHoldMs;
    const fits = Math.floor(target / msPerReceipt);
    const stepped = Math.min(Math.max(fits, Math.ceil(size / 2)), size * 2);
    size = Math.min(Math.max(stepped, Math.min(minBatch, maxBatch)), maxBatch);
  };
  return {
    size: () => size,
    async before() {
      const now = performance.now();
      // A batch already read for a lone import is written whole; the next ones are cut.
      if (others()) sharedUntil = now + sharedForMs;
      const wait = now < sharedUntil ? lastEnd + yieldMs - now : 0;
      if (wait > 0) await sleep(wait);
    },
    after(count, ms) {
      const now = performance.now();
      lastEnd = now;
      // Lines refused before the transaction cost it nothing: counted, a run of them made the
      // next batches of real receipts long enough to hold the lock half a second.
      if (count === 0) return;
      msPerReceipt = ms / count;
      resize(now);
    },
  };
}
