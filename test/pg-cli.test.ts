import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildProgram } from "../src/cli.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { wireReceipt } from "./support/recorder-fixtures.js";

/**
 * The commands a deployment runs beside `serve`, on PostgreSQL: `db migrate`, `tokens`,
 * `import` and `report`, in-process through the CLI's own parser, against a fresh database.
 */

const database = usePostgresDatabase();

afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

/** Runs the CLI in-process; what it printed on stdout, line by line. */
async function cli(...args: string[]) {
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((line: unknown) => lines.push(String(line)));
  vi.spyOn(console, "error").mockImplementation(() => {});
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: unknown) => {
    lines.push(String(chunk));
    return true;
  });
  await buildProgram().parseAsync(["node", "decentral-audit", ...args, "--db", database.url]);
  write.mockRestore();
  vi.restoreAllMocks();
  return lines;
}

describe("the CLI on PostgreSQL", () => {
  it("migrates, creates and lists tokens, imports receipts and reports exactly what it imported", async () => {
    expect((await cli("db", "migrate")).join("\n")).toMatch(
      /migrated .*\(\d+ migrations applied\)/,
    );
    // A second migrate finds nothing to do.
    expect((await cli("db", "migrate")).join("\n")).toMatch(/\(0 migrations applied\)/);

    const [token] = await cli("tokens", "create", "--role", "read", "--name", "finance");
    expect(token).toMatch(/^da_/);
    const listed = JSON.parse((await cli("tokens", "list", "--json")).join("\n")) as {
      name: string;
    }[];
    expect(listed.map((t) => t.name)).toEqual(["finance"]);

    const dir = mkdtempSync(join(tmpdir(), "pg-cli-"));
    const file = join(dir, "receipts.jsonl");
    const created = Date.UTC(2026, 10, 5, 12);
    const receipts = Array.from({ length: 25 }, (_, i) =>
      wireReceipt({ model: i % 2 ? "qwen3-8b" : "phi-4-mini", created_at: (created + i) / 1000 }),
    );
    writeFileSync(file, `${receipts.map((r) => JSON.stringify(r)).join("\n")}\n`);
    await cli("import", file);
    expect(process.exitCode ?? 0).toBe(0);
    // Imported again: every receipt is a duplicate, nothing is counted twice.
    await cli("import", file);
    expect(process.exitCode ?? 0).toBe(0);

    const out = join(dir, "report.json");
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
      "json",
      "--out",
      out,
    );
    const report = JSON.parse(readFileSync(out, "utf8")) as { totals: { jobs: number } };
    expect(report.totals.jobs).toBe(25);
  }, 60_000);

  it("says a database that does not exist by its URL and how to create it", async () => {
    const url = new URL(database.url);
    url.pathname = "/audit_typo_db";
    const run = (...args: string[]) =>
      buildProgram().parseAsync(["node", "decentral-audit", ...args, "--db", url.href]);
    for (const args of [
      ["db", "migrate"],
      ["tokens", "list"],
    ]) {
      const failure = (await run(...args).then(
        () => undefined,
        (error: unknown) => error,
      )) as Error;
      expect(failure.message, args.join(" ")).toContain('database "audit_typo_db" does not exist');
      expect(failure.message).toContain("/audit_typo_db");
      expect(failure.message).toContain("CREATE DATABASE");
      if (url.password !== "") expect(failure.message).not.toContain(`:${url.password}@`);
    }
  }, 30_000);
});
