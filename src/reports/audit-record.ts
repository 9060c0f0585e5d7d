import { withoutUrlSecrets } from "../chain/url-secrets.js";
import type { Store } from "../db/client.js";
import type { RejudgeReason, Verdict } from "../db/schema.js";
import { formatUnits } from "../money.js";
import {
  type AuditRows,
  type AuditTransaction,
  namedSignatures,
  reportsStore,
} from "../store/reports.js";
import {
  rejudgeReasonMessages,
  type UnprovenCode,
  unprovenCodes,
} from "../verify/check-catalogue.js";
import { isoOf } from "./period.js";

/**
 * Which Solana Explorer view links to a job's transactions. `custom` points the explorer at
 * our own RPC URL (localnet); `mainnet-beta` needs no parameter.
 */
export type ExplorerCluster =
  | { cluster: "mainnet-beta" | "devnet" | "testnet" }
  | { cluster: "custom"; rpcUrl: string };

/**
 * The explorer view of a profile's `cluster`: the public clusters by name, anything else
 * (localnet, a private cluster) through our own RPC URL.
 */
export function explorerClusterOf(cluster: string, rpcUrl: string): ExplorerCluster {
  if (cluster === "mainnet-beta" || cluster === "mainnet") return { cluster: "mainnet-beta" };
  if (cluster === "devnet" || cluster === "testnet") return { cluster };
  return { cluster: "custom", rpcUrl: withoutUrlSecrets(rpcUrl) };
}

/** Explorer link of a transaction for the profile's cluster. */
export function explorerTxUrl(signature: string, explorer: ExplorerCluster): string {
  const base = `https://explorer.solana.com/tx/${encodeURIComponent(signature)}`;
  if (explorer.cluster === "mainnet-beta") return base;
  if (explorer.cluster === "custom") {
    return `${base}?cluster=custom&customUrl=${encodeURIComponent(explorer.rpcUrl)}`;
  }
  return `${base}?cluster=${explorer.cluster}`;
}

const str = (v: bigint | null): string | null => (v === null ? null : v.toString());
const iso = (v: number | null): string | null => (v === null ? null : isoOf(v));

interface StoredTokenChange {
  account?: unknown;
  owner?: unknown;
  mint?: unknown;
  programId?: unknown;
  decimals?: unknown;
  pre?: unknown;
  post?: unknown;
  delta?: unknown;
}

const textOrNull = (v: unknown): string | null =>
  v === null || v === undefined ? null : String(v);

/** Token movements from stored facts; amounts stay decimal strings as stored. */
function tokenMovements(facts: unknown) {
  const changes = (facts as { tokenChanges?: unknown } | null)?.tokenChanges;
  if (!Array.isArray(changes)) return [];
  return (changes as StoredTokenChange[]).map((c) => ({
    account: String(c.account ?? ""),
    owner: textOrNull(c.owner),
    mint: String(c.mint ?? ""),
    programId: textOrNull(c.programId),
    decimals: typeof c.decimals === "number" ? c.decimals : null,
    pre: String(c.pre ?? ""),
    post: String(c.post ?? ""),
    delta: String(c.delta ?? ""),
  }));
}

function transactionRecord(
  signature: string | null,
  tx: AuditTransaction | null,
  explorer: ExplorerCluster,
) {
  if (signature === null) return null;
  return {
    signature,
    explorerUrl: explorerTxUrl(signature, explorer),
    state: tx?.state ?? "unknown",
    commitment: tx?.commitment ?? null,
    slot: tx?.slot ?? null,
    blockTime: tx?.blockTime == null ? null : isoOf(tx.blockTime * 1000),
    feeLamports: str(tx?.feeLamports ?? null),
    succeeded: tx?.succeeded ?? null,
    err: tx?.err ?? null,
    tokenMovements: tokenMovements(tx?.facts ?? null),
    fetchedAt: iso(tx?.fetchedAt ?? null),
  };
}

/** Who named a transaction for the job, and as which step. */
export type NamedAs =
  | "receipt escrow"
  | "receipt settlement"
  | "jobs API escrow"
  | "jobs API settlement"
  | "conflicting receipt";

/**
 * Signatures whose money the job's amounts leave out, with why, as its last evaluation wrote
 * them in its checks: one another job owns (`signatures.unique`), and one a conflicting receipt
 * names that carries no memo of this job (`signatures.explained`).
 */
function leftOut(checks: AuditRows["checks"]): Map<string, string> {
  const out = new Map<string, string>();
  for (const c of checks) {
    if (c.outcome !== "fail") continue;
    if (c.name === "signatures.unique" && Array.isArray(c.actual)) {
      for (const f of c.actual as { signature?: unknown; owner?: unknown }[]) {
        if (typeof f?.signature === "string" && typeof f.owner === "string") {
          out.set(f.signature, `its money is counted for job ${f.owner}, whose memo it carries`);
        }
      }
    }
    const unexplained = (c.actual as { unexplained?: unknown } | null)?.unexplained;
    if (c.name === "signatures.explained" && Array.isArray(unexplained)) {
      for (const s of unexplained) {
        if (typeof s === "string") out.set(s, "it carries no memo of this job");
      }
    }
  }
  return out;
}

/**
 * Every transaction the job names, each once with who named it and its token movements: a
 * second settlement or lock (named by the jobs API or a conflicting receipt) is counted in the
 * amounts like the first, so a reader adds the amounts up from this list, not from `escrow`
 * and `settlement` alone.
 */
function namedTransactions(rows: AuditRows, explorer: ExplorerCluster) {
  const { job } = rows;
  const excluded = leftOut(rows.checks);
  return namedSignatures(job).map((signature) => {
    const namedAs: NamedAs[] = [];
    if (signature === job.escrowTx) namedAs.push("receipt escrow");
    if (signature === job.settlementTx) namedAs.push("receipt settlement");
    if (signature === job.apiEscrowTx) namedAs.push("jobs API escrow");
    if (signature === job.apiSettlementTx) namedAs.push("jobs API settlement");
    // Kept with the job (another receipt or answer of its id named it, or it was found on chain
    // under the job's memo) and also named as one of its steps: that step says what it is. An
    // honest stream's settlement read under its memo before the jobs API named it was shown as a
    // conflicting receipt's.
    if (namedAs.length === 0 && (job.conflictSignatures ?? []).includes(signature)) {
      namedAs.push("conflicting receipt");
    }
    const why = excluded.get(signature) ?? null;
    return {
      ...transactionRecord(signature, rows.transactions.named.get(signature) ?? null, explorer)!,
      namedAs,
      countedInAmounts: why === null,
      notCountedBecause: why,
    };
  });
}

type CheckRow = AuditRows["checks"][number];

function checkRecord(c: CheckRow) {
  return {
    name: c.name,
    outcome: c.outcome,
    reason: c.reason,
    expected: c.expected ?? null,
    actual: c.actual ?? null,
    checkedAt: isoOf(c.checkedAt),
  };
}

/**
 * A job's check rows split into those of the judgement under way and those of the verdict it
 * is judged again from. The rows are replaced whole when a verdict is written (the final one's,
 * or an RPC disagreement's evidence), all at its time, and a reopen leaves them: while judged
 * again they are the previous verdict's when written at or before its `verdictAt` (a ledger
 * read may later mark its credits.header passed, so the earliest row tells), else the new run's.
 */
function checksByJudgement(
  checks: readonly CheckRow[],
  job: { previousVerdict: Verdict | null; verdictAt: number | null },
): { current: readonly CheckRow[]; previous: readonly CheckRow[] } {
  if (job.previousVerdict === null || checks.length === 0) return { current: checks, previous: [] };
  const writtenAt = Math.min(...checks.map((c) => c.checkedAt));
  const previous = job.verdictAt === null || writtenAt <= job.verdictAt;
  return previous ? { current: [], previous: checks } : { current: checks, previous: [] };
}

/**
 * A job that had a final verdict and is judged again: that verdict (`verdictAt` and
 * `verdictProfile` are its own meanwhile), the checks it was reached on, and why it was sent
 * back; null otherwise. `verdict` stays `pending` (or another open verdict) until the new one:
 * a job sent back by new evidence must not read `verified` while that evidence may show
 * otherwise, nor its checks read as the current ones.
 */
function rejudgingRecord(
  job: {
    previousVerdict: Verdict | null;
    rejudgeReason: RejudgeReason | null;
    verdictAt: number | null;
    verdictProfile: string | null;
  },
  previousChecks: readonly CheckRow[],
) {
  if (job.previousVerdict === null) return null;
  const reason = job.rejudgeReason ?? "evidence";
  return {
    previousVerdict: job.previousVerdict,
    previousVerdictAt: iso(job.verdictAt),
    previousVerdictProfile: job.verdictProfile,
    previousChecks: previousChecks.map(checkRecord),
    reason,
    message: rejudgeReasonMessages[reason],
  };
}

/**
 * Everything recorded and proven about one job: the receipt, conflicting receipts, what the
 * jobs API said, every transaction it names, every check and the verdict. Null for an unknown job.
 * Only primary-key and indexed point lookups, so its cost does not grow with the table.
 */
export async function auditRecord(store: Store, jobId: string, explorer: ExplorerCluster) {
  const reports = reportsStore(store);
  const rows = await reports.auditRows(jobId);
  if (!rows) return null;
  const { job, conflicts } = rows;
  const checks = checksByJudgement(rows.checks, job);
  const { escrow, settlement } = rows.transactions;
  // A streamed receipt learns its settlement signature later, from the jobs API.
  const settlementTx = job.settlementTx ?? job.apiSettlementTx;
  return {
    jobId: job.jobId,
    verdict: job.verdict,
    verdictAt: iso(job.verdictAt),
    verdictProfile: job.verdictProfile,
    rejudging: rejudgingRecord(job, checks.previous),
    unproven: (job.unproven ?? []).map((code) => ({
      code,
      message: unprovenCodes[code as UnprovenCode] ?? code,
    })),
    commitment: job.commitment,
    lastError: job.lastError === null ? null : withoutUrlSecrets(job.lastError),
    receipt: {
      source: job.source,
      decentral: {
        jobId: job.jobId,
        escrowTx: job.escrowTx,
        settlementTx: job.settlementTx,
        worker: job.worker,
        creditsRemainingUnits: str(job.creditsRemainingUnits),
      },
      model: job.model,
      responseModel: job.responseModel,
      creditVault: job.creditVault,
      usage: {
        promptTokens: job.promptTokens,
        completionTokens: job.completionTokens,
        totalTokens: job.totalTokens,
      },
      maxTokens: job.maxTokens,
      stream: job.stream,
      httpStatus: job.httpStatus,
      latencyMs: job.latencyMs,
      ttfbMs: job.ttfbMs,
      keyFingerprint: job.keyFingerprint,
      tags: job.tags,
      captureState: job.captureState,
      receiptHash: job.receiptHash,
      createdAt: isoOf(job.createdAt),
      recordedAt: isoOf(job.recordedAt),
    },
    conflicts: conflicts.map((c) => ({
      source: c.source,
      differences: c.differences,
      receipt: c.receipt,
      receivedAt: isoOf(c.receivedAt),
    })),
    jobsApi:
      job.apiCheckedAt === null
        ? null
        : {
            status: job.apiStatus,
            creditsChargedUnits: str(job.apiCreditsChargedUnits),
            escrowTx: job.apiEscrowTx,
            settlementTx: job.apiSettlementTx,
            worker: job.apiWorker,
            checkedAt: isoOf(job.apiCheckedAt),
            response: rows.apiResponse ?? null,
          },
    escrow: transactionRecord(job.escrowTx, escrow ?? null, explorer),
    settlement: transactionRecord(settlementTx, settlement ?? null, explorer),
    transactions: namedTransactions(rows, explorer),
    amounts: {
      escrowedUnits: str(job.escrowedUnits),
      chargedUnits: str(job.chargedUnits),
      chargedUsdc: job.chargedUnits === null ? null : formatUnits(job.chargedUnits),
      workerPaidUnits: str(job.workerPaidUnits),
      treasuryPaidUnits: str(job.treasuryPaidUnits),
      refundedUnits: str(job.refundedUnits),
      expectedChargeUnits: str(job.expectedChargeUnits),
      feesLamports: str(job.feesLamports),
    },
    checks: checks.current.map(checkRecord),
  };
}

export type AuditRecord = NonNullable<Awaited<ReturnType<typeof auditRecord>>>;
