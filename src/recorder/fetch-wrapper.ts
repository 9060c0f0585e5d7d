import { isUtf8 } from "node:buffer";
import { backoff } from "../retry.js";
import {
  type BodyFacts,
  completionAsked,
  createSseFacts,
  jsonBodyFacts,
  otherKindFacts,
  scannedBodyFacts,
  sseFacts,
  unreadableBody,
  utf8Bytes,
} from "./answer-facts.js";
import { createJsonAnswerScan } from "./json-answer-scan.js";
import { keyIdentity } from "./key-fingerprint.js";
import { maxOperatorTextLength } from "./operator-values.js";
import {
  maxTags,
  maxTagValueLength,
  signaturesOrNull,
  tagNamePattern,
  type WireReceipt,
} from "./receipt-input.js";
import {
  type AnswerShape,
  answerShapeOf,
  chatPath,
  maxRequestFactsBytes,
  noRequestFacts,
  type RequestFacts,
  receiptMethodOf,
  receiptPathOf,
  requestFactsOfBytes,
  requestFactsOfText,
} from "./request-facts.js";
import { createDoneWatch } from "./sse-tail.js";
import { credentialsOf, withoutKeys } from "./without-key.js";

/**
 * A `fetch` for backends that call Decentral directly (no proxy): pass it as
 * `new OpenAI({ fetch: createRecordingFetch({ ingestUrl }) })`. It returns every response
 * untouched and, in the background, posts each job's receipt headers to the ingest API.
 * Delivery never blocks or fails a completion: receipts wait in a bounded buffer and are
 * retried with backoff; when the buffer is full the oldest receipt not being sent is dropped,
 * counted and reported by its job. Pending receipts never keep the process alive by themselves:
 * a backend calls `flush()` before it exits, and receipts still pending at exit are reported.
 * This module has no dependency beyond the platform so backends can
 * import it alone.
 */

/**
 * The most of a streamed answer held for its receipt (the proxy holds a JSON answer up to as
 * much): past it, the stream is read as it passes (see `tapStream`).
 */
const maxStreamBytes = 8 * 1024 * 1024;

/** A stream's answer as read: its text when held whole, or what was read of it as it passed. */
type StreamRead = { text: string; bytes?: Buffer } | { facts: BodyFacts };

/** A reader of a stream too long to hold, fed its bytes as they pass (see `tapStream`). */
interface LongStreamRead {
  add(chunk: Buffer): void;
  /** Whether nothing more of the stream is read: its `[DONE]`, or a chunk that ends it. */
  readonly done: boolean;
  facts(): BodyFacts;
}

/**
 * The longest signature header sent: nine signatures joined by ", ", as many of one field as
 * ingest keeps (the receipt's own and the eight a job's conflicting receipts have verified).
 */
const maxSignatureListLength = 9 * 90;

/** Options of `createRecordingFetch`; every optional one has a default. */
export interface RecordingFetchOptions {
  /** The ingest endpoint, e.g. `http://audit.internal:8787/jobs`. */
  ingestUrl: string;
  /**
   * Access token of role `ingest` (`da_ingest_...`), sent as `Authorization: Bearer <token>`.
   * Required: typed optional so that `process.env.X` can be passed, and refused when missing.
   */
  token?: string;
  /**
   * The fetch that does the real work (calls to Decentral and to the ingest API). Default the
   * global `fetch`.
   */
  fetch?: typeof fetch;
  /** Receipts held at most while waiting for delivery. Default 10,000. */
  maxBuffer?: number;
  /** Receipts per ingest request, at most 1,000. Default 200. */
  batchSize?: number;
  /** First retry delay; doubles per failure. Default 500 ms. */
  retryBaseMs?: number;
  /** Longest retry delay. Default 30,000 ms. */
  retryMaxMs?: number;
  /**
   * How long a streamed answer is read for its usage and text before its receipt goes from its
   * headers alone (see `readStream`). Default 600,000 ms (10 minutes).
   */
  streamReadMs?: number;
  /** Tags added to every receipt, e.g. `{ service: "search" }`. Default none. */
  tags?: Record<string, string>;
  /**
   * Called when delivery fails (the receipt is kept and retried), a receipt is dropped, the
   * ingest API refused a receipt (lost: never retried), or the process exits with receipts not
   * delivered (a `ReceiptsNotDeliveredError`, called synchronously from the `exit` event, so
   * it must log synchronously). Without it, the last is written to stderr. Default none.
   */
  onError?: (error: Error) => void;
}

/** Options of `flush()`. */
export interface FlushOptions {
  /**
   * Longest wait, in ms: past it `flush()` rejects with a `ReceiptsNotDeliveredError` naming
   * the receipts still pending (they stay queued and retried). Default none: wait until done.
   */
  timeoutMs?: number;
}

/** Receipts not delivered in time: at a `flush()` deadline, or when the process exits. */
export class ReceiptsNotDeliveredError extends Error {
  /** The job of every receipt not delivered (nor refused, nor dropped), oldest first. */
  readonly jobIds: string[];
  constructor(what: string, jobIds: string[]) {
    const shown = jobIds.slice(0, 20).join(", ");
    const more = jobIds.length > 20 ? ` and ${jobIds.length - 20} more` : "";
    const count = `${jobIds.length} receipt${jobIds.length === 1 ? "" : "s"}`;
    super(`${what}: ${count} not delivered (${shown}${more})`);
    this.name = "ReceiptsNotDeliveredError";
    this.jobIds = jobIds;
  }
}

/** Counters of what happened to receipts so far. */
export interface RecordingFetchStats {
  queued: number;
  delivered: number;
  /** Refused by the ingest API as malformed: never retried. */
  rejected: number;
  /**
   * Dropped because the buffer was full. Each receipt is counted once, as delivered, rejected
   * or dropped (or is still pending).
   */
  dropped: number;
  failedAttempts: number;
}

/** The wrapped fetch, plus delivery control. */
export type RecordingFetch = typeof fetch & {
  /**
   * Resolves once every receipt seen so far was delivered, refused or dropped (tests,
   * shutdown). While it waits, delivery retries keep the process alive, and a retry waiting
   * out its backoff is tried at once. With `timeoutMs` it rejects past that deadline with a
   * `ReceiptsNotDeliveredError` naming the jobs still pending.
   */
  flush(options?: FlushOptions): Promise<void>;
  stats(): RecordingFetchStats;
};

/** The path the call asks, or null when its URL does not parse. */
function pathOf(input: Parameters<typeof fetch>[0]): string | null {
  try {
    const url = typeof input === "string" || input instanceof URL ? input : input.url;
    // A path alone (a browser's or an edge runtime's fetch resolves it against its origin) is
    // read as the path it names: read as none, a chat answer was counted as a legacy one.
    return new URL(url, "http://relative.invalid").pathname;
  } catch {
    return null;
  }
}

/** The answer's shape as the request's path asks it: `output` for the Responses API. */
function shapeOf(input: Parameters<typeof fetch>[0]): AnswerShape {
  const path = pathOf(input);
  return path !== null && answerShapeOf(path) === "output" ? "output" : "choices";
}

/**
 * What the request asks (model, completion-token ceiling), read from its body as sent: a
 * string, bytes, a Blob, or the body of a `Request` passed as `input`. A `Request`'s body is
 * read from a clone taken before the call, so the caller's request is sent untouched (a stream
 * in `init`: `teeStreamBody`). Never rejects; a body it cannot read (form data) asks nothing.
 */
function askedOf(
  input: Parameters<typeof fetch>[0],
  init: RequestInit | undefined,
): RequestFacts | Promise<RequestFacts> {
  try {
    // As `fetch` does: a body in `init` replaces the `Request`'s.
    const body = init?.body;
    const shape = shapeOf(input);
    if (body !== undefined && body !== null) return askedOfBody(body, shape);
    if (input instanceof Request && input.body !== null && !input.bodyUsed) {
      return askedOfStream(input.clone().body, shape);
    }
  } catch {
    // A body that cannot be copied: the request is sent as it is, asking nothing here.
  }
  return noRequestFacts;
}

/**
 * A `ReadableStream` body in `init` split in two: `init` sends one branch, `copy` is read for the
 * request's facts (and cancelled once they cannot be read: the branch sent goes on). Null for
 * any other body, or a stream already read or locked (sent as it is).
 */
function teeStreamBody(
  init: RequestInit | undefined,
): { init: RequestInit; copy: ReadableStream<Uint8Array> } | null {
  const body = init?.body;
  if (!(body instanceof ReadableStream) || body.locked) return null;
  try {
    const [sent, copy] = (body as ReadableStream<Uint8Array>).tee();
    return { init: { ...init, body: sent }, copy };
  } catch {
    return null;
  }
}

function askedOfBody(
  body: NonNullable<RequestInit["body"]>,
  shape: AnswerShape,
): RequestFacts | Promise<RequestFacts> {
  if (typeof body === "string") {
    return body.length <= maxRequestFactsBytes ? requestFactsOfText(body, shape) : noRequestFacts;
  }
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
    const bytes =
      body instanceof ArrayBuffer
        ? new Uint8Array(body)
        : new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    return bytes.length <= maxRequestFactsBytes
      ? requestFactsOfBytes(bytes, shape)
      : noRequestFacts;
  }
  if (typeof Blob !== "undefined" && body instanceof Blob) {
    return body.size <= maxRequestFactsBytes ? askedOfStream(body.stream(), shape) : noRequestFacts;
  }
  return noRequestFacts;
}

/**
 * Facts of a body stream read to its end, or given up as soon as it cannot be a JSON object
 * (its first byte other than whitespace is not `{`) or grows beyond the limit.
 */
async function askedOfStream(
  stream: ReadableStream<Uint8Array> | null,
  shape: AnswerShape,
): Promise<RequestFacts> {
  if (stream === null) return noRequestFacts;
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  /** Whether the body's first byte other than whitespace was seen (and is `{`). */
  let opened = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
      if (size > maxRequestFactsBytes) return noRequestFacts;
      if (!opened) {
        const first = value.find((c) => c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09);
        if (first !== undefined && first !== 0x7b) return noRequestFacts;
        opened = first !== undefined;
      }
    }
  } catch {
    return noRequestFacts;
  } finally {
    // Only this copy stops being read; the caller's body goes on.
    reader.cancel().catch(() => undefined);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return requestFactsOfBytes(bytes, shape);
}

/** The caller's credentials as sent (see `credentialsOf`). */
function credentialsOfCall(input: Parameters<typeof fetch>[0], init: RequestInit | undefined) {
  const headers = init?.headers
    ? new Headers(init.headers)
    : input instanceof Request
      ? input.headers
      : null;
  return credentialsOf((name) => headers?.get(name) ?? undefined);
}

/**
 * The request's method as fetch sends it: `init`'s, else the request object's (any library's:
 * node-fetch's `Request` is no instance of the platform's), else GET for a URL given as a string
 * or `URL`. Null when not known, or one the ingest API would refuse: the receipt goes without it
 * (a POST taken for a GET would fail an honest job).
 */
function methodOf(
  input: Parameters<typeof fetch>[0],
  init: RequestInit | undefined,
): string | null {
  if (typeof init?.method === "string") return receiptMethodOf(init.method);
  if (typeof input === "string" || input instanceof URL) return "GET";
  const method = (input as { method?: unknown }).method;
  return typeof method === "string" ? receiptMethodOf(method) : null;
}

/**
 * The caller's key's fingerprint and key check (never the key): the fingerprint ties the job to
 * the key's vault, the check tells apart two keys made to share it.
 */
function keyOf(input: Parameters<typeof fetch>[0], init: RequestInit | undefined) {
  const fromInit = init?.headers ? new Headers(init.headers).get("authorization") : null;
  const fromRequest = input instanceof Request ? input.headers.get("authorization") : null;
  return keyIdentity(fromInit ?? fromRequest);
}

/**
 * The options, refused at once when one would lose every receipt later (an ingest URL that is
 * none, a batch of no receipts, a tag the ingest API refuses with each receipt it comes with):
 * a backend learns of it when it starts, not from receipts missing at the month's end.
 */
function checkedOptions(options: RecordingFetchOptions): RecordingFetchOptions {
  const refuse = (what: string): never => {
    throw new TypeError(`createRecordingFetch: ${what}`);
  };
  let url: URL | null = null;
  try {
    url = new URL(options.ingestUrl);
  } catch {
    // Refused below.
  }
  if (url === null || (url.protocol !== "http:" && url.protocol !== "https:")) {
    refuse("ingestUrl must be an http(s) URL, e.g. http://audit.internal:8787/jobs");
  }
  // POST /jobs answers 401 to a request without an ingest token: left out (an environment
  // variable not set), or another key given for it, every receipt was retried until dropped.
  if (typeof options.token !== "string" || !/^da_[A-Za-z0-9_-]+$/.test(options.token)) {
    refuse(
      options.token === undefined || options.token === ""
        ? "token is required: an access token of role ingest (da_ingest_...)"
        : "token must be an access token (da_ingest_...), with no spaces and no Bearer prefix",
    );
  }
  // POST /jobs refuses every query parameter: each batch would be refused, and lost.
  if (url?.search || url?.hash)
    refuse("ingestUrl must have no query or fragment (POST /jobs takes none)");
  const whole = (name: "maxBuffer" | "batchSize", min: number, max: number) => {
    const value = options[name];
    if (value !== undefined && !(Number.isInteger(value) && value >= min && value <= max)) {
      refuse(`${name} must be a whole number from ${min} to ${max}`);
    }
  };
  whole("maxBuffer", 1, Number.MAX_SAFE_INTEGER);
  whole("batchSize", 1, 1000);
  for (const name of ["retryBaseMs", "retryMaxMs", "streamReadMs"] as const) {
    const value = options[name];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      refuse(`${name} must be a number of ms, 0 or more`);
    }
  }
  const tags = Object.entries(options.tags ?? {});
  if (tags.length > maxTags) refuse(`tags: at most ${maxTags}`);
  for (const [name, value] of tags) {
    // The ingest API's rules: a tag it refuses would cost every receipt it is added to.
    if (!tagNamePattern.test(name.toLowerCase())) {
      refuse(`tags.${name}: tag names are letters, digits, _ . - (max 64)`);
    }
    if (typeof value !== "string" || value.length > maxTagValueLength) {
      refuse(`tags.${name}: must be a string of at most ${maxTagValueLength} characters`);
    }
  }
  if (options.onError !== undefined && typeof options.onError !== "function") {
    refuse("onError must be a function");
  }
  return options;
}

/**
 * Wraps `fetch` so every response carrying `x-decentral-job-id` yields a receipt posted to
 * `ingestUrl` in the background. The model and ceiling come from the request; the usage, the
 * model the answer names and the size of its text are read from a clone of the body, as the
 * proxy reads them: a JSON answer once whole, an event stream once ended (its `[DONE]`), or from
 * its headers alone when it breaks off, outlasts `streamReadMs` or `flush()` comes first. The
 * service fetches a stream's settlement signature later.
 */
export function createRecordingFetch(given: RecordingFetchOptions): RecordingFetch {
  const options = checkedOptions(given);
  const baseFetch = options.fetch ?? globalThis.fetch;
  const maxBuffer = options.maxBuffer ?? 10_000;
  const batchSize = Math.min(options.batchSize ?? 200, 1000);
  const retryBaseMs = options.retryBaseMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 30_000;
  const streamReadMs = options.streamReadMs ?? 600_000;
  const buffer: WireReceipt[] = [];
  const stats: RecordingFetchStats = {
    queued: 0,
    delivered: 0,
    rejected: 0,
    dropped: 0,
    failedAttempts: 0,
  };
  /** Receipts still being assembled (body being read), by the work that assembles each. */
  const assembling = new Map<Promise<void>, WireReceipt>();
  /**
   * The receipts of the request being sent: always the first ones of `buffer`, since only
   * delivery takes receipts off its front and a full buffer never drops one of these (the
   * ingest API may be recording it at this moment: dropped, it would be counted twice).
   */
  const inFlight = new Set<WireReceipt>();
  /**
   * Receipts sent in a batch that failed (an error answer, or none): the ingest API may hold
   * them all the same.
   */
  const unanswered = new WeakSet<WireReceipt>();
  /** Receipts a `flush()` deadline already named to the caller: not named again at exit. */
  const named = new WeakSet<WireReceipt>();
  let sending: Promise<void> | undefined;
  /** Each `flush()` waiting: settles it. */
  const waiters = new Set<() => void>();
  /** The backoff wait between two attempts, if one is under way. */
  let pause: { timer: ReturnType<typeof setTimeout>; end: () => void } | undefined;
  let watchingExit = false;

  /** Streams being read for their answer, each stopped by its function (`flush()` stops them). */
  const streamsRead = new Set<() => void>();

  /**
   * A streamed answer handed to the caller through a body that reads it as it passes (no copy:
   * the caller's cancel reaches the upstream as it would without the wrapper, and what is read
   * is what the caller read), and its text as its client reads it, up to its `[DONE]` or its end.
   * A stream longer than `maxStreamBytes` is read as it passes by the reader `longRead` makes
   * (the proxy reads a long stream so): an operator padding a stream past what is held (comment
   * lines no SDK reads) does not make its usage unknown. The text is null when the stream broke
   * off or was cancelled first, outlasted `streamReadMs`, or `flush()` came first: its receipt
   * then goes from its headers alone, as a stream's did before its end was read (`usage_unknown`).
   */
  function tapStream(
    response: Response,
    body: ReadableStream<Uint8Array>,
    longRead: () => Promise<LongStreamRead>,
  ) {
    const source = body.getReader();
    const sawDone = createDoneWatch();
    // Held as they came; byte-order marks kept, as the proxy reads the bytes: each line's is
    // read past as an SDK does (see sse-tail.ts), and no other is dropped.
    let held: Buffer[] = [];
    let size = 0;
    let long: LongStreamRead | null = null;
    let settled = false;
    let settle!: (value: StreamRead | null) => void;
    const read = new Promise<StreamRead | null>((resolve) => {
      settle = resolve;
    });
    const finish = (value: StreamRead | null) => {
      if (settled) return;
      settled = true;
      held = [];
      clearTimeout(timer);
      streamsRead.delete(stop);
      settle(value);
    };
    const stop = () => finish(null);
    const whole = (): StreamRead => {
      if (long !== null) return { facts: long.facts() };
      // The bytes too: a stream's line that is no UTF-8 is told by them (see `sseFacts`).
      const bytes = Buffer.concat(held);
      return { text: bytes.toString("utf8"), bytes };
    };
    const timer = setTimeout(stop, streamReadMs);
    timer.unref?.();
    streamsRead.add(stop);
    const passed = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          let chunk: Awaited<ReturnType<typeof source.read>>;
          try {
            chunk = await source.read();
          } catch (error) {
            finish(null);
            controller.error(error);
            return;
          }
          if (chunk.done) {
            if (!settled) finish(whole());
            controller.close();
            return;
          }
          const value = chunk.value;
          controller.enqueue(value);
          if (settled) return;
          // A reader that fails keeps the receipt, from the headers, and the caller's stream.
          try {
            // A copy: the caller owns the chunk handed to it.
            const bytes = Buffer.from(value);
            size += bytes.length;
            if (long !== null) long.add(bytes);
            else held.push(bytes);
            if (long === null && size > maxStreamBytes) {
              long = await longRead();
              if (settled) return;
              for (const h of held) long.add(h);
              held = [];
            }
            if (sawDone(bytes) || long?.done === true) finish(whole());
          } catch (error) {
            finish(null);
            report(error instanceof Error ? error : new Error(String(error)));
          }
        },
        cancel(reason) {
          finish(null);
          return source.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
    const handed = new Response(passed, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
    // What a made Response does not take from its init, as the caller's fetch set it.
    Object.defineProperties(handed, {
      url: { value: response.url },
      redirected: { value: response.redirected },
      type: { value: response.type },
    });
    return { response: handed, read };
  }

  const report = (error: Error) => {
    try {
      options.onError?.(error);
    } catch {
      // The caller's handler failing must not stop delivery (nor crash the backend).
    }
  };

  /** Every receipt not yet delivered, refused or dropped, oldest first. */
  function pendingReceipts(): WireReceipt[] {
    return [...new Set([...buffer, ...assembling.values()])];
  }

  /** A receipt still pending when the process exits is lost: say which, never silently. */
  const onExit = () => {
    const left = pendingReceipts().filter((receipt) => !named.has(receipt));
    if (left.length === 0) return;
    const error = new ReceiptsNotDeliveredError(
      "process exiting before delivery (await fetch.flush() before exit)",
      left.map((receipt) => receipt.job_id),
    );
    if (options.onError) report(error);
    else console.error(`decentral-audit recording fetch: ${error.message}`);
  };

  /** Listens for the exit only while receipts are pending, so an idle wrapper costs nothing. */
  function watchExit() {
    if (typeof process === "undefined" || typeof process.on !== "function") return;
    const pending = buffer.length > 0 || assembling.size > 0;
    if (pending && !watchingExit) process.on("exit", onExit);
    else if (!pending && watchingExit) process.off("exit", onExit);
    watchingExit = pending;
  }

  function enqueue(receipt: WireReceipt) {
    stats.queued++;
    if (buffer.length >= maxBuffer) {
      const at = buffer.findIndex((held) => !inFlight.has(held));
      // Every receipt held is being sent: the new one is the oldest not on its way.
      const dropped = at === -1 ? receipt : (buffer.splice(at, 1)[0] as WireReceipt);
      stats.dropped++;
      const maybe = unanswered.has(dropped)
        ? " (sent in a batch that failed: the ingest API may have recorded it all the same)"
        : "";
      report(new Error(`receipt buffer full: the receipt of ${dropped.job_id} dropped${maybe}`));
      if (dropped === receipt) return;
    }
    buffer.push(receipt);
    kick();
  }

  function kick() {
    if (sending) return;
    sending = drain().finally(() => {
      sending = undefined;
      // A receipt queued after the loop's last check but before this callback.
      if (buffer.length > 0) kick();
      else settleWaiters();
    });
  }

  function settleWaiters() {
    watchExit();
    if (buffer.length > 0 || assembling.size > 0 || sending) return;
    const ready = [...waiters];
    waiters.clear();
    for (const resolve of ready) resolve();
  }

  /**
   * Posts a batch. "refused": the ingest API refused the request as a whole (400, 413), which
   * it will do again; otherwise how many items it rejected, or why to retry. A refused receipt is
   * lost for good, so each refusal is reported with the job and the reason.
   */
  async function post(
    batch: WireReceipt[],
  ): Promise<number | { retry: string } | { refused: number; reason: string }> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    try {
      const response = await baseFetch(options.ingestUrl, {
        method: "POST",
        headers,
        body: JSON.stringify(batch),
      });
      if (response.ok) {
        const body = (await response.json().catch(() => ({}))) as {
          rejected?: unknown;
          results?: unknown;
        };
        const rejected = typeof body.rejected === "number" ? body.rejected : 0;
        if (rejected > 0) reportRejected(batch, body.results);
        return rejected;
      }
      // 400/413: the request itself is at fault and will never be accepted. Anything else
      // (401/403 while tokens are being fixed, 408, 429, 5xx) may pass later.
      if (response.status === 400 || response.status === 413) {
        const body = (await response.json().catch(() => null)) as {
          error?: { message?: unknown };
        } | null;
        const message = body?.error?.message;
        return {
          refused: response.status,
          reason: typeof message === "string" ? message.slice(0, 200) : "",
        };
      }
      await response.body?.cancel();
      // Said with the error: a 404 (an ingest URL without /jobs) retries as a 503 does, and
      // only the status tells them apart.
      return { retry: `HTTP ${response.status}` };
    } catch (error) {
      return { retry: error instanceof Error ? error.message : String(error) };
    }
  }

  /** One error per receipt the ingest API refused, naming its job, field and reason. */
  function reportRejected(batch: WireReceipt[], results: unknown) {
    const items = Array.isArray(results) ? results : [];
    for (const item of items as { index?: unknown; status?: unknown; field?: unknown }[]) {
      if (item?.status !== "rejected") continue;
      const receipt = typeof item.index === "number" ? batch[item.index] : undefined;
      const reason = (item as { reason?: unknown }).reason;
      report(
        new Error(
          `ingest API refused the receipt of ${receipt?.job_id ?? "a job"}: ` +
            `${String(item.field)} ${String(reason)}`,
        ),
      );
    }
  }

  /** Waits out a retry's backoff: unref'd unless a `flush()` is waiting, which may end it. */
  function pauseFor(delay: number) {
    return new Promise<void>((resolve) => {
      const end = () => {
        clearTimeout(timer);
        pause = undefined;
        resolve();
      };
      const timer = setTimeout(end, delay);
      // Pending receipts alone never keep a backend alive; a flush waiting for them does.
      if (waiters.size === 0) timer.unref();
      pause = { timer, end };
    });
  }

  async function drain() {
    let failures = 0;
    // Receipts per request: halved each time the ingest API refuses a whole batch (413 too
    // large, 400), so the valid receipts of a refused batch still go in smaller ones, down to
    // a receipt alone, which alone is refused and reported. Back to `batchSize` once the buffer
    // is empty.
    let limit = batchSize;
    while (buffer.length > 0) {
      const batch = buffer.slice(0, limit);
      for (const receipt of batch) inFlight.add(receipt);
      const outcome = await post(batch);
      inFlight.clear();
      if (typeof outcome === "object" && "retry" in outcome) {
        for (const receipt of batch) unanswered.add(receipt);
        stats.failedAttempts++;
        report(new Error(`receipt delivery failed (${outcome.retry}); will retry`));
        await pauseFor(backoff(failures++, { baseMs: retryBaseMs, maxMs: retryMaxMs }));
        continue;
      }
      failures = 0;
      if (typeof outcome === "object" && batch.length > 1) {
        limit = Math.ceil(batch.length / 2);
        continue;
      }
      // The batch is still the front of the buffer (see `inFlight`).
      buffer.splice(0, batch.length);
      if (typeof outcome === "object") {
        const { job_id } = batch[0] as WireReceipt;
        const reason = outcome.reason ? `: ${outcome.reason}` : "";
        report(
          new Error(
            `ingest API refused the receipt of ${job_id} (HTTP ${outcome.refused}${reason})`,
          ),
        );
        stats.rejected++;
        continue;
      }
      stats.rejected += outcome;
      stats.delivered += batch.length - outcome;
    }
  }

  function receiptOf(
    response: Response,
    input: Parameters<typeof fetch>[0],
    init: RequestInit | undefined,
  ): WireReceipt | null {
    // An empty header says nothing: it is sent as null, never as an empty value. Nor is one
    // longer than any value it can hold (as the proxy reads them): the operator's headers must
    // not make a batch too large to be accepted.
    // A header sent twice with one value is that value, as the proxy reads it: fetch joins its
    // lines with ", ", and a job id so joined was refused by ingest, the paid job's receipt lost.
    const get = (name: string, max = maxOperatorTextLength) => {
      let value = response.headers.get(name)?.trim();
      if (value?.includes(",")) {
        const values = new Set(value.split(",").map((v) => v.trim()));
        if (values.size === 1) value = [...values][0];
      }
      return value && value.length <= max ? value : null;
    };
    // Every signature a header names, without what else it holds (a line of junk beside them
    // would have the caller's strict escrow_tx refuse the whole receipt); one naming none is
    // sent as it is, for ingest to refuse by name.
    const signatures = (name: string) =>
      signaturesOrNull(response.headers.get(name))?.join(", ") ?? get(name, maxSignatureListLength);
    // A job id too long to be one is still sent (cut short), so ingest refuses it by name and
    // the caller hears of it (`onError`), rather than the job vanishing without a word.
    const jobId =
      get("x-decentral-job-id") ??
      response.headers
        .get("x-decentral-job-id")
        ?.trim()
        .slice(0, maxOperatorTextLength + 1);
    if (!jobId) return null;
    const receipt: WireReceipt = {
      job_id: jobId,
      // A signature header sent twice reads as "S1, S2": sent so, ingest keeps the first as the
      // receipt's and the other as a conflicting receipt, so a second lock or settlement is seen.
      escrow_tx: signatures("x-decentral-tx-signature"),
      settlement_tx: signatures("x-decentral-settlement-tx"),
      worker: get("x-decentral-worker"),
      credits_remaining: get("x-decentral-credits-remaining"),
      // An error answer with a settlement charged for no completion: the verifier needs the
      // status. And the time is the answer's, not the delivery's: a receipt held back by an
      // ingest outage still lands in its own period and within `receipt.time`'s span.
      http_status: response.status,
      created_at: new Date().toISOString(),
    };
    const key = keyOf(input, init);
    if (key) {
      receipt.key_fingerprint = key.fingerprint;
      receipt.key_check = key.check;
    }
    // A job is a POST: one answering a GET (a free `models.list()`) asked for nothing to run.
    const method = methodOf(input, init);
    if (method !== null) receipt.request_method = method;
    const asked = pathOf(input);
    const path =
      asked === null ? null : receiptPathOf(withoutKeys(asked, credentialsOfCall(input, init)));
    if (path !== null) receipt.request_path = path;
    if (options.tags) receipt.tags = options.tags;
    return receipt;
  }

  const wrapped = async (
    input: Parameters<typeof fetch>[0],
    init?: RequestInit,
  ): Promise<Response> => {
    // A stream body is sent from one branch of a tee and read from the other: read from
    // nowhere, the model was unknown and the job left unproven (`model_unknown`).
    const teed = teeStreamBody(init);
    if (teed !== null) init = teed.init;
    // Taken before the call: a `Request`'s body can be copied only before `fetch` reads it.
    const asked = teed === null ? askedOf(input, init) : askedOfStream(teed.copy, shapeOf(input));
    const response = await baseFetch(input, init);
    let handed = response;
    try {
      const receipt = receiptOf(response, input, init);
      if (!receipt) return response;
      const contentType = response.headers.get("content-type") ?? "";
      // The media type as the OpenAI SDK reads it: before any parameter. It parses a body as
      // JSON only under a JSON type (`text/plain; x=application/json` is text to it).
      const mediaType = (contentType.split(";")[0] ?? "").trim().toLowerCase();
      const isJson = mediaType.includes("application/json") || mediaType.endsWith("+json");
      const isSse = mediaType === "text/event-stream";
      const path = pathOf(input);
      const shape = path === null ? "choices" : answerShapeOf(path);
      const chat = path !== null && chatPath.test(path);
      // Whether its client reads an event stream as events, as the proxy takes it: where the
      // request asked for a stream, or did not say (a body not read), or wrote `stream` so that
      // an SDK reads it as it pleases (`"false"`: the kind its answer is).
      const asEvents = (f: RequestFacts) =>
        f.stream === null || f.stream === true || (f.streamUnsure === true && !f.stream);
      // A stream too long to hold, read as it passes as its client reads it: as events, or (no
      // completion its SDK can read) by its bytes alone.
      const longRead = async (): Promise<LongStreamRead> => {
        const readAs = { ...(await asked), chat, shape };
        const credentials = credentialsOfCall(input, init);
        // A body not typed as events, to a request that asked no stream, is JSON to its client
        // as to the proxy (see `readable` below): scanned as it passes for its model and usage,
        // as the proxy scans one too long to hold. Bounded by its bytes alone, a reasoning
        // answer typed `text/plain` was left unproven where the proxy verifies it.
        if (!isSse && readAs.stream !== true) {
          const scan = createJsonAnswerScan(readAs);
          return {
            add: (chunk) => scan.add(chunk),
            done: false,
            facts: () => scannedBodyFacts(scan, credentials, readAs),
          };
        }
        if (asEvents(readAs)) return createSseFacts(credentials, readAs);
        let bytes = 0;
        return {
          add: (chunk) => {
            bytes += chunk.length;
          },
          done: false,
          facts: () => otherKindFacts("", true, bytes, [], readAs).facts,
        };
      };
      // Read model, usage and answer size from a copy of a JSON body (the caller reads the
      // original), and from a stream as it passes to the caller.
      // Any body not typed JSON (a stream typed text/plain, embeddings so typed, a binary body)
      // is read as it passes too: a copy (`clone()`) would hold it whole and keep reading it
      // after the caller cancels (its cancel would never settle). Read from nowhere where its
      // request was no completion's, embeddings typed `text/plain` had their usage unread: an
      // overcharge without usage was left unproven where the proxy fails it.
      const passing = !isJson;
      const tapped = passing && response.body ? tapStream(response, response.body, longRead) : null;
      if (tapped !== null) handed = tapped.response;
      const answered: Promise<StreamRead | null> | null =
        tapped !== null
          ? tapped.read
          : isJson && response.body
            ? response
                .clone()
                .arrayBuffer()
                // Its bytes too: bytes that are no UTF-8 fail a Python client's read of it. The
                // text as fetch's `text()` decodes it (the byte-order marks it drops dropped).
                .then(async (buffer) => ({
                  text: await new Response(buffer).text(),
                  bytes: Buffer.from(buffer),
                }))
                .catch(() => null)
            : null;
      const work = Promise.all([asked, answered]).then(([facts, got]) => {
        // Priced by the model asked for, bounded by the ceiling asked for. When the request
        // did not say, neither is taken from the response, which the operator writes: its
        // model is sent only as `response_model`, to compare.
        if (facts.model !== null) receipt.model = facts.model;
        if (facts.maxTokens !== null) receipt.max_tokens = facts.maxTokens;
        if (facts.stream !== null && facts.choices > 1) receipt.n = facts.choices;
        // The response is the operator's: its model is sent cleaned and its counts only when
        // they are counts, so what it wrote cannot make the receipt refused (and lost). It is
        // read as the proxy reads it (`jsonBodyFacts`): a key the answer echoes as its model is
        // cut, an `error` is no completion whatever the status line said (usage it names prices
        // no answer the caller got, so none is sent), a Responses API answer's counts are its
        // `input_tokens` and `output_tokens`. An answer of the other kind than its request asked
        // for is read as its SDK reads it (`otherKindFacts`: a JSON answer to a request that
        // asked for a stream holds no event, no completion); a Responses answer run in the
        // background, `queued`, holds none of its output, and nothing of it is sent.
        const background = shape === "output" && facts.background;
        let answer: BodyFacts | null = null;
        // Whether the charge is bounded by the answer read (`usage_asked`): see below.
        let usageOwed: boolean | null =
          isSse && (facts.stream === true || facts.streamUnsure === true) ? facts.usageAsked : null;
        // Read as the proxy reads them: events as events where their client reads them so, any
        // other body as JSON where the request did not ask for a stream (Python's client parses
        // a JSON body whatever its type); any other answer to a completion's request is of the
        // other kind (`otherKindFacts`).
        const readable = isSse ? asEvents(facts) : facts.stream !== true;
        const readAs = { ...facts, chat, shape };
        if (got !== null && !background && (readable || completionAsked(readAs))) {
          try {
            const credentials = credentialsOfCall(input, init);
            if ("facts" in got) {
              // Read as it passed (`longRead`): of the other kind, bounded by its bytes.
              answer = got.facts;
              if (!readable) usageOwed = true;
            } else if (!readable) {
              const other = otherKindFacts(
                got.text,
                false,
                utf8Bytes(got.text),
                credentials,
                readAs,
              );
              answer = other.facts;
              usageOwed = other.usageOwed;
            } else {
              answer = isSse
                ? sseFacts(got.bytes ?? got.text, credentials, readAs)
                : got.bytes !== undefined && !isUtf8(got.bytes)
                  ? unreadableBody(readAs)
                  : jsonBodyFacts(got.text, credentials, readAs, false);
            }
          } catch (error) {
            // A reader that fails keeps the receipt: it goes from the headers, and is judged so.
            report(error instanceof Error ? error : new Error(String(error)));
          }
        }
        if (answer === null) {
          enqueue(receipt);
          return;
        }
        if (answer.model !== null) receipt.response_model = answer.model;
        const usage: NonNullable<WireReceipt["usage"]> = {};
        const read = answer.usage;
        if (read.promptTokens !== null) usage.prompt_tokens = read.promptTokens;
        if (read.completionTokens !== null) usage.completion_tokens = read.completionTokens;
        if (read.totalTokens !== null) usage.total_tokens = read.totalTokens;
        if (read.reasoningTokens !== null) usage.reasoning_tokens = read.reasoningTokens;
        if (read.rejectedPredictionTokens !== null) {
          usage.rejected_prediction_tokens = read.rejectedPredictionTokens;
        }
        if (Object.keys(usage).length > 0) receipt.usage = usage;
        // What the caller got bounds the completion tokens its usage may name, as for the proxy's
        // receipts: without it the operator could name any count up to the request's ceiling.
        if (answer.answerBytes !== null) receipt.answer_bytes = answer.answerBytes;
        if (answer.answerToolCalls !== null) receipt.answer_tool_calls = answer.answerToolCalls;
        // Recorded as the proxy records them: a stream whatever the request said if events came,
        // and, for a stream, whether its usage was owed. An answer that sent no usage where it
        // was owed (a JSON answer, a stream asked for it that ended whole, an answer of the other
        // kind) has its charge bounded by what it holds (`charge.matches_price`).
        receipt.stream = isSse || (facts.stream ?? false);
        if (usageOwed !== null) receipt.usage_asked = usageOwed;
        // Rejected prediction tokens are made up when the request sent no prediction.
        if (facts.prediction !== null) receipt.prediction_sent = facts.prediction;
        enqueue(receipt);
      });
      assembling.set(work, receipt);
      watchExit();
      work.finally(() => {
        assembling.delete(work);
        settleWaiters();
      });
    } catch (error) {
      report(error instanceof Error ? error : new Error(String(error)));
    }
    return handed;
  };

  return Object.assign(wrapped as typeof fetch, {
    flush: (flushOptions: FlushOptions = {}) =>
      new Promise<void>((resolve, reject) => {
        let deadline: ReturnType<typeof setTimeout> | undefined;
        const settle = () => {
          clearTimeout(deadline);
          resolve();
        };
        if (flushOptions.timeoutMs !== undefined) {
          deadline = setTimeout(() => {
            waiters.delete(settle);
            if (waiters.size === 0) pause?.timer.unref();
            const left = pendingReceipts();
            for (const receipt of left) named.add(receipt);
            reject(
              new ReceiptsNotDeliveredError(
                `flush() deadline of ${flushOptions.timeoutMs} ms passed`,
                left.map((receipt) => receipt.job_id),
              ),
            );
          }, flushOptions.timeoutMs);
        }
        waiters.add(settle);
        // A shutdown cannot wait for a stream still being read: its receipt goes from its
        // headers now, as it would have before its end was read.
        for (const stop of [...streamsRead]) stop();
        // A shutdown cannot wait out a long backoff: try again now, and hold the process open
        // through the retries that follow.
        pause?.end();
        settleWaiters();
      }),
    stats: () => ({ ...stats }),
  });
}
