import { describe, expect, it } from "vitest";
import { foldRollupDeltas } from "../src/db/rollups.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { useDialectStores } from "./support/dialects.js";
import { jobRow, seedRows } from "./support/seed-reports.js";

const DAY = Date.UTC(2026, 10, 1);
const B = 2n ** 63n;
const cases: Record<string, bigint[]> = {
  maxPos: [B - 1n],
  minNeg: [-B],
  minNegPlus: [-B, 5n],
  mixedBack: [B - 1n, 1n, -2n, -(B - 1n)],
  negNear: [-(B - 1n), -1n],
  negPast: [-(B - 1n), -2n],
  posPast: [B - 1n, 1n],
  backInRange: [B - 1n, 10n, -20n],
  lowEdge: [-(2n ** 32n) + 1n, -(2n ** 32n), -1n, 2n ** 32n - 1n],
  hiNeg: [-(2n ** 62n) - 12345n, -(2n ** 62n) - 1n],
};

describe("SQLite report sums at the 64-bit bounds equal the jobs' own sums", () => {
  const stores = useDialectStores("sqlite");
  for (const [name, values] of Object.entries(cases)) {
    for (const fold of [false, true]) {
      it(`${name}, ${fold ? "folded into the rollup row" : "with the rollup changes pending"}`, async () => {
        const store = await stores.open();
        const rows = values.map((v, i) =>
          jobRow({
            jobId: `j${i}`,
            createdAt: DAY + 3_600_000 + i * 60_000 * (i % 2 === 0 ? 1 : 70),
            verdict: "verified",
            escrowedUnits: v,
            chargedUnits: v,
            workerPaidUnits: 1n,
            treasuryPaidUnits: 0n,
            refundedUnits: v === -B ? B - 1n : -v,
            feesLamports: 5n,
          }),
        );
        await seedRows(store, "jobs", rows);
        if (fold && store.kind === "sqlite")
          store.sqlite.transaction(() => foldRollupDeltas(store)).immediate();
        for (const p of [
          { from: DAY, to: DAY + 86_400_000 },
          { from: DAY + 3_600_000, to: DAY + 2 * 3_600_000 + 1 },
          { from: DAY + 1, to: DAY + 86_400_000 - 1 },
        ])
          for (const source of ["rollups", "jobs"] as const) {
            const want = rows
              .filter((r) => r.createdAt! >= p.from && r.createdAt! < p.to)
              .reduce((a, r) => a + r.escrowedUnits!, 0n);
            for (const groupBy of ["day", "model", "worker", "key"] as const) {
              const r = await reconciliationReport(store, { ...p, groupBy, source }, () => 0);
              expect(r.totals.escrowedUnits, `${source} ${groupBy} ${p.from}`).toBe(want);
              expect(r.totals.refundedUnits).toBe(
                rows
                  .filter((r) => r.createdAt! >= p.from && r.createdAt! < p.to)
                  .reduce((a, r) => a + r.refundedUnits!, 0n),
              );
              expect(r.totals.verifiedChargedUnits).toBe(want);
            }
          }
      });
    }
  }
});
