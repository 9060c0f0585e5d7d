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
   * A reader whose `signal` aborts while it waits (its client hung up) leaves the queue, its
   * work never run: the promise rejects with a `ReaderGone`.
   */
  run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> | null;
  /** Whole seconds the readers waiting now take, by how long readers took lately; at least 1. */
  retryAfterSeconds(): number;
  /** Readers running and waiting now, and those turned away since the gate was made. */
  stats(): ReadGateStats;
}

/** What `/metrics` says of a read gate. */
export interface ReadGateStats {
  running: number;
  waiting: number;
  /** Refused with the queue full (`busy`), or gone before their turn (`hung_up`). */
  turnedAway: { busy: number; hung_up: number };
}

/** A reader that left the queue before its turn: its client hung up. */
export class ReaderGone extends Error {
  constructor() {
    super("the reader's client hung up before its turn");
    this.name = "ReaderGone";
  }
}

/** The default of `READ_QUEUE`: readers waiting for their turn in one serving process. */
export const DEFAULT_READ_QUEUE = 64;

export function createReadGate(options: ReadGateOptions = {}): ReadGate {
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const maxWaiting = Math.max(0, options.maxWaiting ?? DEFAULT_READ_QUEUE);
  const waiting: (() => void)[] = [];
  const turnedAway = { busy: 0, hung_up: 0 };
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
    run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> | null {
      if (signal?.aborted) {
        turnedAway.hung_up++;
        return Promise.reject(new ReaderGone());
      }
      if (waiting.length >= maxWaiting && running + scheduled + waiting.length >= concurrency) {
        turnedAway.busy++;
        return null;
      }
      return new Promise<T>((resolve, reject) => {
        const leave = () => {
          const at = waiting.indexOf(start);
          // Begun (or handed its turn): it runs to its end, as a request does.
          if (at === -1) return;
          waiting.splice(at, 1);
          turnedAway.hung_up++;
          reject(new ReaderGone());
        };
        signal?.addEventListener("abort", leave, { once: true });
        const start = () => {
          signal?.removeEventListener("abort", leave);
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
        };
        waiting.push(start);
        pump();
      });
    },
    stats() {
      return {
        running: running + scheduled,
        waiting: waiting.length,
        turnedAway: { ...turnedAway },
      };
    },
    retryAfterSeconds() {
      const queued = waiting.length + running + scheduled;
      return Math.max(1, Math.ceil((queued * averageMs) / concurrency / 1000));
    },
  };
}
