import type { TransactionFacts } from "../../chain/transaction-facts.js";
import { isCredit, readLock } from "../money-movements.js";
import type { Profile } from "../profiles.js";
import { parseJobMemos } from "./memos.js";

/**
 * One settlement or refund paying several jobs at once (one transaction carrying the settle or
 * refund memo of each): the job owning it (`signatureOwner`) reads its money whole, so every
 * movement is counted once, but each job's report group (key, worker, model, day) must say
 * what moved for its own job. `closingShares` says what of the transaction each other job's
 * part was: the owner's figures give those parts up and each other job takes its own, so the
 * groups add up to the owner's whole, whatever the split.
 *
 * Balances show only each account's net change, so the split is read, not proven: a job's
 * return is what came into the vaults its own locks drew on; its payout is what was left of
 * its lock, as long as the transaction paid that much out (jobs whose remainder came home
 * first: the job a settlement paid shows its remainder coming back, one it did not pay shows
 * nothing); its worker pay is its worker's credit, shared in proportion to the payouts when
 * two jobs have one worker; the treasury's and any other payee's credit is shared in
 * proportion to what is left of each payout. Every job naming the transaction computes the same
 * split from the same facts (the transaction and the namers' locks), so what the owner gives up
 * is what the others take.
 */

/** A job naming a closing: its worker and the facts of the locks it names. */
export interface ClosingNamer {
  jobId: string;
  worker: string | null;
  /** Every lock the job names (receipt or jobs API); null while one of them is not known. */
  locks: readonly { signature: string; facts: TransactionFacts }[] | null;
}

/** What a closing moved for one job besides its owner. */
export interface ClosingShare {
  chargedUnits: bigint;
  workerPaidUnits: bigint;
  treasuryPaidUnits: bigint;
  refundedUnits: bigint;
}

const min = (a: bigint, b: bigint) => (a < b ? a : b);
const pos = (a: bigint) => (a > 0n ? a : 0n);

/** `total` shared by `weights` in proportion, the last taking what rounding left; each capped. */
function prorate(total: bigint, weights: readonly bigint[]): bigint[] {
  const all = weights.reduce((s, w) => s + w, 0n);
  if (all === 0n || total === 0n) return weights.map(() => 0n);
  const out: bigint[] = [];
  let left = total;
  weights.forEach((w, i) => {
    const part = i === weights.length - 1 ? left : (total * w) / all;
    const capped = min(min(part, w), left);
    out.push(capped);
    left -= capped;
  });
  return out;
}

/**
 * The parts of `closing` of the jobs naming it besides `owner`, by job id; empty when the
 * transaction pays one job, failed, or when a namer's lock is not known yet (then the owner
 * keeps it whole until every namer's lock is, and the job whose lock comes last sends the
 * others back to be judged: see `round.ts`). Only jobs whose settle or refund memo the
 * transaction carries take a part: a receipt replaying another job's settlement takes none.
 */
export function closingShares(
  profile: Profile,
  closing: TransactionFacts,
  namers: readonly ClosingNamer[],
  owner: string,
  treasury: string | null,
): Map<string, ClosingShare> {
  const out = new Map<string, ClosingShare>();
  if (!closing.succeeded) return out;
  const memoJobs = new Set(
    parseJobMemos(profile, closing.memos)
      .filter((m) => m.kind === "settle" || m.kind === "refund")
      .map((m) => m.jobId),
  );
  const seen = new Set<string>();
  const parties = namers.filter((n) => {
    if (!memoJobs.has(n.jobId) || seen.has(n.jobId)) return false;
    seen.add(n.jobId);
    return true;
  });
  if (parties.length < 2 || !seen.has(owner)) return out;
  if (parties.some((p) => p.locks === null)) return out;
  // One lock named by two of them: whose part of it is whose is not read here.
  const lockSigs = parties.flatMap((p) => [...new Set(p.locks!.map((l) => l.signature))]);
  if (new Set(lockSigs).size !== lockSigs.length) return out;
  let escrowAccount = profile.escrowVault;
  const reads = parties.map((p) =>
    p.locks!.filter((l) => l.facts.succeeded).map((l) => readLock(profile, l.facts)),
  );
  escrowAccount ??= reads.flat().find((r) => r.escrowAccount !== null)?.escrowAccount ?? null;
  if (escrowAccount === null) return out;
  // The owner first, then by id: the order every namer reads them in.
  const order = parties
    .map((p, i) => ({ p, i }))
    .sort((x, y) =>
      x.p.jobId === owner ? -1 : y.p.jobId === owner ? 1 : x.p.jobId < y.p.jobId ? -1 : 1,
    );
  const locked = reads.map((rs) => rs.reduce((s, r) => s + r.lock, 0n));
  const vaults = reads.map(
    (rs) =>
      new Set(
        rs.flatMap((r) => r.sources.map((m) => m.account)).filter((a) => a !== escrowAccount),
      ),
  );
  // Two of them locking from one vault (two jobs of one key): one net credit there holds both
  // returns, and the vault statement files it under one job, so the split is not read here.
  const seenVaults = new Set<string>();
  for (const v of vaults) {
    for (const a of v) {
      if (seenVaults.has(a)) return out;
      seenVaults.add(a);
    }
  }
  const changes = closing.tokenChanges.filter((c) => isCredit(profile, c));
  const outflow = -changes
    .filter((c) => c.account === escrowAccount && c.delta < 0n)
    .reduce((s, c) => s + c.delta, 0n);
  const credits = changes.filter((c) => c.delta > 0n && c.account !== escrowAccount);
  // Returns: a credit to a vault one of them locked from is that job's, up to its lock.
  const refund = parties.map(() => 0n);
  let payout = 0n;
  const payees: { account: string; owner: string | null; amount: bigint }[] = [];
  for (const c of credits) {
    const holders = order.filter(({ i }) => vaults[i]!.has(c.account));
    if (holders.length === 0) {
      payout += c.delta;
      payees.push({ account: c.account, owner: c.owner, amount: c.delta });
      continue;
    }
    let left = c.delta;
    for (const { i } of holders) {
      const take = min(left, pos(locked[i]! - refund[i]!));
      refund[i]! += take;
      left -= take;
    }
    refund[holders[0]!.i]! += left;
  }
  const returned = refund.reduce((s, r) => s + r, 0n);
  payout = min(payout, pos(outflow - returned));
  // Payouts: what is left of each lock, the jobs whose remainder came home first.
  const claimOrder = [...order].sort(
    (x, y) => Number(refund[y.i]! > 0n) - Number(refund[x.i]! > 0n),
  );
  const claim = parties.map(() => 0n);
  let left = payout;
  for (const { i } of claimOrder) {
    claim[i] = min(pos(locked[i]! - refund[i]!), left);
    left -= claim[i]!;
  }
  // Worker pay: each worker's credit shared among its jobs by their payouts.
  const workerPay = parties.map(() => 0n);
  const workers = [...new Set(parties.map((p) => p.worker))].filter(
    (w): w is string => w !== null && w !== profile.escrowAuthority,
  );
  const isWorker = new Set(workers);
  for (const w of workers) {
    const paid = payees.filter((m) => m.owner === w).reduce((s, m) => s + m.amount, 0n);
    const mine = order.filter(({ p }) => p.worker === w).map(({ i }) => i);
    prorate(
      min(
        paid,
        mine.reduce((s, i) => s + claim[i]!, 0n),
      ),
      mine.map((i) => claim[i]!),
    ).forEach((part, k) => {
      workerPay[mine[k]!] = part;
    });
  }
  // The treasury's credit (with none known, the one payee besides the workers, as the owner
  // reads it), shared by what each payout has left.
  const others = payees.filter((m) => m.owner === null || !isWorker.has(m.owner));
  const toTreasury =
    treasury !== null
      ? others.filter((m) => m.account === treasury || m.owner === treasury)
      : others.length === 1
        ? others
        : [];
  const treasuryTotal = toTreasury.reduce((s, m) => s + m.amount, 0n);
  const rest = parties.map((_, i) => pos(claim[i]! - workerPay[i]!));
  const treasuryPay = parties.map(() => 0n);
  prorate(
    min(
      treasuryTotal,
      rest.reduce((s, r) => s + r, 0n),
    ),
    order.map(({ i }) => rest[i]!),
  ).forEach((part, k) => {
    treasuryPay[order[k]!.i] = part;
  });
  for (const { p, i } of order) {
    if (p.jobId === owner) continue;
    const share = {
      chargedUnits: claim[i]!,
      workerPaidUnits: workerPay[i]!,
      treasuryPaidUnits: treasuryPay[i]!,
      refundedUnits: refund[i]!,
    };
    if (Object.values(share).some((v) => v !== 0n)) out.set(p.jobId, share);
  }
  return out;
}
