/**
 * The request rate of one RPC endpoint, adapted to what the provider allows: multiplicative
 * decrease when 429s make up a large share of the recent answers, additive increase back up to
 * the configured limit while they do not. A provider whose real limit is well below
 * `RPC_RATE_LIMIT` then sees a 429 now and then instead of on a quarter to two thirds of the
 * requests. A lone 429 among answered requests is not a signal: a provider that refuses a
 * fixed share of requests whatever our rate (8% at random) drove a rate halved on every 429
 * down to about 1 request/s, and a nightly could not finish a modest window in its timeout.
 * Each 429 still pauses the endpoint for its Retry-After (rpc-pool.ts). Pure and
 * clock-injected, so it is tested with a fake clock.
 */
export interface AdaptiveRateOptions {
  /** The configured ceiling, requests per second (`RPC_RATE_LIMIT`). */
  limit: number;
  /** The rate never drops below this, requests per second. Default: limit / 64, at least 0.1. */
  min?: number;
  /** Factor applied on a 429. Default 0.5. */
  decreaseFactor?: number;
  /** Requests per second regained per second without a 429. Default limit / 60. */
  increasePerSec?: number;
  /**
   * 429s within this long of a decrease do not decrease again: requests already in flight at
   * the old rate answer 429 together, and count as one signal. Default 1000 ms.
   */
  decreaseCooldownMs?: number;
  /** How many of the latest answers the 429 share is read over. Default 32. */
  window?: number;
  /** 429s among those answers that lower the rate. Default window / 4 (8 of 32). */
  threshold?: number;
}

export class AdaptiveRate {
  readonly limit: number;
  private readonly min: number;
  private readonly factor: number;
  private readonly step: number;
  private readonly cooldownMs: number;
  /** Rate at `since`; it grows by `step` per second from then on. */
  private base: number;
  private since = 0;
  private lastDecrease = Number.NEGATIVE_INFINITY;
  /** Earliest start of the next request while the rate is below the limit. */
  private nextAt = 0;
  private readonly window: number;
  private readonly threshold: number;
  /** The latest answers, true for a 429. */
  private answers: boolean[] = [];
  private limited = 0;

  constructor(options: AdaptiveRateOptions) {
    this.limit = options.limit;
    this.min = Math.min(options.limit, options.min ?? Math.max(0.1, options.limit / 64));
    this.factor = options.decreaseFactor ?? 0.5;
    this.step = options.increasePerSec ?? options.limit / 60;
    this.cooldownMs = options.decreaseCooldownMs ?? 1000;
    this.base = options.limit;
    this.window = options.window ?? 32;
    this.threshold = options.threshold ?? Math.max(1, Math.ceil(this.window / 4));
  }

  /** The allowed rate at `now`, requests per second. */
  current(now: number): number {
    const grown = this.base + (Math.max(0, now - this.since) / 1000) * this.step;
    return Math.min(this.limit, grown);
  }

  /** An answer other than a 429 came back. */
  onAnswered(): void {
    this.push(false);
  }

  /** A 429 came back: lower the rate when 429s are a large share of the latest answers. */
  onRateLimited(now: number): void {
    this.push(true);
    if (this.limited < this.threshold) return;
    if (now - this.lastDecrease < this.cooldownMs) return;
    this.lastDecrease = now;
    this.base = Math.max(this.min, this.current(now) * this.factor);
    this.since = now;
  }

  private push(rateLimited: boolean): void {
    this.answers.push(rateLimited);
    if (rateLimited) this.limited++;
    if (this.answers.length > this.window && this.answers.shift()) this.limited--;
  }

  /**
   * Books the start of one request and returns how long it must wait, in ms. At the full
   * limit this is 0 (the endpoint's queue enforces the configured rate); below it, requests
   * are spaced 1/rate apart.
   */
  reserve(now: number): number {
    const rate = this.current(now);
    if (rate >= this.limit) {
      this.nextAt = now;
      return 0;
    }
    const start = Math.max(now, this.nextAt);
    this.nextAt = start + 1000 / rate;
    return start - now;
  }
}
