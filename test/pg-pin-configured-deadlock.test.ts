import { describe, expect, it } from "vitest";
import { type CustodyProfile, createCustodyStore } from "../src/store/custody.js";
import { createLedgerStore, type LineRead } from "../src/store/ledger.js";
import { openPgWriterConnection } from "../src/store/pg/group-commit.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { fakeSignature } from "./support/job-rows.js";
import { backendsWaiting, listLines, pause, useDeadlockHosts } from "./support/pg-deadlock.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt, signature } from "./support/recorder-fixtures.js";
import { seedCreditVault, seedJob } from "./support/seed-ledger.js";

/**
 * A process starting with a newly configured vault (`pinConfigured`) against a receipt group and
 * a ledger batch of that vault on other hosts. The pin reopened the keyless jobs judged on the
 * vault (their rows) and then waited for the vault's ledger lock; the ledger batch held that
 * lock and waited for the receipt writers' turn; the group holding the turn then came to one of
 * the reopened jobs' rows: a cycle of three, one of them aborted as a deadlock.
 *
 * The group's connections find deadlocks after 20 ms, the others' after 10 s, so a cycle aborts
 * the group, which the test sees.
 */

const database = usePostgresDatabase();
const profile: CustodyProfile = { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 };

const host = useDeadlockHosts(database, ["A", "B", "C"]);

describe("a vault configured at start, a receipt group and a ledger batch of that vault", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    const vault = "Pin5tartVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const sig = (name: string) => fakeSignature(`pin-configured:${name}`);
    const at = Date.UTC(2026, 10, 6, 12) / 1000;
    // A keyless job judged on a lock from the vault: the new pin reopens it.
    const untied = "job_pin_configured_untied";
    await seedJob(host.B, { jobId: untied, escrowTx: sig("untied-lock"), recordedAt: at * 1000 });
    await host.B.pool.query(
      `INSERT INTO check_results (job_id, name, outcome, actual, checked_at)
        VALUES ($1, 'escrow.source', 'pass', $2::json, $3)`,
      [untied, JSON.stringify({ vault }), at * 1000],
    );
    // Another key learned the vault: the configured pin voids that, under the vault's lock.
    await seedCreditVault(host.B, {
      keyFingerprint: "kf_learned",
      vault,
      pinnedAt: at * 1000,
      source: "learned",
    });
    // A refund under a job's memo that the job does not name: the batch keeps it with the job.
    const kept = "job_pin_configured_kept";
    await seedJob(host.B, {
      jobId: kept,
      escrowTx: sig("lock"),
      settlementTx: sig("settle"),
      recordedAt: (at + 60) * 1000,
    });
    const line = (name: string, second: number, pre: bigint, post: bigint, memo: boolean) => ({
      signature: sig(name),
      blockTime: at + second,
      succeeded: true,
      pre,
      post,
      delta: post - pre,
      memo: memo ? `refund:${kept}` : null,
      memoKind: memo ? ("refund" as const) : null,
      memoJobId: memo ? kept : null,
      opened: false,
    });
    const lines: LineRead[] = [
      line("lock", 0, 1_000_000n, 900_000n, false),
      line("refund", 1, 900_000n, 1_000_000n, true),
    ];
    const ledger = createLedgerStore(host.B);
    const now = (at + 3600) * 1000;
    await listLines(ledger, vault, lines, now, 4000);

    const { unit: paused, reached, open } = pause();
    const writer = openPgWriterConnection(host.A);
    try {
      // Another receipt of the keyless job: the group locks its row after the gate.
      const groupSettled = writer
        .together([
          paused,
          recordReceiptsUnit([receipt({ jobId: untied, escrowTx: signature() })], "proxy"),
        ])
        .then(
          () => "committed",
          (error: unknown) => `failed: ${(error as Error).cause ?? error}`,
        );
      await reached;
      const read = ledger.recordReads(vault, lines, [], now);
      await backendsWaiting(host.A, 1);
      const custody = createCustodyStore(host.C, profile, { vaults: [], byKey: { kf_cfg: vault } });
      const pinned = custody.pins(["kf_cfg"], []);
      await backendsWaiting(host.A, 2);
      open();
      expect(await groupSettled).toBe("committed");
      await read;
      expect((await pinned).byKey.get("kf_cfg")?.vault).toBe(vault);
    } finally {
      open();
      await writer.close();
    }
    const { rows } = await host.A.pool.query<{ job_id: string; verdict: string }>(
      "SELECT job_id, verdict FROM jobs WHERE job_id = $1",
      [untied],
    );
    expect(rows[0]?.verdict).toBe("pending");
  }, 30_000);
});
