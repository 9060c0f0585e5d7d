import { describe, expect, it } from "vitest";
import type { InstructionSpec } from "../src/localnet/wire.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { clockPause } from "./support/chain-clock.js";
import {
  nightlyOnChain,
  periodEdge,
  vaultReader,
  vaultStatementSince,
} from "./support/ledger-periods.js";
import { discrepancy, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { updateSignature } from "./support/seed-queue.js";

/**
 * SPL Token's and Token-2022's Batch (instruction 255) runs several token instructions inside
 * one: for each, the count of accounts it takes from the batch's accounts, the length of its
 * data, then its data. The operator signs every byte: a customer's top-up into the vault and a
 * payout of as much to the operator, both inside one batch, leave the vault's balance as it
 * was, and an Approve inside one gives the vault a delegate.
 */

const h = useAdversaryHarness();

/** One Batch of the token program running `ixs` in turn. */
function batch(ixs: InstructionSpec[]): InstructionSpec {
  const data: number[] = [255];
  const accounts: InstructionSpec["accounts"] = [];
  for (const ix of ixs) {
    data.push(ix.accounts.length, ix.data.length, ...ix.data);
    accounts.push(...ix.accounts);
  }
  return { programId: ixs[0]!.programId, accounts, data: Uint8Array.from(data) };
}

/**
 * The nightly run of [from, now) reading `vault` alone, on the chain's clock: its pauses for the
 * chain to finalize past the window move that clock on instead of waiting.
 */
function nightlyOf(c: Scenario, vault: string, from: number) {
  const now = () => h.op.now();
  const reader = vaultReader(h, c, vault, h.rpc, { now });
  return nightlyOnChain(h, c, reader, now, clockPause(h)).nightly({ from, to: now() });
}

/**
 * A scenario whose key `keyIndex` is pinned to its vault, then one batch moving `units` from
 * the attacker's wallet into the vault and as much out of it to the attacker, after `from`.
 */
async function hiddenPayout(keyIndex: number, units: bigint) {
  const c = (await h.scenario()).recordOnChainClock();
  const vault = (await c.pinKey(keyIndex)).vault;
  const wallet = h.op.attackerAccount(5_000_000n);
  const thief = h.op.attackerAccount(0n);
  const from = periodEdge(h);
  const theft = h.op.send([
    batch([
      h.op.transfer(wallet, vault, units, { authority: h.op.attacker.address }),
      h.op.transfer(vault, thief, units),
    ]),
  ]).signature;
  return { c, vault, thief, from, theft };
}

describe("a token Batch moving the vault's money", () => {
  it("lists a payout a top-up in the same batch hid as an unreceipted debit; the nightly run exits 1", async () => {
    const { c, vault, thief, from, theft } = await hiddenPayout(2, 1_000_000n);
    expect(h.op.deltas(theft).get(vault)).toBeUndefined();
    expect(h.op.deltas(theft).get(thief)?.delta).toBe(1_000_000n);

    await h.finalized();
    const run = await nightlyOf(c, vault, from);
    expect(run.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: "-1000000" }),
    ]);
    expect(run.exitCode).toBe(1);
    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.unexplainedOutUnits).toBe(1_000_000n);
    expect(s.differenceUnits).toBe(0n);
  });

  it("lists the same in a Token-2022 credit mint, whose program runs a Batch alike", async () => {
    const op = h.op;
    const mint = op.createToken2022Mint();
    const vault = op.createToken2022Account(op.escrowAuthority.address, mint, 2_000_000n);
    const wallet = op.createToken2022Account(op.attacker.address, mint, 5_000_000n);
    const thief = op.createToken2022Account(op.attacker.address, mint);
    const c = (await h.scenario({ ...localnetProfile, usdcMint: mint })).recordOnChainClock();
    const from = periodEdge(h);
    const theft = op.send([
      batch([
        op.transfer2022(wallet, vault, 300_000n, mint, op.attacker.address),
        op.transfer2022(vault, thief, 300_000n, mint),
      ]),
    ]).signature;
    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: theft, amountUnits: -300_000n }),
    ]);
  });

  it("reads such a batch again from its stored answer where facts kept it as one instruction", async () => {
    const { c, vault, from, theft } = await hiddenPayout(0, 400_000n);
    // Fetched and stored before the ledger reads it, as the verifier does a job's transaction.
    await h.finalized();
    const signatures = createSignatureStore(c.store);
    await signatures.track([theft], Date.now());
    await signatures.recordFetched(theft, (await h.rpc.getTransaction(theft))!, Date.now());
    // Its facts as a version that read no batch stored them: one instruction of a kind not named.
    const [row] = (await signatures.load([theft])).values();
    const facts = row!.facts as { tokenInstructions: { kind: string }[] };
    expect(facts.tokenInstructions.map((ix) => ix.kind)).toEqual([
      "batch",
      "transferChecked",
      "transferChecked",
    ]);
    facts.tokenInstructions = [{ ...facts.tokenInstructions[0]!, kind: "unknown:255" }];
    await updateSignature(c.store, theft, { facts });
    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: theft, amountUnits: -400_000n }),
    ]);
  });

  it("reads a top-up made through a batch as a deposit, with no finding", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const vault = (await c.pinKey(1)).vault;
    const wallet = h.op.attackerAccount(5_000_000n);
    const from = periodEdge(h);
    h.op.send([
      batch([h.op.transfer(wallet, vault, 250_000n, { authority: h.op.attacker.address })]),
    ]);
    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.unread).toBeNull();
    expect(s.depositsUnits).toBe(250_000n);
    expect(s.counts).toMatchObject({ lines: 1, deposits: 1, unexplained: 0 });
  });

  it("names a delegate an Approve inside a batch gave the vault, spent before any balance read", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const vault = (await c.pinKey(3)).vault;
    const thief = h.op.attackerAccount(0n);
    const from = periodEdge(h);
    const delegate = h.op.attacker.address;
    const approval = h.op.send([batch([h.op.approve(vault, delegate, 5_000n)])]).signature;
    // The delegate spends the whole allowance: the vault has no delegate left to read.
    const spent = h.op.send([h.op.transfer(vault, thief, 5_000n, { authority: delegate })]);
    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.delegateRead).toBeNull();
    expect(s.delegateApprovals).toEqual([
      expect.objectContaining({ signature: approval, delegate }),
    ]);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: spent.signature, amountUnits: -5_000n }),
    ]);
  });

  it("verifies no lock or settlement made through a batch, though every transfer in it is honest", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      batch([h.op.lockIxs(plan)[0]!]),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send([
      batch(h.op.payoutIxs(plan)),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("escrow.instructions", "settlement.instructions"),
    ]);
    expect(await c.check(plan.jobId, "escrow.instructions")).toMatchObject({
      actual: [expect.objectContaining({ kind: "batch" })],
    });
  });
});
