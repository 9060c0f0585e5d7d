import { describe, expect, it } from "vitest";
import { createLedgerReader } from "../src/ledger/reader.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { isoOf } from "../src/reports/period.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { edgeAfter, moveClockTo } from "./support/chain-clock.js";
import { finalizedPast } from "./support/finality.js";
import { type AdversaryHarness, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

const log = createLogger({ level: "silent" });

/**
 * A run of `verify --from from --to to` (or a scheduled fire) with the vault configured, on the
 * chain's clock (the reader's own when `ledgerSide.now` gives one): a test moves the clock on to
 * the window's end instead of waiting for it.
 */
function nightly(
  h: AdversaryHarness,
  c: Scenario,
  vault: string,
  window: { from: number; to: number; timeoutMs: number },
  ledgerSide: { rpc?: typeof h.rpc; now?: () => number } = {},
) {
  const custody = { vaults: [vault], byKey: {} };
  const now = () => h.op.now();
  return runNightlyVerification(
    c.store,
    createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      custody,
      now,
      options: quickVerifierOptions,
    }),
    {
      ...window,
      now,
      preflight: () => h.rpc.getSlot("finalized"),
      ledger: ledgerWindowCheck({
        store: c.store,
        reader: createLedgerReader({
          store: c.store,
          rpc: ledgerSide.rpc ?? h.rpc,
          profile: c.profile,
          log,
          custody,
          now: ledgerSide.now ?? now,
        }),
        profile: c.profile,
        graceSeconds: 0,
        now,
      }),
    },
  );
}

describe("a nightly run at its window's end, before the chain has finalized the window's last seconds", () => {
  // Mainnet's finality (~13 s) in miniature: 100 ms slots, finalized 25 slots (2.5 s) later.
  const h = useAdversaryHarness({ chain: { slotMs: 100, finalitySlots: 25 } });

  it("waits for finality and finds a theft of the window's last seconds; a run without the time to wait exits 2 saying why", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = edgeAfter(h, 500);
    // The key's first job (as `pinKey`), its 2.5 s of finality passed by the clock, not waited.
    const honest = h.op.plan({ keyIndex: 1 });
    c.record(honest, h.op.honestJob(honest));
    moveClockTo(h, h.op.now(), h.world.chain.finalitySlots * h.world.chain.slotMs);
    await c.verify();
    const vault = honest.vault;

    // 250,000 out of the vault to the operator's own account, 1.5 s before the window ends.
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 250_000n)]);
    const to = Math.ceil(theft.blockTime + 1.5) * 1000;
    // The run starts at the window's end, as a cron at the boundary or `--to` now does: the
    // chain then has 2.5 s of slots to finalize, waited for in real time.
    moveClockTo(h, to, 50);

    const hurried = await nightly(h, c, vault, { from, to, timeoutMs: 1_000 });
    expect(hurried).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(hurried.reason).toMatch(
      new RegExp(
        `^timed out after 1 s \\(waiting for finality: the chain had not finalized past ${isoOf(to + 2_000).replace(/\./g, "\\.")}, the window's end \\(${isoOf(to).replace(/\./g, "\\.")}\\) and the 2 s its last credits headers span, when the credit vaults were last read: listed ${vault} through `,
      ),
    );

    const run = await nightly(h, c, vault, { from, to, timeoutMs: 20_000 });
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1, reason: null });
    expect(run.byVerdict.verified).toBe(1);
    expect(run.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft.signature, amountUnits: "-250000" }),
    ]);
    expect(run.ledger?.incomplete).toBeNull();
  });
});

describe("a vault listed past the window's end with a transaction it cannot read", () => {
  const h = useAdversaryHarness();

  it("exits 2 naming the unread transactions, not a read-through time short of the window", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = edgeAfter(h, 200);
    const honest = await c.pinKey(1);
    const vault = honest.vault;
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 70_000n)]);
    const to = Math.ceil(theft.blockTime + 1) * 1000;
    moveClockTo(h, to, 50);
    await finalizedPast(h.world, to);
    // The node lists the theft but will not serve it (a pruned or unreadable transaction).
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getTransaction = (signature, ...rest) =>
      signature === theft.signature
        ? Promise.reject(new Error("transaction unavailable"))
        : h.rpc.getTransaction(signature, ...rest);
    const run = await nightly(h, c, vault, { from, to, timeoutMs: 2_000 }, { rpc });
    expect(run).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(run.reason).toContain(`${vault}, listed through `);
    expect(run.reason).toContain(
      "with transactions listed but not read (1 of any time), last error: transaction unavailable",
    );
  });
});

describe("what the ledger takes as finalized when the chain gives no time for it", () => {
  const h = useAdversaryHarness();

  it("ends at once, exit 2, a run whose window ends later than now", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const honest = await c.pinKey(1);
    const started = Date.now();
    const future = { from: started - 60_000, to: started + 3_600_000, timeoutMs: 10_000 };
    const run = await nightly(h, c, honest.vault, future);
    expect(run).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(run.reason).toMatch(/later than now/);
    // It used to read the vaults again and again until its timeout.
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  /** The pool, with no getBlockTime at all: "method not found". */
  const withoutBlockTime = (rpc: typeof h.rpc): typeof h.rpc => ({
    ...rpc,
    getBlockTime: async () => {
      throw new Error("getBlockTime: RPC error -32601: Method not found");
    },
  });

  it("takes a slot just below the finalized one when the node has no time for that slot", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const honest = await c.pinKey(1);
    let asked = -1;
    const rpc: typeof h.rpc = {
      ...h.rpc,
      getSlot: async (commitment, options) => {
        asked = await h.rpc.getSlot(commitment, options);
        return asked;
      },
      getBlockTime: async (slot) => {
        if (slot === asked) throw new Error("getBlockTime: RPC error -32004: Block not available");
        return h.rpc.getBlockTime(slot);
      },
    };
    const reader = createLedgerReader({
      store: c.store,
      rpc,
      profile: c.profile,
      log,
      custody: { vaults: [honest.vault], byKey: {} },
    });
    const [read] = await reader.syncAll();
    const figures = await createLedgerStore(c.store).cursorFigures(honest.vault);
    expect(figures?.finalThrough).toBe((await h.rpc.getBlockTime(asked - 1)) * 1000);
    expect(read).toMatchObject({ vault: honest.vault, noBlockTime: null });
  });

  it("lists a vault through an endpoint without getBlockTime, its read-through time staying where a block time proved it", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const honest = await c.pinKey(1);
    const custody = { vaults: [honest.vault], byKey: {} };
    const reader = (rpc: typeof h.rpc) =>
      createLedgerReader({
        store: c.store,
        rpc,
        profile: c.profile,
        log,
        custody,
        // The local clock well past the chain's finalized time, as beside a lagging node.
        now: () => Date.now() + 600_000,
      });
    await reader(h.rpc).syncAll();
    const ledger = createLedgerStore(c.store);
    const proven = (await ledger.cursorFigures(honest.vault))?.finalThrough;
    expect(proven).toBeTypeOf("number");

    h.op.send([h.op.transfer(honest.vault, h.op.attackerAccount(0n), 1_000n)]);
    await h.finalized();
    const [read] = await reader(withoutBlockTime(h.rpc)).syncAll();
    // An endpoint answering "method not found" (or null, Solana's answer for a block with no
    // time) still lists the vault; its listing proves no time, so none is taken from the clock.
    expect(read!.listed).toBe(1);
    expect((await ledger.cursorFigures(honest.vault))?.finalThrough).toBe(proven);
    expect(read!.noBlockTime).toMatch(
      /^no block time for the finalized slot \d+ .*Method not found/,
    );
  });

  it("exits 2 naming the endpoint, not clean, when a node behind at finalized gives no block time", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const honest = await c.pinKey(1);
    const vault = honest.vault;
    const from = Date.now() - 60_000;
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 250_000n)]);
    const to = (theft.blockTime + 1) * 1000;
    moveClockTo(h, to, 200);
    // The node lists only what it had finalized 3 s ago: the theft not yet.
    const lagSlots = Math.ceil(3_000 / h.world.chain.slotMs);
    const lagging: typeof h.rpc = {
      ...withoutBlockTime(h.rpc),
      getSlot: async (commitment, options) => (await h.rpc.getSlot(commitment, options)) - lagSlots,
      getSignaturesForAddress: async (address, options) => {
        const head = (await h.rpc.getSlot("finalized")) - lagSlots;
        const page = await h.rpc.getSignaturesForAddress(address, options);
        return page.filter((e) => e.slot <= head);
      },
    };
    // The run reads the vaults 3 minutes after the window's end, as a nightly cron does.
    const late = () => h.op.now() + 180_000;
    const run = await nightly(
      h,
      c,
      vault,
      { from, to, timeoutMs: 1_000 },
      { rpc: lagging, now: late },
    );
    expect(run).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(run.reason).toMatch(
      /the RPC endpoint proves no finalized time: no block time for the finalized slot \d+ .*Method not found/,
    );

    // Once the node gives a time again, the window is judged and the theft found.
    const healthy = await nightly(h, c, vault, { from, to, timeoutMs: 20_000 });
    expect(healthy).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    // (The vault is the world's, shared with the tests above: their debit is listed too.)
    expect(healthy.ledger?.unreceiptedDebits).toContainEqual(
      expect.objectContaining({ vault, signature: theft.signature, amountUnits: "-250000" }),
    );
  });
});

/**
 * A job of key `keyIndex` whose settlement pays the worker and the treasury but keeps the
 * remainder in escrow, recorded: that much of its lock never comes back to the vault.
 */
async function remainderKept(h: AdversaryHarness, c: Scenario, keyIndex: number) {
  const plan = h.op.plan({ keyIndex });
  const lock = h.op.send(h.op.lockIxs(plan));
  const settlement = h.op.send([
    ...h.op.payoutIxs(plan, { remainder: 0n }),
    h.op.memo(`decentral:settle:${plan.jobId}`),
  ]);
  c.record(plan, { escrowTx: lock.signature, settlementTx: settlement.signature });
  await c.flush();
  return { plan, lock };
}

describe("a lock not yet due when its own window's run reads the vault", () => {
  const h = useAdversaryHarness();

  it("is judged by the next window's run, which names it with its time before the window", async () => {
    // A lock is due 6 s after its block time (settlement window 6 s, no grace): past the 2 s
    // after its window's end that the first run reads, with time to spare on a loaded host.
    const profile: Profile = { ...localnetProfile, settlementWindowSeconds: 6 };
    const c = (await h.scenario(profile)).recordOnChainClock();
    const from = edgeAfter(h, 100);
    const honest = await c.pinKey(1);

    // In the window's last second, a job whose settlement pays the worker and the treasury but
    // keeps the remainder in escrow: that much of its lock never comes back to the vault.
    const { plan, lock } = await remainderKept(h, c, 1);
    const end = (lock.blockTime + 1) * 1000;
    moveClockTo(h, end, 20);
    const first = await nightly(h, c, honest.vault, { from, to: end, timeoutMs: 20_000 });
    // The job itself is a discrepancy; its own window's run read the vault before the lock
    // was due.
    expect(first).toMatchObject({ outcome: "discrepancies", reason: null });
    expect(first.ledger?.unreleasedLocks).toEqual([]);

    // The next window holds no job and no line of the vault, yet its run judges the lock.
    const next = edgeAfter(h, 6_500);
    await finalizedPast(h.world, next);
    const second = await nightly(h, c, honest.vault, { from: end, to: next, timeoutMs: 20_000 });
    expect(second).toMatchObject({ outcome: "ledger_findings", exitCode: 1, reason: null });
    expect(second.ledger?.unreleasedLocks).toEqual([
      {
        vault: plan.vault,
        jobId: plan.jobId,
        signature: lock.signature,
        lockUnits: plan.lock.toString(),
        outstandingUnits: plan.remainder.toString(),
        lockedAt: isoOf(lock.blockTime * 1000),
        dueBy: isoOf((lock.blockTime + 6) * 1000),
        beforeWindow: true,
      },
    ]);
    expect(summaryToText(second)).toContain(
      `unreleased lock of ${plan.lock} units (${plan.remainder} still out) by job ${plan.jobId} from vault ${plan.vault} in ${lock.signature} (locked ${isoOf(lock.blockTime * 1000)}, before the window`,
    );
  });
});

describe("a lock due after its window's end that its own window's run reads once due", () => {
  const h = useAdversaryHarness();

  it("is named once, by the run whose window holds its due time", async () => {
    const profile: Profile = { ...localnetProfile, settlementWindowSeconds: 6 };
    const c = (await h.scenario(profile)).recordOnChainClock();
    const from = edgeAfter(h, 100);
    const honest = await c.pinKey(2);
    // In the window's last second, a lock whose settlement keeps the remainder in escrow.
    const { lock } = await remainderKept(h, c, 2);
    const end = (lock.blockTime + 1) * 1000;
    // The window's run reads the vault 8 s after its end, as a cron minutes after midnight
    // does: the lock, due 6 s after it was made, is overdue then.
    const next = edgeAfter(h, 8_000);
    await finalizedPast(h.world, next);
    const first = await nightly(h, c, honest.vault, { from, to: end, timeoutMs: 20_000 });
    expect(first.ledger?.unreleasedLocks).toEqual([]);
    const second = await nightly(h, c, honest.vault, { from: end, to: next, timeoutMs: 20_000 });
    expect(second.ledger?.unreleasedLocks).toEqual([
      expect.objectContaining({ signature: lock.signature, beforeWindow: true }),
    ]);
  });
});

describe("a nightly run over a credit vault whose address holds another mint", () => {
  const h = useAdversaryHarness();

  it("exits 1 on the fake-mint tokens moved into the vault, never counting them as a deposit", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = edgeAfter(h, 1);
    // The configured vault is a token account of a fake mint with the credits' decimals,
    // filled with 5,000 of its units: by amount and decimals alone, a vault holding credits.
    const fake = h.op.createFakeMint();
    const vault = h.op.createTokenAccount(h.op.escrowAuthority.address, fake, 5_000n);
    const to = edgeAfter(h, 1_000);

    const run = await nightly(h, c, vault, { from, to, timeoutMs: 20_000 });
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1, reason: null });
    expect(run.ledger?.foreignMint).toEqual([
      expect.objectContaining({ vault, finding: "foreign_mint_movement", mint: fake }),
      expect.objectContaining({ vault, finding: "foreign_mint_balance", mint: fake }),
    ]);
    expect(run.ledger?.imbalanced).toEqual([]);
    expect(summaryToText(run)).toMatch(/another mint/);
  });
});

describe("a nightly run whose RPC stops answering while it reads the credit vaults", () => {
  const h = useAdversaryHarness();

  /** The pool, with `method` never answering (a node that accepts and hangs). */
  const hanging = (method: "getSignaturesForAddress" | "getTransaction"): typeof h.rpc => {
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc[method] = () => new Promise<never>(() => {});
    return rpc;
  };

  for (const method of ["getSignaturesForAddress", "getTransaction"] as const) {
    it(`ends at its timeout, exit 2 saying why, when ${method} never answers`, async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = edgeAfter(h, 200);
      const honest = await c.pinKey(1);
      h.op.send([h.op.transfer(honest.vault, h.op.attackerAccount(0n), 1_000n)]);
      const to = edgeAfter(h, 200);
      await finalizedPast(h.world, to);
      const started = performance.now();
      const run = await nightly(
        h,
        c,
        honest.vault,
        { from, to, timeoutMs: 1_500 },
        { rpc: hanging(method) },
      );
      // It used to wait for the call for ever: cron's `--timeout` did not hold.
      expect(performance.now() - started).toBeLessThan(3_000);
      expect(run).toMatchObject({ outcome: "incomplete", exitCode: 2 });
      // A listing that hangs is met first where the run reads the escrow vault's payouts,
      // before it judges any job.
      expect(run.reason).toMatch(
        method === "getSignaturesForAddress"
          ? /timed out after 1\.5 s \(reading the escrow vault's payouts under the window's jobs' memos\)/
          : /timed out after 1\.5 s \(reading the credit vaults' history\)/,
      );
    }, 20_000);
  }
});
