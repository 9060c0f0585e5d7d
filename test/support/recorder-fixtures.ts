import { randomBytes } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener, serve } from "@hono/node-server";
import bs58 from "bs58";
import { onTestFinished } from "vitest";
import { createApp } from "../../src/api/app.js";
import type { ReadinessProbes } from "../../src/api/ops-routes.js";
import { withProxyFastPath } from "../../src/api/proxy-listener.js";
import { createToken } from "../../src/auth/tokens.js";
import type { Store } from "../../src/db/client.js";
import { createLogger, type Logger } from "../../src/log.js";
import type { JobsApiAnswer } from "../../src/recorder/jobs-api.js";
import type { RecordingProxy } from "../../src/recorder/proxy.js";
import type { Receipt } from "../../src/recorder/receipts.js";

/** A well-formed transaction signature (base58 of 64 random bytes). */
export function signature(): string {
  return bs58.encode(randomBytes(64));
}

/** A well-formed wallet address (base58 of 32 random bytes). */
export function address(): string {
  return bs58.encode(randomBytes(32));
}

let counter = 0;
/** A fresh job id. */
export function jobId(): string {
  counter++;
  return `job_${randomBytes(6).toString("hex")}${counter}`;
}

/** A receipt as the recorder writes it, complete unless overridden. */
export function receipt(overrides: Partial<Receipt> = {}): Receipt {
  return {
    jobId: jobId(),
    escrowTx: signature(),
    settlementTx: signature(),
    worker: address(),
    creditsRemainingUnits: 12_345_000n,
    model: "qwen3-8b",
    promptTokens: 10,
    completionTokens: 20,
    totalTokens: 30,
    ...overrides,
  };
}

/** A receipt as the ingest API takes it, complete unless overridden. */
export function wireReceipt(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    job_id: jobId(),
    escrow_tx: signature(),
    settlement_tx: signature(),
    worker: address(),
    credits_remaining: "1234.5",
    model: "qwen3-8b",
    usage: { prompt_tokens: 12, completion_tokens: 80, total_tokens: 92 },
    ...overrides,
  };
}

/** A logger whose JSON lines are kept in `lines`, to search them after a run. */
export function capturedLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ level: "debug" }, { write: (line: string) => lines.push(line) });
  return { log, lines };
}

/**
 * `server` (a `listen` or `serveApp` answer), closed when the running test ends, passed or
 * failed. A case that listened before its `try` left the server listening when a step between
 * failed, and the shared-imports worker's next file failed its servers' check for it. Servers
 * handed over in order close in the reverse order: the app before the upstream it calls.
 */
export function closedAfterTest<T extends { close(): Promise<void> }>(server: T): T {
  onTestFinished(() => server.close());
  return server;
}

/**
 * An upstream that answers every request, once its body is read, as the operator answers a
 * job: 200 with the job's headers (its id, lock, settlement and worker), `headers` beside or in
 * place of them, and `body`. Closed after the test.
 */
export async function jobUpstream(
  job: { jobId: string; worker: { address: string } },
  txs: { escrowTx: string; settlementTx: string },
  answer: { body: string | Buffer; headers?: Record<string, string> },
): Promise<{ url: string; close(): Promise<void> }> {
  return closedAfterTest(
    await listen(
      http.createServer(async (req, res) => {
        for await (const _ of req) {
          // drain the request
        }
        res.writeHead(200, {
          "content-type": "application/json",
          "x-decentral-job-id": job.jobId,
          "x-decentral-tx-signature": txs.escrowTx,
          "x-decentral-settlement-tx": txs.settlementTx,
          "x-decentral-worker": job.worker.address,
          ...answer.headers,
        });
        res.end(answer.body);
      }),
    ),
  );
}

/** Listens on a free loopback port; resolves with the base URL and a close function. */
export async function listen(
  server: http.Server,
): Promise<{ url: string; close(): Promise<void> }> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Serves `createApp` on a free port the way `serve` does (so the proxy gets Node objects). */
export async function serveApp(
  deps: { store: Store; log: Logger; proxy?: RecordingProxy; readiness?: ReadinessProbes },
  options: { direct?: boolean } = {},
) {
  const app = createApp(deps);
  // As `serve` does: `/v1/*` straight to the proxy (unless `direct: false`, through the app).
  const { proxy } = deps;
  const direct = proxy && options.direct !== false;
  const server = (
    direct
      ? http.createServer(
          withProxyFastPath(getRequestListener(app.fetch), { proxy, log: deps.log }),
        )
      : serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" })
  ) as http.Server;
  if (direct) server.listen(0, "127.0.0.1");
  if (!server.listening) await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A fresh access token of role `ingest` (what backends posting receipts hold). */
export async function ingestToken(store: Store): Promise<string> {
  return (await createToken(store, { role: "ingest", name: "recorder tests" })).token;
}

/** The jobs API's answer for a job still running: it names no settlement yet. */
export function processingAnswer(): JobsApiAnswer {
  return {
    status: "processing",
    creditsChargedUnits: null,
    escrowTx: null,
    settlementTx: null,
    worker: null,
    raw: {},
  };
}
