import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { PublicKey } from "@solana/web3.js";

/**
 * Every key of the local world is derived from a fixed name, so two runs (and the verifier's
 * built-in `localnet` profile) agree on every address without sharing files.
 */

export const TOKEN_PROGRAM_ID = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
export const TOKEN_2022_PROGRAM_ID = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
export const MEMO_PROGRAM_ID = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr";
export const SYSTEM_PROGRAM_ID = "11111111111111111111111111111111";
export const ASSOCIATED_TOKEN_PROGRAM_ID = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
export const ADDRESS_LOOKUP_TABLE_PROGRAM_ID = "AddressLookupTab1e1111111111111111111111111";

/** Decimals of the local USDC-like mint. */
export const LOCAL_MINT_DECIMALS = 6;
/** API keys whose credit vaults are funded for any workload (indices 0..3). */
export const FUNDED_API_KEY_COUNT = 4;
/** Index of the API key whose vault holds less than any job's lock (402 on every request). */
export const LOW_BALANCE_API_KEY_INDEX = FUNDED_API_KEY_COUNT;
/** Number of workers; workers below `STAKED_WORKER_COUNT` are staked (85%), the rest not (75%). */
export const WORKER_COUNT = 4;
export const STAKED_WORKER_COUNT = 2;

const SEED_PREFIX = "decentral-audit/localnet/";
const API_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** A keypair of the local world: its address and a node:crypto key that signs fast. */
export interface LocalSigner {
  name: string;
  address: string;
  publicKey: Uint8Array;
  /** Signs with node:crypto (native Ed25519, far faster than a pure-JS signer). */
  signingKey: KeyObject;
}

/**
 * The keypair named `name`, from `Keypair.fromSeed(sha256("decentral-audit/localnet/" + name))`,
 * made by node:crypto: web3.js's pure-JS curve math, and node's PKCS#8 decoder, each cost
 * ~1-2 ms a key on a loaded runner, and a local world's operator makes hundreds.
 */
export function localSigner(name: string): LocalSigner {
  const seed = sha256(SEED_PREFIX + name);
  // node:crypto makes an Ed25519 private key from `d` (the seed) alone: `x` is required to be a
  // string and is not read.
  const signingKey = createPrivateKey({
    key: { kty: "OKP", crv: "Ed25519", d: seed.toString("base64url"), x: "" },
    format: "jwk",
  });
  const { x } = createPublicKey(signingKey).export({ format: "jwk" });
  const publicKey = new PublicKey(Buffer.from(x ?? "", "base64url"));
  return { name, address: publicKey.toBase58(), publicKey: publicKey.toBytes(), signingKey };
}

/** API key `i`: `dcntrl_live_` + 32 alphanumerics derived from sha256(".../api-key/" + i). */
export function localApiKey(index: number): string {
  const digest = sha256(`${SEED_PREFIX}api-key/${index}`);
  let suffix = "";
  for (const byte of digest) suffix += API_KEY_ALPHABET[byte % API_KEY_ALPHABET.length];
  return `dcntrl_live_${suffix}`;
}

/** The associated token account of `owner` (a wallet or a program address) for `mint`. */
function ata(owner: string, mint: string): string {
  const seeds = [owner, TOKEN_PROGRAM_ID, mint].map((key) => new PublicKey(key).toBuffer());
  const [address] = PublicKey.findProgramAddressSync(
    seeds,
    new PublicKey(ASSOCIATED_TOKEN_PROGRAM_ID),
  );
  return address.toBase58();
}

export interface LocalWorker {
  index: number;
  /** The worker's wallet, as named by `x-decentral-worker`. */
  address: string;
  /** The worker's associated token account of the mint. */
  tokenAccount: string;
  /** Staked workers earn 85% of a job's value, the others 75%. */
  staked: boolean;
  /** Worker share in basis points (8500 or 7500). */
  rateBps: number;
}

export interface LocalCreditVault {
  apiKeyIndex: number;
  /** The user's wallet behind the API key. */
  wallet: string;
  /** Token account owned by the escrow authority holding the key's credits. */
  vault: string;
}

/** Every address of the local world; all derived, none random. */
export interface LocalAccounts {
  mint: string;
  decimals: number;
  tokenProgram: string;
  memoProgram: string;
  /** Pays the fees of every simulator transaction. */
  payer: string;
  treasury: { owner: string; tokenAccount: string };
  /** Owner of the escrow vault and of every credit vault; signs every simulator transfer. */
  escrowAuthority: string;
  escrowVault: string;
  workers: LocalWorker[];
  /** Indexed by API key index; the last one is the low-balance key's. */
  creditVaults: LocalCreditVault[];
  /** Address lookup table used by some version-0 settlements. */
  lookupTable: string;
}

/** The names of every local keypair, for code that needs the signers themselves. */
export const localKeyNames = {
  mint: "mint",
  treasury: "treasury",
  escrowAuthority: "escrow-authority",
  escrowVault: "escrow-vault",
  payer: "payer",
  lookupTable: "lookup-table",
  worker: (i: number) => `worker-${i}`,
  user: (i: number) => `user-${i}`,
  creditVault: (i: number) => `credit-vault-${i}`,
} as const;

let cachedAccounts: LocalAccounts | undefined;

/** Every address of the local world (deterministic; safe to call at any time). */
export function localnetAccounts(): LocalAccounts {
  // Deriving the addresses costs ~0.3 s of pure-JS curve math; they never change.
  cachedAccounts ??= deriveAccounts();
  return structuredClone(cachedAccounts);
}

function deriveAccounts(): LocalAccounts {
  const mint = localSigner(localKeyNames.mint).address;
  const treasuryOwner = localSigner(localKeyNames.treasury).address;
  const workers: LocalWorker[] = [];
  for (let i = 0; i < WORKER_COUNT; i++) {
    const address = localSigner(localKeyNames.worker(i)).address;
    const staked = i < STAKED_WORKER_COUNT;
    workers.push({
      index: i,
      address,
      tokenAccount: ata(address, mint),
      staked,
      rateBps: staked ? 8500 : 7500,
    });
  }
  const creditVaults: LocalCreditVault[] = [];
  for (let i = 0; i <= LOW_BALANCE_API_KEY_INDEX; i++) {
    creditVaults.push({
      apiKeyIndex: i,
      wallet: localSigner(localKeyNames.user(i)).address,
      vault: localSigner(localKeyNames.creditVault(i)).address,
    });
  }
  return {
    mint,
    decimals: LOCAL_MINT_DECIMALS,
    tokenProgram: TOKEN_PROGRAM_ID,
    memoProgram: MEMO_PROGRAM_ID,
    payer: localSigner(localKeyNames.payer).address,
    treasury: { owner: treasuryOwner, tokenAccount: ata(treasuryOwner, mint) },
    escrowAuthority: localSigner(localKeyNames.escrowAuthority).address,
    escrowVault: localSigner(localKeyNames.escrowVault).address,
    workers,
    creditVaults,
    lookupTable: localSigner(localKeyNames.lookupTable).address,
  };
}
