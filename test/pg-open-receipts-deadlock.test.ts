import { describe, expect, it } from "vitest";
import { createOpenReceiptStore } from "../src/store/open-receipts.js";
import { openPgWriterConnection } from "../src/store/pg/group-commit.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { useDeadlockHosts, whileGroupHeld } from "./support/pg-deadlock.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt, signature } from "./support/recorder-fixtures.js";

/**
 * The sweep ending a dead proxy's open captures (one UPDATE of all of them) against another
 * host's receipt group with receipts of the same jobs: the group locked the second capture's
 * row and then wanted the first, which the sweep had locked before it came to wait on the
 * second. PostgreSQL aborted one of the two as a deadlock (the group: its callers waited a
 * deadlock_timeout and a retry more). The group's connections find deadlocks after 20 ms, the
 * sweep's after 10 s, so a cycle aborts the group, which the test sees.
 */

const database = usePostgresDatabase();
const DEAD = "dead-host:999999";

const host = useDeadlockHosts(database, ["A", "B"]);

describe("the open-capture sweep and another host's receipt group on the same jobs", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    const open = [1, 2].map(() => receipt({ captureState: "open", receiptWriter: DEAD }));
    const writer = openPgWriterConnection(host.A);
    try {
      // Inserted in this order: the sweep's UPDATE comes to the first capture first.
      for (const capture of open) await writer.together([recordReceiptsUnit([capture], "proxy")]);
    } finally {
      await writer.close();
    }
    // Receipts of the same jobs ingested (POST /jobs), the second capture's first.
    const [first, second] = open.map((r) => ({
      ...r,
      escrowTx: signature(),
      captureState: undefined,
      receiptWriter: undefined,
    }));
    const sweep = createOpenReceiptStore(host.B);
    const ended = await whileGroupHeld(
      host.A,
      [recordReceiptsUnit([second!], "ingest")],
      [recordReceiptsUnit([first!], "ingest")],
      () => sweep.abort([DEAD], Date.UTC(2026, 10, 30)),
    );
    expect(ended).toBe(2);
    const { rows } = await host.A.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM jobs WHERE capture_state = 'open'",
    );
    expect(rows[0]?.n).toBe("0");
  }, 30_000);
});
