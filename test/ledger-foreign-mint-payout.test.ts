import { describe, expect, it } from "vitest";
import { localKeyNames, localSigner } from "../src/localnet/keys.js";
import { clockPause } from "./support/chain-clock.js";
import {
  nightlyOnChain,
  periodEdge,
  vaultReader,
  vaultStatementSince,
} from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { storeKeptWithoutMints } from "./support/rewriting-node.js";
import { emptiedVaultToReopen, topUpPaidOutAndReopened } from "./support/vault-reopening.js";

const h = useAdversaryHarness();

/** The next whole second of the chain's clock, which is moved on to it. */
const nextSecond = async () => periodEdge(h);

/** Reads the vault and builds its statement of [from, now) with no grace after the window. */
const statementOf = (c: Scenario, vault: string, from: number) =>
  vaultStatementSince(h, c, vault, from);

/**
 * The nightly run of [from, now) over `vault` alone, on the chain's clock: its pauses for the
 * chain to finalize past the window move that clock on instead of waiting.
 */
async function nightlyOf(c: Scenario, vault: string, from: number) {
  await h.finalized();
  const now = () => h.op.now();
  const reader = vaultReader(h, c, vault, h.rpc, { now });
  return nightlyOnChain(h, c, reader, now, clockPause(h)).nightly({ from, to: now() });
}

/** The customer's 1,000,000 reached the thief by `tx`: listed as a deposit and paid out of it. */
async function expectTopUpPaidOut(
  c: Scenario,
  vault: string,
  from: number,
  tx: string,
  thief: string,
) {
  expect(h.op.deltas(tx).get(thief)).toEqual({ mint: h.op.accounts.mint, delta: 1_000_000n });
  const s = await statementOf(c, vault, from);
  expect(s.unexplained).toEqual([
    expect.objectContaining({ signature: tx, amountUnits: -1_000_000n }),
  ]);
  expect(s.depositsUnits).toBe(1_000_000n);
  expect(s.unexplainedOutUnits).toBe(1_000_000n);
}

describe("a credit vault closed and opened again in another mint within one transaction", () => {
  it("lists the credits a top-up brought in and a plain transfer paid out before the reopening", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    // The vault is emptied first (before the period): a vault at 0 is what the reopening needs.
    const reopening = emptiedVaultToReopen(h, 4, 3);
    const { vault, thief, fake } = reopening;
    const from = await nextSecond();
    // The customer's "buy credits" transaction, built by the operator: 1,000,000 in, the same
    // paid out by a plain Transfer (which names no mint), and the empty vault closed and
    // opened again in a fake mint holding 5,000,000 of it.
    const tx = topUpPaidOutAndReopened(h, reopening, 5_000_000n);
    expect(h.op.deltas(tx).get(thief)).toEqual({ mint: h.op.accounts.mint, delta: 1_000_000n });

    const s = await statementOf(c, vault, from);
    // The fake tokens are no credits; the credits that came in and went out are.
    expect(s.unexplained).toEqual([
      expect.objectContaining({
        finding: "unreceipted_debit",
        signature: tx,
        amountUnits: -1_000_000n,
      }),
    ]);
    expect(s.unexplainedOutUnits).toBe(1_000_000n);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.foreignMint).toEqual([
      expect.objectContaining({
        finding: "foreign_mint_movement",
        signature: tx,
        changes: [expect.objectContaining({ mint: fake, amountUnits: 5_000_000n })],
      }),
      expect.objectContaining({ finding: "foreign_mint_balance", mint: fake }),
    ]);
    expect(s.closingByLedgerUnits).toBe(0n);
    expect(s.closingOnChainUnits).toBe(0n);

    const run = await nightlyOf(c, vault, from);
    // The vault's history before the window (its draining) is judged too: only this line here.
    expect(run.ledger?.unreceiptedDebits.filter((d) => !d.beforeWindow)).toEqual([
      expect.objectContaining({ vault, signature: tx, amountUnits: "-1000000" }),
    ]);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
  });

  it("counts no fake-mint tokens paid out after the reopening as credits", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const keyIndex = 3;
    const vault = h.op.vault(keyIndex);
    const credits = h.op.balance(vault);
    expect(credits).toBeGreaterThan(0n);
    const thief = h.op.attackerAccount(0n);
    const fake = h.op.createFakeMint();
    const fakeSink = h.op.createTokenAccount(h.op.attacker.address, fake);
    const from = await nextSecond();
    // Every credit out by a plain Transfer, the vault reopened in the fake mint, 7,000,000 of
    // it minted there and 3,000,000 paid out again, plain too.
    const reopen = h.op.reopenVaultIxs(keyIndex, fake);
    const tx = h.op.send(
      [
        h.op.plainTransfer(vault, thief, credits),
        ...reopen.ixs,
        h.op.mintTo(fake, vault, 7_000_000n, h.op.attacker.address),
        h.op.plainTransfer(vault, fakeSink, 3_000_000n),
      ],
      { extraSigners: [reopen.signer] },
    ).signature;

    const s = await statementOf(c, vault, from);
    // What left in credits is the vault's whole balance: not a fake unit more, nor a deposit.
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: tx, amountUnits: -credits }),
    ]);
    expect(s.unexplainedOutUnits).toBe(credits);
    expect(s.depositsUnits).toBe(0n);
    expect(s.closingByLedgerUnits).toBe(0n);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a payout inside a top-up to an account closed and opened again in another mint", () => {
  it("counts the plain transfer as credits, whatever mint its destination shows after", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const vault = h.op.vault(1);
    const user = localSigner(localKeyNames.user(1));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    // D takes the credits and passes them on to E, then is reopened in a fake mint: its
    // balances show the fake mint only.
    const d = h.op.createTokenAccount(h.op.attacker.address);
    const e = h.op.attackerAccount(0n);
    const fake = h.op.createFakeMint();
    const from = await nextSecond();
    const tx = h.op.send(
      [
        h.op.transfer(wallet, vault, 1_000_000n, { authority: user.address }),
        h.op.plainTransfer(vault, d, 1_000_000n),
        h.op.plainTransfer(d, e, 1_000_000n, h.op.attacker.address),
        ...h.op.reopenIxs(d, fake, h.op.attacker.address),
        h.op.mintTo(fake, d, 5n, h.op.attacker.address),
      ],
      { extraSigners: [user] },
    ).signature;
    expect(h.op.deltas(tx).get(d)).toEqual({ mint: fake, delta: 5n });

    const s = await statementOf(c, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: tx, amountUnits: -1_000_000n }),
    ]);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.foreignMint).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a payout inside a top-up whose vault only a lookup table names", () => {
  it("is listed from the v0 transaction's loaded accounts as an unreceipted debit", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const vault = h.op.vault(2);
    const user = localSigner(localKeyNames.user(2));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    const thief = h.op.attackerAccount(0n);
    const table = {
      address: localSigner(`adversary/lookup/${Date.now()}`).address,
      addresses: [vault, thief, h.op.accounts.mint],
    };
    h.op.chain.setLookupTable(table.address, h.op.accounts.escrowAuthority, [...table.addresses]);
    const from = await nextSecond();
    const stored = h.op.send(
      [
        h.op.transfer(wallet, vault, 1_000_000n, { authority: user.address }),
        h.op.plainTransfer(vault, thief, 400_000n),
      ],
      { version: 0, extraSigners: [user], lookupTables: [table] },
    );
    // The vault is no static key of the transaction: it is loaded from the table.
    expect(stored.loadedAddresses.writable).toEqual(expect.arrayContaining([vault, thief]));
    const s = await statementOf(c, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: stored.signature, amountUnits: -400_000n }),
    ]);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a payout inside a top-up, the vault named as the owner of an account in another mint", () => {
  it("counts the plain transfer as credits: naming the vault is no reopening of it", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const reopening = emptiedVaultToReopen(h, 0, 0);
    const { vault, thief } = reopening;
    const from = await nextSecond();
    // Before the payout, a new account of the fake mint is made the vault's (InitializeAccount
    // names its owner among its accounts); the vault is really reopened in the fake mint after,
    // 5 of it minted there.
    const tx = topUpPaidOutAndReopened(
      h,
      reopening,
      5n,
      h.op.initializeAccountIxs(vault, reopening.fake),
    );
    await expectTopUpPaidOut(c, vault, from, tx, thief);
    const run = await nightlyOf(c, vault, from);
    expect(run.ledger?.unreceiptedDebits.filter((d) => !d.beforeWindow)).toEqual([
      expect.objectContaining({ vault, signature: tx, amountUnits: "-1000000" }),
    ]);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
  });
});

describe("a plain top-up paid out, another account opened in the vault's later mint before it", () => {
  it("counts the top-up and the payout as credits: another account's opening is not the vault's", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { keyIndex, vault, user, wallet, thief, fake } = emptiedVaultToReopen(h, 2, 2);
    const from = await nextSecond();
    // An account of the fake mint, the attacker's, is opened first; the customer's 1,000,000
    // comes in and goes to the thief by plain Transfers (which name no mint); the empty vault
    // is reopened in the fake mint. Were that other account's opening taken for the vault's,
    // the vault would hold the fake mint from it on: both transfers read as fake tokens, the
    // vault's credits unmoved, and the customer's money passed through it unlisted.
    const reopen = h.op.reopenVaultIxs(keyIndex, fake);
    const tx = h.op.send(
      [
        ...h.op.initializeAccountIxs(h.op.attacker.address, fake),
        h.op.plainTransfer(wallet, vault, 1_000_000n, user.address),
        h.op.plainTransfer(vault, thief, 1_000_000n),
        ...reopen.ixs,
        h.op.mintTo(fake, vault, 5n, h.op.attacker.address),
      ],
      { extraSigners: [user, reopen.signer] },
    ).signature;
    await expectTopUpPaidOut(c, vault, from, tx, thief);
  });
});

describe("a fake-mint payout out of a credit vault reopened in that mint, naming the credit mint", () => {
  it("counts no fake-mint transfer as credits for naming the credit mint past its accounts", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const reopening = emptiedVaultToReopen(h, 1, 3);
    const { vault, fake } = reopening;
    const fakeSink = h.op.createTokenAccount(h.op.attacker.address, fake);
    const from = await nextSecond();
    const topUp = topUpPaidOutAndReopened(h, reopening, 5_000_000n);
    // TransferChecked of fake tokens out of the vault (the mint each names at its place is the
    // fake one), the credit mint named after their accounts, where the program reads none.
    const fakePayout = (amount: bigint) => {
      const paid = h.op.transfer(vault, fakeSink, amount, { mint: fake });
      const credit = { address: h.op.accounts.mint, signer: false, writable: false };
      return h.op.send([{ ...paid, accounts: [...paid.accounts, credit] }]).signature;
    };
    const payout = fakePayout(2_000_000n);
    expect(h.op.deltas(payout).get(vault)).toEqual({ mint: fake, delta: -2_000_000n });
    // The second as a version that kept no instruction's mint stored it, before the ledger reads.
    const storedBefore = fakePayout(1_000_000n);
    await h.finalized();
    await storeKeptWithoutMints(c.store, h.rpc, storedBefore);

    const s = await statementOf(c, vault, from);
    // Only the top-up's credits moved: 1,000,000 in and out. No credit left by the fake payouts.
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: topUp, amountUnits: -1_000_000n }),
    ]);
    expect(s.unexplainedOutUnits).toBe(1_000_000n);
    expect(s.depositsUnits).toBe(1_000_000n);
  });
});

describe("a credit vault opened again in a fake mint by an InitializeAccount naming the credit mint", () => {
  it("counts the fake tokens paid out after it as no credits", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const vault = h.op.victimVault(1_000_000n);
    const thief = h.op.attackerAccount(0n);
    const fake = h.op.createFakeMint();
    const fakeSink = h.op.createTokenAccount(h.op.attacker.address, fake);
    const from = await nextSecond();
    // Every credit out, the vault reopened in the fake mint by an InitializeAccount3 whose mint
    // at its place is the fake one, the credit mint named after its accounts (read by none),
    // 7,000,000 of the fake mint minted there and 3,000,000 paid out, plain.
    const [close, create, initialize] = h.op.reopenIxs(vault, fake);
    const credit = { address: h.op.accounts.mint, signer: false, writable: false };
    const tx = h.op.send([
      h.op.plainTransfer(vault, thief, 1_000_000n),
      close!,
      create!,
      { ...initialize!, accounts: [...initialize!.accounts, credit] },
      h.op.mintTo(fake, vault, 7_000_000n, h.op.attacker.address),
      h.op.plainTransfer(vault, fakeSink, 3_000_000n),
    ]).signature;
    expect(h.op.deltas(tx).get(fakeSink)).toEqual({ mint: fake, delta: 3_000_000n });

    const s = await statementOf(c, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: tx, amountUnits: -1_000_000n }),
    ]);
    expect(s.unexplainedOutUnits).toBe(1_000_000n);
    expect(s.depositsUnits).toBe(0n);
  });
});
