import { createHash } from "node:crypto";
import {
  Connection,
  Keypair,
  LAMPORTS_PER_SOL,
  SystemProgram,
  Transaction,
  type VersionedTransactionResponse,
} from "@solana/web3.js";
import bs58 from "bs58";
import { beforeAll, describe, expect, it } from "vitest";
import { TOKEN_2022_PROGRAM_ID } from "../src/localnet/keys.js";
import { findModel, priceUnits } from "../src/localnet/models.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { Operator } from "./support/operator.js";
import { useStarted } from "./support/started-life.js";

const SLOT_MS = 400;
let connection: Connection;
// The chain's clock is moved by hand: every commitment level is observed however loaded the
// machine is, and nothing waits on wall-clock time.
let now = Date.now();
const world = useStarted(() =>
  startLocalWorld({ slotMs: SLOT_MS, finalitySlots: 3, now: () => now }),
);

beforeAll(() => {
  connection = new Connection(world.rpcUrl, {
    commitment: "confirmed",
    disableRetryOnRateLimit: true,
  });
});

interface JobReceipt {
  jobId: string;
  escrowTx: string;
  settlementTx: string;
  worker: string;
  model: string;
  completionTokens: number;
  maxTokens: number;
}

async function runJob(model: string, content: string, maxTokens?: number): Promise<JobReceipt> {
  const response = await fetch(`${world.decentralBaseUrl}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${world.apiKeys[1]}`, "content-type": "application/json" },
    body: JSON.stringify({
      model,
      messages: [{ role: "user", content }],
      ...(maxTokens ? { max_tokens: maxTokens } : {}),
    }),
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { usage: { completion_tokens: number } };
  return {
    jobId: response.headers.get("x-decentral-job-id")!,
    escrowTx: response.headers.get("x-decentral-tx-signature")!,
    settlementTx: response.headers.get("x-decentral-settlement-tx")!,
    worker: response.headers.get("x-decentral-worker")!,
    model,
    completionTokens: body.usage.completion_tokens,
    maxTokens: maxTokens ?? 2000,
  };
}

async function rpc(method: string, params: unknown[] = []) {
  const response = await fetch(world.rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 7, method, params }),
  });
  return (await response.json()) as {
    id: unknown;
    result?: unknown;
    error?: { code: number; message: string };
  };
}

/** Moves the chain past finality and checks every signature is finalized. */
async function finalize(signatures: string[]): Promise<void> {
  now += 3 * SLOT_MS;
  const { value } = await connection.getSignatureStatuses(signatures, {
    searchTransactionHistory: true,
  });
  expect(value.map((s) => s?.confirmationStatus)).toEqual(signatures.map(() => "finalized"));
}

/** Token balance change of every token account in a transaction, keyed by account. */
function tokenDeltas(
  tx: VersionedTransactionResponse,
): Map<string, { owner?: string; delta: bigint }> {
  const keys = tx.transaction.message.getAccountKeys({
    accountKeysFromLookups: tx.meta?.loadedAddresses,
  });
  const deltas = new Map<string, { owner?: string; delta: bigint }>();
  for (const b of tx.meta?.preTokenBalances ?? []) {
    const key = keys.get(b.accountIndex)!.toBase58();
    deltas.set(key, { owner: b.owner, delta: -BigInt(b.uiTokenAmount.amount) });
  }
  for (const b of tx.meta?.postTokenBalances ?? []) {
    const key = keys.get(b.accountIndex)!.toBase58();
    const prev = deltas.get(key)?.delta ?? 0n;
    deltas.set(key, { owner: b.owner, delta: prev + BigInt(b.uiTokenAmount.amount) });
  }
  return deltas;
}

describe("local chain through @solana/web3.js", () => {
  it("shows a job's escrow and settlement going processed, then confirmed, then finalized", async () => {
    const job = await runJob("qwen3-8b", "watch my commitment");
    const signatures = [job.escrowTx, job.settlementTx];
    const seen: { level: string | undefined; confirmations: number | null }[] = [];
    for (let slots = 0; slots <= 3; slots++) {
      const { value } = await connection.getSignatureStatuses(signatures);
      expect(value.map((s) => s?.err)).toEqual([null, null]);
      expect(value[0]?.confirmationStatus).toBe(value[1]?.confirmationStatus);
      seen.push({ level: value[1]?.confirmationStatus, confirmations: value[1]!.confirmations });
      now += SLOT_MS;
    }
    expect(seen).toEqual([
      { level: "processed", confirmations: 0 },
      { level: "confirmed", confirmations: 1 },
      { level: "confirmed", confirmations: 2 },
      { level: "finalized", confirmations: null },
    ]);
  });

  it("moves tokens exactly as the reference model says, for staked and unstaked workers", async () => {
    const jobs: JobReceipt[] = [];
    // Workers are assigned round-robin, so four jobs reach both staked and unstaked workers.
    for (const [i, model] of [
      "phi-4-mini",
      "qwen3-8b",
      "mistral-small-3.1-24b",
      "llama-3.3-70b",
    ].entries()) {
      jobs.push(
        await runJob(
          model,
          `balance check ${i} ${"long ".repeat(i * 40)}`,
          i === 2 ? 900 : undefined,
        ),
      );
    }
    await finalize(jobs.flatMap((j) => [j.escrowTx, j.settlementTx]));
    const rates = new Set<number>();
    for (const job of jobs) {
      const model = findModel(job.model)!;
      const lock = priceUnits(model, job.maxTokens);
      const charge = priceUnits(model, job.completionTokens);
      const worker = world.accounts.workers.find((w) => w.address === job.worker)!;
      rates.add(worker.rateBps);
      const workerShare = (charge * BigInt(worker.rateBps)) / 10_000n;
      const creditVault = world.accounts.creditVaults[1]!.vault;

      const escrow = await connection.getTransaction(job.escrowTx, {
        commitment: "finalized",
        maxSupportedTransactionVersion: 0,
      });
      expect(escrow?.meta?.err).toBeNull();
      const escrowDeltas = tokenDeltas(escrow!);
      expect(escrowDeltas.get(creditVault)?.delta).toBe(-lock);
      expect(escrowDeltas.get(world.accounts.escrowVault)?.delta).toBe(lock);

      const settlement = await connection.getTransaction(job.settlementTx, {
        commitment: "finalized",
        maxSupportedTransactionVersion: 0,
      });
      expect(settlement?.meta?.err).toBeNull();
      const deltas = tokenDeltas(settlement!);
      expect(deltas.get(worker.tokenAccount)).toEqual({
        owner: worker.address,
        delta: workerShare,
      });
      expect(deltas.get(world.accounts.treasury.tokenAccount)?.delta).toBe(charge - workerShare);
      // A job that used its whole lock returns nothing, so the credit vault is not touched.
      expect(deltas.get(creditVault)?.delta ?? 0n).toBe(lock - charge);
      expect(deltas.get(world.accounts.escrowVault)?.delta).toBe(-lock);

      const parsed = await connection.getParsedTransaction(job.settlementTx, {
        commitment: "finalized",
        maxSupportedTransactionVersion: 0,
      });
      const memos = parsed!.transaction.message.instructions
        .filter((ix) => "program" in ix && ix.program === "spl-memo")
        .map((ix) => ("parsed" in ix ? ix.parsed : null));
      expect(memos).toEqual([`decentral:settle:${job.jobId}`]);
    }
    expect([...rates].sort()).toEqual([7500, 8500]);
  });

  it("serves version-0 settlements with loaded addresses, and refuses them without maxSupportedTransactionVersion", async () => {
    let lookupJob: JobReceipt | undefined;
    for (let i = 0; i < 3 && !lookupJob; i++) {
      const job = await runJob("phi-4-mini", `version probe ${i}`);
      const truth = (await (await fetch(`${world.simulatorUrl}/sim/jobs/${job.jobId}`)).json()) as {
        settlementShape: string;
      };
      if (truth.settlementShape === "v0-lookup") lookupJob = job;
    }
    expect(lookupJob).toBeDefined();
    await finalize([lookupJob!.settlementTx, lookupJob!.escrowTx]);
    const refused = await rpc("getTransaction", [
      lookupJob!.settlementTx,
      { commitment: "confirmed" },
    ]);
    expect(refused.error?.code).toBe(-32015);

    const tx = await connection.getTransaction(lookupJob!.settlementTx, {
      commitment: "confirmed",
      maxSupportedTransactionVersion: 0,
    });
    expect(tx?.version).toBe(0);
    const loaded = tx?.meta?.loadedAddresses;
    expect(loaded?.writable.map((k) => k.toBase58())).toContain(world.accounts.escrowVault);
    expect(loaded?.readonly.map((k) => k.toBase58())).toContain(world.accounts.mint);
    const parsed = await connection.getParsedTransaction(lookupJob!.settlementTx, {
      commitment: "confirmed",
      maxSupportedTransactionVersion: 0,
    });
    const fromTable = parsed!.transaction.message.accountKeys
      .filter((k) => k.source === "lookupTable")
      .map((k) => k.pubkey.toBase58());
    expect(fromTable).toContain(world.accounts.escrowVault);
    const legacy = await rpc("getTransaction", [lookupJob!.escrowTx, { commitment: "confirmed" }]);
    expect(
      (legacy.result as { transaction: { signatures: string[] } }).transaction.signatures[0],
    ).toBe(lookupJob!.escrowTx);
    expect(legacy.result).not.toHaveProperty("version");
  });

  it("returns a transaction only once it reached the asked commitment, and never at processed", async () => {
    const job = await runJob("phi-4-mini", "commitment gate");
    const early = await rpc("getTransaction", [
      job.escrowTx,
      { commitment: "finalized", maxSupportedTransactionVersion: 0 },
    ]);
    expect(early.result).toBeNull();
    const processed = await rpc("getTransaction", [
      job.escrowTx,
      { commitment: "processed", maxSupportedTransactionVersion: 0 },
    ]);
    expect(processed.error?.code).toBe(-32602);
    await finalize([job.escrowTx]);
    const late = await rpc("getTransaction", [
      job.escrowTx,
      { commitment: "finalized", maxSupportedTransactionVersion: 0, encoding: "base64" },
    ]);
    expect(late.result).toMatchObject({ transaction: [expect.any(String), "base64"] });
  });

  it("answers unknown methods, bad params and batches the way a node does", async () => {
    expect((await rpc("getFooBar")).error?.code).toBe(-32601);
    expect((await rpc("getSignatureStatuses", ["not-an-array"])).error?.code).toBe(-32602);
    expect((await rpc("getTransaction", ["bad-signature"])).error?.code).toBe(-32602);
    const tooMany = Array.from({ length: 257 }, () => "1".repeat(64));
    expect((await rpc("getSignatureStatuses", [tooMany])).error?.code).toBe(-32602);

    const batch = await fetch(world.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([
        { jsonrpc: "2.0", id: "b", method: "getSlot", params: [{ commitment: "processed" }] },
        { jsonrpc: "2.0", id: "a", method: "nope" },
        { jsonrpc: "2.0", id: 3, method: "getHealth" },
      ]),
    });
    const replies = (await batch.json()) as {
      id: unknown;
      result?: unknown;
      error?: { code: number };
    }[];
    expect(replies.map((r) => r.id)).toEqual(["b", "a", 3]);
    expect(typeof replies[0]!.result).toBe("number");
    expect(replies[1]!.error?.code).toBe(-32601);
    expect(replies[2]!.result).toBe("ok");
  });

  it("lands a transaction a client signs and sends, and rejects its replay", async () => {
    const seed = createHash("sha256").update("decentral-audit/localnet/worker-2").digest();
    const from = Keypair.fromSeed(seed);
    const to = Keypair.generate().publicKey;
    const { blockhash, lastValidBlockHeight } = await connection.getLatestBlockhash();
    expect(lastValidBlockHeight).toBeGreaterThan(await connection.getBlockHeight("processed"));
    const tx = new Transaction({ feePayer: from.publicKey, blockhash, lastValidBlockHeight }).add(
      SystemProgram.transfer({
        fromPubkey: from.publicKey,
        toPubkey: to,
        lamports: LAMPORTS_PER_SOL / 100,
      }),
    );
    tx.sign(from);
    const signature = await connection.sendRawTransaction(tx.serialize());
    const status = await connection.getSignatureStatus(signature);
    expect(status.value?.err).toBeNull();
    expect(await connection.getBalance(to, "processed")).toBe(LAMPORTS_PER_SOL / 100);
    await expect(connection.sendRawTransaction(tx.serialize())).rejects.toThrow(/AlreadyProcessed/);

    // base58 is a node's default wire encoding.
    const second = new Transaction({
      feePayer: from.publicKey,
      blockhash,
      lastValidBlockHeight,
    }).add(SystemProgram.transfer({ fromPubkey: from.publicKey, toPubkey: to, lamports: 5 }));
    second.sign(from);
    const sent = await rpc("sendTransaction", [
      bs58.encode(second.serialize()),
      { skipPreflight: true },
    ]);
    expect(sent.result).toBe(bs58.encode(second.signature!));
    expect(await connection.getBalance(to, "processed")).toBe(LAMPORTS_PER_SOL / 100 + 5);

    const stale = new Transaction({
      feePayer: from.publicKey,
      blockhash: "11111111111111111111111111111111",
      lastValidBlockHeight,
    }).add(SystemProgram.transfer({ fromPubkey: from.publicKey, toPubkey: to, lamports: 1 }));
    stale.sign(from);
    await expect(connection.sendRawTransaction(stale.serialize())).rejects.toThrow(
      /BlockhashNotFound/,
    );
  });

  it("stamps each slot's block with the time the slot began", async () => {
    now += 2_500;
    const slot = await connection.getSlot("processed");
    const blockTime = (await connection.getBlockTime(slot))!;
    expect(blockTime * 1000).toBeLessThanOrEqual(now);
    expect(blockTime * 1000).toBeGreaterThan(now - SLOT_MS - 1000);
    await expect(connection.getBlockTime(slot + 1)).rejects.toThrow(/not available/);
  });

  it("lists Token-2022 accounts with extensions in token balances and reads them as a node does", async () => {
    const op = new Operator(world, { advance: (ms) => (now += ms), now: () => now });
    // 1% of every transfer is withheld in the receiving account, outside its balance.
    const mint = op.createToken2022Mint({ transferFeeBps: 100 });
    const from = op.createToken2022Account(op.escrowAuthority.address, mint, 1_000_000n);
    const to = op.createToken2022Account(op.attacker.address, mint);
    const sent = op.send([op.transfer2022(from, to, 500_000n, mint)]);
    await finalize([sent.signature]);

    const tx = await connection.getTransaction(sent.signature, {
      commitment: "finalized",
      maxSupportedTransactionVersion: 0,
    });
    const keys = tx!.transaction.message.getAccountKeys();
    const balances = (tx!.meta?.postTokenBalances ?? []).map((b) => ({
      account: keys.get(b.accountIndex)!.toBase58(),
      mint: b.mint,
      owner: b.owner,
      programId: b.programId,
      amount: b.uiTokenAmount.amount,
      decimals: b.uiTokenAmount.decimals,
    }));
    const listed = (account: string, owner: string, amount: string) => ({
      account,
      mint,
      owner,
      programId: TOKEN_2022_PROGRAM_ID,
      amount,
      decimals: 6,
    });
    expect(balances).toEqual([
      listed(from, op.escrowAuthority.address, "500000"),
      listed(to, op.attacker.address, "495000"),
    ]);
    expect(tokenDeltas(tx!).get(from)?.delta).toBe(-500_000n);

    const balance = await rpc("getTokenAccountBalance", [to]);
    expect(balance.result).toMatchObject({ value: { amount: "495000", decimals: 6 } });
    const info = await rpc("getAccountInfo", [to, { encoding: "jsonParsed" }]);
    expect(info.result).toMatchObject({
      value: {
        owner: TOKEN_2022_PROGRAM_ID,
        // 165 bytes of account, its type byte, and the TransferFeeAmount extension.
        space: 178,
        data: {
          program: "spl-token-2022",
          parsed: { type: "account", info: { mint, tokenAmount: { amount: "495000" } } },
        },
      },
    });
  });
});
