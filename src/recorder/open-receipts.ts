import type { Store } from "../db/client.js";
import { ownerIsDead } from "../host-identity.js";
import type { Logger } from "../log.js";
import { createOpenReceiptStore } from "../store/open-receipts.js";

/** Ends the open captures of dead proxies; see `createOpenReceiptSweep`. */
export interface OpenReceiptSweep {
  start(): void;
  /** Stops the timer; resolves once a sweep under way has ended. */
  stop(): Promise<void>;
}

/**
 * A streamed job's receipt is written `open` before its first byte and completed when the
 * stream ends, by the process streaming it. A process killed with SIGKILL (a cluster worker,
 * or the whole serve) completes nothing: its captures would say "still streaming" for good.
 * Each names its writer (host, PID namespace and pid), so the process running the background
 * work ends as `aborted` those whose writer is a process of this host that is gone, at start
 * and every `intervalMs`. A writer on another host cannot be judged from here and is left, as
 * are captures written before writers were named.
 */
export function createOpenReceiptSweep(options: {
  store: Store;
  log: Logger;
  intervalMs?: number;
  now?: () => number;
}): OpenReceiptSweep {
  const { log } = options;
  const openReceipts = createOpenReceiptStore(options.store);
  const intervalMs = options.intervalMs ?? 5000;
  const now = options.now ?? Date.now;
  let timer: NodeJS.Timeout | undefined;
  let sweeping: Promise<void> = Promise.resolve();
  let stopped = false;

  async function sweep() {
    try {
      // One read of a small partial index; nothing more while no capture is open.
      const writers = await openReceipts.writers();
      const dead = writers.filter(ownerIsDead);
      if (dead.length === 0) return;
      const ended = await openReceipts.abort(dead, now());
      if (ended > 0) {
        log.warn({ receipts: ended, writers: dead }, "open receipts of dead processes aborted");
      }
    } catch (error) {
      // A busy or failing store must not throw out of a timer: the next sweep tries again.
      log.warn({ err: error }, "open receipts of dead processes not swept; retrying");
    }
  }

  const tick = () => {
    sweeping = sweep().finally(() => {
      if (!stopped) {
        timer = setTimeout(tick, intervalMs);
        timer.unref();
      }
    });
  };

  return {
    start() {
      if (timer !== undefined || stopped) return;
      tick();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await sweeping;
    },
  };
}
