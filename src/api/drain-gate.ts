import type { IncomingMessage, RequestListener, Server, ServerResponse } from "node:http";
import net, { type Socket } from "node:net";
import { requestIdOf } from "./request-id.js";

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
 *
 * A connection's last response still unanswered when the drain starts (its job running
 * upstream, or its receipt waiting for a write lock another process holds) says `connection:
 * close` when it is answered: said `keep-alive`, its client took the connection back into its
 * pool and sent its next request on it just as it was closed, and got a socket error (seen as
 * deployed, one request in each of three drains) where the closed connection would have sent
 * it to a new one. A request that comes on that connection before the answer (pipelined) takes
 * the close over: it is answered `503` after it, as above. An answer whose head went out
 * keep-alive before the drain (a stream, forwarded as it comes) cannot say so: its connection is
 * left open a moment (`keptAliveGraceMs`, a second) after it ends, so a request its client sends
 * on it then is answered `503` and not met by a cut socket.
 */
export interface DrainGate {
  /** `listener` behind the gate. */
  wrap(listener: RequestListener): RequestListener;
  /** Follows `server`'s connections; called before it listens. */
  attach(server: Server): void;
  /** Stops accepting and turns requests away; resolves once every connection has closed. */
  drain(server: Server): Promise<void>;
}

export function createDrainGate(options: { keptAliveGraceMs?: number } = {}): DrainGate {
  /** How long a connection whose last answer said keep-alive stays open once the drain began. */
  const keptAliveGraceMs = options.keptAliveGraceMs ?? 1000;
  let draining = false;
  const connections = new Set<Socket>();
  /** Requests being answered, by connection (pipelined requests queue on one). */
  const answering = new Map<Socket, number>();
  /** Responses not yet closed, by connection, in the order they are sent. */
  const responses = new Map<Socket, ServerResponse[]>();
  /** Responses the drain told to close their connection, and whether they would have kept it. */
  const toldToClose = new Map<ServerResponse, boolean>();

  const forget = (socket: Socket, res: ServerResponse) => {
    toldToClose.delete(res);
    const left = (responses.get(socket) ?? []).filter((r) => r !== res);
    if (left.length > 0) responses.set(socket, left);
    else responses.delete(socket);
  };

  const answered = (socket: Socket, keptAlive: boolean) => {
    const left = (answering.get(socket) ?? 1) - 1;
    if (left > 0) {
      answering.set(socket, left);
      return;
    }
    answering.delete(socket);
    if (!draining) return;
    if (!keptAlive) {
      socket.destroySoon();
      return;
    }
    // Its last answer went out keep-alive, its head sent before the drain began (a stream): its
    // client may send its next request on it as it ends. That request is answered 503, which
    // closes the connection; closed at once, the request met a cut socket instead.
    const timer = setTimeout(() => {
      if (!answering.has(socket)) socket.destroySoon();
    }, keptAliveGraceMs);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));
  };

  return {
    wrap(listener) {
      return (req: IncomingMessage, res: ServerResponse) => {
        if (draining) {
          // The refusal, sent after the answers before it, closes the connection in their place.
          for (const earlier of responses.get(req.socket) ?? []) {
            const keep = toldToClose.get(earlier);
            if (keep !== undefined && !earlier.headersSent) earlier.shouldKeepAlive = keep;
            toldToClose.delete(earlier);
          }
          refuse(req, res);
          return;
        }
        const socket = req.socket;
        answering.set(socket, (answering.get(socket) ?? 0) + 1);
        responses.set(socket, [...(responses.get(socket) ?? []), res]);
        // `close` comes once the response's bytes are handed to the socket (or it was cut).
        res.once("close", () => {
          forget(socket, res);
          answered(socket, res.shouldKeepAlive && res.writableFinished);
        });
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
      // Each connection's last answer not sent yet says `connection: close` (Node writes it for a
      // response that will not keep its connection): the client sends its next request on a
      // new connection, which finds the port closed (or another process) and not a cut socket.
      for (const list of responses.values()) {
        const last = list.at(-1);
        if (last === undefined || last.headersSent) continue;
        toldToClose.set(last, last.shouldKeepAlive);
        last.shouldKeepAlive = false;
      }
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
  // Under the request's id, as every other error (the proxy's and the API's).
  const requestId = requestIdOf(req.headers["x-request-id"]);
  const body = JSON.stringify({
    error: {
      code: "service_stopping",
      message: "the audit service is stopping; send the request again",
      type: "server_error",
      param: null,
      details: { retry_after: 1 },
    },
    requestId,
  });
  res.writeHead(503, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "x-request-id": requestId,
    "retry-after": "1",
    connection: "close",
  });
  res.end(body);
}
