import { setMaxListeners } from "node:events";

/** The longest a timer waits: a longer delay makes it fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A signal with a deadline; `clear()` drops its timer and listeners once the work is done. */
export interface Deadline {
  signal: AbortSignal;
  clear(): void;
}

/**
 * A signal that aborts once `ms` have passed, or as soon as one of `signals` aborts.
 *
 * Not `AbortSignal.any([AbortSignal.timeout(ms), ...])`: on Node 20 the timeout signal inside
 * `any()` can be garbage-collected before it fires (nodejs/node#57736), and the deadline is then
 * silently lost: a `verify --timeout 25s` against an RPC that stopped answering ran 80 s to
 * 7 minutes. Here the timer is held until it fires or `clear()` is called. The timer does not
 * keep the process alive by itself. Many listeners on the signal (one per call in flight) are
 * the normal case.
 */
export function deadlineSignal(ms: number, ...signals: (AbortSignal | undefined)[]): Deadline {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  const sources = signals.filter((s): s is AbortSignal => s !== undefined);
  const onAbort = function (this: AbortSignal) {
    controller.abort(this.reason);
  };
  const timer = setTimeout(
    () => controller.abort(new DOMException("The operation timed out.", "TimeoutError")),
    Math.min(Math.max(0, ms), MAX_TIMER_MS),
  );
  timer.unref();
  const clear = () => {
    clearTimeout(timer);
    for (const s of sources) s.removeEventListener("abort", onAbort);
  };
  controller.signal.addEventListener("abort", clear, { once: true });
  for (const s of sources) {
    if (s.aborted) {
      controller.abort(s.reason);
      break;
    }
    s.addEventListener("abort", onAbort, { once: true });
  }
  return { signal: controller.signal, clear };
}

/**
 * The time left of `ms` counted from now on the monotonic clock (`performance.now()`): a wall
 * clock stepped forward (NTP, a VM resumed) would end a stop's drain at once and cut off the
 * answers it waits for; stepped back, it would wait hours.
 */
export function timeLeft(ms: number): () => number {
  const ends = performance.now() + ms;
  return () => Math.max(0, ends - performance.now());
}
