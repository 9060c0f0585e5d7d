import { getAssociatedTokenAddressSync } from "@solana/spl-token";
import { PublicKey } from "@solana/web3.js";
import { describe, expect, it } from "vitest";
import { localnetAccounts } from "../src/localnet/keys.js";

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
