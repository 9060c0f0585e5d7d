import type { IncomingMessage, RequestListener, Server, ServerResponse } from "node:http";

/** How often a draining server closes its connections that have gone idle, in ms. */
const idleSweepMs = 100;

/**
 * What a stopping server does with keep-alive connections. `server.close()` stops accepting
 * new ones and closes those idle at that moment, but a connection busy then stays open, and
 * Node goes on reading requests from it: a client that keeps its connection (the OpenAI SDKs,
 * a load balancer) would start new paid jobs through the whole drain, and the drain would end
 * only at its deadline, cutting the jobs it had just started. Once the drain starts, a request
 * on an open connection is answered `503 service_stopping` with `connection: close` (nothing
 * forwarded; the client retries elsewhere), and each connection is closed as soon as its
 * response in flight has ended, so the drain ends when the work that was in flight has.
 */
export interface DrainGate {
  /** `listener` behind the gate. */
  wrap(listener: RequestListener): RequestListener;
  /** From now on, turns requests away and closes connections as they go idle. */
  start(server: Server): void;
  /** Stops closing connections (the server is closed). */
  stop(): void;
}

export function createDrainGate(): DrainGate {
  let draining = false;
  let sweep: NodeJS.Timeout | undefined;
  return {
    wrap(listener) {
      return (req: IncomingMessage, res: ServerResponse) => {
        if (!draining) {
          listener(req, res);
          return;
        }
        req.resume();
        const body = JSON.stringify({
          error: {
            code: "service_stopping",
            message: "the audit service is stopping; send the request again",
            type: "server_error",
            param: null,
            details: { retry_after: 1 },
          },
        });
        res.writeHead(503, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "retry-after": "1",
          connection: "close",
        });
        res.end(body);
      };
    },
    start(server) {
      draining = true;
      server.closeIdleConnections();
      sweep = setInterval(() => server.closeIdleConnections(), idleSweepMs);
      sweep.unref();
    },
    stop() {
      clearInterval(sweep);
    },
  };
}
