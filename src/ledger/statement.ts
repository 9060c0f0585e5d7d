import type { Store } from "../db/client.js";
import { isoOf } from "../reports/period.js";
import { csvField } from "../reports/reconciliation.js";
import type { Profile } from "../verify/profiles.js";

/**
 * The statement of a credit vault for a period, as a bank reconciliation: opening balance +
 * deposits - locks + returns (- unexplained debits + unexplained credits) = closing balance,
 * every line tied to a recorded job or called what it is, and the closing balance compared
 * with the chain's own figure. Lines are classified here, against the receipts recorded now:
 *
 * - `lock`: money out by the escrow transaction of a recorded job;
 * - `return`: money in by the settlement or refund of a recorded job, or money in whose memo
 *   settles or refunds a job whose lock this vault paid (receipted or not);
 * - `deposit`: any other money in (a top-up);
 * - `unexplained`: any other money out: an `unreceipted_debit`, the finding this exists for.
 *
 * A recorded job's lock that no return followed (and whose settlement did not land) within the
 * profile's settlement window plus `graceSeconds` is an `unreleased_lock` finding.
 */

export type LineKind = "lock" | "return" | "deposit" | "unexplained";

export interface StatementLine {
  signature: string;
  slot: number;
  blockTime: number | null;
  /** Change of the vault's balance: negative out, positive in. */
  amountUnits: bigint;
  kind: LineKind;
  /** The recorded job the line belongs to (lock or return), else null. */
  jobId: string | null;
  memo: string | null;
  /** The job the memo names, recorded or not. */
  memoJobId: string | null;
}

export interface UnexplainedLine extends StatementLine {
  finding: "unreceipted_debit";
}

export interface UnreleasedLock {
  finding: "unreleased_lock";
  jobId: string;
  signature: string;
  lockUnits: bigint;
  lockedAt: string | null;
  /** When the return was due: the lock's block time + settlement window + grace. */
  dueBy: string | null;
}

/**
 * Two consecutive movements whose balances do not chain (the first's balance after is not the
 * second's balance before): transactions between them are missing from the history read, e.g.
 * pruned by a non-archival node. Never fraud by itself: read the range from an archival node.
 */
export interface LedgerGap {
  afterSignature: string;
  beforeSignature: string;
  fromSlot: number;
  toSlot: number;
  /** What moved unseen between them: the second's balance before - the first's after. */
  missingUnits: bigint;
}

/**
 * A recorded job whose `x-decentral-credits-remaining` matches no balance the vault held from
 * its lock until its response was recorded (whole credits: a balance b matches a header of h
 * units when h <= b < h + 10,000).
 */
export interface CreditsHeaderMismatch {
  finding: "credits_header_mismatch";
  jobId: string;
  headerUnits: bigint;
  /** The balances the vault held in that span, oldest first. */
  balancesUnits: bigint[];
}

export interface VaultStatement {
  vault: string;
  /** Fingerprints of the API keys pinned to this vault. */
  keys: string[];
  /** The history is read up to this moment (the last completed sync); null if never read. */
  readThrough: string | null;
  /** True when the history is read past `to` and every listed transaction is read. */
  complete: boolean;
  openingUnits: bigint | null;
  depositsUnits: bigint;
  locksUnits: bigint;
  returnsUnits: bigint;
  unexplainedOutUnits: bigint;
  /** Locks - returns + unexplained debits: what the period cost, deposits aside. */
  netSpendUnits: bigint;
  closingByLedgerUnits: bigint | null;
  closingOnChainUnits: bigint | null;
  /**
   * Where the chain's closing figure comes from: `next_transaction` (the vault's balance before
   * its first movement at or after `to`), `balance_read` (getTokenAccountBalance at finalized,
   * taken when every transaction up to its slot was listed), `last_transaction` (the balance
   * after the last movement before `to`), or null when the vault never moved and was never read.
   */
  closingOnChainSource: "next_transaction" | "balance_read" | "last_transaction" | null;
  /** Closing on chain - closing by ledger: 0 when the ledger holds every movement. */
  differenceUnits: bigint | null;
  counts: {
    lines: number;
    deposits: number;
    locks: number;
    returns: number;
    unexplained: number;
    unreleasedLocks: number;
    creditsHeaderMismatches: number;
    /** Listed transactions not read yet (RPC trouble or pruned): the statement waits for them. */
    pending: number;
    /** Transactions naming the vault that moved none of its money (failed ones included). */
    noMovement: number;
  };
  unexplained: UnexplainedLine[];
  unreleasedLocks: UnreleasedLock[];
  creditsHeaderMismatches: CreditsHeaderMismatch[];
  gaps: LedgerGap[];
}

export interface Statement {
  from: number;
  to: number;
  generatedAt: number;
  vaults: VaultStatement[];
}

export interface StatementQuery {
  from: number;
  to: number;
  /** Only this vault; default every vault the ledger reads. */
  vault?: string;
}

export interface StatementOptions {
  profile: Profile;
  /** Seconds after the settlement window before an unreturned lock is a finding. Default 300. */
  graceSeconds?: number;
  now?: () => number;
}

interface LineRow {
  signature: string;
  slot: bigint;
  block_time: bigint | null;
  state: "listed" | "read";
  pre_units: bigint | null;
  post_units: bigint | null;
  delta_units: bigint | null;
  memo: string | null;
  memo_kind: "escrow" | "settle" | "refund" | null;
  memo_job_id: string | null;
  lock_job: string | null;
  return_job: string | null;
}

/** Builds the statement of every (or one) vault for `[from, to)`. Amounts are exact bigints. */
export function buildStatement(
  store: Store,
  query: StatementQuery,
  options: StatementOptions,
): Statement {
  const { sqlite } = store;
  const now = options.now ?? Date.now;
  const graceSeconds = options.graceSeconds ?? 300;
  const fromSec = Math.ceil(query.from / 1000);
  const toSec = Math.ceil(query.to / 1000);
  const big = <T>(sql: string) => sqlite.prepare(sql).safeIntegers(true) as unknown as T;

  const vaults = query.vault
    ? [query.vault]
    : (sqlite
        .prepare(
          `SELECT vault FROM ledger_cursors UNION SELECT vault FROM credit_vaults ORDER BY 1`,
        )
        .pluck()
        .all() as string[]);

  type Get<R> = { get(...args: unknown[]): R | undefined; all(...args: unknown[]): R[] };
  const keysOf = sqlite.prepare(
    "SELECT key_fingerprint FROM credit_vaults WHERE vault = ? ORDER BY 1",
  );
  const cursorOf = big<
    Get<{
      synced_at: bigint | null;
      balance_units: bigint | null;
      balance_slot: bigint | null;
      balance_at: bigint | null;
    }>
  >(
    "SELECT synced_at, balance_units, balance_slot, balance_at FROM ledger_cursors WHERE vault = ?",
  );
  // Block times are whole seconds: [from, to) in ms is [ceil(from/1000), ceil(to/1000)) in s.
  const linesIn = big<Get<LineRow>>(
    `SELECT l.signature, l.slot, l.block_time, l.state, l.pre_units, l.post_units, l.delta_units,
       l.memo, l.memo_kind,
       l.memo_job_id,
       CASE WHEN l.delta_units < 0 THEN (
         SELECT job_id FROM jobs WHERE escrow_tx = l.signature
         UNION ALL SELECT job_id FROM jobs WHERE api_escrow_tx = l.signature LIMIT 1) END AS lock_job,
       CASE WHEN l.delta_units > 0 THEN (
         SELECT job_id FROM jobs WHERE settlement_tx = l.signature
         UNION ALL SELECT job_id FROM jobs WHERE api_settlement_tx = l.signature LIMIT 1) END AS return_job
     FROM ledger_lines l
     WHERE l.vault = ? AND l.block_time >= ? AND l.block_time < ?
     ORDER BY l.ord`,
  );
  const pendingAll = sqlite
    .prepare("SELECT count(*) FROM ledger_lines WHERE vault = ? AND state = 'listed'")
    .pluck();
  const firstMovement = big<Get<{ pre_units: bigint }>>(
    `SELECT pre_units FROM ledger_lines WHERE vault = ? AND state = 'read' AND delta_units <> 0
     ORDER BY ord LIMIT 1`,
  );
  const sumBefore = big<Get<{ total: bigint | null }>>(
    `SELECT sum(delta_units) AS total FROM ledger_lines
     WHERE vault = ? AND state = 'read' AND block_time < ?`,
  );
  const nextMovement = big<Get<{ pre_units: bigint }>>(
    `SELECT pre_units FROM ledger_lines WHERE vault = ? AND state = 'read' AND delta_units <> 0
       AND block_time >= ? ORDER BY ord LIMIT 1`,
  );
  const lastMovement = big<Get<{ post_units: bigint; slot: bigint }>>(
    `SELECT post_units, slot FROM ledger_lines WHERE vault = ? AND state = 'read'
       AND delta_units <> 0 AND block_time < ? ORDER BY ord DESC LIMIT 1`,
  );
  // The newest line listed is the top of the sync in progress, else of the last one completed.
  const newestSlot = big<Get<{ slot: bigint | null }>>(
    "SELECT coalesce(sync_top_slot, newest_slot) AS slot FROM ledger_cursors WHERE vault = ?",
  );
  // Job ids whose lock this vault paid, and whose return (by memo) came back to it, over the
  // whole history: one scan each per vault instead of a probe per line.
  const lockedJobs = sqlite
    .prepare(
      `SELECT memo_job_id FROM ledger_lines WHERE vault = ? AND memo_kind = 'escrow'
         AND delta_units < 0 AND memo_job_id IS NOT NULL`,
    )
    .pluck();
  const returnedJobs = sqlite
    .prepare(
      `SELECT memo_job_id FROM ledger_lines WHERE vault = ? AND memo_kind IN ('settle', 'refund')
         AND delta_units > 0 AND memo_job_id IS NOT NULL`,
    )
    .pluck();
  const returnedBySettlement = sqlite.prepare(
    `SELECT 1 FROM ledger_lines WHERE vault = ? AND delta_units > 0 AND signature IN (
       SELECT settlement_tx FROM jobs WHERE job_id = ?
       UNION SELECT api_settlement_tx FROM jobs WHERE job_id = ?) LIMIT 1`,
  );
  const returnedHere = (vault: string, jobId: string, byMemo: Set<string>) =>
    byMemo.has(jobId) || returnedBySettlement.get(vault, jobId, jobId) !== undefined;
  // A settlement that kept the whole lock (charge = lock) returns nothing to the vault: the
  // lock is released when that settlement landed and succeeded.
  const settledOnChain = sqlite.prepare(
    `SELECT 1 FROM chain_transactions c WHERE c.state = 'finalized' AND c.succeeded = 1
       AND c.signature IN (SELECT settlement_tx FROM jobs WHERE job_id = ?
                           UNION SELECT api_settlement_tx FROM jobs WHERE job_id = ?) LIMIT 1`,
  );

  const headerOf = big<Get<{ credits_remaining_units: bigint | null; recorded_at: bigint }>>(
    "SELECT credits_remaining_units, recorded_at FROM jobs WHERE job_id = ?",
  );
  const windowSeconds = options.profile.settlementWindowSeconds + graceSeconds;
  /** The job's credits header against the vault's balances from its lock to its response. */
  const creditsHeaderCheck = (
    jobId: string,
    rows: LineRow[],
    lockIndex: number,
  ): CreditsHeaderMismatch | null => {
    const job = headerOf.get(jobId);
    const header = job?.credits_remaining_units ?? null;
    if (!job || header === null) return null;
    const until = Number(job.recorded_at / 1000n);
    const balances: bigint[] = [];
    for (let i = lockIndex; i < rows.length; i++) {
      const r = rows[i]!;
      if (i > lockIndex && (r.block_time === null || Number(r.block_time) > until)) break;
      if (r.post_units === null) continue;
      if (header <= r.post_units && r.post_units < header + 10_000n) return null;
      balances.push(r.post_units);
    }
    return {
      finding: "credits_header_mismatch",
      jobId,
      headerUnits: header,
      balancesUnits: balances,
    };
  };

  const out: VaultStatement[] = [];
  for (const vault of vaults) {
    const cursor = cursorOf.get(vault);
    const syncedAt = cursor?.synced_at == null ? null : Number(cursor.synced_at);
    const rows = linesIn.all(vault, fromSec, toSec);
    const pending = pendingAll.get(vault) as number;

    const first = firstMovement.get(vault);
    let opening: bigint | null = null;
    if (first) opening = first.pre_units + (sumBefore.get(vault, fromSec)?.total ?? 0n);
    else if (cursor?.balance_units != null) opening = cursor.balance_units;

    const totals = { deposits: 0n, locks: 0n, returns: 0n, unexplainedOut: 0n };
    const counts = {
      lines: rows.length,
      deposits: 0,
      locks: 0,
      returns: 0,
      unexplained: 0,
      unreleasedLocks: 0,
      creditsHeaderMismatches: 0,
      pending,
      noMovement: 0,
    };
    const unexplained: UnexplainedLine[] = [];
    const unreleased: UnreleasedLock[] = [];
    const gaps: LedgerGap[] = [];
    const mismatches: CreditsHeaderMismatch[] = [];
    const locked = new Set(lockedJobs.all(vault) as string[]);
    const returned = new Set(returnedJobs.all(vault) as string[]);
    let previous: LineRow | null = null;
    const asOf = Math.floor((syncedAt ?? now()) / 1000);

    for (const [index, row] of rows.entries()) {
      if (row.state !== "read") continue;
      const delta = row.delta_units ?? 0n;
      if (delta === 0n) {
        counts.noMovement++;
        continue;
      }
      if (
        previous?.post_units != null &&
        row.pre_units !== null &&
        previous.post_units !== row.pre_units
      ) {
        gaps.push({
          afterSignature: previous.signature,
          beforeSignature: row.signature,
          fromSlot: Number(previous.slot),
          toSlot: Number(row.slot),
          missingUnits: row.pre_units - previous.post_units,
        });
      }
      previous = row;
      const base = {
        signature: row.signature,
        slot: Number(row.slot),
        blockTime: row.block_time === null ? null : Number(row.block_time),
        amountUnits: delta,
        memo: row.memo,
        memoJobId: row.memo_job_id,
      };
      if (delta < 0n) {
        if (row.lock_job !== null) {
          totals.locks -= delta;
          counts.locks++;
          const jobId = row.lock_job;
          const mismatch = creditsHeaderCheck(jobId, rows, index);
          if (mismatch) {
            counts.creditsHeaderMismatches++;
            mismatches.push(mismatch);
          }
          const due = base.blockTime === null ? null : base.blockTime + windowSeconds;
          if (
            due !== null &&
            due < asOf &&
            !returnedHere(vault, jobId, returned) &&
            !settledOnChain.get(jobId, jobId)
          ) {
            counts.unreleasedLocks++;
            unreleased.push({
              finding: "unreleased_lock",
              jobId,
              signature: row.signature,
              lockUnits: -delta,
              lockedAt: base.blockTime === null ? null : isoOf(base.blockTime * 1000),
              dueBy: isoOf(due * 1000),
            });
          }
        } else {
          totals.unexplainedOut -= delta;
          counts.unexplained++;
          unexplained.push({
            ...base,
            kind: "unexplained",
            jobId: null,
            finding: "unreceipted_debit",
          });
        }
        continue;
      }
      const returnsLock =
        row.return_job !== null ||
        ((row.memo_kind === "settle" || row.memo_kind === "refund") &&
          row.memo_job_id !== null &&
          locked.has(row.memo_job_id));
      if (returnsLock) {
        totals.returns += delta;
        counts.returns++;
      } else {
        totals.deposits += delta;
        counts.deposits++;
      }
    }

    const closingByLedger =
      opening === null
        ? null
        : opening + totals.deposits - totals.locks + totals.returns - totals.unexplainedOut;
    let closingOnChain: bigint | null = null;
    let source: VaultStatement["closingOnChainSource"] = null;
    const next = nextMovement.get(vault, toSec);
    const newest = newestSlot.get(vault)?.slot ?? null;
    const balanceCovers =
      cursor?.balance_units != null &&
      cursor.balance_slot != null &&
      (newest === null || newest <= cursor.balance_slot);
    if (next) {
      closingOnChain = next.pre_units;
      source = "next_transaction";
    } else if (balanceCovers && cursor?.balance_units != null) {
      closingOnChain = cursor.balance_units;
      source = "balance_read";
    } else {
      const last = lastMovement.get(vault, toSec);
      if (last) {
        closingOnChain = last.post_units;
        source = "last_transaction";
      }
    }

    out.push({
      vault,
      keys: keysOf.pluck().all(vault) as string[],
      readThrough: syncedAt === null ? null : isoOf(syncedAt),
      complete: syncedAt !== null && syncedAt >= query.to && pending === 0,
      openingUnits: opening,
      depositsUnits: totals.deposits,
      locksUnits: totals.locks,
      returnsUnits: totals.returns,
      unexplainedOutUnits: totals.unexplainedOut,
      netSpendUnits: totals.locks - totals.returns + totals.unexplainedOut,
      closingByLedgerUnits: closingByLedger,
      closingOnChainUnits: closingOnChain,
      closingOnChainSource: source,
      differenceUnits:
        closingByLedger === null || closingOnChain === null
          ? null
          : closingOnChain - closingByLedger,
      counts,
      unexplained,
      unreleasedLocks: unreleased,
      creditsHeaderMismatches: mismatches,
      gaps,
    });
  }
  return { from: query.from, to: query.to, generatedAt: now(), vaults: out };
}

const text = (units: bigint | null) => (units === null ? null : units.toString());

/** The statement as JSON: amounts as decimal strings of base units, instants as ISO 8601. */
export function statementToJson(statement: Statement) {
  return {
    from: isoOf(statement.from),
    to: isoOf(statement.to),
    generatedAt: isoOf(statement.generatedAt),
    vaults: statement.vaults.map((v) => ({
      vault: v.vault,
      keys: v.keys,
      readThrough: v.readThrough,
      complete: v.complete,
      openingUnits: text(v.openingUnits),
      depositsUnits: v.depositsUnits.toString(),
      locksUnits: v.locksUnits.toString(),
      returnsUnits: v.returnsUnits.toString(),
      unexplainedOutUnits: v.unexplainedOutUnits.toString(),
      netSpendUnits: v.netSpendUnits.toString(),
      closingByLedgerUnits: text(v.closingByLedgerUnits),
      closingOnChainUnits: text(v.closingOnChainUnits),
      closingOnChainSource: v.closingOnChainSource,
      differenceUnits: text(v.differenceUnits),
      counts: v.counts,
      unexplained: v.unexplained.map((l) => ({
        finding: l.finding,
        signature: l.signature,
        slot: l.slot,
        blockTime: l.blockTime === null ? null : isoOf(l.blockTime * 1000),
        amountUnits: l.amountUnits.toString(),
        memo: l.memo,
        memoJobId: l.memoJobId,
      })),
      unreleasedLocks: v.unreleasedLocks.map((u) => ({ ...u, lockUnits: u.lockUnits.toString() })),
      creditsHeaderMismatches: v.creditsHeaderMismatches.map((m) => ({
        finding: m.finding,
        jobId: m.jobId,
        headerUnits: m.headerUnits.toString(),
        balancesUnits: m.balancesUnits.map(String),
      })),
      gaps: v.gaps.map((g) => ({ ...g, missingUnits: g.missingUnits.toString() })),
    })),
  };
}

export type StatementJson = ReturnType<typeof statementToJson>;

export const statementColumns = [
  "openingUnits",
  "depositsUnits",
  "locksUnits",
  "returnsUnits",
  "unexplainedOutUnits",
  "netSpendUnits",
  "closingByLedgerUnits",
  "closingOnChainUnits",
  "differenceUnits",
] as const;

/**
 * RFC 4180 CSV (CRLF): one `vault` row per vault with every figure, then one row per finding
 * (`unreceipted_debit` with signature, amount, memo and the job the memo names;
 * `unreleased_lock` with signature, amount and job).
 */
export function statementToCsv(statement: Statement): string {
  const json = statementToJson(statement);
  const header = [
    "row",
    "vault",
    ...statementColumns,
    "complete",
    "closingOnChainSource",
    "deposits",
    "locks",
    "returns",
    "unexplained",
    "unreleasedLocks",
    "pending",
    "signature",
    "blockTime",
    "amountUnits",
    "jobId",
    "memo",
  ];
  const lines = [header.join(",")];
  const blank = statementColumns.map(() => null);
  const tail = () => [null, null, null, null, null, null, null, null];
  const row = (cells: (string | number | null)[]) => lines.push(cells.map(csvField).join(","));
  for (const v of json.vaults) {
    row([
      "vault",
      v.vault,
      ...statementColumns.map((c) => v[c]),
      String(v.complete),
      v.closingOnChainSource,
      v.counts.deposits,
      v.counts.locks,
      v.counts.returns,
      v.counts.unexplained,
      v.counts.unreleasedLocks,
      v.counts.pending,
      null,
      null,
      null,
      null,
      null,
    ]);
    for (const u of v.unexplained) {
      // The memo is the operator's text: quoted as text if a spreadsheet would run it.
      const memo = u.memo === null ? null : /^[=+\-@\t\r]/.test(u.memo) ? `'${u.memo}` : u.memo;
      row([
        u.finding,
        v.vault,
        ...blank,
        ...tail(),
        u.signature,
        u.blockTime,
        u.amountUnits,
        u.memoJobId,
        memo,
      ]);
    }
    for (const u of v.unreleasedLocks) {
      row([
        u.finding,
        v.vault,
        ...blank,
        ...tail(),
        u.signature,
        u.lockedAt,
        u.lockUnits,
        u.jobId,
        null,
      ]);
    }
  }
  return `${lines.join("\r\n")}\r\n`;
}
