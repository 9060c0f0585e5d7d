import { describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { DAY_MS, grains, HOUR_MS, rollupFigureColumns, storedFigures } from "../src/db/rollups.js";
import type { Verdict } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { ingestReceiptsVia } from "../src/recorder/ingest.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import type { CustodyProfile } from "../src/store/custody.js";
import { createVerdictStore, type VerdictWrite } from "../src/store/verdicts.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { address, wireReceipt } from "./support/recorder-fixtures.js";
import { leaseJob, readJob, seedJobs } from "./support/seed-verdicts.js";

/**
 * The PostgreSQL rollups are kept by statement triggers over transition tables (src/db/pg/
 * rollups.ts): these tests write jobs the ways the store does (multi-row inserts, batched
 * verdicts, lease claims, moves, deletes) and compare every rollup row with `jobs` summed from
 * scratch, to the base unit.
 */

const profile: CustodyProfile = { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 };
const T = Date.UTC(2026, 10, 3, 9);
const workers = Array.from({ length: 3 }, () => address());
const models = ["qwen3-8b", "llama-70b"];

/** `count` receipts over a few models and workers, ingested in one call (one multi-row insert). */
async function ingest(store: PgStore, count: number, now: number): Promise<string[]> {
  const writer = createReceiptWriter(store, { log: createLogger({ level: "silent" }) });
  const receipts = Array.from({ length: count }, (_, i) =>
    wireReceipt({ model: models[i % models.length], worker: workers[i % workers.length] }),
  );
  try {
    const results = await ingestReceiptsVia(writer, receipts, "ingest", now);
    expect(results.every((r) => r.status === "created")).toBe(true);
  } finally {
    await writer.close();
  }
  return receipts.map((r) => r.job_id as string);
}

async function lease(store: PgStore, ids: readonly string[], owner: string): Promise<void> {
  await store.pool.query(
    "UPDATE jobs SET lease_owner = $2, lease_until = $3 WHERE job_id = ANY($1::text[])",
    [ids, owner, T + HOUR_MS],
  );
}

function decision(jobId: string, verdict: Verdict, charged: bigint): VerdictWrite {
  return {
    job: { jobId, keyFingerprint: null, verdictAt: null, verifyAttempts: 0 },
    verdict,
    nextVerifyAt: T + 60_000,
    lastError: null,
    commitment: "finalized",
    evaluation: {
      amounts: {
        escrowedUnits: 400_000n + charged,
        chargedUnits: charged,
        workerPaidUnits: (charged * 3n) / 4n,
        treasuryPaidUnits: charged - (charged * 3n) / 4n,
        refundedUnits: 400_000n,
        expectedChargeUnits: charged,
        feesLamports: 5_000n + charged,
      },
      unproven: [],
      learned: { creditVault: null, treasuryCandidate: null },
    },
    checks: [{ name: "escrow.amount", outcome: "pass", reason: null, expected: "1", actual: "1" }],
  };
}

const dimensions: Record<number, readonly string[]> = {
  [grains.full]: ["model", "worker", "key_fingerprint"],
  [grains.model]: ["model"],
  [grains.worker]: ["worker"],
  [grains.key]: ["key_fingerprint"],
  [grains.hourModel]: ["model"],
  [grains.hourWorker]: ["worker"],
  [grains.hourKey]: ["key_fingerprint"],
};

/** Every grain's rows summed from `jobs` alone, ordered by key, values as text. */
async function fromScratch(store: PgStore): Promise<string[][]> {
  const sums = storedFigures.map((f) => {
    const expr = f.perJob.replaceAll("$.", "");
    return f.kind === "count" ? `count(*) FILTER (WHERE ${expr})` : `coalesce(sum(${expr}), 0)`;
  });
  const selects = Object.values(grains).map(
    (g) => `SELECT ${g}, created_at / ${g >= grains.hourModel ? HOUR_MS : DAY_MS},
      ${["model", "worker", "key_fingerprint"].map((d) => (dimensions[g]!.includes(d) ? d : "NULL::text")).join(", ")},
      ${sums.join(", ")}
    FROM jobs GROUP BY 1, 2, 3, 4, 5`,
  );
  return rows(store, `${selects.join(" UNION ALL ")} ORDER BY 1, 2, 3, 4, 5`);
}

/** The rollup rows with any figure other than 0 (a key every job left keeps a row of zeros). */
async function rollups(store: PgStore): Promise<string[][]> {
  return rows(
    store,
    `SELECT grain, day, model, worker, key_fingerprint, ${rollupFigureColumns.join(", ")}
     FROM job_rollups WHERE ${rollupFigureColumns.map((c) => `${c} <> 0`).join(" OR ")}
     ORDER BY 1, 2, 3, 4, 5`,
  );
}

/** Every rollup row with its version (`xmin`, `ctid`): any write to a row changes them. */
async function rollupVersions(store: PgStore): Promise<string[][]> {
  return rows(
    store,
    `SELECT xmin::text, ctid::text, grain, day, model, worker, key_fingerprint,
       ${rollupFigureColumns.join(", ")} FROM job_rollups ORDER BY grain, day, model, worker, key_fingerprint`,
  );
}

async function rows(store: PgStore, text: string): Promise<string[][]> {
  const result = await store.pool.query({ text, rowMode: "array" });
  return result.rows.map((r: unknown[]) => r.map((v) => (v === null ? "NULL" : String(v))));
}

describe("PostgreSQL rollup triggers", () => {
  const database = usePostgresDatabase();

  let url = "";
  async function freshStore(): Promise<PgStore> {
    url = await database.createMigrated();
    const store = openPostgres(url);
    return store;
  }

  it("keep every rollup row equal to the jobs summed from scratch through a mixed sequence of writes", async () => {
    const store = await freshStore();
    try {
      // Multi-row inserts: two hours of one day, and the next day.
      const a = await ingest(store, 600, T);
      const b = await ingest(store, 300, T + 2 * HOUR_MS);
      const c = await ingest(store, 300, T + DAY_MS);
      const all = [...a, ...b, ...c];
      // A verdict batch: final verdicts of every kind, open ones, and a job it does not lease.
      const batch = all.filter((_, i) => i % 3 === 0);
      await lease(store, batch.slice(1), "owner-a");
      const kinds: Verdict[] = [
        "verified",
        "discrepancy",
        "dropped",
        "partially_verified",
        "unverifiable",
        "awaiting_finality",
        "error",
      ];
      const written = await createVerdictStore(store, profile).write(
        batch.map((id, i) => decision(id, kinds[i % kinds.length]!, BigInt(1_000 + i * 7))),
        { owner: "owner-a", runId: null, t: T },
      );
      expect(written[0]).toBe(false);
      expect(written.filter(Boolean).length).toBeGreaterThan(250);
      expect(await rollups(store)).toEqual(await fromScratch(store));

      // Lease claims and moves between open verdicts: nothing the rollups count.
      await lease(store, all.slice(0, 1000), "owner-b");
      await store.pool.query(
        "UPDATE jobs SET verdict = 'awaiting_finality', verify_attempts = verify_attempts + 1 WHERE verdict = 'pending' AND job_id = ANY($1::text[])",
        [b],
      );
      // Moves: another model and worker, another day, another hour of the same day.
      await store.pool.query(
        "UPDATE jobs SET model = 'moved-model', worker = $2 WHERE job_id = ANY($1::text[])",
        [all.filter((_, i) => i % 5 === 1), workers[0]],
      );
      await store.pool.query(
        `UPDATE jobs SET created_at = created_at - ${DAY_MS} WHERE job_id = ANY($1::text[])`,
        [c.filter((_, i) => i % 2 === 0)],
      );
      await store.pool.query(
        `UPDATE jobs SET created_at = created_at + ${HOUR_MS}, charged_units = 7 WHERE job_id = ANY($1::text[])`,
        [a.filter((_, i) => i % 4 === 2)],
      );
      // A job whose id changes counts as one leaving and one arriving.
      const unverified = all[1]!; // Not in the verdict batch: no check rows refer to it.
      await store.pool.query(
        "UPDATE jobs SET job_id = job_id || '_renamed', model = 'renamed' WHERE job_id = $1",
        [unverified],
      );
      await store.pool.query("DELETE FROM jobs WHERE job_id = ANY($1::text[])", [
        all.filter((_, i) => i % 7 === 3),
      ]);

      const now = await rollups(store);
      expect(now).toEqual(await fromScratch(store));
      expect(now.some((r) => r[2] === "moved-model")).toBe(true);
      expect(now.some((r) => Number(r[0]) >= grains.hourModel)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it("leave every rollup row untouched when an UPDATE of 1,000 jobs changes only their leases", async () => {
    const store = await freshStore();
    try {
      const ids = await ingest(store, 1000, T);
      const before = await rollupVersions(store);
      expect(before.length).toBeGreaterThan(10);
      await lease(store, ids, "owner-a");
      expect(await rollupVersions(store)).toEqual(before);
      // The same statement shape that changes a figure does move them.
      await store.pool.query(
        "UPDATE jobs SET lease_owner = NULL, charged_units = 1 WHERE job_id = ANY($1::text[])",
        [ids],
      );
      expect(await rollupVersions(store)).not.toEqual(before);
      expect(await rollups(store)).toEqual(await fromScratch(store));
    } finally {
      await store.close();
    }
  });

  it("stay exact while two processes ingest, claim and write verdicts on the same rollup rows at once", async () => {
    const store = await freshStore();
    const other = openPostgres(url);
    try {
      const seeded = await ingest(store, 800, T);
      const halves = [seeded.filter((_, i) => i % 2 === 0), seeded.filter((_, i) => i % 2 === 1)];
      await Promise.all(
        [store, other].map(async (s, n) => {
          const mine = halves[n]!;
          await lease(s, mine, `owner-${n}`);
          for (let i = 0; i < mine.length; i += 100) {
            const batch = mine.slice(i, i + 100);
            // Opposite orders, so the batches meet on the same rollup rows from both ends.
            if (n === 1) batch.reverse();
            await createVerdictStore(s, profile).write(
              batch.map((id, k) => decision(id, k % 2 ? "verified" : "discrepancy", BigInt(k))),
              { owner: `owner-${n}`, runId: null, t: T },
            );
            await ingest(s, 100, T + HOUR_MS);
          }
        }),
      );
      expect(await rollups(store)).toEqual(await fromScratch(store));
    } finally {
      await other.close();
      await store.close();
    }
  });
});

describe.each(dialects)("verdict batches on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("write only the first of two decisions of one job, and keep the amounts of a decision without an evaluation", async () => {
    const store = await stores.open();
    await seedJobs(store, [{ jobId: "job-1" }, { jobId: "job-2" }]);
    await leaseJob(store, "job-1", "owner-a");
    await leaseJob(store, "job-2", "owner-a");
    const verdicts = createVerdictStore(store, profile);
    // job-2 first gets amounts, then goes back to an open verdict without an evaluation.
    expect(
      await verdicts.write([decision("job-2", "verified", 10n)], {
        owner: "owner-a",
        runId: null,
        t: T,
      }),
    ).toEqual([true]);
    await leaseJob(store, "job-2", "owner-a");
    const written = await verdicts.write(
      [
        decision("job-1", "verified", 500n),
        decision("job-1", "discrepancy", 900n),
        { ...decision("job-2", "error", 0n), evaluation: null, checks: null, lastError: "rpc" },
      ],
      { owner: "owner-a", runId: null, t: T + 1 },
    );
    expect(written).toEqual([true, false, false]);
    expect(await readJob(store, "job-1")).toMatchObject({
      verdict: "verified",
      chargedUnits: 500n,
      leaseOwner: null,
    });
    expect(await readJob(store, "job-2")).toMatchObject({
      verdict: "error",
      verifyAttempts: 1,
      lastError: "rpc",
      chargedUnits: 10n,
      escrowedUnits: 400_010n,
      feesLamports: 5_010n,
      leaseOwner: null,
      updatedAt: T + 1,
    });
  });
});
