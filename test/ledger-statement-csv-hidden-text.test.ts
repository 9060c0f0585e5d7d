import { describe, expect, it } from "vitest";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement, statementToCsv } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { chainSecondAfter } from "./support/finality.js";
import { useAdversaryHarness } from "./support/operator.js";

/**
 * A memo is the operator's text, and the Memo program takes any UTF-8: a debit whose memo
 * names an honest job's id and a zero-width space read, in a spreadsheet, as that job's.
 */
const log = createLogger({ level: "silent" });

describe("the statement CSV", () => {
  const h = useAdversaryHarness();

  it("writes a memo's invisible characters as their escapes, as the dashboard shows them", async () => {
    const c = await h.scenario();
    const from = await chainSecondAfter(h.world);
    // An honest job, recorded: its lock pins its key's vault.
    const plan = await c.pinKey(1);
    const honest = plan;
    const stranger = h.op.attackerAccount(0n);
    const lookAlike = `${honest.jobId}\u200b`;
    const theft = h.op.send([
      h.op.transfer(plan.vault, stranger, 7n),
      h.op.memo(`decentral:escrow:${lookAlike}`),
      h.op.memo("refill\u3000later"),
    ]).signature;
    await h.finalized();
    const reader = createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      custody: { vaults: [plan.vault], byKey: {} },
    });
    expect((await reader.syncVault(plan.vault)).pending).toBe(0);
    const statement = await buildStatement(
      c.store,
      { from, to: Date.now() + 1_000, vault: plan.vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    expect(statement.vaults[0]?.unexplained).toEqual([
      expect.objectContaining({ signature: theft, amountUnits: -7n, memoJobId: lookAlike }),
    ]);
    const row = statementToCsv(statement)
      .split("\r\n")
      .find((line) => line.includes(theft));
    // The transaction's two memos one a line, as the JSON joins them; each escaped.
    expect(row).toContain(
      `,${honest.jobId}\\u200b,"decentral:escrow:${honest.jobId}\\u200b\nrefill\\u3000later",`,
    );
    expect(row).not.toContain("\u200b");
    expect(row).not.toContain("\u3000");
  });
});
