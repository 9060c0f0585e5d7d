import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { type CliProcess, startCli, until } from "./support/service-process.js";

/**
 * `serve --workers 2` as real processes, one of whose workers ends while the cluster starts:
 * killed from outside, it is restarted and the service comes up; ending on its own, serve fails.
 */

/** Starts `serve --workers 2` on a fresh file database; `env` added to its environment. */
function startCluster(env: Record<string, string> = {}): CliProcess {
  const db = join(mkdtempSync(join(tmpdir(), "cluster-start-")), "audit.db");
  return startCli(["serve", "--port", "0", "--db", db, "--profile", "localnet"], {
    WORKERS: "2",
    SOLANA_RPC_URLS: "http://127.0.0.1:9",
    WORKER_RESTART_MS: "100",
    ...env,
  });
}

/** `serve` with every worker failing as it starts, as `fault` says (support/worker-start-fault). */
function startFaultyServe(fault: "exit" | "kill"): CliProcess {
  const preload = pathToFileURL(join(import.meta.dirname, "support", "worker-start-fault.mjs"));
  return startCluster({
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${preload.href}`.trim(),
    WORKER_START_FAULT: fault,
  });
}

/** Pids of the cluster workers among `primary`'s children (from /proc). */
function workersOf(primary: number): number[] {
  return readFileSync(`/proc/${primary}/task/${primary}/children`, "utf8")
    .split(" ")
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("serve-worker");
      } catch {
        return false;
      }
    });
}

describe("serve --workers 2, a worker ended while the cluster starts", () => {
  it("restarts a worker killed with SIGKILL, and one sent SIGTERM alone, as they start: the service comes up", async () => {
    const serve = startCluster();
    try {
      // Each hit as soon as it is forked: polled every 10 ms, long before it could listen.
      const primary = serve.child.pid as number;
      const killed = (await until(() => workersOf(primary)[0], 20_000, 10)) as number;
      process.kill(killed, "SIGKILL");
      const stopped = (await until(
        () => workersOf(primary).find((pid) => pid !== killed),
        20_000,
        10,
      )) as number;
      process.kill(stopped, "SIGTERM");
      // Rejects, with serve's stderr, if serve exits first.
      const ready = await serve.waitForLog((l) => l.msg === "serve cluster ready", 30_000);
      const restarts = serve.logs.filter(
        (l) =>
          l.msg === "serve worker died; restarting it" ||
          l.msg === "serve worker exited (code 0, not asked by serve); restarting it",
      );
      expect(restarts.find((l) => l.workerPid === killed)).toMatchObject({
        level: 50,
        signal: "SIGKILL",
      });
      // Ended by the signal, or drained on it (exit 0): either way restarted.
      expect(restarts.map((l) => l.workerPid)).toContain(stopped);
      const listened = serve.logs.filter((l) => l.msg === "decentral-audit listening");
      expect(listened.map((l) => l.pid)).not.toContain(killed);
      expect(listened.map((l) => l.pid)).not.toContain(stopped);
      const health = await fetch(`${ready.url}/healthz`);
      expect(health.status).toBe(200);
    } finally {
      serve.child.kill("SIGKILL");
    }
  }, 60_000);

  it("still fails at once, with its message, when a worker exits 1 on its own as it starts", async () => {
    const serve = startFaultyServe("exit");
    expect(await serve.exited).toBe(2);
    expect(serve.stderr()).toMatch(/worker start fault: cannot start/);
    expect(serve.stderr()).toMatch(
      /error: a worker of serve exited while starting \(code 1, null\)/,
    );
    expect(serve.logs.filter((l) => l.msg === "serve worker died; restarting it")).toEqual([]);
  }, 60_000);

  it("gives up, saying why, when the workers of a place are killed as they start five times in a row", async () => {
    const serve = startFaultyServe("kill");
    expect(await serve.exited).toBe(2);
    expect(serve.stderr()).toMatch(
      /error: a worker of serve was killed \(SIGKILL\) while starting 5 times in a row within 60 s; giving up/,
    );
  }, 60_000);
});
