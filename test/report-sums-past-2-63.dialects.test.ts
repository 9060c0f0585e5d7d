import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import * as pg from "../src/db/pg/schema.js";
import { foldRollupDeltas } from "../src/db/rollups.js";
import { ledgerLines } from "../src/db/schema.js";
import { reconciliationReport, reconciliationToJson } from "../src/reports/reconciliation.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { jobRow, seedRows, signatureOf, updateJobs } from "./support/seed-reports.js";

/**
 * An operator holding the escrow authority locks a whale vault whole at each job and pays it
 * back: each job fails `escrow.within_ceiling`, but its amounts are written, and the sums count
 * the vault again each time. 1,024 jobs of the largest amount (2^53 - 1) fill one day's rollup
 * row of their key, model and worker to 2^63 - 1,024. An ordinary job of that day and model must
 * still be judged (its verdict write takes the row past 2^63), and the reports must give every
 * sum exact to the base unit.
 */

const MAX = 2n ** 53n - 1n;
const DAY = Date.UTC(2026, 10, 1);
// 1,024 x (2^53 - 1) = 2^63 - 1,024: the row is full, and the next job's amounts pass 2^63.
const WHALES = 1_024;

function whaleJobs() {
  return Array.from({ length: WHALES }, (_, i) =>
    jobRow({
      jobId: `whale_${i}`,
      // The same hour, day, model, key and worker: one row of every grain.
      createdAt: DAY + 3_600_000 + i,
      verdict: "discrepancy",
      escrowedUnits: MAX,
      chargedUnits: MAX - BigInt(i),
      refundedUnits: BigInt(i),
      workerPaidUnits: MAX - BigInt(i),
      treasuryPaidUnits: 0n,
      feesLamports: MAX,
    }),
  );
}

describe.each(dialects)("%s: sums past 2^63 base units", (dialect) => {
  const stores = useDialectStores(dialect);

  it("judges an ordinary job of a full row and reports every sum exact", async () => {
    const store = await stores.open();
    const rows = whaleJobs();
    await seedRows(store, "jobs", rows);
    // The ordinary job: recorded open, then its verdict written (what the verifier does).
    const honest = jobRow({
      jobId: "honest",
      createdAt: DAY + 3_600_000 + 5_000,
      verdict: "pending",
    });
    await seedRows(store, "jobs", [honest]);
    const judged = {
      verdict: "verified" as const,
      escrowedUnits: 400_000n,
      chargedUnits: 80_000n,
      workerPaidUnits: 60_000n,
      treasuryPaidUnits: 20_000n,
      refundedUnits: 320_000n,
      feesLamports: 10_000n,
    };
    await updateJobs(store, ["honest"], judged);
    const all = [...rows, { ...honest, ...judged }];
    const sum = (pick: (r: (typeof all)[number]) => bigint | null | undefined) =>
      all.reduce((s, r) => s + (pick(r) ?? 0n), 0n);
    const expected = {
      escrowedUnits: sum((r) => r.escrowedUnits),
      chargedUnits: sum((r) => r.chargedUnits),
      workerPaidUnits: sum((r) => r.workerPaidUnits),
      refundedUnits: sum((r) => r.refundedUnits),
      feesLamports: sum((r) => r.feesLamports),
      disputedEscrowedUnits: sum((r) => (r.verdict === "discrepancy" ? r.escrowedUnits : 0n)),
      verifiedChargedUnits: 80_000n,
    };
    expect(expected.escrowedUnits > 2n ** 63n).toBe(true);

    const period = { from: DAY, to: DAY + 86_400_000 };
    for (const source of ["rollups", "jobs"] as const) {
      for (const groupBy of ["day", "model", "worker", "key"] as const) {
        const report = await reconciliationReport(store, { ...period, groupBy, source }, () => 0);
        expect(report.totals, `${source} ${groupBy}`).toMatchObject({
          jobs: WHALES + 1,
          verified: 1,
          discrepancies: WHALES,
          ...expected,
        });
        const json = reconciliationToJson(report) as { totals: Record<string, unknown> };
        expect(json.totals.escrowedUnits).toBe(expected.escrowedUnits.toString());
      }
      // A partial first and last hour read the jobs themselves.
      const partial = { from: DAY + 3_600_000 + 1, to: DAY + 3_600_000 + 60_000 };
      const part = await reconciliationReport(
        store,
        { ...partial, groupBy: "day", source },
        () => 0,
      );
      const inPart = all.filter((r) => r.createdAt! >= partial.from && r.createdAt! < partial.to);
      expect(part.totals.escrowedUnits).toBe(
        inPart.reduce((s, r) => s + (r.escrowedUnits ?? 0n), 0n),
      );
    }
  });

  it("reports exact sums whether they fit in 64 bits, pass 2^63 only when added, or pass it in one row", async () => {
    const store = await stores.open();
    // 600 whales a day on two days: each day's row, 600 x (2^53 - 1), fits below 2^63; the two
    // days added pass it. SQLite reads each sum of money in one sum() while it fits, and in two
    // parts when one does not: both answers must be exact to the base unit.
    const PER_DAY = 600;
    const rows = [0, 1].flatMap((d) =>
      Array.from({ length: PER_DAY }, (_, i) =>
        jobRow({
          jobId: `w${d}_${i}`,
          createdAt: DAY + d * 86_400_000 + 3_600_000 + i,
          verdict: "verified",
          escrowedUnits: MAX,
          chargedUnits: MAX - BigInt(i),
          workerPaidUnits: MAX - BigInt(i),
          treasuryPaidUnits: 0n,
          refundedUnits: BigInt(i),
          feesLamports: 5_000n,
        }),
      ),
    );
    await seedRows(store, "jobs", rows);
    const total = (from: number, to: number) => {
      const inside = rows.filter((r) => r.createdAt! >= from && r.createdAt! < to);
      return {
        jobs: inside.length,
        escrowedUnits: inside.reduce((s, r) => s + r.escrowedUnits!, 0n),
        verifiedChargedUnits: inside.reduce((s, r) => s + r.chargedUnits!, 0n),
        refundedUnits: inside.reduce((s, r) => s + r.refundedUnits!, 0n),
      };
    };
    const periods = [
      // One day: every sum fits in 64 bits.
      { from: DAY, to: DAY + 86_400_000, past: false },
      // Both days: each row fits, their sum does not.
      { from: DAY, to: DAY + 2 * 86_400_000, past: true },
      // Partial hours of both days, read from the jobs: their sum passes 2^63 too.
      { from: DAY + 3_600_000 + 1, to: DAY + 86_400_000 + 3_600_000 + 599, past: true },
    ];
    for (const p of periods) {
      const expected = total(p.from, p.to);
      expect(expected.escrowedUnits > 2n ** 63n).toBe(p.past);
      for (const source of ["rollups", "jobs"] as const) {
        for (const groupBy of ["day", "model", "worker", "key"] as const) {
          const report = await reconciliationReport(store, { ...p, groupBy, source }, () => 0);
          expect(report.totals, `${source} ${groupBy} ${p.from}`).toMatchObject(expected);
        }
      }
    }
    // A single row past 2^63: the whale day and one more job of that hour and key.
    await seedRows(store, "jobs", [
      ...Array.from({ length: WHALES - PER_DAY + 1 }, (_, i) =>
        jobRow({
          jobId: `more_${i}`,
          createdAt: DAY + 3_600_000 + PER_DAY + i,
          verdict: "verified",
          escrowedUnits: MAX,
          chargedUnits: MAX,
          workerPaidUnits: MAX,
          treasuryPaidUnits: 0n,
          refundedUnits: 0n,
          feesLamports: 5_000n,
        }),
      ),
    ]);
    // Summed into the stored row (no delta pending beside it): the row alone is past 2^63.
    if (store.kind === "sqlite")
      store.sqlite.transaction(() => foldRollupDeltas(store)).immediate();
    const day = await reconciliationReport(
      store,
      { from: DAY, to: DAY + 86_400_000, groupBy: "model" },
      () => 0,
    );
    expect(day.totals.escrowedUnits).toBe(MAX * BigInt(WHALES + 1));
    expect(day.totals.escrowedUnits > 2n ** 63n).toBe(true);
  });

  it("says exact what was charged on the jobs judged again that were verified", async () => {
    const store = await stores.open();
    // Verified whales sent back by new evidence: 1,025 x (2^53 - 1) passes 2^63.
    const rows = Array.from({ length: WHALES + 1 }, (_, i) => ({
      ...jobRow({ jobId: `back_${i}`, createdAt: DAY + 3_600_000 + i, verdict: "pending" }),
      chargedUnits: MAX,
      previousVerdict: "verified" as const,
      rejudgeReason: "evidence" as const,
    }));
    await seedRows(store, "jobs", rows);
    const report = await reconciliationReport(
      store,
      { from: DAY, to: DAY + 86_400_000, groupBy: "day" },
      () => 0,
    );
    expect(report.rejudging).toMatchObject({
      jobs: WHALES + 1,
      previouslyVerifiedChargedUnits: MAX * BigInt(WHALES + 1),
    });
  });
});

const VAULT = "VauLt11111111111111111111111111111111111111";

/** Lines of one vault, all locks of one day, each of `units` (negative: money out). */
async function seedLockLines(store: Store, units: bigint[]) {
  const rows = units.map((delta, i) => ({
    vault: VAULT,
    signature: signatureOf(`lock_${i}`),
    ord: i + 1,
    slot: 1_000 + i,
    blockTime: DAY / 1000 + 60 + i,
    state: "read" as const,
    succeeded: true,
    deltaUnits: delta,
    listedAt: DAY,
    kind: "lock" as const,
  }));
  for (let i = 0; i < rows.length; i += 500) {
    const part = rows.slice(i, i + 500);
    if (store.kind === "postgres") await store.db.insert(pg.ledgerLines).values(part);
    else store.db.insert(ledgerLines).values(part).run();
  }
}

/** The lock lines' sum of the vault's day, as its statement reads it (`ledger_daily`). */
async function dailyUnits(store: Store): Promise<bigint[]> {
  const day = DAY / 1000;
  const sums = await createLedgerStore(store).periodSums(VAULT, day, day + 86_400);
  return [sums.lock.units];
}

describe.each(dialects)("%s: a vault's day of ledger lines past 2^63 base units", (dialect) => {
  const stores = useDialectStores(dialect);

  it("keeps the day's sum of its lines exact", async () => {
    const store = await stores.open();
    const units = Array.from({ length: WHALES + 1 }, (_, i) => -(MAX - BigInt(i)));
    await seedLockLines(store, units);
    const total = units.reduce((a, b) => a + b, 0n);
    expect(total < -(2n ** 63n)).toBe(true);
    expect(await dailyUnits(store)).toEqual([total]);
  });
});
