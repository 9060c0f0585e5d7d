import { localKeyNames, localSigner } from "../../src/localnet/keys.js";
import type { InstructionSpec } from "../../src/localnet/wire.js";
import type { AdversaryHarness } from "./operator.js";

/**
 * Key `keyIndex`'s credit vault emptied (to the attacker), a customer (user `userIndex`) whose
 * wallet holds 1,000,000 credits, the thief's account and a fake mint: what a top-up that pays
 * out as the vault is reopened in another mint starts from.
 */
export function emptiedVaultToReopen(h: AdversaryHarness, keyIndex: number, userIndex: number) {
  const vault = h.op.vault(keyIndex);
  const left = h.op.balance(vault);
  if (left > 0n) h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), left)]);
  const user = localSigner(localKeyNames.user(userIndex));
  const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
  const thief = h.op.attackerAccount(0n);
  const fake = h.op.createFakeMint();
  return { keyIndex, vault, user, wallet, thief, fake };
}

/**
 * The customer's "buy credits" transaction, built by the operator: 1,000,000 in, then
 * `beforePayout`, the same 1,000,000 paid to the thief by a plain Transfer (which names no
 * mint), and the empty vault closed and opened again in the fake mint with `minted` of it.
 * Returns its signature.
 */
export function topUpPaidOutAndReopened(
  h: AdversaryHarness,
  v: ReturnType<typeof emptiedVaultToReopen>,
  minted: bigint,
  beforePayout: readonly InstructionSpec[] = [],
): string {
  const reopen = h.op.reopenVaultIxs(v.keyIndex, v.fake);
  return h.op.send(
    [
      h.op.transfer(v.wallet, v.vault, 1_000_000n, { authority: v.user.address }),
      ...beforePayout,
      h.op.plainTransfer(v.vault, v.thief, 1_000_000n),
      ...reopen.ixs,
      h.op.mintTo(v.fake, v.vault, minted, h.op.attacker.address),
    ],
    { extraSigners: [v.user, reopen.signer] },
  ).signature;
}
