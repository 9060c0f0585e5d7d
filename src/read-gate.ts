/**
 * Readers take turns. A report, an audit record or a dashboard page reads the store
 * synchronously (better-sqlite3): tens of milliseconds for a year summed by a time zone's days.
 * Requests that arrive together are handled in one turn of the event loop, one after another,
 * so 250 readers at once held a worker's loop for over ten seconds: its proxied requests waited
 * (one was answered 502), and the leader's lease went unrenewed until another process took it.
 *
 * Here each reader runs in a turn of the event loop of its own (a `setImmediate` after the one
 * before it ended), so timers (the lease's heartbeat) and the proxy's sockets get the loop
 * between any two readers, and at most `maxWaiting` wait: one beyond is refused at once, and
 * told when to come back by how long the readers before it take.
 */

/** Options of a read gate; every one has a default. */
export interface ReadGateOptions {
  /**
   * Readers run at once. Default 1: a SQLite read holds the event loop for all its length. A
   * PostgreSQL store's reads wait on the network, not the loop: as many as its pool.
   */
  concurrency?: number;
  /** Readers that may wait for their turn; one more is refused. Default 64 (`READ_QUEUE`). */
  maxWaiting?: number;
}

export interface ReadGate {
  /**
   * Runs `work` in a turn of its own once the readers before it ended; null at once when
   * `maxWaiting` readers already wait (the caller answers 503 with `retryAfterSeconds()`).
   */
  run<T>(work: () => Promise<T>): Promise<T> | null;
  /** Whole seconds the readers waiting now take, by how long readers took lately; at least 1. */
  retryAfterSeconds(): number;
}

/** The default of `READ_QUEUE`: readers waiting for their turn in one serving process. */
export const DEFAULT_READ_QUEUE = 64;

export function createReadGate(options: ReadGateOptions = {}): ReadGate {
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const maxWaiting = Math.max(0, options.maxWaiting ?? DEFAULT_READ_QUEUE);
  const waiting: (() => void)[] = [];
  let running = 0;
  /** Readers handed a turn that has not begun yet: counted as running. */
  let scheduled = 0;
  /** How long a reader took, smoothed over the last few (ms). */
  let averageMs = 0;

  const pump = () => {
    while (running + scheduled < concurrency && waiting.length > 0) {
      const start = waiting.shift() as () => void;
      scheduled++;
      // Never in the turn that ended the reader before it, nor in the one that took the
      // request: requests read from the sockets in one turn would all run in it.
      setImmediate(() => {
        scheduled--;
        running++;
        start();
      });
    }
  };

  return {
    run<T>(work: () => Promise<T>): Promise<T> | null {
      if (waiting.length >= maxWaiting && running + scheduled + waiting.length >= concurrency)
        return null;
      return new Promise<T>((resolve, reject) => {
        waiting.push(() => {
          const started = performance.now();
          const done = () => {
            const took = performance.now() - started;
            averageMs = averageMs === 0 ? took : averageMs * 0.8 + took * 0.2;
            running--;
            pump();
          };
          let result: Promise<T>;
          try {
            result = work();
          } catch (error) {
            done();
            return reject(error);
          }
          result.then(
            (value) => {
              done();
              resolve(value);
            },
            (error: unknown) => {
              done();
              reject(error);
            },
          );
        });
        pump();
      });
    },
    retryAfterSeconds() {
      const queued = waiting.length + running + scheduled;
      return Math.max(1, Math.ceil((queued * averageMs) / concurrency / 1000));
    },
  };
}
