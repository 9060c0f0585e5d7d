import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { wireReceipt } from "./support/recorder-fixtures.js";
import { startCli, until } from "./support/service-process.js";

/**
 * `import` of a large export killed with SIGKILL halfway (an OOM kill, a host reboot) and run
 * again, as a cron retrying the night's file does: every receipt of the file is in the store
 * once, the second run's summary accounts for every line, and the report's totals are the
 * file's.
 */

// 50,000 lines took 70 s an import on a loaded 2-core host; five batches of 1,000 show the same.
const lines = 5_000;

describe("import killed with SIGKILL halfway and run again", () => {
  it(`keeps each of ${lines} receipts once and the report's totals are the file's`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "import-kill-"));
    const db = join(dir, "audit.db");
    const setup = openSqliteStore(db);
    migrateStore(setup);
    setup.close();

    // One day's receipts, each with its own token counts, dated across the day.
    const day = Date.parse("2026-11-25T00:00:00Z");
    let promptSum = 0;
    let completionSum = 0;
    const text: string[] = [];
    for (let i = 0; i < lines; i++) {
      const prompt = 10 + (i % 97);
      const completion = 20 + (i % 113);
      promptSum += prompt;
      completionSum += completion;
      text.push(
        JSON.stringify(
          wireReceipt({
            job_id: `job_drill${i}`,
            created_at: new Date(day + Math.floor((i * 86_000_000) / lines)).toISOString(),
            usage: {
              prompt_tokens: prompt,
              completion_tokens: completion,
              total_tokens: prompt + completion,
            },
          }),
        ),
      );
    }
    const file = join(dir, "receipts.jsonl");
    writeFileSync(file, `${text.join("\n")}\n`);

    const reader = openSqliteStore(db);
    const count = () =>
      Number(reader.db.get<{ n: number }>(sql`select count(*) as n from jobs`)?.n ?? 0);
    try {
      const first = startCli(["import", file, "--db", db]);
      // Killed once a good part of the file is in, well before its end.
      await until(() => count() >= lines / 4, 60_000, 20);
      first.child.kill("SIGKILL");
      await first.exited;
      const before = count();
      expect(before).toBeGreaterThan(0);
      expect(before).toBeLessThan(lines);

      const again = startCli(["import", file, "--db", db]);
      expect(await again.exited).toBe(0);
      const summary = again.logs
        .map((l) => String(l.text ?? ""))
        .find((l) => l.startsWith("imported"));
      expect(summary).toBe(
        `imported ${file}: ${lines} receipts, ${lines - before} created, ${before} duplicate, 0 updated, 0 conflicting, 0 rejected`,
      );

      const stored = reader.db.get<{ n: number; ids: number; prompt: number; completion: number }>(
        sql`select count(*) as n, count(distinct job_id) as ids,
                   sum(prompt_tokens) as prompt, sum(completion_tokens) as completion from jobs`,
      );
      expect(stored).toEqual({
        n: lines,
        ids: lines,
        prompt: promptSum,
        completion: completionSum,
      });
    } finally {
      reader.close();
    }

    // The report reads the rollups the import wrote: their totals are the file's, and a recompute
    // from the jobs finds no difference.
    const report = startCli([
      "report",
      "reconciliation",
      "--from",
      "2026-11-25",
      "--to",
      "2026-11-26",
      "--format",
      "json",
      "--db",
      db,
    ]);
    expect(await report.exited).toBe(0);
    const reconciliation = JSON.parse(
      report.logs.map((l) => String(l.text ?? JSON.stringify(l))).join("\n"),
    ) as {
      totals: { jobs: number };
      groups: { group: string; jobs: number }[];
    };
    expect(reconciliation.groups.map((g) => [g.group, g.jobs])).toEqual([["2026-11-25", lines]]);
    expect(reconciliation.totals.jobs).toBe(lines);
    const recompute = startCli(["report", "reconciliation", "--recompute", "--db", db]);
    expect(await recompute.exited).toBe(0);
    expect(recompute.logs.map((l) => l.text).join("\n")).toContain("no difference");
  }, 240_000);
});
