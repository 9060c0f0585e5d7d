import { factsToJson } from "../chain/facts-json.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import { stringifyWithBigints } from "../money.js";

/*
 * The rules of the signature store that do not touch a database, shared by the SQLite store
 * (signatures.ts) and the PostgreSQL one (pg/signatures.ts).
 */

/** The columns a fetched transaction writes besides its state: its facts and the raw reply. */
export function fetchedColumns(facts: TransactionFacts, raw: unknown, t: number) {
  return {
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
