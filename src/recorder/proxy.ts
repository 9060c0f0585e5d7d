import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import {
  brotliDecompress,
  gunzip,
  inflate,
  inflateRaw,
  type ZlibOptions,
  constants as zlibConstants,
} from "node:zlib";
import { connectHostOf } from "../connect-host.js";
import type { Store } from "../db/client.js";
import { ownerName } from "../host-identity.js";
import type { Logger } from "../log.js";
import { creditsToUnitsOrNull } from "../money.js";
import { cutText } from "../printable-text.js";
import { type Receipt, recordReceiptAtAttemptUnit } from "../store/receipts.js";
import {
  type Asked,
  answerCharset,
  type BodyFacts,
  charsetFails,
  completionAsked,
  createSseFacts,
  jsonBodyFacts,
  otherKindFacts,
  scannedBodyFacts,
  sseFacts,
  unknownBody,
  unknownUsage,
  unreadableBody,
} from "./answer-facts.js";
import { codingsOf } from "./content-codings.js";
import type { JobsApiClient } from "./jobs-api.js";
import { createJobsApiConsults } from "./jobs-api-consults.js";
import { createJsonAnswerScan, type JsonAnswerScan } from "./json-answer-scan.js";
import { keyIdentity } from "./key-fingerprint.js";
import { unreadAmount } from "./operator-values.js";
import {
  addressOrNull,
  jobIdPattern,
  maxTags,
  maxTagValueLength,
  signatureFields,
  signaturesOrNull,
  tagNamePattern,
  wireReceiptOf,
} from "./receipt-input.js";
import { createReceiptWriter, type ReceiptWriter, type RunOptions } from "./receipt-writer.js";
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
} from "./request-facts.js";
import { createDataCount, createDoneWatch } from "./sse-tail.js";
import { credentialsOf, holdsAnyKey, withoutAnyKey, withoutKeys } from "./without-key.js";

const zlibAsync = {
  gunzip: promisify(gunzip),
  brotli: promisify(brotliDecompress),
  inflate: promisify(inflate),
  inflateRaw: promisify(inflateRaw),
};

/** zlib's zstd decoder, where this Node has one (22.15, 23.8 and later); none on Node 20. */
const zstdDecompress = (zlib as { zstdDecompress?: typeof inflate }).zstdDecompress;
const zstdAsync = zstdDecompress === undefined ? undefined : promisify(zstdDecompress);
const createZstd = (zlib as { createZstdDecompress?: () => zlib.Inflate }).createZstdDecompress;

/**
 * The facts of a request body sent with a `content-encoding` the upstream decodes (gzip,
 * deflate, br, in the order listed): read as no request, it would count an answer's every
 * choice and its audio, and the operator, who sees the encoding, could fill the choices the
 * caller never asked for. Decoded up to the size a body is read at; an encoding not known
 * here, or a body that does not decode, asks nothing known. Decoded on the thread pool: a
 * 67-byte brotli body decodes to the 10 MiB cap in about 70 ms, which on the event loop held
 * every request the process serves.
 */
export async function requestFactsOfEncoded(
  body: Buffer,
  encoding: string | undefined,
  shape: AnswerShape = "choices",
): Promise<RequestFacts> {
  let bytes = body;
  try {
    // Each output chunk is a hop back to the event loop: at 16 KiB (the default) 10 MiB came
    // back in 640 hops costing the loop nearly what decoding it there did.
    const options = { maxOutputLength: maxRequestFactsBytes, chunkSize: 256 * 1024 };
    for (const coding of codingsOf(encoding).reverse()) {
      if (coding === "gzip" || coding === "x-gzip") bytes = await zlibAsync.gunzip(bytes, options);
      else if (coding === "br") bytes = await zlibAsync.brotli(bytes, options);
      else if (coding === "deflate") bytes = await inflated(bytes, options);
      else return noRequestFacts;
    }
  } catch {
    return noRequestFacts;
  }
  return requestFactsOfBytes(bytes, shape);
}

/** HTTP's deflate is zlib-wrapped; some clients send the raw stream under that name. */
async function inflated(bytes: Buffer, options: ZlibOptions): Promise<Buffer> {
  try {
    return await zlibAsync.inflate(bytes, options);
  } catch (e) {
    if (e instanceof RangeError) throw e;
    return zlibAsync.inflateRaw(bytes, options);
  }
}

/** The codings fetch (undici) decodes; any other it is sent makes it decode none. */
const fetchCodings = new Set(["gzip", "x-gzip", "deflate", "br"]);
/**
 * The codings httpx decodes (br where the `brotli` package is installed, zstd where
 * `zstandard` is); others it skips, `identity` too. The OpenAI Python SDK requires neither
 * package (it asks for plain `httpx`), so a default install reads a br answer as its bytes came:
 * no JSON and no events, and its customer gets an exception where Node's fetch decodes it.
 */
const httpxCodings = new Set(["gzip", "deflate", "br", "zstd"]);
/** The codings httpx may be built without, read apart by its clients for that. */
const httpxOptional = ["br", "zstd"];
/** fetch fails its read of an answer naming more codings than this. */
const fetchMaxCodings = 5;

/**
 * How a client reads an answer sent with `encoding` (`content-encoding`, which the proxy asked
 * to be `identity` but passes on as it came): "plain" when it decodes nothing, the codings to
 * undo when it decodes each, or "unknown" when clients differ. fetch decodes nothing when any
 * coding named is one it does not know (an empty one and `identity` among them) and fails past
 * five codings; httpx skips what it does not know (`x-gzip` among them) and decodes the rest;
 * br and zstd not every httpx decodes (`httpxOptional`), and zstd this proxy cannot. The proxy
 * asks its upstream for `identity`: an honest one sends neither.
 */
export function answerCodings(encoding: string | undefined): string[] | "plain" | "unknown" {
  if (encoding === undefined) return "plain";
  const named = encoding.split(",").map((c) => c.trim().toLowerCase());
  if (named.length > fetchMaxCodings) return "unknown";
  const byFetch = named.every((c) => fetchCodings.has(c)) ? named : [];
  const byHttpx = named.filter((c) => httpxCodings.has(c));
  if (byFetch.join() !== byHttpx.join() || named.some((c) => httpxOptional.includes(c))) {
    return "unknown";
  }
  return byFetch.length === 0 ? "plain" : byFetch;
}

/**
 * The bytes a client's HTTP layer hands its SDK for an answer coded with `codings` (undone
 * last first), as fetch decodes them: leniently at the end (a body cut short decodes as far as
 * it goes), so only bytes that are no such coding fail. Null when they fail: the client's read
 * fails, and it got no answer. "too_long" past the size an answer is held at.
 */
export async function decodedAnswer(
  bytes: Buffer,
  codings: string[],
  client: "fetch" | "httpx" = "fetch",
): Promise<Buffer | null | "too_long" | "unknown"> {
  const zlibOptions = {
    maxOutputLength: maxJsonCapture,
    chunkSize: 256 * 1024,
    finishFlush: zlibConstants.Z_SYNC_FLUSH,
  };
  const brotliOptions = {
    maxOutputLength: maxJsonCapture,
    chunkSize: 256 * 1024,
    finishFlush: zlibConstants.BROTLI_OPERATION_FLUSH,
  };
  let out = bytes;
  try {
    for (const coding of [...codings].reverse()) {
      // httpx's decompressor reads a gzip body's first member and leaves the rest unused.
      if (coding === "gzip" && client === "httpx") out = await firstGzipMember(out, zlibOptions);
      else if (coding === "gzip" || coding === "x-gzip")
        out = await zlibAsync.gunzip(out, zlibOptions);
      else if (coding === "br") out = await zlibAsync.brotli(out, brotliOptions);
      // Bytes that are no zstd frame (plain JSON under the label) fail the read of a client
      // that undoes zstd; a frame is undone where this Node can, else its reading is unknown.
      else if (coding === "zstd") {
        if (!zstdFramed(out)) return null;
        if (zstdAsync === undefined) return "unknown";
        out = await zstdAsync(out, { maxOutputLength: maxJsonCapture });
      }
      // httpx takes zlib's wrapping, and raw deflate when that fails.
      else if (client === "httpx") out = await inflated(out, zlibOptions);
      // fetch reads zlib's wrapping when the first byte names its method, else raw deflate.
      else if (((out[0] ?? 0) & 0x0f) === 0x08) out = await zlibAsync.inflate(out, zlibOptions);
      else out = await zlibAsync.inflateRaw(out, zlibOptions);
    }
  } catch (e) {
    return e instanceof RangeError ? "too_long" : null;
  }
  return out;
}

/**
 * The first member of a gzip body, as httpx reads it (zlib's decompressor ends with the member
 * and leaves what follows unused), where Node's gunzip goes on into every member after it.
 */
async function firstGzipMember(bytes: Buffer, options: ZlibOptions): Promise<Buffer> {
  const at = gzipHeaderLength(bytes);
  if (typeof at !== "number") throw new Error("no gzip header");
  return zlibAsync.inflateRaw(bytes.subarray(at), options);
}

/** The length of the gzip header `bytes` open with, "more" where they end within it. */
function gzipHeaderLength(bytes: Buffer): number | "more" | "bad" {
  if (bytes.length < 4) return bytes.length > 0 && bytes[0] !== 0x1f ? "bad" : "more";
  const flags = bytes[3] ?? 0;
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b || bytes[2] !== 8 || (flags & 0xe0) !== 0) {
    return "bad";
  }
  if (bytes.length < 10 || ((flags & 0x04) !== 0 && bytes.length < 12)) return "more";
  let at = (flags & 0x04) !== 0 ? 12 + bytes.readUInt16LE(10) : 10;
  for (const field of [0x08, 0x10]) {
    if ((flags & field) === 0) continue;
    const end = bytes.indexOf(0, at);
    if (end < 0) return "more";
    at = end + 1;
  }
  if ((flags & 0x02) !== 0) at += 2;
  return at > bytes.length ? "more" : at;
}

/**
 * Whether `bytes` open with a zstd frame (or a skippable frame, which a zstd reader passes
 * over): what a client that undoes zstd decodes, where any other bytes fail its read.
 */
function zstdFramed(bytes: Buffer): boolean {
  if (bytes.length < 4) return false;
  if (bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f && bytes[3] === 0xfd) return true;
  return (
    ((bytes[0] ?? 0) & 0xf0) === 0x50 && bytes[1] === 0x2a && bytes[2] === 0x4d && bytes[3] === 0x18
  );
}

/**
 * The codings each client undoes for an answer sent with `encoding`, where fetch and httpx read
 * it apart (`answerCodings` "unknown"), or "fails" where its read fails whatever the bytes:
 * fetch (decoding none when it does not know a coding, failing past five since undici 6.23; a
 * newer undici knows zstd), and httpx with and without brotli and zstandard (skipping what it
 * does not know).
 */
function clientCodingLists(
  encoding: string,
): { client: "fetch" | "httpx"; codings: string[] | "fails" }[] {
  const named = encoding.split(",").map((c) => c.trim().toLowerCase());
  const tooMany = named.length > fetchMaxCodings;
  const fetchList = (known: (c: string) => boolean) =>
    tooMany ? ("fails" as const) : named.every(known) ? named : [];
  return [
    // Before undici 6.23 (Node 20.18) fetch undid any number of codings.
    { client: "fetch", codings: named.every((c) => fetchCodings.has(c)) ? named : [] },
    { client: "fetch", codings: fetchList((c) => fetchCodings.has(c)) },
    { client: "fetch", codings: fetchList((c) => fetchCodings.has(c) || c === "zstd") },
    { client: "httpx", codings: named.filter((c) => httpxCodings.has(c)) },
    { client: "httpx", codings: named.filter((c) => httpxCodings.has(c) && c !== "zstd") },
    { client: "httpx", codings: named.filter((c) => httpxCodings.has(c) && c !== "br") },
    {
      client: "httpx",
      codings: named.filter((c) => httpxCodings.has(c) && !httpxOptional.includes(c)),
    },
  ];
}

/**
 * What each client reads of an answer its clients read apart: each distinct reading once (none
 * when every client's read fails), and whether every client read that one reading alike; or
 * "unknown" where one reading cannot be known here (a real zstd frame on a Node without zstd, a
 * body that decodes past the size an answer is held at). Read as unknown whatever the bytes, an operator's plain JSON
 * under `content-encoding: zstd`, which Node's fetch reads as it is, was charged the lock for
 * `Hi.` and passed as unproven.
 */
export async function clientReadings(
  bytes: Buffer,
  encoding: string,
): Promise<
  | {
      readings: Buffer[];
      tooLong: { client: "fetch" | "httpx"; codings: string[] }[];
      agreed: boolean;
    }
  | "unknown"
> {
  const readings: Buffer[] = [];
  const tooLong: { client: "fetch" | "httpx"; codings: string[] }[] = [];
  let failed = false;
  // Each reading once: fetch's three lists are often the same (`x-gzip`), and an answer
  // decoding to 256 MiB took a second of CPU each time it was read again.
  const seen = new Set<string>();
  for (const { client, codings } of clientCodingLists(encoding)) {
    if (codings === "fails") {
      failed = true;
      continue;
    }
    const key = `${client}:${codings.join()}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const read = codings.length === 0 ? bytes : await decodedAnswer(bytes, codings, client);
    if (read === "unknown") return "unknown";
    // Past the size an answer is held at: read as it decodes, by the caller.
    if (read === "too_long") {
      tooLong.push({ client, codings });
    } else if (read === null) failed = true;
    else if (!readings.some((r) => r.equals(read))) readings.push(read);
  }
  return { readings, tooLong, agreed: !failed && readings.length === 1 && tooLong.length === 0 };
}

/** A gzip header's most bytes read (its name and comment can run on): httpx's read is taken as failed past it. */
const maxGzipHeader = 1024 * 1024;

/** The most an answer is decoded to as it is read past the size it is held at. */
const maxDecodedRead = 256 * 1024 * 1024;

/** A decoder of an answer's codings fed as its bytes come (see `createDecoder`). */
interface AnswerDecoder {
  write(chunk: Buffer): void;
  /** Resolves once every byte written is decoded and handed on. */
  end(): Promise<"ok" | "failed" | "too_long">;
}

/**
 * Undoes `codings` (last first) as fetch does on the bytes written to it, in turn, handing the
 * decoded bytes to `onChunk` as they come, so an answer longer than one is held is read as it
 * passes, as a plain one is: "failed" where the bytes are no such coding (its client's read
 * fails), and "too_long" past `maxDecodedRead` (or a zstd stage this Node cannot run).
 */
function createDecoder(
  codings: string[],
  onChunk: (chunk: Buffer) => void,
  client: "fetch" | "httpx" = "fetch",
): AnswerDecoder {
  let outcome: "ok" | "failed" | "too_long" = "ok";
  // A zstd stage this Node cannot run: nothing of the answer is known.
  if (codings.includes("zstd") && createZstd === undefined) outcome = "too_long";
  let decodedBytes = 0;
  type Sink = { write(chunk: Buffer): void; end(): Promise<void> };
  const last: Sink = {
    write(chunk) {
      if (outcome !== "ok") return;
      decodedBytes += chunk.length;
      if (decodedBytes > maxDecodedRead) outcome = "too_long";
      else onChunk(chunk);
    },
    end: async () => {},
  };
  const stageOf = (coding: string, next: Sink): Sink => {
    let made: {
      stream: zlib.Gunzip | zlib.BrotliDecompress | zlib.Inflate | zlib.InflateRaw;
      ended: Promise<void>;
    } | null = null;
    const make = (first: number) => {
      const flush = { finishFlush: zlibConstants.Z_SYNC_FLUSH };
      const stream =
        coding === "zstd" && createZstd !== undefined
          ? createZstd()
          : coding === "gzip" && client === "httpx"
            ? zlib.createInflateRaw(flush)
            : coding === "gzip" || coding === "x-gzip"
              ? zlib.createGunzip(flush)
              : coding === "br"
                ? zlib.createBrotliDecompress({ finishFlush: zlibConstants.BROTLI_OPERATION_FLUSH })
                : (first & 0x0f) === 0x08
                  ? zlib.createInflate(flush)
                  : zlib.createInflateRaw(flush);
      stream.on("data", (chunk: Buffer) => {
        next.write(chunk);
        if (outcome !== "ok") stream.destroy();
      });
      const ended = new Promise<void>((resolve) => {
        stream.on("end", resolve);
        stream.on("close", resolve);
        stream.on("error", () => {
          if (outcome === "ok") outcome = "failed";
          resolve();
        });
      });
      return { stream, ended };
    };
    // httpx reads a gzip body's first member alone: its header skipped, its deflate data
    // inflated raw, which ends with the member and leaves what follows unread.
    let header: Buffer | null = coding === "gzip" && client === "httpx" ? Buffer.alloc(0) : null;
    return {
      write(chunk) {
        if (outcome !== "ok" || chunk.length === 0) return;
        if (header !== null) {
          header = Buffer.concat([header, chunk]);
          const at = gzipHeaderLength(header);
          if (at === "more" && header.length > maxGzipHeader) outcome = "failed";
          if (at === "more") return;
          if (at === "bad") {
            outcome = "failed";
            return;
          }
          chunk = header.subarray(at);
          header = null;
          made = make(0);
          if (chunk.length === 0) return;
        }
        made ??= make(chunk[0] ?? 0);
        made.stream.write(chunk);
      },
      async end() {
        if (header !== null && header.length > 0 && outcome === "ok") outcome = "failed";
        if (made !== null) {
          made.stream.end();
          await made.ended;
        }
        await next.end();
      },
    };
  };
  let head = last;
  for (const coding of codings) head = stageOf(coding, head);
  return {
    write(chunk) {
      if (outcome === "ok") head.write(chunk);
    },
    async end() {
      await head.end();
      return outcome;
    },
  };
}

/** `createDecoder` over the whole of `bytes`. */
async function decodeInto(
  bytes: Buffer,
  codings: string[],
  onChunk: (chunk: Buffer) => void,
  client: "fetch" | "httpx" = "fetch",
): Promise<"ok" | "failed" | "too_long"> {
  const decoder = createDecoder(codings, onChunk, client);
  const slice = 256 * 1024;
  for (let at = 0; at < bytes.length; at += slice) decoder.write(bytes.subarray(at, at + slice));
  return decoder.end();
}

/** The length of `bytes` decoded as `client` decodes them; null where that fails. */
async function decodedLength(
  bytes: Buffer,
  codings: string[],
  client: "fetch" | "httpx",
): Promise<number | null> {
  let length = 0;
  const outcome = await decodeInto(
    bytes,
    codings,
    (c) => {
      length += c.length;
    },
    client,
  );
  return outcome === "ok" ? length : null;
}

/** Options of the recording proxy; every optional one has a default. */
export interface RecordingProxyOptions {
  store: Store;
  log: Logger;
  /** `DECENTRAL_BASE_URL`, e.g. `https://api.usedecentral.org/v1`: `/v1/x` goes to `<base>/x`. */
  upstreamBaseUrl: string;
  /** Jobs API client used right after each response with the caller's authorization. */
  jobsApi?: JobsApiClient;
  /** Clock (epoch ms). Default `Date.now`. */
  now?: () => number;
  /**
   * Delays of the jobs API retries made with the caller's key after a response ends, while
   * the settlement signature is still missing. Default [250, 1000, 3000] ms; the background
   * backfill takes over after these.
   */
  jobsApiRetryDelaysMs?: number[];
  /** Largest request body forwarded, in bytes. Default 10 MiB. */
  maxRequestBytes?: number;
  /**
   * The receipt writer shared with ingest (group commits, bounded backlog). Default: one of
   * the proxy's own over `store`, closed with the proxy.
   */
  writer?: ReceiptWriter;
  /** Sockets kept open to the upstream. Default 256. */
  maxSockets?: number;
  /**
   * How long the answer of a request whose client left before it came is waited for (until it
   * is over), in ms: the job runs and is charged all the same, and its answer names it. Default
   * 300000: Decentral answers a job it gave up on with a 504 after 120 s.
   */
  abandonedWaitMs?: number;
  /** Called once per proxied response when it ends (metrics). Default none. */
  observe?: (sample: {
    status: number;
    stream: boolean;
    durationSeconds: number;
    ttfbSeconds?: number;
  }) => void;
}

export interface RecordingProxy {
  /**
   * Handles one `/v1/*` request on a Node HTTP server. Resolves when the response is over with
   * the status sent to the client (0 when the client left before any was sent). `requestId`,
   * the id its request is logged under, is told the caller in every error the proxy answers
   * itself (a forwarded answer carries the upstream's headers).
   */
  handle(req: IncomingMessage, res: ServerResponse, requestId?: string): Promise<number>;
  /**
   * Resolves when every response in flight has ended and been recorded, and its jobs API calls
   * are done.
   */
  idle(): Promise<void>;
  /**
   * Waits up to `withinMs` for the requests in flight to record their outcome, then ends the
   * upstream requests whose client has left and whose answer is not over (one that has not
   * begun names no job, so nothing of it is recorded; one begun is recorded as aborted). A stop
   * calls it once its connections are closed.
   */
  drain(withinMs: number): Promise<void>;
  /**
   * Closes upstream keep-alive sockets and waits for background work; the jobs API is waited
   * for about a second at most, and the jobs it did not answer about are left to the backfill.
   * An upstream request whose client left and whose answer is not over is ended first.
   */
  close(): Promise<void>;
  /** The writer the proxy records through. */
  readonly writer: ReceiptWriter;
}

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1). */
const hopByHop = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

const tagPrefix = "x-audit-tag-";
/** Body bytes kept to read usage: the whole JSON body, or the tail of an SSE stream. */
const maxJsonCapture = 8 * 1024 * 1024;
const sseTailBytes = 64 * 1024;
/**
 * Most of a stream read, and held, while its open receipt commits. Bytes left unread in the
 * socket meanwhile were lost when the upstream reset its connection right after the stream's
 * end: its client got a broken stream the upstream had sent whole.
 */
const earlyStreamBytes = 1024 * 1024;
/**
 * Largest head (status line and headers) read from an upstream answer, in bytes. Node's own
 * limit, 16 KiB, would refuse an answer with one long unrelated header after the upstream ran
 * and charged its job, which then could not be recorded; the job's own headers are short.
 */
export const maxUpstreamHeaderBytes = 256 * 1024;

export { keyFingerprint } from "./key-fingerprint.js";
export { type AnswerShape, answerShapeOf, offeredKind } from "./request-facts.js";

/**
 * A body too long to hold, not typed as events, to a completion request that asked to stream, as its
 * client reads it (see `otherKindFacts`): `dataBytes`, its `data:` values up to `[DONE]`, bound
 * the answer (their JSON included, as for a stream longer than its tail); none is an answer of no
 * bytes. Its usage is not read: an answer of the other kind is bounded by its bytes. Under a
 * charset some Python clients decode it by and fail (`charsetFails`) it holds no events, as one
 * held whole does (`otherKindFacts`): counted, 9 MiB of data under `charset=utf-16` bounded its
 * charge, `partially_verified`, for a Python customer's exception.
 */
function otherDataFacts(
  dataBytes: number,
  usageAsked: boolean,
  charset: string | null | undefined,
): { facts: BodyFacts; usageOwed: boolean } {
  if (charsetFails(charset, false)) dataBytes = 0;
  return {
    facts: { ...unknownBody, answerBytes: dataBytes, answerToolCalls: dataBytes === 0 ? 0 : null },
    usageOwed: dataBytes === 0 || usageAsked,
  };
}

/**
 * A `.` or `..` path segment, plain or percent-encoded, with `\` and an encoded `/` or `\` taken
 * as separators (servers in front of an upstream may decode or fold them before resolving).
 */
const dotSegment = /(?:^|\/|\\|%2f|%5c)(?:\.|%2e){1,2}(?:\/|\\|%2f|%5c|$)/i;

/**
 * The origin-form (`/v1/...`) of a request target. An absolute-form one (`http://host/v1/...`,
 * which HTTP/1.1 allows and a client sends to what it takes for an HTTP proxy) is read as its
 * path only when it names the upstream's host: sent on as the upstream's, its key went where its
 * client meant. Any other host is `null` (refused): its key is for someone else, and the path of
 * a URL is no `/v1/` path (cut as one, it reached the upstream as `/v1p://host/v1/...`).
 */
function originForm(url: string, upstreamHost: string): string | null {
  if (url.startsWith("/")) return url;
  const absolute = /^(https?):\/\/([^/?#@]+)(\/[^#]*)?$/i.exec(url);
  if (!absolute) return null;
  let host: string;
  try {
    host = new URL(`${absolute[1]}://${absolute[2]}`).host;
  } catch {
    return null;
  }
  const path = absolute[3] ?? "/";
  // `api.example.` is `api.example` fully qualified: the same upstream, not another host.
  return sameHost(host, upstreamHost) && path.startsWith("/v1/") ? path : null;
}

/** Two `host[:port]`s with the names' trailing dots aside. */
function sameHost(a: string, b: string): boolean {
  const fold = (host: string) => host.replace(/\.+(?=:\d+$|$)/, "");
  return fold(a) === fold(b);
}

/**
 * A refused request target without the user and password it may carry
 * (`http://user:pass@host/...`, `user:pass@host:443`), which are never echoed: everything up to
 * its last `@` after the scheme goes, as a password may itself hold `@` or `/`.
 */
function withoutUserinfo(target: string): string {
  if (target.startsWith("/")) return target;
  return target.replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/is, "$1");
}

/**
 * Does a request target name a user (and password) before its host: `http://user:pass@host/...`
 * or the authority form `user:pass@host:443`? An origin-form target (`/v1/...`) never does.
 */
function carriesUserinfo(target: string): boolean {
  if (target.startsWith("/")) return false;
  return /^(?:[a-z][a-z0-9+.-]*:\/\/)?[^/?#]*@/i.test(target);
}

/** Does the answer carry this header with a value (not empty)? */
function named(res: IncomingMessage, name: string): boolean {
  const value = res.headers[name];
  return (Array.isArray(value) ? value.join("") : (value ?? "")).trim() !== "";
}

/**
 * The path of a request target, without its query: what a log line may say of it. The query can
 * carry the caller's key (`?api_key=`), which is never written anywhere.
 */
function pathPart(url: string): string {
  const query = url.indexOf("?");
  return query < 0 ? url : url.slice(0, query);
}

/**
 * A receipt header's value; null when absent or above 200 characters. Node joins a header sent
 * several times with ", ": the same value sent twice is that value, different ones stay joined
 * (and fail every check of a signature, wallet or job id).
 */
function header(res: IncomingMessage, name: string): string | null {
  const value = res.headers[name];
  let text = Array.isArray(value) ? value[0] : value;
  if (text?.includes(",")) {
    const values = [...new Set(res.headersDistinct[name]?.map((v) => v.trim()))];
    if (values.length === 1) text = values[0];
  }
  return text && text.length > 0 && text.length <= 200 ? text.trim() : null;
}

/**
 * A signature header's value, every line of it joined with ", " (as a client reads it), for
 * `signaturesOrNull`: a header sent twice with different signatures names a second lock or
 * settlement, which is kept rather than read as one malformed value. Null when absent or empty.
 */
function signatureHeader(res: IncomingMessage, name: string): string | null {
  // Node joins the lines of a header it does not know with ", ", as `headersDistinct` would:
  // read from `headers`, no second map of every header is built for each answer.
  const value = res.headers[name];
  const text = (Array.isArray(value) ? value.join(", ") : value)?.trim();
  return text ? text : null;
}

/** A header value read as latin1, decoded as UTF-8 when its bytes are valid UTF-8. */
function utf8Header(value: string): string {
  const bytes = Buffer.from(value, "latin1");
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return value;
  }
}

/**
 * How many times the request gave `Authorization`, counted in the raw headers (Node keeps the
 * first and drops the others; `headersDistinct` builds an object of every header, on every
 * request). Another key header given twice is forwarded joined, as Node joins it.
 */
function authorizationCount(req: IncomingMessage): number {
  const raw = req.rawHeaders;
  let times = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 13 && name.toLowerCase() === "authorization") times++;
  }
  return times;
}

/**
 * The tags of a request: `x-audit-tag-<name>: <value>` headers, names lowercased. A Decentral
 * key in a tag is never stored: cut from a value, and a name holding one leaves its tag out.
 */
function tagsOf(req: IncomingMessage, credentials: string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  let count = 0;
  for (const [name, value] of Object.entries(req.headers)) {
    if (!name.startsWith(tagPrefix) || value === undefined) continue;
    // Ingest's rules, so a proxied receipt can be posted again as it is; the request is the
    // customer's and goes on, so a tag ingest would refuse is left out rather than refused.
    const tag = name.slice(tagPrefix.length);
    if (!tagNamePattern.test(tag) || holdsAnyKey(tag)) continue;
    // Node reads header bytes as latin1: a value sent as UTF-8 (Arabic, CJK, emoji) is decoded
    // as such, so it is kept as the client wrote it rather than as mojibake.
    const raw = Array.isArray(value) ? value.join(", ") : value;
    // Cut as ingest counts, never inside a surrogate pair (half of one is no character).
    tags[tag] = withoutAnyKey(
      withoutKeys(cutText(utf8Header(raw), maxTagValueLength, "") ?? "", credentials),
    );
    if (++count === maxTags) break;
  }
  return tags;
}

/**
 * The header names a `Connection` header lists beyond the usual `keep-alive` / `close` (both
 * hop-by-hop anyway), lowercased; null when it lists none, as nearly every request does.
 */
function connectionTokensOf(value: string | undefined): Set<string> | null {
  if (value === undefined) return null;
  const lower = value.toLowerCase();
  if (lower === "keep-alive" || lower === "close") return null;
  const tokens = new Set(
    lower
      .split(",")
      .map((t) => t.trim())
      .filter(Boolean),
  );
  return tokens.size > 0 ? tokens : null;
}

/**
 * The headers of the upstream request, as name, value pairs in a flat list: the same lines Node
 * writes for an object of them, without its copy of each into the request's own header map
 * (14 of 63 us of CPU per request for the request's client side, on this host).
 */
function forwardedRequestHeaders(req: IncomingMessage, host: string, bodyLength: number): string[] {
  const headers = req.headers;
  const connectionTokens = connectionTokensOf(headers.connection);
  const out: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || hopByHop.has(name) || connectionTokens?.has(name)) continue;
    // `x-audit-*` headers are ours (tags, our access token): never sent to Decentral. The
    // recorder reads usage from the body, so the body must come back uncompressed.
    if (name === "host" || name === "content-length" || name === "accept-encoding") continue;
    if (name.startsWith("x-audit-")) continue;
    if (typeof value === "string") out.push(name, value);
    // A list (`set-cookie`) goes as one line a value, as Node writes it from an object.
    else for (const one of value) out.push(name, one);
  }
  out.push("host", host, "accept-encoding", "identity");
  if (bodyLength > 0 || req.method === "POST" || req.method === "PUT" || req.method === "PATCH") {
    out.push("content-length", String(bodyLength));
  }
  return out;
}

function forwardedResponseHeaders(upstream: IncomingMessage): string[] {
  const connectionTokens = connectionTokensOf(upstream.headers.connection);
  const raw = upstream.rawHeaders;
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (hopByHop.has(lower) || connectionTokens?.has(lower)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

/** An error of Node's HTTP parser: bytes came, but they are no HTTP answer it accepts. */
function isParseError(
  error: NodeJS.ErrnoException,
): error is NodeJS.ErrnoException & { rawPacket?: unknown } {
  return typeof error.code === "string" && error.code.startsWith("HPE_");
}

/**
 * Keeps the chunks of an answer's head as they come (up to maxUpstreamHeaderBytes), until its
 * head is read. A head the parser refuses as too long fails in a later chunk than the one that
 * named the job: the chunk it reports (`rawPacket`) alone holds no job id to log.
 */
function keepHeadBytes(request: http.ClientRequest): () => Buffer[] {
  const chunks: Buffer[] = [];
  let kept = 0;
  const keep = (chunk: Buffer) => {
    if (kept >= maxUpstreamHeaderBytes) return;
    chunks.push(chunk);
    kept += chunk.length;
  };
  request.once("socket", (socket) => {
    socket.on("data", keep);
    const stop = () => socket.off("data", keep);
    request.once("response", stop);
    request.once("close", stop);
  });
  return () => chunks;
}

/** The bytes of a refused head: those read before the chunk the parser refused, and that chunk. */
function headBytes(before: Buffer[], refused: unknown): Buffer | undefined {
  if (!Buffer.isBuffer(refused)) return before.length > 0 ? Buffer.concat(before) : undefined;
  // The parser reads a chunk before this process keeps it: it is not among those kept yet.
  return Buffer.concat(before.at(-1) === refused ? before : [...before, refused]);
}

/**
 * The status and receipt headers found in the bytes an answer's parser refused, each cut to
 * 200 characters: the bytes kept may hold only part of the head, so each may be missing.
 * They are logged, and the operator writes them: the caller's `credentials` are cut out first.
 */
export function answerFactsOf(raw: unknown, credentials: string[]): Record<string, string> {
  if (!Buffer.isBuffer(raw)) return {};
  const facts: Record<string, string> = {};
  const head = raw.subarray(0, maxUpstreamHeaderBytes).toString("latin1");
  const status = /^HTTP\/\d\.\d (\d{3})/.exec(head);
  if (status?.[1]) facts.status = status[1];
  const names: Record<string, string> = {
    "x-decentral-job-id": "jobId",
    "x-decentral-tx-signature": "escrowTx",
    "x-decentral-settlement-tx": "settlementTx",
  };
  for (const line of head.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const field = names[line.slice(0, colon).trim().toLowerCase()];
    if (field && !(field in facts))
      facts[field] = withoutKeys(line.slice(colon + 1).trim(), credentials).slice(0, 200);
  }
  return facts;
}

/** The id each response's request is logged under, as `handle` was given it. */
const requestIds = new WeakMap<ServerResponse, string>();

/**
 * An error of the proxy itself, in the OpenAI shape the SDKs read (`error.message`, `type`,
 * `code`); a 503 carries `retry-after` and Decentral's `details.retry_after`. Its request id is
 * beside `error` and in `x-request-id`, as on every error of the audit API: a 502 is found in
 * the log by what the client saw.
 */
function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  retryAfterSeconds?: number,
) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (res.destroyed) return;
  const type = status >= 500 ? "server_error" : "invalid_request_error";
  const error: Record<string, unknown> = { code, message, type, param: null };
  if (retryAfterSeconds !== undefined) error.details = { retry_after: retryAfterSeconds };
  const requestId = requestIds.get(res);
  const body = JSON.stringify(requestId === undefined ? { error } : { error, requestId });
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...(requestId === undefined ? {} : { "x-request-id": requestId }),
    ...(retryAfterSeconds !== undefined ? { "retry-after": String(retryAfterSeconds) } : {}),
  });
  res.end(body);
}

/** What a receipt learns from its request. */
interface Learnt {
  facts: RequestFacts;
  tags: Record<string, string>;
  /** The caller's key fingerprint and key check (never the key). */
  key: { fingerprint: string; check: string } | null;
}

/** Stands for the facts of a request whose answer records nothing. */
const unneeded: Learnt = { facts: noRequestFacts, tags: {}, key: null };

/** A request's receipt time, shared by its writes: the first one's commit sets it. */
interface ReceiptStamp {
  /** The time the first write was dated by, once it committed. */
  at: number | null;
  /** The first write, settled (never rejected) once it committed or failed. */
  first: Promise<void> | null;
}

/** A receipt as a log line can hold it (amounts in base units as decimal strings). */
function loggable(receipt: Receipt): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(receipt).map(([key, value]) => [
      key,
      typeof value === "bigint" ? value.toString() : value,
    ]),
  );
}

/**
 * The recording proxy: forwards `/v1/*` to the Decentral API unchanged (hop-by-hop and
 * `x-audit-tag-*` headers aside, and `accept-encoding: identity` so the body can be read),
 * streams responses chunk by chunk, and records a receipt for every response carrying
 * `x-decentral-job-id`: opened as soon as the headers arrive, completed when the body ends.
 * It then asks the jobs API about the job with the caller's authorization, which lives only
 * in this request's closure. The key is never stored, logged or echoed in an error.
 */
export function createRecordingProxy(options: RecordingProxyOptions): RecordingProxy {
  const { store, log } = options;
  const now = options.now ?? Date.now;
  const base = new URL(options.upstreamBaseUrl);
  const basePath = base.pathname.replace(/\/+$/, "");
  const secure = base.protocol === "https:";
  const transport = secure ? https : http;
  const agent = new (secure ? https.Agent : http.Agent)({
    keepAlive: true,
    maxSockets: options.maxSockets ?? 256,
    maxFreeSockets: 64,
    scheduling: "lifo",
    // An idle socket is dropped before the upstream closes it: a request is never sent twice
    // (see onError), so one written into a socket the upstream was closing would fail with a
    // 502. With a timeout set, Node also honours the answer's `Keep-Alive: timeout=N` hint
    // (dropping the socket a second before N). A request in flight is not cut by it.
    timeout: 4000,
  });
  const hostHeader = base.host;
  const upstreamHost = connectHostOf(base);
  const retryDelays = options.jobsApiRetryDelaysMs ?? [250, 1000, 3000];
  const maxRequestBytes = options.maxRequestBytes ?? 10 * 1024 * 1024;
  const consultBatchMs = 100;
  // The proxy's own jobs API calls are short-lived; the background loop starts after this.
  const backfillDelayMs = retryDelays.reduce((a, b) => a + b, consultBatchMs) + 5000;

  // Every receipt goes through the writer's group commit, and the client's headers wait for
  // it: what a client was answered is on disk. The completion of a streamed job (usage,
  // capture state) is written after its bytes went out; the writer keeps the order.
  const writer = options.writer ?? createReceiptWriter(store, { log });
  const ownWriter = options.writer === undefined;
  // Named in each open capture, so that the capture of a process that died can be told from
  // one still streaming and ended (see src/recorder/open-receipts.ts); built once.
  const receiptWriter = ownerName("proxy");
  const consults =
    options.jobsApi &&
    createJobsApiConsults({
      jobsApi: options.jobsApi,
      writer,
      log,
      now,
      retryDelaysMs: retryDelays,
      batchMs: consultBatchMs,
    });

  /** Forwarded requests whose outcome is not recorded yet. */
  const inFlight = new Set<Promise<void>>();
  /** Ends each upstream request whose client left before its answer, while that is not over. */
  const abandoned = new Set<() => void>();
  const abandonedWaitMs = options.abandonedWaitMs ?? 300_000;
  const endAbandoned = () => {
    for (const end of [...abandoned]) end();
  };
  /** Tracks one forwarded request; the function returned marks its outcome recorded. */
  function track(): () => void {
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    inFlight.add(settled);
    void settled.then(() => inFlight.delete(settled));
    return settle;
  }

  /**
   * Writes a receipt of one request. Its time (`created_at`, which places the job in a period)
   * is taken inside the write transaction, at the request's first write, and kept by its later
   * ones (a stream's completion): rows are then committed in the order of their times, within
   * the few ms a transaction takes. Stamped when the request started, a job that ran for a
   * minute was committed a minute behind jobs stamped after it: a report's `dataCompleteUntil`
   * had called its period final, and a listing's cursor had passed it.
   */
  function writeReceipt(
    receipt: Receipt,
    stamp: ReceiptStamp,
    runOptions: RunOptions | undefined,
  ): Promise<unknown> {
    if (stamp.first === null) {
      const written = writer.run(
        recordReceiptAtAttemptUnit(receipt, null, backfillDelayMs, now),
        runOptions,
      );
      stamp.first = written.then(
        ({ at }) => {
          stamp.at = at;
        },
        () => {},
      );
      return written;
    }
    // Further signatures the answer named are kept by the first write, which the client's
    // answer waits for; a later one (a stream's completion) would keep each again, as another
    // conflicting receipt differing only in its usage. It is sent once the first is settled,
    // with that one's time, or, when the first was not written (its client answered 503), the
    // time the answer came, as that 503's import line dates it: dated when a full disk took
    // writes again, it failed `receipt.time` and was read in a period it did not run in.
    const { otherSignatures, ...later } = receipt;
    return stamp.first.then(() =>
      writer.run(
        recordReceiptAtAttemptUnit(
          later,
          stamp.at ?? later.respondedAt ?? null,
          backfillDelayMs,
          now,
        ),
        runOptions,
      ),
    );
  }

  function forward(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    target: string,
    requestId: string | undefined,
  ) {
    const settle = track();
    const started = performance.now();
    // The receipt's time, set by its first write (see writeReceipt).
    const stamp: ReceiptStamp = { at: null, first: null };
    // The writer names the request in its lines about one receipt (a PostgreSQL row lock).
    const runOptions: RunOptions | undefined = requestId === undefined ? undefined : { requestId };
    const authorization = req.headers.authorization;
    const path = basePath + target.slice("/v1".length);
    // What the operator's answer may echo and a log line must not show (see credentialsOf).
    const credentials = credentialsOf((name) => req.headers[name]);
    // For log lines: a key the caller put in the path is not written out.
    const loggedPath = () => withoutKeys(pathPart(path), credentials);
    // What the receipt learns from the request (its body, tags, key fingerprint) is needed only
    // once the upstream answers: it is worked out right after the request went out, not before.
    // A compressed body is decoded off the event loop (see requestFactsOfEncoded), and only for
    // an answer that names a job: nothing else reads it.
    const encoded = codingsOf(req.headers["content-encoding"]).length > 0;
    let learnt: Learnt | undefined;
    let learning: Promise<Learnt> | undefined;
    const learn = (facts: RequestFacts): Learnt =>
      (learnt ??= {
        facts,
        tags: tagsOf(req, credentials),
        key: keyIdentity(authorization),
      });
    const fromRequest = (): Learnt | Promise<Learnt> => {
      if (learnt) return learnt;
      // Read whatever the content type says: the upstream may take a text/plain body as JSON.
      const shape = answerShapeOf(pathPart(target));
      if (!encoded) return learn(requestFactsOfBytes(body, shape));
      learning ??= requestFactsOfEncoded(body, req.headers["content-encoding"], shape).then(learn);
      return learning;
    };
    if (!encoded) setImmediate(fromRequest);

    const open = () => {
      const request = transport.request({
        protocol: base.protocol,
        hostname: upstreamHost,
        port: base.port || (secure ? 443 : 80),
        method: req.method,
        path,
        headers: forwardedRequestHeaders(req, hostHeader, body.length),
        agent,
        maxHeaderSize: maxUpstreamHeaderBytes,
      });
      request.setNoDelay(true);
      headRead = keepHeadBytes(request);
      // Closed with no answer (and not sent again): nothing is left to record.
      request.once("close", () => {
        if (request === upstreamReq && !responded) {
          stopWaiting?.();
          settle();
        }
      });
      return request;
    };
    /** What of the answer's head came before the chunk its parser is reading (see keepHeadBytes). */
    let headRead: () => Buffer[] = () => [];
    let upstreamReq = open();
    let responded = false;
    let resent = false;

    let clientGone = false;
    let finished = false;
    /** Stops waiting for the answer of a client that left; undefined while none is waited. */
    let stopWaiting: (() => void) | undefined;
    res.on("close", () => {
      if (res.writableFinished || finished) return;
      clientGone = true;
      // Mid-answer (a stream the client stopped reading), the upstream request ends with it; so
      // does one not wholly sent yet (waiting for a pooled socket, or its body still going out):
      // the upstream has not started that job, and sending it now would charge one nobody waits
      // for, ahead of callers who do.
      if (responded || !upstreamReq.writableFinished) {
        upstreamReq.destroy();
        return;
      }
      // Left before the answer (an SDK timeout): the job runs and is charged all the same, and
      // only its answer's headers name it. The request stays open until the answer is over
      // (nothing of it goes to the client, whose socket is gone), within a bound (an upstream
      // that never answers, or never ends) and a stop's drain time.
      const end = () => {
        stopWaiting?.();
        log.warn(
          { requestId, path: loggedPath() },
          responded
            ? "the answer of a request whose client left did not end in time; recorded as aborted"
            : "no answer came for a request whose client left; its job, if any, is not recorded",
        );
        upstreamReq.destroy();
      };
      const timer = setTimeout(end, abandonedWaitMs);
      timer.unref();
      stopWaiting = () => {
        clearTimeout(timer);
        abandoned.delete(end);
        stopWaiting = undefined;
      };
      abandoned.add(end);
    });

    const onError = (error: NodeJS.ErrnoException) => {
      // Once the upstream answered, its response's own end or close decides what the client
      // gets and what is recorded: bytes after a complete body (a parse error) change neither.
      if (responded) {
        log.warn(
          { requestId, reason: error.message, path: loggedPath() },
          "upstream connection failed after its answer",
        );
        return;
      }
      if (clientGone) {
        settle();
        return;
      }
      // A kept-alive socket that fails before the request was wholly written (the upstream
      // closed it just as it was reused) carried no whole request: no job can have started,
      // so it goes once more on a fresh socket. Once the whole request was written, a reset
      // cannot tell a stale socket from an upstream that read the request, started the paid
      // job and then failed: sent again, the caller would pay twice and the first job would
      // have no receipt. So it is not sent again: 502, and the log says it may have run.
      const stale =
        !responded &&
        !resent &&
        upstreamReq.reusedSocket &&
        !upstreamReq.writableFinished &&
        (error.code === "ECONNRESET" || error.code === "EPIPE");
      if (stale) {
        resent = true;
        upstreamReq = open();
        upstreamReq.on("error", onError);
        upstreamReq.on("response", onResponse);
        upstreamReq.end(body);
        return;
      }
      if (isParseError(error)) {
        // An answer came but Node's parser refused its head (a header beyond
        // maxUpstreamHeaderBytes, a control character in a value): the upstream may have run
        // and charged the job, which cannot be recorded. What of it the bytes show is logged.
        log.error(
          {
            requestId,
            reason: error.message,
            code: error.code,
            path: loggedPath(),
            ...answerFactsOf(headBytes(headRead(), error.rawPacket), credentials),
          },
          "upstream answer came but could not be parsed; answering 502, its job is not recorded",
        );
        sendError(
          res,
          502,
          "upstream_answer_unreadable",
          "the Decentral API answered, but its answer could not be read; the response is withheld",
        );
        settle();
        return;
      }
      if (upstreamReq.writableFinished) {
        log.warn(
          { requestId, reason: error.message, code: error.code, path: loggedPath() },
          "upstream connection failed after the whole request was sent, before any answer: the job may have run and been charged; not sent again",
        );
      } else {
        log.warn(
          { requestId, reason: error.message, path: loggedPath() },
          "upstream request failed",
        );
      }
      sendError(res, 502, "upstream_unavailable", "the Decentral API could not be reached");
      settle();
    };
    upstreamReq.on("error", onError);

    /**
     * A receipt header read the way POST /jobs would read it: a malformed value is recorded as
     * unknown (and logged), never stored as if it were a signature or a wallet.
     */
    const wireValue = <T>(
      upstream: IncomingMessage,
      jobId: string | null,
      name: string,
      read: (text: string | null) => T | null,
      text = header(upstream, name),
    ): T | null => {
      const value = read(text);
      if (text !== null && value === null)
        log.warn(
          { requestId, path: loggedPath(), jobId, header: name },
          "malformed receipt header",
        );
      return value;
    };

    const loggedHeader = (upstream: IncomingMessage, name: string) =>
      withoutKeys(String(upstream.headers[name] ?? ""), credentials).slice(0, 200);

    const onResponse = (upstream: IncomingMessage) => {
      responded = true;
      // When the answer's headers came, its credits header among them: the receipt keeps it
      // apart from its own time, which is its write's, after a held body or a retried commit.
      const respondedAt = now();
      // A client that left waits for nothing more once the answer is over, however it ends.
      upstream.once("close", () => stopWaiting?.());
      const status = upstream.statusCode ?? 502;
      const responseHeaders = forwardedResponseHeaders(upstream);
      // Headers written here go out with the first chunk of the body, in one write.
      const sendHead = () => {
        if (res.headersSent || res.destroyed) return;
        res.writeHead(status, upstream.statusMessage, responseHeaders);
      };

      const jobId = header(upstream, "x-decentral-job-id");
      const recordable = jobId !== null && jobIdPattern.test(jobId);
      if (
        !recordable &&
        (named(upstream, "x-decentral-job-id") || named(upstream, "x-decentral-tx-signature"))
      ) {
        // A job the upstream names (or paid for) but that cannot be named here could not be
        // found again: no answer without a receipt, so the answer is withheld.
        log.error(
          {
            requestId,
            path: loggedPath(),
            status,
            // What the upstream sent there may be the caller's key echoed: cut before logged.
            jobId: loggedHeader(upstream, "x-decentral-job-id"),
            escrowTx: loggedHeader(upstream, "x-decentral-tx-signature"),
          },
          "upstream answer names no recordable job id; answering 502",
        );
        upstream.destroy();
        sendError(
          res,
          502,
          "upstream_receipt_invalid",
          "the Decentral API answered without a job id the audit proxy can record; the response is withheld",
        );
        settle();
        return;
      }
      const isSse = String(upstream.headers["content-type"] ?? "").includes("text/event-stream");
      // An answer naming no job records nothing: the request's facts are not needed.
      const known = recordable ? fromRequest() : unneeded;
      if (known instanceof Promise) {
        // The receipt names what the request asked: its answer waits for the body's decoding,
        // unread meanwhile (what comes stays in the socket's buffers).
        upstream.on("error", () => {});
        void known.then(answer);
        return;
      }
      answer(known);

      function answer({ facts, tags, key }: Learnt) {
        const signatures = (name: string) =>
          wireValue(upstream, jobId, name, signaturesOrNull, signatureHeader(upstream, name));
        const creditsHeader = "x-decentral-credits-remaining";
        const credits = wireValue(upstream, jobId, creditsHeader, creditsToUnitsOrNull);
        const receipt: Receipt = {
          jobId: jobId ?? "",
          ...signatureFields(
            signatures("x-decentral-tx-signature"),
            signatures("x-decentral-settlement-tx"),
          ),
          worker: wireValue(upstream, jobId, "x-decentral-worker", addressOrNull),
          creditsRemainingUnits: credits,
          creditsRemainingUnread:
            credits === null && named(upstream, creditsHeader)
              ? unreadAmount(loggedHeader(upstream, creditsHeader))
              : null,
          model: facts.model,
          ...unknownUsage,
          createdAt: null,
          respondedAt,
          tags,
          maxTokens: facts.maxTokens,
          // A body not read may have asked for any number: unknown, bounded as one choice.
          choices: facts.stream !== null && facts.choices > 1 ? facts.choices : null,
          // What came back decides: an event stream is a stream whatever the request said.
          stream: isSse || (facts.stream ?? false),
          // A stream answered to a request that asked for its usage: one that ends whole without
          // it had it withheld, and its charge is bounded by what it holds (`charge.matches_price`).
          usageAsked:
            isSse && (facts.stream === true || facts.streamUnsure === true)
              ? facts.usageAsked
              : null,
          // Rejected prediction tokens in its usage are made up when the request sent none.
          predictionSent: facts.prediction,
          // A job is a POST: one answering a GET (a free `/v1/models`) asked for nothing to run.
          requestMethod: receiptMethodOf(req.method ?? ""),
          // Without a key the caller put in the path, as its log lines show it.
          requestPath: receiptPathOf(withoutKeys(target, credentials)),
          httpStatus: status,
          latencyMs: null,
          ttfbMs: null,
          keyFingerprint: key?.fingerprint ?? null,
          // The key's next 64 bits: two keys made to share the fingerprint tell apart by it.
          keyCheck: key?.check ?? null,
          captureState: "open",
          receiptWriter,
        };

        /** Set once the client got a 503 for want of a receipt: none of the answer reached it. */
        let withheld = false;
        /** The receipt could not be written: the client gets a 503, never an unrecorded answer. */
        const unrecorded = (error: unknown, facts: Receipt = receipt) => {
          withheld = true;
          // The job ran and was paid for: its names, and as a line of an import file every fact
          // known of it (a held body's usage too), for an `import` once the database is back.
          log.error(
            {
              requestId,
              err: error,
              jobId: receipt.jobId,
              escrowTx: receipt.escrowTx,
              settlementTx: receipt.settlementTx,
              worker: receipt.worker,
              // The client got a 503 and none of the answer, as the proxy's own row then says.
              // Dated when the answer came: an import reads `created_at` as that time too.
              import: wireReceiptOf({
                ...facts,
                captureState: "aborted",
                createdAt: facts.createdAt ?? respondedAt,
              }),
            },
            "receipt not recorded; answering 503",
          );
          upstream.destroy();
          sendError(
            res,
            503,
            "receipt_not_recorded",
            "the audit proxy could not record this job's receipt; the response is withheld",
          );
        };

        // A non-streamed body is held until its complete receipt is committed, then sent whole:
        // one write per job. A stream (or a body too large to hold) is sent as it comes once its
        // open receipt is committed, and completed after.
        let holding = recordable && !isSse;
        let capturing = recordable;
        const chunks: Buffer[] = [];
        let captured = 0;
        let ttfbMs: number | null = null;
        // How the client decodes the answer (see `answerCodings`). Coded bytes are no text: a
        // `[DONE]` among them (an operator can put one in a gzip block stored as is) is none the
        // client reads, so capture does not stop at it.
        const coded = answerCodings(upstream.headers["content-encoding"]);
        const sawDone = isSse && coded === "plain" ? createDoneWatch() : () => false;
        let sseDone = false;
        let sseCut = false;
        // Every byte of the answer up to its [DONE]: what bounds a long answer of the other kind.
        let totalBytes = 0;
        const asked: Asked = {
          ...facts,
          chat: chatPath.test(pathPart(target)),
          shape: answerShapeOf(pathPart(target)),
          charset: answerCharset(String(upstream.headers["content-type"] ?? "")),
        };
        // A stream too long to hold at its end is read as it passes: each chunk as it leaves the
        // tail, the tail's at the end (`streamFacts`). Read as every chunk passed, a short
        // stream's reading would run beside its forwarding for nothing. A coded stream is not
        // read here (`unread` below).
        // Made as the first chunk leaves the tail: most streams never do.
        let streamRead: ReturnType<typeof createSseFacts> | null = null;
        const readLeaving = (chunk: Buffer) => {
          if (coded !== "plain") return;
          streamRead ??= createSseFacts(credentials, asked);
          streamRead.add(chunk);
        };
        const streamFacts = (): BodyFacts => {
          if (streamRead === null) return unknownBody;
          for (const chunk of chunks) streamRead.add(chunk);
          return streamRead.facts();
        };
        // A JSON answer too long to hold is read as it passes: see scannedBodyFacts.
        let scan: JsonAnswerScan | null = null;
        // A coded answer (codings its clients read alike) too long to hold: read as it decodes.
        let codedRead: {
          decoder: AnswerDecoder;
          facts: () => BodyFacts;
          /** Whether httpx read it apart (a gzip body of several members). */
          apart: () => Promise<boolean>;
        } | null = null;
        // A coded stream's [DONE], seen once decoded: its client read it whole.
        let codedDone = false;
        /** Whether its client reads the answer as the kind its request asked (see `complete`). */
        const readAsAskedNow = () =>
          facts.stream === null ||
          facts.stream === isSse ||
          (facts.streamUnsure === true && !facts.stream);
        const readCoded = (codings: string[], heldChunks: Buffer[]) => {
          let fetchBytes = 0;
          let httpxBytes = 0;
          // httpx reads a gzip body's first member alone: decoded beside it, only counted.
          const byHttpx = codings.includes("gzip")
            ? createDecoder(
                codings,
                (c) => {
                  httpxBytes += c.length;
                },
                "httpx",
              )
            : null;
          const apart = async () =>
            byHttpx !== null && ((await byHttpx.end()) !== "ok" || httpxBytes !== fetchBytes);
          let fetchDecoder: AnswerDecoder;
          let readFacts: () => BodyFacts;
          if (isSse) {
            const read = createSseFacts(credentials, asked);
            const watch = createDoneWatch();
            fetchDecoder = createDecoder(codings, (c) => {
              fetchBytes += c.length;
              read.add(c);
              if (watch(c)) codedDone = true;
            });
            readFacts = read.facts;
          } else {
            const read = createJsonAnswerScan(asked);
            fetchDecoder = createDecoder(codings, (c) => {
              fetchBytes += c.length;
              read.add(c);
            });
            readFacts = () => scannedBodyFacts(read, credentials, asked);
          }
          const decoder: AnswerDecoder = {
            write(chunk) {
              fetchDecoder.write(chunk);
              byHttpx?.write(chunk);
            },
            end: () => fetchDecoder.end(),
          };
          codedRead = { decoder, facts: readFacts, apart };
          for (const c of heldChunks) decoder.write(c);
        };
        // A body too long to hold, not typed as events, to a completion request that asked for a
        // stream: its client reads it as events, so only its `data:` values up to `[DONE]` count.
        let otherData: { count: ReturnType<typeof createDataCount>; done: boolean } | null = null;
        const readOtherData = (chunk: Buffer, watch: (chunk: Buffer) => boolean) => {
          if (otherData === null || otherData.done) return;
          otherData.count.add(chunk);
          otherData.done = watch(chunk);
        };
        let otherDone: (chunk: Buffer) => boolean = () => false;
        const onData = (chunk: Buffer) => {
          if (ttfbMs === null) ttfbMs = Math.round(performance.now() - started);
          scan?.add(chunk);
          codedRead?.decoder.write(chunk);
          readOtherData(chunk, otherDone);
          if (!capturing || sseDone) return;
          chunks.push(chunk);
          captured += chunk.length;
          totalBytes += chunk.length;
          if (isSse) {
            // A client reads nothing after the [DONE] event: neither is the receipt's usage.
            sseDone = sawDone(chunk);
            // Keep only the tail: the usage chunk is the last event before [DONE]. A coded
            // stream is held whole, up to the size a JSON answer is (its bytes are no events
            // until decoded): read at its end as it decodes, not left unknown past 64 KiB.
            while (
              coded === "plain" &&
              captured - (chunks[0]?.length ?? 0) >= sseTailBytes &&
              chunks.length > 1
            ) {
              const left = chunks.shift() as Buffer;
              captured -= left.length;
              readLeaving(left);
              sseCut = true;
            }
            if (coded !== "plain" && captured > maxJsonCapture) {
              const heldChunks = chunks.splice(0);
              if (Array.isArray(coded) && readAsAskedNow()) readCoded(coded, heldChunks);
              captured = 0;
              capturing = false;
              sseCut = true;
            }
          } else if (captured > maxJsonCapture) {
            // Too large to hold: commit the open receipt, then pass the rest on as it comes, read
            // by a streaming reader (its usage and text, not a padding it carries).
            const heldChunks = chunks.splice(0);
            if (facts.stream === true && completionAsked(asked)) {
              otherData = { count: createDataCount(asked.shape === "output"), done: false };
              otherDone = createDoneWatch();
              for (const c of heldChunks) readOtherData(c, otherDone);
            } else if (Array.isArray(coded)) {
              // Coded bytes are no JSON until decoded: read as they decode.
              if (asked.shape !== "none" && readAsAskedNow()) readCoded(coded, heldChunks);
            } else if (asked.shape !== "none" && coded === "plain") {
              // A completion's `choices`, or a Responses answer's `output` items.
              scan = createJsonAnswerScan(asked);
              for (const c of heldChunks) scan.add(c);
            }
            captured = 0;
            capturing = false;
            holding = false;
            upstream.pause();
            writeReceipt(receipt, stamp, runOptions).then(() => {
              if (finished) return;
              if (clientGone || res.destroyed) {
                // Nobody reads the rest, and its usage could not be read: ended as an abort.
                upstream.destroy();
                return;
              }
              sendHead();
              for (const c of heldChunks) res.write(c);
              upstream.pipe(res, { end: false });
            }, unrecorded);
          }
        };

        // A stream is read while its open receipt commits (up to `earlyStreamBytes`), and sent
        // once it is durable; its end or close seen meanwhile is acted on then.
        let early: Buffer[] | null = null;
        let earlyBytes = 0;
        const earlyOutcomes: (() => void)[] = [];
        const holdEarly = (chunk: Buffer) => {
          early?.push(chunk);
          earlyBytes += chunk.length;
          if (earlyBytes >= earlyStreamBytes) upstream.pause();
        };
        /** Stops holding; returns what was held. */
        const heldEarly = () => {
          const held = early ?? [];
          early = null;
          upstream.off("data", holdEarly);
          return held;
        };
        const runEarlyOutcomes = () => {
          for (const outcome of earlyOutcomes.splice(0)) outcome();
        };
        const startStreaming = () => {
          const held = heldEarly();
          if (clientGone || res.destroyed) {
            upstream.destroy();
            runEarlyOutcomes();
            return;
          }
          sendHead();
          // A stream's head goes out with its first chunk when that chunk is here already (it
          // usually is, by the time the open receipt is committed): a write of its own cost ~5%
          // of a stream's CPU. When the first chunk is slow (a model still loading), the head goes
          // out at once all the same: the client learns the status and the job id meanwhile.
          if (held.length === 0 && upstream.readableLength === 0) {
            setImmediate(() => {
              if (ttfbMs === null && !res.destroyed && !res.writableEnded) res.flushHeaders();
            });
          }
          for (const chunk of held) res.write(chunk);
          if (earlyOutcomes.length > 0) return runEarlyOutcomes();
          if (!recordable) upstream.on("data", onData);
          // The response ends only once the completed receipt (usage included) is committed, so
          // a client that saw a stream end has a receipt that can be proven, not only an open one.
          upstream.pipe(res, { end: false });
        };
        if (!recordable) startStreaming();
        else if (holding) upstream.on("data", onData);
        else {
          early = [];
          upstream.on("data", onData);
          upstream.on("data", holdEarly);
          writeReceipt(receipt, stamp, runOptions).then(startStreaming, (error) => {
            heldEarly();
            unrecorded(error);
            runEarlyOutcomes();
          });
        }
        /** Runs `outcome` now, or once the stream is sent when its open receipt still commits. */
        const once = (outcome: () => void) => () =>
          early === null ? outcome() : void earlyOutcomes.push(outcome);

        const complete = (state: "complete" | "aborted") => {
          if (finished) return;
          finished = true;
          stopWaiting?.();
          const elapsed = performance.now() - started;
          options.observe?.({
            status,
            stream: isSse,
            durationSeconds: elapsed / 1000,
            ...(ttfbMs === null ? {} : { ttfbSeconds: ttfbMs / 1000 }),
          });
          if (!recordable) {
            if (state === "complete" && !res.writableEnded) res.end();
            settle();
            return;
          }
          // A client reads the answer as its request asked (an SDK parses a stream it asked for as
          // events whatever the content type, and a JSON answer as JSON): usage in an answer of the
          // other kind is none the client saw.
          // A `stream` neither a boolean nor read as true (`"false"`) was read by the upstream as
          // its answer shows: that kind is read. One read as true (`"true"`) asked a stream, as a
          // JSON answer's SDK reads it: a JSON answer to it was read as JSON, its usage verified,
          // though its caller's SDK read no event in it.
          const readAsAsked = readAsAskedNow();
          // What of an answer too long to hold still waits to be read (up to 8 MiB, a second of
          // CPU when it is all numbers) is read a slice a turn before the receipt says what it
          // held, as the rest was: read at once, it stalled every request of this process.
          const waiting = scan;
          const coding = codedRead as {
            decoder: AnswerDecoder;
            facts: () => BodyFacts;
            apart: () => Promise<boolean>;
          } | null;
          if (waiting !== null && readAsAsked && upstream.complete && waiting.pending() > 0) {
            void waiting.drained().then(() => record(state, elapsed, readAsAsked));
          } else if (coding !== null && readAsAsked && (upstream.complete || isSse)) {
            // Longer than one is held, read as it decoded: what it gave its client (a stream
            // cut after its [DONE] too, as a plain one is).
            void coding.decoder.end().then(async (outcome) => {
              const apart = await coding.apart();
              if (codedDone) sseDone = true;
              if (!upstream.complete && !sseDone) record(state, elapsed, readAsAsked);
              else if (outcome === "failed") record(state, elapsed, readAsAsked, null);
              else if (outcome === "too_long") record(state, elapsed, readAsAsked, "too_long");
              else record(state, elapsed, readAsAsked, "too_long", apart, coding.facts());
            });
          } else if (coded !== "plain" && coded !== "unknown" && capturing && !sseCut) {
            // A coded answer held whole is read as its client reads it: decoded.
            const raw = Buffer.concat(chunks);
            void decodedAnswer(raw, coded).then(async (decoded) => {
              // A stream cut after its [DONE], seen once decoded, was read whole by its client.
              if (isSse && Buffer.isBuffer(decoded) && createDoneWatch()(decoded)) sseDone = true;
              // A gzip body of several members: httpx read its first alone, fetch every one.
              // Its usage is unknown, and the charge is bounded by the most either read.
              if (Buffer.isBuffer(decoded) && coded.includes("gzip")) {
                const byHttpx = await decodedAnswer(raw, coded, "httpx");
                if (!(Buffer.isBuffer(byHttpx) && byHttpx.equals(decoded))) {
                  if (byHttpx === "too_long" || byHttpx === "unknown") {
                    record(state, elapsed, readAsAsked);
                    return;
                  }
                  const readings = byHttpx === null ? [decoded] : [decoded, byHttpx];
                  record(state, elapsed, readAsAsked, mostRead(readings, readAsAsked), true);
                  return;
                }
              }
              if (decoded !== "too_long" || !readAsAsked) {
                record(state, elapsed, readAsAsked, decoded === "unknown" ? undefined : decoded);
                return;
              }
              // Decoded past the size an answer is held at (8 MiB of white space is a few KiB of
              // gzip): read as it decodes, as a plain answer that long is read as it passes.
              const counted = { bytes: 0 };
              const read = await decodedFacts(raw, coded, "fetch", counted);
              if (read === "failed") record(state, elapsed, readAsAsked, null);
              else if (read === "too_long") record(state, elapsed, readAsAsked, "too_long");
              else {
                // Several gzip members, httpx reading the first alone: its usage is unknown.
                const apart =
                  coded.includes("gzip") &&
                  (await decodedLength(raw, coded, "httpx")) !== counted.bytes;
                record(state, elapsed, readAsAsked, "too_long", apart, read);
              }
            });
          } else if (coded === "unknown" && capturing && !sseCut) {
            // Read apart by its clients, who were told no one usage: its usage is unknown, and
            // the charge is bounded by the most any of them read (none read anything: an answer
            // of no bytes); the answer is unknown only where a reading cannot be known here.
            const encoding = String(upstream.headers["content-encoding"]);
            const raw = Buffer.concat(chunks);
            void clientReadings(raw, encoding).then(async (read) => {
              if (read === "unknown" || (read.tooLong.length > 0 && !readAsAsked)) {
                record(state, elapsed, readAsAsked);
                return;
              }
              if (read.tooLong.length === 0) {
                const most = mostRead(read.readings, readAsAsked);
                record(state, elapsed, readAsAsked, most, !read.agreed);
                return;
              }
              // One client's reading decodes past the size an answer is held at: each is read
              // (that one as it decodes), and the most any holds bounds the charge.
              const all = read.readings.map((r) => readingFacts(r, true));
              for (const { client, codings } of read.tooLong) {
                const facts = await decodedFacts(raw, codings, client);
                if (facts === "too_long") {
                  record(state, elapsed, readAsAsked);
                  return;
                }
                if (facts !== "failed") all.push(facts);
              }
              if (all.some((f) => f.answerBytes === null)) {
                record(state, elapsed, readAsAsked);
                return;
              }
              const most = all.reduce<BodyFacts | null>(
                (m, f) => (m === null || (f.answerBytes ?? 0) > (m.answerBytes ?? 0) ? f : m),
                null,
              );
              if (most === null) record(state, elapsed, readAsAsked, null);
              else record(state, elapsed, readAsAsked, "too_long", true, most);
            });
          } else record(state, elapsed, readAsAsked);
        };
        /** The facts of an answer read as it decodes (see `decodeInto`). */
        const decodedFacts = async (
          raw: Buffer,
          codings: string[],
          client: "fetch" | "httpx" = "fetch",
          /** Counts the bytes decoded. */
          counted = { bytes: 0 },
        ): Promise<BodyFacts | "failed" | "too_long"> => {
          // A stream read as events (its [DONE], seen once decoded: a cut after it left the
          // stream whole), a JSON answer by the scan.
          const events = isSse
            ? { read: createSseFacts(credentials, asked), watch: createDoneWatch() }
            : null;
          const scan = events === null ? createJsonAnswerScan(asked) : null;
          const outcome = await decodeInto(
            raw,
            codings,
            (c) => {
              counted.bytes += c.length;
              if (events === null) scan?.add(c);
              else {
                events.read.add(c);
                if (events.watch(c)) sseDone = true;
              }
            },
            client,
          );
          if (outcome !== "ok") return outcome;
          return events !== null
            ? events.read.facts()
            : scannedBodyFacts(scan as JsonAnswerScan, credentials, asked);
        };
        /** The facts `record` reads of an answer as `reading` holds it, held whole. */
        const readingFacts = (reading: Buffer, readAsAsked: boolean): BodyFacts => {
          const text = reading.toString("utf8");
          if (!readAsAsked && completionAsked(asked)) {
            return otherKindFacts(text, sseCut, totalBytes, credentials, { ...facts, ...asked })
              .facts;
          }
          return isSse
            ? sseFacts(reading, credentials, asked)
            : jsonBodyFacts(reading, credentials, asked);
        };
        /**
         * Of the clients' readings, the one holding the most answer (null when there is none:
         * every read failed), or undefined where one holds an answer of no known size.
         */
        const mostRead = (readings: Buffer[], readAsAsked: boolean): Buffer | null | undefined => {
          if (readings.length <= 1) return readings[0] ?? null;
          let most: { reading: Buffer; bytes: number } | null = null;
          for (const reading of readings) {
            const bytes = readingFacts(reading, readAsAsked).answerBytes;
            if (bytes === null) return undefined;
            if (most === null || bytes > most.bytes) most = { reading, bytes };
          }
          return most?.reading ?? null;
        };
        const record = (
          state: "complete" | "aborted",
          elapsed: number,
          readAsAsked: boolean,
          decoded?: Buffer | null | "too_long",
          usageApart = false,
          /** What was read of an answer as it decoded, past the size one is held at. */
          known?: BodyFacts,
        ) => {
          // The bytes held, joined once: a held answer is read from and sent from the same copy
          // (joined twice, an 8 MiB answer was copied twice more).
          const whole = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
          const bodyBytes = Buffer.isBuffer(decoded) ? decoded : whole;
          const bodyText = bodyBytes.toString("utf8");
          // An answer the upstream broke off (its connection closed short of the body's end while
          // the client waited) reached the caller broken or not at all: a held JSON body is never
          // sent, and a stream's client sees its read fail. Usage its bytes name prices no answer
          // the caller got, so none is recorded (the charge is then bounded by the lock only). A
          // stream whose [DONE] came was read whole by its client, whatever followed.
          const brokenOff = !upstream.complete && !clientGone && !(isSse && sseDone);
          // A coded answer whose bytes are no such coding failed its client's read: no answer,
          // whatever usage its bytes read plain name (they were charged and verified). One not
          // decoded here (a stream past its tail, a body too long to hold, codings clients read
          // differently) is unknown: read plain, its usage is none the client was told.
          const undecodable = coded !== "plain" && decoded === null && !brokenOff;
          const unread = coded !== "plain" && !Buffer.isBuffer(decoded) && !undecodable;
          // The other kind to a completion's request is read as its client reads it
          // (`otherKindFacts`): to `/responses` or `/completions` it was unknown, charged the lock.
          const other =
            unread || undecodable
              ? null
              : capturing && !readAsAsked && !brokenOff && completionAsked(asked)
                ? otherKindFacts(bodyText, sseCut, totalBytes, credentials, { ...facts, ...asked })
                : otherData !== null && upstream.complete
                  ? otherDataFacts(otherData.count.bytes, facts.usageAsked, asked.charset)
                  : null;
          // A Responses request run in the background is answered `queued`, its output fetched
          // later by another request: this answer holds none of it, and bounds nothing.
          const background = asked.shape === "output" && facts.background;
          const learnt: BodyFacts = background
            ? unknownBody
            : known !== undefined && !brokenOff
              ? known
              : undecodable
                ? unreadableBody(asked)
                : unread
                  ? unknownBody
                  : other !== null
                    ? other.facts
                    : capturing && readAsAsked && !brokenOff
                      ? isSse
                        ? sseCut
                          ? streamFacts()
                          : sseFacts(bodyBytes, credentials, asked)
                        : jsonBodyFacts(bodyBytes, credentials, asked)
                      : scan !== null && readAsAsked && upstream.complete
                        ? scannedBodyFacts(scan, credentials, asked)
                        : unknownBody;
          const final: Receipt = {
            ...receipt,
            ...(other !== null ? { usageAsked: other.usageOwed } : {}),
            // A stream its client could not read at all is bounded as a JSON answer is.
            ...(undecodable && isSse ? { usageAsked: true } : {}),
            // Priced by the model asked for, or by none: the operator writes the response, so the
            // model it names is kept only to compare, never to price (the job is then unproven).
            responseModel: learnt.model,
            ...(usageApart ? unknownUsage : learnt.usage),
            answerBytes: learnt.answerBytes,
            answerToolCalls: learnt.answerToolCalls,
            latencyMs: Math.round(elapsed),
            ttfbMs: ttfbMs ?? Math.round(elapsed),
            // A stream whose open receipt was refused was answered 503: its completion, kept
            // until the database takes writes, records a job its client never got.
            captureState: withheld ? "aborted" : state,
          };
          const body = holding ? whole : null;
          // The jobs API's answer updates the row, so it is asked once the row is written.
          const endStream = () => {
            if (body === null && state === "complete" && !res.writableEnded) res.end();
          };
          // Once the answer began, the job's completion records what the client already has: a
          // database refusing writes keeps it in memory until writes work again (the stream ends
          // meanwhile), rather than leaving its row open with no usage for good.
          const keep =
            body === null
              ? {
                  requestId,
                  keep: () => {
                    log.warn(
                      { requestId, jobId: receipt.jobId },
                      "receipt completion kept in memory until the database takes writes",
                    );
                    endStream();
                    settle();
                  },
                }
              : runOptions;
          writeReceipt(final, stamp, keep)
            .then(
              () => {
                if (body !== null && state === "complete") {
                  sendHead();
                  res.end(body);
                }
                endStream();
                if (authorization && consults)
                  consults.ask(receipt.jobId, authorization, requestId);
              },
              (error) => {
                if (body !== null) unrecorded(error, final);
                else {
                  // Every fact the completion holds, for an `import` once the database is back:
                  // the open row has no usage, and nothing else in this process knows it.
                  log.error(
                    {
                      requestId,
                      err: error,
                      receipt: loggable({ ...final, createdAt: stamp.at }),
                      // Dated as the row was, or as the 503's line dates the job (see
                      // writeReceipt): one time for both lines, so their import agrees.
                      import: wireReceiptOf({
                        ...final,
                        createdAt: stamp.at ?? final.respondedAt ?? now(),
                      }),
                    },
                    "receipt completion not recorded; its facts are logged for an import",
                  );
                  endStream();
                }
              },
            )
            .finally(settle);
        };
        // A client that left before the answer got none of it: the job is recorded as aborted
        // (with the usage its body names), and the body is dropped.
        upstream.on(
          "end",
          once(() => complete(clientGone ? "aborted" : "complete")),
        );
        // A reset mid-body surfaces as an error on the response; `close` below handles it.
        upstream.on("error", () => {});
        const onClose = once(() => {
          const whole = upstream.complete && !clientGone;
          // The upstream died mid-body: the client must see a broken response, not a short one.
          if (!whole && !res.writableEnded) res.destroy();
          complete(whole ? "complete" : "aborted");
        });
        upstream.on("close", onClose);
        // Closed while the answer waited for the request's facts (the client left, say): its
        // `close` is gone by, and the outcome is recorded now.
        if (upstream.destroyed) onClose();
      }
    };
    upstreamReq.on("response", onResponse);

    upstreamReq.end(body);
  }

  return {
    handle(req, res, requestId) {
      if (requestId !== undefined) requestIds.set(res, requestId);
      const over = new Promise<number>((resolve) =>
        res.once("close", () => resolve(res.headersSent ? res.statusCode : 0)),
      );
      const target = originForm(req.url ?? "/", base.host);
      if (target === null) {
        req.resume();
        const named = withoutKeys(
          withoutUserinfo(pathPart(req.url ?? "/")),
          credentialsOf((name) => req.headers[name]),
        );
        sendError(
          res,
          400,
          "invalid_target",
          carriesUserinfo(req.url ?? "/")
            ? // The user and password are the reason, and are never echoed (nor the host).
              "the request target carries a user and password (userinfo), which this proxy never forwards; send the path alone"
            : `the request target ${JSON.stringify(named.slice(0, 200))} is not a /v1/ path of ${base.host}, the API this proxy forwards to; send the path alone`,
        );
        return over;
      }
      if (dotSegment.test(pathPart(target))) {
        // `/v1/../x` would reach the upstream outside the API it proxies.
        req.resume();
        sendError(res, 400, "invalid_path", "the path has a `.` or `..` segment");
        return over;
      }
      // Two keys: Node keeps the first `Authorization` and drops the other, so the job was
      // charged to one key while the caller may have meant the other. Which is for the caller to
      // say; the key is never echoed.
      const times = authorizationCount(req);
      if (times > 1) {
        req.resume();
        sendError(
          res,
          400,
          "bad_request",
          `the Authorization header was given ${times} times; send it once`,
        );
        return over;
      }
      if (writer.full()) {
        // Forwarding would run (and charge) a job whose receipt might not be written. The code
        // says which: a backlog clears in moments, a database refusing writes needs its operator.
        req.resume();
        const health = writer.health();
        if (health.reachable) {
          sendError(
            res,
            503,
            "receipt_backlog_full",
            "the audit proxy is waiting for its database; retry shortly",
            1,
          );
        } else {
          sendError(
            res,
            503,
            "receipt_store_unavailable",
            health.refusing
              ? "the audit proxy's database refuses writes (a full disk, read-only, a privilege missing?); retry later"
              : "the audit proxy cannot reach its database; retry later",
            1,
          );
        }
        return over;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let refused = false;
      req.on("data", (chunk: Buffer) => {
        if (refused) return;
        size += chunk.length;
        if (size > maxRequestBytes) {
          refused = true;
          sendError(res, 413, "payload_too_large", `request body above ${maxRequestBytes} bytes`);
          return;
        }
        chunks.push(chunk);
      });
      req.on("end", () => {
        if (!refused)
          forward(
            req,
            res,
            chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
            target,
            requestId,
          );
      });
      return over;
    },
    async idle() {
      do {
        // A response cut off (a drain's deadline, a client gone) records its outcome after its
        // connection closed: that write is waited for too.
        while (inFlight.size > 0) await Promise.all([...inFlight]);
        await writer.idle();
        await consults?.drain();
      } while (inFlight.size > 0 || (consults?.waiting() ?? 0) > 0 || writer.backlog() > 0);
    },
    async drain(withinMs) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, withinMs);
      });
      const settled = (async () => {
        while (inFlight.size > 0) await Promise.all([...inFlight]);
      })();
      await Promise.race([settled, deadline]);
      clearTimeout(timer);
      endAbandoned();
    },
    async close() {
      // A request whose client left waits no more for its answer: the drain gave it its time.
      endAbandoned();
      // The responses cut off by the stop record their outcome first: each completion asks the
      // jobs API, and what the stop leaves unasked goes to the backfill in `finish`'s one write.
      while (inFlight.size > 0) await Promise.all([...inFlight]);
      // Stopping: questions in flight end (aborted after a short wait), none is asked again,
      // and their jobs are left to the background backfill, which asks later.
      await consults?.finish();
      await this.idle();
      agent.destroy();
      if (ownWriter) await writer.close();
    },
    writer,
  };
}
