import { z } from "zod";
import { AppError } from "../errors.js";
import { storableMemo } from "./parse-transaction.js";
import type { TransactionFacts } from "./transaction-facts.js";

const amount = z.string().regex(/^-?\d+$/, "decimal integer string");

const factsJsonSchema = z.object({
  signature: z.string(),
  slot: z.number().int().nonnegative(),
  blockTime: z.number().int().nullable(),
  succeeded: z.boolean(),
  err: z.unknown(),
  fee: amount,
  feePayer: z.string(),
  version: z.union([z.literal("legacy"), z.literal(0)]),
  accounts: z.array(z.string()),
  tokenChanges: z.array(
    z.object({
      account: z.string(),
      owner: z.string().nullable(),
      mint: z.string(),
      programId: z.string().nullable(),
      decimals: z.number().int().min(0).max(255),
      pre: amount,
      post: amount,
      delta: amount,
    }),
  ),
  solChanges: z.array(z.object({ account: z.string(), pre: amount, post: amount, delta: amount })),
  memos: z.array(z.string()),
  programs: z.array(z.string()),
  tokenInstructions: z.array(
    z.object({
      programId: z.string(),
      kind: z.string(),
      accounts: z.array(z.string()),
      source: z.string().optional(),
      initialized: z.string().optional(),
      destination: z.string().optional(),
      authority: z.string().optional(),
      mint: z.string().optional(),
      amount: amount.optional(),
      approved: amount.optional(),
    }),
  ),
  innerInstructionsKnown: z.boolean(),
  openedTokenAccounts: z.array(z.string()).optional(),
  ownersAfter: z.array(z.object({ account: z.string(), owner: z.string() })).optional(),
  tokenBalanceAccounts: z.array(z.string()).optional(),
  closedTokenAccounts: z.array(z.string()).optional(),
});

/** The JSON form of `TransactionFacts`: amounts as decimal strings (the `tx inspect` output). */
export type TransactionFactsJson = z.infer<typeof factsJsonSchema>;

/** Facts to their JSON form, field order fixed, bigints as decimal strings. */
export function factsToJson(facts: TransactionFacts): TransactionFactsJson {
  return {
    signature: facts.signature,
    slot: facts.slot,
    blockTime: facts.blockTime,
    succeeded: facts.succeeded,
    err: facts.err ?? null,
    fee: facts.fee.toString(),
    feePayer: facts.feePayer,
    version: facts.version,
    accounts: [...facts.accounts],
    tokenChanges: facts.tokenChanges.map((c) => ({
      account: c.account,
      owner: c.owner,
      mint: c.mint,
      programId: c.programId,
      decimals: c.decimals,
      pre: c.pre.toString(),
      post: c.post.toString(),
      delta: c.delta.toString(),
    })),
    solChanges: facts.solChanges.map((c) => ({
      account: c.account,
      pre: c.pre.toString(),
      post: c.post.toString(),
      delta: c.delta.toString(),
    })),
    memos: [...facts.memos],
    programs: [...facts.programs],
    tokenInstructions: facts.tokenInstructions.map((t) => ({
      programId: t.programId,
      kind: t.kind,
      accounts: [...t.accounts],
      ...(t.source === undefined ? {} : { source: t.source }),
      ...(t.initialized === undefined ? {} : { initialized: t.initialized }),
      ...(t.destination === undefined ? {} : { destination: t.destination }),
      ...(t.authority === undefined ? {} : { authority: t.authority }),
      ...(t.mint === undefined ? {} : { mint: t.mint }),
      ...(t.amount === undefined ? {} : { amount: t.amount.toString() }),
      ...(t.approved === undefined ? {} : { approved: t.approved.toString() }),
    })),
    innerInstructionsKnown: facts.innerInstructionsKnown,
    ...(facts.openedTokenAccounts ? { openedTokenAccounts: [...facts.openedTokenAccounts] } : {}),
    ...(facts.ownersAfter
      ? { ownersAfter: facts.ownersAfter.map((o) => ({ account: o.account, owner: o.owner })) }
      : {}),
    ...(facts.tokenBalanceAccounts
      ? { tokenBalanceAccounts: [...facts.tokenBalanceAccounts] }
      : {}),
    ...(facts.closedTokenAccounts ? { closedTokenAccounts: [...facts.closedTokenAccounts] } : {}),
  };
}

/**
 * Facts back from their JSON form (for example a stored `chain_transactions` row). Accepts the
 * parsed object or its text; throws `AppError("malformed_transaction")` if it does not fit.
 */
export function factsFromJson(json: unknown): TransactionFacts {
  let value = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(json);
    } catch {
      throw new AppError("malformed_transaction", "stored facts are not valid JSON");
    }
  }
  const parsed = factsJsonSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AppError(
      "malformed_transaction",
      `stored facts do not fit: ${issue?.path.join(".")}: ${issue?.message}`,
    );
  }
  const f = parsed.data;
  return {
    ...f,
    err: f.err ?? null,
    fee: BigInt(f.fee),
    // Facts stored before memos were made fit to store (a SQLite row, or PostgreSQL JSON's
    // \u0000 escape) read back as they are read from the chain now.
    memos: f.memos.map(storableMemo),
    tokenChanges: f.tokenChanges.map((c) => ({
      ...c,
      pre: BigInt(c.pre),
      post: BigInt(c.post),
      delta: BigInt(c.delta),
    })),
    tokenInstructions: f.tokenInstructions.map(({ amount, approved, ...t }) => ({
      ...t,
      ...(amount === undefined ? {} : { amount: BigInt(amount) }),
      ...(approved === undefined ? {} : { approved: BigInt(approved) }),
    })),
    solChanges: f.solChanges.map((c) => ({
      ...c,
      pre: BigInt(c.pre),
      post: BigInt(c.post),
      delta: BigInt(c.delta),
    })),
  };
}
