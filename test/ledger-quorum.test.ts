import { describe, expect, it } from "vitest";
import { createQuorumRpc } from "../src/chain/quorum.js";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import type { LedgerRpc } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { createVerifier } from "../src/verify/engine.js";
import { chainSecondAfter, finalizedNow } from "./support/finality.js";
import { nightlyOnChain, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

const log = createLogger({ level: "silent" });

const h = useAdversaryHarness();

/** What the operator's own endpoint lies about: transactions it leaves out, balances it adds to. */
interface Lies {
  hide: Set<string>;
  balanceOffset: Map<string, bigint>;
}

/** An endpoint that serves the real chain but tells `lies` about the ledger's two questions. */
function operatorEndpoint(lies: Lies): RpcPool {
  return {
    ...h.rpc,
    async getSignaturesForAddress(address, options) {
      const page = await h.rpc.getSignaturesForAddress(address, options);
      return page.filter((e) => !lies.hide.has(e.signature));
    },
    async getTokenAccount(address) {
      const r = await h.rpc.getTokenAccount(address);
      const offset = lies.balanceOffset.get(address) ?? 0n;
      if (r.account?.amount == null || offset === 0n) return r;
      return { ...r, account: { ...r.account, amount: r.account.amount + offset } };
    },
    async close() {},
  };
}

/** RPC_QUORUM=2 over the operator's endpoint, listed first, and an honest one. */
function quorumWith(lies: Lies): RpcPool {
  return createQuorumRpc({
    members: [
      { name: "operator", rpc: operatorEndpoint(lies) },
      { name: "honest", rpc: { ...h.rpc, async close() {} } },
    ],
    quorum: 2,
  });
}

/** Reads the vault through `rpc` (`pageSize` signatures a page) and builds its statement of [from, now). */
async function statementThrough(
  c: Scenario,
  rpc: LedgerRpc,
  vault: string,
  from: number,
  pageSize = 1000,
) {
  // Block times are whole seconds: the read happens once the chain has finalized the second
  // `to` falls in.
  const to = await finalizedNow(h.world);
  const reader = vaultReader(h, c, vault, rpc, { options: { pageSize } });
  await reader.syncAll();
  const statement = await buildStatement(
    c.store,
    { from, to, vault },
    { profile: c.profile, graceSeconds: 0 },
  );
  return statement.vaults[0]!;
}

/** A scenario whose operator takes 250,000 units from key `keyIndex`'s pinned vault. */
async function theftFrom(keyIndex: number) {
  const vault = h.op.vault(keyIndex);
  const c = await h.scenario();
  const from = Date.now() - 5_000;
  await c.pinKey(keyIndex);
  const stolen = 250_000n;
  const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), stolen)]).signature;
  return { vault, c, from, stolen, theft };
}

describe("the ledger under RPC_QUORUM=2 with the operator's endpoint listed first", () => {
  it("finds a debit the operator's endpoint leaves unlisted, and closes on the chain", async () => {
    const keyIndex = 1;
    const { vault, c, from, stolen, theft } = await theftFrom(keyIndex);
    const lies: Lies = { hide: new Set([theft]), balanceOffset: new Map([[vault, stolen]]) };
    const rpc = quorumWith(lies);

    const s = await statementThrough(c, rpc, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: theft, amountUnits: -stolen }),
    ]);
    expect(s.unexplainedOutUnits).toBe(stolen);
    expect(s.closingOnChainUnits).toBe(h.op.balance(vault));
    expect(s.closingOnChainSource).not.toBe("balance_read");
    expect(s.differenceUnits).toBe(0n);
    expect(s.gaps).toEqual([]);
    expect(s.complete).toBe(true);
  });

  it("finds a debit on an older page when the operator's endpoint ignores `before`", async () => {
    // It lists the newest page again whatever page is asked for: the union came back shorter
    // than a page, the ledger took it for the end of the history, and the debit was never
    // listed while the statement said complete.
    const { vault, c, from, stolen, theft } = await theftFrom(0);
    const donor = h.op.attackerAccount(1_000_000n);
    for (let i = 0; i < 8; i++) {
      h.op.send([h.op.transfer(donor, vault, 10n, { authority: h.op.attacker.address })]);
      // Slots apart, mostly (a clock moved ahead would date later tests' lines ahead too).
      await new Promise((r) => setTimeout(r, 15));
    }
    const rpc = createQuorumRpc({
      members: [
        {
          name: "operator",
          rpc: {
            ...h.rpc,
            getSignaturesForAddress: (address, { before: _, ...rest } = {}) =>
              h.rpc.getSignaturesForAddress(address, rest),
            async close() {},
          },
        },
        { name: "honest", rpc: { ...h.rpc, async close() {} } },
      ],
      quorum: 2,
    });

    const s = await statementThrough(c, rpc, vault, from, 5);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: theft, amountUnits: -stolen }),
    ]);
    expect(s.differenceUnits).toBe(0n);
    expect(s.complete).toBe(true);
  });

  it("files a debit under its transaction's time when only the operator's endpoint dates it", async () => {
    // The honest endpoint lists no block times; the operator's dates the debit two days early.
    // The line was filed under the only time given and the debit left the period.
    // Key 4's vault holds few credits: a top-up (a deposit of the period) pays for its job.
    const donor = h.op.attackerAccount(1_000_000n);
    h.op.send([
      h.op.transfer(donor, h.op.vault(4), 1_000_000n, { authority: h.op.attacker.address }),
    ]);
    const { vault, c, from, stolen, theft } = await theftFrom(4);
    const rpc = createQuorumRpc({
      members: [
        {
          name: "operator",
          rpc: {
            ...h.rpc,
            async getSignaturesForAddress(address, options) {
              const page = await h.rpc.getSignaturesForAddress(address, options);
              return page.map((e) =>
                e.signature === theft ? { ...e, blockTime: (e.blockTime ?? 0) - 2 * 86_400 } : e,
              );
            },
            async close() {},
          },
        },
        {
          name: "honest-without-block-times",
          rpc: {
            ...h.rpc,
            async getSignaturesForAddress(address, options) {
              const page = await h.rpc.getSignaturesForAddress(address, options);
              return page.map((e) => ({ ...e, blockTime: null }));
            },
            async close() {},
          },
        },
      ],
      quorum: 2,
    });

    const s = await statementThrough(c, rpc, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: theft, amountUnits: -stolen }),
    ]);
    expect(s.unexplainedOutUnits).toBe(stolen);
    expect(s.complete).toBe(true);
  });

  it("never closes on a balance only the operator's endpoint reports", async () => {
    const keyIndex = 2;
    const vault = h.op.vault(keyIndex);
    const c = await h.scenario();
    const from = Date.now() - 5_000;
    await c.pinKey(keyIndex);
    const lies: Lies = { hide: new Set(), balanceOffset: new Map([[vault, 250_000n]]) };

    const s = await statementThrough(c, quorumWith(lies), vault, from);
    expect(s.unexplained).toEqual([]);
    expect(s.closingOnChainUnits).toBe(h.op.balance(vault));
    expect(s.closingOnChainSource).toBe("last_transaction");
    expect(s.differenceUnits).toBe(0n);

    // Two endpoints that agree give the balance read as before.
    const honest = await statementThrough(
      c,
      quorumWith({ ...lies, balanceOffset: new Map() }),
      vault,
      from,
    );
    expect(honest.closingOnChainSource).toBe("balance_read");
    expect(honest.closingOnChainUnits).toBe(h.op.balance(vault));
  });

  it("lists a debit held back as too new on a later night, though a newer deposit was read", async () => {
    // The operator's endpoint answers a finalized slot just below a theft, leaves the theft and
    // a later deposit out of its listing, and answers "not found" for the theft only. The
    // deposit (read by both) was stored as the vault's newest line above the theft held back;
    // every later sync listed `until` it, so the theft never entered the ledger, even after
    // the endpoint turned honest.
    const vault = h.op.vault(0);
    const c = await h.scenario();
    const from = Date.now() - 5_000;
    await c.pinKey(0);
    await h.finalized();
    const donor = h.op.victimVault(1_000_000n);
    await chainSecondAfter(h.world);
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 250_000n)]).signature;
    const deposit = h.op.send([h.op.transfer(donor, vault, 1_000n)]).signature;
    await h.finalized();
    const theftSlot = (await h.rpc.getTransaction(theft))!.facts.slot;
    const lie = { on: true };
    const operator: RpcPool = {
      ...operatorEndpoint({ hide: new Set(), balanceOffset: new Map() }),
      async getSlot(commitment, options) {
        const slot = await h.rpc.getSlot(commitment, options);
        return lie.on && commitment !== "confirmed" ? Math.min(slot, theftSlot - 1) : slot;
      },
      async getSignaturesForAddress(address, options) {
        const page = await h.rpc.getSignaturesForAddress(address, options);
        return lie.on ? page.filter((e) => e.signature !== theft && e.signature !== deposit) : page;
      },
      async getTransaction(signature, commitment, options) {
        if (lie.on && signature === theft) return null;
        return h.rpc.getTransaction(signature, commitment, options);
      },
      async getSignatureStatuses(signatures, options) {
        const statuses = await h.rpc.getSignatureStatuses(signatures, options);
        return statuses.map((s, i) => (lie.on && signatures[i] === theft ? null : s));
      },
    };
    const rpc = createQuorumRpc({
      members: [
        { name: "operator", rpc: operator },
        { name: "honest", rpc: { ...h.rpc, async close() {} } },
      ],
      quorum: 2,
    });
    const verifier = createVerifier({
      store: c.store,
      rpc,
      profile: c.profile,
      log,
      options: quickVerifierOptions,
    });
    const reader = vaultReader(h, c, vault, rpc);
    const night = async (window: { from: number; to: number }) =>
      runNightlyVerification(c.store, verifier, {
        ...window,
        timeoutMs: 5_000,
        ledger: ledgerWindowCheck({ store: c.store, reader, profile: c.profile, graceSeconds: 0 }),
      });
    // The first night ends where the run, waiting for the credits headers' 2 s past its end,
    // takes the slot the endpoint calls finalized as final enough.
    const to = ((await h.rpc.getBlockTime(theftSlot - 1)) - SETTLEMENT_CLOCK_SLACK_SECONDS) * 1000;
    expect((await night({ from, to })).exitCode).toBe(1);
    lie.on = false;
    const second = await night({ from: to, to: await finalizedNow(h.world) });
    expect(second.exitCode).toBe(1);
    expect(second.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: "-250000" }),
    ]);
  });
});

describe("a gap in a vault's history", () => {
  it("leaves the statement incomplete and makes the nightly verify exit 1", async () => {
    const keyIndex = 3;
    const { vault, c, from, stolen, theft } = await theftFrom(keyIndex);
    // One endpoint alone (RPC_QUORUM=1) that leaves the debit out and hides it in the balance:
    // only the next movement's balance before, off by the debit, shows that something moved.
    const alone = operatorEndpoint({
      hide: new Set([theft]),
      balanceOffset: new Map([[vault, stolen]]),
    });
    await c.pinKey(keyIndex);

    const s = await statementThrough(c, alone, vault, from);
    expect(s.unexplained).toEqual([]);
    // The balance read it inflated does not chain from the newest line either: the period,
    // ended before that read, closes on the newest line, off by the debit it never listed.
    expect(s.gaps).toEqual([
      expect.objectContaining({ missingUnits: -stolen }),
      expect.objectContaining({ beforeSignature: null, missingUnits: stolen }),
    ]);
    expect(s.closingOnChainUnits).toBe(h.op.balance(vault));
    expect(s.differenceUnits).toBe(-stolen);
    expect(s.historyRead).toBe(true);
    expect(s.complete).toBe(false);

    const summary = await nightlyOnChain(h, c, vaultReader(h, c, vault, alone)).nightly(
      { from, to: await finalizedNow(h.world) },
      20_000,
    );
    expect(summary).toMatchObject({ outcome: "ledger_findings", exitCode: 1, reason: null });
    expect(summary.byVerdict.verified).toBe(2);
    expect(summary.ledger).toMatchObject({
      incomplete: null,
      imbalanced: [{ vault, differenceUnits: (-stolen).toString() }],
    });
    expect(summary.ledger?.gaps).toEqual([
      expect.objectContaining({ vault, missingUnits: (-stolen).toString() }),
      expect.objectContaining({ vault, beforeSignature: null, missingUnits: stolen.toString() }),
    ]);
    expect(summaryToText(summary)).toContain(`gap in vault ${vault}'s history: -250000 units`);
  });
});
