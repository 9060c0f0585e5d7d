import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { startCli } from "./support/service-process.js";
import { storeOfOneReceipt, writeLockProcess } from "./support/write-lock-process.js";

/**
 * A nightly `verify` beside a `serve` whose leader holds SQLite's write lock in long stretches
 * (a ledger round of a large backlog): the run's time ran out mid-round, and each write that
 * closes it (its job leases, its run row, its heartbeat, the nightly lock) waited out the
 * 5 s busy timeout up to 8 times: `--timeout 5m` ended after 7 min 9 s.
 */
describe("verify whose time runs out while another process holds the write lock", () => {
  it("ends within its --timeout and the run row's close grace, exit 2", async () => {
    const db = await storeOfOneReceipt("verify-close-");
    // A node that answers the run's first questions and never its signature statuses: the run
    // is in its rounds, holding its job's lease, when its time runs out.
    let inRounds: () => void = () => {};
    const roundsStarted = new Promise<void>((resolve) => {
      inRounds = resolve;
    });
    const rpc = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c;
      });
      req.on("end", () => {
        const call = JSON.parse(body) as { id: number; method: string };
        if (call.method === "getSignatureStatuses" || call.method === "getTransaction") {
          inRounds();
          return;
        }
        const result = call.method === "getBlockTime" ? Math.floor(Date.now() / 1000) : 1000;
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ jsonrpc: "2.0", id: call.id, result }));
      });
    });
    await new Promise<void>((resolve) => rpc.listen(0, "127.0.0.1", resolve));
    const rpcUrl = `http://127.0.0.1:${(rpc.address() as AddressInfo).port}`;
    const started = performance.now();
    const args = ["verify", "--since", "1h", "--timeout", "8s", "--db", db];
    // The run row's close grace a fifth of its default (15 s): the writes around it still
    // waited 5 s each, 8 times, past any grace.
    const closeGraceMs = 3_000;
    const verify = startCli([...args, "--profile", "localnet"], {
      SOLANA_RPC_URLS: rpcUrl,
      RPC_TIMEOUT_MS: "60000",
      VERIFY_CLOSE_GRACE_MS: String(closeGraceMs),
    });
    const locker = writeLockProcess(db, 80_000);
    try {
      // Locked once the run is in its rounds, not a fixed 2.5 s after both started: a loaded
      // host could still be loading the run then, which then waited for the lock from its start.
      // (A host so loaded that the run's 8 s end before its rounds start locks after its exit.)
      await Promise.race([roundsStarted, verify.exited]);
      expect(await locker.take()).toMatch(/locked/);
      expect(await verify.exited).toBe(2);
      // The run's row has its grace to be closed (VERIFY_CLOSE_GRACE_MS); the writes around it
      // no longer wait 5 s each, 8 times: 52 s before with the default grace, 27 after.
      expect(performance.now() - started).toBeLessThan(8000 + closeGraceMs + 10_000);
    } finally {
      locker.kill();
      rpc.closeAllConnections();
      rpc.close();
    }
  }, 120_000);
});
