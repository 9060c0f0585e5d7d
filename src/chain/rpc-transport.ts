import http from "node:http";
import https from "node:https";
import { gunzip } from "node:zlib";
import { connectHostOf } from "../connect-host.js";
import { arrayElementTexts, objectMemberTexts, parseJsonLossless } from "./json-text.js";
import { withoutEndpointSecrets } from "./url-secrets.js";

/**
 * One HTTP exchange with one JSON-RPC endpoint, classified. Never throws: every way a request
 * can go wrong becomes an outcome the pool can count and act on.
 */
export type RpcOutcome =
  /** `raw` is the `result` text exactly as received; `result` its lossless parse. */
  | { kind: "ok"; result: unknown; raw: string }
  | { kind: "rpc_error"; code: number; message: string }
  | { kind: "rate_limited"; retryAfterMs: number | null }
  | { kind: "http_error"; status: number | null; message: string }
  | { kind: "timeout" };

export interface RpcRequest {
  id: number;
  method: string;
  params: unknown[];
}

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/**
 * `Retry-After` as milliseconds: delta-seconds or an HTTP date; null when absent or unreadable.
 * Every HTTP date names its day and month in letters; `Date.parse` also takes a bare "-5" or
 * "+3" (a day of 2001), which as a date in the past meant no pause at all.
 */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (value === null || value.trim() === "") return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  if (!/[a-z]/i.test(trimmed)) return null;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/**
 * A reply object (already known to be valid JSON) to an outcome. An error's message is the
 * endpoint's own text: the secrets of `url` (its key in the query or path) are cut from it.
 */
function replyOutcome(text: string, reply: unknown, url: string): RpcOutcome {
  if (typeof reply !== "object" || reply === null || Array.isArray(reply)) {
    return { kind: "http_error", status: null, message: "reply is not a JSON-RPC object" };
  }
  const r = reply as Record<string, unknown>;
  if (r.error !== undefined && r.error !== null) {
    const e = r.error as Record<string, unknown>;
    return {
      kind: "rpc_error",
      code: typeof e.code === "number" ? e.code : 0,
      message: withoutEndpointSecrets(
        typeof e.message === "string" ? e.message : JSON.stringify(r.error),
        url,
      ),
    };
  }
  if (!("result" in r)) {
    return { kind: "http_error", status: null, message: "reply has neither result nor error" };
  }
  return { kind: "ok", result: r.result, raw: objectMemberTexts(text).get("result") ?? "null" };
}

/** An endpoint's HTTP reply, read whole. */
export interface HttpReply {
  status: number;
  retryAfterMs: number | null;
  text: string;
}

/**
 * One POST of a JSON-RPC body, its reply read whole within `timeoutMs`. Never throws: a
 * request that could not be made, or was cut short by `signal`, is `{ error }`.
 */
export type HttpPost = (
  url: string,
  body: string,
  timeoutMs: number,
  signal: AbortSignal,
) => Promise<HttpReply | "timeout" | { error: string }>;

/** `HttpPost` over a Fetch API implementation (tests inject one to play an endpoint). */
export function fetchPost(fetchImpl: FetchLike): HttpPost {
  return async (url, body, timeoutMs, signal) => {
    if (signal.aborted) return { error: "aborted" };
    const controller = new AbortController();
    const onOuterAbort = () => controller.abort();
    signal.addEventListener("abort", onOuterAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    try {
      const response = await fetchImpl(url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body,
        signal: controller.signal,
      });
      const text = await response.text();
      return {
        status: response.status,
        retryAfterMs: parseRetryAfter(response.headers.get("retry-after"), Date.now()),
        text,
      };
    } catch (error) {
      if (timedOut) return "timeout";
      // undici reports "fetch failed" and puts the useful part (ECONNREFUSED) in cause.
      const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
      const detail = cause?.code ?? cause?.message;
      const message = error instanceof Error ? error.message : String(error);
      return { error: detail ? `${message} (${String(detail)})` : message };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onOuterAbort);
    }
  };
}

/** Where one endpoint URL's requests go: parsed once, not on every request. */
function requestTarget(url: string, agents: Record<"http:" | "https:", http.Agent>) {
  const u = new URL(url);
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new Error(`unsupported protocol ${u.protocol}`);
  }
  return {
    transport: u.protocol === "https:" ? https : http,
    options: {
      protocol: u.protocol,
      hostname: connectHostOf(u),
      port: u.port || (u.protocol === "https:" ? 443 : 80),
      path: `${u.pathname}${u.search}`,
      ...(u.username || u.password
        ? { auth: `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}` }
        : {}),
      agent: agents[u.protocol],
      method: "POST",
    } satisfies http.RequestOptions,
  };
}

/** The largest reply read, on the wire and unzipped: far beyond any page or batch the pool asks. */
export const MAX_REPLY_BYTES = 64 * 1024 * 1024;

/**
 * How long a kept socket may sit idle before it is closed: NAT gateways and load balancers
 * forget an idle connection without a word (AWS NAT after 350 s), and a request written into
 * one waits out its whole timeout. The Fetch API's own agent closes them after 4 s.
 */
const IDLE_SOCKET_MS = 4_000;

/**
 * `HttpPost` over node:http with keep-alive agents: what the pool uses unless a test injects
 * a fetch. The verifier makes several calls per job; through the Fetch API one cost about four
 * times the CPU of the same exchange over node:http. Redirects are not followed (an RPC that
 * answers 3xx is an HTTP error, as a POST that became a GET would be). A reply larger than
 * `MAX_REPLY_BYTES` is an error, never a string the process cannot hold. `close()` ends the
 * kept sockets.
 */
export function createNodeHttpPost(options: { idleSocketMs?: number } = {}): {
  post: HttpPost;
  close: () => void;
} {
  const timeout = options.idleSocketMs ?? IDLE_SOCKET_MS;
  const agents = {
    "http:": new http.Agent({ keepAlive: true, timeout }),
    "https:": new https.Agent({ keepAlive: true, timeout }),
  };
  const targets = new Map<string, ReturnType<typeof requestTarget>>();
  const post: HttpPost = (url, body, timeoutMs, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) {
        resolve({ error: "aborted" });
        return;
      }
      let target = targets.get(url);
      if (target === undefined) {
        try {
          target = requestTarget(url, agents);
        } catch (error) {
          resolve({ error: error instanceof Error ? error.message : String(error) });
          return;
        }
        targets.set(url, target);
      }
      let settled = false;
      const finish = (reply: HttpReply | "timeout" | { error: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        resolve(reply);
      };
      const req = target.transport.request(
        {
          ...target.options,
          headers: {
            "content-type": "application/json",
            accept: "application/json",
            // A page of 1,000 signatures is a few hundred KB of JSON that gzip makes ten times
            // smaller on the way from a provider.
            "accept-encoding": "gzip",
            "user-agent": "decentral-audit",
            "content-length": Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_REPLY_BYTES) {
              finish({ error: `reply larger than ${MAX_REPLY_BYTES} bytes` });
              req.destroy();
              return;
            }
            chunks.push(chunk);
          });
          res.on("end", () => {
            const retryAfter = res.headers["retry-after"];
            const reply = (text: string) =>
              finish({
                status: res.statusCode ?? 0,
                retryAfterMs: parseRetryAfter(
                  typeof retryAfter === "string" ? retryAfter : null,
                  Date.now(),
                ),
                text,
              });
            const encoding = res.headers["content-encoding"]?.trim().toLowerCase();
            if (encoding === undefined || encoding === "" || encoding === "identity") {
              reply(Buffer.concat(chunks).toString("utf8"));
              return;
            }
            if (encoding !== "gzip") {
              finish({ error: `reply in an encoding not asked for (${encoding})` });
              return;
            }
            gunzip(Buffer.concat(chunks), { maxOutputLength: MAX_REPLY_BYTES }, (error, plain) => {
              if (error) finish({ error: `reply could not be unzipped (${error.message})` });
              else reply(plain.toString("utf8"));
            });
          });
          res.on("error", (error) => finish({ error: error.message }));
          // A connection closed before the body's end reports no error on every version.
          res.on("close", () => {
            if (!res.complete) finish({ error: "connection closed before the reply ended" });
          });
        },
      );
      const timer = setTimeout(() => {
        finish("timeout");
        req.destroy();
      }, timeoutMs);
      const onAbort = () => {
        finish({ error: "aborted" });
        req.destroy();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      req.on("error", (error) => finish({ error: error.message }));
      req.end(body);
    });
  return {
    post,
    close: () => {
      agents["http:"].destroy();
      agents["https:"].destroy();
    },
  };
}

function httpFailure(reply: HttpReply | "timeout" | { error: string }): RpcOutcome | null {
  if (reply === "timeout") return { kind: "timeout" };
  if ("error" in reply) return { kind: "http_error", status: null, message: reply.error };
  if (reply.status === 429) return { kind: "rate_limited", retryAfterMs: reply.retryAfterMs };
  if (reply.status >= 300 && reply.status < 400) {
    const message = `HTTP ${reply.status}: a redirect, not followed (use the URL it points to)`;
    return { kind: "http_error", status: reply.status, message };
  }
  if (reply.status < 200 || reply.status >= 300) {
    return { kind: "http_error", status: reply.status, message: `HTTP ${reply.status}` };
  }
  return null;
}

function parseBody(text: string): unknown {
  try {
    return parseJsonLossless(text);
  } catch {
    return undefined;
  }
}

/** Sends one JSON-RPC request. */
export async function sendSingle(
  post: HttpPost,
  url: string,
  request: RpcRequest,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<RpcOutcome> {
  const body = JSON.stringify({ jsonrpc: "2.0", ...request });
  const reply = await post(url, body, timeoutMs, signal);
  const failure = httpFailure(reply);
  if (failure) return failure;
  const { text } = reply as HttpReply;
  const parsed = parseBody(text);
  if (parsed === undefined) {
    return { kind: "http_error", status: null, message: "reply is not valid JSON" };
  }
  return replyOutcome(text, parsed, url);
}

/**
 * Sends several requests as one JSON-RPC batch array. Returns `"refused"` when the endpoint
 * does not take batches (a 4xx other than 429, or a reply that is not an array), so the caller
 * can fall back to single requests; otherwise one outcome per request, matched by id.
 */
export async function sendBatch(
  post: HttpPost,
  url: string,
  requests: RpcRequest[],
  timeoutMs: number,
  signal: AbortSignal,
): Promise<RpcOutcome[] | "refused"> {
  const body = JSON.stringify(requests.map((r) => ({ jsonrpc: "2.0", ...r })));
  const reply = await post(url, body, timeoutMs, signal);
  if (reply !== "timeout" && !("error" in reply) && reply.status >= 400 && reply.status < 500) {
    if (reply.status !== 429 && reply.status !== 408) return "refused";
  }
  const failure = httpFailure(reply);
  if (failure) return requests.map(() => failure);
  const { text } = reply as HttpReply;
  const parsed = parseBody(text);
  if (parsed === undefined) {
    const bad: RpcOutcome = {
      kind: "http_error",
      status: null,
      message: "reply is not valid JSON",
    };
    return requests.map(() => bad);
  }
  if (!Array.isArray(parsed)) return "refused";
  const texts = arrayElementTexts(text);
  const byId = new Map<unknown, RpcOutcome>();
  parsed.forEach((item, i) => {
    const id = (item as Record<string, unknown> | null)?.id;
    byId.set(id, replyOutcome(texts[i] ?? "null", item, url));
  });
  return requests.map(
    (r) =>
      byId.get(r.id) ?? {
        kind: "http_error",
        status: null,
        message: "batch reply lacks this request",
      },
  );
}
