import { beforeAll, describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { buildStatement } from "../src/ledger/statement.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { listingWithout, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type JobPlan, type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * The recorder dates a receipt by its own clock; the chain dates a transaction by its block
 * time, whole seconds that may be 1-2 s off the recorder's. A credits header is judged against
 * the vault's balances from the job's lock through its response, placed among the vault's
 * lines by both: an honest header must pass whichever clock is ahead, and a header that no
 * balance of the vault held at the response must still fail.
 */
describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** One scenario for the block, its key's vault known: each case judges a period of its own. */
  let shared: { c: Scenario; vault: string };
  beforeAll(async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    shared = { c, vault };
  });

  /** The block's scenario, a period starting now, the chain's clock ~60 ms into a whole second. */
  function start() {
    return { ...shared, from: periodEdge(h) };
  }

  /**
   * An honest job of the block's scenario recorded by a recorder 1 s behind the chain, then a
   * top-up of the vault the second after its settlement's (the chain's clock having moved on),
   * and the balance after the top-up: one the vault held only after the response.
   */
  function settledThenToppedUp() {
    const started = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    const recordedAt = h.op.now() - 1_000;
    h.op.advanceClock(1_000);
    h.op.nextSlot();
    const topUp = h.op.fund(started.vault, 50_000n);
    return { ...started, plan, txs, recordedAt, topUp, header: h.op.balance(started.vault) };
  }

  /**
   * Reads the vault once the chain has finalized past every time the job spans (the clocks'
   * slack after the response's second, by the recorder's clock up to 2 s ahead), then verifies:
   * the job's `credits.header` and the vault statement's header findings.
   */
  async function judge(c: Scenario, vault: string, from: number, plan: JobPlan) {
    h.op.advanceClock(5_000);
    await h.finalized();
    await vaultReader(h, c, vault).syncVault(vault);
    await c.verify();
    const statement = await buildStatement(
      c.store,
      { from, to: h.op.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    return {
      jobId: plan.jobId,
      check: await c.check(plan.jobId, "credits.header"),
      mismatches: statement.vaults[0]!.creditsHeaderMismatches.map((m) => m.jobId),
    };
  }

  // 100 ms: the settlement dated the second after the response's (the chain's clock ahead) or
  // the same second (behind); 2 s: the slack's last second (ahead) or two seconds before
  // (behind). A second apart places the settlement as 100 ms does on each side.
  describe.each([100, 2_000])("clocks %i ms apart", (apartMs) => {
    /**
     * An honest job recorded right after its settlement by a recorder whose clock is `apartMs`
     * behind (-1: the chain's runs ahead, the settlement's block dated after the response's
     * second) or ahead (1) of the chain's, its header `offBy` units off the balance it left.
     */
    async function recorded(direction: number, offBy = 0n) {
      const { c, vault, from } = start();
      const plan = h.op.plan({ keyIndex: 0 });
      const txs = h.op.honestJob(plan);
      const header = h.op.balance(vault) + offBy;
      const at = h.op.now() + direction * apartMs;
      c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", at);
      return judge(c, vault, from, plan);
    }

    it.each([
      ["ahead of", -1],
      ["behind", 1],
    ])(
      "passes an honest header when the chain's clock runs %s the recorder's",
      async (_, direction) => {
        const judged = await recorded(direction);
        expect(judged.check?.outcome).toBe("pass");
        expect(judged.mismatches).toEqual([]);
      },
    );

    it.each([
      ["ahead of", -1],
      ["behind", 1],
    ])(
      "fails a header one base unit above the balance the job's settlement left, the chain's clock %s the recorder's",
      async (_, direction) => {
        const judged = await recorded(direction, 1n);
        expect(judged.check?.outcome).toBe("fail");
        expect(judged.mismatches).toEqual([judged.jobId]);
      },
    );
  });

  it("passes an honest header that waited for the ledger's read, the chain's clock 2 s ahead", async () => {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs, {}, "ingest", h.op.now() - 2_000);
    // Verified before the ledger has read the vault: the check waits for it (a skip naming
    // the vault), and the ledger's review decides it.
    await c.verify();
    expect((await c.check(plan.jobId, "credits.header"))?.outcome).toBe("skip");
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("pass");
    expect(await c.outcome(plan.jobId)).toEqual({ verdict: "verified", failing: [] });
  });

  it("waits for the settlement its receipt names while a node lists a later line but not it yet, then passes the honest header", async () => {
    // The chain 1.5 s ahead: the job's lock, another lock of the vault dated after the
    // response's second, then the job's settlement; the header is the balance after all three.
    // A node that does not list the settlement yet lists the other lock, past the response's
    // second: the span is not read in full until the settlement is listed, and calling it read
    // failed the honest header for good (the job a discrepancy, the vault a mismatch).
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.nextSlot();
    h.op.send(h.op.lockIxs(h.op.plan({ keyIndex: 0 })));
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const header = h.op.balance(vault);
    const recordedAt = h.op.now() - 1_500;
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    await h.finalized();
    await vaultReader(h, c, vault, listingWithout(h, settlementTx)).syncVault(vault);
    await c.verify();
    expect((await c.check(plan.jobId, "credits.header"))?.outcome).toBe("skip");
    // The other lock, dated past the response's second, may have come after it: slot order
    // before the settlement does not say (a settlement held back leaves the same chain).
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("skip");
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "partially_verified", failing: [] }]);
    expect(judged.mismatches).toEqual([]);
  });

  it("passes an honest header whose settlement was sent again after a first try failed on chain, the chain's clock ahead", async () => {
    // The chain 1 s ahead: the operator's first settlement of the job fails on chain (it moves
    // nothing, its memo is the job's settle memo all the same) and the second lands, dated the
    // second after the response's. The header is the balance the landed settlement left.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now() - 1_000;
    h.op.nextSlot();
    const tooMuch = h.op.transfer(h.op.accounts.escrowVault, vault, 2n ** 62n);
    h.op.send([...h.op.settleIxs(plan), tooMuch], { expectFailure: true });
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("pass");
    expect(judged.mismatches).toEqual([]);
  });

  it("passes the honest header of a timed-out job after its refund, the chain's clock ahead", async () => {
    // The chain 1 s ahead: a job answered 504 (timed out, credits refunded), its receipt naming
    // the refund, dated the second after the response's, and its header the balance after it.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now() - 1_000;
    h.op.nextSlot();
    const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx: refundTx },
      { creditsRemainingUnits: header, httpStatus: 504 },
      "ingest",
      recordedAt,
    );
    const judged = await judge(c, vault, from, plan);
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
    expect(judged.check?.outcome).toBe("pass");
    expect(judged.mismatches).toEqual([]);
  });

  it("leaves unproven, neither verified nor a discrepancy, a header of the balance a top-up made after the job's settlement, within the clocks' slack", async () => {
    // The chain 1 s ahead: the settlement is dated the second after the response's, and a
    // top-up the second after that. The header names the balance after the top-up, which the
    // vault held only after the response; but with the chain's clock 2 s ahead a top-up landing
    // after the settlement and before the response is dated so too, and nothing on chain orders
    // it with the response (test/credits-header-concurrent.dialects.test.ts): not proven.
    const { c, vault, from, plan, txs, recordedAt, header } = settledThenToppedUp();
    c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", recordedAt);
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("skip");
    expect(await c.outcome(plan.jobId)).toEqual({ verdict: "partially_verified", failing: [] });
    expect(judged.mismatches).toEqual([]);
  });

  it("fails a header of the balance after a top-up the receipt names as the job's settlement, within the clocks' slack", async () => {
    // The chain 1 s ahead: the job's own settlement is dated the second after the response's,
    // a top-up the second after that. The receipt names the top-up as its settlement and the
    // header the balance after it: a balance the vault held only after the response.
    const { c, vault, from, plan, txs, recordedAt, topUp, header } = settledThenToppedUp();
    c.record(
      plan,
      { escrowTx: txs.escrowTx, settlementTx: topUp },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("fail");
    expect(judged.mismatches).toEqual([plan.jobId]);
  });

  it.each(["settle", "refund"])(
    "fails a header of the balance after a top-up the receipt passes over to a second settlement of the job under its %s memo, within the clocks' slack",
    async (kind) => {
      // After the job's settlement and a top-up, the operator sends one unit back from escrow
      // under the job's settle (or refund) memo and names that as the settlement: it is not the
      // job's own (the vault's first line with either memo), and the top-up's balance stays out.
      const { c, vault, from, plan, txs, recordedAt, header } = settledThenToppedUp();
      h.op.nextSlot();
      const second = h.op.send([
        h.op.transfer(h.op.accounts.escrowVault, vault, 1n),
        h.op.memo(`decentral:${kind}:${plan.jobId}`),
      ]).signature;
      c.record(
        plan,
        { escrowTx: txs.escrowTx, settlementTx: second },
        { creditsRemainingUnits: header },
        "ingest",
        recordedAt,
      );
      const judged = await judge(c, vault, from, plan);
      expect(judged.check?.outcome).toBe("fail");
      expect(judged.mismatches).toEqual([plan.jobId]);
    },
  );

  it("waits while the line its receipt names as the settlement is not read, a read top-up before it: then fails the header of that top-up's balance", async () => {
    // The chain 1 s ahead: the job's settlement, a top-up, then another movement of the vault,
    // all in the slack's seconds. The receipt names the last as its settlement, the header the
    // balance after the top-up; the node serves the last one's transaction only later.
    const { c, vault, from, plan, txs, recordedAt, header } = settledThenToppedUp();
    h.op.nextSlot();
    const named = h.op.fund(vault, 20_000n);
    c.record(
      plan,
      { escrowTx: txs.escrowTx, settlementTx: named },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    const withheld = new Proxy(h.rpc, {
      get(target, key, receiver) {
        if (key !== "getTransaction") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getTransaction"]>) =>
          args[0] === named ? null : target.getTransaction(...args);
      },
    });
    h.op.advanceClock(3_000);
    await h.finalized();
    await vaultReader(h, c, vault, withheld).syncVault(vault);
    await c.verify();
    expect((await c.check(plan.jobId, "credits.header"))?.outcome).toBe("skip");
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("fail");
    expect(judged.mismatches).toEqual([plan.jobId]);
  });

  it.each([
    ["minted alone after the settlement", 0n, true],
    ["beside a base unit from escrow after the settlement", 1n, true],
    ["inside the job's one settlement, beside its payouts", 0n, false],
  ])(
    "fails a header of the balance after a top-up under the job's settle memo, %s, that the receipt names as its settlement",
    async (_, fromEscrow, settledFirst) => {
      // The chain 1 s ahead, as above; the operator mints credits into the vault under the job's
      // settle memo (perhaps with a unit from escrow, perhaps as the job's only settlement):
      // money in that escrow did not pay is a deposit whatever its memo, a settlement of the job
      // brings none, and the line places nothing.
      const { c, vault, from } = start();
      const plan = h.op.plan({ keyIndex: 0 });
      const escrowTx = settledFirst
        ? h.op.honestJob(plan).escrowTx
        : h.op.send(h.op.lockIxs(plan)).signature;
      const recordedAt = h.op.now() - 1_000;
      h.op.advanceClock(1_000);
      h.op.nextSlot();
      const topUp = h.op.send([
        ...(fromEscrow > 0n ? [h.op.transfer(h.op.accounts.escrowVault, vault, fromEscrow)] : []),
        ...(settledFirst ? [] : h.op.payoutIxs(plan)),
        h.op.mintTo(h.op.accounts.mint, vault, 50_000n),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      const header = h.op.balance(vault);
      c.record(
        plan,
        { escrowTx, settlementTx: topUp },
        { creditsRemainingUnits: header },
        "ingest",
        recordedAt,
      );
      const judged = await judge(c, vault, from, plan);
      expect(judged.check?.outcome).toBe("fail");
      expect(judged.mismatches).toEqual([plan.jobId]);
    },
  );

  it("fails a header of the balance after a settlement that landed well after the response, a top-up between", async () => {
    // The receipt names a settlement the operator sent 3 s after the response, past any clock
    // slack; a top-up came first. The header names the balance after both.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now();
    h.op.advanceClock(3_000);
    h.op.nextSlot();
    h.op.fund(vault, 50_000n);
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("fail");
    expect(judged.mismatches).toEqual([plan.jobId]);
  });
});
