import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { ingestReceipts } from "../src/recorder/ingest.js";
import { wireReceipt } from "./support/recorder-fixtures.js";
import { startCli, startServe } from "./support/service-process.js";
import { slotOnlyNode } from "./support/verify-fake-rpc.js";

describe("a verify run killed with SIGKILL", () => {
  it("is closed as abandoned when serve starts next, and its jobs are taken over", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "abandoned-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    ingestReceipts(
      store,
      Array.from({ length: 5 }, () => wireReceipt()),
      "import",
    );
    // A node that answers getSlot (the run's preflight) and nothing else.
    const node = await slotOnlyNode();
    const rpcUrl = node.url;
    const row = () =>
      store.sqlite
        .prepare("SELECT status, owner FROM verification_runs WHERE trigger = 'verify'")
        .get() as { status: string; owner: string } | undefined;
    const leased = () =>
      store.sqlite.prepare("SELECT count(lease_owner) FROM jobs").pluck().get() as number;

    const verify = startCli(["verify", "--since", "1h", "--db", db], {
      SOLANA_RPC_URLS: rpcUrl,
      AUDIT_PROFILE: "localnet",
    });
    try {
      await vi.waitFor(() => expect(leased()).toBe(5), { timeout: 20_000, interval: 50 });
      expect(row()?.status).toBe("running");
      verify.child.kill("SIGKILL");
      await verify.exited;

      const serve = await startServe(db, { SOLANA_RPC_URLS: rpcUrl });
      try {
        await vi.waitFor(() => expect(row()?.status).toBe("abandoned"), {
          timeout: 10_000,
          interval: 50,
        });
        // The dead run's leases were released: serve's own verifier holds the jobs now.
        const owners = store.sqlite
          .prepare("SELECT DISTINCT lease_owner FROM jobs WHERE lease_owner IS NOT NULL")
          .pluck()
          .all();
        expect(owners).not.toContain(row()?.owner);
      } finally {
        serve.child.kill("SIGTERM");
        expect(await serve.exited).toBe(0);
      }
    } finally {
      verify.child.kill("SIGKILL");
      node.close();
      store.close();
    }
  });
});
