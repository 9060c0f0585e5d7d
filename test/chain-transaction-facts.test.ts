import { readFileSync } from "node:fs";
import { join } from "node:path";
import { VersionedTransaction } from "@solana/web3.js";
import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import { factsFromJson, factsToJson } from "../src/chain/facts-json.js";
import { objectMemberTexts, parseJsonLossless } from "../src/chain/json-text.js";
import { parseTransaction } from "../src/chain/parse-transaction.js";
import type { TransactionFacts } from "../src/chain/transaction-facts.js";
import { AppError } from "../src/errors.js";
import { depositInOf, hiddenDebitOf, unshownCreditOf } from "../src/ledger/reader.js";
import {
  addr,
  COMPUTE_BUDGET_PROGRAM,
  FAILED_JOB_ID,
  JOB_ID,
  MEMO_PROGRAM,
  PYUSD_MINT,
  TOKEN_2022_PROGRAM,
  TOKEN_PROGRAM,
  USDC_MINT,
} from "./fixtures/transactions/parties.js";

// biome-ignore lint/suspicious/noExplicitAny: saved JSON replies are read and mutated freely in tests.
type Json = any;

const dir = join(import.meta.dirname, "fixtures/transactions");

/** The `result` of a saved reply (or the bare result), read without losing any integer. */
function loadResult(file: string): Record<string, Json> {
  const value = parseJsonLossless(readFileSync(join(dir, file), "utf8")) as Record<string, Json>;
  return "jsonrpc" in value ? value.result : value;
}

function facts(file: string): TransactionFacts {
  return parseTransaction(loadResult(file));
}

function change(f: TransactionFacts, account: string) {
  return f.tokenChanges.find((c) => c.account === account);
}

function malformedReason(result: unknown, hint?: string): string {
  try {
    parseTransaction(result, hint);
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("malformed_transaction");
    return (error as AppError).message;
  }
  throw new Error("expected the response to be rejected");
}

describe("transaction facts from a legacy escrow lock", () => {
  const encodings = [
    "escrow-lock-legacy.json.json",
    "escrow-lock-legacy.jsonParsed.json",
    "escrow-lock-legacy.base64.json",
  ];

  it.each(encodings)("reads the lock's transfer, memo, fee and payer from %s", (file) => {
    const f = facts(file);
    const result = loadResult(file);
    const signature = Array.isArray(result.transaction)
      ? undefined
      : (result.transaction.signatures[0] as string);
    if (signature) expect(f.signature).toBe(signature);
    expect(f.slot).toBe(331_204_512);
    expect(f.blockTime).toBe(1_764_072_131);
    expect(f.succeeded).toBe(true);
    expect(f.err).toBeNull();
    expect(f.fee).toBe(5000n);
    expect(f.feePayer).toBe(addr.escrowAuthority);
    expect(f.version).toBe("legacy");
    expect(f.memos).toEqual([`decentral:escrow:${JOB_ID}`]);
    expect(f.programs).toEqual([MEMO_PROGRAM, TOKEN_PROGRAM]);
    expect(change(f, addr.creditVault)).toEqual({
      account: addr.creditVault,
      owner: addr.escrowAuthority,
      mint: USDC_MINT,
      programId: TOKEN_PROGRAM,
      decimals: 6,
      pre: 50_000_000n,
      post: 49_840_000n,
      delta: -160_000n,
    });
    expect(change(f, addr.escrowVault)?.delta).toBe(160_000n);
    expect(f.tokenChanges).toHaveLength(2);
    expect(f.solChanges).toEqual([
      { account: addr.escrowAuthority, pre: 4_817_530_120n, post: 4_817_525_120n, delta: -5000n },
    ]);
  });

  it("derives identical facts from the json, jsonParsed and base64 encodings", () => {
    const [json, parsed, base64] = encodings.map(facts);
    expect(parsed).toEqual(json);
    expect(base64).toEqual(json);
  });
});

describe("transaction facts of an ApproveChecked", () => {
  /** The lock's transfer turned into an ApproveChecked of the same accounts, in both forms. */
  function approveOf(file: string): Record<string, Json> {
    const result = loadResult(file);
    const ix = result.transaction.message.instructions[1];
    if (ix.parsed) {
      const { source, mint, destination, authority } = ix.parsed.info;
      ix.parsed = {
        type: "approveChecked",
        info: {
          source,
          mint,
          delegate: destination,
          owner: authority,
          tokenAmount: { amount: "1", decimals: 6 },
        },
      };
    } else {
      ix.data = bs58.encode(Uint8Array.from([13, 1, 0, 0, 0, 0, 0, 0, 0, 6]));
    }
    return result;
  }

  it.each(["escrow-lock-legacy.json.json", "escrow-lock-legacy.jsonParsed.json"])(
    "keeps the account given the delegate, not only the sorted accounts (%s)",
    (file) => {
      const f = parseTransaction(approveOf(file));
      // Sorted, the vault and the delegate cannot be told apart; the source tells.
      expect(f.tokenInstructions).toEqual([
        {
          programId: TOKEN_PROGRAM,
          kind: "approveChecked",
          accounts: [addr.creditVault, addr.escrowVault, addr.escrowAuthority, USDC_MINT].sort(),
          source: addr.creditVault,
          // What the delegate may spend: a statement tells a read's rest from it.
          approved: 1n,
        },
      ]);
      expect(factsFromJson(JSON.stringify(factsToJson(f))).tokenInstructions).toEqual(
        f.tokenInstructions,
      );
    },
  );
});

describe("transaction facts from a version-0 settlement with loaded addresses", () => {
  const encodings = ["settle-v0.json.json", "settle-v0.jsonParsed.json", "settle-v0.base64.json"];

  it.each(encodings)(
    "lists static keys, then loaded writable, then loaded readonly (%s)",
    (file) => {
      const f = facts(file);
      expect(f.version).toBe(0);
      expect(f.accounts.slice(-3)).toEqual([addr.workerToken, addr.treasuryToken, USDC_MINT]);
      expect(f.accounts).toHaveLength(9);
    },
  );

  it.each(encodings)("resolves balances of loaded accounts by full-list index (%s)", (file) => {
    const f = facts(file);
    expect(change(f, addr.workerToken)).toMatchObject({ owner: addr.worker, delta: 60_000n });
    expect(change(f, addr.treasuryToken)).toMatchObject({ owner: addr.treasury, delta: 20_000n });
    expect(change(f, addr.creditVault)?.delta).toBe(80_000n);
    expect(change(f, addr.escrowVault)?.delta).toBe(-160_000n);
    // Worker + treasury + remainder equals the lock: the token deltas sum to zero.
    expect(f.tokenChanges.reduce((sum, c) => sum + c.delta, 0n)).toBe(0n);
    expect(f.memos).toEqual([`decentral:settle:${JOB_ID}`]);
    expect(f.programs).toEqual([COMPUTE_BUDGET_PROGRAM, TOKEN_PROGRAM, MEMO_PROGRAM]);
    expect(f.fee).toBe(5013n);
  });

  it("decodes the base64 wire bytes as web3.js does", () => {
    const result = loadResult("settle-v0.base64.json");
    const tx = VersionedTransaction.deserialize(Buffer.from(result.transaction[0], "base64"));
    const f = parseTransaction(result);
    expect(f.signature).toBe(bs58.encode(tx.signatures[0]!));
    const staticKeys = tx.message.staticAccountKeys.map((k) => k.toBase58());
    expect(f.accounts.slice(0, staticKeys.length)).toEqual(staticKeys);
    expect(tx.message.version).toBe(f.version);
  });

  it("derives identical facts from every encoding", () => {
    const [json, parsed, base64] = encodings.map(facts);
    expect(parsed).toEqual(json);
    expect(base64).toEqual(json);
  });
});

describe("transaction facts of other shapes", () => {
  it("reads a Token-2022 transfer with its program id, from a bare result", () => {
    const f = facts("token2022-transfer.json.json");
    expect(f.tokenChanges).toEqual([
      expect.objectContaining({ account: addr.whaleToken, mint: PYUSD_MINT, delta: -250_000_000n }),
      expect.objectContaining({ account: addr.otherToken, pre: 0n, post: 250_000_000n }),
    ]);
    for (const c of f.tokenChanges) expect(c.programId).toBe(TOKEN_2022_PROGRAM);
    expect(f.programs).toEqual([TOKEN_2022_PROGRAM]);
  });

  it("shows a failed transaction paying its fee and moving no tokens", () => {
    const f = facts("failed-lock.json.json");
    expect(f.succeeded).toBe(false);
    expect(f.err).toEqual({ InstructionError: [1, { Custom: 1 }] });
    expect(f.tokenChanges).toEqual([]);
    expect(f.solChanges).toEqual([
      expect.objectContaining({ account: addr.escrowAuthority, delta: -5000n }),
    ]);
    expect(f.memos).toEqual([`decentral:escrow:${FAILED_JOB_ID}`]);
    // Whose each token account is after it, balance moved or not, in account order.
    const keys = loadResult("failed-lock.json.json").transaction.message.accountKeys as string[];
    expect(f.ownersAfter).toEqual([
      { account: keys[1], owner: keys[0] },
      { account: keys[2], owner: keys[0] },
    ]);
    expect(factsFromJson(JSON.stringify(factsToJson(f))).ownersAfter).toEqual(f.ownersAfter);
  });

  it.each(["settle-cpi.json.json", "settle-cpi.jsonParsed.json"])(
    "sees transfers and a memo made inside another program (CPI) in %s",
    (file) => {
      const f = facts(file);
      expect(f.programs).toEqual([
        addr.escrowProgram,
        "11111111111111111111111111111111",
        TOKEN_PROGRAM,
        MEMO_PROGRAM,
      ]);
      expect(f.memos).toEqual([`decentral:settle:${JOB_ID}`]);
      // The worker's token account exists only after the transaction: its pre balance is 0.
      expect(change(f, addr.workerToken)).toMatchObject({
        owner: addr.worker,
        pre: 0n,
        post: 68_000n,
      });
      expect(change(f, addr.treasuryToken)?.delta).toBe(12_000n);
      expect(change(f, addr.escrowVault)?.delta).toBe(-80_000n);
      expect(f.solChanges.find((c) => c.account === addr.workerToken)?.delta).toBe(2_039_280n);
    },
  );

  it("keeps lamport and token balances above 2^53 exact", () => {
    const f = facts("big-balances.json.json");
    expect(f.solChanges).toEqual([
      {
        account: addr.whale,
        pre: 12_345_678_901_234_567_890n,
        post: 12_345_678_901_234_562_890n,
        delta: -5000n,
      },
    ]);
    expect(change(f, addr.whaleToken)).toMatchObject({
      pre: 18_446_744_073_709_551_615n,
      delta: -1n,
    });
    expect(change(f, addr.otherToken)).toMatchObject({ pre: 9_007_199_254_740_993n, delta: 1n });
  });

  it("rejects lamports that JSON.parse has already rounded instead of using them", () => {
    const text = readFileSync(join(dir, "big-balances.json.json"), "utf8");
    const lossy = JSON.parse(text).result;
    expect(malformedReason(lossy)).toMatch(/preBalances\[0\] is not an exact integer/);
    // A negative fee is no amount at all, said so (not as a number read too large).
    const negative = JSON.parse(text).result;
    negative.meta.fee = -5000;
    expect(malformedReason(negative)).toMatch(/fee is not a lamport amount .*: -5000$/);
  });
});

describe("malformed responses are rejected with a reason", () => {
  const valid = () => structuredClone(loadResult("escrow-lock-legacy.json.json"));
  const validV0 = () => structuredClone(loadResult("settle-v0.json.json"));
  const validBase64 = () => structuredClone(loadResult("settle-v0.base64.json"));
  const validParsed = () => structuredClone(loadResult("escrow-lock-legacy.jsonParsed.json"));

  const cases: [string, () => unknown, RegExp][] = [
    ["a null result", () => null, /result is null/],
    [
      "missing meta",
      () => {
        const r = valid();
        delete r.meta;
        return r;
      },
      /meta is missing/,
    ],
    [
      "missing signatures",
      () => {
        const r = valid();
        delete r.transaction.signatures;
        return r;
      },
      /transaction.signatures is missing/,
    ],
    [
      "an empty signature list",
      () => {
        const r = valid();
        r.transaction.signatures = [];
        r.transaction.message.header.numRequiredSignatures = 0;
        return r;
      },
      /no signatures/,
    ],
    [
      "a signature that is not 64 bytes",
      () => {
        const r = valid();
        r.transaction.signatures[0] = addr.worker;
        return r;
      },
      /not a 64-byte signature/,
    ],
    [
      "an account key of 31 bytes",
      () => {
        const r = valid();
        r.transaction.message.accountKeys[1] = bs58.encode(new Uint8Array(31).fill(7));
        return r;
      },
      /accountKeys\[1\] is not a 32-byte public key/,
    ],
    [
      "an account key that is not base58",
      () => {
        const r = valid();
        r.transaction.message.accountKeys[1] = `0${addr.worker.slice(1)}`;
        return r;
      },
      /accountKeys\[1\] is not a 32-byte public key/,
    ],
    [
      "pre balances shorter than the account list",
      () => {
        const r = valid();
        r.meta.preBalances.pop();
        return r;
      },
      /preBalances\/postBalances have 5\/6 entries for 6 accounts/,
    ],
    [
      "a token balance index out of range",
      () => {
        const r = valid();
        r.meta.postTokenBalances[0].accountIndex = 6;
        return r;
      },
      /postTokenBalances\[0\]\.accountIndex is out of range/,
    ],
    [
      "a token amount that is not an integer string",
      () => {
        const r = valid();
        r.meta.preTokenBalances[0].uiTokenAmount.amount = "1.5";
        return r;
      },
      /amount is not an integer string/,
    ],
    [
      "a fee no store column holds",
      () => {
        const r = valid();
        (r.meta as { fee: unknown }).fee = "9223372036854775815";
        return r;
      },
      /meta\.fee 9223372036854775815 is beyond any real fee/,
    ],
    [
      "the same token account listed twice",
      () => {
        const r = valid();
        r.meta.preTokenBalances.push(r.meta.preTokenBalances[0]);
        return r;
      },
      /repeats account index/,
    ],
    [
      "an instruction program index out of range",
      () => {
        const r = valid();
        r.transaction.message.instructions[0].programIdIndex = 42;
        return r;
      },
      /instructions\[0\]\.programIdIndex is out of range/,
    ],
    [
      "an inner instruction group pointing past the instructions",
      () => {
        const r = valid();
        r.meta.innerInstructions = [{ index: 7, instructions: [] }];
        return r;
      },
      /innerInstructions\[0\]\.index is out of range/,
    ],
    [
      "a v0 message whose loaded addresses are missing",
      () => {
        const r = validV0();
        delete r.meta.loadedAddresses;
        return r;
      },
      /loadedAddresses lists 0\+0 addresses but the 0 message's lookups need 2\+1/,
    ],
    [
      "a missing meta.err",
      () => {
        const r = valid();
        delete r.meta.err;
        return r;
      },
      /meta.err is missing/,
    ],
    [
      "base64 with characters outside the alphabet",
      () => {
        const r = validBase64();
        r.transaction[0] = `!${r.transaction[0].slice(1)}`;
        return r;
      },
      /not valid base64/,
    ],
    [
      "truncated transaction bytes",
      () => {
        const r = validBase64();
        const bytes = Buffer.from(r.transaction[0], "base64");
        r.transaction[0] = bytes.subarray(0, bytes.length - 10).toString("base64");
        return r;
      },
      /transaction bytes: truncated/,
    ],
    // The chain refuses a transaction naming an account twice; read, such an answer gave the
    // account two balance changes.
    [
      "an account key listed twice",
      () => {
        const r = valid();
        r.transaction.message.accountKeys[2] = r.transaction.message.accountKeys[1];
        return r;
      },
      /account \S+ is listed twice \(accounts 1 and 2\)/,
    ],
    [
      "an account key listed twice in jsonParsed",
      () => {
        const r = validParsed();
        r.transaction.message.accountKeys[3] = { ...r.transaction.message.accountKeys[1] };
        return r;
      },
      /is listed twice \(accounts 1 and 3\)/,
    ],
    [
      "an address loaded twice (base64)",
      () => {
        const r = validBase64();
        r.meta.loadedAddresses.writable[0] = r.meta.loadedAddresses.readonly[0];
        return r;
      },
      /is listed twice/,
    ],
    [
      "a declared version that contradicts the message",
      () => {
        const r = validBase64();
        r.version = "legacy";
        return r;
      },
      /version says legacy but the message is 0/,
    ],
  ];

  it.each(cases)("rejects %s", (_name, build, reason) => {
    expect(malformedReason(build())).toMatch(reason);
  });

  it("rejects a response for a different signature than the one asked for", () => {
    const other = loadResult("settle-v0.json.json").transaction.signatures[0];
    expect(malformedReason(valid(), other)).toMatch(/response is for signature/);
  });
});

describe("facts JSON form", () => {
  it("round-trips facts through factsToJson and factsFromJson, bigints included", () => {
    const f = facts("big-balances.json.json");
    const text = JSON.stringify(factsToJson(f));
    expect(text).toContain('"pre":"12345678901234567890"');
    expect(factsFromJson(text)).toEqual(f);
    expect(factsFromJson(JSON.parse(text))).toEqual(f);
  });

  it("rejects stored facts with a float amount", () => {
    const json = factsToJson(facts("escrow-lock-legacy.json.json")) as Record<string, unknown>;
    expect(() => factsFromJson({ ...json, fee: "5000.5" })).toThrow(/fee/);
  });
});

describe("lossless JSON text", () => {
  it("keeps integers beyond 2^53 and cuts out a member's text as written", () => {
    const text =
      '{"id":1, "result" : {"a":[18446744073709551615, 1.5e3, "x\\"]"]},"jsonrpc":"2.0"}';
    expect(parseJsonLossless(text)).toEqual({
      id: 1,
      result: { a: ["18446744073709551615", 1500, 'x"]'] },
      jsonrpc: "2.0",
    });
    expect(objectMemberTexts(text).get("result")).toBe(
      '{"a":[18446744073709551615, 1.5e3, "x\\"]"]}',
    );
  });
  it("keeps a big integer wherever JSON puts a value, long digit runs in strings or not", () => {
    const ones = "1".repeat(32); // the system program's address
    const cases: [string, unknown][] = [
      ["9007199254740993", "9007199254740993"],
      [" -9007199254740993", "-9007199254740993"],
      [`["${ones}",\n  9007199254740993]`, [ones, "9007199254740993"]],
      [`{"k":\t9007199254740993,"s":"${ones}"}`, { k: "9007199254740993", s: ones }],
      // Only safe numbers: the native parser's answer, digit runs in strings kept as text.
      [
        `{"a":[9007199254740991, -1, 1e300],"s":"${ones}","t":"x: 12345678901234567"}`,
        {
          a: [9007199254740991, -1, 1e300],
          s: ones,
          t: "x: 12345678901234567",
        },
      ],
    ];
    for (const [text, value] of cases) expect(parseJsonLossless(text)).toEqual(value);
    expect(() => parseJsonLossless("{")).toThrow(SyntaxError);
  });
});

describe("transaction facts of token instructions that move money", () => {
  /** Token instructions of a file as source, destination and amount, in execution order. */
  const movements = (f: TransactionFacts) =>
    f.tokenInstructions.map((ix) => ({
      kind: ix.kind,
      source: ix.source,
      destination: ix.destination,
      amount: ix.amount,
    }));

  it.each([
    "escrow-lock-legacy.json.json",
    "escrow-lock-legacy.jsonParsed.json",
    "escrow-lock-legacy.base64.json",
  ])("keeps a transfer's source, destination and amount, not only its net changes (%s)", (file) => {
    const f = facts(file);
    // Balances show each account's net change only: money taken out of a vault and more put
    // back in the same transaction shows as money in. The instructions tell what left.
    expect(movements(f)).toEqual([
      {
        kind: "transferChecked",
        source: addr.creditVault,
        destination: addr.escrowVault,
        amount: 160_000n,
      },
    ]);
    expect(factsFromJson(JSON.stringify(factsToJson(f))).tokenInstructions).toEqual(
      f.tokenInstructions,
    );
  });

  it.each(["settle-cpi.json.json", "settle-cpi.jsonParsed.json"])(
    "keeps them for transfers made inside another program (%s)",
    (file) => {
      const moved = movements(facts(file)).filter((m) => m.amount !== undefined);
      expect(moved).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ source: addr.escrowVault, amount: 68_000n }),
          expect.objectContaining({ source: addr.escrowVault, amount: 12_000n }),
        ]),
      );
      expect(moved.reduce((s, m) => s + m.amount!, 0n)).toBe(80_000n);
    },
  );

  it.each([
    "escrow-lock-legacy.json.json",
    "escrow-lock-legacy.jsonParsed.json",
    "escrow-lock-legacy.base64.json",
  ])("keeps who signed a transfer for its source (%s)", (file) => {
    expect(facts(file).tokenInstructions[0]?.authority).toBe(addr.escrowAuthority);
  });

  it("keeps who signed by its place, not by an account named after it", () => {
    // The compiled lock's accounts [vault, mint, escrow, authority] with the token program
    // signing in the authority's place and the escrow authority named after it.
    const compiled = loadResult("escrow-lock-legacy.json.json");
    compiled.transaction.message.instructions[1].accounts = [2, 3, 1, 5, 0];
    expect(parseTransaction(compiled).tokenInstructions[0]?.authority).toBe(TOKEN_PROGRAM);
    // jsonParsed names a multisig owner `multisigAuthority`, its signers apart.
    const parsed = loadResult("escrow-lock-legacy.jsonParsed.json");
    const ix = parsed.transaction.message.instructions[1];
    const { authority, ...info } = ix.parsed.info;
    ix.parsed.info = { ...info, multisigAuthority: authority, signers: [addr.creditVault] };
    expect(parseTransaction(parsed).tokenInstructions[0]?.authority).toBe(authority);
  });

  it.each([
    "escrow-lock-legacy.json.json",
    "escrow-lock-legacy.jsonParsed.json",
    "escrow-lock-legacy.base64.json",
  ])("keeps the mint a transfer moves (%s)", (file) => {
    const f = facts(file);
    expect(f.tokenInstructions[0]?.mint).toBe(USDC_MINT);
    expect(factsFromJson(JSON.stringify(factsToJson(f))).tokenInstructions).toEqual(
      f.tokenInstructions,
    );
  });

  it("keeps the mint by its place, not by an account named after it", () => {
    // The compiled lock's accounts [vault, mint, escrow, authority] with the token program in
    // the mint's place and the credit mint named after them, where the program reads none.
    const compiled = loadResult("escrow-lock-legacy.json.json");
    compiled.transaction.message.instructions[1].accounts = [2, 5, 1, 0, 3];
    const ix = parseTransaction(compiled).tokenInstructions[0];
    expect(ix?.accounts).toContain(USDC_MINT);
    expect(ix?.mint).toBe(TOKEN_PROGRAM);
  });

  it("leave a gain judged that only another mint's transfer naming the credit mint would show", () => {
    // The escrow vault gains 160,000 credits; the one transfer into it moves the mint at its
    // place (here the token program's key, standing for a fake mint), the credit mint named
    // after its accounts. It brings in no credits: the gain is one no instruction shows.
    const result = loadResult("escrow-lock-legacy.json.json");
    result.transaction.message.instructions[1].accounts = [2, 5, 1, 0, 3];
    const profile = { usdcMint: USDC_MINT, tokenPrograms: [TOKEN_PROGRAM, TOKEN_2022_PROGRAM] };
    expect(unshownCreditOf(addr.escrowVault, parseTransaction(result), profile)).toBe(160_000n);
  });

  it("leave a refund whole when another mint's transfer into escrow names the credit mint", () => {
    // A refund of 500,000 out of escrow (an account of the escrow authority) into the vault,
    // beside a customer's payment to another and 70,000 of a fake mint sent into another account
    // of the escrow authority, the credit mint named after that transfer's accounts.
    const change = (account: string, owner: string, mint: string, delta: bigint) => ({
      account,
      owner,
      mint,
      programId: TOKEN_PROGRAM,
      decimals: 6,
      pre: delta < 0n ? -delta : 0n,
      post: delta < 0n ? 0n : delta,
      delta,
    });
    const transfer = (source: string, destination: string, mint: string, amount: bigint) => ({
      programId: TOKEN_PROGRAM,
      kind: "transferChecked",
      accounts: [source, destination, mint, USDC_MINT, addr.escrowAuthority].sort(),
      source,
      destination,
      authority: addr.escrowAuthority,
      mint,
      amount,
    });
    const refund = {
      ...facts("escrow-lock-legacy.json.json"),
      tokenChanges: [
        change(addr.escrowVault, addr.escrowAuthority, USDC_MINT, -500_000n),
        change(addr.creditVault, addr.escrowAuthority, USDC_MINT, 500_000n),
        change(addr.whaleToken, addr.whale, USDC_MINT, -30_000n),
        change(addr.otherToken, addr.other, USDC_MINT, 30_000n),
        change(addr.workerToken, addr.worker, PYUSD_MINT, -70_000n),
        change(addr.treasuryToken, addr.escrowAuthority, PYUSD_MINT, 70_000n),
      ],
      tokenInstructions: [
        transfer(addr.escrowVault, addr.creditVault, USDC_MINT, 500_000n),
        transfer(addr.whaleToken, addr.otherToken, USDC_MINT, 30_000n),
        transfer(addr.workerToken, addr.treasuryToken, PYUSD_MINT, 70_000n),
      ],
    };
    const profile = {
      usdcMint: USDC_MINT,
      tokenPrograms: [TOKEN_PROGRAM],
      escrowVault: null,
      escrowAuthority: addr.escrowAuthority,
    };
    expect(depositInOf(addr.creditVault, 500_000n, refund, profile)).toBeNull();
  });

  it("keeps them for a Token-2022 transfer", () => {
    expect(movements(facts("token2022-transfer.json.json"))).toEqual([
      expect.objectContaining({
        source: addr.whaleToken,
        destination: addr.otherToken,
        amount: 250_000_000n,
      }),
    ]);
  });

  /** The lock's transfer turned into another instruction of the same accounts, both forms. */
  function asInstruction(
    file: string,
    data: number[],
    parsed: { type: string; info: (a: Record<string, string>) => Record<string, Json> },
  ): TransactionFacts {
    const result = loadResult(file);
    const ix = result.transaction.message.instructions[1];
    if (ix.parsed) ix.parsed = { type: parsed.type, info: parsed.info(ix.parsed.info) };
    else ix.data = bs58.encode(Uint8Array.from(data));
    return parseTransaction(result);
  }
  const le = (n: bigint) =>
    Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(8 * i)) & 255n));
  const forms = ["escrow-lock-legacy.json.json", "escrow-lock-legacy.jsonParsed.json"];
  const amount = 2n ** 63n + 5n;
  const tokenAmount = { amount: amount.toString(), decimals: 6 };

  it.each(forms)("keeps what a burn, a mint and a transfer with a fee move (%s)", (file) => {
    // Compiled accounts: [credit vault, USDC mint, escrow vault, escrow authority].
    const burn = asInstruction(file, [15, ...le(amount), 6], {
      type: "burnChecked",
      info: (i) => ({ account: i.source, mint: i.mint, authority: i.authority, tokenAmount }),
    });
    expect(movements(burn)).toEqual([
      { kind: "burnChecked", source: addr.creditVault, destination: undefined, amount },
    ]);
    const fee = asInstruction(file, [26, 1, ...le(amount), 6, ...le(3n)], {
      type: "transferCheckedWithFee",
      info: (i) => ({ ...i, tokenAmount, feeAmount: { amount: "3", decimals: 6 } }),
    });
    expect(movements(fee)[0]).toMatchObject({
      source: addr.creditVault,
      destination: addr.escrowVault,
      amount,
    });
    // MintToChecked names the mint first, then the account minted into.
    const mint = asInstruction(file, [14, ...le(7n), 6], {
      type: "mintToChecked",
      info: (i) => ({
        mint: i.source,
        account: i.mint,
        mintAuthority: i.authority,
        tokenAmount: { amount: "7", decimals: 6 },
      }),
    });
    expect(movements(mint)[0]).toMatchObject({ source: undefined, destination: USDC_MINT });
    expect(movements(mint)[0]?.amount).toBe(7n);
    expect(factsFromJson(factsToJson(burn)).tokenInstructions).toEqual(burn.tokenInstructions);
  });

  it.each(forms)("counts a transfer with a fee into an account as nothing in (%s)", (file) => {
    // 160,003 sent into the escrow vault, 3 of them withheld as the fee: its balance gains
    // 160,000. No money left it: a debit hidden there is none, in either encoding.
    const sent = 160_003n;
    const fee = asInstruction(file, [26, 1, ...le(sent), 6, ...le(3n)], {
      type: "transferCheckedWithFee",
      info: (i) => ({
        ...i,
        tokenAmount: { amount: sent.toString(), decimals: 6 },
        feeAmount: { amount: "3", decimals: 6 },
      }),
    });
    const profile = { usdcMint: USDC_MINT, tokenPrograms: [TOKEN_PROGRAM, TOKEN_2022_PROGRAM] };
    expect(hiddenDebitOf(addr.escrowVault, 160_000n, fee, profile)).toBeNull();
  });

  it("keeps no amount from data too short to hold one, and reads stored facts without them", () => {
    const short = asInstruction("escrow-lock-legacy.json.json", [12, 1, 2], {
      type: "transferChecked",
      info: (i) => i,
    });
    expect(movements(short)).toEqual([
      { kind: "transferChecked", source: undefined, destination: undefined, amount: undefined },
    ]);
    const stored = factsToJson(facts("escrow-lock-legacy.json.json"));
    const old = {
      ...stored,
      tokenInstructions: stored.tokenInstructions.map(({ programId, kind, accounts }) => ({
        programId,
        kind,
        accounts,
      })),
    };
    expect(factsFromJson(old).tokenInstructions[0]).toEqual(old.tokenInstructions[0]);
  });
});

describe("accounts of jsonParsed token instructions", () => {
  /** The lock's transfer, jsonParsed, replaced by an instruction of the given type and info. */
  function parsedAs(type: string, info: Record<string, Json>): TransactionFacts {
    const result = loadResult("escrow-lock-legacy.jsonParsed.json");
    result.transaction.message.instructions[1].parsed = { type, info };
    return parseTransaction(result);
  }
  const NEW_MINT = addr.otherToken;

  it("are the fields that name accounts, not keys the instruction's data carries", () => {
    const cases: [string, Record<string, Json>, string[]][] = [
      [
        "initializeMint2",
        { mint: NEW_MINT, decimals: 6, mintAuthority: addr.escrowVault, freezeAuthority: null },
        [NEW_MINT],
      ],
      [
        "setAuthority",
        {
          account: addr.creditVault,
          authorityType: "accountOwner",
          newAuthority: addr.escrowVault,
          authority: addr.escrowAuthority,
        },
        [addr.creditVault, addr.escrowAuthority],
      ],
      [
        "initializeAccount3",
        { account: addr.creditVault, mint: USDC_MINT, owner: addr.escrowVault },
        [addr.creditVault, USDC_MINT],
      ],
      [
        "initializeTransferHook",
        { mint: NEW_MINT, authority: addr.escrowVault, programId: addr.escrowVault },
        [NEW_MINT],
      ],
    ];
    for (const [type, info, accounts] of cases) {
      expect(parsedAs(type, info).tokenInstructions[0]?.accounts, type).toEqual(accounts.sort());
    }
  });

  it("leave a gain no instruction shows judged, whatever address a new mint's authority is", () => {
    // The escrow vault gains 160,000 and no instruction moves it: a mint made beside it with
    // the escrow vault's address as its authority touches no account but the mint.
    const f = parsedAs("initializeMint2", {
      mint: NEW_MINT,
      decimals: 6,
      mintAuthority: addr.escrowVault,
    });
    const profile = { usdcMint: USDC_MINT, tokenPrograms: [TOKEN_PROGRAM, TOKEN_2022_PROGRAM] };
    expect(unshownCreditOf(addr.escrowVault, f, profile)).toBe(160_000n);
  });
});

describe("a token Batch (255)", () => {
  /** The legacy lock with its TransferChecked run `times` times by one Batch instead. */
  function lockInBatch(times: number, extraCount = 0) {
    const compiled = loadResult("escrow-lock-legacy.json.json");
    const ix = compiled.transaction.message.instructions[1];
    const data = [...bs58.decode(ix.data)];
    const parts = Array.from({ length: times }, () => [ix.accounts.length, data.length, ...data]);
    ix.data = bs58.encode(
      Uint8Array.from([255, ...parts.flat(), ...(extraCount ? [extraCount, 1, 12] : [])]),
    );
    ix.accounts = Array.from({ length: times }, () => ix.accounts).flat();
    return compiled;
  }

  it("keeps each instruction it runs after it, each with its own accounts by place", () => {
    const [transfer] = facts("escrow-lock-legacy.json.json").tokenInstructions;
    const f = parseTransaction(lockInBatch(2));
    expect(f.tokenInstructions.map((ix) => ix.kind)).toEqual([
      "batch",
      "transferChecked",
      "transferChecked",
    ]);
    expect(f.tokenInstructions.slice(1)).toEqual([transfer, transfer]);
  });

  it("reads no instruction past the accounts it holds", () => {
    const f = parseTransaction(lockInBatch(1, 9));
    expect(f.tokenInstructions.map((ix) => ix.kind)).toEqual(["batch", "transferChecked"]);
  });
});
