import { createHash, createPublicKey, sign, verify } from "node:crypto";
import { getAssociatedTokenAddressSync } from "@solana/spl-token";
import { Keypair, PublicKey } from "@solana/web3.js";
import { describe, expect, it } from "vitest";
import { localnetAccounts, localSigner } from "../src/localnet/keys.js";

describe("local world keypairs", () => {
  it("are web3.js's keypairs of their named seeds, and sign as them", () => {
    for (const name of ["payer", "escrow-authority", "worker-0", "adversary/t/attacker/7"]) {
      const seed = createHash("sha256").update(`decentral-audit/localnet/${name}`).digest();
      const keypair = Keypair.fromSeed(seed);
      const signer = localSigner(name);
      expect(signer.address).toBe(keypair.publicKey.toBase58());
      expect([...signer.publicKey]).toEqual([...keypair.publicKey.toBytes()]);
      const message = Buffer.from(`signed by ${name}`);
      const publicKey = createPublicKey({
        key: { kty: "OKP", crv: "Ed25519", x: keypair.publicKey.toBuffer().toString("base64url") },
        format: "jwk",
      });
      expect(verify(null, message, publicKey, sign(null, message, signer.signingKey))).toBe(true);
    }
  });
});

describe("local world token accounts", () => {
  it("are the associated token accounts the SPL token library derives", () => {
    const accounts = localnetAccounts();
    const mint = new PublicKey(accounts.mint);
    const expected = (owner: string) =>
      getAssociatedTokenAddressSync(mint, new PublicKey(owner), true).toBase58();
    expect(accounts.treasury.tokenAccount).toBe(expected(accounts.treasury.owner));
    for (const worker of accounts.workers) {
      expect(worker.tokenAccount).toBe(expected(worker.address));
    }
  });
});
