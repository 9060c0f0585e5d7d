import { describe, expect, it } from "vitest";
import { factsFromJson, factsToJson } from "../src/chain/facts-json.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { useAdversaryHarness } from "./support/operator.js";

/**
 * The Memo program takes any UTF-8, NUL included, and PostgreSQL text cannot hold NUL. A memo
 * ending in NUL on a settlement left its job in `error` for good (the verdict's write failed
 * each round), and one unit sent into a customer's vault under such a memo, which anyone can
 * send, failed that vault's every ledger round: its statement stayed unread and the nightly
 * run could not finish. Read as U+FFFD, the memo names no job, as it names none on SQLite.
 */
const log = createLogger({ level: "silent" });

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("decides a settlement whose memo ends in NUL: it names no job, settlement.memo fails", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan),
      h.op.memo(`decentral:settle:${plan.jobId}\u0000`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["settlement.memo"] },
    ]);
  });

  it("reads a unit sent into a credit vault under a memo holding NUL as a deposit", async () => {
    const c = await h.scenario();
    const plan = await c.pinKey(2);
    // The next whole second: block times are whole seconds.
    const from = await chainSecondAfter(h.world);
    const stranger = h.op.attackerAccount(10n);
    const gift = h.op.send([
      h.op.transfer(stranger, plan.vault, 1n, { authority: h.op.attacker.address }),
      h.op.memo("top-up\u0000"),
    ]).signature;
    // Money out after it must still be read and found.
    const theft = h.op.send([h.op.transfer(plan.vault, stranger, 5n)]).signature;
    await h.finalized();
    const reader = createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      custody: { vaults: [plan.vault], byKey: {} },
    });
    const sync = await reader.syncVault(plan.vault);
    expect(sync.pending).toBe(0);
    const statement = await buildStatement(
      c.store,
      { from, to: Date.now() + 1_000, vault: plan.vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const s = statement.vaults[0]!;
    expect(s.unread).toBeNull();
    expect(s.depositsUnits).toBe(1n);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: theft, amountUnits: -5n }),
    ]);
    expect(s.differenceUnits).toBe(0n);
    expect(gift).toBeTruthy();
  });
});

describe("stored facts", () => {
  it("read a memo stored with NUL as the chain's memo is read now", () => {
    const facts = factsFromJson({
      ...factsToJson({
        signature: "s",
        slot: 1,
        blockTime: null,
        succeeded: true,
        err: null,
        fee: 5000n,
        feePayer: "p",
        version: "legacy",
        accounts: ["p"],
        tokenChanges: [],
        solChanges: [],
        memos: [],
        programs: [],
        tokenInstructions: [],
        innerInstructionsKnown: true,
      }),
      memos: ["decentral:settle:job_a\u0000", "plain"],
    });
    expect(facts.memos).toEqual(["decentral:settle:job_a\ufffd", "plain"]);
  });
});
