import { statSync } from "node:fs";
import { clientAgent, timedRequest } from "./http-client.js";
import { benchReceipts } from "./ingest-bench.js";
import { percentile, round } from "./stats.js";

/**
 * The soak: continuous proxy traffic (4 in flight, real jobs on the local chain), ingest
 * batches (100 receipts a second, signatures that never land: each is polled until dropped)
 * and a reconciliation report every 5 s, against two `serve` processes sharing one database
 * file, for minutes, sampling at a fixed interval: the WAL's size (it must stay bounded), each
 * service's event-loop delay p99 (busy waits on the write lock would show here) and the
 * proxy's latency. On two cores shared by the world, both services and this client, the
 * event-loop delay includes time the process waited for a core.
 */

export interface SoakService {
  url: string;
  token: string;
  /** Event-loop delay since the last call: p99 and max in ms. */
  loopDelay(): Promise<{ p99Ms: number; maxMs: number }>;
}

export interface SoakSample {
  atSeconds: number;
  walMb: number;
  dbMb: number;
  proxied: number;
  proxyErrors: number;
  proxyP50Ms: number;
  proxyP99Ms: number;
  ingested: number;
  ingestErrors: number;
  loopDelayP99Ms: number[];
  loopDelayMaxMs: number[];
}

export interface SoakResult {
  seconds: number;
  samples: SoakSample[];
  peakWalMb: number;
  proxied: number;
  proxyErrors: number;
  ingested: number;
  ingestErrors: number;
  proxyP99MsOverall: number;
  loopDelayP99MsWorst: number;
}

const mb = (bytes: number) => round(bytes / 1024 / 1024, 1);
const sizeOf = (path: string) => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

export async function runSoak(options: {
  dbPath: string;
  services: SoakService[];
  apiKeys: readonly string[];
  seconds: number;
  sampleSeconds: number;
  proxyConcurrency: number;
  say(line: string): void;
}): Promise<SoakResult> {
  const { services, seconds } = options;
  const deadline = performance.now() + seconds * 1000;
  const agent = clientAgent(options.proxyConcurrency + 4);
  let latencies: number[] = [];
  const allLatencies: number[] = [];
  let proxied = 0;
  let proxyErrors = 0;
  let ingested = 0;
  let ingestErrors = 0;
  let totals = { proxied: 0, proxyErrors: 0, ingested: 0, ingestErrors: 0 };

  const proxyWorker = async (w: number) => {
    for (let i = 0; performance.now() < deadline; i++) {
      const service = services[(w + i) % services.length]!;
      const stream = i % 3 === 0;
      try {
        const r = await timedRequest(agent, `${service.url}/v1/chat/completions`, {
          headers: {
            authorization: `Bearer ${options.apiKeys[(w + i) % options.apiKeys.length]}`,
            "content-type": "application/json",
          },
          body: JSON.stringify({
            model: "qwen3-8b",
            messages: [{ role: "user", content: `soak ${w}/${i}` }],
            ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
          }),
        });
        if (r.status !== 200) proxyErrors++;
        latencies.push(r.totalMs);
        proxied++;
      } catch {
        proxyErrors++;
      }
    }
  };

  const ingestWorker = async () => {
    for (let k = 0; performance.now() < deadline; k++) {
      const service = services[k % services.length]!;
      const batch = benchReceipts(100, `soak${k}x`);
      try {
        const r = await timedRequest(agent, `${service.url}/jobs`, {
          headers: { authorization: `Bearer ${service.token}`, "content-type": "application/json" },
          body: JSON.stringify(batch),
        });
        if (r.status >= 300) ingestErrors++;
        else ingested += batch.length;
      } catch {
        ingestErrors++;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };

  // A dashboard's reconciliation every 5 s: a reader that keeps a snapshot open for a while,
  // which is what stops PASSIVE checkpoints from resetting the WAL.
  const reportWorker = async () => {
    for (let k = 0; performance.now() < deadline; k++) {
      const service = services[k % services.length]!;
      try {
        await timedRequest(
          agent,
          `${service.url}/reports/reconciliation?from=2020-01-01&to=2100-01-01&groupBy=model`,
          { headers: { authorization: `Bearer ${service.token}` } },
        );
      } catch {
        // A failed report is not what the soak measures.
      }
      await new Promise((resolve) => setTimeout(resolve, 5000));
    }
  };

  const samples: SoakSample[] = [];
  const started = performance.now();
  for (const s of services) await s.loopDelay();
  const sampler = (async () => {
    while (performance.now() < deadline) {
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(options.sampleSeconds * 1000, deadline - performance.now())),
      );
      const delays = await Promise.all(services.map((s) => s.loopDelay()));
      const sample: SoakSample = {
        atSeconds: round((performance.now() - started) / 1000, 0),
        walMb: mb(sizeOf(`${options.dbPath}-wal`)),
        dbMb: mb(sizeOf(options.dbPath)),
        proxied: proxied - totals.proxied,
        proxyErrors: proxyErrors - totals.proxyErrors,
        proxyP50Ms: round(percentile(latencies, 50)),
        proxyP99Ms: round(percentile(latencies, 99)),
        ingested: ingested - totals.ingested,
        ingestErrors: ingestErrors - totals.ingestErrors,
        loopDelayP99Ms: delays.map((d) => round(d.p99Ms)),
        loopDelayMaxMs: delays.map((d) => round(d.maxMs)),
      };
      allLatencies.push(...latencies);
      latencies = [];
      totals = { proxied, proxyErrors, ingested, ingestErrors };
      samples.push(sample);
      options.say(
        `soak ${String(sample.atSeconds).padStart(4)} s  wal ${String(sample.walMb).padStart(6)} MB  db ${String(sample.dbMb).padStart(6)} MB  proxy ${sample.proxied} req p50 ${sample.proxyP50Ms} p99 ${sample.proxyP99Ms} ms (${sample.proxyErrors} err)  ingest ${sample.ingested} (${sample.ingestErrors} err)  loop p99 ${sample.loopDelayP99Ms.join(" / ")} ms max ${sample.loopDelayMaxMs.join(" / ")} ms`,
      );
    }
  })();

  await Promise.all([
    ...Array.from({ length: options.proxyConcurrency }, (_, w) => proxyWorker(w)),
    ingestWorker(),
    reportWorker(),
    sampler,
  ]);
  agent.destroy();
  allLatencies.push(...latencies);
  return {
    seconds,
    samples,
    peakWalMb: Math.max(0, ...samples.map((s) => s.walMb)),
    proxied,
    proxyErrors,
    ingested,
    ingestErrors,
    proxyP99MsOverall: round(percentile(allLatencies, 99)),
    loopDelayP99MsWorst: Math.max(0, ...samples.flatMap((s) => s.loopDelayP99Ms)),
  };
}
