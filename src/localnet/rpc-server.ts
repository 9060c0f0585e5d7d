import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { LocalChain } from "./chain.js";
import { seededRandom } from "./decentral-jobs.js";
import { callLying, type RpcLies } from "./lying-rpc.js";
import { RpcError, type RpcHandler, rpcMethods } from "./rpc-methods.js";

/**
 * A JSON-RPC HTTP front end over the local chain, with fault injection so clients can be tested
 * against a hostile node. Each endpoint has its own faults and counters; several endpoints can
 * serve the same chain (an RPC pool).
 */

export interface RpcFaults {
  /** Milliseconds added before every response. Default 0. */
  latencyMs: number;
  /** Requests per second accepted (sliding 1 s window); beyond it HTTP 429 with Retry-After. 0 = no limit. */
  rateLimitPerSec: number;
  /** Answer every request with HTTP 429 (a provider refusing this client). Default false. */
  tooManyRequests: boolean;
  /** The `Retry-After` of a 429, in seconds. Default 1. */
  retryAfterSeconds: number;
  /**
   * Share (0..1) of requests answered with HTTP 503 or 500, spread evenly from a random start:
   * of any n requests in a row, n * share rounded down or up. A random draw per request could
   * fail none of a short run's requests (0.7^14, 0.7%, at 0.3 over 14), and a test of the
   * client's retries would then test nothing.
   */
  http5xxRate: number;
  /** Share (0..1) of requests answered with JSON-RPC error -32005 "Node is behind by N slots". */
  behindRate: number;
  /** Answer JSON-RPC batch arrays with HTTP 400 and an error instead of results. */
  refuseBatch: boolean;
  /** Share (0..1) of sendTransaction calls acknowledged with a signature but never committed. */
  neverLandRate: number;
  /** Answer every request with HTTP 503. */
  down: boolean;
  /** Lie about a share of transactions (amounts, memos, owners, errors, finality). Default none. */
  lies: RpcLies | null;
  /** Answer getSignatureStatuses with null for every signature (a node whose index lags). */
  nullStatuses: boolean;
  /** Answer getTransaction with null (a node lagging, or failing over to one that lags). */
  nullTransactions: boolean;
  /** Answer getTransaction with another signature's transaction when it knows one. */
  wrongTransactions: boolean;
}

export const noRpcFaults: RpcFaults = {
  latencyMs: 0,
  rateLimitPerSec: 0,
  tooManyRequests: false,
  retryAfterSeconds: 1,
  http5xxRate: 0,
  behindRate: 0,
  refuseBatch: false,
  neverLandRate: 0,
  down: false,
  lies: null,
  nullStatuses: false,
  nullTransactions: false,
  wrongTransactions: false,
};

/** Counters of one endpoint, so tests and benchmarks can observe every injected fault. */
export interface RpcStats {
  url: string;
  /** HTTP requests received. */
  requests: number;
  /** JSON-RPC calls by method (each element of a batch counts). */
  byMethod: Record<string, number>;
  /** Batch arrays received. */
  batches: number;
  served429: number;
  served5xx: number;
  /** JSON-RPC -32005 errors served (one per call). */
  servedBehind: number;
  batchesRefused: number;
  /** Signatures acknowledged by sendTransaction and never committed. */
  neverLanded: string[];
  /** Most HTTP requests received within any sliding one-second window. */
  maxRequestsPerSecond: number;
  /** Statuses and transactions answered null by `nullStatuses` / `nullTransactions`. */
  servedNull: number;
  /** Transactions answered with another signature's by `wrongTransactions`. */
  servedWrong: number;
}

interface JsonRpcRequest {
  jsonrpc?: unknown;
  id?: unknown;
  method?: unknown;
  params?: unknown;
}

const WINDOW_MS = 1000;

/** Sliding one-second window of timestamps. */
class Window {
  private readonly times: number[] = [];
  private head = 0;
  count(now: number): number {
    while (this.head < this.times.length && this.times[this.head]! <= now - WINDOW_MS) this.head++;
    if (this.head > 1024) {
      this.times.splice(0, this.head);
      this.head = 0;
    }
    return this.times.length - this.head;
  }
  add(now: number): void {
    this.times.push(now);
  }
}

/** One JSON-RPC endpoint: an HTTP server, its faults and its counters. */
export class RpcEndpoint {
  faults: RpcFaults;
  readonly stats: RpcStats;
  private readonly methods: Record<string, RpcHandler>;
  private readonly random: () => number;
  private readonly received = new Window();
  private readonly accepted = new Window();
  private server: Server | null = null;
  private fiveHundreds = 0;
  /** Requests owed a 5xx, in part: a whole one is served as the next 5xx (`http5xxRate`). */
  private fiveHundredsOwed: number;
  /** Signatures this endpoint found on chain: what `wrongTransactions` answers with. */
  private readonly known = new Set<string>();

  constructor(chain: LocalChain, faults: Partial<RpcFaults> = {}, seed = "rpc") {
    this.faults = { ...noRpcFaults, ...faults };
    this.random = seededRandom(`${seed}/rpc-faults`);
    this.fiveHundredsOwed = this.random();
    this.stats = {
      url: "",
      requests: 0,
      byMethod: {},
      batches: 0,
      served429: 0,
      served5xx: 0,
      servedBehind: 0,
      batchesRefused: 0,
      neverLanded: [],
      maxRequestsPerSecond: 0,
      servedNull: 0,
      servedWrong: 0,
    };
    this.methods = rpcMethods(chain, {
      dropTransaction: () =>
        this.faults.neverLandRate > 0 && this.random() < this.faults.neverLandRate,
      onDropped: (signature) => this.stats.neverLanded.push(signature),
    });
  }

  get url(): string {
    return this.stats.url;
  }

  /** Starts listening; port 0 picks a free port. */
  async listen(host: string, port: number): Promise<string> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(error));
        } else res.destroy();
      });
    });
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const address = server.address() as AddressInfo;
    this.stats.url = `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`;
    return this.stats.url;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Answers one JSON-RPC request object (or throws RpcError). */
  call(request: JsonRpcRequest): unknown {
    const method = typeof request.method === "string" ? request.method : "";
    const handler = Object.hasOwn(this.methods, method) ? this.methods[method] : undefined;
    if (!handler) throw new RpcError(-32601, "Method not found");
    const params = request.params ?? [];
    if (!Array.isArray(params)) throw new RpcError(-32602, "Invalid params: expected an array");
    const lies = this.faults.lies;
    const answer = lies ? callLying(lies, method, params, handler) : handler(params);
    if (method === "getSignatureStatuses" && Array.isArray(params[0])) {
      const value = (answer as { value?: unknown[] }).value ?? [];
      params[0].forEach((signature, i) => {
        if (value[i] && typeof signature === "string") this.known.add(signature);
      });
      if (this.faults.nullStatuses) {
        this.stats.servedNull += value.filter((v) => v !== null).length;
        return { ...(answer as object), value: value.map(() => null) };
      }
    }
    if (method === "getTransaction" && answer !== null) {
      if (typeof params[0] === "string") this.known.add(params[0]);
      if (this.faults.nullTransactions) {
        this.stats.servedNull++;
        return null;
      }
      if (this.faults.wrongTransactions) {
        for (const other of this.known) {
          if (other === params[0]) continue;
          const wrong = handler([other, ...params.slice(1)]);
          if (wrong === null) continue;
          this.stats.servedWrong++;
          return wrong;
        }
      }
    }
    return answer;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const now = Date.now();
    this.stats.requests++;
    this.received.add(now);
    this.stats.maxRequestsPerSecond = Math.max(
      this.stats.maxRequestsPerSecond,
      this.received.count(now),
    );
    const body = await readBody(req);
    if (this.faults.latencyMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, this.faults.latencyMs));
    }
    const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      const text = JSON.stringify(payload);
      res.writeHead(status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(text),
        ...headers,
      });
      res.end(text);
    };

    if (this.faults.down) {
      this.stats.served5xx++;
      return send(503, {
        jsonrpc: "2.0",
        error: { code: -32000, message: "Service unavailable" },
        id: null,
      });
    }
    const limit = this.faults.rateLimitPerSec;
    if (limit > 0 || this.faults.tooManyRequests) {
      if (this.faults.tooManyRequests || this.accepted.count(now) >= limit) {
        this.stats.served429++;
        return send(
          429,
          {
            jsonrpc: "2.0",
            error: {
              code: 429,
              message:
                "Too many requests for a specific RPC call, contact your app developer or support@rpcpool.com.",
            },
            id: null,
          },
          { "retry-after": String(this.faults.retryAfterSeconds) },
        );
      }
      this.accepted.add(now);
    }
    if (this.owesFiveHundred()) {
      this.stats.served5xx++;
      const status = this.fiveHundreds++ % 2 === 0 ? 503 : 500;
      return send(status, {
        jsonrpc: "2.0",
        error: { code: -32000, message: status === 503 ? "Service unavailable" : "Internal error" },
        id: null,
      });
    }

    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return send(200, {
        jsonrpc: "2.0",
        error: { code: -32700, message: "Parse error" },
        id: null,
      });
    }
    const batch = Array.isArray(parsed);
    const requests = (batch ? parsed : [parsed]) as JsonRpcRequest[];
    if (batch) {
      this.stats.batches++;
      if (this.faults.refuseBatch) {
        this.stats.batchesRefused++;
        return send(400, {
          jsonrpc: "2.0",
          error: { code: -32600, message: "Batch requests are disabled on this endpoint" },
          id: null,
        });
      }
      if (requests.length === 0) {
        return send(200, {
          jsonrpc: "2.0",
          error: { code: -32600, message: "Invalid request: empty batch" },
          id: null,
        });
      }
    }
    const behind = this.faults.behindRate > 0 && this.random() < this.faults.behindRate;
    const replies = requests.map((request) => this.reply(request, behind));
    send(200, batch ? replies : replies[0]);
  }

  /** Whether this request is one of `http5xxRate`'s share. */
  private owesFiveHundred(): boolean {
    if (this.faults.http5xxRate <= 0) return false;
    this.fiveHundredsOwed += this.faults.http5xxRate;
    if (this.fiveHundredsOwed < 1) return false;
    this.fiveHundredsOwed -= 1;
    return true;
  }

  private reply(request: JsonRpcRequest, behind: boolean) {
    const id = request?.id ?? null;
    if (typeof request !== "object" || request === null || typeof request.method !== "string") {
      return { jsonrpc: "2.0", error: { code: -32600, message: "Invalid request" }, id };
    }
    this.stats.byMethod[request.method] = (this.stats.byMethod[request.method] ?? 0) + 1;
    if (behind) {
      this.stats.servedBehind++;
      const slots = 20 + Math.floor(this.random() * 200);
      return {
        jsonrpc: "2.0",
        error: {
          code: -32005,
          message: `Node is behind by ${slots} slots`,
          data: { numSlotsBehind: slots },
        },
        id,
      };
    }
    try {
      return { jsonrpc: "2.0", result: this.call(request), id };
    } catch (error) {
      if (error instanceof RpcError) {
        return {
          jsonrpc: "2.0",
          error: {
            code: error.code,
            message: error.message,
            ...(error.data === undefined ? {} : { data: error.data }),
          },
          id,
        };
      }
      return {
        jsonrpc: "2.0",
        error: { code: -32603, message: `Internal error: ${String(error)}` },
        id,
      };
    }
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** A copy of an endpoint's counters (safe to keep while the endpoint goes on counting). */
export function snapshotStats(stats: RpcStats): RpcStats {
  return { ...stats, byMethod: { ...stats.byMethod }, neverLanded: [...stats.neverLanded] };
}
