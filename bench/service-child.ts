import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { peakRssBytes } from "./peak-rss.js";

/**
 * The service's modules: src/ as tsx compiles it, or with BENCH_SERVICE_BUILT=1 the build in
 * dist/ (`npm run build`), which is what `decentral-audit serve` runs. tsx compiles with
 * esbuild's `keepNames`, which names each function as it is created (a defineProperty for every
 * closure a request makes): CPU the shipped build does not spend.
 */
const root = process.env.BENCH_SERVICE_BUILT === "1" ? "../dist" : "../src";
const load = <M>(module: string) => import(`${root}/${module}`) as Promise<M>;
const { createApp } = await load<typeof import("../src/api/app.js")>("api/app.js");
const { createToken } = await load<typeof import("../src/auth/tokens.js")>("auth/tokens.js");
const { loadConfig } = await load<typeof import("../src/config.js")>("config.js");
const { openSqliteStore } = await load<typeof import("../src/db/client.js")>("db/client.js");
const { migrateStore } = await load<typeof import("../src/db/migrate.js")>("db/migrate.js");
const { openStore } = await load<typeof import("../src/db/open.js")>("db/open.js");
const { createLogger } = await load<typeof import("../src/log.js")>("log.js");
const { loopDelaySampler } = await load<typeof import("../src/loop-delay.js")>("loop-delay.js");
const { runServeUntilStopped } =
  await load<typeof import("../src/serve-cluster.js")>("serve-cluster.js");

/**
 * Child process of the benchmark running decentral-audit on its own event loop (from src/, or
 * from the build in dist/ with BENCH_SERVICE_BUILT=1).
 * - `BENCH_MODE=service`: `runServe` as `serve` runs it (proxy, ingest, verifier; a cluster
 *   when WORKERS is above 1), configured by the usual environment variables.
 * - `BENCH_MODE=app`: the HTTP app alone (`createApp` + `serve`) over an existing database,
 *   no verifier: for report and audit lookups over the generated million jobs.
 * Once listening it sends `{op: "ready", url, token}` over IPC: an admin token created for
 * this run (it lives only in memory and in the IPC message). `rss` requests get the peak RSS,
 * `cpu` requests the CPU time used so far (ms), `loopDelay` the event-loop delay since the last
 * such request, `stats` (service mode) the CPU and event-loop delay of every serving process.
 */

const send = (message: unknown) => process.send?.(message);

async function main() {
  const mode = process.env.BENCH_MODE ?? "service";
  let url: string;
  let token: string;
  let serveStats: (() => Promise<unknown>) | undefined;
  if (mode === "service") {
    // As `serve` runs: one process, or a cluster of WORKERS (this process is then the primary),
    // drained by a stop signal (a Ctrl-C reaches the whole group, its workers too).
    const config = loadConfig(process.env);
    const service = await runServeUntilStopped(config, (error) => {
      send({
        op: "failed",
        error: error instanceof Error ? (error.stack ?? error.message) : error,
      });
      process.exit(1);
    });
    url = service.url;
    const store = await openStore(config, { migrate: false });
    ({ token } = await createToken(store, { role: "admin", name: "bench" }));
    await store.close();
    serveStats = async () => {
      const usage = process.cpuUsage();
      return {
        processes: await service.stats(),
        // The primary of a cluster hands out connections: its CPU is the service's too.
        primaryCpuMs: service.workers > 1 ? (usage.user + usage.system) / 1000 : 0,
      };
    };
    process.on("disconnect", () => {
      void service.close().finally(() => process.exit(0));
    });
  } else {
    const store = openSqliteStore(process.env.DATABASE_URL ?? "");
    // A cached database may predate later migrations (the dashboard's sessions, say).
    migrateStore(store);
    const log = createLogger({ level: process.env.LOG_LEVEL ?? "info" });
    ({ token } = await createToken(store, { role: "read", name: "bench" }));
    const app = createApp({ store, log, explorer: { cluster: "mainnet-beta" } });
    url = await new Promise<string>((resolve) => {
      const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
        resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
      );
    });
    process.on("disconnect", () => {
      store.close();
      process.exit(0);
    });
  }
  const loopDelay = loopDelaySampler();
  loopDelay();
  process.on("message", (raw: { id: number; op: string }) => {
    if (raw.op === "loopDelay") {
      // Since the last request: p99 and max of the event-loop delay, in ms.
      send({ id: raw.id, ok: true, value: loopDelay() });
    } else if (raw.op === "stats" && serveStats) {
      // Per serving process: CPU so far and event-loop delay since the last request.
      void serveStats().then((value) => send({ id: raw.id, ok: true, value }));
    } else if (raw.op === "rss") {
      send({ id: raw.id, ok: true, value: peakRssBytes() });
    } else if (raw.op === "cpu") {
      const usage = process.cpuUsage();
      send({ id: raw.id, ok: true, value: (usage.user + usage.system) / 1000 });
    }
  });
  send({ op: "ready", url, token });
}

void main().catch((error: unknown) => {
  send({ op: "failed", error: error instanceof Error ? (error.stack ?? error.message) : error });
  process.exit(1);
});
