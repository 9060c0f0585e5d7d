import { describe, expect, it, onTestFinished } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { localKeyNames, localSigner } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { clockPause } from "./support/chain-clock.js";
import { periodEdge } from "./support/ledger-periods.js";
import { AuthorityType, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { ownerlessNode, rewritingNode } from "./support/rewriting-node.js";
import { emptiedVaultToReopen, topUpPaidOutAndReopened } from "./support/vault-reopening.js";

/**
 * The operator runs the node the service reads. A payout of the vault's money made inside
 * another program's call shows only in `meta.innerInstructions`; a node that serves them as
 * `[]`, or lists the groups it keeps under other instructions, leaves it out of every
 * instruction while the vault's balances still show it. The payout here is a top-level
 * instruction the lying node removes from the message, as it would drop a call's inner one.
 */
const log = createLogger({ level: "silent" });

const h = useAdversaryHarness();

type Rewrite = (result: {
  transaction: { message: { instructions: unknown[] } };
  meta: { innerInstructions: { index: number; instructions: unknown[] }[] | null };
}) => void;

/** `rpc`, its getTransaction answers for the signatures named rewritten as told. */
function lyingNode(rpc: RpcPool, rewrites: Map<string, Rewrite>): RpcPool {
  return rewritingNode(rpc, (signature) => rewrites.get(signature));
}

/** Drops the last top-level instruction, and serves the inner groups as `inner` says. */
const dropLast =
  (inner: "empty" | "shifted"): Rewrite =>
  (result) => {
    result.transaction.message.instructions.pop();
    const groups = result.meta.innerInstructions ?? [];
    // Shifted: the groups a node keeps, listed under the next instruction's index.
    result.meta.innerInstructions =
      inner === "empty" ? [] : groups.map((g) => ({ ...g, index: g.index + 1 }));
  };

/**
 * The next whole second, the chain's clock moved on past it (not waited for): the period's
 * start, after earlier tests' lines. The nightly run, the statements and the receipts keep
 * that clock.
 */
const periodStart = async () => periodEdge(h);

/** A scenario whose receipts are dated by the chain's clock, which the periods move on. */
const scenario = async (profile?: Profile) => (await h.scenario(profile)).recordOnChainClock();

/**
 * The nightly run over the window from `from` to now, its ledger judged from `reader`'s reads;
 * its pauses for the chain to finalize 2 s past the window move the chain's clock on instead of
 * waiting them, unless `pauses` is "waited".
 */
function nightlyOver(
  c: Scenario,
  verifier: Parameters<typeof runNightlyVerification>[1],
  reader: Parameters<typeof ledgerWindowCheck>[0]["reader"],
  from: number,
  timeoutMs = 10_000,
  pauses: "moved" | "waited" = "moved",
) {
  const now = () => h.op.now();
  return runNightlyVerification(c.store, verifier, {
    from,
    to: now(),
    timeoutMs,
    now,
    ledger: ledgerWindowCheck({
      store: c.store,
      reader,
      profile: c.profile,
      graceSeconds: 0,
      now,
      ...(pauses === "moved" ? { pause: clockPause(h) } : {}),
    }),
  });
}
/** A customer's "buy credits" transaction, a program's call in it, and `payout` signed in last. */
function topUpWithPayout(vault: string, payout: bigint) {
  const user = localSigner(localKeyNames.user(3));
  const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
  const ixs = [
    h.op.newOwnerAtaIx(),
    h.op.transfer(wallet, vault, 1_000_000n, { authority: user.address }),
  ];
  if (payout > 0n) ixs.push(h.op.transfer(vault, h.op.attackerAccount(0n), payout));
  return h.op.send(ixs, { extraSigners: [user] }).signature;
}

async function readThrough(c: Scenario, rpc: RpcPool, vault: string, from: number, logger = log) {
  await h.finalized();
  const reader = createLedgerReader({
    store: c.store,
    rpc,
    profile: c.profile,
    log: logger,
    custody: { vaults: [vault], byKey: {} },
    now: () => h.op.now(),
  });
  await reader.syncVault(vault);
  const statement = await buildStatement(
    c.store,
    { from, to: h.op.now() + 1_000, vault },
    { profile: c.profile, graceSeconds: 0 },
  );
  return { reader, s: statement.vaults[0]! };
}

describe("a payout inside a call a lying node leaves out of the inner instructions", () => {
  for (const inner of ["empty", "shifted"] as const) {
    it(`is an unreceipted debit by the vault's balances (inner groups ${inner}), nightly exit 1`, async () => {
      const c = await scenario();
      const { vault } = await c.pinKey(3);
      const from = await periodStart();
      const topUp = topUpWithPayout(vault, 300_000n);
      const rpc = lyingNode(h.rpc, new Map([[topUp, dropLast(inner)]]));
      const { reader, s } = await readThrough(c, rpc, vault, from);
      // Read by the instructions served, it was a deposit of 700,000 and no finding.
      expect(s.unexplained).toEqual([
        expect.objectContaining({
          finding: "unreceipted_debit",
          signature: topUp,
          amountUnits: -300_000n,
        }),
      ]);
      expect(s.depositsUnits).toBe(1_000_000n);
      expect(s.unexplainedOutUnits).toBe(300_000n);
      expect(s.differenceUnits).toBe(0n);

      const verifier = c.verifierOver(rpc);
      const run = await nightlyOver(c, verifier, reader, from);
      expect(run.ledger?.unreceiptedDebits.filter((d) => d.signature === topUp)).toEqual([
        expect.objectContaining({ vault, amountUnits: "-300000" }),
      ]);
      expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    });
  }

  it("keeps an honest top-up so served a deposit with no finding", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = await periodStart();
    const topUp = topUpWithPayout(vault, 0n);
    const emptied: Rewrite = (result) => {
      result.meta.innerInstructions = [];
    };
    const { s } = await readThrough(c, lyingNode(h.rpc, new Map([[topUp, emptied]])), vault, from);
    expect(s.unexplained).toEqual([]);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.unexplainedOutUnits).toBe(0n);
  });
});

describe("a vault reopened in another mint, a lying node serving the reopening first", () => {
  it("still counts the credits a plain transfer paid out, by the vault's credit balances", async () => {
    const c = await scenario();
    const reopening = emptiedVaultToReopen(h, 4, 3);
    const { vault, thief } = reopening;
    const from = await periodStart();
    // 1,000,000 in, paid out by a plain Transfer (which names no mint), the empty vault closed
    // and opened again in a fake mint holding 5,000,000 of it.
    const tx = topUpPaidOutAndReopened(h, reopening, 5_000_000n);
    expect(h.op.deltas(tx).get(thief)).toEqual({ mint: h.op.accounts.mint, delta: 1_000_000n });
    // The node serves the vault's InitializeAccount (in the fake mint) before the payout, as a
    // node listing a call's inner group under an earlier instruction would: the plain Transfer
    // then reads as the fake mint's.
    const initFirst: Rewrite = (result) => {
      const ixs = result.transaction.message.instructions;
      const [init] = ixs.splice(4, 1);
      ixs.splice(1, 0, init);
    };
    const rpc = lyingNode(h.rpc, new Map([[tx, initFirst]]));
    const { s } = await readThrough(c, rpc, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: tx, amountUnits: -1_000_000n }),
    ]);
    expect(s.unexplainedOutUnits).toBe(1_000_000n);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a job's lock with a payout a lying node leaves out of the instructions", () => {
  it("fails the lock's escrow check by the vault's balances", async () => {
    const c = await scenario();
    const plan = h.op.plan({ keyIndex: 2 });
    const escrowTx = h.op.send([
      h.op.newOwnerAtaIx(),
      ...h.op.lockIxs(plan),
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), 300_000n),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    await c.flush();
    await h.finalized();
    const verifier = c.verifierOver(lyingNode(h.rpc, new Map([[escrowTx, dropLast("empty")]])));
    const summary = await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    expect(summary.status).toBe("completed");
    const outcome = await c.outcome(plan.jobId);
    expect(outcome.verdict).toBe("discrepancy");
    expect(outcome.failing).toEqual(["escrow.vault"]);
  });
});

describe("a v0 top-up whose vault only a lookup table names, its payout's call left out", () => {
  it("is an unreceipted debit by the balances of the loaded vault", async () => {
    const c = await scenario();
    const vault = h.op.vault(1);
    const user = localSigner(localKeyNames.user(1));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    const thief = h.op.attackerAccount(0n);
    const table = {
      address: localSigner(`adversary/lookup/inner/${Date.now()}`).address,
      addresses: [vault, thief, h.op.accounts.mint],
    };
    h.op.chain.setLookupTable(table.address, h.op.accounts.escrowAuthority, [...table.addresses]);
    const from = await periodStart();
    const stored = h.op.send(
      [
        h.op.newOwnerAtaIx(),
        h.op.transfer(wallet, vault, 1_000_000n, { authority: user.address }),
        h.op.transfer(vault, thief, 400_000n),
      ],
      { version: 0, extraSigners: [user], lookupTables: [table] },
    );
    expect(stored.loadedAddresses.writable).toEqual(expect.arrayContaining([vault, thief]));
    const rpc = lyingNode(h.rpc, new Map([[stored.signature, dropLast("empty")]]));
    const { s } = await readThrough(c, rpc, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: stored.signature, amountUnits: -400_000n }),
    ]);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a lock inside a top-up beside a payout a lying node leaves out", () => {
  it("lists the lock and the payout, not the lock alone, as unreceipted debits", async () => {
    const c = await scenario();
    const plan = h.op.plan({ keyIndex: 0 });
    const user = localSigner(localKeyNames.user(0));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    const from = await periodStart();
    // Two frauds in one transaction: the lock the top-up hides (listed for what left) and a
    // payout inside a call the node serves no instruction of.
    const escrowTx = h.op.send(
      [
        h.op.newOwnerAtaIx(),
        ...h.op.lockIxs(plan),
        h.op.transfer(wallet, plan.vault, 1_000_000n, { authority: user.address }),
        h.op.transfer(plan.vault, h.op.attackerAccount(0n), 250_000n),
      ],
      { extraSigners: [user] },
    ).signature;
    const rpc = lyingNode(h.rpc, new Map([[escrowTx, dropLast("empty")]]));
    const { s } = await readThrough(c, rpc, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: escrowTx, amountUnits: -(plan.lock + 250_000n) }),
    ]);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a top-up and a payout both inside a call a lying node leaves out", () => {
  /** Drops the last `n` top-level instructions and serves the inner groups as `[]`. */
  const dropTop =
    (n: number): Rewrite =>
    (result) => {
      result.transaction.message.instructions.splice(-n, n);
      result.meta.innerInstructions = [];
    };

  it("leaves the line unread: the vault gained more than any instruction served brings in", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = await periodStart();
    const topUp = topUpWithPayout(vault, 300_000n);
    // Served with neither the customer's 1,000,000 in nor the 300,000 out, the vault's +700,000
    // read as a deposit of 700,000: the payout was in no figure, the statement whole.
    const rpc = lyingNode(h.rpc, new Map([[topUp, dropTop(2)]]));
    const { reader, s } = await readThrough(c, rpc, vault, from);
    expect(s.depositsUnits).toBe(0n);
    expect(s.complete).toBe(false);
    expect(s.counts.pending).toBe(1);
    expect(s.unread).toEqual({
      lines: 1,
      why: `line ${topUp} not read: the vault's credit balance rose by 700000, more than the instructions served bring in`,
    });
    const verifier = c.verifierOver(rpc);
    // Its pauses waited: moved on, the clock would run minutes ahead in the 3 s the run reads.
    const run = await nightlyOver(c, verifier, reader, from, 3_000, "waited");
    // The window cannot be judged from what that node serves: exit 2, never 0.
    expect(run.exitCode).toBe(2);

    // An honest node's answer reads it: the payout is an unreceipted debit.
    const honest = await readThrough(c, h.rpc, vault, from);
    expect(honest.s.unexplained).toEqual([
      expect.objectContaining({ signature: topUp, amountUnits: -300_000n }),
    ]);
    expect(honest.s.depositsUnits).toBe(1_000_000n);
    expect(honest.s.counts.pending).toBe(0);
  });
});

/**
 * Reads `topUp` (a top-up of 1,000,000 and a payout of 300,000, signed in last) from a node
 * serving neither and no inner instructions: read, it was a deposit of 700,000 and the payout
 * in no figure. It must stay unread.
 */
async function expectUnreadWithoutLastTwo(c: Scenario, topUp: string, vault: string, from: number) {
  const dropBoth: Rewrite = (result) => {
    result.transaction.message.instructions.splice(-2, 2);
    result.meta.innerInstructions = [];
  };
  const { s } = await readThrough(c, lyingNode(h.rpc, new Map([[topUp, dropBoth]])), vault, from);
  expect(s.depositsUnits).toBe(0n);
  expect(s.complete).toBe(false);
  expect(s.unread).toEqual({
    lines: 1,
    why: `line ${topUp} not read: the vault's credit balance rose by 700000, more than the instructions served bring in`,
  });
}

describe("a top-up and a payout inside a call left out, beside a new mint naming the vault", () => {
  // A mint made beside, every account whose balance moves named after the one account its
  // instruction reads: the token program reads no more and moves nothing, and each change read
  // as moved by a token instruction of no known amount.
  const decoys = {
    "SPL Token's InitializeMint2": (named: string[]) => h.op.newMintIxs(named).ixs,
    "Token-2022's InitializeTransferFeeConfig": (named: string[]) =>
      h.op.token2022MintIxs({ transferFeeBps: 0 }, named).ixs,
  };
  for (const [name, decoy] of Object.entries(decoys)) {
    it(`leaves the line unread beside ${name}: it moves none of the accounts it names`, async () => {
      const c = await scenario();
      const { vault } = await c.pinKey(3);
      const from = await periodStart();
      const user = localSigner(localKeyNames.user(3));
      const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
      const thief = h.op.attackerAccount(0n);
      const topUp = h.op.send(
        [
          h.op.newOwnerAtaIx(),
          ...decoy([vault, wallet, thief]),
          h.op.transfer(wallet, vault, 1_000_000n, { authority: user.address }),
          h.op.transfer(vault, thief, 300_000n),
        ],
        { extraSigners: [user] },
      ).signature;
      await expectUnreadWithoutLastTwo(c, topUp, vault, from);
    });
  }
});

describe("a Token-2022 credit vault's top-up and payout left out, beside a mint naming the vault", () => {
  // Token-2022 runs the vault's instructions too, so only what the instruction's data says it
  // may move counts: a metadata pointer's (a kind not named, `unknown:39`) or a transfer fee's
  // configuration moves no account, whatever accounts follow the one it reads.
  const decoys = {
    "InitializeMetadataPointer (unknown:39)": { metadataPointer: true },
    InitializeTransferFeeConfig: { transferFeeBps: 0 },
  };
  for (const [name, opts] of Object.entries(decoys)) {
    it(`leaves the line unread beside ${name}`, async () => {
      const op = h.op;
      const mint = op.createToken2022Mint();
      const user = localSigner(localKeyNames.user(3));
      const vault = op.createToken2022Account(op.escrowAuthority.address, mint);
      const wallet = op.createToken2022Account(user.address, mint, 1_000_000n);
      const thief = op.createToken2022Account(op.attacker.address, mint);
      const c = await scenario({ ...localnetProfile, usdcMint: mint });
      const from = await periodStart();
      const topUp = op.send(
        [
          op.newOwnerAtaIx(),
          ...op.token2022MintIxs(opts, [vault, wallet, thief]).ixs,
          op.transfer2022(wallet, vault, 1_000_000n, mint, user.address),
          op.transfer2022(vault, thief, 300_000n, mint),
        ],
        { extraSigners: [user] },
      ).signature;
      expect(op.deltas(topUp).get(vault)).toEqual({ mint, delta: 700_000n });
      await expectUnreadWithoutLastTwo(c, topUp, vault, from);
      // An honest node's answer reads it: the payout is an unreceipted debit.
      const honest = await readThrough(c, h.rpc, vault, from);
      expect(honest.s.unexplained).toEqual([
        expect.objectContaining({ signature: topUp, amountUnits: -300_000n }),
      ]);
      expect(honest.s.depositsUnits).toBe(1_000_000n);
    });
  }
});

describe("a lock whose call a lying node serves as [] with an Approve of the vault in it", () => {
  it("is not verified: the balances move by no instruction served, so more may be unseen", async () => {
    const c = await scenario();
    const plan = h.op.plan({ keyIndex: 2 });
    const delegate = h.op.attackerAccount(0n);
    const escrowTx = h.op.send([
      h.op.newOwnerAtaIx(),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
      h.op.approve(plan.vault, delegate, 1_000_000_000n),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    await c.flush();
    await h.finalized();
    // The lock and the Approve inside one call the node serves no instruction of: the balances
    // are a lock's, no instruction is forbidden, and the job read as verified.
    const dropBoth: Rewrite = (result) => {
      result.transaction.message.instructions.splice(-2, 2);
      result.meta.innerInstructions = [];
    };
    const verifier = c.verifierOver(lyingNode(h.rpc, new Map([[escrowTx, dropBoth]])));
    await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    expect(await c.outcome(plan.jobId)).toEqual({ verdict: "partially_verified", failing: [] });
  });

  it("leaves the vault's line unread: read as a lock, its Approve gave no delegate finding", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(2);
    const from = await periodStart();
    const plan = h.op.plan({ keyIndex: 2 });
    const escrowTx = h.op.send([
      h.op.newOwnerAtaIx(),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
      h.op.transfer(vault, h.op.accounts.escrowVault, plan.lock),
      h.op.approve(vault, h.op.attackerAccount(0n), 1_000_000_000n),
    ]).signature;
    const dropBoth: Rewrite = (result) => {
      result.transaction.message.instructions.splice(-2, 2);
      result.meta.innerInstructions = [];
    };
    const { s } = await readThrough(
      c,
      lyingNode(h.rpc, new Map([[escrowTx, dropBoth]])),
      vault,
      from,
    );
    expect(s.delegateApprovals).toEqual([]);
    expect(s.complete).toBe(false);
    expect(s.unread).toEqual({
      lines: 1,
      why: `line ${escrowTx} not read: token balances in its transaction moved by no instruction served`,
    });
    const honest = await readThrough(c, h.rpc, vault, from);
    expect(honest.s.delegateApprovals).toEqual([
      expect.objectContaining({ signature: escrowTx, finding: "vault_delegate_approved" }),
    ]);
  });
});

describe("an Approve of the vault inside a call that moves no money, served as []", () => {
  it("is said by the nightly run from the vault's balance read, which names the delegate", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = await periodStart();
    const delegate = h.op.attackerAccount(0n);
    const approveTx = h.op.send([
      h.op.newOwnerAtaIx(),
      h.op.approve(vault, delegate, 400_000n),
    ]).signature;
    onTestFinished(() => {
      h.op.send([h.op.revoke(vault)]);
    });
    // The node leaves the Approve out, as it would a call's inner instruction: no balance moved,
    // so nothing in the transaction served says anything happened to the vault.
    const rpc = lyingNode(h.rpc, new Map([[approveTx, dropLast("empty")]]));
    const { reader, s } = await readThrough(c, rpc, vault, from);
    expect(s.delegateApprovals).toEqual([]);
    expect(s.unexplained).toEqual([]);

    const run = await nightlyOver(c, c.verifierOver(rpc), reader, from);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(run.ledger?.vaultDelegatesNow).toEqual([{ vault, delegate, delegatedUnits: "400000" }]);
  });
});

describe("a SetAuthority of the vault served by a node that names no owner in token balances", () => {
  it("is said by the nightly run from the vault's balance read, which names the owner", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = await periodStart();
    h.op.send([h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    onTestFinished(() => h.op.giveBackVault(vault));
    const rpc = ownerlessNode(h.rpc);
    const lines: string[] = [];
    const logger = createLogger({ level: "warn" }, { write: (line) => lines.push(line) });
    const { reader, s } = await readThrough(c, rpc, vault, from, logger);
    // No transaction served says whose the vault is after it.
    expect(s.ownerChanges).toEqual([]);
    // serve's ledger round says it from the balance read.
    expect(lines.map((l) => JSON.parse(l))).toContainEqual(
      expect.objectContaining({ vault, owner: h.op.attacker.address }),
    );

    const run = await nightlyOver(c, c.verifierOver(rpc), reader, from);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(run.ledger?.vaultOwnersNow).toEqual([{ vault, owner: h.op.attacker.address }]);
  });

  it("is one finding when a transaction read names the same owner too", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = await periodStart();
    const handover = h.op.send([
      h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address),
    ]).signature;
    onTestFinished(() => h.op.giveBackVault(vault));
    const { reader } = await readThrough(c, h.rpc, vault, from);
    const run = await nightlyOver(c, c.verifierOver(h.rpc), reader, from);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    // (The earlier test's SetAuthority of this vault is said too, before the window.)
    const inWindow = run.ledger?.vaultOwnerChanges.filter((o) => !o.beforeWindow);
    expect(inWindow?.map((o) => [o.finding, o.signature, o.owner])).toEqual([
      ["vault_owner_changed", handover, h.op.attacker.address],
      ["vault_owner_now", handover, h.op.attacker.address],
    ]);
    expect(run.ledger?.vaultOwnersNow).toEqual([]);
  });
});

describe("a node that names no owner in token balances nor in the vault's account", () => {
  it("leaves the vault's owner unproven: the nightly run says none was named, exit 1", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = await periodStart();
    h.op.send([h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    onTestFinished(() => h.op.giveBackVault(vault));
    const ownerless = ownerlessNode(h.rpc);
    const rpc = new Proxy(ownerless, {
      get(target, key, receiver) {
        if (key !== "getTokenAccount") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getTokenAccount"]>) => {
          const read = await target.getTokenAccount(...args);
          return read.account ? { ...read, account: { ...read.account, owner: null } } : read;
        };
      },
    });
    const { reader } = await readThrough(c, rpc, vault, from);
    const run = await nightlyOver(c, c.verifierOver(rpc), reader, from);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(run.ledger?.vaultOwnersNow).toEqual([{ vault, owner: null }]);
  });
});

describe("an Approve of the window whose delegate has spent part of it", () => {
  it("is said by the nightly run with what the delegate may still spend, beside the Approve", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = await periodStart();
    const approveTx = h.op.send([h.op.approve(vault, h.op.attacker.address, 400_000n)]).signature;
    onTestFinished(() => {
      h.op.send([h.op.revoke(vault)]);
    });
    h.op.send([
      h.op.transfer(vault, h.op.attackerAccount(0n), 150_000n, {
        authority: h.op.attacker.address,
      }),
    ]);
    const { reader } = await readThrough(c, h.rpc, vault, from);
    const run = await nightlyOver(c, c.verifierOver(h.rpc), reader, from);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    // (An earlier test's Approve of this vault is said too, as before the window.)
    expect(run.ledger?.vaultDelegateApprovals.filter((d) => !d.beforeWindow)).toEqual([
      expect.objectContaining({ vault, signature: approveTx, delegate: h.op.attacker.address }),
    ]);
    // Before, the Approve stood for the read: no word that 250,000 may still go.
    expect(run.ledger?.vaultDelegatesNow).toEqual([
      { vault, delegate: h.op.attacker.address, delegatedUnits: "250000" },
    ]);
  });
});
