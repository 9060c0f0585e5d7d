import type { IncomingMessage, RequestListener, Server, ServerResponse } from "node:http";
import net, { type Socket } from "node:net";

/**
 * What a stopping server does with keep-alive connections. `server.close()` stops accepting
 * new ones and destroys those it deems idle at that moment, but a connection busy then stays
 * open, and Node goes on reading requests from it: a client that keeps its connection (the
 * OpenAI SDKs, a load balancer) would start new paid jobs through the whole drain, and the
 * drain would end only at its deadline, cutting the jobs it had just started. And what Node
 * deems idle includes a connection whose response has ended but is still being sent (a large
 * body read slowly): destroying it cuts that body short.
 *
 * Once the drain starts, a request on an open connection is answered `503 service_stopping`
 * with `connection: close` (nothing forwarded; the client retries elsewhere), and each
 * connection is closed (once its pending bytes are handed to the system, which still sends
 * them) as soon as no request on it is being answered, so the drain ends when the work that
 * was in flight has. Closed, not half-closed: a client that keeps its side open (idle in a
 * pool, or one that opened a connection and sent nothing) would hold the drain until Node's
 * keep-alive timeout or the drain's deadline.
 */
export interface DrainGate {
  /** `listener` behind the gate. */
  wrap(listener: RequestListener): RequestListener;
  /** Follows `server`'s connections; called before it listens. */
  attach(server: Server): void;
  /** Stops accepting and turns requests away; resolves once every connection has closed. */
  drain(server: Server): Promise<void>;
}

export function createDrainGate(): DrainGate {
  let draining = false;
  const connections = new Set<Socket>();
  /** Requests being answered, by connection (pipelined requests queue on one). */
  const answering = new Map<Socket, number>();

  const answered = (socket: Socket) => {
    const left = (answering.get(socket) ?? 1) - 1;
    if (left > 0) {
      answering.set(socket, left);
      return;
    }
    answering.delete(socket);
    if (draining) socket.destroySoon();
  };

  return {
    wrap(listener) {
      return (req: IncomingMessage, res: ServerResponse) => {
        if (draining) {
          refuse(req, res);
          return;
        }
        const socket = req.socket;
        answering.set(socket, (answering.get(socket) ?? 0) + 1);
        // `close` comes once the response's bytes are handed to the socket (or it was cut).
        res.once("close", () => answered(socket));
        listener(req, res);
      };
    },
    attach(server) {
      server.on("connection", (socket: Socket) => {
        connections.add(socket);
        socket.once("close", () => connections.delete(socket));
      });
    },
    drain(server) {
      draining = true;
      // net's close, not http's: http's first destroys every connection it deems idle, which
      // includes one whose ended response is still being sent.
      const closed = new Promise<void>((resolve) =>
        net.Server.prototype.close.call(server, () => resolve()),
      );
      for (const socket of connections) if (!answering.has(socket)) socket.destroySoon();
      return closed;
    },
  };
}

function refuse(req: IncomingMessage, res: ServerResponse) {
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
}
