import type { AddressSignatureInfo } from "../chain/rpc-pool.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import type { Store } from "../db/client.js";
import type { Logger } from "../log.js";
import { createLedgerStore, type EscrowScanCursor } from "../store/ledger.js";
import type { KeepPair } from "../store/ledger-rules.js";
import { parseJobMemos } from "../verify/checks/memos.js";
import { isCredit } from "../verify/money-movements.js";
import type { Profile } from "../verify/profiles.js";
import type { LedgerRpc } from "./reader.js";

/**
 * Finds the escrow vault's payouts under a recorded job's memo that the job does not name: a
 * second settlement of a streamed job (whose headers carry no settlement, the jobs API naming
 * one) that returns nothing to the customer's vault touches only escrow, the worker and the
 * treasury, so no credit vault's ledger reads it.
 *
 * The escrow vault holds every customer's locks: its history is listed (`getSignaturesForAddress`,
 * whose entries carry each transaction's top-level memos) but not kept. An entry whose memo
 * names a recorded job that neither names nor keeps its signature is fetched, and kept with the
 * job (as a conflicting receipt's signature is: `settlement.single`, `escrow.single` judge it)
 * only when it paid out of the escrow vault: anyone may send a unit into escrow under any memo,
 * only the escrow authority can take one out. The job goes back to the verifier.
 *
 * `scanNew` (serve's rounds) goes on from a cursor kept in the store (`escrow_scans`); the first
 * reads back to the earliest recorded job. `scanSince` (the nightly run) reads back to a time,
 * for the jobs of its window whatever the cursor passed before they were recorded (an import).
 */

export interface EscrowScanDeps {
  store: Store;
  rpc: LedgerRpc;
  profile: Profile;
  log: Logger;
  now?: () => number;
  /** Entries per listing page, 1..1000. Default 1000. */
  pageSize?: number;
  /** Transactions fetched at once. Default 8. */
  fetchConcurrency?: number;
}

export interface EscrowScanResult {
  /** The escrow vault scanned; null when the profile names none (nothing is scanned). */
  vault: string | null;
  /** Entries listed. */
  listed: number;
  /** Transactions fetched: listed under a recorded job's memo the job does not name. */
  fetched: number;
  /** Jobs that gained a transaction, sent back to the verifier. */
  kept: string[];
  /**
   * Why the scan stopped short: a transaction its listing named that no endpoint served (the
   * cursor stays before it, read again next time); null when it read all it listed.
   */
  unread: string | null;
}

/** A first scan reads from this long before the earliest recorded job. */
const FIRST_SCAN_SLACK_MS = 5 * 60_000;

/**
 * The memo texts of a listing entry's `memo` (`[len] text; [len] text`, as nodes join the
 * top-level memos). A text holding `; [n] ` itself splits in two here; harmless: a job named
 * by a piece is only a reason to fetch the transaction, whose own memos decide.
 */
export function listedMemoTexts(memo: string): string[] {
  return memo
    .split(/; (?=\[\d+\] )/)
    .map((part) => part.replace(/^\[\d+\] /, ""))
    .filter((part) => part.length > 0);
}

/** Did the transaction pay credits out of `vault`? Only its owner (or delegate) can. */
export function paidOutOf(profile: Profile, vault: string, facts: TransactionFacts): boolean {
  if (!facts.succeeded) return false;
  return (
    facts.tokenChanges.some((c) => c.account === vault && isCredit(profile, c) && c.delta < 0n) ||
    facts.tokenInstructions.some((i) => i.source === vault && (i.amount ?? 1n) > 0n)
  );
}

export function createEscrowScanner(deps: EscrowScanDeps) {
  const { rpc, profile, log } = deps;
  const now = deps.now ?? Date.now;
  const pageSize = deps.pageSize ?? 1000;
  const fetchConcurrency = deps.fetchConcurrency ?? 8;
  const ledger = createLedgerStore(deps.store);

  /**
   * Lists `vault` newest first down to `until` (exclusive), or to the first entry dated before
   * `notBeforeSec`, or to the start of its history.
   */
  async function list(
    vault: string,
    bound: { until?: string; notBeforeSec?: number; limit?: number },
    signal?: AbortSignal,
  ): Promise<AddressSignatureInfo[]> {
    const out: AddressSignatureInfo[] = [];
    let before: string | undefined;
    const size = bound.limit ?? pageSize;
    for (;;) {
      signal?.throwIfAborted();
      const page = await rpc.getSignaturesForAddress(vault, {
        limit: size,
        ...(before ? { before } : {}),
        ...(bound.until ? { until: bound.until } : {}),
      });
      for (const entry of page) {
        if (
          bound.notBeforeSec !== undefined &&
          entry.blockTime !== null &&
          entry.blockTime < bound.notBeforeSec
        ) {
          return out;
        }
        out.push(entry);
      }
      const last = page.at(-1);
      if (page.length < size || last === undefined || bound.limit !== undefined) return out;
      before = last.signature;
    }
  }

  /** The (signature, job) pairs of a listing whose memos name a job. */
  function namedPairs(entries: readonly AddressSignatureInfo[]): KeepPair[] {
    const pairs: KeepPair[] = [];
    for (const e of entries) {
      if (e.err !== null || e.memo === null) continue;
      for (const m of parseJobMemos(profile, listedMemoTexts(e.memo))) {
        pairs.push({ signature: e.signature, job: m.jobId });
      }
    }
    return pairs;
  }

  /**
   * Judges `entries` (oldest first) in slices, keeping what paid out of escrow under a recorded
   * job's memo with that job; with `cursorMoves`, the cursor follows each slice. Stops at a
   * transaction no endpoint served.
   */
  async function judge(
    vault: string,
    entries: readonly AddressSignatureInfo[],
    cursorMoves: boolean,
    signal?: AbortSignal,
  ): Promise<Omit<EscrowScanResult, "vault" | "listed">> {
    const result: Omit<EscrowScanResult, "vault" | "listed"> = {
      fetched: 0,
      kept: [],
      unread: null,
    };
    for (let start = 0; start < entries.length; start += pageSize) {
      signal?.throwIfAborted();
      let slice = entries.slice(start, start + pageSize);
      const candidates = await ledger.unnamedSteps(namedPairs(slice));
      const signatures = [...new Set(candidates.map((c) => c.signature))];
      const factsOf = new Map<string, TransactionFacts | null>();
      for (let i = 0; i < signatures.length; i += fetchConcurrency) {
        signal?.throwIfAborted();
        const part = signatures.slice(i, i + fetchConcurrency);
        const got = await Promise.allSettled(part.map((s) => rpc.getTransaction(s)));
        part.forEach((s, j) => {
          const answer = got[j]!;
          factsOf.set(s, answer.status === "fulfilled" ? (answer.value?.facts ?? null) : null);
        });
        result.fetched += part.length;
      }
      // The oldest transaction not served ends the scan there: the cursor stays before it.
      const unreadAt = slice.findIndex(
        (e) => factsOf.has(e.signature) && !factsOf.get(e.signature),
      );
      if (unreadAt >= 0) {
        result.unread = `the escrow vault's transaction ${slice[unreadAt]!.signature}, listed under a recorded job's memo, was not served by the RPC; read again next time`;
        slice = slice.slice(0, unreadAt);
      }
      const served = new Set(slice.map((e) => e.signature));
      const keep = candidates.filter((c) => {
        const facts = factsOf.get(c.signature);
        if (!served.has(c.signature) || !facts || !paidOutOf(profile, vault, facts)) return false;
        // The transaction's own memos (the listing's are a node's word) name the job.
        return parseJobMemos(profile, facts.memos).some((m) => m.jobId === c.job);
      });
      const newest = slice.at(-1);
      const cursor: EscrowScanCursor | null =
        cursorMoves && newest
          ? { newestSignature: newest.signature, newestSlot: newest.slot }
          : null;
      const gained = await ledger.keepEscrowSteps(vault, keep, cursor, now());
      if (gained.length > 0) {
        log.warn(
          { vault, jobs: gained, signatures: keep.map((k) => k.signature) },
          "escrow paid out under a job's memo a transaction the job does not name: judged again",
        );
      }
      result.kept.push(...gained);
      if (result.unread !== null) break;
    }
    return result;
  }

  return {
    /**
     * Scans what the escrow vault listed since the last scan (serve's rounds). The first scan
     * reads back to the earliest recorded job; with none, it only marks where the history
     * stands: a job recorded later is paid out after it.
     */
    async scanNew(signal?: AbortSignal): Promise<EscrowScanResult> {
      const vault = profile.escrowVault;
      if (vault === null) return { vault, listed: 0, fetched: 0, kept: [], unread: null };
      const cursor = await ledger.escrowScanOf(vault);
      let entries: AddressSignatureInfo[];
      if (cursor !== null) {
        entries = await list(vault, { until: cursor.newestSignature }, signal);
      } else {
        const earliest = await ledger.earliestJobAt();
        entries =
          earliest === null
            ? await list(vault, { limit: 1 }, signal)
            : await list(
                vault,
                { notBeforeSec: Math.floor((earliest - FIRST_SCAN_SLACK_MS) / 1000) },
                signal,
              );
        if (earliest === null) {
          const top = entries[0];
          if (top) {
            await ledger.keepEscrowSteps(
              vault,
              [],
              { newestSignature: top.signature, newestSlot: top.slot },
              now(),
            );
          }
          return { vault, listed: entries.length, fetched: 0, kept: [], unread: null };
        }
      }
      const judged = await judge(vault, entries.reverse(), true, signal);
      return { vault, listed: entries.length, ...judged };
    },

    /**
     * Scans what the escrow vault listed from `fromMs` to now, whatever the cursor says (a
     * nightly run, for its window's jobs); the cursor is left where it is.
     */
    async scanSince(fromMs: number, signal?: AbortSignal): Promise<EscrowScanResult> {
      const vault = profile.escrowVault;
      if (vault === null) return { vault, listed: 0, fetched: 0, kept: [], unread: null };
      const entries = await list(vault, { notBeforeSec: Math.floor(fromMs / 1000) }, signal);
      const judged = await judge(vault, entries.reverse(), false, signal);
      return { vault, listed: entries.length, ...judged };
    },
  };
}

export type EscrowScanner = ReturnType<typeof createEscrowScanner>;
