import { factsToJson } from "../chain/facts-json.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import { stringifyWithBigints } from "../money.js";

/*
 * The rules of the signature store that do not touch a database, shared by the SQLite store
 * (signatures.ts) and the PostgreSQL one (pg/signatures.ts).
 */

/**
 * The columns a fetched transaction writes besides its state: its facts, the raw reply and the
 * one job its memos name (null when unknown here: written when the verifier reads the row).
 */
export function fetchedColumns(
  facts: TransactionFacts,
  raw: unknown,
  t: number,
  memoJob: string | null = null,
) {
  return {
    memoJob,
    slot: facts.slot,
    blockTime: facts.blockTime,
    feeLamports: facts.fee,
    succeeded: facts.succeeded,
    err: facts.err ?? null,
    facts: factsToJson(facts),
    raw: typeof raw === "string" ? raw : stringifyWithBigints(raw),
    fetchedAt: t,
  };
}
