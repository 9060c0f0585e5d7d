import type { LocalChain, SendOutcome, StoredTransaction } from "./chain.js";
import {
  type LocalAccounts,
  type LocalSigner,
  localKeyNames,
  localSigner,
  SYSTEM_PROGRAM_ID,
} from "./keys.js";
import { memoInstruction, transferCheckedInstruction } from "./token-program.js";
import { addressBytes, compileMessage, type InstructionSpec, signTransaction } from "./wire.js";

/** Bytes of an SPL token account. */
const TOKEN_ACCOUNT_SIZE = 165;

/**
 * The Decentral reference model's money movements as real SPL Token transfers with an SPL Memo
 * naming the job: escrow lock, settlement (worker, treasury, remainder) and refund. The escrow
 * authority signs every transfer (it owns the credit vaults and the escrow vault); the payer
 * pays the fees.
 */

export type SettlementShape = "legacy" | "v0" | "v0-lookup";

export interface SettlementInput {
  jobId: string;
  creditVault: string;
  workerTokenAccount: string;
  workerShare: bigint;
  treasuryShare: bigint;
  refund: bigint;
  shape: SettlementShape;
}

/** One movement of a credit vault as the simulator made it (`GET /sim/vaults/{vault}/movements`). */
export interface VaultMovement {
  signature: string;
  slot: number;
  blockTime: number;
  kind: "lock" | "settle" | "refund" | "deposit";
  /** The job the memo names (null for a deposit). */
  jobId: string | null;
  /** Change of the vault's balance, from the transaction's own token balances (0 if it failed). */
  deltaUnits: bigint;
}

export class EscrowLedger {
  /** Every transaction that named a credit vault, by vault, oldest first: the ground truth. */
  private readonly movementsByVault = new Map<string, VaultMovement[]>();

  constructor(
    private readonly chain: LocalChain,
    private readonly accounts: LocalAccounts,
    private readonly payer: LocalSigner,
    private readonly escrowAuthority: LocalSigner,
    /** Entries of `accounts.lookupTable`, as written at genesis. */
    private readonly lookupTableAddresses: readonly string[],
  ) {}

  /** Moves `units` from the credit vault into the escrow vault. */
  lock(jobId: string, creditVault: string, units: bigint): StoredTransaction {
    const tx = this.commit(
      [
        this.transfer(creditVault, this.accounts.escrowVault, units),
        memoInstruction(this.accounts.memoProgram, `decentral:escrow:${jobId}`),
      ],
      "legacy",
    );
    return this.note(tx, creditVault, "lock", jobId);
  }

  /** Pays worker and treasury from the escrow vault and returns the remainder to the credit vault. */
  settle(input: SettlementInput): StoredTransaction {
    const instructions: InstructionSpec[] = [
      this.transfer(this.accounts.escrowVault, input.workerTokenAccount, input.workerShare),
      this.transfer(
        this.accounts.escrowVault,
        this.accounts.treasury.tokenAccount,
        input.treasuryShare,
      ),
    ];
    if (input.refund > 0n) {
      instructions.push(this.transfer(this.accounts.escrowVault, input.creditVault, input.refund));
    }
    instructions.push(
      memoInstruction(this.accounts.memoProgram, `decentral:settle:${input.jobId}`),
    );
    const tx = this.commit(instructions, input.shape);
    return input.refund > 0n ? this.note(tx, input.creditVault, "settle", input.jobId) : tx;
  }

  /** Returns the whole lock to the credit vault (a timed-out job). */
  refund(jobId: string, creditVault: string, units: bigint): StoredTransaction {
    const tx = this.commit(
      [
        this.transfer(this.accounts.escrowVault, creditVault, units),
        memoInstruction(this.accounts.memoProgram, `decentral:refund:${jobId}`),
      ],
      "legacy",
    );
    return this.note(tx, creditVault, "refund", jobId);
  }

  /**
   * A customer's top-up: `units` from the key owner's wallet token account into its credit
   * vault, signed by the owner, with memo `decentral:deposit`. The wallet's token account is
   * credited first outside any transaction (the money was bought elsewhere).
   */
  deposit(creditVault: string, apiKeyIndex: number, units: bigint): StoredTransaction {
    const { owner, instructions } = this.depositFromWallet(creditVault, apiKeyIndex, units);
    const tx = this.commit(instructions, "legacy", [this.payer, owner]);
    return this.note(tx, creditVault, "deposit", null);
  }

  /**
   * A payment of `units` from key `apiKeyIndex`'s wallet into `creditVault` with memo
   * `decentral:deposit`, the wallet's token account credited first outside any transaction.
   */
  private depositFromWallet(creditVault: string, apiKeyIndex: number, units: bigint) {
    const owner = localSigner(localKeyNames.user(apiKeyIndex));
    const source = localSigner(`${localKeyNames.user(apiKeyIndex)}-usdc`).address;
    const held = this.chain.tokenAmount(source) ?? 0n;
    this.chain.setTokenAccount(source, this.accounts.mint, owner.address, held + units);
    const instructions: InstructionSpec[] = [
      transferCheckedInstruction({
        tokenProgram: this.accounts.tokenProgram,
        source,
        mint: this.accounts.mint,
        destination: creditVault,
        authority: owner.address,
        amount: units,
        decimals: this.accounts.decimals,
      }),
      memoInstruction(this.accounts.memoProgram, "decentral:deposit"),
    ];
    return { owner, instructions };
  }

  /**
   * Creates key `apiKeyIndex`'s credit vault (System CreateAccount signed by the vault's
   * keypair, then InitializeAccount3 owned by the escrow authority) and pays `units` into it
   * from the key owner's wallet, in one transaction: the vault's history starts with its
   * creation, as on a real chain, so a ledger that lists it back to the start can tell.
   */
  openVault(creditVault: string, apiKeyIndex: number, units: bigint): StoredTransaction {
    const lamports = this.chain.minimumBalanceForRentExemption(TOKEN_ACCOUNT_SIZE);
    const create = new Uint8Array(52);
    const view = new DataView(create.buffer);
    view.setUint32(0, 0, true);
    view.setBigUint64(4, lamports, true);
    view.setBigUint64(12, BigInt(TOKEN_ACCOUNT_SIZE), true);
    create.set(addressBytes(this.accounts.tokenProgram), 20);
    const signer = (address: string) => ({ address, signer: true, writable: true });
    const instructions: InstructionSpec[] = [
      {
        programId: SYSTEM_PROGRAM_ID,
        accounts: [signer(this.payer.address), signer(creditVault)],
        data: create,
      },
      {
        programId: this.accounts.tokenProgram,
        accounts: [
          { address: creditVault, signer: false, writable: true },
          { address: this.accounts.mint, signer: false, writable: false },
        ],
        data: Uint8Array.from([18, ...addressBytes(this.escrowAuthority.address)]),
      },
    ];
    const signers = [this.payer, localSigner(localKeyNames.creditVault(apiKeyIndex))];
    if (units > 0n) {
      const payment = this.depositFromWallet(creditVault, apiKeyIndex, units);
      instructions.push(...payment.instructions);
      signers.push(payment.owner);
    }
    const tx = this.commit(instructions, "legacy", signers);
    return this.note(tx, creditVault, "deposit", null);
  }

  /** The movements of one credit vault, oldest first. */
  movements(creditVault: string): readonly VaultMovement[] {
    return this.movementsByVault.get(creditVault) ?? [];
  }

  private note(
    tx: StoredTransaction,
    vault: string,
    kind: VaultMovement["kind"],
    jobId: string | null,
  ): StoredTransaction {
    const index = tx.accountKeys.indexOf(vault);
    const pre = tx.preTokenBalances.find((b) => b.accountIndex === index)?.amount ?? 0n;
    const post = tx.postTokenBalances.find((b) => b.accountIndex === index)?.amount ?? 0n;
    const list = this.movementsByVault.get(vault) ?? [];
    list.push({
      signature: tx.signature,
      slot: tx.slot,
      blockTime: tx.blockTime,
      kind,
      jobId,
      deltaUnits: index < 0 ? 0n : post - pre,
    });
    this.movementsByVault.set(vault, list);
    return tx;
  }

  /** Token balance of an account the ledger moves money through. */
  balance(tokenAccount: string): bigint {
    return this.chain.tokenAmount(tokenAccount) ?? 0n;
  }

  private transfer(source: string, destination: string, amount: bigint): InstructionSpec {
    return transferCheckedInstruction({
      tokenProgram: this.accounts.tokenProgram,
      source,
      mint: this.accounts.mint,
      destination,
      authority: this.escrowAuthority.address,
      amount,
      decimals: this.accounts.decimals,
    });
  }

  /**
   * Signs and sends; the transaction must be committed (it may still fail on chain, which is
   * how `failed-settlement` is produced). An identical earlier transaction (same job, same
   * amounts, same blockhash) is avoided by taking a fresh blockhash and trying once more.
   */
  private commit(
    instructions: InstructionSpec[],
    shape: SettlementShape,
    signers: LocalSigner[] = [this.payer, this.escrowAuthority],
  ): StoredTransaction {
    let outcome: SendOutcome | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      const blockhash =
        attempt === 0 ? this.chain.latestBlockhash().blockhash : this.chain.rotateBlockhash();
      const signersGiven = signers;
      const { messageBytes, signers: needed } = compileMessage({
        version: shape === "legacy" ? "legacy" : 0,
        feePayer: this.payer.address,
        recentBlockhash: blockhash,
        instructions,
        lookupTables:
          shape === "v0-lookup"
            ? [{ address: this.accounts.lookupTable, addresses: this.lookupTableAddresses }]
            : undefined,
      });
      const { wire } = signTransaction(messageBytes, needed, signersGiven);
      outcome = this.chain.send(wire);
      if (outcome.committed) return outcome.transaction;
      if (outcome.err !== "AlreadyProcessed") break;
    }
    throw new Error(
      `local transaction rejected: ${JSON.stringify(outcome?.committed ? null : outcome?.err)}`,
    );
  }
}
