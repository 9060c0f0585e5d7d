import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerClientErrors } from "../src/api/client-error.js";

/** The raw answer of the server to `raw`, read until it closes the connection. */
function exchange(port: number, raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, "127.0.0.1", () => socket.write(raw));
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("close", () => resolve(Buffer.concat(chunks).toString()));
    socket.on("error", reject);
  });
}

// A request Node's parser refuses (a header name with a space, a control character in a
// header value, Content-Length beside Transfer-Encoding) was answered a bare "400 Bad Request"
// with no body: nothing said what was wrong.
describe("a request that is not valid HTTP", () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((_req, res) => res.end("ok"));
    answerClientErrors(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const cases: [string, string, number, string][] = [
    [
      "a header name with a space",
      "GET / HTTP/1.1\r\nHost: x\r\nbad name: v\r\n\r\n",
      400,
      "Invalid header token",
    ],
    [
      "a control character in a value",
      "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
      400,
      "Invalid header value char",
    ],
    [
      "Content-Length beside Transfer-Encoding",
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      400,
      "Transfer-Encoding",
    ],
    ["no request line", "GARBAGE\r\n\r\n", 400, "not valid HTTP/1.1"],
    [
      "headers above 16 KiB",
      `GET / HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(20_000)}\r\n\r\n`,
      431,
      "16 KiB",
    ],
  ];
  for (const [label, raw, status, says] of cases) {
    it(`answers ${label} with ${status} and a JSON error saying why`, async () => {
      const answer = await exchange(port, raw);
      expect(answer.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
      const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as {
        error: { code: string; message: string; field: string };
      };
      expect(body.error.message).toContain(says);
      expect(body.error.field).toBe(status === 431 ? "headers" : "request");
    });
  }

  it("still answers a valid request, and the bytes of a refused one are never echoed", async () => {
    expect(
      await exchange(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ).toContain("ok");
    const answer = await exchange(
      port,
      "GET / HTTP/1.1\r\nHost: x\r\nsecret dcntrl_live_abc: v\r\n\r\n",
    );
    expect(answer).not.toContain("dcntrl_live_abc");
  });
});
