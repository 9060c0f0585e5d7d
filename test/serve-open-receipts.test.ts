import { mkdtempSync } from "node:fs";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { address, jobId, signature } from "./support/recorder-fixtures.js";
import { type CliProcess, startServe, until } from "./support/service-process.js";

/**
 * A streamed job's receipt is `open` while its body streams. When the serve streaming it is
 * killed with SIGKILL nothing completes it: the serve started again on the same database must
 * tell that the writer is gone and record the capture as aborted.
 */

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const end of cleanup.splice(0)) end();
});

/** An upstream whose every answer is a stream that never ends. */
async function endlessUpstream(): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "x-decentral-job-id": jobId(),
      "x-decentral-tx-signature": signature(),
      "x-decentral-worker": address(),
    });
    const timer = setInterval(() => res.write('data: {"choices":[]}\n\n'), 100);
    res.on("close", () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Starts a stream through `url` and resolves with its job id once its headers are in. */
function openStream(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/v1/chat/completions`,
      {
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
      },
      (res) => {
        res.on("error", () => {});
        res.resume();
        resolve(String(res.headers["x-decentral-job-id"]));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ model: "m", stream: true, messages: [] }));
  });
}

function captureOf(db: string, id: string) {
  const store = openSqliteStore(db);
  try {
    return store.sqlite
      .prepare(
        "SELECT capture_state AS state, latency_ms AS latency, total_tokens AS tokens FROM jobs WHERE job_id = ?",
      )
      .get(id) as { state: string; latency: number | null; tokens: number | null } | undefined;
  } finally {
    store.close();
  }
}

describe("serve killed with SIGKILL mid-stream", () => {
  it("the next serve on the database records the open stream as aborted", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "open-receipts-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    store.close();
    const upstream = await endlessUpstream();
    const env = {
      SOLANA_RPC_URLS: "http://127.0.0.1:9",
      DECENTRAL_BASE_URL: `${upstream}/v1`,
    };
    const start = async () => {
      const serve: CliProcess & { url: string } = await startServe(db, env);
      cleanup.push(() => serve.child.kill("SIGKILL"));
      return serve;
    };

    const first = await start();
    const id = await openStream(first.url);
    expect(captureOf(db, id)?.state).toBe("open");
    first.child.kill("SIGKILL");
    await first.exited;
    // Nothing ends it while no serve runs: the writer is gone, its capture still says open.
    expect(captureOf(db, id)?.state).toBe("open");

    const second = await start();
    const ended = await until(() => {
      const row = captureOf(db, id);
      return row?.state === "aborted" ? row : null;
    }, 5000);
    // Neither its usage nor how long it ran is known.
    expect(ended).toEqual({ state: "aborted", latency: null, tokens: null });
    await second.waitForLog((l) => l.msg === "open receipts of dead processes aborted");
  }, 60_000);
});
