import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { getTableName, is } from "drizzle-orm";
import { getTableConfig, PgTable } from "drizzle-orm/pg-core";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { CopyError, copySqliteToPostgres } from "../src/db/copy.js";
import { migrateStore } from "../src/db/migrate.js";
import { defaultPostgresSettings } from "../src/db/pg/client.js";
import * as pgSchema from "../src/db/pg/schema.js";
import {
  accessTokens,
  accountSnapshots,
  creditVaults,
  dashboardSessions,
  ledgerCursors,
  ledgerLines,
  locks,
  profilePins,
  treasuryEvidence,
  verdicts,
  verificationRuns,
} from "../src/db/schema.js";
import { joinParts } from "../src/db/split-sums.js";
import { seedDashboard } from "./support/dashboard-fixtures.js";
import { insertCheck, insertConflict, insertJob } from "./support/job-rows.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { cliArgv, programModules } from "./support/service-process.js";

const dir = mkdtempSync(join(tmpdir(), "pg-copy-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A SQLite store as the product fills it, with every table holding rows. */
function fillSqliteStore(path: string, jobCount: number): void {
  const store = openSqliteStore(path);
  migrateStore(store);
  store.sqlite.transaction(() => fill(store, jobCount)).immediate();
  store.close();
}

function fill(store: SqliteStore, jobCount: number): void {
  seedDashboard(store);
  const models = ["qwen3-8b", "llama-3.3-70b", null];
  for (let i = 0; i < jobCount; i++) {
    const verdict = verdicts[i % verdicts.length]!;
    insertJob(store, {
      jobId: `job_copy_${String(i).padStart(5, "0")}`,
      verdict,
      model: models[i % 3] ?? null,
      worker: i % 7 === 0 ? null : `worker_${i % 5}`,
      keyFingerprint: i % 11 === 0 ? null : `kf_${i % 4}`,
      createdAt: Date.UTC(2026, 9, 1 + (i % 40), i % 24),
      chargedUnits: verdict === "pending" ? null : BigInt(1_000 + i * 37),
      tags: i % 3 === 0 ? { team: "search", zé: "ü", a: "1" } : {},
      stream: i % 2 === 0,
      apiResponse: i % 5 === 0 ? { id: `job_copy_${i}`, nested: { b: 2, a: 1 } } : null,
    });
    if (i % 9 === 0)
      insertCheck(store, `job_copy_${String(i).padStart(5, "0")}`, "escrow.amount", "fail", {
        reason: "lock differs",
        expected: "1",
        actual: "2",
      });
  }
  insertConflict(store, "job_copy_00003", ["worker", "settlement_tx"]);
  // Its signatures as the conflicting receipt left them, indexed by the trigger.
  store.sqlite
    .prepare("UPDATE jobs SET conflict_signatures = ? WHERE job_id = 'job_copy_00003'")
    .run(JSON.stringify(["sig_conflict_1", "sig_conflict_2"]));
  // The largest amounts a store can hold, where no trigger sums them.
  store.db
    .insert(ledgerLines)
    .values([
      {
        vault: "V1",
        signature: "s1",
        ord: 1,
        slot: 400_000_000,
        blockTime: 1_790_000_000,
        state: "read",
        succeeded: true,
        preUnits: 2n ** 63n - 1n,
        postUnits: -(2n ** 63n),
        deltaUnits: 9_007_199_254_740_993n,
        memo: "escrow job_d01_0\nsecond line",
        memoKind: "escrow",
        memoJobId: "job_d01_0",
        listedAt: 1,
      },
      { vault: "V1", signature: "s2", ord: 2, slot: 400_000_001, state: "listed", listedAt: 2 },
    ])
    .run();
  // Classified lines: the SQLite triggers sum them into ledger_daily, copied as it is. No
  // balances: the sums of pre_units and post_units are already at the ends of the range.
  store.db
    .insert(ledgerLines)
    .values(
      [0, 1, 2].map((i) => ({
        vault: "V2",
        signature: `k${i}`,
        ord: i + 1,
        slot: 400_000_100 + i,
        blockTime: 1_790_000_000 + i * 86_400,
        state: "read" as const,
        succeeded: true,
        // Two locks and a deposit that add up to nothing, so the sum of delta_units stays
        // above 2^53 for the comparison test.
        deltaUnits: i === 2 ? 750_000n : -250_000n * BigInt(i + 1),
        kind: i === 2 ? ("deposit" as const) : ("lock" as const),
        jobId: `job_d01_${i}`,
        released: i === 0,
        headerOk: i === 1 ? false : null,
        gapAfterSignature: i === 2 ? "k1" : null,
        gapAfterSlot: i === 2 ? 400_000_101 : null,
        gapUnits: i === 2 ? -13n : null,
        listedAt: 10 + i,
      })),
    )
    .run();
  store.db
    .insert(accountSnapshots)
    .values([
      {
        takenAt: 11,
        keyFingerprint: "kf_0",
        vault: "V2",
        creditsRemaining: 1,
        usdcValueUnits: 1_250_000n,
        vaultUnits: 1_250_001n,
        vaultSlot: 400_000_200,
        creditsDifference: 0,
        usdcDifferenceUnits: -1n,
      },
      { takenAt: 12, keyFingerprint: "kf_1", error: "the API did not answer" },
    ])
    .run();
  store.db
    .insert(ledgerCursors)
    .values({
      vault: "V1",
      newestSignature: "s2",
      newestSlot: 400_000_001,
      syncNumber: 3,
      balanceUnits: 123_456_789n,
      updatedAt: 5,
      chainedOrd: 1,
    })
    .run();
  store.db
    .insert(creditVaults)
    .values({
      keyFingerprint: "kf_0",
      vault: "V1",
      source: "learned",
      jobId: "job_d01_0",
      pinnedAt: 7,
    })
    .run();
  store.db
    .insert(treasuryEvidence)
    .values({ profile: "localnet", signature: "s9", address: "T1", jobId: "job_d01_0", seenAt: 8 })
    .run();
  store.db
    .insert(profilePins)
    .values({ profile: "localnet", name: "treasury", value: "T1", evidence: 3, pinnedAt: 9 })
    .run();
  store.db
    .insert(verificationRuns)
    .values([
      {
        trigger: "verify",
        status: "completed",
        windowFrom: 1,
        windowTo: 2,
        startedAt: 3,
        finishedAt: 4,
        owner: "host:1",
        summary: { verified: 3 },
      },
      { trigger: "serve", status: "abandoned", startedAt: 5, owner: "host:2" },
    ])
    .run();
  store.db
    .insert(accessTokens)
    .values({
      id: "tok_1",
      name: "ci",
      role: "ingest",
      tokenHash: "ab".repeat(32),
      createdAt: 10,
      lastUsedAt: 11,
    })
    .run();
  store.db
    .insert(dashboardSessions)
    .values({ idHash: "cd".repeat(32), tokenId: "tok_1", createdAt: 12, expiresAt: 13 })
    .run();
  store.db
    .insert(locks)
    .values({ name: "nightly", owner: "host:1", acquiredAt: 14, expiresAt: 15 })
    .run();
}

const pgTables = (Object.values(pgSchema) as unknown[]).filter((v): v is PgTable => is(v, PgTable));

/**
 * Every row of every table on both sides, as text, sorted: SQLite read with safe integers,
 * PostgreSQL with every column cast to text (json keeps its text), x'' shown as NULL.
 */
async function dumpBoth(sqlitePath: string, url: string) {
  const lite = new Database(sqlitePath, { readonly: true });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const dumps: Record<string, { source: string[]; target: string[] }> = {};
    for (const table of pgTables) {
      const config = getTableConfig(table);
      const name = getTableName(table);
      // A stored sum of money (numeric) SQLite keeps in two parts, read joined.
      const read = config.columns.map((c) =>
        c.getSQLType() === "numeric" ? `("${c.name}_hi", "${c.name}_lo")` : `"${c.name}"`,
      );
      const source = (
        lite
          .prepare(
            `SELECT ${read.map((r) => r.replace(/^\((.*)\)$/, "$1")).join(", ")} FROM "${name}"`,
          )
          .safeIntegers(true)
          .raw(true)
          .all() as unknown[][]
      ).map((raw) => {
        let at = 0;
        const row = read.map((r) => {
          const value = r.startsWith("(")
            ? joinParts(raw[at] as bigint, raw[at + 1] as bigint)
            : raw[at];
          at += r.startsWith("(") ? 2 : 1;
          return value;
        });
        return JSON.stringify(
          row.map((v, i) => {
            if (v === null || (Buffer.isBuffer(v) && v.length === 0)) return null;
            if (config.columns[i]!.getSQLType() === "boolean") return v === 1n ? "true" : "false";
            return String(v);
          }),
        );
      });
      const target = (
        await client.query({
          text: `SELECT ${config.columns.map((c) => `"${c.name}"::text`).join(", ")} FROM "${name}"`,
          rowMode: "array",
        })
      ).rows.map((row) => JSON.stringify(row));
      dumps[name] = { source: source.sort(), target: target.sort() };
    }
    return dumps;
  } finally {
    lite.close();
    await client.end();
  }
}

describe("db copy from SQLite to PostgreSQL", () => {
  const database = usePostgresDatabase();
  const source = join(dir, "store.db");
  const jobCount = 600;
  beforeAll(() => fillSqliteStore(source, jobCount));

  it("copies every table exactly, resuming after an interruption without duplicating a row", async () => {
    const copied: Record<string, number> = {};
    const add = (run: Record<string, number>) => {
      for (const [table, n] of Object.entries(run)) copied[table] = (copied[table] ?? 0) + n;
    };
    // Interrupted twice between batches (a killed process loses only its open transaction).
    const first = await copySqliteToPostgres({
      from: source,
      to: database.url,
      batchRows: 100,
      maxBatches: 3,
    });
    expect(first.complete).toBe(false);
    add(first.copied);
    const second = await copySqliteToPostgres({
      from: source,
      to: database.url,
      batchRows: 100,
      maxBatches: 2,
    });
    expect(second.complete).toBe(false);
    add(second.copied);
    const partial = await dumpBoth(source, database.url);
    expect(partial.jobs!.target.length).toBeGreaterThan(0);
    expect(partial.jobs!.target.length).toBeLessThan(partial.jobs!.source.length);

    const last = await copySqliteToPostgres({ from: source, to: database.url, batchRows: 100 });
    add(last.copied);
    expect(last.complete).toBe(true);
    expect(last.equal).toBe(true);
    const dumps = await dumpBoth(source, database.url);
    for (const [table, { source: rows }] of Object.entries(dumps)) {
      // Each source row was sent once over the three runs: none re-sent, none skipped.
      expect(copied[table], table).toBe(rows.length);
      expect(dumps[table]!.target, table).toEqual(rows);
    }
    expect(dumps.jobs!.source).toHaveLength(jobCount + 45);
    expect(dumps.ledger_lines!.target.join()).toContain(String(2n ** 63n - 1n));
    expect(dumps.ledger_daily!.target).toHaveLength(3);
    expect(dumps.account_snapshots!.target).toHaveLength(2);
    expect(dumps.job_conflict_signatures!.target).toHaveLength(2);

    const comparison = new Map(last.comparison.map((c) => [c.table, c]));
    expect(comparison.get("jobs")).toMatchObject({
      sourceRows: String(jobCount + 45),
      equal: true,
    });
    expect(comparison.get("jobs")!.sums.find((s) => s.column === "charged_units")!.source).toMatch(
      /^\d+$/,
    );
    expect(comparison.size).toBe(pgTables.length);
    const sum = (table: string, column: string) =>
      comparison.get(table)!.sums.find((s) => s.column === column);
    expect(sum("ledger_daily", "units")).toEqual({
      column: "units",
      source: "0",
      target: "0",
    });
    expect(sum("account_snapshots", "usdc_value_units")).toEqual({
      column: "usdc_value_units",
      source: "1250000",
      target: "1250000",
    });
    expect(sum("ledger_lines", "gap_units")).toEqual({
      column: "gap_units",
      source: "-13",
      target: "-13",
    });
  });

  it("leaves PostgreSQL ready for new writes: rollup triggers on, ids after the copied ones", async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const triggers = await client.query(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'jobs'::regclass AND NOT tgisinternal ORDER BY 1",
      );
      expect(triggers.rows.map((r) => `${r.tgname}:${r.tgenabled}`)).toEqual([
        "jobs_conflict_signatures_insert:O",
        "jobs_conflict_signatures_update:O",
        "jobs_locks_unreleased:O",
        "jobs_nightly_turned:O",
        "jobs_rollup_delete:O",
        "jobs_rollup_insert:O",
        "jobs_rollup_update:O",
      ]);
      const lineTriggers = await client.query(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'ledger_lines'::regclass AND NOT tgisinternal ORDER BY 1",
      );
      expect(lineTriggers.rows.map((r) => `${r.tgname}:${r.tgenabled}`)).toEqual([
        "ledger_lines_daily_delete:O",
        "ledger_lines_daily_insert:O",
        "ledger_lines_daily_update:O",
      ]);
      const run = await client.query(
        "INSERT INTO verification_runs (trigger, status, started_at, owner) VALUES ('verify', 'running', 1, 'x') RETURNING id",
      );
      expect(Number(run.rows[0].id)).toBe(3);
      await client.query("DELETE FROM verification_runs WHERE id = 3");
    } finally {
      await client.end();
    }
  });

  it("continues a copy whose process was killed mid-table, and ends exact", async () => {
    const target = await database.create();
    const child = spawn(
      process.execPath,
      cliArgv(["db", "copy", "--from", source, "--to", target, "--batch", "10"]),
      { env: { ...process.env, DATABASE_URL: ":memory:" }, stdio: "ignore" },
    );
    const exited = new Promise((resolve) => child.once("exit", resolve));
    const client = new pg.Client({ connectionString: target });
    await client.connect();
    let jobsAtKill = 0;
    try {
      // Killed as soon as some batches of jobs are committed and others not.
      for (let polls = 0; polls < 2000 && jobsAtKill === 0; polls++) {
        const state = await client
          .query("SELECT rows, done FROM db_copy_progress WHERE table_name = 'jobs'")
          .catch(() => ({ rows: [] as { rows: string; done: boolean }[] }));
        const jobs = state.rows[0];
        if (jobs !== undefined && Number(jobs.rows) > 0 && !jobs.done) {
          child.kill("SIGKILL");
          jobsAtKill = Number(jobs.rows);
        } else await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await exited;
    } finally {
      await client.end();
    }
    expect(jobsAtKill).toBeGreaterThan(0);
    expect(jobsAtKill).toBeLessThan(jobCount);
    const rest = await copySqliteToPostgres({ from: source, to: target });
    expect(rest.equal).toBe(true);
    expect(rest.copied.jobs).toBeLessThan(jobCount + 45);
    const dumps = await dumpBoth(source, target);
    for (const [table, { source: rows, target: copied }] of Object.entries(dumps)) {
      expect(copied, table).toEqual(rows);
    }
  });

  it("refuses a target that is not PostgreSQL and a source that is not a migrated store", async () => {
    await expect(copySqliteToPostgres({ from: source, to: join(dir, "x.db") })).rejects.toThrow(
      /--to must be a postgres:\/\/ or postgresql:\/\/ URL/,
    );
    const bare = join(dir, "bare.db");
    new Database(bare).close();
    await expect(copySqliteToPostgres({ from: bare, to: database.url })).rejects.toThrow(
      /is not a decentral-audit store/,
    );
    await expect(
      copySqliteToPostgres({ from: join(dir, "none.db"), to: database.url }),
    ).rejects.toThrow(/no SQLite store at/);
    // What is wrong with the URL is said of --to, where it came from, not of DATABASE_URL.
    await expect(
      copySqliteToPostgres({ from: source, to: "postgres://127.0.0.1:9/x" }),
    ).rejects.toThrow("--to names no user (postgres://USER@host/db)");
    // Nothing listening: the flag and the URL named, its password not.
    await expect(
      copySqliteToPostgres({
        from: source,
        to: "postgres://u:secretpw@127.0.0.1:9/x",
        settings: { ...defaultPostgresSettings, connectTimeoutMs: 2_000 },
      }),
    ).rejects.toThrow(
      /^--to: cannot reach PostgreSQL at postgres:\/\/u:\*\*\*@127\.0\.0\.1:9\/x: /,
    );
  });

  it("refuses to mix a second store into a database that holds a copy of another", async () => {
    const other = join(dir, "other.db");
    fillSqliteStore(other, 5);
    await expect(copySqliteToPostgres({ from: other, to: database.url })).rejects.toThrow(
      CopyError,
    );
    await expect(copySqliteToPostgres({ from: other, to: database.url })).rejects.toThrow(
      /already holds a copy of/,
    );
  });

  it("prints the comparison and exits 1 when the two databases differ; db migrate runs on PostgreSQL", async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await client.query(
      "UPDATE ledger_lines SET delta_units = delta_units - 1 WHERE signature = 's1'",
    );
    await client.end();
    const fresh = await database.create();
    // Two commands in one process (one start): `db migrate` on a fresh database, then the copy.
    const program = programModules();
    const run = spawnSync(
      process.execPath,
      [
        ...program.nodeArgs,
        "-e",
        `import(${JSON.stringify(program.url("cli"))}).then(async (m) => {
          await m.runCli(["node", "decentral-audit", "db", "migrate"]);
          await m.runCli(["node", "decentral-audit", "db", "copy", "--from", process.argv[1], "--to", process.argv[2]]);
        })`,
        "--",
        source,
        database.url,
      ],
      { encoding: "utf8", env: { ...process.env, DATABASE_URL: fresh } },
    );
    expect(run.stderr).toBe("");
    const password = new URL(fresh).password;
    const pgMigrationCount = readdirSync("migrations/postgres").filter((f) =>
      f.endsWith(".sql"),
    ).length;
    expect(run.stdout).toContain(
      `migrated ${fresh.replace(`:${password}@`, ":***@")} (${pgMigrationCount} migrations applied)`,
    );
    expect(run.stdout).not.toContain(password);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/^ok {3}jobs +645 rows, .*charged_units \d+/m);
    expect(run.stdout).toContain(`DIFF ledger_lines`);
    expect(run.stdout).toContain("delta_units 9007199254740993 -> 9007199254740992");
    expect(run.stdout).toContain(`1 of ${pgTables.length} tables differ`);
  });
});
