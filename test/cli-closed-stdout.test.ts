import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { listen } from "./support/recorder-fixtures.js";
import { cliArgv } from "./support/service-process.js";

/**
 * An RPC answering `getSlot`, all that `verify` asks of an empty store with no credit vaults
 * (every other method gets null).
 */
function slotOnlyRpc(): http.Server {
  return http.createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const answer = (call: { id: unknown; method: string }) => ({
      jsonrpc: "2.0",
      id: call.id,
      result: call.method === "getSlot" ? 1000 : null,
    });
    const calls = JSON.parse(body);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(Array.isArray(calls) ? calls.map(answer) : answer(calls)));
  });
}

/**
 * `report ... | head -3`: the reader closes the pipe before the command writes. The figures were
 * computed; the exit code a cron reads must be the run's own (0 for a report, never the 1 that
 * means a discrepancy), with no stack trace.
 */
describe("a CLI run whose stdout is closed early", () => {
  let db = "";
  let rpc = "";
  let closeRpc = async () => {};
  beforeAll(async () => {
    db = join(mkdtempSync(join(tmpdir(), "cli-closed-stdout-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    store.close();
    const served = await listen(slotOnlyRpc());
    rpc = served.url;
    closeRpc = served.close;
  });
  afterAll(() => closeRpc());

  /** Runs the CLI with its stdout pipe closed by the reader at once; status and stderr. */
  function closedReader(args: string[]): Promise<{ status: number | null; stderr: string }> {
    const child = spawn(process.execPath, cliArgv([...args, "--db", db]), {
      stdio: ["ignore", "pipe", "pipe"],
    });
    // The reader goes before the child has started: its first write meets a closed pipe.
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    return new Promise((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (status) => resolve({ status, stderr }));
    });
  }

  it("keeps each report's and verify's own exit code and prints no stack", async () => {
    const runs = await Promise.all(
      [
        ["report", "reconciliation", "--since", "24h"],
        ["report", "reconciliation", "--since", "24h", "--format", "csv"],
        ["report", "reconciliation", "--recompute"],
        ["report", "statement", "--since", "24h"],
        // Written through the descriptor, not process.stdout: its EPIPE is thrown, not emitted.
        ["report", "reconciliation", "--since", "24h", "--out", "/dev/stdout"],
        ["report", "statement", "--since", "24h", "--out", "/dev/fd/1"],
      ].map(async (args) => ({ args, run: await closedReader(args) })),
    );
    // Its summary, of a run that verified nothing: exit 0. One run at a time: a verify started
    // while another holds the database's verification lock exits 2, saying so.
    for (const args of [
      ["verify", "--since", "24h", "--rpc", rpc],
      ["verify", "--since", "24h", "--rpc", rpc, "--out", "/dev/stdout"],
    ]) {
      runs.push({ args, run: await closedReader(args) });
    }
    for (const { args, run } of runs) {
      expect(run.stderr, args.join(" ")).not.toContain("EPIPE");
      expect(run.stderr, args.join(" ")).not.toContain("    at ");
      expect(run.status, args.join(" ")).toBe(0);
    }
  }, 60_000);

  it("exits 2 with one line when stdout cannot be written for another reason (a full disk)", async () => {
    const full = openSync("/dev/full", "w");
    try {
      const child = spawn(
        process.execPath,
        cliArgv(["report", "reconciliation", "--since", "24h", "--db", db]),
        { stdio: ["ignore", full, "pipe"] },
      );
      let stderr = "";
      child.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const status = await new Promise<number | null>((resolve) => child.on("close", resolve));
      expect(stderr.trim().split("\n")).toEqual(["error: stdout: ENOSPC"]);
      expect(status).toBe(2);
    } finally {
      closeSync(full);
    }
  }, 30_000);
});
