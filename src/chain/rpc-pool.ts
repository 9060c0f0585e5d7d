import { setMaxListeners } from "node:events";
import PQueue from "p-queue";
import type { Config } from "../config.js";
import { deadlineSignal, MAX_TIMER_MS } from "../deadline.js";
import { AppError, isAppError } from "../errors.js";
import type { Logger } from "../log.js";
import { backoff, createSleeper } from "../retry.js";
import { AdaptiveRate } from "./adaptive-rate.js";
import { implausibleBlockTime } from "./block-time.js";
import { parseTransaction } from "./parse-transaction.js";
import {
  createNodeHttpPost,
  type FetchLike,
  fetchPost,
  type HttpPost,
  type RpcOutcome,
  type RpcRequest,
  sendBatch,
  sendSingle,
} from "./rpc-transport.js";
import { signedByPayer } from "./signed-message.js";
import { StartWindow } from "./start-window.js";
import type { TransactionFacts } from "./transaction-facts.js";
import { endpointNames } from "./url-secrets.js";

/**
 * A pool of Solana JSON-RPC endpoints. It speaks JSON-RPC over HTTP itself rather than
 * through web3.js `Connection`, because the verifier needs what `Connection` hides: HTTP status
 * codes, `Retry-After`, the raw reply text kept as evidence, and lamports above 2^53 exactly.
 */

export interface RpcEndpointConfig {
  url: string;
  /** Requests started per second, over any rolling one-second window (retries included). */
  rateLimitPerSec: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Timeout of one HTTP request, reply body included. */
  timeoutMs: number;
}

/** Signatures `findAnywhere` looks up by transaction at once. */
const FIND_CONCURRENCY = 8;

/** What `findAnywhere` learnt: the signatures some endpoint shows, and who could not answer. */
export interface FoundAnywhere {
  found: Map<string, SignatureStatusInfo>;
  unanswered: string[];
  /**
   * The lowest finalized slot of the endpoints that answered (null: none did). A drop counts
   * slots since a first miss whose slot one endpoint gave; only once every endpoint is past it
   * by the drop window has that one surely moved so far too.
   */
  lowestSlot: number | null;
  /** Each endpoint's finalized slot, by name, of those that could tell it. */
  slots: Map<string, number>;
  /**
   * Signatures of `found` that only some of the endpoints answering show, none of them with a
   * transaction its fee payer signed: by the endpoints showing each. Such a "found" is an
   * endpoint's word alone (a lie costs nothing), not a transaction.
   */
  unbacked: Map<string, string[]>;
}

/** Each endpoint's finalized slot, and the endpoints that could not tell theirs. */
export interface EndpointSlots {
  slots: Map<string, number>;
  unanswered: string[];
}

export interface RpcPoolOptions {
  /** Tried in order: the first healthy endpoint takes the work, the next ones take failover. */
  endpoints: RpcEndpointConfig[];
  /** Send concurrent calls to one endpoint as JSON-RPC batch arrays. Default false. */
  batch?: boolean;
  /** Most calls in one batch array. Default 50. */
  maxBatchSize?: number;
  /** Signatures per getSignatureStatuses call, 1..256. Default 256. */
  statusBatchSize?: number;
  /** Attempts per call on errors, timeouts and 5xx (429s are counted apart). Default 5. */
  maxAttempts?: number;
  /** Rate-limited replies (429) tolerated per call before giving up. Default 20. */
  maxRateLimitedRetries?: number;
  /**
   * Longest a call waits, in all, for endpoints paused by a 429 when no other endpoint can take
   * it, in ms; a pause that would take it past this fails the call at once (`rpc_unavailable`),
   * and the pause still holds the endpoint's other requests. Default 15000. An endpoint asking
   * `Retry-After: 60` of every request held a call asked of it alone (a look on every endpoint
   * before a drop) for 20 pauses of a minute, and the verifier's round, every job, with it.
   */
  maxRateLimitWaitMs?: number;
  /** First backoff delay after a failed attempt; doubles each time, with full jitter. Default 250. */
  backoffBaseMs?: number;
  /** Ceiling of one backoff delay. Default 8000. */
  backoffMaxMs?: number;
  /** Consecutive failures that set an endpoint aside. Default 5. */
  breakerThreshold?: number;
  /** How long an endpoint is set aside before it is tried again. Default 30000. */
  breakerCooldownMs?: number;
  /**
   * Pause after a 429 without a usable Retry-After, or one asking for none (0, a date past).
   * Default 1000.
   */
  defaultRetryAfterMs?: number;
  /** Ceiling on a Retry-After pause. Default 60000. */
  maxRetryAfterMs?: number;
  /**
   * Added to each rate window so that requests spaced exactly one window apart by us are not
   * seen closer together by the server after network and event-loop jitter. Default 100
   * (at 8 requests/s this costs about 9% of the throughput, and buys zero self-caused 429s).
   */
  rateWindowMarginMs?: number;
  log?: Logger;
  /**
   * Injectable for tests (the Fetch API's shape, to play an endpoint). Defaults: node:http with
   * keep-alive sockets, Date.now, Math.random.
   */
  fetch?: FetchLike;
  now?: () => number;
  random?: () => number;
}

export interface SignatureStatusInfo {
  signature: string;
  slot: number;
  confirmationStatus: "processed" | "confirmed" | "finalized" | null;
  err: unknown;
}

/** One entry of `getSignaturesForAddress`, newest first. */
export interface AddressSignatureInfo {
  signature: string;
  slot: number;
  err: unknown;
  /** Memo texts as the node joined them (`[len] text; ...`), or null. */
  memo: string | null;
  /**
   * Set by a quorum's union when its endpoints gave the entry different memos (one none, say):
   * `memo` holds every text any gave, and what one left out is unknown.
   */
  memoDisputed?: true;
  /**
   * Seconds since the epoch as the node gave it (the ledger reader refuses one the chain cannot
   * have, `implausibleBlockTime`); null when the node did not report it.
   */
  blockTime: number | null;
}

export interface FetchedTransaction {
  facts: TransactionFacts;
  /** The `result` JSON text exactly as received: the evidence to store. */
  raw: string;
}

export type RpcOutcomeName =
  | "ok"
  | "not_found"
  | "rate_limited"
  | "http_error"
  | "rpc_error"
  | "timeout";

/** How one call of the pool is made (see `call` in createRpcPool). */
interface CallOptions {
  skip?: ReadonlySet<Endpoint>;
  signal?: AbortSignal;
}

export interface RpcPool {
  /** Splits into calls of statusBatchSize with searchTransactionHistory: true; null = not found. */
  getSignatureStatuses(
    signatures: string[],
    options?: { signal?: AbortSignal },
  ): Promise<(SignatureStatusInfo | null)[]>;
  /**
   * getTransaction (default finalized), maxSupportedTransactionVersion 0, encoding json; null =
   * not found. `signal` stops it: the caller gets an error at once, without waiting for a reply
   * or a backoff (the request itself ends on its own timeout).
   */
  getTransaction(
    signature: string,
    commitment?: "confirmed" | "finalized",
    options?: { signal?: AbortSignal },
  ): Promise<FetchedTransaction | null>;
  getSlot(
    commitment?: "confirmed" | "finalized",
    options?: { signal?: AbortSignal },
  ): Promise<number>;
  /**
   * Looks for signatures on every endpoint, each asked on its own: getSignatureStatuses with
   * history, then getTransaction at confirmed for those still unseen. Returns the signatures
   * some endpoint shows, and the endpoints that could not answer (each asked once per call: a
   * dead one costs one failed call, not one per signature). Asked before a signature is counted
   * dropped for good.
   */
  findAnywhere?(signatures: string[], signal?: AbortSignal): Promise<FoundAnywhere>;
  /**
   * Every endpoint's finalized slot, each asked on its own: what a drop counts its window from
   * on each endpoint (one endpoint's slot, a lie far too low, hastened it).
   */
  finalizedSlots?(signal?: AbortSignal): Promise<EndpointSlots>;
  /**
   * getSignaturesForAddress at finalized: up to `limit` (1..1000, default 1000) signatures
   * naming the address, newest first, older than `before` and newer than `until`.
   */
  getSignaturesForAddress(
    address: string,
    options?: { before?: string; until?: string; limit?: number; signal?: AbortSignal },
  ): Promise<AddressSignatureInfo[]>;
  /**
   * getAccountInfo (jsonParsed) at finalized: which mint a token account holds and how much.
   * (getTokenAccountBalance names no mint, so an account closed and opened again in another
   * mint at the same address would pass its balance off as credits.)
   */
  getTokenAccount(address: string, options?: { signal?: AbortSignal }): Promise<TokenAccountRead>;
  getBlockHeight(
    commitment?: "confirmed" | "finalized",
    options?: { signal?: AbortSignal },
  ): Promise<number>;
  /** getBlockTime: the slot's block time, whole seconds since the epoch. */
  getBlockTime(slot: number, options?: { signal?: AbortSignal }): Promise<number>;
  /**
   * Requests per second the pool allows now: the rate of the endpoint the next call goes to,
   * lowered after 429s (adaptive-rate.ts). A verifier sizes its rounds by it.
   */
  requestRate(): number;
  /** Counts of attempts per endpoint, method and outcome. */
  stats(): { endpoint: string; method: string; outcome: RpcOutcomeName; count: number }[];
  /** Stops timers and aborts requests in flight; pending calls reject with rpc_unavailable. */
  close(): Promise<void>;
}

/**
 * JSON-RPC errors that another attempt cannot fix: our request itself is wrong, or the node
 * cannot answer it (the ones in `nodeRpcErrors`).
 */
const permanentRpcErrors = new Set([-32700, -32600, -32601, -32602, -32015, -32007, -32009]);

/**
 * Permanent errors of one node, not of the request: no such method there (-32601), or no block
 * for the slot there (-32007 skipped or lost to a snapshot jump, -32009 not in its long-term
 * storage). Another endpoint is asked before the call gives up; the same one is not asked again.
 */
const nodeRpcErrors = new Set([-32601, -32007, -32009]);

interface Pending {
  request: RpcRequest;
  resolve: (outcome: RpcOutcome) => void;
}

/**
 * The clock the rate lowered by 429s is kept on: monotonic, as the configured rate's window
 * (start-window.ts). On the wall clock a host clock set back after 429s held every request of
 * the endpoint for as long as the step.
 */
const paceNow = () => performance.now();

class Endpoint {
  readonly queue: PQueue;
  /** The configured rate: at most so many starts a window (see start-window.ts). */
  private readonly window: StartWindow;
  /** Lowered on 429s, climbs back to the configured rate (see adaptive-rate.ts). */
  readonly rate: AdaptiveRate;
  failures = 0;
  openUntil = 0;
  /** When "set aside" was last logged (`pool.now()`): once per cooldown through an outage. */
  asideLoggedAt = 0;
  pausedUntil = 0;
  /** When the pause ends on the monotonic clock (`paceNow`): a host clock set back moves it not. */
  pauseEndsAt = 0;
  batchRefused = false;
  private resumeTimer: NodeJS.Timeout | undefined;
  private pending: Pending[] = [];
  private flushScheduled = false;

  constructor(
    readonly config: RpcEndpointConfig,
    readonly position: number,
    private readonly pool: PoolInternals,
    /** The URL without its secrets: what counters, logs and errors show. */
    readonly name: string,
  ) {
    this.rate = new AdaptiveRate({ limit: config.rateLimitPerSec });
    const cap = Math.max(1, Math.floor(config.rateLimitPerSec));
    this.window = new StartWindow(
      cap,
      Math.ceil((1000 * cap) / config.rateLimitPerSec) + pool.rateWindowMarginMs,
    );
    this.queue = new PQueue({ concurrency: config.concurrency });
  }

  /** Holds every new request back until `ms` from now (requests in flight finish). */
  pauseFor(ms: number): void {
    const until = this.pool.now() + ms;
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    this.pauseEndsAt = paceNow() + ms;
    this.queue.pause();
    clearTimeout(this.resumeTimer);
    this.resumeTimer = setTimeout(() => this.queue.start(), ms);
  }

  recordSuccess(): void {
    this.failures = 0;
    this.openUntil = 0;
  }

  /**
   * Counts a failure; past the threshold the endpoint is set aside for the cooldown. An endpoint
   * is still asked while set aside when no other is usable (the only one, or all set aside);
   * its failures then extend the cooldown but are not logged again: one unreachable endpoint
   * said "set aside" about twice a second though each line said a 30 s cooldown.
   */
  recordFailure(): void {
    this.failures++;
    if (this.failures >= this.pool.breakerThreshold) {
      const now = this.pool.now();
      const wasAside = this.openUntil > now;
      this.openUntil = now + this.pool.breakerCooldownMs;
      // Each failure while aside pushes the cooldown on: without the time of the last line, an
      // endpoint asked through a whole outage was said set aside once, at its start.
      if (wasAside && now - this.asideLoggedAt < this.pool.breakerCooldownMs) return;
      this.asideLoggedAt = now;
      this.pool.log?.warn(
        {
          endpoint: this.name,
          failures: this.failures,
          cooldownMs: this.pool.breakerCooldownMs,
        },
        "rpc endpoint set aside",
      );
    }
  }

  /**
   * `signal`: the caller stopped waiting (a quorum question settled without this endpoint). A
   * request still queued then is never sent: a slow endpoint's queue used to fill with the
   * requests of questions the others had settled, each sent later and held for the endpoint's
   * whole answer time, and the questions that did need it waited behind all of them (dep65).
   */
  send(request: RpcRequest, signal?: AbortSignal): Promise<RpcOutcome> {
    if (!this.pool.batch || this.batchRefused) return this.sendOne(request, signal);
    return new Promise((resolve) => {
      this.pending.push({ request, resolve });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // Calls made in the same turn of the event loop travel together.
        setImmediate(() => this.flush());
      }
    });
  }

  private sendOne(request: RpcRequest, signal?: AbortSignal): Promise<RpcOutcome> {
    // A queued request must not wait out a pause or a rate window once the pool is closed.
    return untilClosed(
      this.pool.signal,
      this.queue.add(async () => {
        // Its caller is gone (see `send`): nobody reads the outcome, and the endpoint is not
        // asked, so it counts for nothing.
        if (signal?.aborted) return this.pool.closedOutcome;
        await this.pace();
        if (signal?.aborted) return this.pool.closedOutcome;
        // A request in flight is cut when its caller goes too: it held one of the endpoint's
        // `RPC_CONCURRENCY` places for the endpoint's whole answer time. Cut so, it says
        // nothing of the endpoint (not observed). Not `AbortSignal.any`, which on Node 20 keeps
        // every signal it made for as long as the pool's lives.
        const either = signal ? deadlineSignal(MAX_TIMER_MS, this.pool.signal, signal) : null;
        let outcome: RpcOutcome;
        try {
          outcome = await sendSingle(
            this.pool.post,
            this.config.url,
            request,
            this.config.timeoutMs,
            either?.signal ?? this.pool.signal,
          );
        } finally {
          either?.clear();
        }
        if (signal?.aborted && !this.pool.signal.aborted) return this.pool.closedOutcome;
        return this.observe(outcome);
      }),
      () => this.pool.closedOutcome,
    );
  }

  /**
   * Waits for this request's turn: spaced while the adapted rate is below the configured one,
   * then within the configured rate's window.
   */
  private async pace(): Promise<void> {
    await this.wait(this.rate.reserve(paceNow()));
    await this.wait(this.window.reserve());
  }

  private async wait(ms: number): Promise<void> {
    if (ms <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    await untilClosed(
      this.pool.signal,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
      () => undefined,
    );
    clearTimeout(timer);
  }

  /**
   * Runs inside the queued task, so a 429 pauses the queue before p-queue starts the next
   * request waiting behind this one.
   */
  private observe(outcome: RpcOutcome): RpcOutcome {
    if (outcome.kind === "rate_limited") {
      // A 429 that asks for no pause at all ("Retry-After: 0", a date already past) is asked
      // again at once, as often as it answers so: it pauses the default time, as one without.
      const asked = outcome.retryAfterMs;
      const pause = Math.min(
        asked !== null && asked > 0 ? asked : this.pool.defaultRetryAfterMs,
        this.pool.maxRetryAfterMs,
      );
      this.pauseFor(pause);
      this.rate.onRateLimited(paceNow());
      this.pool.log?.warn(
        { endpoint: this.name, pauseMs: pause, ratePerSec: this.rate.current(paceNow()) },
        "rpc rate limited",
      );
    } else {
      this.rate.onAnswered();
    }
    return outcome;
  }

  private flush(): void {
    this.flushScheduled = false;
    const all = this.pending;
    this.pending = [];
    for (let i = 0; i < all.length; i += this.pool.maxBatchSize) {
      const chunk = all.slice(i, i + this.pool.maxBatchSize);
      void this.sendChunk(chunk);
    }
  }

  private async sendChunk(chunk: Pending[]): Promise<void> {
    if (chunk.length === 1 || this.batchRefused) {
      await Promise.all(chunk.map(async (p) => p.resolve(await this.sendOne(p.request))));
      return;
    }
    const outcomes = await untilClosed(
      this.pool.signal,
      this.queue.add(async () => {
        await this.pace();
        const outcomes = await sendBatch(
          this.pool.post,
          this.config.url,
          chunk.map((p) => p.request),
          this.config.timeoutMs,
          this.pool.signal,
        );
        if (outcomes !== "refused" && outcomes[0]) this.observe(outcomes[0]);
        return outcomes;
      }),
      () => chunk.map(() => this.pool.closedOutcome),
    );
    if (outcomes === "refused") {
      if (!this.batchRefused) {
        this.pool.log?.warn({ endpoint: this.name }, "rpc endpoint refuses batch requests");
      }
      this.batchRefused = true;
      await Promise.all(chunk.map(async (p) => p.resolve(await this.sendOne(p.request))));
      return;
    }
    chunk.forEach((p, i) => {
      p.resolve(outcomes[i]!);
    });
  }

  close(): void {
    clearTimeout(this.resumeTimer);
    this.queue.clear();
    for (const p of this.pending)
      p.resolve({ kind: "http_error", status: null, message: "closed" });
    this.pending = [];
  }
}

interface PoolInternals {
  batch: boolean;
  maxBatchSize: number;
  breakerThreshold: number;
  breakerCooldownMs: number;
  rateWindowMarginMs: number;
  defaultRetryAfterMs: number;
  maxRetryAfterMs: number;
  post: HttpPost;
  now: () => number;
  signal: AbortSignal;
  /** Settles (never rejects) when the pool closes. */
  /** What a request still queued or paced gets once the pool is closed. */
  closedOutcome: RpcOutcome;
  log: Logger | undefined;
}

function outcomeName(method: string, outcome: RpcOutcome): RpcOutcomeName {
  if (outcome.kind === "ok") {
    return method === "getTransaction" && outcome.result === null ? "not_found" : "ok";
  }
  return outcome.kind;
}

function describe(outcome: RpcOutcome): string {
  switch (outcome.kind) {
    case "ok":
      return "ok";
    case "rpc_error":
      return `RPC error ${outcome.code}: ${outcome.message}`;
    case "rate_limited":
      return "rate limited (429)";
    case "http_error":
      return outcome.message;
    case "timeout":
      return "timed out";
  }
}

function integer(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new AppError("rpc_unavailable", `${what} returned a non-integer result`);
  }
  return value;
}

const transactionParams = (commitment: "confirmed" | "finalized") => ({
  encoding: "json",
  commitment,
  maxSupportedTransactionVersion: 0,
});

/** The statuses of one getSignatureStatuses reply, in the order of `chunk`. */
function statusesOf(result: unknown, chunk: readonly string[]): (SignatureStatusInfo | null)[] {
  const value = (result as { value?: unknown } | null)?.value;
  if (!Array.isArray(value) || value.length !== chunk.length) {
    throw new AppError(
      "rpc_unavailable",
      `getSignatureStatuses returned ${Array.isArray(value) ? value.length : "no"} statuses for ${chunk.length} signatures`,
    );
  }
  return value.map((item, i): SignatureStatusInfo | null => {
    if (item === null) return null;
    const s = item as Record<string, unknown>;
    const status = s.confirmationStatus;
    return {
      signature: chunk[i]!,
      slot: integer(s.slot, "getSignatureStatuses"),
      confirmationStatus:
        status === "processed" || status === "confirmed" || status === "finalized" ? status : null,
      err: s.err ?? null,
    };
  });
}

/** Creates a pool over the given endpoints; call `close()` when done. */
/**
 * `work`, or `onClosed()` as soon as `signal` (the pool's close) fires, whichever comes first.
 * Not `Promise.race` with a promise of the close: each race left a reaction on that promise,
 * pending for the pool's life, holding the race's answer (the whole reply text, whose slice
 * is `raw`): the verifier's thread grew by every RPC answer it ever had, 20 MB a minute.
 */
function untilClosed<T>(signal: AbortSignal, work: Promise<T>, onClosed: () => T): Promise<T> {
  if (signal.aborted) return Promise.resolve(onClosed());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => resolve(onClosed());
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

export function createRpcPool(options: RpcPoolOptions): RpcPool {
  if (options.endpoints.length === 0)
    throw new RangeError("an RPC pool needs at least one endpoint");
  const statusBatchSize = options.statusBatchSize ?? 256;
  if (!Number.isInteger(statusBatchSize) || statusBatchSize < 1 || statusBatchSize > 256) {
    throw new RangeError("statusBatchSize must be an integer in 1..256");
  }
  const maxAttempts = options.maxAttempts ?? 5;
  const maxRateLimited = options.maxRateLimitedRetries ?? 20;
  const maxRateLimitWait = options.maxRateLimitWaitMs ?? 15_000;
  const backoffBase = options.backoffBaseMs ?? 250;
  const backoffMax = options.backoffMaxMs ?? 8000;
  const random = options.random ?? Math.random;
  const abort = new AbortController();
  // Every request in flight listens on this one signal (and removes its listener when done):
  // many at once is the normal case, not a leak.
  setMaxListeners(0, abort.signal);
  const transport = options.fetch
    ? { post: fetchPost(options.fetch), close: () => {} }
    : createNodeHttpPost();
  const closedOutcome: RpcOutcome = { kind: "http_error", status: null, message: "pool closed" };
  const internals: PoolInternals = {
    batch: options.batch ?? false,
    maxBatchSize: options.maxBatchSize ?? 50,
    breakerThreshold: options.breakerThreshold ?? 5,
    breakerCooldownMs: options.breakerCooldownMs ?? 30_000,
    rateWindowMarginMs: options.rateWindowMarginMs ?? 100,
    defaultRetryAfterMs: options.defaultRetryAfterMs ?? 1000,
    maxRetryAfterMs: options.maxRetryAfterMs ?? 60_000,
    post: transport.post,
    now: options.now ?? Date.now,
    signal: abort.signal,
    closedOutcome,
    log: options.log,
  };
  const names = endpointNames(options.endpoints.map((e) => e.url));
  const endpoints = options.endpoints.map(
    (config, i) => new Endpoint(config, i, internals, names[i] ?? String(i)),
  );
  const counters = new Map<
    string,
    { endpoint: string; method: string; outcome: RpcOutcomeName; count: number }
  >();
  /** Backoff waits, all cut short by `close()`. */
  const sleeper = createSleeper();
  let nextId = 1;
  let closed = false;

  const count = (endpoint: string, method: string, outcome: RpcOutcomeName) => {
    const key = `${endpoint}\u0000${method}\u0000${outcome}`;
    const entry = counters.get(key) ?? { endpoint, method, outcome, count: 0 };
    entry.count++;
    counters.set(key, entry);
  };

  /**
   * The endpoint for the next attempt: the first one, in configured order starting after the
   * one that just failed, that is neither set aside nor paused by a 429; when none is, the one
   * that becomes usable soonest (a 429 pause holds the request in its queue until then; a
   * set-aside endpoint is asked at once, with the call's backoff between attempts).
   */
  const pick = (after: Endpoint | undefined, skip?: ReadonlySet<Endpoint>): Endpoint => {
    const now = internals.now();
    const start = after ? after.position + 1 : 0;
    const all = endpoints.map((_, i) => endpoints[(start + i) % endpoints.length]!);
    const left = skip ? all.filter((e) => !skip.has(e)) : all;
    const rotation = left.length > 0 ? left : all;
    const usable = rotation.find((e) => e.openUntil <= now && e.pausedUntil <= now);
    if (usable) return usable;
    return rotation.reduce((best, e) =>
      Math.max(e.openUntil, e.pausedUntil) < Math.max(best.openUntil, best.pausedUntil) ? e : best,
    );
  };

  /**
   * One call, failing over between endpoints. `skip`: endpoints not to ask while others exist;
   * `signal`: the caller stops waiting (for a reply or a backoff).
   */
  const call = async (
    method: string,
    params: unknown[],
    options: CallOptions = {},
  ): Promise<{ result: unknown; raw: string; endpoint: Endpoint }> => {
    const { skip, signal } = options;
    let failed: Endpoint | undefined;
    let attempts = 0;
    let rateLimited = 0;
    /** What this call has waited, or is to wait, on endpoints paused by 429s (ms). */
    let pausedFor = 0;
    const tried = new Set<Endpoint>();
    /** Endpoints that cannot answer this call at all (`nodeRpcErrors`). */
    const unable = new Set<Endpoint>();
    // The caller's signal cuts short the wait for a reply (the request ends on its own timeout).
    // Every call in flight listens on it (here and in `sendOne`, removed when done): a ledger
    // round or an escrow scan sharing one signal over six calls or more (three endpoints at
    // `RPC_CONCURRENCY` 4) passed Node's default of 10 listeners, and `serve` printed a
    // MaxListenersExceededWarning ("possible memory leak") on stderr for each such signal.
    if (signal) setMaxListeners(0, signal);
    let onAbort: (() => void) | undefined;
    const stopped = signal
      ? new Promise<null>((resolve) => {
          onAbort = () => resolve(null);
          if (signal.aborted) onAbort();
          else signal.addEventListener("abort", onAbort, { once: true });
        })
      : null;
    const checkOpen = () => {
      if (closed) throw new AppError("rpc_unavailable", `${method}: the RPC pool is closed`);
      if (signal?.aborted)
        throw new AppError("rpc_unavailable", `${method}: stopped by its caller`);
    };
    try {
      return await attempt();
    } finally {
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }

    async function attempt(): Promise<{ result: unknown; raw: string; endpoint: Endpoint }> {
      for (;;) {
        checkOpen();
        const avoid = unable.size > 0 ? new Set([...(skip ?? []), ...unable]) : skip;
        const endpoint = pick(failed, avoid);
        // Every endpoint this call may ask is paused by a 429 (`pick` takes an unpaused one
        // when there is one): its wait counts against the call's, and one that would go past
        // it fails now, so the caller goes on with what the other endpoints say.
        const pause = endpoint.queue.isPaused ? endpoint.pauseEndsAt - paceNow() : 0;
        if (pause > 0) {
          if (pausedFor + pause > maxRateLimitWait) {
            throw new AppError(
              "rpc_unavailable",
              `${method}: ${endpoint.name} is rate limited for ${Math.ceil(pause / 1000)} s more, past the ${Math.ceil(maxRateLimitWait / 1000)} s a call waits`,
              { endpoint: endpoint.name },
            );
          }
          pausedFor += pause;
        }
        tried.add(endpoint);
        const sent = endpoint.send({ id: nextId++, method, params }, signal);
        const outcome = stopped ? await Promise.race([sent, stopped]) : await sent;
        checkOpen();
        // Null only once the signal fired, which checkOpen has just thrown for.
        if (outcome === null) continue;
        count(endpoint.name, method, outcomeName(method, outcome));
        if (outcome.kind === "ok") {
          endpoint.recordSuccess();
          return { result: outcome.result, raw: outcome.raw, endpoint };
        }
        if (outcome.kind === "rpc_error" && permanentRpcErrors.has(outcome.code)) {
          endpoint.recordSuccess();
          if (nodeRpcErrors.has(outcome.code)) {
            unable.add(endpoint);
            failed = endpoint;
            if (endpoints.some((e) => !unable.has(e) && !skip?.has(e))) continue;
          }
          throw new AppError("rpc_unavailable", `${method}: ${describe(outcome)}`, {
            endpoint: endpoint.name,
            rpcCode: outcome.code,
          });
        }
        failed = endpoint;
        if (outcome.kind === "rate_limited") {
          // The endpoint paused itself; the next attempt goes to another one or waits out the pause.
          rateLimited++;
          if (rateLimited > maxRateLimited) {
            throw new AppError("rpc_unavailable", `${method}: rate limited ${rateLimited} times`, {
              endpoint: endpoint.name,
            });
          }
          continue;
        }
        endpoint.recordFailure();
        attempts++;
        if (attempts >= maxAttempts) {
          throw new AppError(
            "rpc_unavailable",
            `${method} failed after ${attempts} attempts (last on ${endpoint.name}): ${describe(outcome)}`,
            { endpoint: endpoint.name },
          );
        }
        // Failing over to an endpoint this call has not tried yet needs no wait; coming back
        // to one that already failed does, with exponential backoff and full jitter.
        if (tried.has(pick(failed, skip))) {
          await sleeper.sleep(
            backoff(attempts - 1, {
              baseMs: backoffBase,
              maxMs: backoffMax,
              jitter: [0, 1],
              random,
            }),
            signal,
          );
        }
      }
    }
  };

  /** Excludes every endpoint but `endpoint` from a call. */
  const only = (endpoint: Endpoint) => new Set(endpoints.filter((e) => e !== endpoint));

  /**
   * A block time an endpoint gave, refused (`rpc_unavailable`, naming `what`) when the chain
   * cannot have it: one no date holds stopped every round and report that showed it, and one in
   * the future moved a ledger's read-through time past what the node listed.
   */
  const checkedBlockTime = (seconds: number, what: string): number => {
    const wrong = implausibleBlockTime(seconds, internals.now());
    if (wrong !== null) throw new AppError("rpc_unavailable", `${what}: ${wrong}`);
    return seconds;
  };

  /**
   * A getTransaction answer's facts; one whose block time the chain cannot have is malformed,
   * as an answer that does not parse is: the node's trouble, never facts to judge a job by.
   */
  const servedFacts = (result: unknown, signature: string): TransactionFacts => {
    const facts = parseTransaction(result, signature);
    const wrong =
      facts.blockTime === null ? null : implausibleBlockTime(facts.blockTime, internals.now());
    if (wrong !== null) {
      throw new AppError("malformed_transaction", `malformed transaction: ${wrong}`, {
        field: "blockTime",
      });
    }
    return facts;
  };

  /**
   * The first endpoint but `skip` that serves a readable transaction `signature`, each asked
   * once on its own, with its answer; one that cannot answer (added to `silent`, and not asked
   * while in it), or answers another transaction, is passed over.
   */
  async function servingEndpoint(
    signature: string,
    params: unknown[],
    skip: Endpoint | null,
    silent: Set<Endpoint>,
    signal: AbortSignal | undefined,
  ): Promise<{ endpoint: Endpoint; result: unknown } | null> {
    for (const endpoint of endpoints) {
      if (endpoint === skip || silent.has(endpoint)) continue;
      // With its retries: an endpoint that failed once is not taken to have nothing (a flaky
      // archival node asked once made honest jobs unverifiable). The caller's signal cuts the
      // wait short (one that hangs held a stopping round five timeouts per signature).
      const reply = await call("getTransaction", params, {
        skip: only(endpoint),
        ...(signal ? { signal } : {}),
      }).catch(() => {
        silent.add(endpoint);
        return null;
      });
      if (reply === null || reply.result === null) continue;
      try {
        servedFacts(reply.result, signature);
        return { endpoint, result: reply.result };
      } catch (error) {
        if (!isAppError(error) || error.code !== "malformed_transaction") throw error;
      }
    }
    return null;
  }

  /**
   * Each endpoint's finalized slot, each asked on its own; one that cannot tell it is added to
   * `silent` (and one in it is not asked).
   */
  async function slotsOf(
    silent: Set<Endpoint>,
    signal: AbortSignal | undefined,
  ): Promise<Map<string, number>> {
    const slots = new Map<string, number>();
    for (const endpoint of endpoints) {
      if (silent.has(endpoint) || signal?.aborted) continue;
      const reply = await call("getSlot", [{ commitment: "finalized" }], {
        skip: only(endpoint),
        ...(signal ? { signal } : {}),
      }).catch(() => null);
      const slot = reply === null ? null : reply.result;
      if (typeof slot !== "number" || !Number.isSafeInteger(slot)) {
        silent.add(endpoint);
        continue;
      }
      slots.set(endpoint.name, slot);
    }
    return slots;
  }

  return {
    async getSignatureStatuses(signatures, options = {}) {
      const { signal } = options;
      const chunks: string[][] = [];
      for (let i = 0; i < signatures.length; i += statusBatchSize) {
        chunks.push(signatures.slice(i, i + statusBatchSize));
      }
      const replies = await Promise.all(
        chunks.map(async (chunk) => {
          const { result } = await call(
            "getSignatureStatuses",
            [chunk, { searchTransactionHistory: true }],
            signal ? { signal } : {},
          );
          return statusesOf(result, chunk);
        }),
      );
      return replies.flat();
    },

    async getTransaction(signature, commitment = "finalized", options = {}) {
      const { signal } = options;
      // The endpoint asked is believed when it serves the transaction. Its "not found", or an
      // answer that does not parse (another signature's transaction), is checked against the
      // others: if one of them serves it, the endpoints disagree, which is trouble, retried.
      // The other's transaction is never taken over the first's "not found": a node serving a
      // history no other has would be believed exactly when that history is forged.
      const params = [signature, transactionParams(commitment)];
      const first = await call("getTransaction", params, signal ? { signal } : {});
      let malformed: AppError | null = null;
      if (first.result !== null) {
        try {
          return { facts: servedFacts(first.result, signature), raw: first.raw };
        } catch (error) {
          if (!isAppError(error) || error.code !== "malformed_transaction") throw error;
          malformed = new AppError(
            "malformed_transaction",
            `${first.endpoint.name} answered getTransaction ${signature} with ${error.message}`,
            error.details,
          );
        }
      }
      const servedBy = await servingEndpoint(signature, params, first.endpoint, new Set(), signal);
      if (servedBy !== null) {
        const said = malformed === null ? "has no transaction" : "serves an unreadable answer";
        throw new AppError(
          "rpc_disagreement",
          `${first.endpoint.name} ${said} for ${signature}, ${servedBy.endpoint.name} serves it: looked at again`,
        );
      }
      if (malformed !== null) throw malformed;
      return null;
    },

    async findAnywhere(signatures, signal) {
      const wanted = [...new Set(signatures)];
      const found = new Map<string, SignatureStatusInfo>();
      /** The endpoints showing each signature (a status, or its transaction). */
      const shown = new Map<string, Set<Endpoint>>();
      /** Signatures some endpoint serves a transaction for that its fee payer signed. */
      const signed = new Set<string>();
      const silent = new Set<Endpoint>();
      const show = (status: SignatureStatusInfo, endpoint: Endpoint) => {
        if (!found.has(status.signature)) found.set(status.signature, status);
        const by = shown.get(status.signature) ?? new Set<Endpoint>();
        by.add(endpoint);
        shown.set(status.signature, by);
      };
      // Every endpoint is asked about every signature: who shows one matters, not only that
      // one does (an endpoint alone showing a status for what no other knows may be lying).
      for (const endpoint of endpoints) {
        for (let i = 0; i < wanted.length && !silent.has(endpoint); i += statusBatchSize) {
          const chunk = wanted.slice(i, i + statusBatchSize);
          const params = [chunk, { searchTransactionHistory: true }];
          const reply = await call("getSignatureStatuses", params, {
            skip: only(endpoint),
            ...(signal ? { signal } : {}),
          }).catch(() => null);
          let statuses: ReturnType<typeof statusesOf> | null = null;
          try {
            statuses = reply === null ? null : statusesOf(reply.result, chunk);
          } catch {
            statuses = null;
          }
          if (statuses === null) {
            silent.add(endpoint);
            break;
          }
          for (const status of statuses) if (status) show(status, endpoint);
        }
      }
      // A node whose status index lags may still serve the transaction itself. Asked several
      // at a time (each endpoint's own concurrency and rate limit still apply): one after
      // another, 400 phantom signatures took 42 s. A stopped round stops asking.
      const left = wanted.filter((s) => !found.has(s));
      const lookUp = async () => {
        for (let signature = left.shift(); signature !== undefined; signature = left.shift()) {
          if (signal?.aborted) return;
          const params = [signature, transactionParams("confirmed")];
          const servedBy = await servingEndpoint(signature, params, null, silent, signal);
          if (servedBy === null) continue;
          if (signedByPayer(servedBy.result, signature)) signed.add(signature);
          show(
            { signature, slot: 0, confirmationStatus: "confirmed", err: null },
            servedBy.endpoint,
          );
        }
      };
      await Promise.all(Array.from({ length: FIND_CONCURRENCY }, lookUp));
      // A status only some of the endpoints that answered show is checked against the
      // transaction those endpoints serve: a message its fee payer signed backs it, a status
      // alone does not (one endpoint answering "confirmed" for a phantom held its drop for ever).
      const answered = endpoints.filter((e) => !silent.has(e));
      const disputed = [...shown].filter(
        ([s, by]) => !signed.has(s) && answered.some((e) => !by.has(e)),
      );
      const backUp = async () => {
        for (let next = disputed.shift(); next !== undefined; next = disputed.shift()) {
          if (signal?.aborted) return;
          const [signature, by] = next;
          for (const endpoint of by) {
            const reply = await call(
              "getTransaction",
              [signature, transactionParams("confirmed")],
              { skip: only(endpoint), ...(signal ? { signal } : {}) },
            ).catch(() => null);
            if (reply !== null && signedByPayer(reply.result, signature)) {
              signed.add(signature);
              break;
            }
          }
        }
      };
      await Promise.all(Array.from({ length: FIND_CONCURRENCY }, backUp));
      const unbacked = new Map<string, string[]>();
      for (const [signature, by] of shown) {
        if (signed.has(signature) || !answered.some((e) => !by.has(e))) continue;
        unbacked.set(
          signature,
          [...by].map((e) => e.name),
        );
      }
      // Each endpoint's own finalized slot: the slot a first miss was stored with came from
      // whichever endpoint the pool asked then, a lagging one say, and the slot of the poll
      // that would drop from another; one ahead of it by the drop window dropped a transaction
      // seconds after its first miss. An endpoint that cannot tell its slot cannot answer.
      const slots = await slotsOf(silent, signal);
      const lowestSlot = slots.size === 0 ? null : Math.min(...slots.values());
      return { found, unbacked, unanswered: [...silent].map((e) => e.name), lowestSlot, slots };
    },

    async finalizedSlots(signal) {
      const silent = new Set<Endpoint>();
      const slots = await slotsOf(silent, signal);
      return { slots, unanswered: [...silent].map((e) => e.name) };
    },

    async getSlot(commitment = "finalized", options = {}) {
      const { signal } = options;
      const reply = await call("getSlot", [{ commitment }], signal ? { signal } : {});
      return integer(reply.result, "getSlot");
    },

    requestRate() {
      return pick(undefined).rate.current(paceNow());
    },

    async getBlockHeight(commitment = "finalized", options = {}) {
      const { signal } = options;
      const reply = await call("getBlockHeight", [{ commitment }], signal ? { signal } : {});
      return integer(reply.result, "getBlockHeight");
    },

    async getBlockTime(slot, options = {}) {
      const { signal } = options;
      const reply = await call("getBlockTime", [slot], signal ? { signal } : {});
      return checkedBlockTime(integer(reply.result, "getBlockTime"), `getBlockTime ${slot}`);
    },

    async getSignaturesForAddress(address, options = {}) {
      const limit = options.limit ?? 1000;
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        throw new RangeError("getSignaturesForAddress limit must be an integer in 1..1000");
      }
      const { result } = await call(
        "getSignaturesForAddress",
        [
          address,
          {
            commitment: "finalized",
            limit,
            ...(options.before ? { before: options.before } : {}),
            ...(options.until ? { until: options.until } : {}),
          },
        ],
        options.signal ? { signal: options.signal } : {},
      );
      if (!Array.isArray(result)) {
        throw new AppError("rpc_unavailable", "getSignaturesForAddress returned no list");
      }
      return result.map((item): AddressSignatureInfo => {
        const e = (item ?? {}) as Record<string, unknown>;
        if (typeof e.signature !== "string") {
          throw new AppError("rpc_unavailable", "getSignaturesForAddress: entry without signature");
        }
        return {
          signature: e.signature,
          slot: integer(e.slot, "getSignaturesForAddress"),
          err: e.err ?? null,
          memo: typeof e.memo === "string" ? e.memo : null,
          // Passed on as the node gave it: the ledger reader judges each entry, so a page whose
          // newest entries are dated past the bound keeps its older ones (`src/ledger/reader.ts`).
          blockTime: typeof e.blockTime === "number" ? e.blockTime : null,
        };
      });
    },

    async getTokenAccount(address, options = {}) {
      const { signal } = options;
      const { result } = await call(
        "getAccountInfo",
        [address, { commitment: "finalized", encoding: "jsonParsed" }],
        signal ? { signal } : {},
      );
      return tokenAccountOf(result, "getAccountInfo");
    },

    stats() {
      return [...counters.values()].map((c) => ({ ...c }));
    },

    async close() {
      closed = true;
      abort.abort();
      sleeper.wake();
      for (const endpoint of endpoints) endpoint.close();
      transport.close();
    },
  };
}

/**
 * A token account as getAccountInfo (jsonParsed) answers it: `account` null when no account
 * lives at the address (closed, or never opened); `mint` and `amount` null when the account is
 * not a token account the node could parse.
 */
export interface TokenAccountRead {
  slot: number;
  account: {
    programId: string;
    mint: string | null;
    amount: bigint | null;
    /**
     * The delegate the account has (an Approve named it) and what it may still spend, from the
     * same answer: null with none. No balance shows it, and an Approve inside a call a node
     * serves with `[]` inner instructions shows nowhere else.
     */
    delegate?: { address: string; amount: bigint } | null;
    /**
     * The account's owner (who may spend it), from the same answer: null when the answer names
     * none. A SetAuthority shows it nowhere else when a node leaves `owner` out of token
     * balances (an optional field there).
     */
    owner?: string | null;
  } | null;
}

/** Reads a getAccountInfo (jsonParsed) answer; anything malformed is `rpc_unavailable`. */
export function tokenAccountOf(result: unknown, what: string): TokenAccountRead {
  const r = result as { context?: { slot?: unknown }; value?: unknown } | null;
  const slot = integer(r?.context?.slot, what);
  if (r?.value === null) return { slot, account: null };
  const v = r?.value as { owner?: unknown; data?: unknown } | undefined;
  if (typeof v?.owner !== "string") throw new AppError("rpc_unavailable", `${what}: no owner`);
  const parsed = (v.data as { parsed?: { type?: unknown; info?: unknown } } | null)?.parsed;
  const info = parsed?.info as { mint?: unknown; tokenAmount?: { amount?: unknown } } | undefined;
  const amount = info?.tokenAmount?.amount;
  if (
    parsed?.type !== "account" ||
    typeof info?.mint !== "string" ||
    typeof amount !== "string" ||
    !/^\d+$/.test(amount)
  ) {
    return { slot, account: { programId: v.owner, mint: null, amount: null } };
  }
  const d = info as {
    delegate?: unknown;
    delegatedAmount?: { amount?: unknown };
    owner?: unknown;
  };
  const delegated = d.delegatedAmount?.amount;
  const delegate =
    typeof d.delegate === "string"
      ? {
          address: d.delegate,
          // A delegate named with no amount the node could give: all it may spend is unknown,
          // so it is taken as able to spend the whole balance.
          amount:
            typeof delegated === "string" && /^\d+$/.test(delegated)
              ? BigInt(delegated)
              : BigInt(amount),
        }
      : null;
  return {
    slot,
    account: {
      programId: v.owner,
      mint: info.mint,
      amount: BigInt(amount),
      delegate,
      owner: typeof d.owner === "string" ? d.owner : null,
    },
  };
}

/**
 * A pool over `SOLANA_RPC_URLS`, each endpoint with the `RPC_*` limits of the config; `options`
 * override (a quorum member passes one endpoint of the list as its `endpoints`).
 */
export function rpcPoolFromConfig(
  config: Config,
  log?: Logger,
  options: Partial<RpcPoolOptions> = {},
): RpcPool {
  return createRpcPool({
    endpoints: config.SOLANA_RPC_URLS.map((url) => endpointFromConfig(config, url)),
    batch: config.RPC_BATCH,
    statusBatchSize: config.RPC_STATUS_BATCH_SIZE,
    maxRateLimitWaitMs: config.RPC_RATE_LIMIT_WAIT_MS,
    ...(log ? { log } : {}),
    ...options,
  });
}

/** Endpoint `url` with the `RPC_*` limits of the config. */
export function endpointFromConfig(config: Config, url: string): RpcEndpointConfig {
  return {
    url,
    rateLimitPerSec: config.RPC_RATE_LIMIT,
    concurrency: config.RPC_CONCURRENCY,
    timeoutMs: config.RPC_TIMEOUT_MS,
  };
}
