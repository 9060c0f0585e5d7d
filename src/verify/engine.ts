import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { and, eq, gte, inArray, isNull, lt, lte, or, sql } from "drizzle-orm";
import PQueue from "p-queue";
import { factsFromJson, factsToJson } from "../chain/facts-json.js";
import { parseJsonLossless } from "../chain/json-text.js";
import { parseTransaction } from "../chain/parse-transaction.js";
import {
  describeDisagreement,
  type RpcDisagreement,
  RpcDisagreementError,
} from "../chain/quorum.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";
import { isBusyError, retryWhileBusy, type Store } from "../db/client.js";
import {
  chainTransactions,
  finalVerdicts,
  jobs,
  type Verdict,
  verdicts,
  verificationRuns,
} from "../db/schema.js";
import { isAppError } from "../errors.js";
import type { Logger } from "../log.js";
import { stringifyWithBigints } from "../money.js";
import {
  type CheckResult,
  type Custody,
  type Evaluation,
  evaluateJob,
  jobSignatures,
  MAX_NAMED_BY,
} from "./checks.js";
import { type CustodyConfig, createCustodyStore } from "./custody.js";
import type { Profile } from "./profiles.js";

/**
 * The durable verification queue. All state lives in SQLite (job verdicts, leases, one row per
 * signature); the in-process loop only decides when to look again. Invariants:
 * - a job is worked on only under a lease (owner + expiry) taken in a short synchronous
 *   transaction; an expired lease is reclaimable, so a crash never loses a job;
 * - a verdict, its amounts and its check rows are written in one synchronous transaction that
 *   first re-checks the lease owner, so a result is applied once or not at all;
 * - a finalized transaction is fetched once and shared by every job naming it;
 * - no RPC call is made inside a database transaction.
 */

type Commitment = "processed" | "confirmed" | "finalized";

/** A signature status as the RPC pool returns it (null: the node knows nothing of it). */
export interface SignatureStatusLike {
  signature: string;
  slot: number;
  confirmationStatus: Commitment | null;
  err: unknown;
  /** Set by a quorum when its endpoints disagree on this status (it is then never final). */
  disagreement?: RpcDisagreement;
}

/** The part of the RPC pool (`src/chain`) the verifier uses. */
export interface VerifierRpc {
  /** Statuses with history searched; the pool splits the list into calls of at most 256. */
  getSignatureStatuses(signatures: string[]): Promise<(SignatureStatusLike | null)[]>;
  /** The finalized transaction, or null when the node has none. */
  getTransaction(signature: string): Promise<{ facts: TransactionFacts; raw: unknown } | null>;
  getSlot(): Promise<number>;
}

export interface VerifierOptions {
  /**
   * How often signatures that are not final yet are polled, in ms. Finality moves one slot at a
   * time, so polling faster than a few slots only spends requests. Default 2000.
   */
  pollIntervalMs: number;
  /** How long the loop rests when nothing is due, unless `notify()` wakes it. Default 5000. */
  idleIntervalMs: number;
  /** Lease length in ms; a crashed owner's jobs are reclaimable after it. Default 120000. */
  leaseMs: number;
  /** Jobs claimed per round. Default 1000. */
  claimBatchSize: number;
  /** getTransaction calls in flight at once (the pool enforces the rate). Default 8. */
  fetchConcurrency: number;
  /** First retry delay after RPC trouble, in ms; doubles up to `maxBackoffMs`. Default 1000. */
  errorBackoffMs: number;
  /** Longest delay between two looks at a job, in ms. Default 60000. */
  maxBackoffMs: number;
  /** How soon to look again at a job waiting for the settlement backfill, in ms. Default 5000. */
  backfillWaitMs: number;
  /**
   * getTransaction answers of "not found" for a signature whose status is finalized before it
   * counts as pruned from the node (verdict `unverifiable`). Default 5.
   */
  maxFetchMisses: number;
}

export const defaultVerifierOptions: VerifierOptions = {
  pollIntervalMs: 2000,
  idleIntervalMs: 5000,
  leaseMs: 120_000,
  claimBatchSize: 1000,
  fetchConcurrency: 8,
  errorBackoffMs: 1000,
  maxBackoffMs: 60_000,
  backfillWaitMs: 5000,
  maxFetchMisses: 5,
};

export interface VerifyFilter {
  /** Jobs created at or after this time (ms since epoch). */
  from?: number;
  /** Jobs created before this time (ms since epoch): the window is [from, to). */
  to?: number;
  jobIds?: string[];
}

export interface RunProgress {
  total: number;
  final: number;
  byVerdict: Record<Verdict, number>;
}

export interface RunSummary extends RunProgress {
  runId: number;
  status: "completed" | "timed_out" | "interrupted";
  durationMs: number;
}

export interface Verifier {
  /** Runs the continuous loop (serve): polls on an interval, wakes early on `notify()`. */
  start(): void;
  /** Stops the loop, lets in-flight work finish and releases this owner's leases. */
  stop(): Promise<void>;
  /** New jobs arrived: look now. */
  notify(): void;
  /** Verifies the jobs in `filter` until each has a final verdict or the time is up. */
  runUntilSettled(
    filter: VerifyFilter,
    opts: { timeoutMs: number; signal?: AbortSignal; onProgress?(p: RunProgress): void },
  ): Promise<RunSummary>;
  /** Queues a fresh verification of one job. */
  reverify(jobId: string): void;
  /** Resolves once the loop has nothing due (every job final or waiting for a later time). */
  onIdle(): Promise<void>;
  /** This verifier's lease owner id. */
  readonly owner: string;
}

export interface VerifierDeps {
  store: Store;
  rpc: VerifierRpc;
  profile: Profile;
  log: Logger;
  now?: () => number;
  /** Lease owner id; random by default (unique per process). */
  owner?: string;
  /** Credit vaults the deployment configured (`CREDIT_VAULTS`). */
  custody?: CustodyConfig;
  options?: Partial<VerifierOptions>;
}

type JobRow = typeof jobs.$inferSelect;
type TxRow = typeof chainTransactions.$inferSelect;

const openVerdicts: Verdict[] = ["pending", "awaiting_finality", "error", "rpc_disagreement"];
const CHUNK = 500;

/**
 * Jobs decided and written per synchronous stretch. A job's verdict with its ~30 check rows
 * takes ~0.2 ms to write, so eight keep each stretch near 1-2 ms.
 */
const SLICE = 8;

/** Signature statuses written per synchronous stretch (~20 µs each, with the re-read). */
const STATUS_SLICE = 128;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function chunks<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const commitmentRank: Record<Commitment, number> = { processed: 0, confirmed: 1, finalized: 2 };

/** Per-round outcome of one signature's RPC work. */
type SigTrouble = Map<string, string>;

/** Creates the verifier over a store, an RPC pool and a profile. */
export function createVerifier(deps: VerifierDeps): Verifier {
  const { store, rpc, profile, log } = deps;
  const custody = createCustodyStore(store, profile, deps.custody);
  const { db } = store;
  const now = deps.now ?? Date.now;
  const owner = deps.owner ?? `verifier-${randomUUID()}-pid${process.pid}@${hostname()}`;
  const options: VerifierOptions = { ...defaultVerifierOptions, ...deps.options };

  let running = false;
  let stopping = false;
  /** Aborted by `stop()`: the round in flight stops between RPC calls. */
  let roundsAbort = new AbortController();
  let loopDone: Promise<void> | null = null;
  /** Wakers of sleeping loops; `notify()` with nobody asleep makes the next sleep return at once. */
  const sleepers = new Set<() => void>();
  let pendingWake = false;
  let idleWaiters: (() => void)[] = [];
  /**
   * Grid cell (time / pollIntervalMs) of the last status poll. At most one poll per cell: a job
   * arriving between two polls waits for the next one instead of costing a request of its own.
   */
  let lastPollCell = -1;
  /** Serialises rounds so the loop and `runUntilSettled` never race on this owner's leases. */
  const rounds = new PQueue({ concurrency: 1 });

  const sleep = (ms: number, signal?: AbortSignal) =>
    new Promise<void>((resolve) => {
      if (pendingWake || stopping) {
        pendingWake = false;
        resolve();
        return;
      }
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      sleepers.add(done);
      signal?.addEventListener("abort", done, { once: true });
    });

  function notify() {
    if (sleepers.size === 0) pendingWake = true;
    for (const wake of [...sleepers]) wake();
  }

  function filterCondition(filter: VerifyFilter | null) {
    if (!filter) return undefined;
    const parts = [];
    if (filter.from !== undefined) parts.push(gte(jobs.createdAt, filter.from));
    if (filter.to !== undefined) parts.push(lt(jobs.createdAt, filter.to));
    if (filter.jobIds !== undefined) parts.push(inArray(jobs.jobId, filter.jobIds));
    return parts.length > 0 ? and(...parts) : undefined;
  }

  /**
   * Claims due jobs under a lease in ONE statement (`UPDATE ... WHERE job_id IN (SELECT ...
   * LIMIT n) RETURNING *`): a write statement takes the write lock before it reads, so two
   * processes claiming at once wait for each other (busy timeout) instead of one failing on a
   * read-to-write upgrade, and never both get a job. Jobs still leased to this owner are
   * claimable too: rounds of one verifier never overlap, so such a lease is left from a round
   * that failed, and waiting for it to expire would stall those jobs for the lease length.
   */
  function claim(filter: VerifyFilter | null): JobRow[] {
    const t = now();
    const due = db
      .select({ jobId: jobs.jobId })
      .from(jobs)
      .where(
        and(
          inArray(jobs.verdict, openVerdicts),
          lte(jobs.nextVerifyAt, t),
          or(isNull(jobs.leaseUntil), lte(jobs.leaseUntil, t), eq(jobs.leaseOwner, owner)),
          filterCondition(filter),
        ),
      )
      .orderBy(jobs.nextVerifyAt)
      .limit(options.claimBatchSize);
    return db
      .update(jobs)
      .set({ leaseOwner: owner, leaseUntil: t + options.leaseMs })
      .where(inArray(jobs.jobId, due))
      .returning()
      .all();
  }

  function loadTxRows(signatures: string[]): Map<string, TxRow> {
    const rows = new Map<string, TxRow>();
    for (const part of chunks(signatures)) {
      for (const row of db
        .select()
        .from(chainTransactions)
        .where(inArray(chainTransactions.signature, part))
        .all()) {
        rows.set(row.signature, row);
      }
    }
    return rows;
  }

  // Jobs naming one signature in any role, from the receipt or the jobs API. Each branch is an
  // index range; UNION removes a job named twice. Ordered by id: the first is the owner of a
  // shared signature whose memo decides nothing (see signatureOwner).
  const namingUnion = `SELECT job_id FROM jobs WHERE escrow_tx = @sig
    UNION SELECT job_id FROM jobs WHERE settlement_tx = @sig
    UNION SELECT job_id FROM jobs WHERE api_escrow_tx = @sig
    UNION SELECT job_id FROM jobs WHERE api_settlement_tx = @sig`;
  const namingIds = store.sqlite
    .prepare(`${namingUnion} ORDER BY job_id LIMIT ${MAX_NAMED_BY}`)
    .pluck() as unknown as { all(p: { sig: string }): string[] };
  const namesStatement = store.sqlite.prepare(
    `SELECT 1 FROM jobs WHERE job_id = @jobId
       AND (@sig IN (escrow_tx, settlement_tx, api_escrow_tx, api_settlement_tx)
         OR EXISTS (SELECT 1 FROM json_each(conflict_signatures) WHERE value = @sig))`,
  );
  const namingCount = store.sqlite
    .prepare(`SELECT count(*) FROM (${namingUnion})`)
    .pluck() as unknown as { get(p: { sig: string }): number };

  /**
   * Which jobs name each signature: up to MAX_NAMED_BY ids and the total, counted by SQLite, so
   * a signature replayed by thousands of receipts costs each of them an index count, not a list
   * of all the others.
   */
  async function jobsNaming(signatures: string[]): Promise<{
    named: Map<string, string[]>;
    totals: Map<string, number>;
  }> {
    const named = new Map<string, string[]>();
    const totals = new Map<string, number>();
    for (const part of chunks([...new Set(signatures)], 64)) {
      for (const sig of part) {
        const ids = namingIds.all({ sig });
        named.set(sig, ids);
        totals.set(sig, ids.length < MAX_NAMED_BY ? ids.length : namingCount.get({ sig }));
      }
      await yieldToEventLoop();
    }
    return { named, totals };
  }

  /** One round: claim, poll statuses in batches, fetch newly finalized transactions, decide. */
  async function round(filter: VerifyFilter | null, runId: number | null): Promise<number> {
    const signal = roundsAbort.signal;
    if (signal.aborted) return 0;
    const claimed = claim(filter);
    if (claimed.length === 0) return 0;
    const t0 = now();
    const allSigs = [...new Set(claimed.flatMap((j) => jobSignatures(j)))];

    // Make sure every signature has its row, then see which still need the chain.
    db.transaction(
      (tx) => {
        for (const part of chunks(allSigs)) {
          tx.insert(chainTransactions)
            .values(part.map((signature) => ({ signature, firstSeenAt: t0 })))
            .onConflictDoNothing()
            .run();
        }
      },
      { behavior: "immediate" },
    );
    const rows = loadTxRows(allSigs);
    const trouble: SigTrouble = new Map();
    const disagreements = new Map<string, RpcDisagreement>();

    const needStatus = allSigs.filter((s) => {
      const state = rows.get(s)?.state;
      return state === "unknown" || state === "landed";
    });
    const cell = Math.floor(now() / options.pollIntervalMs);
    if (needStatus.length > 0 && cell > lastPollCell && !signal.aborted) {
      lastPollCell = cell;
      try {
        const statuses = await rpc.getSignatureStatuses(needStatus);
        const missing = needStatus.filter((_, i) => !statuses[i]);
        let currentSlot: number | null = null;
        if (missing.length > 0 && !signal.aborted) currentSlot = await rpc.getSlot();
        if (signal.aborted) return claimed.length;
        await applyStatuses(needStatus, statuses, currentSlot, rows);
        statuses.forEach((s, i) => {
          if (s?.disagreement) disagreements.set(needStatus[i]!, s.disagreement);
        });
      } catch (error) {
        if (isBusyError(error)) throw error; // the database, not the node: retry the round
        for (const s of needStatus) trouble.set(s, `getSignatureStatuses: ${message(error)}`);
      }
    }

    const toFetch = allSigs.filter((s) => {
      const row = rows.get(s);
      return row?.state === "finalized" && row.facts === null && !trouble.has(s);
    });
    if (toFetch.length > 0) {
      const fetches = new PQueue({ concurrency: options.fetchConcurrency });
      await fetches.addAll(
        toFetch.map((signature) => async () => {
          if (signal.aborted) return;
          try {
            const result = await rpc.getTransaction(signature);
            storeFetched(signature, result, rows);
          } catch (error) {
            // The database, not the node, was in the way: the round is retried as a whole.
            if (isBusyError(error)) throw error;
            if (error instanceof RpcDisagreementError) {
              disagreements.set(signature, error.disagreement);
              return;
            }
            trouble.set(signature, `getTransaction: ${message(error)}`);
            // A node that keeps answering with something unparseable is counted like one that
            // has no such transaction, so the job ends unverifiable instead of retrying for ever.
            if (isAppError(error) && error.code === "malformed_transaction") {
              storeFetched(signature, null, rows);
            }
          }
        }),
      );
    }

    // Stopping: what was fetched is stored; the jobs go back to the queue with their leases.
    if (signal.aborted) return claimed.length;
    const naming = await jobsNaming(allSigs);
    const factsCache = new Map<string, TransactionFacts>();
    const factsOf = (sig: string) => {
      let facts = factsCache.get(sig);
      if (!facts) {
        const row = rows.get(sig);
        if (!row || row.facts === null) return undefined;
        facts = storedFacts(row);
        factsCache.set(sig, facts);
      }
      return facts;
    };

    // Decide and write a few jobs at a time, yielding between slices: the proxy shares this
    // event loop, and a synchronous stretch of more than a millisecond or two shows in its p99.
    // Pins are read per slice: a vault learned from one job's lock binds the next job of its key.
    for (const slice of chunks(claimed, SLICE)) {
      if (signal.aborted) break;
      const learnedTreasury = custody.treasury();
      await writeDecisions(
        slice.map((job) =>
          decide(
            job,
            rows,
            trouble,
            naming,
            factsOf,
            custody.of(job),
            learnedTreasury,
            disagreements,
          ),
        ),
        runId,
      );
    }
    return claimed.length;
  }

  // chain_transactions changes are written as guarded SQL, never as values computed from a row
  // read earlier: another process may have moved the row meanwhile. States only move forward
  // (unknown -> landed -> finalized; dropped and pruned end the search until a re-verify),
  // commitment never goes down, and counters are incremented in SQL so no miss is lost.
  const rank = (column: string) =>
    `CASE ${column} WHEN 'finalized' THEN 2 WHEN 'confirmed' THEN 1 WHEN 'processed' THEN 0 ELSE -1 END`;
  const statusFound = store.sqlite.prepare(
    `UPDATE chain_transactions SET
       state = CASE WHEN state IN ('finalized', 'pruned') THEN state
         WHEN @commitment = 'finalized' THEN 'finalized' ELSE 'landed' END,
       commitment = CASE WHEN state IN ('finalized', 'pruned') OR ${rank("commitment")} >= ${rank("@commitment")}
         THEN commitment ELSE @commitment END,
       slot = CASE WHEN state IN ('finalized', 'pruned') THEN slot ELSE @slot END,
       status_checked_at = @t,
       not_found_count = CASE WHEN state IN ('finalized', 'pruned') THEN not_found_count ELSE 0 END,
       not_found_since = CASE WHEN state IN ('finalized', 'pruned') THEN not_found_since ELSE NULL END,
       not_found_slot = CASE WHEN state IN ('finalized', 'pruned') THEN not_found_slot ELSE NULL END
     WHERE signature = @signature`,
  );
  // A signature never seen, or seen only at processed (a minority fork can lose it), can be
  // dropped; one seen confirmed and missing now is a lagging node (e.g. after failover), which
  // the next poll sorts out.
  const statusMissing = store.sqlite.prepare(
    `UPDATE chain_transactions SET
       state = CASE WHEN (state = 'unknown' OR (state = 'landed' AND commitment = 'processed'))
           AND @currentSlot IS NOT NULL
           AND @currentSlot > coalesce(not_found_slot, @currentSlot) + @dropAfterSlots
         THEN 'dropped' ELSE state END,
       status_checked_at = @t,
       not_found_since = coalesce(not_found_since, @t),
       not_found_slot = coalesce(not_found_slot, @currentSlot),
       not_found_count = not_found_count + 1
     WHERE signature = @signature AND state IN ('unknown', 'landed')`,
  );
  // A miss counts only while nobody has stored the transaction; at maxFetchMisses it is pruned.
  const fetchMissed = store.sqlite.prepare(
    `UPDATE chain_transactions SET
       not_found_count = not_found_count + 1,
       state = CASE WHEN state = 'finalized' AND not_found_count + 1 >= @maxMisses THEN 'pruned'
         ELSE state END
     WHERE signature = @signature AND facts IS NULL`,
  );

  /** Re-reads rows after guarded updates, so decisions use what the database now holds. */
  function refreshRows(signatures: string[], rows: Map<string, TxRow>) {
    for (const [signature, row] of loadTxRows(signatures)) rows.set(signature, row);
  }

  /**
   * Writes a poll's statuses a slice at a time, yielding between slices: a round's 2,000
   * signatures in one synchronous stretch held the event loop (the proxy's) for tens of ms, and
   * held the write lock that long against other processes.
   */
  async function applyStatuses(
    signatures: string[],
    statuses: (SignatureStatusLike | null)[],
    currentSlot: number | null,
    rows: Map<string, TxRow>,
  ) {
    const t = now();
    const writeSlice = store.sqlite.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const signature = signatures[i]!;
        const status = statuses[i] ?? null;
        if (status) {
          statusFound.run({
            signature,
            commitment: status.confirmationStatus,
            slot: status.slot,
            t,
          });
        } else {
          statusMissing.run({
            signature,
            currentSlot,
            dropAfterSlots: profile.dropAfterSlots,
            t,
          });
        }
      }
    });
    for (let from = 0; from < signatures.length; from += STATUS_SLICE) {
      const to = Math.min(signatures.length, from + STATUS_SLICE);
      writeSlice.immediate(from, to);
      refreshRows(signatures.slice(from, to), rows);
      await yieldToEventLoop();
    }
  }

  function storeFetched(
    signature: string,
    result: { facts: TransactionFacts; raw: unknown } | null,
    rows: Map<string, TxRow>,
  ) {
    if (!rows.has(signature)) return;
    if (result === null) {
      // The status said finalized but the node returned nothing: a lagging or pruning node.
      fetchMissed.run({ signature, maxMisses: options.maxFetchMisses });
    } else {
      const { facts, raw } = result;
      // A finalized transaction never changes: the first process to store it wins.
      db.update(chainTransactions)
        .set({
          state: "finalized",
          commitment: "finalized",
          slot: facts.slot,
          blockTime: facts.blockTime,
          feeLamports: facts.fee,
          succeeded: facts.succeeded,
          err: facts.err ?? null,
          facts: factsToJson(facts),
          raw: typeof raw === "string" ? raw : stringifyWithBigints(raw),
          fetchedAt: now(),
        })
        .where(and(eq(chainTransactions.signature, signature), isNull(chainTransactions.facts)))
        .run();
    }
    refreshRows([signature], rows);
  }

  interface Decision {
    job: JobRow;
    verdict: Verdict;
    nextVerifyAt: number;
    lastError: string | null;
    commitment: Commitment | null;
    evaluation: Evaluation | null;
    /** Checks written for verdicts reached without a full evaluation (dropped, pruned). */
    checks: CheckResult[] | null;
  }

  function backoff(attempt: number, base: number) {
    const delay = Math.min(options.maxBackoffMs, base * 2 ** Math.min(attempt, 16));
    // Jitter spreads retries of many jobs so they do not hit a recovering node together.
    return Math.round(delay * (0.75 + Math.random() * 0.5));
  }

  function decide(
    job: JobRow,
    rows: Map<string, TxRow>,
    trouble: SigTrouble,
    naming: { named: Map<string, string[]>; totals: Map<string, number> },
    factsOf: (sig: string) => TransactionFacts | undefined,
    jobCustody: Custody,
    learnedTreasury: string | null,
    disagreements: Map<string, RpcDisagreement> = new Map(),
  ): Decision {
    const t = now();
    const sigs = jobSignatures(job);
    const base = { job, evaluation: null, checks: null, lastError: null };
    const roleOf = (sig: string) =>
      sig === job.escrowTx || sig === job.apiEscrowTx ? "escrow" : "settlement";

    const commitments = sigs.map((s) => rows.get(s)?.commitment ?? null);
    const commitment =
      commitments.length === 0 || commitments.includes(null)
        ? null
        : commitments.reduce((a, b) => (commitmentRank[a!] <= commitmentRank[b!] ? a : b));

    const dropped = sigs.filter((s) => rows.get(s)?.state === "dropped");
    if (dropped.length > 0) {
      const checks = dropped.map((s) => {
        const row = rows.get(s)!;
        const check: CheckResult = {
          name: `${roleOf(s)}.exists`,
          outcome: "fail",
          reason: `never landed: still unknown ${profile.dropAfterSlots} slots after slot ${row.notFoundSlot} (history searched); its blockhash has expired`,
          expected: { signature: s },
          actual: null,
        };
        return check;
      });
      return { ...base, verdict: "dropped", nextVerifyAt: t, commitment, checks };
    }
    const pruned = sigs.filter((s) => rows.get(s)?.state === "pruned");
    if (pruned.length > 0) {
      const checks = pruned.map(
        (s): CheckResult => ({
          name: `${roleOf(s)}.exists`,
          outcome: "skip",
          reason: "the status is finalized but the node no longer serves the transaction (pruned)",
          expected: { signature: s },
          actual: null,
        }),
      );
      return { ...base, verdict: "unverifiable", nextVerifyAt: t, commitment, checks };
    }
    // Endpoints that disagree say nothing about the job: it waits, with every answer as evidence.
    const disputed = sigs.filter((s) => disagreements.has(s));
    if (disputed.length > 0) {
      const checks = disputed.map((s): CheckResult => {
        const d = disagreements.get(s)!;
        return {
          name: `${roleOf(s)}.rpc_quorum`,
          outcome: "skip",
          reason: describeDisagreement(d),
          expected: { quorum: d.quorum, method: d.method, signature: s },
          actual: { answers: d.answers },
        };
      });
      return {
        ...base,
        verdict: "rpc_disagreement",
        nextVerifyAt: t + backoff(job.verifyAttempts, options.errorBackoffMs),
        lastError: checks.map((c) => c.reason).join("; "),
        commitment,
        checks,
      };
    }
    const troubled = sigs.filter((s) => trouble.has(s));
    if (troubled.length > 0) {
      return {
        ...base,
        verdict: "error",
        nextVerifyAt: t + backoff(job.verifyAttempts, options.errorBackoffMs),
        lastError: troubled.map((s) => trouble.get(s)).join("; "),
        commitment,
      };
    }

    // A streamed job's settlement comes from the backfill: wait for it unless it is over.
    const hasClosing = job.settlementTx !== null || job.apiSettlementTx !== null;
    if (!hasClosing && job.backfillState === "pending" && job.apiStatus !== "settled") {
      return {
        ...base,
        verdict: "awaiting_finality",
        nextVerifyAt: Math.max(t + options.backfillWaitMs, job.backfillNextAt ?? 0),
        commitment,
      };
    }

    const notReady = sigs.filter((s) => factsOf(s) === undefined);
    if (notReady.length > 0) {
      const unseen = notReady.filter((s) => rows.get(s)?.state === "unknown");
      const worstMisses = Math.max(0, ...unseen.map((s) => rows.get(s)?.notFoundCount ?? 0));
      const delay =
        unseen.length > 0
          ? backoff(Math.max(0, worstMisses - 1), options.pollIntervalMs)
          : options.pollIntervalMs;
      // Due times snap to a grid so jobs waiting on finality are polled together, in one batch.
      const grid = options.pollIntervalMs;
      const nextVerifyAt = Math.ceil((t + delay) / grid) * grid;
      return { ...base, verdict: "awaiting_finality", nextVerifyAt, commitment };
    }

    const transactions = new Map<string, TransactionFacts>();
    for (const s of sigs) transactions.set(s, factsOf(s)!);
    const evaluation = evaluateJob({
      job,
      profile,
      transactions,
      namedBy: naming.named,
      namedByTotal: naming.totals,
      custody: jobCustody,
      learnedTreasury,
      names: (jobId, signature) => namesStatement.get({ jobId, sig: signature }) !== undefined,
    });
    return {
      ...base,
      verdict: evaluation.verdict,
      nextVerifyAt: t,
      commitment: sigs.length > 0 ? "finalized" : null,
      evaluation,
    };
  }

  /** Applies decisions; each job's row and checks change together, and only under our lease. */
  const retrySignatures = store.sqlite.prepare(
    `UPDATE chain_transactions
       SET state = CASE state WHEN 'pruned' THEN 'finalized' ELSE 'unknown' END,
         not_found_count = 0, not_found_slot = NULL, not_found_since = NULL
     WHERE state IN ('pruned', 'dropped') AND signature IN (
       SELECT escrow_tx FROM jobs WHERE job_id = @jobId UNION SELECT settlement_tx FROM jobs WHERE job_id = @jobId
       UNION SELECT api_escrow_tx FROM jobs WHERE job_id = @jobId
       UNION SELECT api_settlement_tx FROM jobs WHERE job_id = @jobId)`,
  );

  // The verdict write is the hottest statement of a run: prepared once, not rebuilt per job.
  const verdictSet = `verdict = @verdict, verdict_at = @verdictAt, verify_attempts = @attempts,
    next_verify_at = @nextVerifyAt, lease_owner = NULL, lease_until = NULL,
    last_error = @lastError, commitment = @commitment, unproven = @unproven, updated_at = @now`;
  const writeVerdict = store.sqlite.prepare(
    `UPDATE jobs SET ${verdictSet} WHERE job_id = @jobId AND lease_owner = @owner`,
  );
  const writeVerdictWithAmounts = store.sqlite.prepare(
    `UPDATE jobs SET ${verdictSet}, escrowed_units = @escrowedUnits, charged_units = @chargedUnits,
       worker_paid_units = @workerPaidUnits, treasury_paid_units = @treasuryPaidUnits,
       refunded_units = @refundedUnits, expected_charge_units = @expectedChargeUnits,
       fees_lamports = @feesLamports
     WHERE job_id = @jobId AND lease_owner = @owner`,
  );
  const clearChecks = store.sqlite.prepare("DELETE FROM check_results WHERE job_id = ?");
  const insertCheck = store.sqlite.prepare(
    `INSERT INTO check_results (job_id, name, outcome, reason, expected, actual, run_id, checked_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );

  /** Writes one job's verdict, amounts and checks; false when its lease was lost. */
  function writeDecision(d: Decision, runId: number | null, t: number): boolean {
    const final = finalVerdicts.includes(d.verdict);
    const params = {
      jobId: d.job.jobId,
      owner,
      verdict: d.verdict,
      verdictAt: final ? t : d.job.verdictAt,
      // Consecutive rounds that ended in RPC trouble: the error backoff grows with it.
      attempts:
        d.verdict === "error" || d.verdict === "rpc_disagreement" ? d.job.verifyAttempts + 1 : 0,
      nextVerifyAt: d.nextVerifyAt,
      lastError: d.lastError,
      commitment: d.commitment,
      unproven: d.evaluation?.unproven.length ? JSON.stringify(d.evaluation.unproven) : null,
      now: t,
    };
    // What the evaluation learned is pinned first; a pin another job (or process) set first
    // that disagrees makes this verdict stale, so the job is looked at again instead.
    if (d.evaluation && !custody.pin(d.job, d.evaluation.learned, t)) {
      params.verdict = "pending";
      params.verdictAt = d.job.verdictAt;
      params.nextVerifyAt = t;
      params.unproven = null;
      writeVerdict.run(params);
      return false;
    }
    const result = d.evaluation
      ? writeVerdictWithAmounts.run({ ...params, ...d.evaluation.amounts })
      : writeVerdict.run(params);
    if (result.changes === 0) return false; // The lease was lost: another owner has the job.
    if (d.evaluation?.learned.treasuryCandidate) {
      custody.countTreasuryEvidence(d.job.jobId, d.evaluation.learned.treasuryCandidate, t);
    }
    const checks = d.evaluation?.checks ?? d.checks;
    // A disagreement's evidence is written too, and replaced by the checks of the final verdict.
    if ((final || d.verdict === "rpc_disagreement") && checks) {
      clearChecks.run(d.job.jobId);
      for (const c of checks) {
        insertCheck.run(
          d.job.jobId,
          c.name,
          c.outcome,
          c.reason,
          c.expected === undefined ? null : JSON.stringify(c.expected),
          c.actual === undefined ? null : JSON.stringify(c.actual),
          runId,
          t,
        );
      }
    }
    return final;
  }

  /**
   * Writes decisions a slice at a time, each slice one transaction in which every job's
   * verdict, amounts and checks are guarded by its lease; between slices the event loop serves
   * requests, so a round of a thousand jobs never stalls the proxy sharing this process.
   */
  async function writeDecisions(decisions: Decision[], runId: number | null) {
    const finals: Decision[] = [];
    const writeSlice = store.sqlite.transaction((slice: Decision[], t: number) => {
      for (const d of slice) if (writeDecision(d, runId, t)) finals.push(d);
    });
    for (const slice of chunks(decisions, SLICE)) {
      writeSlice.immediate(slice, now());
      await yieldToEventLoop();
    }
    for (const d of finals) {
      const checks = d.evaluation?.checks ?? d.checks ?? [];
      log.info(
        {
          jobId: d.job.jobId,
          verdict: d.verdict,
          failed: checks.filter((c) => c.outcome === "fail").map((c) => c.name),
        },
        "job verdict",
      );
    }
  }

  function countVerdicts(filter: VerifyFilter | null): RunProgress {
    const byVerdict = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
    const rows = db
      .select({ verdict: jobs.verdict, n: sql<number>`count(*)` })
      .from(jobs)
      .where(filterCondition(filter))
      .groupBy(jobs.verdict)
      .all();
    let total = 0;
    for (const r of rows) {
      byVerdict[r.verdict] = r.n;
      total += r.n;
    }
    const final = finalVerdicts.reduce((n, v) => n + byVerdict[v], 0);
    return { total, final, byVerdict };
  }

  /** When the next open job in `filter` is due (ms since epoch), or null if none is open. */
  function nextDue(filter: VerifyFilter | null): number | null {
    const row = db
      .select({
        next: sql<number | null>`min(max(${jobs.nextVerifyAt}, coalesce(${jobs.leaseUntil}, 0)))`,
      })
      .from(jobs)
      .where(and(inArray(jobs.verdict, openVerdicts), filterCondition(filter)))
      .get();
    return row?.next ?? null;
  }

  /**
   * A run's owner proves it is alive with a heartbeat row in `locks`, renewed while it has a
   * run open. A `running` run whose owner's heartbeat has expired belongs to a process that
   * died (kill -9, power loss): it is closed as `abandoned` at the next start of any verifier,
   * and on each heartbeat of a live one. Its jobs need nothing: their leases expire.
   */
  const heartbeatName = `verifier:${owner}`;
  const heartbeatMs = options.leaseMs;
  const writeHeartbeat = store.sqlite.prepare(
    `INSERT INTO locks (name, owner, acquired_at, expires_at) VALUES (@name, @owner, @t, @until)
     ON CONFLICT(name) DO UPDATE SET expires_at = excluded.expires_at`,
  );
  const dropHeartbeat = store.sqlite.prepare("DELETE FROM locks WHERE name = ? AND owner = ?");
  const abandonStale = store.sqlite.prepare(
    `UPDATE verification_runs SET status = 'abandoned', finished_at = @t
     WHERE status = 'running' AND owner <> @owner AND NOT EXISTS (
       SELECT 1 FROM locks WHERE locks.name = 'verifier:' || verification_runs.owner
         AND locks.expires_at > @t)`,
  );
  const dropStaleHeartbeats = store.sqlite.prepare(
    "DELETE FROM locks WHERE name LIKE 'verifier:%' AND expires_at <= ?",
  );
  let openRuns = 0;
  let heartbeatTimer: NodeJS.Timeout | undefined;

  const runningOwners = store.sqlite
    .prepare("SELECT DISTINCT owner FROM verification_runs WHERE status = 'running' AND owner <> ?")
    .pluck();
  const abandonOwner = store.sqlite.prepare(
    `UPDATE verification_runs SET status = 'abandoned', finished_at = ?
     WHERE status = 'running' AND owner = ?`,
  );
  const releaseOwnerLeases = store.sqlite.prepare(
    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
  );

  /**
   * Closes runs whose owner died; returns how many. An owner on this host whose process no
   * longer exists is known dead at once (a restart right after kill -9 needs no wait), and its
   * leases are released so its jobs are taken over now rather than at their expiry.
   */
  function closeAbandonedRuns(): number {
    const t = now();
    let closed = 0;
    for (const other of runningOwners.all(owner) as string[]) {
      if (!deadOnThisHost(other)) continue;
      closed += abandonOwner.run(t, other).changes;
      releaseOwnerLeases.run(other);
    }
    closed += abandonStale.run({ t, owner }).changes;
    dropStaleHeartbeats.run(t);
    if (closed > 0) log.warn({ runs: closed }, "closed verification runs of dead processes");
    return closed;
  }

  function beat() {
    const t = now();
    writeHeartbeat.run({ name: heartbeatName, owner, t, until: t + heartbeatMs });
  }

  function heartbeatTick() {
    try {
      beat();
      closeAbandonedRuns();
    } catch (error) {
      // A busy database must not throw out of a timer: the next tick tries again, well before
      // the heartbeat expires (it is renewed three times per lifetime).
      log.warn({ err: error }, "verifier heartbeat not written; retrying");
    }
  }

  /** Opens a run row with its heartbeat; retried from JavaScript while the database is busy. */
  async function startRun(trigger: "serve" | "verify", filter: VerifyFilter | null) {
    const id = await retryWhileBusy(() =>
      store.sqlite
        .transaction(() => {
          closeAbandonedRuns();
          beat();
          return db
            .insert(verificationRuns)
            .values({
              trigger,
              status: "running",
              windowFrom: filter?.from ?? null,
              windowTo: filter?.to ?? null,
              startedAt: now(),
              owner,
            })
            .returning({ id: verificationRuns.id })
            .get().id;
        })
        .immediate(),
    );
    openRuns++;
    if (!heartbeatTimer) {
      heartbeatTimer = setInterval(heartbeatTick, Math.max(10, heartbeatMs / 3));
      heartbeatTimer.unref();
    }
    return id;
  }

  async function finishRun(
    runId: number,
    status: RunSummary["status"] | "failed",
    summary: unknown,
  ) {
    try {
      await retryWhileBusy(() =>
        db
          .update(verificationRuns)
          .set({ status, finishedAt: now(), summary })
          .where(eq(verificationRuns.id, runId))
          .run(),
      );
    } finally {
      openRuns--;
      if (openRuns === 0) {
        clearInterval(heartbeatTimer);
        heartbeatTimer = undefined;
        try {
          dropHeartbeat.run(heartbeatName, owner);
        } catch (error) {
          log.warn({ err: error }, "verifier heartbeat not removed; it expires on its own");
        }
      }
    }
  }

  async function releaseLeases() {
    try {
      await retryWhileBusy(() =>
        db
          .update(jobs)
          .set({ leaseOwner: null, leaseUntil: null })
          .where(eq(jobs.leaseOwner, owner))
          .run(),
      );
    } catch (error) {
      // Not fatal: the leases expire and another verifier takes the jobs over.
      log.warn({ err: error }, "leases not released; they expire on their own");
    }
  }

  /** Extends this owner's leases while a long round (a slow or rate-limited node) is running. */
  function renewLeases() {
    db.update(jobs)
      .set({ leaseUntil: now() + options.leaseMs })
      .where(eq(jobs.leaseOwner, owner))
      .run();
  }

  /**
   * Lease renewal on a timer. A failure (SQLITE_BUSY past the timeout) is logged and retried
   * a second later, never thrown: an exception escaping a timer would kill the process.
   */
  function startLeaseRenewal(): () => void {
    let retry: NodeJS.Timeout | undefined;
    const renew = () => {
      clearTimeout(retry);
      try {
        renewLeases();
      } catch (error) {
        log.warn({ err: error }, "lease renewal failed; retrying");
        retry = setTimeout(renew, Math.min(1000, options.leaseMs / 10));
      }
    };
    const timer = setInterval(renew, Math.max(10, options.leaseMs / 3));
    return () => {
      clearInterval(timer);
      clearTimeout(retry);
    };
  }

  const runRound = (filter: VerifyFilter | null, runId: number | null) =>
    rounds.add(async () => {
      const stopRenewal = startLeaseRenewal();
      try {
        return await round(filter, runId);
      } finally {
        stopRenewal();
      }
    }) as Promise<number>;

  async function loop() {
    let runId: number | null = null;
    while (runId === null) {
      if (stopping) return;
      try {
        runId = await startRun("serve", null);
      } catch (error) {
        log.error({ err: error }, "verifier could not open its run; retrying");
        await sleep(options.errorBackoffMs);
      }
    }
    let status: "completed" | "failed" = "completed";
    try {
      while (!stopping) {
        let worked = 0;
        try {
          worked = await runRound(null, runId);
        } catch (error) {
          log.error({ err: error }, "verification round failed");
          await sleep(options.errorBackoffMs);
          continue;
        }
        if (worked > 0) continue;
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const w of waiters) w();
        const due = nextDue(null);
        const wait =
          due === null ? options.idleIntervalMs : Math.min(options.idleIntervalMs, due - now());
        await sleep(wait);
      }
    } catch (error) {
      status = "failed";
      log.error({ err: error }, "verifier loop stopped");
    } finally {
      await releaseLeases();
      await finishRun(runId, status, countVerdicts(null)).catch((error) =>
        log.warn({ err: error }, "verification run not closed; the next start abandons it"),
      );
    }
  }

  return {
    owner,
    start() {
      if (running) return;
      running = true;
      stopping = false;
      roundsAbort = new AbortController();
      try {
        closeAbandonedRuns();
      } catch (error) {
        log.warn({ err: error }, "stale verification runs not closed yet");
      }
      loopDone = loop();
    },
    async stop() {
      stopping = true;
      // The round in flight stops between RPC calls instead of finishing a whole claimed batch
      // paced by the RPC rate limit (minutes with a backlog); its jobs' leases are released.
      roundsAbort.abort();
      notify();
      await loopDone;
      await rounds.onIdle();
      await releaseLeases();
      running = false;
      loopDone = null;
      for (const w of idleWaiters) w();
      idleWaiters = [];
    },
    notify,
    reverify(jobId: string) {
      // Signatures given up on (dropped, pruned) are looked for again: the node may have been
      // the wrong one, which is what a re-verification is usually asked for.
      retrySignatures.run({ jobId });
      db.update(jobs)
        .set({
          verdict: "pending",
          nextVerifyAt: 0,
          verifyAttempts: 0,
          lastError: null,
          // A verifier mid-round on this job loses its lease, so it cannot write a verdict
          // reached before the re-verification was asked for.
          leaseOwner: null,
          leaseUntil: null,
          updatedAt: now(),
        })
        .where(eq(jobs.jobId, jobId))
        .run();
      notify();
    },
    onIdle() {
      if (!running) return rounds.onIdle();
      return new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        notify();
      });
    },
    async runUntilSettled(filter, opts) {
      const started = now();
      const deadline = started + opts.timeoutMs;
      const runId = await startRun("verify", filter);
      let status: RunSummary["status"] = "completed";
      let progress = countVerdicts(filter);
      try {
        for (;;) {
          if (opts.signal?.aborted || stopping) {
            status = "interrupted";
            break;
          }
          if (progress.final === progress.total) break;
          if (now() >= deadline) {
            status = "timed_out";
            break;
          }
          let worked = 0;
          try {
            worked = await runRound(filter, runId);
          } catch (error) {
            // Another process held the write lock past the busy timeout: try again shortly.
            if (!isBusyError(error)) throw error;
            log.warn({ err: error }, "verification round found the database busy; retrying");
            await sleep(Math.min(options.errorBackoffMs, deadline - now()), opts.signal);
            continue;
          }
          progress = countVerdicts(filter);
          opts.onProgress?.(progress);
          if (worked === 0 && progress.final < progress.total) {
            // Open jobs not due here are waiting for finality, or leased by another process
            // (serve) that is verifying them: look again after one poll interval rather than
            // at the lease expiry, so the run ends within a poll of its jobs becoming final.
            const due = nextDue(filter) ?? now() + options.pollIntervalMs;
            const wake = Math.min(due, deadline, now() + options.pollIntervalMs);
            await sleep(wake - now(), opts.signal);
          }
        }
      } catch (error) {
        await finishRun(runId, "failed", { error: message(error), ...progress }).catch(() => {});
        throw error;
      }
      const summary: RunSummary = { runId, status, durationMs: now() - started, ...progress };
      await finishRun(runId, status, { ...progress, durationMs: summary.durationMs });
      log.info({ runId, status, ...progress }, "verification run finished");
      return summary;
    },
  };
}

/**
 * Stored facts, or facts derived again from the stored raw response when they were stored by
 * an older version that read fewer facts (the raw response is the evidence; facts are derived).
 */
function storedFacts(row: TxRow): TransactionFacts {
  try {
    return factsFromJson(row.facts);
  } catch (error) {
    if (row.raw === null) throw error;
    return parseTransaction(parseJsonLossless(row.raw), row.signature);
  }
}

/** True when `owner` names a process of this host that no longer exists. */
function deadOnThisHost(owner: string): boolean {
  const match = /-pid(\d+)@(.+)$/.exec(owner);
  if (!match || match[2] !== hostname()) return false;
  const pid = Number(match[1]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
