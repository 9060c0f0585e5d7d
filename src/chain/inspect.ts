import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { Config } from "../config.js";
import { AppError } from "../errors.js";
import { isBase58OfLength } from "./base58.js";
import { implausibleBlockTime } from "./block-time.js";
import { factsToJson, type TransactionFactsJson } from "./facts-json.js";
import { parseJsonLossless } from "./json-text.js";
import { parseTransaction } from "./parse-transaction.js";
import { createRpcPool, type RpcPool } from "./rpc-pool.js";

/** True for a base58 string that decodes to 64 bytes (87 or 88 characters). */
export function isValidSignature(text: string): boolean {
  return isBase58OfLength(text, 64);
}

/** The error of a target that is not a signature (`tx inspect`, with or without `--quorum`). */
export function notASignature(target: string): AppError {
  return new AppError(
    "bad_request",
    `${target} is not a valid transaction signature (64 bytes, base58)`,
    { field: "target" },
  );
}

/**
 * A pool over one endpoint for a one-off look-up: one request at a time, at the configured
 * rate and timeout, three attempts.
 */
export function inspectionPool(config: Config, url: string): RpcPool {
  return createRpcPool({
    endpoints: [
      {
        url,
        rateLimitPerSec: config.RPC_RATE_LIMIT,
        concurrency: 1,
        timeoutMs: config.RPC_TIMEOUT_MS,
      },
    ],
    maxAttempts: 3,
  });
}

/**
 * Facts from the text of a saved getTransaction response: a bare `result` or a whole
 * `{"jsonrpc","result","id"}` reply. Lamports above 2^53 stay exact.
 */
export function factsFromResponseText(text: string): TransactionFactsJson {
  let value: unknown;
  try {
    value = parseJsonLossless(text);
  } catch (error) {
    // Never the parser's message whole: it quotes the text around the fault, so `tx inspect
    // /etc/passwd` (or a secrets file named by mistake) printed its first line. Where it stopped
    // is kept, as a position.
    const at = /at position (\d+)/.exec(error instanceof Error ? error.message : "")?.[1];
    throw new AppError(
      "malformed_transaction",
      `not a JSON document${at === undefined ? "" : ` (it stops being JSON at character ${at})`}`,
    );
  }
  let result = value;
  if (typeof value === "object" && value !== null && "jsonrpc" in value) {
    const reply = value as { result?: unknown; error?: { code?: unknown; message?: unknown } };
    if (reply.error) {
      throw new AppError(
        "malformed_transaction",
        `the saved reply is a JSON-RPC error: ${String(reply.error.code)} ${String(reply.error.message)}`,
      );
    }
    result = reply.result;
  }
  if (result === null) {
    throw new AppError("not_found", "transaction not found (the saved reply's result is null)");
  }
  const facts = parseTransaction(result);
  // A saved answer is judged as a fetched one is: a block time the chain cannot have is not
  // passed on as a fact (the pool refuses it the same way).
  const wrong = facts.blockTime === null ? null : implausibleBlockTime(facts.blockTime, Date.now());
  if (wrong !== null) {
    throw new AppError("malformed_transaction", `malformed transaction: ${wrong}`, {
      field: "blockTime",
    });
  }
  return factsToJson(facts);
}

/** Reads all of a stream (stdin) as UTF-8. */
async function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  }
  return Buffer.concat(chunks).toString("utf8");
}

export interface InspectOptions {
  config: Config;
  commitment?: "confirmed" | "finalized";
  stdin?: NodeJS.ReadableStream;
}

/**
 * `tx inspect`: facts of one transaction from `-` (stdin), a saved response file, or a
 * signature fetched from the first configured RPC endpoint. An existing file wins over a
 * string that also looks like a signature.
 */
export async function inspectTransaction(
  target: string,
  options: InspectOptions,
): Promise<TransactionFactsJson> {
  if (target === "-")
    return factsFromResponseText(await readStream(options.stdin ?? process.stdin));
  if (existsSync(target)) {
    if (!statSync(target).isFile()) {
      throw new AppError("bad_request", `${target} is not a file`, { field: "target" });
    }
    return factsFromResponseText(await readFile(target, "utf8"));
  }
  if (!isValidSignature(target)) {
    // Long alphanumeric text was meant as a signature (the docs' placeholders hold 0, O, I, l).
    if (/^[A-Za-z0-9]{32,}$/.test(target)) throw notASignature(target);
    throw new AppError(
      "bad_request",
      `${target} is neither a transaction signature (64 bytes, base58) nor a file`,
      { field: "target" },
    );
  }
  const url = options.config.SOLANA_RPC_URLS[0]!;
  const pool = inspectionPool(options.config, url);
  try {
    const commitment = options.commitment ?? "finalized";
    const fetched = await pool.getTransaction(target, commitment);
    if (!fetched) {
      throw new AppError(
        "not_found",
        `transaction ${target} not found at ${commitment} commitment on ${url} (not landed yet, dropped, pruned, or another cluster)`,
      );
    }
    return factsToJson(fetched.facts);
  } finally {
    await pool.close();
  }
}
