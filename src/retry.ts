/**
 * The one backoff formula and the one interruptible sleep, shared by every retry loop: the
 * verifier's job backoff, the RPC pool's attempts, the settlement backfill, the busy-database
 * retry (`retryWhileBusy`), the receipt writer's group retry and the fetch wrapper's delivery.
 */

export interface BackoffOptions {
  /** Delay of the first retry (attempt 0), in ms; it doubles each attempt. */
  baseMs: number;
  /** Ceiling of one delay, in ms (before jitter). */
  maxMs: number;
  /**
   * The delay is multiplied by a random factor in [min, max): [0, 1] is "full jitter", [1, 1]
   * none. Jitter spreads retries of many callers so they do not hit a recovering peer
   * together. Default [1, 1].
   */
  jitter?: readonly [min: number, max: number];
  /** Injectable for tests. Default `Math.random`. */
  random?: () => number;
}

/** Delay before retry `attempt` (0 for the first): `min(maxMs, baseMs * 2^attempt)`, jittered. */
export function backoff(attempt: number, options: BackoffOptions): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(Math.max(0, attempt), 30));
  const [low, high] = options.jitter ?? [1, 1];
  if (low === 1 && high === 1) return ceiling;
  return ceiling * (low + (options.random ?? Math.random)() * (high - low));
}

/** Sleeps that a waker can cut short. */
export interface Sleeper {
  /** Resolves after `ms`, or at once when woken or when `signal` aborts. Never rejects. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Ends every sleep in progress. */
  wake(): void;
}

/**
 * Creates a sleeper. With `rememberWake`, a wake while nobody sleeps makes the next sleep return
 * at once, so a notification that arrives just before a loop goes to sleep is not lost.
 */
export function createSleeper(options: { rememberWake?: boolean } = {}): Sleeper {
  const sleepers = new Set<() => void>();
  let pendingWake = false;
  return {
    sleep(ms, signal) {
      return new Promise<void>((resolve) => {
        if (pendingWake || signal?.aborted) {
          pendingWake = false;
          resolve();
          return;
        }
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          sleepers.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(0, ms));
        sleepers.add(done);
        signal?.addEventListener("abort", done, { once: true });
      });
    },
    wake() {
      if (sleepers.size === 0 && options.rememberWake) pendingWake = true;
      for (const wake of [...sleepers]) wake();
    },
  };
}

/** Resolves after `ms`: a plain timer, for a retry nobody needs to cut short. */
export const sleepFor = (ms: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));
