import { beforeAll, describe, expect, it } from "vitest";
import { localSigner } from "../src/localnet/keys.js";
import { addressBytes } from "../src/localnet/wire.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { chainSecondAfter } from "./support/finality.js";
import { nightlyOnChain, vaultReader, vaultStatementSince } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { rewritingNode } from "./support/rewriting-node.js";

/** SPL Token's wrapped SOL: a token account of it holds its lamports above rent as its amount. */
const NATIVE_MINT = "So11111111111111111111111111111111111111112";
const SPL_TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const wrappedSolProfile: Profile = { ...localnetProfile, usdcMint: NATIVE_MINT };

const h = useAdversaryHarness();
beforeAll(() => {
  h.op.chain.setMint(NATIVE_MINT, h.op.treasuryOwner.address, 0n, 9);
});

/** SyncNative: the wrapped-SOL account's amount becomes its lamports above rent. */
const syncNative = (account: string) => ({
  programId: SPL_TOKEN,
  accounts: [{ address: account, signer: false, writable: true }],
  data: Uint8Array.from([17]),
});

/** A wrapped-SOL credit vault of the escrow authority, empty, and a period starting after it. */
async function emptyVault() {
  const vault = h.op.createTokenAccount(h.op.escrowAuthority.address, NATIVE_MINT);
  return { vault, from: await chainSecondAfter(h.world) };
}

/**
 * Creates `vault` holding rent + `amount` lamports and initializes it as the escrow
 * authority's wrapped-SOL account: its amount is those `amount` lamports (the vault signs).
 */
function openWithLamports(vault: string, amount: bigint) {
  return [
    h.op.createAccountIx(vault, 165, SPL_TOKEN, amount),
    {
      programId: SPL_TOKEN,
      accounts: [
        { address: vault, signer: false, writable: true },
        { address: NATIVE_MINT, signer: false, writable: false },
      ],
      data: Uint8Array.from([18, ...addressBytes(h.op.escrowAuthority.address)]),
    },
  ];
}

describe("the statement of a wrapped-SOL credit vault", () => {
  it("reads lamports sent to the vault and made credits by SyncNative as a deposit", async () => {
    const c = await h.scenario(wrappedSolProfile);
    const { vault, from } = await emptyVault();
    // The customer wraps SOL into the vault as wallets do: lamports, then SyncNative.
    h.op.send([h.op.lamportsTo(vault, 1_000_000n), syncNative(vault)]);
    expect(h.op.balance(vault)).toBe(1_000_000n);

    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.unread).toBeNull();
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.unexplained).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });

  it("lets the nightly run over a window holding only such a top-up exit 0", async () => {
    const c = await h.scenario(wrappedSolProfile);
    const { vault, from } = await emptyVault();
    h.op.send([h.op.lamportsTo(vault, 250_000n), syncNative(vault)]);
    await h.finalized();
    const run = await nightlyOnChain(h, c, vaultReader(h, c, vault)).nightly({
      from,
      to: Date.now(),
    });
    expect(run).toMatchObject({ exitCode: 0 });
  });

  it("reads a vault opened with lamports above its rent, its first amount, as a deposit", async () => {
    const c = await h.scenario(wrappedSolProfile);
    const from = await chainSecondAfter(h.world);
    // As a wallet wraps SOL into a new account: created holding rent + 400,000 lamports, then
    // initialized, its amount those 400,000.
    const account = localSigner(`wrapped-sol/${from}`);
    const vault = account.address;
    h.op.send(openWithLamports(vault, 400_000n), { extraSigners: [account] });
    expect(h.op.balance(vault)).toBe(400_000n);

    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.unread).toBeNull();
    expect(s.depositsUnits).toBe(400_000n);
    expect(s.differenceUnits).toBe(0n);
  });

  it("shows the operator closing the vault, its wrapped lamports sent to itself, as an unreceipted debit", async () => {
    const c = await h.scenario(wrappedSolProfile);
    const { vault, from } = await emptyVault();
    h.op.send([h.op.lamportsTo(vault, 700_000n), syncNative(vault)]);
    const theft = h.op.send([h.op.closeAccount(vault, h.op.attacker.address)]).signature;

    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({
        finding: "unreceipted_debit",
        signature: theft,
        amountUnits: -700_000n,
      }),
    ]);
    expect(s.unexplainedOutUnits).toBe(700_000n);
    expect(s.depositsUnits).toBe(700_000n);
  });

  it("leaves unread, never a deposit, the vault closed to the operator and made again in one transaction holding more", async () => {
    const c = await h.scenario(wrappedSolProfile);
    const from = await chainSecondAfter(h.world);
    const account = localSigner(`wrapped-sol/reopened/${from}`);
    const vault = account.address;
    h.op.send(openWithLamports(vault, 700_000n), { extraSigners: [account] });
    h.op.nextSlot();
    // One transaction: the 700,000 go to the operator with the vault's rent, and the vault is
    // made again at its address holding 1,000,000 of the operator's lamports. Net +300,000.
    h.op.send(
      [h.op.closeAccount(vault, h.op.attacker.address), ...openWithLamports(vault, 1_000_000n)],
      { extraSigners: [account] },
    );
    expect(h.op.balance(vault)).toBe(1_000_000n);

    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.depositsUnits).toBe(700_000n);
    expect(s.unread).toEqual({ lines: 1, why: expect.stringContaining("rose by 300000") });
    expect(s.differenceUnits).toBeNull();
  });

  it("leaves unread the vault made again holding more, its close left out by a lying node", async () => {
    const c = await h.scenario(wrappedSolProfile);
    const from = await chainSecondAfter(h.world);
    const account = localSigner(`wrapped-sol/close-unserved/${from}`);
    const vault = account.address;
    h.op.send(openWithLamports(vault, 700_000n), { extraSigners: [account] });
    h.op.nextSlot();
    const reopened = h.op.send(
      [h.op.closeAccount(vault, h.op.attacker.address), ...openWithLamports(vault, 1_000_000n)],
      { extraSigners: [account] },
    ).signature;
    // The node serves the transaction without its CloseAccount, as it would serve a call that
    // closed the vault with no inner instructions.
    type Answer = { transaction: { message: { instructions: unknown[] } } };
    const node = rewritingNode(h.rpc, (signature) =>
      signature === reopened
        ? (result: Answer) => {
            result.transaction.message.instructions.shift();
          }
        : undefined,
    );

    const s = await vaultStatementSince(h, c, vault, from, node);
    expect(s.depositsUnits).toBe(700_000n);
    expect(s.unread).toEqual({ lines: 1, why: expect.stringContaining("rose by 300000") });
  });

  it("leaves unread a lock from the vault beside an Approve of it, inside a call a lying node serves as []", async () => {
    const c = await h.scenario(wrappedSolProfile);
    const { vault, from } = await emptyVault();
    h.op.send([h.op.lamportsTo(vault, 1_000_000n), syncNative(vault)]);
    const escrow = h.op.createTokenAccount(h.op.escrowAuthority.address, NATIVE_MINT);
    h.op.nextSlot();
    const escrowTx = h.op.send([
      h.op.newOwnerAtaIx(),
      h.op.memo("decentral:escrow:wrapped-sol-job"),
      h.op.transfer(vault, escrow, 300_000n, { mint: NATIVE_MINT, decimals: 9 }),
      h.op.approve(vault, h.op.attackerAccount(0n), 1_000_000_000n),
    ]).signature;
    // Served as if the lock and the Approve ran inside the call, its inner instructions `[]`:
    // read as a lock, the Approve gave no delegate finding.
    type Answer = {
      transaction: { message: { instructions: unknown[] } };
      meta: { innerInstructions: unknown[] | null };
    };
    const node = rewritingNode(h.rpc, (signature) =>
      signature === escrowTx
        ? (result: Answer) => {
            result.transaction.message.instructions.splice(-2, 2);
            result.meta.innerInstructions = [];
          }
        : undefined,
    );

    const s = await vaultStatementSince(h, c, vault, from, node);
    expect(s.delegateApprovals).toEqual([]);
    expect(s.unread).toEqual({
      lines: 1,
      why: `line ${escrowTx} not read: token balances in its transaction moved by no instruction served`,
    });
  });
});
