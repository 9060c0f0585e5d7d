import type { Server } from "node:http";
import type { Duplex } from "node:stream";

/** Node's HTTP parser error, as `clientError` hands it over. */
type ParseError = Error & { code?: string; reason?: string };

/** Status, code and message of the answer to a request Node's parser refused. */
function answerOf(error: ParseError): {
  status: number;
  text: string;
  code: string;
  field: string;
  message: string;
} {
  switch (error.code) {
    case "HPE_HEADER_OVERFLOW":
      return {
        status: 431,
        text: "Request Header Fields Too Large",
        code: "payload_too_large",
        field: "headers",
        message:
          "headers: the request line and headers are above 16 KiB; send fewer or shorter headers",
      };
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return {
        status: 408,
        text: "Request Timeout",
        code: "timeout",
        field: "request",
        message: "request: not received whole in time; send it again",
      };
    default: {
      // llhttp's reason names the fault ("Invalid header token", "Transfer-Encoding can't be
      // present with Content-Length"): plain ASCII, never a byte of the request itself.
      const reason = (error.reason ?? "").replace(/[^\x20-\x7e]/g, "").slice(0, 200);
      return {
        status: 400,
        text: "Bad Request",
        code: "bad_request",
        field: "request",
        message: `request: not valid HTTP/1.1${reason ? ` (${reason})` : ""}; nothing was read or forwarded`,
      };
    }
  }
}

/**
 * Answers a request Node's HTTP parser refuses (a header name with a space, a control character
 * in a header value, both Content-Length and Transfer-Encoding, headers above 16 KiB, a request
 * line that is no HTTP) with a JSON error saying what was wrong, where Node's own answer is a
 * bare `400 Bad Request` (or 431, 408) without a body: the caller saw a 400 and nothing naming
 * why. Only on a socket no answer has been written to yet, as Node does; any other is closed.
 */
export function answerClientErrors(server: Server): void {
  server.on("clientError", (error: ParseError, socket: Duplex & { bytesWritten?: number }) => {
    if (error.code === "ECONNRESET" || !socket.writable || (socket.bytesWritten ?? 0) > 0) {
      socket.destroy();
      return;
    }
    const { status, text, code, field, message } = answerOf(error);
    const body = `${JSON.stringify({ error: { code, message, field } })}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
    );
    // A peer that never reads its answer does not hold the socket.
    setTimeout(() => socket.destroy(), 5_000).unref();
  });
}
