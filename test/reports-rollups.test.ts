import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getTableColumns } from "drizzle-orm";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildProgram } from "../src/cli.js";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import {
  backfillRollups,
  deltaFoldRows,
  foldRollupDeltas,
  rollupDeltasTable,
  rollupsComplete,
  rollupTriggersSql,
} from "../src/db/rollups.js";
import { finalVerdicts, jobs, type Verdict, verdicts } from "../src/db/schema.js";
import {
  countJobsByVerdict,
  groupByValues,
  reconciliationReport,
} from "../src/reports/reconciliation.js";
import { recomputeRollups } from "../src/reports/rollup-recompute.js";
import { type Receipt, recordReceiptsInTransaction } from "../src/store/receipts.js";
import { fakeSignature, insertJob } from "./support/job-rows.js";
import { createTestStore } from "./support/store.js";

const DAY = 86_400_000;
const start = Date.UTC(2026, 10, 1);

/** Deterministic PRNG (mulberry32), so a failure replays. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const models = ["qwen3-8b", "llama-3.3-70b", "", null] as const;
const workers = [
  "WorkerA1111111111111111111111111111111111111",
  "WorkerB2222222222222222222222",
  null,
];
const keys = ["kf_0001", "kf_0002", null];

/** Inserts `count` jobs spread over `days` days with every kind of verdict and missing field. */
function insertMixed(
  store: SqliteStore,
  rand: () => number,
  count: number,
  prefix: string,
  days = 5,
) {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)] as T;
  for (let i = 0; i < count; i++) {
    const verdict = pick(verdicts);
    const open = !finalVerdicts.includes(verdict);
    insertJob(store, {
      jobId: `${prefix}${i}`,
      createdAt: start + Math.floor(rand() * days * DAY),
      model: pick(models),
      worker: pick(workers),
      keyFingerprint: pick(keys),
      verdict,
      ...(open
        ? {}
        : {
            chargedUnits: BigInt(Math.floor(rand() * 1_000_000)),
            escrowedUnits: BigInt(Math.floor(rand() * 5_000_000)),
          }),
    });
  }
}

/** Verdict changes, re-verifications back to pending, moved dimensions, no-op writes, deletes. */
function churn(store: SqliteStore, rand: () => number, prefix: string, count: number) {
  const db = store.sqlite;
  const setVerdict = db.prepare(
    `UPDATE jobs SET verdict = ?, charged_units = ?, escrowed_units = ?, worker_paid_units = ?,
       treasury_paid_units = ?, refunded_units = ?, fees_lamports = ? WHERE job_id = ?`,
  );
  const reverify = db.prepare(
    `UPDATE jobs SET verdict = 'pending', charged_units = NULL, escrowed_units = NULL,
       worker_paid_units = NULL, treasury_paid_units = NULL, refunded_units = NULL,
       fees_lamports = NULL WHERE job_id = ?`,
  );
  const move = db.prepare(
    "UPDATE jobs SET worker = ?, model = ?, key_fingerprint = ?, created_at = created_at + ? WHERE job_id = ?",
  );
  const lease = db.prepare("UPDATE jobs SET lease_owner = 'x', lease_until = 1 WHERE job_id = ?");
  const sameVerdict = db.prepare("UPDATE jobs SET verdict = verdict WHERE job_id = ?");
  const remove = db.prepare("DELETE FROM jobs WHERE job_id = ?");
  for (let n = 0; n < count; n++) {
    const id = `${prefix}${Math.floor(rand() * count)}`;
    const r = rand();
    const amount = () => BigInt(Math.floor(rand() * 900_000));
    if (r < 0.4) {
      const verdict = verdicts[Math.floor(rand() * verdicts.length)] as Verdict;
      setVerdict.run(verdict, amount(), amount(), amount(), amount(), amount(), amount(), id);
    } else if (r < 0.55) reverify.run(id);
    else if (r < 0.7) {
      move.run(
        workers[Math.floor(rand() * workers.length)] ?? null,
        models[Math.floor(rand() * models.length)] ?? null,
        keys[Math.floor(rand() * keys.length)] ?? null,
        Math.floor((rand() - 0.5) * 2 * DAY),
        id,
      );
    } else if (r < 0.8) lease.run(id);
    else if (r < 0.9) sameVerdict.run(id);
    else remove.run(id);
  }
}

/** Every groupBy, whole-day and ragged periods, all jobs and one worker: rollups = scratch. */
async function expectReportsMatchScratch(store: SqliteStore) {
  const periods = [
    { from: start, to: start + 5 * DAY },
    { from: start + 7 * 3_600_000, to: start + 4 * DAY + 1 },
    { from: start + DAY + 5, to: start + DAY + 6 * 3_600_000 },
    { from: start - 3 * DAY, to: start + 9 * DAY },
  ];
  for (const period of periods) {
    for (const groupBy of groupByValues) {
      for (const worker of [undefined, workers[0]]) {
        const query = { ...period, groupBy, ...(worker ? { worker } : {}) };
        const fromRollups = await reconciliationReport(store, query, () => 0);
        const fromJobs = await reconciliationReport(store, { ...query, source: "jobs" }, () => 0);
        expect(fromRollups.groups.filter((g) => g.jobs > 0)).toEqual(
          fromJobs.groups.filter((g) => g.jobs > 0),
        );
        expect(fromRollups.totals).toEqual(fromJobs.totals);
      }
    }
    const counts = await countJobsByVerdict(store, period.from, period.to);
    const scratch = store.sqlite
      .prepare(
        "SELECT verdict, count(*) AS n FROM jobs WHERE created_at >= ? AND created_at < ? GROUP BY verdict",
      )
      .all(period.from, period.to) as { verdict: Verdict; n: number }[];
    const expected = Object.fromEntries(verdicts.map((v) => [v, 0]));
    for (const row of scratch) expected[row.verdict] = row.n;
    expect(counts).toEqual(expected);
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("report rollups", () => {
  it("agree with the jobs to the base unit after inserts, verdict changes, re-verifications, moves and deletes", async () => {
    const store = createTestStore();
    const rand = prng(17);
    insertMixed(store, rand, 400, "j");
    churn(store, rand, "j", 1200);
    insertMixed(store, rand, 100, "k");

    const check = await recomputeRollups(store);
    expect(check.differences).toEqual([]);
    expect(check.days).toBeGreaterThan(4);
    expect(check.rows).toBeGreaterThan(50);
    await expectReportsMatchScratch(store);
  });

  it("count the changes not yet summed, and sum them once enough are pending", async () => {
    const store = createTestStore();
    const rand = prng(23);
    const pending = store.sqlite.prepare(`SELECT count(*) FROM ${rollupDeltasTable}`).pluck();
    // Direct inserts, outside any batch writer: only the fold trigger sums their deltas.
    insertMixed(store, rand, deltaFoldRows - 1, "a");
    expect(pending.get()).toBe(deltaFoldRows - 1);
    await expectReportsMatchScratch(store);
    expect((await recomputeRollups(store)).differences).toEqual([]);
    insertMixed(store, rand, 1, "b");
    expect(pending.get()).toBe(0);
    churn(store, rand, "a", 300);
    expect(pending.get()).toBeGreaterThan(0);
    await expectReportsMatchScratch(store);
    expect((await recomputeRollups(store)).differences).toEqual([]);
    const before = store.sqlite.prepare("SELECT count(*) FROM job_rollups").pluck().get();
    foldRollupDeltas(store);
    expect(pending.get()).toBe(0);
    expect(store.sqlite.prepare("SELECT count(*) FROM job_rollups").pluck().get()).toBeGreaterThan(
      before as number,
    );
    await expectReportsMatchScratch(store);
    expect((await recomputeRollups(store)).differences).toEqual([]);
  });

  it("are summed by the fold trigger inside receipt writes, as a group commit makes them", async () => {
    const store = createTestStore();
    const pending = store.sqlite.prepare(`SELECT count(*) FROM ${rollupDeltasTable}`).pluck();
    const receipt = (i: number, settled: boolean): Receipt => ({
      jobId: `g${i}`,
      escrowTx: fakeSignature(`e${i}`),
      settlementTx: settled ? fakeSignature(`s${i}`) : null,
      worker: workers[i % 2] ?? null,
      creditsRemainingUnits: 1_000n,
      model: models[i % 4] ?? null,
      promptTokens: 1,
      completionTokens: 2,
      totalTokens: 3,
      createdAt: start + i * 997_001,
    });
    // Small writes inside one transaction leave their deltas pending (no fold per write), so
    // the fold trigger sums them from inside the receipt insert, under its OR IGNORE.
    const outcomes = store.sqlite
      .transaction(() => {
        const results = [];
        for (let i = 0; i < deltaFoldRows + 200; i += 10) {
          const group = Array.from({ length: 10 }, (_, k) => receipt(i + k, (i + k) % 3 > 0));
          results.push(...recordReceiptsInTransaction(store, group, "ingest"));
          // The same receipts again, and the unsettled ones settled: duplicates and fills.
          results.push(...recordReceiptsInTransaction(store, group.slice(0, 3), "ingest"));
          const settled = group
            .filter((r) => r.settlementTx === null)
            .map((r) => receipt(Number(r.jobId.slice(1)), true));
          results.push(...recordReceiptsInTransaction(store, settled, "ingest"));
        }
        return results;
      })
      .immediate();
    expect(new Set(outcomes.map((o) => o.outcome))).toEqual(
      new Set(["created", "duplicate", "updated"]),
    );
    expect(pending.get()).toBeLessThan(deltaFoldRows);
    expect(store.sqlite.prepare("SELECT count(*) FROM job_rollups").pluck().get()).toBeGreaterThan(
      0,
    );
    await expectReportsMatchScratch(store);
    expect((await recomputeRollups(store)).differences).toEqual([]);
  });

  it("are kept by the triggers generated from the table of report figures", () => {
    const store = createTestStore();
    const installed = store.sqlite
      .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'jobs_rollup_%'")
      .pluck()
      .all() as string[];
    expect([...installed].sort()).toEqual([...rollupTriggersSql()].sort());
  });

  it("update no aliased table in a trigger, which SQLite 3.40 (Debian 12's sqlite3) cannot read", () => {
    const store = createTestStore();
    const triggers = store.sqlite
      .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
      .all() as { name: string; sql: string }[];
    expect(triggers.length).toBeGreaterThan(0);
    const aliased = triggers.filter((t) => /\bUPDATE\s+\S+\s+AS\s/i.test(t.sql));
    expect(aliased.map((t) => t.name)).toEqual([]);
  });

  it("keep a model named '' apart from a job without a model", async () => {
    const store = createTestStore();
    insertJob(store, { jobId: "empty", createdAt: start, model: "", chargedUnits: 5n });
    insertJob(store, { jobId: "none", createdAt: start + 1, model: null, chargedUnits: 7n });
    const report = await reconciliationReport(store, {
      from: start,
      to: start + DAY,
      groupBy: "model",
    });
    expect(report.groups.map((g) => [g.group, g.chargedUnits])).toEqual([
      [null, 7n],
      ["", 5n],
    ]);
  });

  it("name every figure that differs from the jobs", async () => {
    const store = createTestStore();
    insertJob(store, {
      jobId: "a",
      createdAt: start + 5,
      model: "qwen3-8b",
      chargedUnits: 80_000n,
    });
    // The job's deltas are summed into job_rollups first, so there is a row to tamper with.
    foldRollupDeltas(store);
    store.sqlite
      .prepare(
        "UPDATE job_rollups SET charged_units_lo = charged_units_lo + 1 WHERE grain = 1 AND model = 'qwen3-8b'",
      )
      .run();
    const check = await recomputeRollups(store);
    expect(check.differences).toEqual([
      {
        grain: "model",
        day: "2026-11-01",
        model: "qwen3-8b",
        worker: null,
        keyFingerprint: null,
        column: "charged_units",
        rollup: 80_001n,
        recomputed: 80_000n,
      },
    ]);
  });

  it("are built by db migrate for a database recorded before them, resuming after a crash", async () => {
    // A database at the previous migration, with jobs: the state of an existing deployment.
    const dir = mkdtempSync(join(tmpdir(), "rollups-"));
    const older = join(dir, "migrations");
    cpSync(migrationsFolder, older, { recursive: true });
    const journalPath = join(older, "meta", "_journal.json");
    const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: { tag: string }[] };
    // Every migration from the rollups on is left out.
    journal.entries = journal.entries.slice(
      0,
      journal.entries.findIndex((e) => e.tag.endsWith("_rollups")),
    );
    writeFileSync(journalPath, JSON.stringify(journal));
    const path = join(dir, "audit.db");
    let store = openSqliteStore(path);
    migrate(store.db, { migrationsFolder: older });
    const rand = prng(5);
    // The row helper names every column of today's `jobs`: the ones later migrations add are
    // there only while the old rows are written.
    const present = new Set(
      (store.sqlite.prepare("PRAGMA table_info(jobs)").all() as { name: string }[]).map(
        (c) => c.name,
      ),
    );
    const later = Object.values(getTableColumns(jobs))
      .map((c) => c.name)
      .filter((name) => !present.has(name));
    for (const name of later) store.sqlite.exec(`ALTER TABLE jobs ADD "${name}" text`);
    insertMixed(store, rand, 300, "old", 6);
    for (const name of later) store.sqlite.exec(`ALTER TABLE jobs DROP COLUMN "${name}"`);
    store.close();

    // The new migration runs; its backfill dies after two days.
    store = openSqliteStore(path);
    let summed = 0;
    expect(() =>
      migrateStore(store, {
        onBackfill: () => {
          summed++;
          if (summed === 2) throw new Error("killed");
        },
      }),
    ).toThrow("killed");
    expect(rollupsComplete(store)).toBe(false);
    // Reports stay exact meanwhile (they read jobs), and writes go on under the triggers.
    insertMixed(store, rand, 50, "new", 6);
    churn(store, rand, "old", 200);
    await expectReportsMatchScratch(store);
    store.close();

    // The next start resumes where it stopped.
    store = openSqliteStore(path);
    const days: number[] = [];
    migrateStore(store, { onBackfill: (day) => days.push(day) });
    expect(days.length).toBe(4);
    expect(rollupsComplete(store)).toBe(true);
    expect(backfillRollups(store)).toBe(0);
    expect((await recomputeRollups(store)).differences).toEqual([]);
    await expectReportsMatchScratch(store);
    store.close();
  });
});

describe("decentral-audit report reconciliation --recompute", () => {
  async function cli(...args: string[]) {
    let out = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      out += String(chunk);
      return true;
    });
    process.exitCode = undefined;
    await buildProgram().parseAsync(["node", "decentral-audit", ...args]);
    vi.restoreAllMocks();
    const code = process.exitCode;
    process.exitCode = undefined;
    return { out, code };
  }

  it("exits 0 when the rollups match and 1 listing the difference when not", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "recompute-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    insertJob(store, { jobId: "a", createdAt: start + 5, worker: workers[0], chargedUnits: 9n });
    store.close();

    const clean = await cli("report", "reconciliation", "--recompute", "--db", path);
    expect(clean.code).toBe(0);
    expect(clean.out).toMatch(/1 days \(2026-11-01 to 2026-11-01\), 7 rollup rows: no difference/);

    const tampered = openSqliteStore(path);
    foldRollupDeltas(tampered);
    tampered.sqlite.prepare("UPDATE job_rollups SET jobs_verified = 2 WHERE grain = 2").run();
    tampered.close();
    const dirty = await cli("report", "reconciliation", "--recompute", "--db", path);
    expect(dirty.code).toBe(1);
    expect(dirty.out).toContain(
      `grain worker 2026-11-01 model - worker ${workers[0]} key -: jobs_verified rollup 2 jobs 1 (off by 1)`,
    );
  });
});
