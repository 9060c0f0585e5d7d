import type { SqliteStore, Store } from "../db/client.js";
import { type CheckOutcome, finalVerdicts, type Verdict } from "../db/schema.js";
import {
  type CustodyPinning,
  type CustodyProfile,
  createCustodyPinning,
  type LearnedPins,
} from "./custody.js";
import { waitsForTreasury } from "./custody-rules.js";
import type { HeldRowWaitOptions } from "./pg/group-commit.js";
import { pgTwins } from "./pg-twins.js";
import { perConnection } from "./prepared.js";
import {
  attemptsAfter,
  clearsRejudging,
  keepsVerdict,
  pinsOf,
  verdictProfileSet,
} from "./verdict-rules.js";

/**
 * The verdict writer: a job's verdict, its amounts, its check rows and what its evaluation
 * pinned (custody) change together, in one IMMEDIATE transaction, and only while the writer
 * still holds the job's lease: a result is applied once or not at all.
 */

/** One check's row in `check_results`. */
export interface CheckRow {
  name: string;
  outcome: CheckOutcome;
  reason: string | null;
  expected: unknown;
  actual: unknown;
}

/** Amounts read from the chain, written with a full evaluation. */
export interface VerdictAmounts {
  escrowedUnits: bigint | null;
  chargedUnits: bigint | null;
  workerPaidUnits: bigint | null;
  treasuryPaidUnits: bigint | null;
  refundedUnits: bigint | null;
  expectedChargeUnits: bigint | null;
  feesLamports: bigint | null;
  /**
   * What the settlement paid out of escrow, at most what reached escrow (`escrowPaid`): the
   * vault statement's settled part of the job's locks. Absent where no checks read it (null).
   */
  escrowPaidUnits?: bigint | null;
  /**
   * Of a settlement shared with other jobs of one vault, this job's return the vault's ledger
   * files under another job, less the others' returns it files under this one
   * (`ClosingShare`): what the vault statement adds to the job's returns. Null where none.
   */
  sharedReturnUnits?: bigint | null;
}

/** What one job's decision writes. */
export interface VerdictWrite {
  job: {
    jobId: string;
    keyFingerprint?: string | null;
    /** As claimed: kept when the new verdict is not final. */
    verdictAt: number | null;
    /** As claimed; when the new verdict is the same, the write leaves the column alone. */
    verdict?: Verdict;
    verifyAttempts: number;
  };
  verdict: Verdict;
  nextVerifyAt: number;
  lastError: string | null;
  commitment: "processed" | "confirmed" | "finalized" | null;
  /** Present when the checks ran: amounts, what is unproven, what to pin. */
  evaluation: {
    amounts: VerdictAmounts;
    unproven: readonly string[];
    learned: LearnedPins;
  } | null;
  /** Check rows to write (final verdicts, and the evidence of an RPC disagreement). */
  checks: readonly CheckRow[] | null;
  /**
   * What to pin with a verdict that is not written from its checks (a clean evaluation held for
   * the ledger's read of the credit vault it learned: the ledger reads pinned vaults only).
   */
  pins?: LearnedPins;
}

export interface VerdictStore {
  /**
   * Writes the decisions in one transaction, each guarded by `owner`'s lease. Returns, per
   * decision, whether a final verdict was written (false: not final, lease lost, or stale).
   */
  write(
    decisions: readonly VerdictWrite[],
    context: { owner: string; runId: number | null; t: number },
  ): Promise<boolean[]>;
}

/**
 * The verdict store of either dialect. `judgedBy` is the `profileId` of the profile deciding:
 * every verdict written says which profile reached it (`jobs.verdict_profile`; null when not
 * given).
 */
export function createVerdictStore(
  store: Store,
  profile: CustodyProfile,
  judgedBy: string | null = null,
  options: HeldRowWaitOptions = {},
): VerdictStore {
  return store.kind === "postgres"
    ? pgTwins().createPgVerdictStore(store, profile, judgedBy, options)
    : createSqliteVerdictStore(store, profile, judgedBy);
}

/** The verdict writer's statements, prepared once per connection (see `perConnection`). */
const verdictStatements = perConnection(({ sqlite }: SqliteStore) => {
  // Raw SQL: the verdict write is the hottest statement of a run; prepared once with named
  // parameters, measured faster than building the update per job.
  const verdictSet = `verdict = @verdict, verdict_at = @verdictAt, ${verdictProfileSet("@verdict", "@judgedBy")},
    ${clearsRejudging("@verdict")},
    verify_attempts = @attempts,
    next_verify_at = @nextVerifyAt, lease_owner = NULL, lease_until = NULL,
    last_error = @lastError, commitment = @commitment, unproven = @unproven, updated_at = @now`;
  const writeVerdict = sqlite.prepare(
    `UPDATE jobs SET ${verdictSet} WHERE job_id = @jobId AND lease_owner = @owner`,
  );
  // A job polled again and still waiting keeps its verdict: an UPDATE that sets `verdict`, even
  // to the same value, evaluates the rollup triggers and rewrites the verdict index, which was
  // a third of the cost of a poll of a waiting job. Guarded by the verdict too: a job whose
  // verdict is not the one claimed gets the whole write.
  const writeSameVerdict = sqlite.prepare(
    `UPDATE jobs SET ${verdictSet.replace("verdict = @verdict, ", "")}
     WHERE job_id = @jobId AND lease_owner = @owner AND verdict = @verdict`,
  );
  // The decisions of a batch that keep their verdict (jobs still waiting), in one statement
  // over the JSON list `rows` ([job id, verdict, verdict_at, attempts, next look, last error,
  // commitment] each): a statement per job cost about half as much again per job (binding
  // it by name, running it), at a thousand jobs a round. Returns the ids written; a job left out
  // (the verdict is not the one claimed, or the lease is gone) takes `writeOne`.
  const writeSameVerdicts = sqlite
    .prepare(
      `UPDATE jobs SET verdict_at = u.verdict_at, verify_attempts = u.attempts,
         next_verify_at = u.next_verify_at, lease_owner = NULL, lease_until = NULL,
         last_error = u.last_error, commitment = u.commitment, unproven = NULL, updated_at = @now
       FROM (SELECT value ->> 0 AS job_id, value ->> 1 AS verdict, value ->> 2 AS verdict_at,
           value ->> 3 AS attempts, value ->> 4 AS next_verify_at, value ->> 5 AS last_error,
           value ->> 6 AS commitment
         FROM json_each(@rows)) AS u
       WHERE jobs.job_id = u.job_id AND jobs.lease_owner = @owner AND jobs.verdict = u.verdict
       RETURNING jobs.job_id`,
    )
    .pluck();
  const writeVerdictWithAmounts = sqlite.prepare(
    `UPDATE jobs SET ${verdictSet}, escrowed_units = @escrowedUnits, charged_units = @chargedUnits,
       worker_paid_units = @workerPaidUnits, treasury_paid_units = @treasuryPaidUnits,
       refunded_units = @refundedUnits, expected_charge_units = @expectedChargeUnits,
       fees_lamports = @feesLamports, escrow_paid_units = @escrowPaidUnits,
       shared_return_units = @sharedReturnUnits
     WHERE job_id = @jobId AND lease_owner = @owner`,
  );
  // Raw SQL: ~30 check rows per job, prepared once (the json columns are written as text).
  const clearChecks = sqlite.prepare("DELETE FROM check_results WHERE job_id = ?");
  const insertCheck = sqlite.prepare(
    `INSERT INTO check_results (job_id, name, outcome, reason, expected, actual, run_id, checked_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  return {
    writeVerdict,
    writeSameVerdict,
    writeSameVerdicts,
    writeVerdictWithAmounts,
    clearChecks,
    insertCheck,
  };
});

function createSqliteVerdictStore(
  store: SqliteStore,
  profile: CustodyProfile,
  judgedBy: string | null,
): VerdictStore {
  const { sqlite } = store;
  const custody: CustodyPinning = createCustodyPinning(store, profile);

  const {
    writeVerdict,
    writeSameVerdict,
    writeSameVerdicts,
    writeVerdictWithAmounts,
    clearChecks,
    insertCheck,
  } = verdictStatements(store);

  /** Writes one job's verdict, amounts and checks; false when not final or its lease was lost. */
  function writeOne(
    d: VerdictWrite,
    owner: string,
    runId: number | null,
    t: number,
    batch: readonly { jobId: string; learned: LearnedPins }[],
  ): boolean {
    const final = finalVerdicts.includes(d.verdict);
    const params = {
      jobId: d.job.jobId,
      owner,
      verdict: d.verdict,
      verdictAt: final ? t : d.job.verdictAt,
      attempts: attemptsAfter(d),
      nextVerifyAt: d.nextVerifyAt,
      lastError: d.lastError,
      commitment: d.commitment,
      unproven: d.evaluation?.unproven.length ? JSON.stringify(d.evaluation.unproven) : null,
      judgedBy,
      now: t,
    };
    // What the evaluation learned is pinned first; a pin another job (or process) set first
    // that disagrees makes this verdict stale, so the job is looked at again instead. So does
    // a treasury pinned since the checks read the pins (by an earlier job of this batch, or
    // another verifier), for a verdict that waits for it: the reopen at the pin missed it.
    const pins = pinsOf(d);
    if (
      pins &&
      (!custody.pin(d.job, pins, t, batch) ||
        (d.evaluation &&
          waitsForTreasury(d.verdict, d.evaluation.unproven) &&
          custody.treasuryLearned()))
    ) {
      params.verdict = "pending";
      params.verdictAt = d.job.verdictAt;
      params.nextVerifyAt = t;
      params.unproven = null;
      writeVerdict.run(params);
      return false;
    }
    const changes = d.evaluation
      ? writeVerdictWithAmounts.run({
          ...params,
          ...d.evaluation.amounts,
          escrowPaidUnits: d.evaluation.amounts.escrowPaidUnits ?? null,
          sharedReturnUnits: d.evaluation.amounts.sharedReturnUnits ?? null,
        }).changes
      : d.job.verdict === d.verdict && writeSameVerdict.run(params).changes === 1
        ? 1
        : writeVerdict.run(params).changes;
    if (changes === 0) return false; // The lease was lost: another owner has the job.
    if (d.evaluation?.learned.treasuryCandidate) {
      custody.countTreasuryEvidence(d.job.jobId, d.evaluation.learned.treasuryCandidate, t);
    }
    // A disagreement's evidence is written too, and replaced by the checks of the final verdict.
    if ((final || d.verdict === "rpc_disagreement") && d.checks) {
      clearChecks.run(d.job.jobId);
      for (const c of d.checks) {
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

  const writeAll = sqlite.transaction(
    (decisions: readonly VerdictWrite[], owner: string, runId: number | null, t: number) => {
      // What each job of the batch learns: a job written early must not miss a vault a later
      // one pins (see `pin`).
      const batch = decisions.flatMap((d) => {
        const learned = pinsOf(d);
        return learned ? [{ jobId: d.job.jobId, learned }] : [];
      });
      const kept = writeKeptVerdicts(decisions, owner, t);
      const written = decisions.map((d) =>
        kept.has(d) ? false : writeOne(d, owner, runId, t, batch),
      );
      // The batch's rollup deltas stay pending (reports add them) until the checkpointer's
      // thread or the fold trigger sums them (src/db/rollups.ts). Summed here, before each
      // commit, they cost the verifier's round on the proxy's event loop a fold per batch.
      return written;
    },
  );

  /**
   * Writes the decisions that keep the verdict each job was claimed with (`keepsVerdict`), each
   * job's first only (writing it releases the lease, which a later decision of the job in the
   * batch would not find), in one statement; returns those written, none of them final.
   */
  function writeKeptVerdicts(
    decisions: readonly VerdictWrite[],
    owner: string,
    t: number,
  ): Set<VerdictWrite> {
    const seen = new Set<string>();
    const same = decisions.filter((d) => {
      const first = !seen.has(d.job.jobId);
      seen.add(d.job.jobId);
      return first && keepsVerdict(d);
    });
    if (same.length === 0) return new Set();
    const rows = same.map((d) => [
      d.job.jobId,
      d.verdict,
      d.job.verdictAt,
      attemptsAfter(d),
      d.nextVerifyAt,
      d.lastError,
      d.commitment,
    ]);
    const ids = new Set(
      writeSameVerdicts.all({ rows: JSON.stringify(rows), owner, now: t }) as string[],
    );
    return new Set(same.filter((d) => ids.has(d.job.jobId)));
  }

  return {
    async write(decisions, { owner, runId, t }) {
      return writeAll.immediate(decisions, owner, runId, t);
    },
  };
}
