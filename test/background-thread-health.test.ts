import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startBackgroundThread } from "../src/background-worker.js";
import { loadConfig } from "../src/config.js";
import { openStore } from "../src/db/open.js";
import { createLogger } from "../src/log.js";
import { createRequestCounter } from "../src/request-pressure.js";

const log = createLogger({ level: "silent" });
/** An RPC endpoint nothing listens on: the verifier's rounds fail, its thread keeps reporting. */
const quiet = { SOLANA_RPC_URLS: "http://127.0.0.1:9", LEDGER_POLL_MS: "0" };

describe("the background thread's health (/readyz)", () => {
  it("is starting, then running once the thread reports", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "decentral-audit-bg-")), "audit.db");
    const config = loadConfig({ ...quiet, DATABASE_URL: file });
    await (await openStore(config)).close(); // migrated, as `serve` leaves it
    const thread = startBackgroundThread(config, log, 1000, createRequestCounter().buffer);
    try {
      expect(thread.health()).toEqual({ ok: true, detail: "starting" });
      await expect
        .poll(() => thread.health(), { timeout: 20_000, interval: 100 })
        .toEqual({ ok: true, detail: "running in a thread" });
    } finally {
      await thread.stop();
    }
  });

  it("is not running when its thread ended, while it waits to be started again", async () => {
    // The thread cannot open its store: it ends, and is started again a second later.
    const config = loadConfig({
      ...quiet,
      DATABASE_URL: "postgres://audit:secret@127.0.0.1:9/audit",
    });
    const thread = startBackgroundThread(config, log, 1000, createRequestCounter().buffer);
    try {
      await expect.poll(() => thread.health().ok, { timeout: 20_000, interval: 100 }).toBe(false);
      expect(thread.health().detail).toMatch(
        /^the background thread \(verifier, backfill, ledger\) ended \d+ s ago and is being started again$/,
      );
    } finally {
      await thread.stop();
    }
  });
});
