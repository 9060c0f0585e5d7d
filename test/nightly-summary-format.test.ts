import { describe, expect, it } from "vitest";
import { verdicts } from "../src/db/schema.js";
import type { NightlySummary } from "../src/nightly/nightly-run.js";
import { summaryToJson, summaryToMarkdown, summaryToText } from "../src/nightly/summary-format.js";
import { cleanLedger } from "./support/ledger-result.js";

const vault = "F11Zd87fGZBi1tD6uYQyPQ2JCmaG3e7RcDmrm3eJucpB";

/** A run whose ledger found debits under memos the operator wrote to forge the summary. */
function summaryWithMemos(memoJobIds: string[]): NightlySummary {
  const byVerdict = Object.fromEntries(verdicts.map((v) => [v, 0])) as NightlySummary["byVerdict"];
  byVerdict.verified = 1;
  return {
    from: Date.UTC(2026, 10, 28),
    to: Date.UTC(2026, 10, 29),
    startedAt: 0,
    finishedAt: 100,
    outcome: "ledger_findings",
    exitCode: 1,
    reason: null,
    total: 1,
    minJobs: 0,
    byVerdict,
    findings: [],
    moreFindings: 0,
    unproven: {},
    profile: null,
    runId: null,
    ledger: {
      ...cleanLedger,
      unreceiptedDebits: memoJobIds.map((memoJobId, i) => ({
        vault,
        signature: `sig${i}`,
        amountUnits: `-${1000 + i}`,
        memo: `decentral:escrow:${memoJobId}`,
        memoJobId,
        at: null,
        beforeWindow: false,
      })),
    },
  } as NightlySummary;
}

const forgedAllClear =
  "job_y\u001b[2J\u001b[H\u001b[32mdecentral-audit verify: all 3 jobs verified\u001b[0m\n" +
  "- forged: vault reconciled, nothing to see";

describe("nightly summary", () => {
  it("never calls an empty window or partly verified jobs all verified beside ledger findings", () => {
    const empty = summaryWithMemos(["job_a"]);
    empty.total = 0;
    empty.byVerdict.verified = 0;
    expect(summaryToText(empty).split("\n")[0]).toContain(
      "0 jobs recorded in this window, but the credit vaults' ledger has 1 findings",
    );
    const partly = summaryWithMemos(["job_a"]);
    partly.total = 5;
    partly.byVerdict.verified = 2;
    partly.byVerdict.partially_verified = 3;
    const line = summaryToText(partly).split("\n")[0]!;
    expect(line).toContain("2 of 5 jobs verified, 3 partially verified");
    expect(line).not.toContain("all 5 jobs verified");
  });

  it("names the ledger's findings beside jobs NOT verified in the headline", () => {
    const s = summaryWithMemos(["job_a", "job_b"]);
    s.outcome = "discrepancies";
    s.total = 396;
    s.byVerdict.verified = 394;
    s.byVerdict.discrepancy = 2;
    s.ledger = {
      ...s.ledger!,
      creditsHeaderMismatches: [{ jobId: "job_c", vault, headerUnits: "5", beforeWindow: false }],
    };
    const headline =
      "2 of 396 jobs NOT verified, and the credit vaults' ledger has 3 findings (2 unreceipted debits, 1 credits-header mismatches)";
    expect(summaryToText(s).split("\n")[0]).toContain(headline);
    expect(summaryToMarkdown(s).split("\n")[0]).toContain(headline);
    expect(JSON.parse(summaryToJson(s)).headline).toBe(headline);
  });

  it("names a credits header not decided yet apart from the mismatches, as a finding all the same", () => {
    const s = summaryWithMemos([]);
    s.outcome = "discrepancies";
    s.ledger = {
      ...s.ledger!,
      unreceiptedDebits: [],
      creditsHeaderUndecided: [{ jobId: "job_c", vault, headerUnits: "5", beforeWindow: false }],
    };
    const text = summaryToText(s);
    expect(text.split("\n")[0]).toContain(
      "the credit vaults' ledger has 1 findings (1 credits headers not decided yet)",
    );
    expect(text).toContain(
      `job job_c's credits header (5 units) matches no balance of vault ${vault} read so far between its lock and its response: not decided until the vault is read past the response`,
    );
    expect(text).not.toContain("credits-header mismatches");
  });

  it("says what a run that could not finish had found already", () => {
    const s = summaryWithMemos(["job_a"]);
    s.outcome = "incomplete";
    s.exitCode = 2;
    s.reason = "1 jobs are not final";
    s.total = 5;
    s.byVerdict.verified = 3;
    s.byVerdict.discrepancy = 1;
    s.byVerdict.pending = 1;
    expect(summaryToText(s).split("\n")[0]).toContain(
      "could not finish: 1 jobs are not final; found so far: 1 of 5 jobs NOT verified, and the credit vaults' ledger has 1 findings (1 unreceipted debits)",
    );
  });

  it("says a debit dated in judged history was listed only after the run that judged it", () => {
    const late = summaryWithMemos(["job_a"]);
    late.ledger!.unreceiptedDebits[0] = {
      ...late.ledger!.unreceiptedDebits[0]!,
      at: "2026-11-27T10:00:00.000Z",
      beforeWindow: true,
      listedLate: true,
    };
    expect(summaryToText(late)).toContain(
      "(at 2026-11-27T10:00:00.000Z, listed only after the run that judged its time",
    );
  });

  it("prints a memo's escape sequences and line breaks as inert text in the terminal output", () => {
    const text = summaryToText(summaryWithMemos([forgedAllClear, "job_z\u009b2J\u202eevil"]));
    expect(text.replaceAll("\n", "")).not.toMatch(/[\p{Cc}\u202a-\u202e]/u);
    expect(text).not.toContain("\n- forged");
    expect(text).toContain("(memo names job_y\\u001b[2J\\u001b[H");
    expect(text).toContain("job_z\\u009b2J\\u202eevil");
    // One line per finding: the forged second line stays inside the first.
    expect(text.split("\n").filter((l) => l.includes("unreceipted debit of"))).toHaveLength(2);
  });

  it("shows a memo's links, images and HTML in markdown as a code span on one line", () => {
    const md = summaryToMarkdown(
      summaryWithMemos([
        "job_x ![pixel](http://evil.example/pixel.png) [open the job](http://evil.example/phish)",
        '</a><script>alert(3)</script><a href="javascript:alert(4)">x',
        forgedAllClear,
        "a `tick` and ``two``",
      ]),
    );
    expect(md).toContain(
      "(memo names `job_x ![pixel](http://evil.example/pixel.png) [open the job](http://evil.example/phish)`)",
    );
    expect(md).toContain(
      '(memo names `</a><script>alert(3)</script><a href="javascript:alert(4)">x`)',
    );
    // A fence longer than any run of backticks inside, padded when the text ends with one.
    expect(md).toContain("(memo names ``` a `tick` and ``two`` ```)");
    expect(md).not.toContain("\n- forged");
    expect(md).not.toContain("\u001b");
    const debitLines = md.split("\n").filter((l) => l.startsWith("- unreceipted debit"));
    expect(debitLines).toHaveLength(4);
  });

  it("says how much an unreceipted debit took out, without a minus sign", () => {
    const s = summaryWithMemos(["job_abc"]);
    expect(summaryToText(s)).toContain(`unreceipted debit of 1000 units from vault ${vault}`);
    expect(summaryToMarkdown(s)).toContain(`unreceipted debit of 1000 units from vault ${vault}`);
  });
});

describe("an unreleased lock in the nightly summary", () => {
  it("says what of the lock is still out, not only the lock", () => {
    const s = summaryWithMemos([]);
    s.ledger = {
      ...s.ledger!,
      unreleasedLocks: [
        {
          vault,
          jobId: "job_partly",
          signature: "sigLock",
          lockUnits: "160000",
          outstandingUnits: "1",
          lockedAt: "2026-11-28T10:00:00.000Z",
          dueBy: "2026-11-28T10:07:00.000Z",
          beforeWindow: false,
        },
      ],
    };
    expect(summaryToText(s)).toContain("unreleased lock of 160000 units (1 still out) by job");
  });

  it("leaves the clean ledger clean for the files that read it after this one", () => {
    // Files of the shared-imports project share it: a lock pushed here was in every later
    // nightly's ledger of the worker.
    expect(() => (cleanLedger.unreleasedLocks as unknown[]).push({ jobId: "job_x" })).toThrow(
      TypeError,
    );
    expect(cleanLedger.unreleasedLocks).toEqual([]);
  });
});
