import type { Store } from "../db/client.js";
import type { Verdict } from "../db/schema.js";
import { formatUnits } from "../money.js";
import { decodeCursor, encodeCursor, type JobCursor } from "./cursor.js";
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
}

interface JobRow {
  job_id: string;
  created_at: number;
  source: string;
  model: string | null;
  worker: string | null;
  key_fingerprint: string | null;
  verdict: Verdict;
  verdict_at: number | null;
  escrow_tx: string | null;
  settlement_tx: string | null;
  charged_units: bigint | null;
  tags: string;
}

const jobColumns = `job_id, created_at, source, model, worker, key_fingerprint, verdict, verdict_at,
  escrow_tx, settlement_tx, charged_units, tags`;

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
    escrowTx: row.escrow_tx,
    settlementTx: row.settlement_tx,
    chargedUnits: row.charged_units === null ? null : row.charged_units.toString(),
    chargedUsdc: row.charged_units === null ? null : formatUnits(row.charged_units),
    tags: JSON.parse(row.tags) as Record<string, string>,
  };
}

export type JobSummary = ReturnType<typeof jobSummary>;

/** Builds WHERE clauses and parameters shared by the listings. */
function whereOf(filter: JobFilter, cursor: JobCursor | null, order: "asc" | "desc") {
  const clauses: string[] = [];
  const params: (string | number)[] = [];
  if (filter.verdict !== undefined) {
    clauses.push("verdict = ?");
    params.push(filter.verdict);
  }
  if (filter.worker !== undefined) {
    clauses.push("worker = ?");
    params.push(filter.worker);
  }
  if (filter.model !== undefined) {
    clauses.push("model = ?");
    params.push(filter.model);
  }
  if (filter.keyFingerprint !== undefined) {
    clauses.push("key_fingerprint = ?");
    params.push(filter.keyFingerprint);
  }
  if (filter.from !== undefined) {
    clauses.push("created_at >= ?");
    params.push(filter.from);
  }
  if (filter.to !== undefined) {
    clauses.push("created_at < ?");
    params.push(filter.to);
  }
  if (cursor) {
    // Row-value comparison: strictly after the last row seen, in the listing's order.
    // The plain bound on created_at lets SQLite seek in its index instead of scanning from
    // the first row (it does not range-scan on the row value alone).
    const [bound, strict] = order === "asc" ? [">=", ">"] : ["<=", "<"];
    clauses.push(`created_at ${bound} ? AND (created_at, job_id) ${strict} (?, ?)`);
    params.push(cursor.createdAt, cursor.createdAt, cursor.jobId);
  }
  return { where: clauses.length ? `WHERE ${clauses.join(" AND ")}` : "", params };
}

function page<T>(rows: JobRow[], limit: number, map: (row: JobRow) => T) {
  const more = rows.length > limit;
  const shown = more ? rows.slice(0, limit) : rows;
  const last = shown.at(-1);
  return {
    items: shown.map(map),
    nextCursor:
      more && last
        ? encodeCursor({ createdAt: Number(last.created_at), jobId: last.job_id })
        : null,
  };
}

/**
 * Lists jobs by keyset on (created_at, job_id): each page starts strictly after the previous
 * page's last row, so jobs inserted meanwhile never shift, repeat or skip rows of later pages.
 */
export function listJobs(store: Store, filter: JobFilter, request: PageRequest) {
  const order = request.order ?? "desc";
  const cursor = request.cursor ? decodeCursor(request.cursor) : null;
  const { where, params } = whereOf(filter, cursor, order);
  const dir = order === "asc" ? "ASC" : "DESC";
  const rows = store.sqlite
    .prepare(
      `SELECT ${jobColumns} FROM jobs ${where} ORDER BY created_at ${dir}, job_id ${dir} LIMIT ?`,
    )
    .safeIntegers(true)
    .all(...params, request.limit + 1) as JobRow[];
  return page(rows, request.limit, jobSummary);
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
export function listDiscrepancies(
  store: Store,
  filter: { from?: number; to?: number; check?: string; verdict?: FailingVerdict },
  request: PageRequest,
) {
  const order = request.order ?? "desc";
  const cursor = request.cursor ? decodeCursor(request.cursor) : null;
  const dir = order === "asc" ? "ASC" : "DESC";
  const rows: JobRow[] = [];
  for (const verdict of filter.verdict ? [filter.verdict] : failingVerdicts) {
    const { where, params } = whereOf({ verdict, from: filter.from, to: filter.to }, cursor, order);
    // The unary `+` keeps SQLite on the primary key (job_id, name): a job has a dozen check
    // rows, while the (outcome, name) index would walk every failing check of every job.
    const failing = `EXISTS (SELECT 1 FROM check_results c WHERE c.job_id = jobs.job_id
      AND +c.outcome = 'fail'${filter.check !== undefined ? " AND +c.name = ?" : ""})`;
    rows.push(
      ...(store.sqlite
        .prepare(
          `SELECT ${jobColumns} FROM jobs INDEXED BY jobs_verdict_created ${where} AND ${failing}
           ORDER BY created_at ${dir}, job_id ${dir} LIMIT ?`,
        )
        .safeIntegers(true)
        .all(
          ...params,
          ...(filter.check !== undefined ? [filter.check] : []),
          request.limit + 1,
        ) as JobRow[]),
    );
  }
  const sign = order === "asc" ? 1 : -1;
  rows.sort((a, b) => {
    const byTime = Number(a.created_at) - Number(b.created_at);
    return sign * (byTime !== 0 ? byTime : a.job_id < b.job_id ? -1 : a.job_id > b.job_id ? 1 : 0);
  });
  const result = page(rows.slice(0, request.limit + 1), request.limit, jobSummary);
  const checksStmt = store.sqlite.prepare(
    `SELECT name, reason, expected, actual FROM check_results
     WHERE job_id = ? AND +outcome = 'fail' ORDER BY name`,
  );
  return {
    items: result.items.map((job) => ({
      ...job,
      failingChecks: (
        checksStmt.all(job.jobId) as {
          name: string;
          reason: string | null;
          expected: string | null;
          actual: string | null;
        }[]
      ).map((c) => ({
        name: c.name,
        reason: c.reason,
        expected: c.expected === null ? null : (JSON.parse(c.expected) as unknown),
        actual: c.actual === null ? null : (JSON.parse(c.actual) as unknown),
      })),
    })),
    nextCursor: result.nextCursor,
  };
}
