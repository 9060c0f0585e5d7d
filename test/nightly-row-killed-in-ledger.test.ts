import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createDashboardStore } from "../src/store/dashboard.js";
import { startCli, startServe } from "./support/service-process.js";
import { slotOnlyNode } from "./support/verify-fake-rpc.js";

// The verifier finished a nightly's row `completed` when its jobs settled, before the ledger
// was read: a `verify` killed (kill -9, OOM) while reading the credit vaults' history left a
// `completed` row with no exit code, which the abandon sweep never closed and the status page
// showed as a finished night.
describe("a nightly verify killed while it reads the ledger", () => {
  it("leaves its row running, closed as abandoned by the next start, not completed", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "nightly-ledger-kill-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    // A node that answers getSlot (the preflight, the ledger's finality) and nothing else:
    // the window holds no job, so the jobs settle at once and the run waits on the ledger.
    const node = await slotOnlyNode();
    const rpcUrl = node.url;
    const asked = new Set<string>();
    node.server.on("request", (req) => {
      req.once("data", (chunk: Buffer) => {
        const method = /"method":"(\w+)"/.exec(chunk.toString())?.[1];
        if (method) asked.add(method);
      });
    });
    const row = () =>
      store.sqlite
        .prepare("SELECT status, summary FROM verification_runs WHERE trigger = 'verify'")
        .get() as { status: string; summary: string | null } | undefined;

    const verify = startCli(["verify", "--since", "1h", "--db", db], {
      SOLANA_RPC_URLS: rpcUrl,
      AUDIT_PROFILE: "localnet",
      CREDIT_VAULTS: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    });
    try {
      // The jobs settled (the verifier's counts are on the row) and the vault is being read.
      await vi.waitFor(
        () => {
          expect(row()?.summary ?? null).not.toBeNull();
          expect(asked.has("getAccountInfo")).toBe(true);
        },
        { timeout: 30_000, interval: 50 },
      );
      expect(JSON.parse(row()?.summary ?? "{}")).not.toHaveProperty("exitCode");
      verify.child.kill("SIGKILL");
      await verify.exited;
      expect(row()?.status).toBe("running");

      const serve = await startServe(db, { SOLANA_RPC_URLS: rpcUrl });
      try {
        await vi.waitFor(() => expect(row()?.status).toBe("abandoned"), {
          timeout: 10_000,
          interval: 50,
        });
        // What the status page and its API read: the night as abandoned, with no outcome.
        const last = await createDashboardStore(store).lastNightlyRun();
        expect(last?.status).toBe("abandoned");
        expect(last?.summary).not.toHaveProperty("exitCode");
      } finally {
        serve.child.kill("SIGTERM");
        expect(await serve.exited).toBe(0);
      }
    } finally {
      verify.child.kill("SIGKILL");
      node.close();
      store.close();
    }
  }, 60_000);
});
