/* The rules of the credit vaults' ledger that do not touch a database, shared by both dialects. */

import { sleepFor } from "../retry.js";

/** What ties a recorded job to the credit vault it may pay from, as the store knows it now. */
export interface JobTie {
  keyFingerprint: string | null;
  /** The credit vault the receipt's sender declared (`jobs.credit_vault`). */
  declaredVault: string | null;
  /** The vault pinned to the job's key (`credit_vaults`), if any. */
  pinnedVault: string | null;
  /**
   * The receipt itself names the debit at hand as its lock (`jobs.escrow_tx`; for a settlement,
   * a debit of the vault), not only the jobs API's answer, which the operator controls.
   */
  receiptNamesLock: boolean;
  /**
   * The receipt names an escrow transaction at all (`jobs.escrow_tx`). A proxied receipt whose
   * upstream sent no `x-decentral-tx-signature` header names none: only the jobs API can.
   */
  receiptNamesEscrow: boolean;
}

/**
 * Whether a job can pay from `vault`, so that a debit of the vault its receipt or jobs-API answer
 * names is its lock. Otherwise anyone who can make a jobs API name a transaction could file
 * another customer's loss as their own job's lock. A job whose receipt names its escrow has that
 * one lock: a jobs API answer naming another (the operator's word against the receipt's, and
 * `jobs_api.matches_receipt`'s finding) makes no lock of it, whatever the job's key, so a debit
 * taken later under the job's escrow memo stays an unreceipted debit. The answer is the word
 * only where the receipt names no escrow. The key's pin decides when there is one (pins
 * never move); else a vault the receipt declared; a vault pinned to any key belongs to that
 * customer, and this key is not it (a key holds one pin, and this one has none). A keyless job
 * that declares the vault is taken at its word, as the verifier's `escrow.source` does; so is a
 * keyless receipt that names the debit as its own lock: with no key it may be any customer's,
 * and a receipt naming another's lock is the verifier's finding (`signatures.unique`). A jobs
 * API answer alone does not make a keyless job's lock of a customer's vault.
 */
export function canPayFrom(tie: JobTie, vault: string, vaultPinned: boolean): boolean {
  if (tie.receiptNamesEscrow && !tie.receiptNamesLock) return false;
  if (tie.pinnedVault !== null) return tie.pinnedVault === vault;
  if (tie.declaredVault !== null) {
    return tie.declaredVault === vault && (tie.keyFingerprint === null || !vaultPinned);
  }
  return !vaultPinned || (tie.keyFingerprint === null && tie.receiptNamesLock);
}

/**
 * The job a debit that jobs name as their lock is filed under: of those that can pay from the
 * vault (`canPayFrom`), the one whose escrow memo it carries, else the first a receipt names
 * before one only a jobs API answer names, the first by id. Taken in the order the rows came,
 * a receipt replaying another job's lock, recorded first (that job's stream ended later), had
 * the lock: the honest job's lock, verified and paid out, was an unreleased lock of the replay,
 * its whole amount "still out" (a deployed run on PostgreSQL, whose rows come in no order).
 */
export function lockOwner<T extends { jobId: string; tie: JobTie }>(
  namers: readonly T[],
  escrowMemoJob: string | null,
  vault: string,
  vaultPinned: boolean,
): T | undefined {
  const able = namers.filter((j) => canPayFrom(j.tie, vault, vaultPinned));
  const byMemo = able.find((j) => j.jobId === escrowMemoJob);
  if (byMemo !== undefined) return byMemo;
  const rank = (j: T) => (j.tie.receiptNamesLock ? 0 : 1);
  return [...able].sort(
    (a, b) => rank(a) - rank(b) || (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0),
  )[0];
}

/**
 * The job a debit is the lock of when no job names it as its escrow: one naming it as its
 * settlement or refund (headers swapped, by a recorder or an operator) whose own escrow memo,
 * and no settle or refund memo of it, the line carries, as the verifier reads the job's
 * transactions in the roles their memos give them. Filed as no lock, the job's lock was an
 * `unreceipted_debit` of its vault though the job's figures counted it escrowed.
 */
export function lockOfClosingNamer<T extends { jobId: string; tie: JobTie }>(
  closingNamers: readonly T[],
  line: Parameters<typeof memoJobsOfLine>[0],
  vault: string,
  vaultPinned: boolean,
): T | undefined {
  const kinds = new Map<string, Set<string>>();
  for (const m of memoJobsOfLine(line)) {
    const k = kinds.get(m.jobId) ?? new Set<string>();
    k.add(m.kind);
    kinds.set(m.jobId, k);
  }
  const locksByMemo = (jobId: string) => {
    const k = kinds.get(jobId);
    return k?.has("escrow") === true && !k.has("settle") && !k.has("refund");
  };
  return lockOwner(
    closingNamers.filter((j) => locksByMemo(j.jobId)),
    escrowMemoJobOf(line),
    vault,
    vaultPinned,
  );
}

/** The job a line's escrow memo names, if any (its first such memo). */
export const escrowMemoJobOf = (line: Parameters<typeof memoJobsOfLine>[0]): string | null =>
  memoJobsOfLine(line).find((m) => m.kind === "escrow")?.jobId ?? null;

/**
 * Whether money into `vault` in a transaction a job names as its settlement or refund, under
 * that job's settle or refund memo, is the job's return while no lock of the job from this
 * vault is read (a lock older than the vault's first line read). Only into a vault the job
 * could have locked from: the job's pinned or declared vault, else one pinned to no key. A
 * keyless job's receipt may name a lock of a customer's vault (`canPayFrom`), but with no such
 * lock read here nothing ties it to this customer. Money the same transaction moves into
 * another customer's vault releases nothing of this job: it is that vault's deposit.
 */
export function mayReturnTo(
  tie: Pick<JobTie, "keyFingerprint" | "declaredVault" | "pinnedVault">,
  vault: string,
  vaultPinned: boolean,
): boolean {
  return canPayFrom(
    { ...tie, receiptNamesLock: false, receiptNamesEscrow: false },
    vault,
    vaultPinned,
  );
}

/** A job's settlement as the release rule reads it. */
export interface JobSettlement {
  tie: JobTie;
  /** The verifier has decided the job (a final verdict): `paidOutUnits` is what it read. */
  decided: boolean;
  /**
   * What the settlement paid out of escrow besides the return, at most what the job's locks
   * put in escrow (`jobs.escrow_paid_units`; `charged_units` for a verdict written before it
   * was kept). Not `charged_units`: that counts money a lock paid straight to someone else as
   * charged at once, and read as settled it released that lock, payout and all.
   */
  paidOutUnits: bigint | null;
  /**
   * The job's recorded settlement landed (finalized and succeeded), or money came back to the
   * vault in a succeeded line carrying its settle memo: the settlement's return of the rest,
   * read before the settlement's signature is recorded (a stream's jobs API answer, or none).
   */
  landed: boolean;
}

/**
 * What a job's settlement paid out of escrow for it (`paidOut`, the verifier's reading), with
 * `overflow`: what the other decided jobs naming the same settlement read it paying out beyond
 * what their own locks left in escrow (each job's charged less its `escrow_paid_units`). One
 * settlement paying two jobs of two keys is read, money and all, by the job owning it (first by
 * id): the other job's payout, taken from its lock in escrow, was in none of its figures, and
 * its vault statement listed its charge as an `unreleased_lock` the chain paid. The job owning
 * it reads nothing beyond its own lock there unless the settlement paid out of escrow's other
 * money, so a settlement that paid nothing for the other job releases none of its lock.
 */
export function sharedPaidOut(paidOut: bigint | null, overflow: bigint | null): bigint | null {
  if (paidOut === null) return null;
  return overflow !== null && overflow > 0n ? paidOut + overflow : paidOut;
}

/**
 * What came back to `vault` for a job (`returned`: the lines its ledger files under it), with
 * what the verifier read of a settlement it shares with other jobs of that vault
 * (`jobs.shared_return_units`): one net credit holds their returns, and the ledger files the
 * line under one of them (the first its memos name). Each job's own part of it is its return:
 * left so, the others' locks read still out by what came home for them, and the first job's
 * released by it (a settlement paying only the second released the first's lock by the
 * second's remainder). Only once the verifier has decided the job, and only for a vault it may
 * pay from (`canPayFrom`).
 */
export function withSharedReturn(
  returned: bigint,
  s: Pick<JobSettlement, "tie" | "decided"> & { sharedReturnUnits: bigint | null },
  vault: string,
  vaultPinned: boolean,
): bigint {
  if (!s.decided || s.sharedReturnUnits === null) return returned;
  if (!canPayFrom(s.tie, vault, vaultPinned)) return returned;
  const total = returned + s.sharedReturnUnits;
  return total > 0n ? total : 0n;
}

/**
 * What a job's settlement accounts for of its locks of `vault` (`lockedUnits` in all). Once the
 * verifier has decided the job, what it read the settlement paying out of escrow, and nothing when it read
 * none: a transaction named as the settlement that only sent a unit back pays out nothing. Only
 * for the vault the job pays from: a settlement pays out of that lock and of no other.
 *
 * Until the verifier decides, a settlement that landed accounts for the locks `provisional`ly
 * (`lockedUnits`: what of them went into escrow, `provisionalLockUnits`): a statement does not
 * call an honest job settled between two verifier rounds an unreleased lock. Never for the stored release flag, which does not come back: a lock released on a
 * settlement the verifier then reads as paying nothing would leave the statement for good.
 */
export function settledUnits(
  s: JobSettlement,
  vault: string,
  vaultPinned: boolean,
  lockedUnits: bigint,
  provisional: boolean,
): bigint {
  if (!canPayFrom(s.tie, vault, vaultPinned)) return 0n;
  if (s.decided) return s.paidOutUnits ?? 0n;
  return provisional && s.landed ? lockedUnits : 0n;
}

/** A token balance change as stored facts (JSON text) hold it. */
interface StoredChange {
  account: string;
  mint: string;
  programId: string | null;
  delta: string;
}

const changesOf = (factsText: string): StoredChange[] =>
  (JSON.parse(factsText) as { tokenChanges: StoredChange[] }).tokenChanges;

/**
 * What of a lock's debit of `vault` (`units`) went into escrow, as a job the verifier has not
 * decided may count settled provisionally once its settlement landed (`settledUnits`): the lock
 * transaction's credits, in the mint and token program of the vault's debit, to accounts the
 * job's settlement paid out of (debited in its stored facts, `settlementFacts`); with no
 * settlement facts stored, the one account the lock credited, and nothing when it credited
 * several. Counted whole, a lock that also paid the operator out of the vault (a payout riding
 * in it) was settled, payout and all, until the verifier decided the job, and a statement of
 * that time named none of it. The whole debit when the lock's facts are not stored (`null`) or
 * cannot be read: that is the rule's reading before facts are kept.
 */
export function provisionalLockUnits(
  units: bigint,
  vault: string,
  lockFacts: string | null,
  settlementFacts: readonly string[],
): bigint {
  if (lockFacts === null) return units;
  let credits: StoredChange[];
  const paidFrom = new Set<string>();
  try {
    const changes = changesOf(lockFacts);
    const own = changes.find((c) => c.account === vault && BigInt(c.delta) < 0n);
    if (!own) return units;
    const sameMoney = (c: StoredChange) => c.mint === own.mint && c.programId === own.programId;
    credits = changes.filter((c) => sameMoney(c) && c.account !== vault && BigInt(c.delta) > 0n);
    for (const text of settlementFacts) {
      for (const c of changesOf(text)) {
        if (sameMoney(c) && c.account !== vault && BigInt(c.delta) < 0n) paidFrom.add(c.account);
      }
    }
  } catch {
    return units;
  }
  const escrow =
    settlementFacts.length > 0
      ? credits.filter((c) => paidFrom.has(c.account))
      : credits.length === 1
        ? credits
        : [];
  const into = escrow.reduce((sum, c) => sum + BigInt(c.delta), 0n);
  return into < units ? into : units;
}

/** An account a lock took credits from, and how much. */
export interface LockSource {
  account: string;
  units: bigint;
}

/**
 * The accounts a lock that debited `vault` took money from, in the mint and token program of
 * the vault's own debit, in the transaction's order (its stored facts, `facts` JSON text);
 * null when the facts do not show the vault debited or cannot be read.
 */
export function lockSourcesOf(factsText: string, vault: string): LockSource[] | null {
  let changes: { account: string; mint: string; programId: string | null; delta: string }[];
  try {
    changes = (JSON.parse(factsText) as { tokenChanges: typeof changes }).tokenChanges;
    const own = changes.find((c) => c.account === vault && BigInt(c.delta) < 0n);
    if (!own) return null;
    return changes
      .filter((c) => c.mint === own.mint && c.programId === own.programId && BigInt(c.delta) < 0n)
      .map((c) => ({ account: c.account, units: -BigInt(c.delta) }));
  } catch {
    return null;
  }
}

/**
 * What a job's settlement (`settled`, see `settledUnits`) accounts for of its lock's debit of
 * `vault`, where that one lock drew on several accounts (`sources`, in the transaction's order)
 * and each may file it as the job's lock (a receipt naming no key and no vault ties the job to
 * none of them): the settlement paid out of one lock, so it accounts for the sources in turn,
 * each up to what it gave, once. Counted whole for each, it called every vault's part settled,
 * and what the lock took that the settlement never paid out (kept in escrow) was in no statement.
 */
export function settledShare(
  settled: bigint,
  vault: string,
  sources: readonly LockSource[],
): bigint {
  let left = settled;
  for (const s of sources) {
    let take = s.units;
    if (left < take) take = left;
    if (s.account === vault) return take;
    left -= take;
  }
  return settled;
}

/** A lock line of a job in any vault, with its transaction's stored facts (JSON text) if any. */
export interface JobLockLine {
  signature: string;
  vault: string;
  slot: number;
  /** What the line took from its vault. */
  units: bigint;
  facts: string | null;
}

/**
 * What a job's settlement (`settled`) accounts for of its locks of `vault`, read against every
 * lock line of the job in every vault (`lines`): the settlement paid out once, so it accounts
 * for what the locks took in turn, transaction by transaction in chain order (slot, then
 * signature) and within one in its order (`lockSourcesOf`; the vaults' lines where its facts
 * are not stored), each part once. Null when the locks took from `vault` alone: the settlement
 * counts whole. Read one lock at a time, a job whose jobs API named a second lock (of one vault)
 * had each vault count the whole settlement for itself again, and what escrow kept was in no
 * statement.
 */
export function settledShareOfLocks(
  settled: bigint,
  vault: string,
  lines: readonly JobLockLine[],
): bigint | null {
  const txs = new Map<string, JobLockLine[]>();
  for (const l of lines) txs.set(l.signature, [...(txs.get(l.signature) ?? []), l]);
  const order = [...txs.entries()].sort(([a, la], [b, lb]) =>
    la[0]!.slot !== lb[0]!.slot ? la[0]!.slot - lb[0]!.slot : a < b ? -1 : a > b ? 1 : 0,
  );
  const sources: LockSource[] = [];
  for (const [, ls] of order) {
    // Its sources in the mint of a vault's debit in it: this vault's, else the line's vault's.
    const facts = ls.find((l) => l.facts !== null)?.facts ?? null;
    const read =
      facts === null ? null : (lockSourcesOf(facts, vault) ?? lockSourcesOf(facts, ls[0]!.vault));
    sources.push(
      ...(read ??
        [...ls]
          .sort((a, b) => (a.vault < b.vault ? -1 : a.vault > b.vault ? 1 : 0))
          .map((l) => ({ account: l.vault, units: l.units }))),
    );
  }
  if (sources.every((s) => s.account === vault)) return null;
  let left = settled;
  let share = 0n;
  for (const s of sources) {
    // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.min does not take
    const take = left < s.units ? left : s.units;
    if (s.account === vault) share += take;
    left -= take;
  }
  return share;
}

/**
 * Whether a job's lock may be filed in more than one vault (`canPayFrom`): only a job tied to
 * no vault, by a pin of its key or a vault its receipt declared.
 */
export function lockTiedToNoVault(tie: Pick<JobTie, "pinnedVault" | "declaredVault">): boolean {
  return tie.pinnedVault === null && tie.declaredVault === null;
}

/** A debit of a vault that names a job, as the release rule reads it. */
export interface JobDebit {
  signature: string;
  ord: number;
  /** What left the vault (positive). */
  units: bigint;
  /** A recorded lock (`lock`) or a debit whose escrow memo names the job (`unexplained`). */
  lock: boolean;
}

/**
 * What is still out of each of a job's debits of one vault, given what accounts for them: what
 * its settlement paid out of escrow (`settledUnits`), then the money the job's returns brought
 * back to the vault. The settlement accounts for the job's locks only, oldest first: a debit
 * only a memo ties to the job is no lock the receipts know, and what a settlement paid out of it
 * (to a worker or the treasury, named perhaps by the jobs API alone) is still the customer's
 * money gone. Returns then cover what is left, locks first, oldest first, then the debits only a
 * memo ties to the job: one base unit sent back with a refund memo covers one base unit, and a
 * lock is released only when nothing of it is still out.
 */
export function outstandingOf(
  debits: readonly JobDebit[],
  returned: bigint,
  settled: bigint,
): Map<string, bigint> {
  const order = [...debits].sort((a, b) => (a.lock === b.lock ? a.ord - b.ord : a.lock ? -1 : 1));
  const out = new Map<string, bigint>();
  let paid = settled > 0n ? settled : 0n;
  let back = returned > 0n ? returned : 0n;
  for (const d of order) {
    let left = d.units;
    if (d.lock) {
      const covered = paid < left ? paid : left;
      paid -= covered;
      left -= covered;
    }
    const covered = back < left ? back : left;
    back -= covered;
    out.set(d.signature, left - covered);
  }
  return out;
}

/**
 * The jobs whose debits a line of a vault may account for, once it is classified as `jobId`'s:
 * that job (any line but a zero one), and the job its settle or refund memo names (money in).
 */
export function jobsALineNames(
  line: {
    delta: bigint;
    memoKind: "escrow" | "settle" | "refund" | null;
    memoJobId: string | null;
  },
  jobId: string | null,
): string[] {
  const named = new Set<string>();
  if (line.delta !== 0n && jobId !== null) named.add(jobId);
  if (
    line.delta > 0n &&
    (line.memoKind === "settle" || line.memoKind === "refund") &&
    line.memoJobId !== null
  ) {
    named.add(line.memoJobId);
  }
  return [...named];
}

/**
 * The job a read line is kept with (one of its `conflict_signatures`) when that job is recorded
 * and does not name the line's transaction: a return into the vault with the job's settle or
 * refund memo, or money out under its escrow memo that is no lock (a second lock of the job).
 * Only named transactions are a job's steps, so an unnamed refund before the named settlement
 * gave the customer back more than the lock, out of other customers' locks in escrow, and the
 * job passed; kept with it, the job is judged on both (`refund.not_settled`, `escrow.single`).
 */
export function jobKeepingLine(c: { kind: string; jobId: string | null }): string | null {
  return c.kind === "return" || c.kind === "unexplained" ? c.jobId : null;
}

/** A step and job a memo names (`<prefix><job_id>`). */
export interface MemoJob {
  kind: "escrow" | "settle" | "refund";
  jobId: string;
}

/**
 * The distinct steps and jobs a line's memos name, in memo order: every one when they name
 * several (`memoJobs`), else the first memo's (none when no memo names a job).
 */
export function memoJobsOfLine(line: {
  memoKind: MemoJob["kind"] | null;
  memoJobId: string | null;
  memoJobs?: readonly MemoJob[] | null;
}): readonly MemoJob[] {
  if (line.memoJobs && line.memoJobs.length > 0) return line.memoJobs;
  return line.memoKind !== null && line.memoJobId !== null
    ? [{ kind: line.memoKind, jobId: line.memoJobId }]
    : [];
}

/**
 * The job a debit of the vault that is no lock is filed under: the job its escrow memo names, else
 * the first job any of its memos names. No step of a job takes money out of a credit vault but its
 * lock: a debit under a job's settle or refund memo is kept with that job, as one under its
 * escrow memo is, so the job is judged on it (`settlement.single`, `refund.single`). Filed under
 * no job, the job the memo names stayed `verified` while the customer's credits left under it.
 */
export function jobOfUnexplainedDebit(named: readonly MemoJob[]): string | null {
  return (named.find((m) => m.kind === "escrow") ?? named[0])?.jobId ?? null;
}

/**
 * The distinct steps and jobs of `named` (in order) when there are several, else null: one step
 * of one job, named once or more, is `memo_kind` and `memo_job_id` alone.
 */
export function severalMemoJobs(named: readonly MemoJob[]): MemoJob[] | null {
  const seen = new Set<string>();
  const distinct: MemoJob[] = [];
  for (const m of named) {
    const key = `${m.kind}:${m.jobId}`;
    if (seen.has(key)) continue;
    seen.add(key);
    distinct.push({ kind: m.kind, jobId: m.jobId });
  }
  return distinct.length < 2 ? null : distinct;
}

/** What a ledger line was filed as. */
export type LineKind = "lock" | "return" | "deposit" | "unexplained" | "none";

/** A line whose memos name several jobs, or several steps of one: nobody can say whose it is. */
export interface MixedMemoLine {
  signature: string;
  slot: number;
  blockTime: number | null;
  /** Change of the vault's balance: negative out, positive in. */
  amountUnits: bigint;
  memo: string | null;
  /** Every step and job the memos name, first memo first. */
  named: MemoJob[];
  /** What the line was filed as, and under which recorded job (null when none). */
  kind: LineKind | null;
  jobId: string | null;
}

/** A stored line of several memo jobs as the statement shows it, on either dialect. */
export function mixedMemoLineOf(l: {
  signature: string;
  slot: number;
  blockTime: number | null;
  deltaUnits: bigint;
  memo: string | null;
  memoJobs?: MemoJob[] | null;
  kind: MixedMemoLine["kind"];
  jobId: string | null;
}): MixedMemoLine {
  return {
    signature: l.signature,
    slot: l.slot,
    blockTime: l.blockTime,
    amountUnits: l.deltaUnits,
    memo: l.memo,
    named: l.memoJobs ?? [],
    kind: l.kind,
    jobId: l.jobId,
  };
}

/** The JSON text of `ledger_lines.memo_jobs` and back. */
export function memoJobsToText(named: readonly MemoJob[] | null | undefined): string | null {
  return named && named.length > 1 ? JSON.stringify(named) : null;
}
export function memoJobsOf(text: string | null): MemoJob[] | null {
  return text === null ? null : (JSON.parse(text) as MemoJob[]);
}

/**
 * Whether a listing good through `finalThrough` (the cursor's `final_through`, ms) holds every
 * transaction of block time up to `at`'s second. Block times are whole seconds and do not go
 * back as slots go forward, so a transaction of a second before the finalized slot's is in a
 * slot at or before it, and listed; one of the same second may be in a later slot, not yet.
 */
export function finalCovers(finalThrough: number | null, at: number): boolean {
  return finalThrough !== null && finalThrough > at;
}

/**
 * How many seconds a job's own settlement may be dated after its response's second and still
 * come before the response: block times are whole seconds the chain's validators vote, 1-2 s
 * off the recorder's clock either way.
 */
export const SETTLEMENT_CLOCK_SLACK_SECONDS = 2;

/**
 * Where a credits header's span ends among the vault's lines (its start is the lock's line).
 * "The response's second" below is the second of the row's write (`recorded_at`) where the
 * span may run (`until`), and that of the response's arrival (`responded_at`) where lines are
 * surely before it (`orderedUntil`; see `headerSpanEnd`). The span runs, by slot order, through
 * the job's own settlement (the one its receipt names, the response having come after it) when
 * the chain dated that within `SETTLEMENT_CLOCK_SLACK_SECONDS` after the response's second. A
 * settlement dated later came after the response (its balance was not the one the header could
 * say), and one the receipt names that the vault holds no line of yet may still be listed.
 *
 * Lines surely before the response: those dated up to the response's second by the clock that
 * saw it arrive, and the job's own settlement after them. Slot order before the settlement proves a
 * line came before the response only when the settlement is dated up to that second too
 * (`orderedThroughOrd`): the receipt's word that the settlement came first is the operator's,
 * who may sign it, answer, and land it later, after a concurrent lock it then names the
 * balance after. The chain holds the same bytes when its clock ran ahead and the lock landed
 * before an honest response, so such a header is no mismatch, but not proven either.
 *
 * The span then runs on through the lines the chain dated within the same slack after the
 * response's second (`until`): a concurrent job's lock or a top-up that landed before the
 * response, dated late by a chain clock ahead of the recorder's, or after the settlement and
 * before the response, which nothing on chain orders. A header naming a balance after such a
 * line is no mismatch, but not proven either (`orderedUntil`). The span never runs past that
 * second, whatever the settlement's timing: an operator holding its settlement back moves no
 * line into the span, nor one into its ordered part. A line the
 * receipt names that is not the job's own settlement (`ownSettlementLine`: a top-up, another
 * job's line, a second "settlement") places nothing, and the receipt that names it gets no
 * unordered part: its header is judged by the recorder's second alone. The span is read in
 * full (`coverAt`) only once the listing holds its last second.
 */
export interface HeaderSpanEnd {
  /**
   * The span's last second: that of the row's write (at or after the response's), plus any
   * unordered part.
   */
  until: number;
  /**
   * The response's second: lines dated up to it (or through `throughOrd`) surely came first;
   * `NO_RESPONSE_SECOND` when the job's row does not say when its response came.
   */
  orderedUntil: number;
  /** The ord of the job's settlement line the span runs through (-1: none). */
  throughOrd: number;
  /**
   * `throughOrd` when the settlement is dated up to `orderedUntil`, else -1: the lines up to it
   * by slot order surely came before the response (the settlement's own line does whenever
   * every line before it did).
   */
  orderedThroughOrd: number;
  /**
   * The slot of a settlement the receipt names that sent nothing back to the vault (no line of
   * it), when the chain dated it at most the slack after the response's second, else -1: a line
   * of a slot below it is dated no later (block times do not go back as slots go forward), so it
   * is in the span, dated or not.
   */
  throughSlot: number;
  /** `throughSlot` when that settlement is dated up to `orderedUntil`, else -1. */
  orderedThroughSlot: number;
  /** The instant (ms) a listing must be final past for the span to be read in full. */
  coverAt: number;
  /**
   * The receipt names a settlement the vault holds no line of yet (a finalized one naming no
   * account of the vault's never is one): a line past `until` may precede it.
   */
  settlementUnlisted: boolean;
  /**
   * The receipt names a line of the vault not read yet: whether it is the job's settlement is
   * not known, so the span is not read in full until it is.
   */
  settlementUnread: boolean;
}

/** The line of the vault a receipt names as its job's settlement, as a header's span weighs it. */
export interface NamedSettlementLine {
  ord: number;
  blockTime: number | null;
  state: "listed" | "read";
  succeeded: boolean | null;
  memoKind: MemoJob["kind"] | null;
  memoJobId: string | null;
  memoJobs: readonly MemoJob[] | null;
  /**
   * A succeeded line of the vault below it already carries the job's settle or refund memo (a
   * try that failed on chain moved nothing, and its retry is the settlement).
   */
  settledBefore: boolean;
  /** Money into the vault escrow did not pay in (`LineRead.depositIn`), null when none. */
  depositInUnits: bigint | null;
}

/**
 * Whether a read line is `jobId`'s own settlement as the settlement checks take one: it
 * succeeded, its memos name that job's settlement (or its refund, which a timed-out job's
 * receipt names in its place) and no other job or step, it is the first succeeded line of the
 * vault that does (a second "settlement" into the vault pays nothing out), and it brought in
 * no money escrow did not pay (a top-up under the job's settle memo, a unit from escrow beside
 * it or not): a settlement returns what escrow held, and nothing else.
 */
export function ownSettlementLine(line: NamedSettlementLine, jobId: string): boolean {
  if (line.state !== "read" || line.succeeded !== true || line.settledBefore) return false;
  if ((line.depositInUnits ?? 0n) > 0n) return false;
  const named = memoJobsOfLine(line);
  return named.length === 1 && named[0]!.kind !== "escrow" && named[0]!.jobId === jobId;
}

/**
 * `headerSpanEnd`'s `settlement`: whether the receipt names one, the vault's line of it (null:
 * none yet), and whether it is a finalized transaction naming no account of the vault's
 * (`outside`), which the vault's history never lists: no line of it is still to come.
 */
export interface NamedSettlement {
  named: boolean;
  line: NamedSettlementLine | null;
  outside?: boolean;
  /** Where the chain put that transaction, when `outside`. */
  outsideAt?: { slot: number; blockTime: number | null } | null;
}

/**
 * When a job's response came, as its row tells it: `respondedAt` (ms, `jobs.responded_at`), by
 * the proxy's clock or the caller's, null when not known; `recordedAt` (ms), when the row was
 * written, at or after the response.
 */
export interface ResponseTimes {
  recordedAt: number;
  respondedAt: number | null;
}

/** `orderedUntil` of a job whose response's time is not known: no block time is at or before it. */
export const NO_RESPONSE_SECOND = -1;

/**
 * `headerSpanEnd` of a job whose response came at `times`. The span's lines surely before the
 * response are bounded by the response's second (`respondedAt`, never past `recordedAt`): a
 * line dated after it may have come after, however late the row was written (a held body, a
 * retried commit, an ingest or import of old responses). With no time of the response, no
 * line is surely before it but the lock's own and the job's settlement just after it. The
 * span as a whole (the balances a header may name without a discrepancy) still runs through
 * the row's write, which came after the response whatever the clocks said: a line dated up to
 * that second may have come before the response.
 */
export function headerSpanEnd(
  times: ResponseTimes,
  jobId: string,
  settlement: NamedSettlement,
): HeaderSpanEnd {
  const { recordedAt } = times;
  const recordedSecond = Math.floor(recordedAt / 1000);
  const orderedUntil =
    times.respondedAt === null
      ? NO_RESPONSE_SECOND
      : Math.floor(Math.min(times.respondedAt, recordedAt) / 1000);
  const { line } = settlement;
  const own = line !== null && ownSettlementLine(line, jobId);
  const placed =
    own &&
    line.blockTime !== null &&
    line.blockTime <= recordedSecond + SETTLEMENT_CLOCK_SLACK_SECONDS;
  // A read line named that is not the job's settlement: the receipt's word on it is false. One
  // not read yet may be either: the unordered part waits for it, as the whole span does.
  const slack = line === null || own ? SETTLEMENT_CLOCK_SLACK_SECONDS : 0;
  const provenFirst = placed && line.blockTime !== null && line.blockTime <= orderedUntil;
  const at = settlement.outside === true ? (settlement.outsideAt ?? null) : null;
  const slotBy = (until: number) =>
    at !== null && at.blockTime !== null && at.blockTime <= until ? at.slot : -1;
  return {
    until: recordedSecond + slack,
    orderedUntil,
    throughOrd: placed ? line.ord : -1,
    orderedThroughOrd: provenFirst ? line.ord : -1,
    throughSlot: slotBy(recordedSecond + SETTLEMENT_CLOCK_SLACK_SECONDS),
    orderedThroughSlot: slotBy(orderedUntil),
    coverAt: recordedAt + slack * 1000,
    settlementUnlisted: settlement.named && line === null && settlement.outside !== true,
    settlementUnread: line !== null && line.state !== "read",
  };
}

/**
 * Whether a span whose lines are all read is read in full: it `ended` at a line past it, or the
 * history is listed through its end (the chain had finalized past it when it was listed). Never
 * while the line its receipt names as the settlement is not read.
 */
export function headerSpanCovered(
  end: HeaderSpanEnd,
  ended: boolean,
  finalThrough: number | null,
): boolean {
  if (end.settlementUnread) return false;
  return (ended && !end.settlementUnlisted) || finalCovers(finalThrough, end.coverAt);
}

/**
 * Whether a line after the lock's is in the span that ends at `end`. A line the node served
 * with no block time ends no span: it may have landed before the response or after it (it is
 * dated no later than the next dated line, which may be in the span too), so it is in the span
 * and never surely before the response (`orderedInHeaderSpan`). Ending the span there failed
 * an honest header that counted it, or the job's own settlement left undated.
 */
export function inHeaderSpan(
  end: HeaderSpanEnd,
  line: { ord: number; slot: number; blockTime: number | null },
): boolean {
  return (
    line.ord <= end.throughOrd ||
    line.slot < end.throughSlot ||
    line.blockTime === null ||
    line.blockTime <= end.until
  );
}

/**
 * Whether a line of the span surely came before the response once every line before it did
 * (see `HeaderSpanEnd`): the job's own settlement is, whenever it is dated.
 */
export function orderedInHeaderSpan(
  end: HeaderSpanEnd,
  line: { ord: number; slot: number; blockTime: number | null },
): boolean {
  return (
    line.ord <= end.orderedThroughOrd ||
    line.ord === end.throughOrd ||
    line.slot < end.orderedThroughSlot ||
    (line.blockTime !== null && line.blockTime <= end.orderedUntil)
  );
}

/**
 * Whether a header matching a balance of a span (`ordered`: one surely before the response)
 * stays matched whatever is read later, so a review may mark it for good: one surely before
 * the response does; one after it does unless the receipt names a settlement the vault holds
 * no line of yet, which, listed later and not the job's own, would end the span at the
 * response's second.
 */
export function headerMatchLasts(end: HeaderSpanEnd, ordered: boolean): boolean {
  return ordered || !end.settlementUnlisted;
}

/** A line of a vault as a header's span reads it. */
export interface SpanLine {
  ord: number;
  slot: number;
  blockTime: number | null;
  state: string | null;
  postUnits: bigint | null;
}

/**
 * A header's span as a reader collects it, a line at a time in ord order from the lock's
 * (`take`): the balances after them, how many first ones surely came before the response
 * (`ordered`: that part ends at the first line that did not), and whether a line was unread.
 */
export class HeaderSpanReading {
  readonly balances: bigint[] = [];
  ordered = 0;
  unread = false;
  private first = true;
  private orderedOpen = true;
  constructor(readonly end: HeaderSpanEnd) {}

  /** Takes the next line; false, taking nothing, when it is past the span. */
  take(line: SpanLine): boolean {
    if (!this.first) {
      if (!inHeaderSpan(this.end, line)) return false;
      // A line read to move none of the vault's money (a try that failed on chain) changes no
      // balance, wherever it stands against the response.
      const movedNothing = line.state === "read" && line.postUnits === null;
      if (!orderedInHeaderSpan(this.end, line) && !movedNothing) this.orderedOpen = false;
    }
    this.first = false;
    if (line.state === "listed") this.unread = true;
    if (line.postUnits !== null) {
      this.balances.push(line.postUnits);
      if (this.orderedOpen) this.ordered = this.balances.length;
    }
    return true;
  }
}

/** The later of two `final_through` instants (null when neither is known). */
export function laterOf(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

/** A movement of a vault's address in a mint (or token program) that is not the credits'. */
export interface ForeignChange {
  mint: string;
  programId: string | null;
  deltaUnits: bigint;
}

/** What a vault's address held at the balance read instead of a credit token account. */
export interface ForeignHolding {
  programId: string;
  mint: string | null;
  amountUnits: bigint | null;
}

/** JSON texts of the foreign columns (amounts as decimal strings) and back. */
export function foreignChangesToText(changes: readonly ForeignChange[] | null | undefined) {
  if (!changes || changes.length === 0) return null;
  return JSON.stringify(changes.map((c) => ({ ...c, deltaUnits: c.deltaUnits.toString() })));
}
export function foreignChangesOf(text: string): ForeignChange[] {
  return (JSON.parse(text) as { mint: string; programId: string | null; deltaUnits: string }[]).map(
    (c) => ({ mint: c.mint, programId: c.programId, deltaUnits: BigInt(c.deltaUnits) }),
  );
}
export function foreignHoldingToText(h: ForeignHolding | null | undefined) {
  if (!h) return null;
  return JSON.stringify({ ...h, amountUnits: h.amountUnits?.toString() ?? null });
}
export function foreignHoldingOf(text: string | null): ForeignHolding | null {
  if (text === null) return null;
  const h = JSON.parse(text) as {
    programId: string;
    mint: string | null;
    amountUnits: string | null;
  };
  return { ...h, amountUnits: h.amountUnits === null ? null : BigInt(h.amountUnits) };
}

/**
 * Who else than the escrow authority may spend a vault, as a balance read (at `slot`) found it:
 * `otherOwner` when the credit account's owner is not the authority (`owner` null: the answer
 * named none, so the authority's is not proven), `delegate` with what it may still spend.
 */
export interface BalanceControl {
  slot: number;
  otherOwner: { owner: string | null } | null;
  delegate: { address: string; amountUnits: bigint } | null;
  /**
   * When the read was made (epoch ms; the store's write time), null for reads kept before it
   * was: a statement of a period long past says what a later read found, and when.
   */
  readAt?: number | null;
}

/** JSON text of the control column (null when the read found nobody else), and back. */
export function balanceControlToText(
  c: BalanceControl | null | undefined,
  readAt: number | null = c?.readAt ?? null,
): string | null {
  if (!c || (c.otherOwner === null && c.delegate === null)) return null;
  return JSON.stringify({
    ...c,
    readAt,
    delegate:
      c.delegate === null
        ? null
        : { address: c.delegate.address, amountUnits: c.delegate.amountUnits.toString() },
  });
}
export function balanceControlOf(text: string | null): BalanceControl | null {
  if (text === null) return null;
  const c = JSON.parse(text) as {
    slot: number;
    otherOwner: { owner: string | null } | null;
    delegate: { address: string; amountUnits: string } | null;
    readAt?: number | null;
  };
  return {
    slot: c.slot,
    readAt: typeof c.readAt === "number" ? c.readAt : null,
    otherOwner: c.otherOwner,
    delegate:
      c.delegate === null
        ? null
        : { address: c.delegate.address, amountUnits: BigInt(c.delegate.amountUnits) },
  };
}

/** A line placed between a gap's two lines by `healedOrder`: held already, or new. */
export interface HealedLine<E> {
  signature: string;
  ord: number;
  /** The listing's entry of a line the vault does not hold yet: inserted at `ord`. */
  entry?: E;
}

/**
 * Where the lines between a gap's two lines go once the chain lists the transactions the first
 * listing left out: `between` are the lines held between them (ord order), `listing` what a
 * listing `before` the later line `until` the earlier one returned (newest first). Each entry
 * the vault does not hold goes just above the nearest older entry it holds (or the earlier
 * line), in chain order. Ords within one sync are consecutive, so when the lines do not fit
 * between `afterOrd` and `beforeOrd`, the lines from `beforeOrd` up must first move up by
 * `shiftBy` (`healMakingRoom`).
 * Null when the listing holds nothing new. Entries already held elsewhere, or named twice, are
 * no new lines.
 */
export function healedOrder<E extends { signature: string }>(
  afterOrd: number,
  beforeOrd: number,
  between: readonly { signature: string; ord: number }[],
  listing: readonly E[],
  held: ReadonlySet<string>,
): { shiftBy: number; lines: HealedLine<E>[] } | null {
  const inRange = new Set(between.map((b) => b.signature));
  /** New entries by the held line (or null: the earlier line) they follow, oldest first. */
  const after = new Map<string | null, E[]>();
  let anchor: string | null = null;
  const placed = new Set<string>();
  for (const entry of [...listing].reverse()) {
    if (inRange.has(entry.signature)) {
      anchor = entry.signature;
      continue;
    }
    if (held.has(entry.signature) || placed.has(entry.signature)) continue;
    placed.add(entry.signature);
    const list = after.get(anchor) ?? [];
    list.push(entry);
    after.set(anchor, list);
  }
  if (placed.size === 0) return null;
  const order: { signature: string; entry?: E }[] = [];
  for (const entry of after.get(null) ?? []) order.push({ signature: entry.signature, entry });
  for (const b of between) {
    order.push({ signature: b.signature });
    for (const entry of after.get(b.signature) ?? []) {
      order.push({ signature: entry.signature, entry });
    }
  }
  const room = beforeOrd - afterOrd - 1;
  return {
    shiftBy: Math.max(0, order.length - room),
    lines: order.map((l, i) => ({ ...l, ord: afterOrd + 1 + i })),
  };
}

/** A held line of one slot, as `slotChainOrder` weighs it. */
export interface SlotLine {
  signature: string;
  ord: number;
  read: boolean;
  preUnits: bigint | null;
  postUnits: bigint | null;
  deltaUnits: bigint | null;
}

/**
 * New ords for the held lines of one slot (`lines`, in ord order and together) in `order`
 * (the chain's order as a listing gives it, oldest first), when that is another order than
 * theirs and their credit balances chain in it, else null. A node may list one slot's entries
 * in any order without breaking slot order, and lines stay where they were first listed: the
 * balances broke between them and listing the gap again never closed it. `before` is the
 * balance after the movement below the slot (null: none), `after` the balance before the
 * movement above it; both must be met. Every line must be read and move credits, and `order`
 * must name each line once and nothing else. The ords are the lines' own, handed out again,
 * so nothing outside the slot moves, and sums do not change. The balances alone do not choose
 * the order: a payout and its return within the slot, both left out of a listing, leave the
 * lines chaining in an order that is not the chain's, and an order chosen by the balances
 * would close that gap before an honest listing showed the two.
 */
export function slotChainOrder(
  before: bigint | null,
  after: bigint,
  lines: readonly SlotLine[],
  order: readonly string[],
): { signature: string; ord: number }[] | null {
  if (lines.length < 2 || order.length !== lines.length) return null;
  const bySignature = new Map(lines.map((l) => [l.signature, l]));
  const ordered = order.map((signature) => bySignature.get(signature));
  if (new Set(order).size !== order.length || ordered.some((l) => l === undefined)) return null;
  const chain = ordered as SlotLine[];
  if (chain.every((l, i) => l === lines[i])) return null;
  let balance = before;
  for (const l of chain) {
    if (!l.read || l.deltaUnits === null || l.deltaUnits === 0n || l.preUnits === null) {
      return null;
    }
    if (l.postUnits === null || (balance !== null && l.preUnits !== balance)) return null;
    balance = l.postUnits;
  }
  if (balance !== after) return null;
  const ords = lines.map((l) => l.ord).sort((a, b) => a - b);
  return chain.map((l, i) => ({ signature: l.signature, ord: ords[i]! }));
}

/**
 * Lines a heal moves up in one SQLite write transaction while it makes room: a few ms of the
 * lock (PostgreSQL moves fewer, `PG_ROOM_LINES_PER_MOVE`).
 */
export const ROOM_LINES_PER_MOVE = 1000;
/**
 * Pause between those transactions: a receipt waiting for the SQLite write lock tries again
 * every 1 to 8 ms, and a process taking it back at once would keep it from ever getting it.
 */
export const ROOM_PAUSE_MS = 10;
/** Heals planned again when another process moved the lines meanwhile; then the next round. */
const ROOM_ATTEMPTS = 3;

/** A heal's one write transaction: the lines it inserted, or the ords it lacks between them. */
export type HealAttempt = { inserted: number } | { lacking: number };

/** A store's steps of a gap heal that makes room between the gap's two lines first. */
export interface RoomSteps {
  /** The heal in one write transaction when its lines fit between the two (`healedOrder`). */
  heal(): Promise<HealAttempt>;
  /**
   * The ord of the lowest line, from the gap's later line up, with no line in the `room` ords
   * above it (the newest line has none): the lines up to it move up into those. Null when the
   * later line is gone.
   */
  roomTop(room: number): Promise<number | null>;
  /**
   * In one write transaction, when no line is in the `room` ords above `top`: moves up by
   * `room` the highest lines (the store's batch, `ROOM_LINES_PER_MOVE` on SQLite) from the
   * gap's later line to `top`. Returns the next `top` (the ord below those moved), or null when
   * the later line moved too or the room above `top` was taken meanwhile (nothing moved then).
   */
  moveUp(top: number, room: number): Promise<number | null>;
}

/**
 * Heals a gap whose new lines do not fit between its two lines without one transaction that
 * renumbers every line above (200,000 lines held SQLite's write lock 2.9 s, receipts waiting):
 * the lines from the later one up to the first room above them move up a batch per transaction
 * (`ROOM_LINES_PER_MOVE` lines on SQLite), highest first, each into ords it checked are free,
 * so the order of lines holds after each one (a process killed between them leaves only unused
 * ords), and the heal itself then fits. Returns the lines inserted (0: healed another time).
 */
export async function healMakingRoom(steps: RoomSteps, signal?: AbortSignal): Promise<number> {
  for (let attempt = 0; attempt < ROOM_ATTEMPTS; attempt++) {
    const tried = await steps.heal();
    if ("inserted" in tried) return tried.inserted;
    let top = await steps.roomTop(tried.lacking);
    while (top !== null) {
      if (signal?.aborted) return 0;
      top = await steps.moveUp(top, tried.lacking);
      await sleepFor(ROOM_PAUSE_MS);
    }
  }
  return 0;
}

/** A line as a review's walk compares it with the movement before it. */
export interface WalkedLine {
  signature: string;
  ord: number;
  slot: number;
  preUnits: bigint | null;
  postUnits: bigint | null;
  deltaUnits: bigint;
}

/** Two consecutive movements whose balances do not chain. */
export interface ChainGap {
  afterSignature: string;
  beforeSignature: string;
  fromSlot: number;
  toSlot: number;
  missingUnits: bigint;
}

/** The gap between movement `prev` and the next one, `line`, when their balances do not chain. */
export const gapBetween = (prev: WalkedLine | null, line: WalkedLine): ChainGap | null =>
  prev?.postUnits != null && line.preUnits !== null && prev.postUnits !== line.preUnits
    ? {
        afterSignature: prev.signature,
        beforeSignature: line.signature,
        fromSlot: prev.slot,
        toSlot: line.slot,
        missingUnits: line.preUnits - prev.postUnits,
      }
    : null;

/**
 * Time a review's walk compares lines in one write transaction, and half of it the pause before
 * the next: a gap healed far back, or an import, leaves every line above to compare again
 * (200,000 held SQLite's write lock 7.8 s, PostgreSQL's vault lock 4.5 s, in one walk).
 */
export const WALK_SLICE_MS = 20;

/** Where a slice of the walk ended: the ord compared through, whether lines are left, its gaps. */
export interface WalkSlice {
  walked: number;
  more: boolean;
  gaps: ChainGap[];
}

/**
 * A page of a review's walk: its lines, and where the walk starts again when a line out of slot
 * order moved below where it asked (`from`, with `prev` the last movement at or before it).
 */
export interface WalkPage<R> {
  rows: readonly R[];
  restart?: { from: number; prev: WalkedLine | null };
}

/**
 * Compares each movement after `afterOrd` with the one before it (`prev`, the last movement at
 * or before `afterOrd`), up to the first unread line or until `WALK_SLICE_MS` is spent between
 * pages. It yields the ord after which it wants the next `page` lines and is given them
 * (`walkSync`, `walkAsync`), so each dialect reads them its own way, placing lines by slot first.
 */
export function* walkLines<R extends { state?: string | null }>(
  afterOrd: number,
  prev: WalkedLine | null,
  toLine: (row: R) => WalkedLine,
  page: number,
): Generator<number, WalkSlice, WalkPage<R>> {
  const started = performance.now();
  // Each gap with the ord of the line above it.
  let found: { gap: ChainGap; ord: number }[] = [];
  let ord = afterOrd;
  let walked = afterOrd;
  const slice = (more: boolean) => ({ walked, more, gaps: found.map((f) => f.gap) });
  for (;;) {
    const { rows, restart } = yield ord;
    // A line moved below the walk clears the gaps above its place: compared again from there.
    if (restart) {
      ord = restart.from;
      walked = restart.from;
      prev = restart.prev;
      found = found.filter((f) => f.ord <= restart.from);
    }
    for (const r of rows) {
      const line = toLine(r);
      ord = line.ord;
      // An unread line may move money: the walk waits for it (statements compare above it).
      if (r.state === "listed") return slice(false);
      walked = ord;
      if (line.deltaUnits === 0n) continue;
      const gap = gapBetween(prev, line);
      if (gap) found.push({ gap, ord });
      prev = line;
    }
    if (rows.length < page) return slice(false);
    if (performance.now() - started >= WALK_SLICE_MS) return slice(true);
  }
}

type Walk<R> = Generator<number, WalkSlice, WalkPage<R>>;

/** Runs `walk`, reading each page it asks for with `read` (a SQLite statement). */
export function walkSync<R>(walk: Walk<R>, read: (afterOrd: number) => WalkPage<R>): WalkSlice {
  for (let step = walk.next(); ; step = walk.next(read(step.value))) {
    if (step.done) return step.value;
  }
}

/** Runs `walk`, reading each page it asks for with `read` (a PostgreSQL query). */
export async function walkAsync<R>(
  walk: Walk<R>,
  read: (afterOrd: number) => Promise<WalkPage<R>>,
): Promise<WalkSlice> {
  for (let step = walk.next(); ; step = walk.next(await read(step.value))) {
    if (step.done) return step.value;
  }
}

/**
 * Goes on with a review's walk a slice per write transaction (`walkOn`, each taking the vault's
 * lock again) while lines are left, with a pause between for the writers that wait.
 */
export async function walkInSlices(
  walking: boolean,
  walkOn: () => boolean | Promise<boolean>,
): Promise<void> {
  for (let more = walking; more; ) {
    await sleepFor(WALK_SLICE_MS / 2);
    more = await walkOn();
  }
}

/** A transaction and a job it is to be kept with (a ledger line's, an escrow memo's). */
export interface KeepPair {
  signature: string;
  job: string;
}

/** What a job's row names of its steps, for `escrowStepsOf`. */
export interface NamedSteps {
  jobId: string;
  escrowTx: string | null;
  settlementTx: string | null;
  apiEscrowTx: string | null;
  apiSettlementTx: string | null;
  kept: unknown;
}

/** The `NamedSteps` columns of a drizzle table of jobs (either dialect's), for a `select`. */
export function namedStepsSelection<
  T extends Record<
    | "jobId"
    | "escrowTx"
    | "settlementTx"
    | "apiEscrowTx"
    | "apiSettlementTx"
    | "conflictSignatures",
    unknown
  >,
>(
  t: T,
): {
  jobId: T["jobId"];
  escrowTx: T["escrowTx"];
  settlementTx: T["settlementTx"];
  apiEscrowTx: T["apiEscrowTx"];
  apiSettlementTx: T["apiSettlementTx"];
  kept: T["conflictSignatures"];
} {
  return {
    jobId: t.jobId,
    escrowTx: t.escrowTx,
    settlementTx: t.settlementTx,
    apiEscrowTx: t.apiEscrowTx,
    apiSettlementTx: t.apiSettlementTx,
    kept: t.conflictSignatures,
  };
}

/** What the escrow scan does with each (transaction, job) pair its listing named (`escrowStepsOf`). */
export interface EscrowSteps {
  /**
   * The job names a closing step (settlement or refund) or keeps a transaction already, and not
   * this one: judged now.
   */
  open: KeepPair[];
  /**
   * The job names no closing step yet (a stream whose jobs API answer has not come): this may be
   * its one settlement, not a second. Held until the job names one, or for a while.
   */
  unclosed: KeepPair[];
  /** The job is not recorded. */
  absent: KeepPair[];
}

/**
 * How long an entry naming a recorded job that names no closing step yet (a stream whose jobs
 * API answer has not come) is held before it is judged: it may be the job's one settlement,
 * which the answer names in seconds. Kept before then it showed as a conflicting receipt of an
 * honest job, and sent the job back to the verifier for nothing. Judged after it, it is kept as
 * the closing found on chain under the job's memo (a second one fails `settlement.single`).
 */
export const ESCROW_UNCLOSED_WAIT_MS = 10 * 60_000;

/** An entry a recorded job's own step holds for another job (`escrow_pending.named_by`). */
export interface HeldBeside {
  job: string;
  signature: string;
  vault: string;
  /** The step's block time (seconds), null when unknown. */
  blockTime: number | null;
  /** When it was held (ms). */
  listedAt: number;
}

/**
 * What a claim of `job` does with an entry its step's namer held for it (`HeldBeside`), as the
 * escrow scan judges a pending entry once its job is recorded: `keep` it with the job (a further
 * payout under its memo), `release` it when the job names it (kept with neither: a settlement
 * two jobs share fails their `settlement.memo`), or `wait` while the job names no closing step
 * and the step is younger than `ESCROW_UNCLOSED_WAIT_MS` (it may be the job's one settlement).
 */
export function besideAtClaim(
  job: {
    escrowTx: string | null;
    settlementTx: string | null;
    apiEscrowTx: string | null;
    apiSettlementTx: string | null;
    conflictSignatures: unknown;
  },
  held: Pick<HeldBeside, "signature" | "blockTime" | "listedAt">,
  now: number,
): "keep" | "release" | "wait" {
  const kept = Array.isArray(job.conflictSignatures) ? (job.conflictSignatures as unknown[]) : [];
  const named = [job.escrowTx, job.settlementTx, job.apiEscrowTx, job.apiSettlementTx];
  if (named.includes(held.signature) || kept.includes(held.signature)) return "release";
  if (job.settlementTx !== null || job.apiSettlementTx !== null || kept.length > 0) return "keep";
  const waitFrom = now - ESCROW_UNCLOSED_WAIT_MS;
  const at = held.blockTime === null ? held.listedAt : held.blockTime * 1000;
  return at < waitFrom ? "keep" : "wait";
}

/**
 * The pairs whose job is among `rows` (recorded) and neither names the signature as a step nor
 * keeps it already (what keeping would change), split by whether the job names its closing
 * step yet; `absent`, the pairs of jobs not among `rows`. Each pair once.
 */
export function escrowStepsOf(
  pairs: readonly KeepPair[],
  rows: readonly NamedSteps[],
): EscrowSteps {
  const byId = new Map(rows.map((r) => [r.jobId, r]));
  const seen = new Set<string>();
  const steps: EscrowSteps = { open: [], unclosed: [], absent: [] };
  for (const pair of pairs) {
    const { signature, job } = pair;
    const key = `${job} ${signature}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const row = byId.get(job);
    if (row === undefined) {
      steps.absent.push(pair);
      continue;
    }
    const named = [row.escrowTx, row.settlementTx, row.apiEscrowTx, row.apiSettlementTx];
    if (named.includes(signature) || (Array.isArray(row.kept) && row.kept.includes(signature))) {
      continue;
    }
    // A signature kept with the job (a ledger line under its memo, a conflicting receipt's) is
    // a step of it found already: this one is a further step.
    const closed =
      row.settlementTx !== null ||
      row.apiSettlementTx !== null ||
      (Array.isArray(row.kept) && row.kept.length > 0);
    (closed ? steps.open : steps.unclosed).push(pair);
  }
  return steps;
}
