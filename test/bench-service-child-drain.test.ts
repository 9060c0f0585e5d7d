import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

/**
 * The benchmark's service child runs `serve` as its command does: a Ctrl-C at the benchmark (a
 * SIGINT to the whole process group) drains it and it exits 0. It ran serve without the stop
 * signals: it died at once, by the signal, cutting the requests in flight and their receipts
 * (and as a cluster's primary it restarted a worker the same signal stopped as it started).
 */
describe("bench/service-child.ts", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-child-drain-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("drains on a stop signal to its group and exits 0", async () => {
    const child = fork(fileURLToPath(new URL("../bench/service-child.ts", import.meta.url)), [], {
      env: {
        ...process.env,
        BENCH_MODE: "service",
        DATABASE_URL: join(dir, "audit.db"),
        DECENTRAL_BASE_URL: "http://127.0.0.1:9",
        SOLANA_RPC_URLS: "http://127.0.0.1:9",
        AUDIT_PROFILE: "localnet",
        PORT: "0",
        HOST: "127.0.0.1",
        LOG_LEVEL: "warn",
        WORKERS: "1",
      },
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      // Its own process group, as a benchmark run in a terminal is: the signal reaches all.
      detached: true,
    });
    const pid = child.pid as number;
    try {
      const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
        child.once("exit", (code, signal) => resolve({ code, signal })),
      );
      const ready = await new Promise<{ url: string }>((resolve, reject) => {
        child.on("message", (m: { op?: string; url?: string; error?: unknown }) => {
          if (m.op === "ready") resolve(m as { url: string });
          if (m.op === "failed") reject(new Error(String(m.error)));
        });
        child.once("exit", (code) => reject(new Error(`exited with ${code}`)));
      });
      expect((await fetch(`${ready.url}/healthz`)).status).toBe(200);
      process.kill(-pid, "SIGINT");
      expect(await exited).toEqual({ code: 0, signal: null });
    } finally {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }, 60_000);
});
