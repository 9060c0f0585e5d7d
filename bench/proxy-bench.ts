import { modelCatalog } from "../src/localnet/models.js";
import type { LoopDelay } from "../src/loop-delay.js";
import { clientAgent, type Timed, timedRequest } from "./http-client.js";
import { mean, percentile, round } from "./stats.js";
import type { CapturedResponse, StubResponses } from "./world-child.js";

/** Added latency of one proxy over the direct path (proxy - direct), ms. */
export interface Added {
  p50Ms: number;
  p99Ms: number;
  ttfbP50Ms: number;
  ttfbP99Ms: number;
}

/** Figures of one proxy comparison (one upstream, one mode, one concurrency). */
export interface ProxyRow {
  /** The upstream, and how the service ran, e.g. `stub, 2 workers`. */
  upstream: string;
  stream: boolean;
  concurrency: number;
  /** Requests measured on each path (after warm-up). */
  requests: number;
  errors: { direct: number; bare: number; ours: number };
  direct: PathFigures;
  /** The bare pass-through proxy (bench/bare-proxy-child.ts): the floor. */
  bare: PathFigures;
  /** The recording proxy (`serve`). */
  ours: PathFigures;
  bareAdded: Added;
  oursAdded: Added;
  /** CPU time per request of each proxy's processes during the measured run, ms. */
  cpuMsPerRequest: { bare: number | null; ours: number | null };
  /**
   * CPU the service spends without any request, ms per second, measured over an idle pause
   * before the run that begins once the warm-up's own jobs API questions are answered (the
   * verifier polling the jobs waiting for finality, the leader lease, the WAL checkpoints), and the part of `cpuMsPerRequest.ours` it accounts for at this run's pace:
   * on a loaded host fewer requests share each second of it.
   */
  background: { cpuMsPerSec: number; msPerRequest: number } | null;
  /** ours / bare: CPU per request, added p50, added p99 (null when bare added nothing). */
  ratio: { cpu: number | null; p50: number | null; p99: number | null };
  /** Event-loop delay of the service's processes during the run (worst process), ms. */
  loopDelay: LoopDelay | null;
  /**
   * The SQLite receipt writer's group commits during the run, in all the service's processes,
   * and how long each held its event loop (p99 and max of the worst process), ms.
   */
  commitHold: CommitHolds | null;
  /**
   * The group commits of the receipt writer's own thread during the run (`serve` on a database
   * file), which hold no loop that proxies: how long a receipt waited for its commit there.
   */
  threadCommits: CommitHolds | null;
  /**
   * The bare proxy's event-loop delay during the same run: what a loop that only passes the
   * requests through shows under this load, so ours can be told apart from the load's.
   */
  bareLoopDelay?: LoopDelay;
  /** With `--proxy-ab`: the same of the other build's `serve`, in the bare proxy's place. */
  otherLoopDelay?: LoopDelay;
  /** Requests per second of the paths together during the run. */
  combinedReqPerSec: number;
  /**
   * With `--proxy-floor`: the recording floor (bench/recording-floor-child.ts), a fourth path
   * in the same interleaving; `ratio` is ours over it, `overBare` it over the bare proxy.
   */
  floor?: {
    figures: PathFigures;
    added: Added;
    errors: number;
    cpuMsPerRequest: number | null;
    loopDelay?: LoopDelay;
    ratio: { cpu: number | null; p50: number | null; p99: number | null };
    overBare: { cpu: number | null; p50: number | null; p99: number | null };
  };
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

function added(proxy: PathFigures, direct: PathFigures): Added {
  return {
    p50Ms: round(proxy.p50Ms - direct.p50Ms, 3),
    p99Ms: round(proxy.p99Ms - direct.p99Ms, 3),
    ttfbP50Ms: round(proxy.ttfbP50Ms - direct.ttfbP50Ms, 3),
    ttfbP99Ms: round(proxy.ttfbP99Ms - direct.ttfbP99Ms, 3),
  };
}

/** ours / bare; an added latency under `floor` counts as `floor` (noise, not a floor to beat). */
function ratioOf(ours: number | null, bare: number | null, floor = 0): number | null {
  if (ours === null || bare === null) return null;
  return round(Math.max(ours, floor) / Math.max(bare, floor, 1e-9), 2);
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
  /** The bare proxy's root; requests go to `<root>/v1/...`. */
  bareUrl: string;
  /** The service root; requests go to `<root>/v1/...`. */
  serviceUrl: string;
  apiKeys: readonly string[];
  /** Sent in `x-audit-token` to the service (PROXY_REQUIRE_TOKEN). */
  serviceToken?: string;
  /** Sent in `x-audit-token` to the bare proxy's place (the other build's service). */
  bareToken?: string;
  /** The recording floor's root (`--proxy-floor`), measured as a fourth path. */
  floorUrl?: string;
}

/** CPU and event-loop readings of the two proxies, taken before and after the measured run. */
export interface ProxyProbes {
  bareCpuMs(): Promise<number>;
  /** The bare proxy's event-loop delay since the last call. */
  bareLoopDelay?(): Promise<LoopDelay>;
  /**
   * With `--proxy-ab`, the other build's `serve` in the bare proxy's place, read as `service`
   * reads ours (then `bareCpuMs` is not asked).
   */
  otherService?(): Promise<ServiceReading>;
  /** CPU of the recording floor so far (with `ProxyTargets.floorUrl`). */
  floorCpuMs?(): Promise<number>;
  /** The recording floor's event-loop delay since the last call. */
  floorLoopDelay?(): Promise<LoopDelay>;
  /** CPU of every process of the service so far, and the worst event-loop delay since last. */
  service(): Promise<ServiceReading>;
}

export interface ServiceReading {
  cpuMs: number;
  loopP99Ms: number;
  loopMaxMs: number;
  /** The receipt writer's group commits since the last reading (absent from an older build). */
  commitHold?: CommitHolds;
  /** The writer thread's group commits since the last reading (absent from an older build). */
  threadCommits?: CommitHolds;
}

/** Group commits of a run and how long they held the event loop (src/recorder/commit-hold.ts). */
export interface CommitHolds {
  count: number;
  overOneMs: number;
  p99Ms: number;
  maxMs: number;
}

const rounded = (d: LoopDelay): LoopDelay => ({
  p99Ms: round(d.p99Ms, 2),
  maxMs: round(d.maxMs, 2),
});
const loopOf = (r: ServiceReading) => rounded({ p99Ms: r.loopP99Ms, maxMs: r.loopMaxMs });

/** The idle pause before each measured run over which the service's background CPU is read. */
const idleMs = 2000;
/**
 * How long after the warm-up the idle pause begins. The warm-up's own jobs are still worked on
 * just after it (their jobs API questions, asked within 100 ms, and their answers' writes, within
 * 200 ms): read from the warm-up's end, that work counted as CPU spent without any request (after
 * 64 requests in flight, the first half second at about four times the rate of the seconds after).
 */
const settleMs = 1000;

/**
 * Runs `requests` requests on each path (direct, bare proxy, our proxy, and the recording
 * floor when `targets.floorUrl` is given) at `concurrency`, interleaved: request i takes path
 * i mod the number of paths, and every worker takes the next i, so the paths see the same
 * machine at the same moments. A warm-up of every path comes first.
 */
export async function compareProxy(
  targets: ProxyTargets,
  upstream: ProxyRow["upstream"],
  stream: boolean,
  concurrency: number,
  requests: number,
  probes?: ProxyProbes,
): Promise<ProxyRow> {
  const bases = [targets.directBaseUrl, `${targets.bareUrl}/v1`, `${targets.serviceUrl}/v1`];
  const tokens = [undefined, targets.bareToken, targets.serviceToken];
  if (targets.floorUrl !== undefined) {
    bases.push(`${targets.floorUrl}/v1`);
    tokens.push(undefined);
  }
  const n = bases.length;
  const agents = bases.map(() => clientAgent(concurrency));
  const send = (p: number, i: number) =>
    timedRequest(agents[p]!, `${bases[p]}/chat/completions`, {
      headers: {
        authorization: `Bearer ${targets.apiKeys[i % targets.apiKeys.length]}`,
        "content-type": "application/json",
        ...(tokens[p] === undefined ? {} : { "x-audit-token": tokens[p] }),
      },
      body: completionBody(i, stream),
    });
  const run = async (total: number, keep: boolean) => {
    const samples: Timed[][] = bases.map(() => []);
    const errors = bases.map(() => 0);
    let next = 0;
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= total) return;
        const p = i % n;
        // A broken connection counts as an error of its path, like a non-200 answer.
        const t = await send(p, i).catch(() => null);
        if (t?.status !== 200) errors[p]!++;
        if (keep && t) samples[p]!.push(t);
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: concurrency }, worker));
    return { samples, errors, seconds: (performance.now() - started) / 1000 };
  };
  await run(n * Math.max(2 * concurrency, 40), false);
  // A full collection now (npm run bench passes --expose-gc), so the client's garbage from the
  // warm-up is not collected in the middle of the measured requests.
  globalThis.gc?.();
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const idleFrom = await probes?.service();
  await new Promise((resolve) => setTimeout(resolve, idleMs));
  const bareCpuMs = async () =>
    probes?.otherService ? (await probes.otherService()).cpuMs : probes?.bareCpuMs();
  const bareBefore = await bareCpuMs();
  await probes?.bareLoopDelay?.();
  const floorBefore = await probes?.floorCpuMs?.();
  await probes?.floorLoopDelay?.();
  const serviceBefore = await probes?.service();
  const { samples, errors, seconds } = await run(n * requests, true);
  const other = await probes?.otherService?.();
  const bareAfter = other ? other.cpuMs : await bareCpuMs();
  const bareLoop = await probes?.bareLoopDelay?.();
  const floorAfter = await probes?.floorCpuMs?.();
  const floorLoop = await probes?.floorLoopDelay?.();
  const serviceAfter = await probes?.service();
  for (const agent of agents) agent.destroy();
  const [d, b, o, f] = samples.map(figures) as [
    PathFigures,
    PathFigures,
    PathFigures,
    PathFigures?,
  ];
  const bareAdded = added(b, d);
  const oursAdded = added(o, d);
  const perRequest = (before?: number, after?: number) =>
    before === undefined || after === undefined ? null : round((after - before) / requests, 3);
  const cpu = {
    bare: perRequest(bareBefore, bareAfter),
    ours: perRequest(serviceBefore?.cpuMs, serviceAfter?.cpuMs),
  };
  const floorCpu = perRequest(floorBefore, floorAfter);
  const floorAdded = f ? added(f, d) : null;
  const idleCpuMsPerSec =
    idleFrom && serviceBefore ? (serviceBefore.cpuMs - idleFrom.cpuMs) / (idleMs / 1000) : null;
  return {
    upstream,
    stream,
    concurrency,
    requests,
    errors: { direct: errors[0]!, bare: errors[1]!, ours: errors[2]! },
    direct: d,
    bare: b,
    ours: o,
    bareAdded,
    oursAdded,
    cpuMsPerRequest: cpu,
    background:
      idleCpuMsPerSec === null
        ? null
        : {
            cpuMsPerSec: round(idleCpuMsPerSec, 2),
            msPerRequest: round((idleCpuMsPerSec * seconds) / requests, 3),
          },
    ratio: {
      cpu: ratioOf(cpu.ours, cpu.bare),
      p50: ratioOf(oursAdded.p50Ms, bareAdded.p50Ms, 0.25),
      p99: ratioOf(oursAdded.p99Ms, bareAdded.p99Ms, 0.25),
    },
    loopDelay: serviceAfter ? loopOf(serviceAfter) : null,
    commitHold: serviceAfter?.commitHold ? roundedHolds(serviceAfter.commitHold) : null,
    threadCommits: serviceAfter?.threadCommits ? roundedHolds(serviceAfter.threadCommits) : null,
    ...(bareLoop ? { bareLoopDelay: rounded(bareLoop) } : {}),
    ...(other ? { otherLoopDelay: loopOf(other) } : {}),
    combinedReqPerSec: round((n * requests) / seconds, 1),
    ...(f && floorAdded
      ? {
          floor: {
            figures: f,
            added: floorAdded,
            errors: errors[3]!,
            cpuMsPerRequest: floorCpu,
            ...(floorLoop ? { loopDelay: rounded(floorLoop) } : {}),
            ratio: {
              cpu: ratioOf(cpu.ours, floorCpu),
              p50: ratioOf(oursAdded.p50Ms, floorAdded.p50Ms, 0.25),
              p99: ratioOf(oursAdded.p99Ms, floorAdded.p99Ms, 0.25),
            },
            overBare: {
              cpu: ratioOf(floorCpu, cpu.bare),
              p50: ratioOf(floorAdded.p50Ms, bareAdded.p50Ms, 0.25),
              p99: ratioOf(floorAdded.p99Ms, bareAdded.p99Ms, 0.25),
            },
          },
        }
      : {}),
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

function roundedHolds(holds: CommitHolds): CommitHolds {
  return { ...holds, p99Ms: round(holds.p99Ms, 3), maxMs: round(holds.maxMs, 3) };
}
