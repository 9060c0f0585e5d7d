import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import { signedAccounts } from "../src/chain/signed-message.js";
import { decodeWireTransaction } from "../src/chain/wire-transaction.js";
import { localKeyNames, localSigner, MEMO_PROGRAM_ID } from "../src/localnet/keys.js";
import { compileMessage, signTransaction } from "../src/localnet/wire.js";

/** What a transaction's own signature proves of an answer, whichever node served it. */
describe("signedAccounts", () => {
  const payer = localSigner(localKeyNames.user(0));
  const other = localSigner(localKeyNames.user(1));
  const { messageBytes, signers } = compileMessage({
    version: "legacy",
    feePayer: payer.address,
    recentBlockhash: other.address,
    instructions: [
      {
        programId: MEMO_PROGRAM_ID,
        accounts: [{ address: other.address, signer: false, writable: true }],
        data: new TextEncoder().encode("memo"),
      },
    ],
  });
  const { wire, signature } = signTransaction(messageBytes, signers, [payer]);
  const base64 = (bytes: Uint8Array) => ({
    transaction: [Buffer.from(bytes).toString("base64"), "base64"],
  });
  const decoded = decodeWireTransaction(wire);
  const json = (keys: string[]) => ({
    transaction: {
      signatures: decoded.signatures,
      message: {
        header: {
          numRequiredSignatures: decoded.header.numRequiredSignatures,
          numReadonlySignedAccounts: decoded.header.numReadonlySigned,
          numReadonlyUnsignedAccounts: decoded.header.numReadonlyUnsigned,
        },
        accountKeys: keys,
        recentBlockhash: decoded.recentBlockhash,
        instructions: decoded.instructions.map((ix) => ({
          programIdIndex: ix.programIdIndex,
          accounts: ix.accounts,
          data: bs58.encode(ix.data),
        })),
      },
    },
  });

  it("gives the signed message's accounts, from wire bytes and from json", () => {
    expect(signedAccounts(base64(wire), signature)).toEqual(decoded.accountKeys);
    expect(signedAccounts(JSON.stringify(json(decoded.accountKeys)), signature)).toEqual(
      decoded.accountKeys,
    );
  });

  it("proves nothing of a message its signature does not sign, or another signature", () => {
    const swapped = decoded.accountKeys.map((k) => (k === other.address ? payer.address : k));
    expect(signedAccounts(json(swapped), signature)).toBeNull();
    const tampered = Uint8Array.from(wire);
    tampered.set([tampered.at(-1)! ^ 1], tampered.length - 1);
    expect(signedAccounts(base64(tampered), signature)).toBeNull();
    expect(signedAccounts(base64(wire), bs58.encode(new Uint8Array(64)))).toBeNull();
    expect(signedAccounts({ transaction: "nothing" }, signature)).toBeNull();
  });
});
