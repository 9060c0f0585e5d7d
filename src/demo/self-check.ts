import type { Store } from "../db/client.js";
import type { jobs } from "../db/schema.js";
import { chainFaults, type SimJob } from "../localnet/decentral-jobs.js";
import { createOpsStore } from "../store/ops.js";
import type { RunSummary } from "../verify/engine.js";
import type { RequestOutcome } from "./traffic.js";

/**
 * The demo checks itself against what the simulator really did (its ground truth): every
 * request answered as planned, every job recorded, every job final, every honest job verified
 * with amounts equal to the truth to the base unit, and every injected fault flagged. A demo
 * that passed while any of these failed would prove nothing.
 */

export interface SelfCheckItem {
  ok: boolean;
  text: string;
  /** Up to a few offending jobs or requests, for the reader to look up. */
  details: string[];
}

export interface SelfCheck {
  ok: boolean;
  items: SelfCheckItem[];
}

const MAX_DETAILS = 5;

type JobRow = typeof jobs.$inferSelect;

const isChainFault = (fault: string | null) =>
  fault !== null && (chainFaults as readonly string[]).includes(fault);

function item(text: string, problems: string[]): SelfCheckItem {
  const details = problems.slice(0, MAX_DETAILS);
  if (problems.length > MAX_DETAILS) details.push(`... and ${problems.length - MAX_DETAILS} more`);
  return { ok: problems.length === 0, text, details };
}

/** Amount columns of a verified job next to the simulator's figures. */
function amountMismatches(row: JobRow, truth: SimJob): string[] {
  const pairs: [string, bigint | null, bigint][] = [
    ["escrowed", row.escrowedUnits, truth.lockUnits],
    ["charged", row.chargedUnits, truth.chargeUnits],
    ["worker", row.workerPaidUnits, truth.workerShareUnits],
    ["treasury", row.treasuryPaidUnits, truth.treasuryShareUnits],
    ["refunded", row.refundedUnits, truth.refundUnits],
  ];
  return pairs
    .filter(([, recorded, real]) => recorded !== real)
    .map(([name, recorded, real]) => `${name} ${recorded ?? "null"} != ${real}`);
}

/**
 * Compares the run's outcome with the ground truth. `truth` is every job the simulator ran in
 * this run; `from` is the run's start, so jobs of earlier runs in the same database are ignored.
 */
export async function selfCheck(input: {
  store: Store;
  from: number;
  outcomes: readonly RequestOutcome[];
  truth: readonly SimJob[];
  run: RunSummary;
}): Promise<SelfCheck> {
  const { store, from, outcomes, truth, run } = input;
  const items: SelfCheckItem[] = [];

  const byStatus = new Map<number, number>();
  for (const o of outcomes) byStatus.set(o.status, (byStatus.get(o.status) ?? 0) + 1);
  const statusText = [...byStatus]
    .sort(([a], [b]) => a - b)
    .map(([status, n]) => `${n} x ${status === 0 ? "no answer" : status}`)
    .join(", ");
  items.push(
    item(
      `${outcomes.length} requests answered as planned (${statusText})`,
      outcomes
        .filter((o) => o.status !== o.request.expectedStatus || o.problem !== null)
        .map(
          (o) =>
            `request ${o.request.index} (${o.request.fault ?? "honest"}): expected ${o.request.expectedStatus}, got ${o.status}${o.problem ? `: ${o.problem}` : ""}`,
        ),
    ),
  );

  const rows = new Map(
    (await createOpsStore(store).jobsCreatedSince(from)).map((r) => [r.jobId, r]),
  );
  const simulated = new Set(truth.map((t) => t.jobId));
  items.push(
    item(`every job the simulator ran has a receipt (${rows.size} of ${truth.length})`, [
      ...truth.filter((t) => !rows.has(t.jobId)).map((t) => `${t.jobId}: no receipt`),
      ...[...rows.keys()]
        .filter((id) => !simulated.has(id))
        .map((id) => `${id}: receipt of a job the simulator never ran`),
    ]),
  );

  items.push(
    item(
      `every job reached a final verdict (${run.final} of ${run.total}, ${(run.durationMs / 1000).toFixed(1)} s)`,
      run.status === "completed"
        ? []
        : [`verification ${run.status} with ${run.total - run.final} jobs still open`],
    ),
  );

  // Honest jobs include 504s: the network refunded them, and the refund is what gets proven.
  const honest = truth.filter((t) => !isChainFault(t.fault));
  const refunds = honest.filter((t) => t.status === "refunded").length;
  const honestProblems: string[] = [];
  let partial = 0;
  for (const t of honest) {
    const row = rows.get(t.jobId);
    if (!row) continue;
    // A stream read without `include_usage` leaves the charge bounded by the lock only: the
    // honest answer is partially verified, saying exactly that.
    const usageUnknown = row.completionTokens === null && t.status !== "refunded";
    if (usageUnknown) partial++;
    const expected = usageUnknown ? "partially_verified" : "verified";
    const unproven = row.unproven ?? [];
    if (
      row.verdict !== expected ||
      (usageUnknown && (unproven.length !== 1 || unproven[0] !== "usage_unknown"))
    ) {
      honestProblems.push(
        `${t.jobId} (${t.fault ?? "honest"}): ${row.verdict}${unproven.length ? ` (${unproven.join(", ")})` : ""}, not ${expected}`,
      );
      continue;
    }
    const off = amountMismatches(row, t);
    if (off.length > 0) honestProblems.push(`${t.jobId}: ${off.join(", ")}`);
  }
  items.push(
    item(
      `all ${honest.length} honest jobs end as they should: ${honest.length - partial} verified (${refunds} refunded), ${partial} streams without usage partially verified (their charge bounded by the lock); amounts equal to the truth to the base unit`,
      honestProblems,
    ),
  );

  const faulty = truth.filter((t) => isChainFault(t.fault));
  const missed = faulty.filter((t) => {
    const verdict = rows.get(t.jobId)?.verdict;
    return verdict !== "discrepancy" && verdict !== "dropped";
  });
  items.push(
    item(
      `${faulty.length - missed.length} of ${faulty.length} injected faults flagged`,
      missed.map((t) => `${t.jobId} (${t.fault}): ${rows.get(t.jobId)?.verdict ?? "no receipt"}`),
    ),
  );

  return { ok: items.every((i) => i.ok), items };
}

/** The self-check as lines: a mark per item and the offending jobs under a failed one. */
export function formatSelfCheck(check: SelfCheck): string[] {
  const lines: string[] = [];
  for (const i of check.items) {
    lines.push(`  ${i.ok ? "ok  " : "FAIL"} ${i.text}`);
    for (const d of i.details) lines.push(`         ${d}`);
  }
  return lines;
}
