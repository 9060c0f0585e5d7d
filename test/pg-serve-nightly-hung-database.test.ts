import { afterAll, describe, expect, it, vi } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import type { LedgerWindowResult } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { scheduleNightlyVerification } from "../src/nightly/cron.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { freezingRelay } from "./support/freezing-relay.js";
import { cleanLedger } from "./support/ledger-result.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/**
 * `serve --verify-cron` on PostgreSQL when the database stops answering without closing its
 * connections (a server hung, a network dropping its packets) in a scheduled run: a TCP relay to
 * the server that, frozen, passes nothing either way and leaves every connection open.
 */

const database = usePostgresDatabase({ migrated: true });
let direct: PgStore | undefined;
let through: PgStore | undefined;
let relay: Awaited<ReturnType<typeof freezingRelay>> | undefined;

afterAll(async () => {
  relay?.close();
  await through?.close();
  await direct?.close();
});

/** The ledger's read of the window: `debits` debits no receipt explains. */
const ledgerResult = (debits: number): LedgerWindowResult => ({
  ...cleanLedger,
  unreceiptedDebits: Array.from({ length: debits }, (_, i) => ({
    vault: "Vault1111111111111111111111111111111111111",
    signature: `sig_${i}`,
    amountUnits: "5000",
    memo: null,
    memoJobId: null,
    at: null,
    beforeWindow: false,
  })),
});

describe("serve's scheduled nightly on PostgreSQL whose server stops answering mid-run", () => {
  it("gives the run up past its time, marks its row so, and the next fire runs", async () => {
    direct = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 30_000 });
    relay = await freezingRelay(database.url);
    through = openPostgres(relay.url, { poolSize: 4, statementTimeoutMs: 500 });
    const lines: { msg: string; nightly?: { from: number; exitCode: number; reason: string } }[] =
      [];
    const log = createLogger(
      { level: "info" },
      { write: (l: string) => lines.push(JSON.parse(l)) },
    );
    /** The summary of the first run logged with `msg`, once there is one. */
    const logged = (msg: string) =>
      vi.waitFor(
        () => {
          const line = lines.find((l) => l.msg === msg);
          // What was logged instead, so a failure says which runs came and how they ended.
          const seen = lines.map((l) => `${l.msg}${l.nightly ? `: ${l.nightly.reason}` : ""}`);
          expect(line, `${msg}; logged: ${JSON.stringify(seen)}`).toBeDefined();
          return line!.nightly!;
        },
        { timeout: 20_000, interval: 20 },
      );
    const verifier = createVerifier({
      store: through,
      rpc: createFakeChain().rpc,
      profile: localnetProfile,
      log: createLogger({ level: "silent" }),
      options: { pollIntervalMs: 5, errorBackoffMs: 20, leaseMs: 600 },
    });
    // The first run's ledger read finds a debit no receipt explains; the server hangs as it
    // returns, before the run has told anyone. Later reads find nothing.
    let hung = false;
    const committed: number[] = [];
    const ledger = Object.assign(
      async () => {
        if (hung) return ledgerResult(0);
        hung = true;
        relay!.freeze();
        return ledgerResult(1);
      },
      {
        commit: async (result: LedgerWindowResult) => {
          committed.push(result.unreceiptedDebits.length);
        },
      },
    );
    const schedule = scheduleNightlyVerification("* * * * * *", {
      store: through,
      engine: verifier,
      log,
      ledger,
      // Room for the runs after the thaw to finish on a loaded host (each is bound by it, and
      // one that runs out of it is `incomplete` too): at 1 s, every fire of a CI host at load
      // 10-20 timed out for 20 s. The hung run is given up on 1.5 s past it all the same.
      timeoutMs: 3000,
      hangMarginMs: 1500,
    });
    try {
      const given = await logged("nightly verification: incomplete");
      expect(given.exitCode).toBe(2);
      expect(given.reason).toMatch(
        /^database: no answer 2 s past the run's timeout \(a server hung/,
      );
      relay.thaw();
      // The run given up on goes on once the server answers: its row says what serve logged,
      // and the debit nobody was told of stays unjudged (its marks not moved) for the next run.
      const rows = async () =>
        (
          await direct!.pool.query<{ status: string; exit: string | null; reason: string | null }>(
            `SELECT status, summary->>'exitCode' AS exit, summary->>'reason' AS reason
             FROM verification_runs WHERE trigger = 'verify' ORDER BY id`,
          )
        ).rows;
      await vi.waitFor(
        async () =>
          expect((await rows())[0]).toMatchObject({
            status: "completed",
            exit: "2",
            reason: given.reason,
          }),
        { timeout: 20_000, interval: 50 },
      );
      // The next fires run as before, the window given up on judged again.
      const next = await logged("nightly verification: no_jobs");
      expect(next.from).toBeLessThanOrEqual(given.from);
      expect(committed).not.toContain(1);
      expect(lines.map((l) => l.msg)).toContain(
        "nightly verification given up on ended: ledger_findings",
      );
    } finally {
      schedule.stop();
      relay.thaw();
      await verifier.stop();
    }
  }, 60_000);
});
