/**
 * Requests first: the background work (the verifier's rounds) gives way to the requests of its
 * process. The requests' thread counts the requests it begins in shared memory; the background
 * work, on the same event loop or in a thread of its own, reads the count after each round. A
 * round during which requests arrived is followed by a pause as long as the round was, so while
 * requests keep coming the rounds take at most half the time they would, and none of the cores
 * they would have kept busy. With no request in a round, rounds follow each other at once.
 */

/** Requests begun, counted in shared memory. */
export interface RequestCounter {
  /** The memory of the count: hand it to a worker thread (`readRequestCount`). */
  readonly buffer: SharedArrayBuffer;
  /** Counts one request begun. */
  mark(): void;
}

export function createRequestCounter(): RequestCounter {
  const buffer = new SharedArrayBuffer(4);
  const count = new Int32Array(buffer);
  return {
    buffer,
    mark() {
      Atomics.add(count, 0, 1);
    },
  };
}

/** The operations endpoints a load balancer or Prometheus polls. */
const probePaths = new Set(["/healthz", "/readyz", "/metrics"]);

/**
 * Whether a request to `url` counts: probes and scrapes do not. A load balancer asking
 * `/healthz` every few seconds would land in most of a backlog's rounds and halve the verifier
 * for nothing.
 */
export function isTraffic(url: string | undefined): boolean {
  return !probePaths.has(url?.split("?", 1)[0] ?? "");
}

/** Reads the count of a `RequestCounter` from its buffer (in any thread). */
export function readRequestCount(buffer: SharedArrayBuffer): () => number {
  const count = new Int32Array(buffer);
  return () => Atomics.load(count, 0);
}

/** Decides how long the background work pauses after a round. */
export interface RoundPacer {
  /** A round begins: requests counted before it are not its concern. */
  roundStarts(): void;
  /**
   * The pause, in ms, after a round that took `roundMs`: as long as the round (at most
   * `maxPauseMs`) if requests began since it started, else 0.
   */
  pauseAfter(roundMs: number): number;
}

/** Rounds never pause longer than this: a backlog still moves at half speed or better. */
export const MAX_ROUND_PAUSE_MS = 2000;

export function createRoundPacer(
  requests: () => number,
  maxPauseMs = MAX_ROUND_PAUSE_MS,
): RoundPacer {
  let atStart = requests();
  return {
    roundStarts() {
      atStart = requests();
    },
    pauseAfter(roundMs) {
      const busy = requests() !== atStart;
      return busy ? Math.min(Math.max(0, roundMs), maxPauseMs) : 0;
    },
  };
}
