import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { peakRssBytes } from "./peak-rss.js";

/**
 * Child process of the benchmark: the least a Node proxy can do, the floor the recording proxy
 * is compared with. A node:http server that forwards `/v1/*` to `BARE_UPSTREAM` over a
 * keep-alive agent, pipes both bodies, and records nothing. It speaks the protocol of
 * children.ts: `ready` with its URL, then `cpu` and `rss` requests by id.
 */

const send = (message: unknown) => process.send?.(message);

const base = new URL(process.env.BARE_UPSTREAM ?? "");
const basePath = base.pathname.replace(/\/+$/, "");
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });

function handle(req: IncomingMessage, res: ServerResponse) {
  const headers: http.OutgoingHttpHeaders = { ...req.headers, host: base.host };
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
    (upstream) => {
      const out: http.OutgoingHttpHeaders = { ...upstream.headers };
      delete out.connection;
      delete out["keep-alive"];
      res.writeHead(upstream.statusCode ?? 502, out);
      upstream.pipe(res);
    },
  );
  upstreamReq.setNoDelay(true);
  upstreamReq.on("error", () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(upstreamReq);
}

const server = http.createServer(handle);
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => {
  process.on("message", (raw: { id: number; op: string }) => {
    if (raw.op === "cpu") {
      const usage = process.cpuUsage();
      send({ id: raw.id, ok: true, value: (usage.user + usage.system) / 1000 });
    } else if (raw.op === "rss") {
      send({ id: raw.id, ok: true, value: peakRssBytes() });
    }
  });
  process.on("disconnect", () => {
    server.closeAllConnections();
    server.close();
    agent.destroy();
  });
  send({ op: "ready", url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
});
