import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { loopDelaySampler } from "../src/loop-delay.js";
import { peakRssBytes } from "./peak-rss.js";

/**
 * Serves `handle` as a proxy child of the benchmark (bench/bare-proxy-child.ts,
 * bench/recording-floor-child.ts), speaking the protocol of children.ts: `ready` with its URL
 * once listening, then `cpu`, `rss` and `loopDelay` requests by id (the event-loop delay since
 * the last such request, sampled from the first on, as `serve` samples its own), and any of
 * `ops` (each answers with its value). On disconnect it closes its server and connections,
 * then calls `stopped`.
 */
export function listenAsProxyChild(
  handle: http.RequestListener,
  stopped: () => void,
  ops: Record<string, () => unknown> = {},
): void {
  const send = (message: unknown) => process.send?.(message);
  const loopDelay = loopDelaySampler();
  const server = http.createServer(handle);
  server.keepAliveTimeout = 65_000;
  server.listen(0, "127.0.0.1", () => {
    process.on("message", (raw: { id: number; op: string }) => {
      if (raw.op === "cpu") {
        const usage = process.cpuUsage();
        send({ id: raw.id, ok: true, value: (usage.user + usage.system) / 1000 });
      } else if (raw.op === "rss") {
        send({ id: raw.id, ok: true, value: peakRssBytes() });
      } else if (raw.op === "loopDelay") {
        send({ id: raw.id, ok: true, value: loopDelay() });
      } else if (Object.hasOwn(ops, raw.op)) {
        send({ id: raw.id, ok: true, value: ops[raw.op]?.() });
      }
    });
    process.on("disconnect", () => {
      server.closeAllConnections();
      server.close();
      stopped();
    });
    send({ op: "ready", url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  });
}

/** The upstream of a proxy child (`BARE_UPSTREAM`, e.g. http://127.0.0.1:8788/v1) and its agent. */
export function upstreamOf(baseUrl: string) {
  const base = new URL(baseUrl);
  const basePath = base.pathname.replace(/\/+$/, "");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });
  /**
   * Sends `req` on to the upstream (`/v1/...` under its base) with the client's headers, its
   * host and `extra` (hop-by-hop ones left out), and hands the answer to `answer`; a failed
   * request answers 502. The caller writes the body.
   */
  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    extra: http.OutgoingHttpHeaders,
    answer: (upstream: IncomingMessage) => void,
  ) => {
    const headers: http.OutgoingHttpHeaders = { ...req.headers, host: base.host, ...extra };
    delete headers.connection;
    delete headers["keep-alive"];
    const upstreamReq = http.request(
      {
        hostname: base.hostname,
        port: base.port,
        method: req.method,
        path: basePath + (req.url ?? "/").slice("/v1".length),
        headers,
        agent,
      },
      answer,
    );
    upstreamReq.setNoDelay(true);
    upstreamReq.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    return upstreamReq;
  };
  return { base, basePath, agent, forward };
}
