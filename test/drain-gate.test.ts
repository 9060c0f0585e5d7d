import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createDrainGate } from "../src/api/drain-gate.js";

let server: Server | null = null;
afterEach(() => {
  server?.closeAllConnections();
  server = null;
});

describe("drain gate", () => {
  it("tells a client whose answer comes after the drain began to close its connection", async () => {
    const gate = createDrainGate();
    let arrived!: () => void;
    const requestArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => {
      answer = resolve;
    });
    server = createServer(
      gate.wrap((_req, res) => {
        arrived();
        void answered.then(() => {
          res.writeHead(200, { "content-type": "text/plain", "content-length": "2" });
          res.end("ok");
        });
      }),
    );
    gate.attach(server);
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    // A keep-alive client: one request in flight on its connection, none queued behind it.
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("utf8");
    });
    const socketClosed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n");
    await requestArrived;
    const drained = gate.drain(server);
    answer();
    await socketClosed;
    await drained;
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    // Said keep-alive, the client would send its next request on a connection being closed.
    expect(received.toLowerCase()).toContain("connection: close");
    expect(received.toLowerCase()).not.toContain("connection: keep-alive");
  });

  it("answers a request pipelined behind it 503, the refusal closing the connection", async () => {
    const gate = createDrainGate();
    let arrived!: () => void;
    const requestArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => {
      answer = resolve;
    });
    server = createServer(
      gate.wrap((_req, res) => {
        arrived();
        void answered.then(() => {
          res.writeHead(200, { "content-type": "text/plain", "content-length": "2" });
          res.end("ok");
        });
      }),
    );
    gate.attach(server);
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("utf8");
    });
    const socketClosed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    await requestArrived;
    const drained = gate.drain(server);
    socket.write("GET /second HTTP/1.1\r\nhost: x\r\n\r\n");
    await new Promise((r) => setTimeout(r, 100));
    answer();
    await socketClosed;
    await drained;
    const [first, second] = received.split(/(?=HTTP\/1\.1 )/);
    expect(first).toMatch(/^HTTP\/1\.1 200 /);
    expect(second).toMatch(/^HTTP\/1\.1 503 /);
    expect(second).toContain('"code":"service_stopping"');
    expect(second?.toLowerCase()).toContain("connection: close");
  });

  it("answers 503 the next request of a client whose stream went out keep-alive before the drain", async () => {
    const gate = createDrainGate();
    let started!: () => void;
    const headSent = new Promise<void>((resolve) => {
      started = resolve;
    });
    let finish!: () => void;
    const finishing = new Promise<void>((resolve) => {
      finish = resolve;
    });
    server = createServer(
      gate.wrap((_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("data: 1\n\n");
        started();
        void finishing.then(() => res.end("data: [DONE]\n\n"));
      }),
    );
    gate.attach(server);
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const socket = connect(port, "127.0.0.1");
    let received = "";
    let sentNext = false;
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("utf8");
      // A pooled client sends its next request as soon as the answer it waited for has ended.
      if (!sentNext && received.endsWith("0\r\n\r\n")) {
        sentNext = true;
        socket.write("GET /next HTTP/1.1\r\nhost: x\r\n\r\n");
      }
    });
    socket.on("error", () => {});
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n");
    await headSent;
    const drained = gate.drain(server);
    finish();
    await closed;
    await drained;
    expect(received.toLowerCase()).toContain("connection: keep-alive");
    // Its stream ended keep-alive; the request it then sent is refused, not cut.
    expect(received).toMatch(/HTTP\/1\.1 503 /);
  });
});
