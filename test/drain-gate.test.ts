import { createServer, type RequestListener, type Server } from "node:http";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createDrainGate, type DrainGate } from "../src/api/drain-gate.js";

let server: Server | null = null;
afterEach(() => {
  server?.closeAllConnections();
  server = null;
});

/** A promise and what settles it, for a step the test takes when it chooses. */
function step(): { done: Promise<void>; take: () => void } {
  let take!: () => void;
  const done = new Promise<void>((resolve) => {
    take = resolve;
  });
  return { done, take };
}

/** `listener` behind a drain gate on a port of its own. */
async function gated(listener: RequestListener): Promise<{ gate: DrainGate; port: number }> {
  const gate = createDrainGate();
  server = createServer(gate.wrap(listener));
  gate.attach(server);
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return { gate, port: typeof address === "object" && address ? address.port : 0 };
}

/**
 * A raw client's connection: what it received so far, and when it closed. `onData` sees the
 * bytes received so far each time more come (a pooled client's next request, sent on them).
 */
function rawClient(port: number, onData: (received: string) => void = () => {}) {
  const socket = connect(port, "127.0.0.1");
  let received = "";
  socket.on("data", (chunk: Buffer) => {
    received += chunk.toString("utf8");
    onData(received);
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  return { socket, received: () => received, closed };
}

/** Answers `ok` once `answer` is taken; `arrived` is taken as each request comes. */
const answerWhen =
  (arrived: () => void, answer: Promise<void>): RequestListener =>
  (_req, res) => {
    arrived();
    void answer.then(() => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": "2" });
      res.end("ok");
    });
  };

describe("drain gate", () => {
  it("tells a client whose answer comes after the drain began to close its connection", async () => {
    const arrived = step();
    const answer = step();
    const { gate, port } = await gated(answerWhen(arrived.take, answer.done));
    // A keep-alive client: one request in flight on its connection, none queued behind it.
    const client = rawClient(port);
    client.socket.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n");
    await arrived.done;
    const drained = gate.drain(server!);
    answer.take();
    await client.closed;
    await drained;
    const received = client.received();
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    // Said keep-alive, the client would send its next request on a connection being closed.
    expect(received.toLowerCase()).toContain("connection: close");
    expect(received.toLowerCase()).not.toContain("connection: keep-alive");
  });

  it("answers a request pipelined behind it 503, the refusal closing the connection", async () => {
    const arrived = step();
    const answer = step();
    const { gate, port } = await gated(answerWhen(arrived.take, answer.done));
    const client = rawClient(port);
    client.socket.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    await arrived.done;
    const drained = gate.drain(server!);
    client.socket.write("GET /second HTTP/1.1\r\nhost: x\r\nx-request-id: trace-9\r\n\r\n");
    await new Promise((r) => setTimeout(r, 100));
    answer.take();
    await client.closed;
    await drained;
    const [first, second] = client.received().split(/(?=HTTP\/1\.1 )/);
    expect(first).toMatch(/^HTTP\/1\.1 200 /);
    expect(second).toMatch(/^HTTP\/1\.1 503 /);
    expect(second).toContain('"code":"service_stopping"');
    // Under its request id, as every other error: in the body and in x-request-id.
    expect(second).toContain('"requestId":"trace-9"');
    expect(second?.toLowerCase()).toContain("x-request-id: trace-9");
    expect(second?.toLowerCase()).toContain("connection: close");
  });

  it("answers 503 the next request of a client whose stream went out keep-alive before the drain", async () => {
    const headSent = step();
    const finish = step();
    const { gate, port } = await gated((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: 1\n\n");
      headSent.take();
      void finish.done.then(() => res.end("data: [DONE]\n\n"));
    });
    let sentNext = false;
    const client = rawClient(port, (received) => {
      // A pooled client sends its next request as soon as the answer it waited for has ended.
      if (!sentNext && received.endsWith("0\r\n\r\n")) {
        sentNext = true;
        client.socket.write("GET /next HTTP/1.1\r\nhost: x\r\n\r\n");
      }
    });
    client.socket.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n");
    await headSent.done;
    const drained = gate.drain(server!);
    finish.take();
    await client.closed;
    await drained;
    expect(client.received().toLowerCase()).toContain("connection: keep-alive");
    // Its stream ended keep-alive; the request it then sent is refused, not cut.
    expect(client.received()).toMatch(/HTTP\/1\.1 503 /);
  });
});
