import { setTimeout as sleep } from "node:timers/promises";
import { othersCommitted, type SqliteStore } from "../db/client.js";

/**
 * How a connection's SQLite write transactions that follow each other leave the write lock to
 * another process's writer. A writer that finds the lock held waits on SQLite's own schedule,
 * sleeping longer each time up to 100 ms a try: the ledger's reads (every `verify`'s, the
 * leader's) wrote a vault's lines in transactions back to back, microseconds apart, and such a
 * writer woke each time to find the lock taken again (a lock probe beside a nightly waited up
 * to 3.7 s, with no transaction over 0.8 s). So once this connection has held the lock `holdMs`
 * in transactions that each began within `turnMs` of the last one's end, while another
 * connection commits (it did within `sharedForMs`: `serve` renews its lease every second), the
 * next transaction waits until the lock has been free `turnMs`, longer than a waiter's longest
 * sleep. Alone on the database, nothing waits.
 */
export interface WriteTurns {
  /** Runs `tx` (a transaction taking the write lock), first giving a waiting writer its turn. */
  run<T>(tx: () => T): Promise<T>;
}

/** The lock held in transactions that follow each other before a waiter is given a turn. */
export const WRITE_TURN_HOLD_MS = 100;
/** The lock left free for a turn: more than SQLite's longest sleep between tries (100 ms). */
export const WRITE_TURN_MS = 120;
/** How long after another connection's commit this one keeps giving turns. */
const sharedForMs = 5000;

export function writeTurns(store: SqliteStore): WriteTurns {
  const others = othersCommitted(store);
  let held = 0;
  let lastEnd = Number.NEGATIVE_INFINITY;
  let sharedUntil = Number.NEGATIVE_INFINITY;
  return {
    async run(tx) {
      let now = performance.now();
      if (others?.()) sharedUntil = now + sharedForMs;
      // Free that long, a waiter had its turn already.
      if (now - lastEnd >= WRITE_TURN_MS) held = 0;
      if (held >= WRITE_TURN_HOLD_MS && now < sharedUntil) {
        await sleep(WRITE_TURN_MS - (now - lastEnd));
        held = 0;
        now = performance.now();
      }
      try {
        return tx();
      } finally {
        const end = performance.now();
        held += end - now;
        lastEnd = end;
      }
    },
  };
}
