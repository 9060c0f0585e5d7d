import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildProgram } from "../src/cli.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { foldRollupDeltas } from "../src/db/rollups.js";
import { hasUnprintable } from "../src/printable-text.js";
import { insertJob } from "./support/job-rows.js";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs the CLI in-process, its console output silenced. */
async function cli(...args: string[]) {
  vi.spyOn(console, "log").mockImplementation(() => {});
  vi.spyOn(console, "error").mockImplementation(() => {});
  await buildProgram().parseAsync(["node", "decentral-audit", ...args]);
  vi.restoreAllMocks();
}

describe("decentral-audit report reconciliation", () => {
  it("writes the CSV report to --out", async () => {
    const dir = mkdtempSync(join(tmpdir(), "report-"));
    const db = join(dir, "audit.db");
    const out = join(dir, "report.csv");
    const store = openSqliteStore(db);
    migrateStore(store);
    insertJob(store, {
      jobId: "job_1",
      model: "qwen3-8b",
      createdAt: Date.UTC(2026, 10, 5),
      chargedUnits: 123_456n,
    });
    store.close();
    await cli(
      "report",
      "reconciliation",
      "--from",
      "2026-11-01",
      "--to",
      "2026-12-01",
      "--group-by",
      "model",
      "--format",
      "csv",
      "--out",
      out,
      "--db",
      db,
    );
    const lines = readFileSync(out, "utf8").split("\r\n");
    expect(lines[0]).toMatch(
      /^kind,group,jobs,verified,partiallyVerified,pending,discrepancies,dropped,unverifiable,chargedUnits,chargedUsdc,escrowedUnits,.*,feesLamports,verifiedEscrowedUnits,verifiedEscrowedUsdc,disputedEscrowedUnits,/,
    );
    expect(lines[1]).toMatch(/^group,qwen3-8b,1,1,0,0,0,0,0,123456,0\.123456,/);
    expect(lines[2]).toMatch(/^total,,1,1,0,0,0,0,0,123456,0\.123456,/);
  });

  it("takes --since like verify: the period of that length ending now", async () => {
    const dir = mkdtempSync(join(tmpdir(), "report-"));
    const db = join(dir, "audit.db");
    const out = join(dir, "report.json");
    const store = openSqliteStore(db);
    migrateStore(store);
    const now = Date.now();
    insertJob(store, { jobId: "recent", createdAt: now - 3_600_000, chargedUnits: 10n });
    insertJob(store, { jobId: "old", createdAt: now - 48 * 3_600_000, chargedUnits: 20n });
    store.close();
    await cli("report", "reconciliation", "--since", "24h", "--out", out, "--db", db);
    const report = JSON.parse(readFileSync(out, "utf8")) as {
      from: string;
      to: string;
      totals: { jobs: number; chargedUnits: string };
    };
    expect(report.totals).toMatchObject({ jobs: 1, chargedUnits: "10" });
    expect(Date.parse(report.to) - Date.parse(report.from)).toBe(24 * 3_600_000);
  });

  it("reads --from/--to dates and groups days in --time-zone, and refuses a zone it does not know", async () => {
    const dir = mkdtempSync(join(tmpdir(), "report-"));
    const db = join(dir, "audit.db");
    const out = join(dir, "report.json");
    const store = openSqliteStore(db);
    migrateStore(store);
    // 00:10 and 23:50 of November 1st in Kathmandu (+05:45): October 31st and November 1st in UTC.
    insertJob(store, {
      jobId: "early",
      createdAt: Date.UTC(2026, 9, 31, 18, 25),
      chargedUnits: 1n,
    });
    insertJob(store, { jobId: "late", createdAt: Date.UTC(2026, 10, 1, 18, 5), chargedUnits: 2n });
    insertJob(store, { jobId: "next", createdAt: Date.UTC(2026, 10, 1, 18, 15), chargedUnits: 4n });
    store.close();
    const period = ["--from", "2026-11-01", "--to", "2026-11-02", "--db", db];
    await cli("report", "reconciliation", ...period, "--time-zone", "Asia/Kathmandu", "--out", out);
    const report = JSON.parse(readFileSync(out, "utf8")) as {
      from: string;
      timeZone: string;
      groups: { group: string; chargedUnits: string }[];
    };
    expect(report).toMatchObject({ from: "2026-10-31T18:15:00.000Z", timeZone: "Asia/Kathmandu" });
    expect(report.groups.map((g) => [g.group, g.chargedUnits])).toEqual([["2026-11-01", "3"]]);
    await expect(
      cli("report", "reconciliation", ...period, "--time-zone", "Asia/Katmandoo"),
    ).rejects.toMatchObject({ details: { field: "time-zone" } });
  });

  it("refuses more days of --time-zone than it groups, naming the flags that gave the period", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "report-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    store.close();
    const refusal = (zone: string, ...period: string[]) =>
      cli(
        "report",
        "reconciliation",
        ...period,
        "--time-zone",
        zone,
        "--db",
        db,
        "--out",
        `${db}.json`,
      ).then(
        () => null,
        (error: Error & { details: { field: string } }) => ({
          field: error.details.field,
          message: error.message,
        }),
      );
    const since = await refusal("Europe/London", "--since", "800d");
    expect(since).toMatchObject({ field: "since" });
    expect(since?.message).toMatch(/^--since: .*--time-zone Europe\/London .*367 days/);
    const fromTo = await refusal("Europe/London", "--from", "2024-01-01", "--to", "2026-01-01");
    expect(fromTo).toMatchObject({ field: "from" });
    expect(fromTo?.message).toMatch(/^--from\/--to: /);
    // A zone that is UTC at every instant groups by the rollups' UTC days, with no such bound.
    expect(await refusal("Etc/UTC", "--since", "800d")).toBeNull();
    expect(JSON.parse(readFileSync(`${db}.json`, "utf8"))).toMatchObject({ timeZone: "UTC" });
  });

  it("refuses a period given twice or not at all, naming the flag", async () => {
    await expect(cli("report", "reconciliation", "--db", ":memory:")).rejects.toMatchObject({
      details: { field: "from" },
    });
    await expect(
      cli("report", "reconciliation", "--since", "24h", "--from", "2026-11-01", "--db", ":memory:"),
    ).rejects.toMatchObject({ details: { field: "since" } });
  });
});

describe("decentral-audit report reconciliation --recompute", () => {
  /** A store whose model rollup of one day is off by one base unit of charge. */
  function tamperedStore(): string {
    const db = join(mkdtempSync(join(tmpdir(), "recompute-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    insertJob(store, { jobId: "job_1", createdAt: Date.UTC(2026, 10, 5), chargedUnits: 80_000n });
    foldRollupDeltas(store);
    store.sqlite
      .prepare("UPDATE job_rollups SET charged_units_lo = charged_units_lo + 1 WHERE grain = 1")
      .run();
    store.close();
    return db;
  }

  // `--format json` and `--group-by` were ignored: a script asking for JSON got text it could
  // not parse, and `--group-by bogus` or `--format xml` passed without a word.
  it("writes the differences as --format json or csv, exit 1", async () => {
    const db = tamperedStore();
    const dir = mkdtempSync(join(tmpdir(), "recompute-out-"));
    const json = join(dir, "check.json");
    await cli(
      "report",
      "reconciliation",
      "--recompute",
      "--format",
      "json",
      "--out",
      json,
      "--db",
      db,
    );
    expect(process.exitCode).toBe(1);
    const check = JSON.parse(readFileSync(json, "utf8")) as Record<string, unknown>;
    expect(check).toMatchObject({ firstDay: "2026-11-05", differenceCount: 1 });
    expect(check.differences).toEqual([
      {
        grain: "model",
        day: "2026-11-05",
        model: "qwen3-8b",
        worker: null,
        keyFingerprint: null,
        column: "charged_units",
        rollup: "80001",
        recomputed: "80000",
        offBy: "1",
      },
    ]);
    const csv = join(dir, "check.csv");
    await cli(
      "report",
      "reconciliation",
      "--recompute",
      "--format",
      "csv",
      "--out",
      csv,
      "--db",
      db,
    );
    expect(readFileSync(csv, "utf8").split("\r\n")).toEqual([
      "grain,day,model,worker,keyFingerprint,column,rollup,recomputed,offBy",
      "model,2026-11-05,qwen3-8b,,,charged_units,80001,80000,1",
      "",
    ]);
    const text = join(dir, "check.txt");
    await cli("report", "reconciliation", "--recompute", "--out", text, "--db", db);
    expect(readFileSync(text, "utf8")).toMatch(/^rollups compared with jobs from scratch: 1 days/);
    process.exitCode = undefined;
  });

  it("refuses a --group-by it cannot honour and a --format it does not know", async () => {
    const db = tamperedStore();
    await expect(
      cli("report", "reconciliation", "--recompute", "--group-by", "model", "--db", db),
    ).rejects.toMatchObject({ details: { field: "group-by" } });
    await expect(
      cli("report", "reconciliation", "--recompute", "--format", "xml", "--db", db),
    ).rejects.toMatchObject({ details: { field: "format" } });
  });

  // Without a period every day is compared, by UTC grain: the zone changed nothing, and was
  // taken without a word as if the check had been made in its days.
  it("refuses a --time-zone without dates to read (no period, --since), the only thing it changes", async () => {
    const db = tamperedStore();
    for (const period of [[], ["--since", "7d"]]) {
      await expect(
        cli(
          "report",
          "reconciliation",
          "--recompute",
          "--time-zone",
          "Europe/Paris",
          ...period,
          "--db",
          db,
        ),
      ).rejects.toMatchObject({
        message:
          "--time-zone: with --recompute it reads only the dates of --from/--to or --window (every grouping is compared by UTC day); leave --time-zone out",
        details: { field: "time-zone" },
      });
    }
    await cli(
      "report",
      "reconciliation",
      "--recompute",
      "--time-zone",
      "Europe/Paris",
      "--window",
      "yesterday",
      "--db",
      db,
    );
    expect(process.exitCode).toBe(0);
    process.exitCode = undefined;
  });
});

// A model name stored before names were checked (or a worker from the jobs API) holding an
// escape sequence or a line break drove the terminal that printed the check and forged lines.
describe("decentral-audit report reconciliation --recompute as text", () => {
  it("prints names with control characters escaped, one line per difference", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "recompute-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    const model = "qwen\u001b[2J\r\n  grain model 2026-11-05: no difference\u2028";
    insertJob(store, { jobId: "job_1", model, createdAt: Date.UTC(2026, 10, 5), chargedUnits: 5n });
    foldRollupDeltas(store);
    store.sqlite
      .prepare("UPDATE job_rollups SET charged_units_lo = charged_units_lo + 1 WHERE grain = 1")
      .run();
    store.close();
    const out = join(mkdtempSync(join(tmpdir(), "recompute-out-")), "check.txt");
    await cli("report", "reconciliation", "--recompute", "--out", out, "--db", db);
    process.exitCode = undefined;
    const text = readFileSync(out, "utf8");
    // No control character but the line ends the report writes itself.
    expect(hasUnprintable(text.replaceAll("\n", ""))).toBe(false);
    const lines = text.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(
      "model qwen\\u001b[2J\\u000d\\u000a  grain model 2026-11-05: no difference\\u2028 worker",
    );
  });
});
