import http from "node:http";

/** One timed HTTP exchange as the benchmark client saw it. */
export interface Timed {
  status: number;
  /** Request start to the last body byte, ms. */
  totalMs: number;
  /** Request start to the first body byte, ms. */
  ttfbMs: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  /** Body as received, one entry per `data` event (kept only when asked). */
  chunks: Buffer[];
  bytes: number;
}

/** A keep-alive agent sized for `concurrency` requests in flight. */
export function clientAgent(concurrency: number): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
}

/**
 * Sends one request with node:http (lighter than fetch, so the client adds little noise of
 * its own) and times it with the monotonic clock.
 */
export function timedRequest(
  agent: http.Agent,
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; keep?: boolean },
): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const body = options.body === undefined ? undefined : Buffer.from(options.body);
    const req = http.request(
      url,
      {
        method: options.method ?? (body ? "POST" : "GET"),
        agent,
        headers: {
          ...(body ? { "content-length": String(body.length) } : {}),
          ...options.headers,
        },
      },
      (res) => {
        let ttfbMs = -1;
        let bytes = 0;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => {
          if (ttfbMs < 0) ttfbMs = performance.now() - started;
          bytes += chunk.length;
          if (options.keep) chunks.push(chunk);
        });
        res.on("end", () => {
          const totalMs = performance.now() - started;
          resolve({
            status: res.statusCode ?? 0,
            totalMs,
            ttfbMs: ttfbMs < 0 ? totalMs : ttfbMs,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            chunks,
            bytes,
          });
        });
        res.on("error", reject);
      },
    );
    req.setNoDelay(true);
    req.on("error", (error) => reject(new Error(`${url}: ${error.message}`, { cause: error })));
    req.end(body);
  });
}
