import type { AddressSignatureInfo } from "../chain/rpc-pool.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import type { Store } from "../db/client.js";
import type { Logger } from "../log.js";
import { createLedgerStore, type EscrowScanState } from "../store/ledger.js";
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
  /** Pages one `scanNew` lists at most; a scan longer than that goes on at the next. Default 20. */
  pagesPerRound?: number;
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
  /** A `scanNew` that listed its most pages before reaching where the last scan ended. */
  more: boolean;
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
  const pagesPerRound = deps.pagesPerRound ?? 20;
  const fetchConcurrency = deps.fetchConcurrency ?? 8;
  const ledger = createLedgerStore(deps.store);
  const none = (vault: string | null): EscrowScanResult => ({
    vault,
    listed: 0,
    fetched: 0,
    kept: [],
    unread: null,
    more: false,
  });

  /** One page newest first, cut at the first entry dated before `notBeforeSec`. */
  async function page(
    vault: string,
    bound: { before: string | null; until: string | null; notBeforeSec: number | null },
  ): Promise<{ entries: AddressSignatureInfo[]; ended: boolean }> {
    const listed = await rpc.getSignaturesForAddress(vault, {
      limit: pageSize,
      ...(bound.before ? { before: bound.before } : {}),
      ...(bound.until ? { until: bound.until } : {}),
    });
    const { notBeforeSec } = bound;
    const cut =
      notBeforeSec === null
        ? -1
        : listed.findIndex((e) => e.blockTime !== null && e.blockTime < notBeforeSec);
    return cut >= 0
      ? { entries: listed.slice(0, cut), ended: true }
      : { entries: listed, ended: listed.length < pageSize };
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
   * What of `entries` (a page) is to be kept with a recorded job: each entry whose memo names
   * a recorded job that does not name it is fetched, and kept when it paid out of escrow under
   * that job's memo. `unreadAt`: the newest entry no endpoint served (-1 when none).
   */
  async function judgePage(
    vault: string,
    entries: readonly AddressSignatureInfo[],
    signal?: AbortSignal,
  ): Promise<{ keep: KeepPair[]; fetched: number; unreadAt: number }> {
    const candidates = await ledger.unnamedSteps(namedPairs(entries));
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
    }
    const keep = candidates.filter((c) => {
      const facts = factsOf.get(c.signature);
      if (!facts || !paidOutOf(profile, vault, facts)) return false;
      // The transaction's own memos (the listing's are a node's word) name the job.
      return parseJobMemos(profile, facts.memos).some((m) => m.jobId === c.job);
    });
    const unreadAt = entries.findIndex(
      (e) => factsOf.has(e.signature) && !factsOf.get(e.signature),
    );
    return { keep, fetched: signatures.length, unreadAt };
  }

  const unreadText = (signature: string) =>
    `the escrow vault's transaction ${signature}, listed under a recorded job's memo, was not served by the RPC; read again next time`;

  /** Keeps what a page found, writing `state` with it; logs the jobs that gained. */
  async function keep(vault: string, pairs: KeepPair[], state: EscrowScanState | null) {
    const gained = await ledger.keepEscrowSteps(vault, pairs, state, now());
    if (gained.length > 0) {
      log.warn(
        { vault, jobs: gained, signatures: pairs.map((k) => k.signature) },
        "escrow paid out under a job's memo a transaction the job does not name: judged again",
      );
    }
    return gained;
  }

  return {
    /**
     * Scans what the escrow vault listed since the last completed scan (serve's rounds), at
     * most `pagesPerRound` pages a call: a scan in progress goes on from where it stood (`more`
     * says one is). The first reads back to the earliest recorded job; with none, it only marks
     * where the history stands: a job recorded later is paid out after it.
     */
    async scanNew(signal?: AbortSignal): Promise<EscrowScanResult> {
      const vault = profile.escrowVault;
      if (vault === null) return none(vault);
      const state: EscrowScanState = (await ledger.escrowScanOf(vault)) ?? {
        newestSignature: null,
        newestSlot: null,
        syncTop: null,
        syncTopSlot: null,
        syncBefore: null,
      };
      const result = none(vault);
      let notBeforeSec: number | null = null;
      if (state.newestSignature === null) {
        const earliest = await ledger.earliestJobAt();
        if (earliest === null) {
          const [top] = await rpc.getSignaturesForAddress(vault, { limit: 1 });
          if (top) {
            await keep(vault, [], {
              ...state,
              newestSignature: top.signature,
              newestSlot: top.slot,
            });
          }
          return { ...result, listed: top ? 1 : 0 };
        }
        notBeforeSec = Math.floor((earliest - FIRST_SCAN_SLACK_MS) / 1000);
      }
      let { syncTop, syncTopSlot, syncBefore } = state;
      for (let pages = 0; pages < pagesPerRound; pages++) {
        signal?.throwIfAborted();
        const { entries, ended } = await page(vault, {
          before: syncBefore,
          until: state.newestSignature,
          notBeforeSec,
        });
        result.listed += entries.length;
        const first = entries[0];
        if (syncTop === null && first) {
          syncTop = first.signature;
          syncTopSlot = first.slot;
        }
        const judged = await judgePage(vault, entries, signal);
        result.fetched += judged.fetched;
        if (judged.unreadAt >= 0) {
          // Judged again from the entry no endpoint served, the next time.
          if (judged.unreadAt > 0) syncBefore = entries[judged.unreadAt - 1]!.signature;
          result.unread = unreadText(entries[judged.unreadAt]!.signature);
          const progress = { ...state, syncTop, syncTopSlot, syncBefore };
          result.kept.push(...(await keep(vault, judged.keep, progress)));
          return result;
        }
        if (ended) {
          const done =
            syncTop === null
              ? null
              : {
                  newestSignature: syncTop,
                  newestSlot: syncTopSlot,
                  syncTop: null,
                  syncTopSlot: null,
                  syncBefore: null,
                };
          result.kept.push(...(await keep(vault, judged.keep, done)));
          return result;
        }
        syncBefore = entries.at(-1)?.signature ?? syncBefore;
        const progress = { ...state, syncTop, syncTopSlot, syncBefore };
        result.kept.push(...(await keep(vault, judged.keep, progress)));
      }
      return { ...result, more: true };
    },

    /**
     * Scans what the escrow vault listed from `fromMs` to now, whatever the cursor says (a
     * nightly run, for its window's jobs); the cursor is left where it is.
     */
    async scanSince(fromMs: number, signal?: AbortSignal): Promise<EscrowScanResult> {
      const vault = profile.escrowVault;
      if (vault === null) return none(vault);
      const result = none(vault);
      const notBeforeSec = Math.floor(fromMs / 1000);
      let before: string | null = null;
      for (;;) {
        signal?.throwIfAborted();
        const { entries, ended } = await page(vault, { before, until: null, notBeforeSec });
        result.listed += entries.length;
        const judged = await judgePage(vault, entries, signal);
        result.fetched += judged.fetched;
        if (judged.unreadAt >= 0 && result.unread === null) {
          result.unread = unreadText(entries[judged.unreadAt]!.signature);
        }
        result.kept.push(...(await keep(vault, judged.keep, null)));
        const last = entries.at(-1);
        if (ended || last === undefined) return result;
        before = last.signature;
      }
    },
  };
}

export type EscrowScanner = ReturnType<typeof createEscrowScanner>;
