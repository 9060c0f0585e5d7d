import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { listenAsProxyChild, upstreamOf } from "./proxy-child.js";

/**
 * Child process of the benchmark: the least a Node proxy can do, the floor the recording proxy
 * is compared with. A node:http server that forwards `/v1/*` to `BARE_UPSTREAM` over a
 * keep-alive agent, pipes both bodies, and records nothing. It speaks the protocol of
 * children.ts: `ready` with its URL, then `cpu` and `rss` requests by id.
 */

const { agent, forward } = upstreamOf(process.env.BARE_UPSTREAM ?? "");

function handle(req: IncomingMessage, res: ServerResponse) {
  req.pipe(
    forward(req, res, {}, (upstream) => {
      const out: OutgoingHttpHeaders = { ...upstream.headers };
      delete out.connection;
      delete out["keep-alive"];
      res.writeHead(upstream.statusCode ?? 502, out);
      upstream.pipe(res);
    }),
  );
}

listenAsProxyChild(handle, () => agent.destroy());
