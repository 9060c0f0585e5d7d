import type { Agent } from "node:http";
import { modelCatalog } from "../src/localnet/models.js";
import { clientAgent, type Timed, timedRequest } from "./http-client.js";
import { mean, percentile, round } from "./stats.js";
import type { CapturedResponse, StubResponses } from "./world-child.js";

/** Figures of one proxy comparison (one upstream, one mode, one concurrency). */
export interface ProxyRow {
  /** The upstream, and how the service ran, e.g. `stub, verifier idle`. */
  upstream: string;
  stream: boolean;
  concurrency: number;
  /** Requests measured on each path (after warm-up). */
  requests: number;
  errors: { direct: number; proxied: number };
  direct: PathFigures;
  proxied: PathFigures;
  /** proxied - direct, ms. */
  addedP50Ms: number;
  addedP99Ms: number;
  addedTtfbP50Ms: number;
  addedTtfbP99Ms: number;
  /**
   * Throughput of the proxied path over the direct one. Both paths run interleaved in one
   * closed loop, so each path's rate is concurrency / mean latency: the ratio is
   * mean(direct) / mean(proxied).
   */
  reqPerSecRatio: number;
  /** Requests per second of both paths together during the run. */
  combinedReqPerSec: number;
  /**
   * CPU time of the service process per proxied request during the measured run, ms. On one
   * event loop, requests in flight queue behind each other, so at concurrency c the proxied
   * path waits about (c / 2) x this.
   */
  serviceCpuMsPerRequest: number | null;
}

export interface PathFigures {
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  ttfbP50Ms: number;
  ttfbP99Ms: number;
}

function figures(samples: Timed[]): PathFigures {
  const totals = samples.map((s) => s.totalMs);
  const ttfb = samples.map((s) => s.ttfbMs);
  return {
    p50Ms: round(percentile(totals, 50), 3),
    p99Ms: round(percentile(totals, 99), 3),
    meanMs: round(mean(totals), 3),
    ttfbP50Ms: round(percentile(ttfb, 50), 3),
    ttfbP99Ms: round(percentile(ttfb, 99), 3),
  };
}

function completionBody(i: number, stream: boolean): string {
  const model = modelCatalog[i % modelCatalog.length]!.id;
  return JSON.stringify({
    model,
    messages: [{ role: "user", content: `Benchmark question ${i}: explain escrow briefly.` }],
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  });
}

export interface ProxyTargets {
  /** Upstream base, e.g. http://127.0.0.1:8788/v1 (the simulator or the stub). */
  directBaseUrl: string;
  /** The service root; requests go to `<root>/v1/...`. */
  serviceUrl: string;
  apiKeys: readonly string[];
}

/**
 * Runs `pairs` direct and `pairs` proxied requests at `concurrency`, interleaved: request i
 * goes direct when i is even, through the proxy when odd, and every worker takes the next i,
 * so both paths see the same machine at the same moments. A warm-up of both paths comes first.
 */
export async function compareProxy(
  targets: ProxyTargets,
  upstream: ProxyRow["upstream"],
  stream: boolean,
  concurrency: number,
  pairs: number,
  serviceCpuMs?: () => Promise<number>,
): Promise<ProxyRow> {
  const directAgent = clientAgent(concurrency);
  const proxiedAgent = clientAgent(concurrency);
  const send = (agent: Agent, base: string, i: number) =>
    timedRequest(agent, `${base}/chat/completions`, {
      headers: {
        authorization: `Bearer ${targets.apiKeys[i % targets.apiKeys.length]}`,
        "content-type": "application/json",
      },
      body: completionBody(i, stream),
    });
  const proxiedBase = `${targets.serviceUrl}/v1`;
  const run = async (total: number, keep: boolean) => {
    const direct: Timed[] = [];
    const proxied: Timed[] = [];
    const errors = { direct: 0, proxied: 0 };
    let next = 0;
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= total) return;
        const viaProxy = i % 2 === 1;
        const t = viaProxy
          ? await send(proxiedAgent, proxiedBase, i)
          : await send(directAgent, targets.directBaseUrl, i);
        if (t.status !== 200) errors[viaProxy ? "proxied" : "direct"]++;
        if (keep) (viaProxy ? proxied : direct).push(t);
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: concurrency }, worker));
    return { direct, proxied, errors, seconds: (performance.now() - started) / 1000 };
  };
  await run(Math.max(2 * concurrency, 40), false);
  // A full collection now (npm run bench passes --expose-gc), so the client's garbage from the
  // warm-up is not collected in the middle of the measured requests.
  globalThis.gc?.();
  const cpuBefore = await serviceCpuMs?.();
  const { direct, proxied, errors, seconds } = await run(2 * pairs, true);
  const cpuAfter = await serviceCpuMs?.();
  directAgent.destroy();
  proxiedAgent.destroy();
  const d = figures(direct);
  const p = figures(proxied);
  return {
    upstream,
    stream,
    concurrency,
    requests: pairs,
    errors,
    direct: d,
    proxied: p,
    addedP50Ms: round(p.p50Ms - d.p50Ms, 3),
    addedP99Ms: round(p.p99Ms - d.p99Ms, 3),
    addedTtfbP50Ms: round(p.ttfbP50Ms - d.ttfbP50Ms, 3),
    addedTtfbP99Ms: round(p.ttfbP99Ms - d.ttfbP99Ms, 3),
    reqPerSecRatio: round(d.meanMs / p.meanMs, 3),
    combinedReqPerSec: round((2 * pairs) / seconds, 1),
    serviceCpuMsPerRequest:
      cpuBefore === undefined || cpuAfter === undefined
        ? null
        : round((cpuAfter - cpuBefore) / pairs, 3),
  };
}

/** Hop-by-hop and per-response headers the stub sets itself. */
const notReplayed = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "date",
]);

async function capture(
  baseUrl: string,
  apiKey: string,
  stream: boolean,
): Promise<CapturedResponse> {
  const agent = clientAgent(1);
  const t = await timedRequest(agent, `${baseUrl}/chat/completions`, {
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: completionBody(1, stream),
    keep: true,
  });
  agent.destroy();
  const headers: [string, string][] = [];
  for (let i = 0; i + 1 < t.rawHeaders.length; i += 2) {
    const name = t.rawHeaders[i]!;
    if (!notReplayed.has(name.toLowerCase())) headers.push([name, t.rawHeaders[i + 1]!]);
  }
  const jobId = String(t.headers["x-decentral-job-id"] ?? "");
  if (t.status !== 200 || jobId === "") {
    throw new Error(
      `could not capture a ${stream ? "stream" : "JSON"} response (HTTP ${t.status})`,
    );
  }
  return { status: t.status, headers, chunks: t.chunks.map((c) => c.toString("utf8")), jobId };
}

/** One real response of each kind from the simulator, for the static stub to replay. */
export async function captureStubResponses(
  baseUrl: string,
  apiKey: string,
): Promise<StubResponses> {
  return {
    json: await capture(baseUrl, apiKey, false),
    stream: await capture(baseUrl, apiKey, true),
  };
}
