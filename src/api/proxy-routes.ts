import type { HttpBindings } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Hono } from "hono";
import { AppError } from "../errors.js";
import type { RecordingProxy } from "../recorder/proxy.js";
import type { AppEnv } from "./context.js";

const AlreadySentResponse = RESPONSE_ALREADY_SENT.constructor as typeof Response;

/**
 * `/v1/*`: the recording proxy. The proxy works on Node's request and response objects (no
 * Fetch API conversion, so streams pass chunk by chunk with nothing buffered); the route only
 * hands them over, so middleware mounted before it (auth, request log) still applies, and
 * resolves when the response is over so the request log has its real status and duration.
 */
export function proxyRoutes(proxy: RecordingProxy) {
  return new Hono<AppEnv & { Bindings: HttpBindings }>().all("/v1/*", async (c) => {
    const { incoming, outgoing } = c.env ?? {};
    if (!incoming || !outgoing) {
      throw new AppError("internal", "the recording proxy needs the Node HTTP server");
    }
    const status = await proxy.handle(incoming, outgoing, c.get("requestId"));
    if (status < 200 || status > 599) return RESPONSE_ALREADY_SENT;
    // The response went out directly; this one tells the request log what was sent. It must be
    // of the platform's Response class (as RESPONSE_ALREADY_SENT is), not the lighter one the
    // Node adapter installs globally, or the adapter would try to send it.
    return new AlreadySentResponse(null, { status, headers: RESPONSE_ALREADY_SENT.headers });
  });
}
