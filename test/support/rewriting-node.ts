import { parseJsonLossless } from "../../src/chain/json-text.js";
import { parseTransaction } from "../../src/chain/parse-transaction.js";
import type { AddressSignatureInfo, RpcPool } from "../../src/chain/rpc-pool.js";
import type { Store } from "../../src/db/client.js";
import { createSignatureStore } from "../../src/store/signatures.js";

/**
 * `rpc` as a node that lies about transactions: a getTransaction answer of a signature for which
 * `rewriteOf` gives a rewrite is served changed by it (the answer's JSON result, changed in
 * place) and its facts parsed from the changed result; every other answer and call as `rpc`'s.
 */
export function rewritingNode<Result>(
  rpc: RpcPool,
  rewriteOf: (signature: string) => ((result: Result) => void) | undefined,
): RpcPool {
  return new Proxy(rpc, {
    get(target, key, receiver) {
      if (key !== "getTransaction") return Reflect.get(target, key, receiver);
      return async (...args: Parameters<RpcPool["getTransaction"]>) => {
        const fetched = await target.getTransaction(...args);
        const rewrite = rewriteOf(args[0]);
        if (fetched === null || rewrite === undefined) return fetched;
        const result = JSON.parse(fetched.raw) as Result;
        rewrite(result);
        return { facts: parseTransaction(result, args[0]), raw: JSON.stringify(result) };
      };
    },
  });
}

/** `rpc` as a node that serves none of `withheld`'s transactions (answers not found) while they are in it. */
export function withholdingNode(rpc: RpcPool, withheld: ReadonlySet<string>): RpcPool {
  const node: RpcPool = Object.create(rpc);
  node.getTransaction = (signature, ...rest) =>
    withheld.has(signature) ? Promise.resolve(null) : rpc.getTransaction(signature, ...rest);
  return node;
}

/** `rpc`, every transaction served with no `owner` in its token balances (it is optional). */
export function ownerlessNode(rpc: RpcPool): RpcPool {
  type Balances = {
    meta: { preTokenBalances: { owner?: string }[]; postTokenBalances: { owner?: string }[] };
  };
  return rewritingNode(rpc, () => (result: Balances) => {
    for (const b of [...result.meta.preTokenBalances, ...result.meta.postTokenBalances]) {
      delete b.owner;
    }
  });
}

/** A rewrite of an address listing: its entries and the options it was asked with. */
export type Listing = (
  entries: AddressSignatureInfo[],
  options: { before?: string; until?: string } | undefined,
  address: string,
) => AddressSignatureInfo[];

/** `rpc` whose address listing `listing.rewrite` rewrites (while set). */
export function listingNode(rpc: RpcPool, listing: { rewrite: Listing | null }): RpcPool {
  return new Proxy(rpc, {
    get(target, key, receiver) {
      if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
      return async (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
        const entries = await target.getSignaturesForAddress(...args);
        return listing.rewrite ? listing.rewrite(entries, args[1], args[0]) : entries;
      };
    },
  });
}

/**
 * Stores `signature`'s transaction as a version that read an answer without token balances
 * stored it, before such an answer was unreadable: that answer as its raw evidence, and facts in
 * which no balance moved and nothing after it is known.
 */
export async function storeServedWithoutTokenBalances(
  store: Store,
  rpc: RpcPool,
  signature: string,
): Promise<void> {
  const served = (await rpc.getTransaction(signature))!;
  const raw = parseJsonLossless(served.raw) as { meta: Record<string, unknown> };
  delete raw.meta.preTokenBalances;
  delete raw.meta.postTokenBalances;
  const { openedTokenAccounts: _, ownersAfter: __, ...kept } = served.facts;
  const signatures = createSignatureStore(store);
  await signatures.track([signature], Date.now());
  await signatures.recordFetched(
    signature,
    { facts: { ...kept, tokenChanges: [] }, raw },
    Date.now(),
  );
}

/**
 * Stores `signature`'s transaction as a version that kept no instruction's mint stored it: the
 * answer as its raw evidence, and its facts without each instruction's `mint`.
 */
export async function storeKeptWithoutMints(
  store: Store,
  rpc: RpcPool,
  signature: string,
): Promise<void> {
  const served = (await rpc.getTransaction(signature))!;
  const tokenInstructions = served.facts.tokenInstructions.map(({ mint: _, ...ix }) => ix);
  const signatures = createSignatureStore(store);
  await signatures.track([signature], Date.now());
  await signatures.recordFetched(
    signature,
    { facts: { ...served.facts, tokenInstructions }, raw: parseJsonLossless(served.raw) },
    Date.now(),
  );
}
