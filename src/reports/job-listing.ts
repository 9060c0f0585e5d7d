import type { Store } from "../db/client.js";
import type { Verdict } from "../db/schema.js";
import { formatUnits } from "../money.js";
import { type JobRow, reportsStore } from "../store/reports.js";
import { type CursorQuery, decodeCursor, encodeCursor } from "./cursor.js";
import { isoOf } from "./period.js";

/** Filters of `GET /jobs`; every one optional. Period: `from` inclusive, `to` exclusive. */
export interface JobFilter {
  verdict?: Verdict;
  worker?: string;
  model?: string;
  keyFingerprint?: string;
  from?: number;
  to?: number;
}

export interface PageRequest {
  /** Opaque cursor from the previous page's `nextCursor`. */
  cursor?: string;
  /** Page size, 1..500. */
  limit: number;
  /** `desc` (newest first, the default) or `asc`. */
  order?: "asc" | "desc";
  /**
   * The period as its caller names it (the dashboard's `period=month`), bound into the cursor
   * in place of its bounds: a period that runs to today keeps its next-page links after midnight.
   */
  period?: string;
}

/** What a listing's cursor is bound to: the listing, its order, filters and period. */
function cursorQuery(listing: string, filter: CursorQuery, request: PageRequest): CursorQuery {
  const named = request.period === undefined ? {} : { from: undefined, to: undefined };
  return { listing, order: request.order ?? "desc", ...filter, ...named, period: request.period };
}

function jobSummary(row: JobRow) {
  return {
    jobId: row.job_id,
    createdAt: isoOf(Number(row.created_at)),
    source: row.source,
    model: row.model,
    worker: row.worker,
    keyFingerprint: row.key_fingerprint,
    verdict: row.verdict,
    verdictAt: row.verdict_at === null ? null : isoOf(Number(row.verdict_at)),
    rejudging:
      row.previous_verdict === null
        ? null
        : { previousVerdict: row.previous_verdict, reason: row.rejudge_reason ?? "evidence" },
    escrowTx: row.escrow_tx,
    settlementTx: row.settlement_tx,
    chargedUnits: row.charged_units === null ? null : row.charged_units.toString(),
    chargedUsdc: row.charged_units === null ? null : formatUnits(row.charged_units),
    tags: JSON.parse(row.tags) as Record<string, string>,
  };
}

function page<T>(rows: JobRow[], limit: number, query: CursorQuery, map: (row: JobRow) => T) {
  const more = rows.length > limit;
  const shown = more ? rows.slice(0, limit) : rows;
  const last = shown.at(-1);
  return {
    items: shown.map(map),
    nextCursor:
      more && last
        ? encodeCursor({ createdAt: Number(last.created_at), jobId: last.job_id }, query)
        : null,
  };
}

/**
 * Lists jobs by keyset on (created_at, job_id): each page starts strictly after the previous
 * page's last row, so jobs inserted meanwhile never shift, repeat or skip rows of later pages.
 */
export async function listJobs(store: Store, filter: JobFilter, request: PageRequest) {
  const order = request.order ?? "desc";
  const query = cursorQuery("jobs", { ...filter }, request);
  const cursor = request.cursor ? decodeCursor(request.cursor, query) : null;
  const rows = await reportsStore(store).jobRows(filter, cursor, order, request.limit + 1);
  return page(rows, request.limit, query, jobSummary);
}

/** Verdicts whose jobs carry failing checks (see src/verify: discrepancy, dropped). */
export const failingVerdicts = ["discrepancy", "dropped"] as const;
export type FailingVerdict = (typeof failingVerdicts)[number];

/**
 * Jobs with a failing check (verdict `discrepancy` or `dropped`), each with its failing checks;
 * with `check`, only jobs failing the check of that name; with `verdict`, only jobs of that
 * verdict. Keyset like `listJobs`. Each verdict
 * is read in `jobs_verdict_created` order and the two runs merged here, so a page costs the
 * same at any depth and never sorts the whole set.
 */
export async function listDiscrepancies(
  store: Store,
  filter: { from?: number; to?: number; check?: string; verdict?: FailingVerdict },
  request: PageRequest,
) {
  const order = request.order ?? "desc";
  const query = cursorQuery("discrepancies", filter, request);
  const cursor = request.cursor ? decodeCursor(request.cursor, query) : null;
  const reports = reportsStore(store);
  const rows: JobRow[] = [];
  for (const verdict of filter.verdict ? [filter.verdict] : failingVerdicts) {
    rows.push(
      ...(await reports.failingJobRows(
        { verdict, from: filter.from, to: filter.to },
        filter.check,
        cursor,
        order,
        request.limit + 1,
      )),
    );
  }
  const sign = order === "asc" ? 1 : -1;
  rows.sort((a, b) => {
    const byTime = Number(a.created_at) - Number(b.created_at);
    return sign * (byTime !== 0 ? byTime : a.job_id < b.job_id ? -1 : a.job_id > b.job_id ? 1 : 0);
  });
  const result = page(rows.slice(0, request.limit + 1), request.limit, query, jobSummary);
  const items = [];
  for (const job of result.items) {
    items.push({ ...job, failingChecks: await reports.failingChecks(job.jobId) });
  }
  return {
    items: items.map((job) => ({
      ...job,
      failingChecks: job.failingChecks.map((c) => ({
        name: c.name,
        reason: c.reason,
        expected: c.expected === null ? null : (JSON.parse(c.expected) as unknown),
        actual: c.actual === null ? null : (JSON.parse(c.actual) as unknown),
      })),
    })),
    nextCursor: result.nextCursor,
  };
}
