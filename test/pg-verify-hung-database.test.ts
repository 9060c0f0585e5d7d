import { afterAll, describe, expect, it, vi } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { freezingRelay } from "./support/freezing-relay.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { seedJobs } from "./support/seed-verdicts.js";
import { startCli } from "./support/service-process.js";
import { slotOnlyNode } from "./support/verify-fake-rpc.js";

/**
 * `verify` on PostgreSQL when the database stops answering without closing its connections (a
 * server hung, a network dropping its packets): a TCP relay to the server that, frozen, passes
 * nothing either way and leaves every connection open.
 */

const database = usePostgresDatabase({ migrated: true });
let store: PgStore | undefined;
let relay: Awaited<ReturnType<typeof freezingRelay>> | undefined;

afterAll(async () => {
  relay?.close();
  await store?.close();
});

describe("verify on PostgreSQL whose server stops answering mid-run", () => {
  it("exits 2 soon after --timeout, saying so, instead of waiting for the server", async () => {
    store = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 30_000 });
    const from = Date.UTC(2026, 10, 1);
    await seedJobs(
      store,
      Array.from({ length: 5 }, (_, i) => ({ jobId: `job_h${i}`, leaseOwner: null })),
    );
    const node = await slotOnlyNode();
    relay = await freezingRelay(database.url);
    const { url, freeze } = relay;
    const run = startCli(
      [
        ...["verify", "--from", new Date(from).toISOString()],
        ...["--to", new Date(from + 86_400_000).toISOString(), "--timeout", "10s", "--json"],
        ...["--db", url],
      ],
      {
        SOLANA_RPC_URLS: node.url,
        DATABASE_STATEMENT_TIMEOUT_MS: "500",
        // The summary's reads wait 1 s past --timeout, not 15: given up on 7 s past it.
        VERIFY_CLOSE_GRACE_MS: "1000",
        LOG_LEVEL: "warn",
      },
    );
    try {
      // Frozen once the run holds its row (its jobs' rounds under way).
      await vi.waitFor(
        async () =>
          expect((await store!.pool.query("SELECT 1 FROM verification_runs")).rowCount).toBe(1),
        { timeout: 60_000, interval: 20 },
      );
      freeze();
      const frozenAt = performance.now();
      const code = await run.exited;
      const tookS = (performance.now() - frozenAt) / 1000;
      expect(code).toBe(2);
      // At most what is left of --timeout 10 s (counted from the process's start, which a loaded
      // host makes slow), then the close grace, 5 s and two statement timeouts.
      expect(tookS).toBeLessThan(25);
      expect(run.stderr()).toMatch(/database: no answer 7 s past the run's --timeout/);
    } finally {
      run.child.kill("SIGKILL");
      node.close();
    }
  }, 120_000);
});
