import { factsFromJson, factsToJson } from "../chain/facts-json.js";
import { parseJsonLossless } from "../chain/json-text.js";
import { parseTransaction } from "../chain/parse-transaction.js";
import type { AddressSignatureInfo } from "../chain/rpc-pool.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import type { Store } from "../db/client.js";
import type { Logger } from "../log.js";
import { parseJobMemos } from "../verify/checks.js";
import type { CustodyConfig } from "../verify/custody.js";
import type { Profile } from "../verify/profiles.js";

/**
 * Reads the whole signature history of every known credit vault into `ledger_lines`, page by
 * page from a stored cursor, and reads each listed transaction once (sharing
 * `chain_transactions` with the verifier: a transaction either of them fetched is never fetched
 * again). Lines are only facts of the chain; src/ledger/statement.ts decides what they are.
 */

/** The part of the RPC pool (`src/chain/rpc-pool.ts`) the ledger uses. */
export interface LedgerRpc {
  getSignaturesForAddress(
    address: string,
    options?: { before?: string; until?: string; limit?: number },
  ): Promise<AddressSignatureInfo[]>;
  getTransaction(signature: string): Promise<{ facts: TransactionFacts; raw: unknown } | null>;
  getTokenAccountBalance(address: string): Promise<{ slot: number; amount: bigint }>;
}

export interface LedgerOptions {
  /** Signatures per getSignaturesForAddress page, 1..1000. Default 1000. */
  pageSize: number;
  /** getTransaction calls in flight at once (the pool enforces the rate). Default 8. */
  fetchConcurrency: number;
  /** How often `start()` syncs every vault, in ms. Default 10000. */
  intervalMs: number;
}

export const defaultLedgerOptions: LedgerOptions = {
  pageSize: 1000,
  fetchConcurrency: 8,
  intervalMs: 10_000,
};

export interface LedgerDeps {
  store: Store;
  rpc: LedgerRpc;
  profile: Profile;
  log: Logger;
  /** Credit vaults the deployment configured (`CREDIT_VAULTS`), read besides learned ones. */
  custody?: CustodyConfig;
  now?: () => number;
  options?: Partial<LedgerOptions>;
  /** Called after each round of the `start()` loop (e.g. to count findings for metrics). */
  afterRound?: (results: VaultSyncResult[]) => void;
}

export interface VaultSyncResult {
  vault: string;
  /** Pages this call listed (0 when another process had listed them). */
  pages: number;
  /** Lines this call inserted. */
  listed: number;
  /** Transactions this call fetched over RPC (not found in `chain_transactions`). */
  fetched: number;
  /** Lines read from transactions the verifier (or an earlier read) had already fetched. */
  shared: number;
  /** Lines still waiting for their transaction (RPC trouble, or pruned by the node). */
  pending: number;
}

export interface LedgerReader {
  /** Every credit vault the ledger reads: configured ones and the pins of `credit_vaults`. */
  vaults(): string[];
  /** Reads one vault's new history, its transactions, then its finalized balance. */
  syncVault(vault: string, opts?: { signal?: AbortSignal }): Promise<VaultSyncResult>;
  /** Syncs every vault, one after the other; a vault's RPC trouble is logged and kept. */
  syncAll(opts?: { signal?: AbortSignal }): Promise<VaultSyncResult[]>;
  /** Runs `syncAll` every `intervalMs` until `stop()`. */
  start(): void;
  stop(): Promise<void>;
}

interface CursorRow {
  vault: string;
  newest_signature: string | null;
  newest_slot: number | null;
  sync_top: string | null;
  sync_top_slot: number | null;
  sync_before: string | null;
  sync_number: number;
  sync_index: number;
}

/** Orders lines: one sync's lines sit between the previous sync's and the next one's. */
const ORD_SPAN = 1_000_000_000;

/** Known credit vaults: the deployment's configured ones and every pinned key's vault. */
export function knownVaults(store: Store, custody?: CustodyConfig): string[] {
  const pinned = store.sqlite
    .prepare("SELECT DISTINCT vault FROM credit_vaults ORDER BY vault")
    .pluck()
    .all() as string[];
  return [
    ...new Set([...(custody?.vaults ?? []), ...Object.values(custody?.byKey ?? {}), ...pinned]),
  ].sort();
}

export function createLedgerReader(deps: LedgerDeps): LedgerReader {
  const { store, rpc, profile, log } = deps;
  const { sqlite } = store;
  const now = deps.now ?? Date.now;
  const options: LedgerOptions = { ...defaultLedgerOptions, ...deps.options };
  if (!Number.isInteger(options.pageSize) || options.pageSize < 1 || options.pageSize > 1000) {
    throw new RangeError("ledger pageSize must be an integer in 1..1000");
  }

  const selectCursor = sqlite.prepare("SELECT * FROM ledger_cursors WHERE vault = ?");
  const insertCursor = sqlite.prepare(
    "INSERT INTO ledger_cursors (vault, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
  );
  const insertLine = sqlite.prepare(
    `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, succeeded, listed_at)
     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (vault, signature) DO NOTHING`,
  );
  const advance = sqlite.prepare(
    `UPDATE ledger_cursors SET sync_top = ?, sync_top_slot = ?, sync_before = ?,
       sync_index = ?, pages_read = pages_read + 1, last_error = NULL, updated_at = ?
     WHERE vault = ?`,
  );
  const complete = sqlite.prepare(
    `UPDATE ledger_cursors SET newest_signature = ?, newest_slot = ?, sync_top = NULL,
       sync_top_slot = NULL, sync_before = NULL, sync_index = 0, sync_number = sync_number + 1,
       pages_read = pages_read + 1, synced_at = ?, last_error = NULL, updated_at = ?
     WHERE vault = ?`,
  );
  const listedLines = sqlite.prepare(
    "SELECT signature FROM ledger_lines WHERE vault = ? AND state = 'listed' ORDER BY ord",
  );
  const storedTx = sqlite.prepare(
    "SELECT signature, facts, raw FROM chain_transactions WHERE signature = ? AND facts IS NOT NULL",
  );
  // Shared with the verifier: the same row shape it writes once a transaction is finalized.
  const upsertTx = sqlite.prepare(
    `INSERT INTO chain_transactions (signature, state, commitment, slot, block_time, fee_lamports,
       succeeded, err, facts, raw, first_seen_at, fetched_at)
     VALUES (?, 'finalized', 'finalized', ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (signature) DO UPDATE SET state = 'finalized', commitment = 'finalized',
       slot = excluded.slot, block_time = excluded.block_time,
       fee_lamports = excluded.fee_lamports, succeeded = excluded.succeeded, err = excluded.err,
       facts = excluded.facts, raw = excluded.raw, fetched_at = excluded.fetched_at
     WHERE chain_transactions.facts IS NULL`,
  );
  const readLine = sqlite.prepare(
    `UPDATE ledger_lines SET state = 'read', succeeded = ?, pre_units = ?, post_units = ?,
       delta_units = ?, memo = ?, memo_kind = ?, memo_job_id = ?
     WHERE vault = ? AND signature = ? AND state = 'listed'`,
  );
  const setBalance = sqlite.prepare(
    `UPDATE ledger_cursors SET balance_units = ?, balance_slot = ?, balance_at = ?, updated_at = ?
     WHERE vault = ?`,
  );
  const setError = sqlite.prepare(
    "UPDATE ledger_cursors SET last_error = ?, updated_at = ? WHERE vault = ?",
  );
  const newestListedSlot = sqlite
    .prepare("SELECT max(slot) FROM ledger_lines WHERE vault = ?")
    .pluck();

  const cursorOf = (vault: string): CursorRow => {
    insertCursor.run(vault, now());
    return selectCursor.get(vault) as CursorRow;
  };

  /**
   * Stores one listed page with the cursor's move, in one IMMEDIATE transaction. Returns false
   * when the cursor moved since `seen` was read: another process stored this page first.
   */
  const storePage = sqlite.transaction(
    (vault: string, seen: CursorRow, page: AddressSignatureInfo[], last: boolean): boolean => {
      const current = selectCursor.get(vault) as CursorRow;
      if (
        current.sync_before !== seen.sync_before ||
        current.sync_number !== seen.sync_number ||
        current.newest_signature !== seen.newest_signature
      ) {
        return false;
      }
      const t = now();
      page.forEach((entry, i) => {
        const ord = (seen.sync_number + 1) * ORD_SPAN - (seen.sync_index + i) - 1;
        insertLine.run(
          vault,
          entry.signature,
          ord,
          entry.slot,
          entry.blockTime,
          entry.err === null ? 1 : 0,
          t,
        );
      });
      const top = seen.sync_top ?? page[0]?.signature ?? null;
      const topSlot = seen.sync_top_slot ?? page[0]?.slot ?? null;
      if (last) {
        complete.run(top ?? seen.newest_signature, top ? topSlot : seen.newest_slot, t, t, vault);
      } else {
        advance.run(top, topSlot, page.at(-1)!.signature, seen.sync_index + page.length, t, vault);
      }
      return true;
    },
  );

  /** Lists every page newer than the last completed sync; returns pages and lines stored. */
  async function listNew(vault: string, signal?: AbortSignal) {
    let pages = 0;
    let listed = 0;
    for (;;) {
      signal?.throwIfAborted();
      const seen = cursorOf(vault);
      const page = await rpc.getSignaturesForAddress(vault, {
        limit: options.pageSize,
        ...(seen.sync_before ? { before: seen.sync_before } : {}),
        ...(seen.newest_signature ? { until: seen.newest_signature } : {}),
      });
      const last = page.length < options.pageSize;
      if (storePage.immediate(vault, seen, page, last)) {
        pages++;
        listed += page.length;
      }
      if (last && cursorOf(vault).sync_before === null) return { pages, listed };
    }
  }

  /** The vault's movement in one transaction, and the memo naming a job. */
  function lineOf(vault: string, facts: TransactionFacts) {
    const change = facts.tokenChanges.find((c) => c.account === vault);
    const named = parseJobMemos(profile, facts.memos)[0];
    return {
      succeeded: facts.succeeded ? 1 : 0,
      pre: change ? change.pre : null,
      post: change ? change.post : null,
      delta: change ? change.delta : 0n,
      memo: facts.memos.length > 0 ? facts.memos.join("\n") : null,
      memoKind: named?.kind ?? null,
      memoJobId: named?.jobId ?? null,
    };
  }

  function storedFacts(row: { signature: string; facts: string; raw: string | null }) {
    try {
      return factsFromJson(JSON.parse(row.facts));
    } catch (error) {
      if (row.raw === null) throw error;
      return parseTransaction(parseJsonLossless(row.raw), row.signature);
    }
  }

  /** Reads every listed line's transaction: from the store when fetched already, else RPC. */
  async function readListed(vault: string, signal?: AbortSignal) {
    const signatures = listedLines.pluck().all(vault) as string[];
    let fetched = 0;
    let shared = 0;
    let pending = 0;
    const write = (signature: string, facts: TransactionFacts) => {
      const l = lineOf(vault, facts);
      readLine.run(
        l.succeeded,
        l.pre,
        l.post,
        l.delta,
        l.memo,
        l.memoKind,
        l.memoJobId,
        vault,
        signature,
      );
    };
    for (let i = 0; i < signatures.length; i += options.fetchConcurrency) {
      signal?.throwIfAborted();
      const part = signatures.slice(i, i + options.fetchConcurrency);
      const toFetch: string[] = [];
      for (const signature of part) {
        const row = storedTx.get(signature) as
          | { signature: string; facts: string; raw: string | null }
          | undefined;
        if (row) {
          write(signature, storedFacts(row));
          shared++;
        } else toFetch.push(signature);
      }
      const results = await Promise.allSettled(toFetch.map((s) => rpc.getTransaction(s)));
      const t = now();
      sqlite
        .transaction(() => {
          results.forEach((result, j) => {
            const signature = toFetch[j]!;
            if (result.status === "rejected" || result.value === null) {
              pending++;
              return;
            }
            const { facts, raw } = result.value;
            upsertTx.run(
              signature,
              facts.slot,
              facts.blockTime,
              facts.fee,
              facts.succeeded ? 1 : 0,
              JSON.stringify(facts.err ?? null),
              JSON.stringify(factsToJson(facts)),
              typeof raw === "string" ? raw : JSON.stringify(raw),
              t,
              t,
            );
            write(signature, facts);
            fetched++;
          });
        })
        .immediate();
      const failure = results.find((r) => r.status === "rejected");
      if (failure) throw (failure as PromiseRejectedResult).reason;
    }
    return { fetched, shared, pending };
  }

  async function syncVault(vault: string, opts: { signal?: AbortSignal } = {}) {
    // The balance is read first: every transaction up to its slot is finalized by then, so the
    // listing after it holds them all. It is kept only when the listing found nothing newer,
    // so the ledger up to that slot and the balance at it can be compared line for line.
    let balance: { slot: number; amount: bigint } | null = null;
    try {
      balance = await rpc.getTokenAccountBalance(vault);
    } catch (error) {
      log.warn({ vault, err: String(error) }, "ledger: balance not read");
    }
    const { pages, listed } = await listNew(vault, opts.signal);
    const { fetched, shared, pending } = await readListed(vault, opts.signal);
    const newest = newestListedSlot.get(vault) as number | null;
    if (balance && (newest === null || newest <= balance.slot)) {
      setBalance.run(balance.amount, balance.slot, now(), now(), vault);
    }
    return { vault, pages, listed, fetched, shared, pending };
  }

  async function syncAll(opts: { signal?: AbortSignal } = {}) {
    const results: VaultSyncResult[] = [];
    for (const vault of knownVaults(store, deps.custody)) {
      try {
        results.push(await syncVault(vault, opts));
      } catch (error) {
        if (opts.signal?.aborted) throw error;
        const message = error instanceof Error ? error.message : String(error);
        setError.run(message, now(), vault);
        log.warn({ vault, err: message }, "ledger sync failed; retried next round");
      }
    }
    return results;
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | null = null;
  let abort: AbortController | null = null;
  let stopped = true;

  const tick = () => {
    if (stopped) return;
    abort = new AbortController();
    running = syncAll({ signal: abort.signal })
      .catch((error) => {
        if (!abort?.signal.aborted) log.error({ err: String(error) }, "ledger round failed");
      })
      .then((results) => {
        try {
          if (results) deps.afterRound?.(results);
        } catch (error) {
          log.error({ err: String(error) }, "ledger: after-round work failed");
        }
      })
      .finally(() => {
        running = null;
        if (!stopped) timer = setTimeout(tick, options.intervalMs);
      });
  };

  return {
    vaults: () => knownVaults(store, deps.custody),
    syncVault,
    syncAll,
    start() {
      if (!stopped) return;
      stopped = false;
      tick();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      abort?.abort();
      await running;
    },
  };
}
