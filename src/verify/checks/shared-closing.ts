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
 * Balances show only each account's net change, so the split is read, not proven. The jobs it
 * released in full are those whose locks add up to exactly what left escrow (an honest
 * settlement pays out or sends home each lock whole); of several such sets, the one the chain
 * tells best. First by its transfers out of escrow: they part among the set's jobs as a
 * settlement pays each (its lock in all, its remainder to its vault, its worker's pay to its
 * worker, one transfer of each), and each job's payout is the charge its receipt claims (one
 * transfer of 204,000 to a worker pays one job locking 240,000, not two locking 120,000). Then
 * by net balances: its jobs' remainders came home, then its jobs' workers were credited, and
 * no job left out shows either. Each of those takes what came into the vaults its own locks drew
 * on (two of them locked from one vault: shared by their locks) and the rest of its lock as
 * its payout; a job left out takes nothing, its lock still in escrow. With no set adding up (a
 * settlement paying more or less than the locks), the payouts go to what is left of each lock,
 * the jobs whose remainder came home first, then those whose worker was credited. A job's
 * worker pay is its worker's credit, shared in proportion to the payouts when two jobs have one
 * worker; the treasury's and any other payee's credit is shared in proportion to what is left
 * of each payout. Two jobs of one worker, equal locks and equal charges, one of them paid with
 * nothing coming home, look alike: the owner, then the first by id, is read as paid. Every job
 * naming the transaction computes the same split from the same facts (the transaction, the
 * namers' locks and the charges their receipts claim), so what the owner gives up is what the
 * others take.
 */

/** A job naming a closing: its worker, the charge its receipt claims and the facts of its locks. */
export interface ClosingNamer {
  jobId: string;
  worker: string | null;
  /** The price of the usage its receipt claims (what its settlement should pay out); null unknown. */
  charge: bigint | null;
  /** Every lock the job names (receipt or jobs API); null while one of them is not known. */
  locks: readonly { signature: string; facts: TransactionFacts }[] | null;
}

/** What a closing moved for one job naming it. */
export interface ClosingShare {
  chargedUnits: bigint;
  workerPaidUnits: bigint;
  treasuryPaidUnits: bigint;
  refundedUnits: bigint;
  /** Where `refundedUnits` came home: each credit vault, with how much. */
  refundedInto: ReadonlyMap<string, bigint>;
  /**
   * What of `refundedUnits` came home in a vault another of the jobs locked from too, whose
   * ledger files that one line under that job (the first of them the memos name).
   */
  returnFiledElsewhereUnits: bigint;
  /** What the other jobs' returns brought home in a line the vault's ledger files under this job. */
  othersFiledHereUnits: bigint;
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
 * The parts of `closing` of the jobs naming it, by job id, the owner's among them (what it
 * keeps is the whole less the others' parts; its own part says where its return came home);
 * empty when the
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
  const changes = closing.tokenChanges.filter((c) => isCredit(profile, c));
  const outflow = -changes
    .filter((c) => c.account === escrowAccount && c.delta < 0n)
    .reduce((s, c) => s + c.delta, 0n);
  const credits = changes.filter((c) => c.delta > 0n && c.account !== escrowAccount);
  let payout = 0n;
  const payees: { account: string; owner: string | null; amount: bigint }[] = [];
  const homeCredits: { account: string; amount: bigint; holders: number[] }[] = [];
  for (const c of credits) {
    const holders = order.filter(({ i }) => vaults[i]!.has(c.account)).map(({ i }) => i);
    if (holders.length === 0) {
      payout += c.delta;
      payees.push({ account: c.account, owner: c.owner, amount: c.delta });
    } else homeCredits.push({ account: c.account, amount: c.delta, holders });
  }
  const workers = [...new Set(parties.map((p) => p.worker))].filter(
    (w): w is string => w !== null && w !== profile.escrowAuthority,
  );
  const isWorker = new Set(workers);
  // What tells a job paid: its remainder came home (its vault credited), its worker credited.
  const cameHome = parties.map((_, i) => homeCredits.some((c) => c.holders.includes(i)));
  const workerCredited = parties.map(
    (p) =>
      p.worker !== null &&
      isWorker.has(p.worker) &&
      payees.some((m) => m.owner === p.worker && m.amount > 0n),
  );
  const released = releasedInFull(
    order.map(({ i }) => i),
    locked,
    outflow,
    cameHome,
    workerCredited,
    (sets) =>
      toldByTransfers(
        sets,
        payoutTransfers(closing, escrowAccount!, outflow, vaults, parties, isWorker),
        locked,
        parties.map((p) => p.charge),
      ),
  );
  const memoOrder = parseJobMemos(profile, closing.memos).map((m) => m.jobId);
  const firstInMemos = (holders: readonly number[]) =>
    [...holders].sort(
      (x, y) => memoOrder.indexOf(parties[x]!.jobId) - memoOrder.indexOf(parties[y]!.jobId),
    )[0]!;
  // Returns: a credit to a vault one of them locked from is that job's, up to its lock; shared
  // by several (two jobs of one vault), the jobs released in full share it by their locks.
  const refund = parties.map(() => 0n);
  const refundedInto = parties.map(() => new Map<string, bigint>());
  const filedElsewhere = parties.map(() => 0n);
  const filedHere = parties.map(() => 0n);
  for (const c of homeCredits) {
    const takes = parties.map(() => 0n);
    let left = c.amount;
    const room = (i: number) => pos(locked[i]! - refund[i]! - takes[i]!);
    const inFull = released === null ? [] : c.holders.filter((i) => released.has(i));
    prorate(
      min(
        left,
        inFull.reduce((s, i) => s + room(i), 0n),
      ),
      inFull.map(room),
    ).forEach((part, k) => {
      takes[inFull[k]!]! += part;
      left -= part;
    });
    for (const i of c.holders) {
      const take = min(left, room(i));
      takes[i]! += take;
      left -= take;
    }
    takes[c.holders[0]!]! += left;
    // The vault's ledger files the line under the first of them its memos name: what the
    // others take of it comes home in a line their statements do not read as theirs.
    const filed = firstInMemos(c.holders);
    for (const i of c.holders) {
      refund[i]! += takes[i]!;
      refundedInto[i]!.set(c.account, (refundedInto[i]!.get(c.account) ?? 0n) + takes[i]!);
      if (i === filed) continue;
      filedElsewhere[i]! += takes[i]!;
      filedHere[filed]! += takes[i]!;
    }
  }
  const returned = refund.reduce((s, r) => s + r, 0n);
  payout = min(payout, pos(outflow - returned));
  // Payouts: what is left of each lock. With the jobs the transaction released in full told
  // by their locks adding up to what left escrow, those; else the jobs whose remainder came
  // home first, then those whose worker was credited, then the rest.
  const tier = (i: number) =>
    released !== null ? (released.has(i) ? 0 : 3) : cameHome[i] ? 0 : workerCredited[i] ? 1 : 2;
  const claimOrder = [...order].sort((x, y) => tier(x.i) - tier(y.i));
  const claim = parties.map(() => 0n);
  let left = payout;
  for (const { i } of claimOrder) {
    claim[i] = min(pos(locked[i]! - refund[i]!), left);
    left -= claim[i]!;
  }
  // Worker pay: each worker's credit shared among its jobs by their payouts.
  const workerPay = parties.map(() => 0n);
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
    const share = {
      chargedUnits: claim[i]!,
      workerPaidUnits: workerPay[i]!,
      treasuryPaidUnits: treasuryPay[i]!,
      refundedUnits: refund[i]!,
      refundedInto: refundedInto[i]!,
      returnFiledElsewhereUnits: filedElsewhere[i]!,
      othersFiledHereUnits: filedHere[i]!,
    };
    const moved = [
      share.chargedUnits,
      share.workerPaidUnits,
      share.treasuryPaidUnits,
      share.refundedUnits,
      share.othersFiledHereUnits,
    ].some((v) => v !== 0n);
    if (p.jobId === owner || moved) out.set(p.jobId, share);
  }
  return out;
}

/**
 * The parties a closing released in full (each `locked[i]` paid out or sent home): the set of
 * them whose locks add up to exactly what left escrow, of those that do the one best told by
 * the chain: first by its transfers out of escrow (`told`, see `toldByTransfers`), then by its
 * net balances (members whose remainder came home, then whose worker was credited, against
 * others who show either), the first in `order` on a tie. Null when no set adds up (an
 * operator paying more or less than the locks: a discrepancy), or with too many to try.
 */
function releasedInFull(
  order: readonly number[],
  locked: readonly bigint[],
  outflow: bigint,
  cameHome: readonly boolean[],
  workerCredited: readonly boolean[],
  told: (sets: readonly (readonly number[])[]) => readonly (readonly [number, number])[] | null,
): Set<number> | null {
  if (order.length > 12 || outflow <= 0n) return null;
  // Masks over `order`, highest bit first: the sets holding the first parties come first.
  const n = order.length;
  const sets: number[][] = [];
  for (let mask = (1 << n) - 1; mask > 0; mask--) {
    const set = order.filter((_, k) => (mask & (1 << (n - 1 - k))) !== 0);
    if (set.reduce((s, i) => s + locked[i]!, 0n) === outflow) sets.push(set);
  }
  if (sets.length === 0) return null;
  const byTransfers = sets.length > 1 ? told(sets) : null;
  let best: { set: number[]; score: number[] } | null = null;
  for (const [k, set] of sets.entries()) {
    const score = (signal: readonly boolean[]): number =>
      order.reduce((s, i) => s + (signal[i] ? (set.includes(i) ? 1 : -1) : 0), 0);
    const scored = [...(byTransfers?.[k] ?? [0, 0]), score(cameHome), score(workerCredited)];
    const better = (() => {
      if (best === null) return true;
      for (const [j, v] of scored.entries()) if (v !== best.score[j]) return v > best.score[j]!;
      return false;
    })();
    if (better) best = { set, score: scored };
  }
  return new Set(best!.set);
}

/** A transfer out of escrow, and whose it may be by where it went. */
interface PayoutTransfer {
  amount: bigint;
  /** Into a vault these parties locked from: a remainder coming home. */
  home: readonly number[];
  /** To the account of these parties' worker: worker pay. */
  worker: readonly number[];
}

/**
 * The closing's transfers out of escrow, each with the parties it may be the return or worker
 * pay of; null when they are not all to be read (an instruction touching escrow that is no
 * transfer out of it, a transfer stored without its amount, inner instructions unknown, or
 * transfers adding up to other than escrow's net debit): then they tell nothing.
 */
function payoutTransfers(
  closing: TransactionFacts,
  escrow: string,
  outflow: bigint,
  vaults: readonly ReadonlySet<string>[],
  parties: readonly ClosingNamer[],
  isWorker: ReadonlySet<string>,
): PayoutTransfer[] | null {
  if (!closing.innerInstructionsKnown) return null;
  const touching = closing.tokenInstructions.filter(
    (i) => i.source === escrow || i.destination === escrow || i.accounts.includes(escrow),
  );
  if (
    touching.some(
      (i) =>
        !i.kind.startsWith("transfer") ||
        i.source !== escrow ||
        i.destination === undefined ||
        i.destination === escrow ||
        i.amount === undefined,
    )
  ) {
    return null;
  }
  if (touching.reduce((s, i) => s + i.amount!, 0n) !== outflow) return null;
  const ownerOf = new Map<string, string>();
  for (const o of closing.ownersAfter ?? []) ownerOf.set(o.account, o.owner);
  for (const c of closing.tokenChanges) if (c.owner !== null) ownerOf.set(c.account, c.owner);
  return touching
    .filter((i) => i.amount! > 0n)
    .map((i) => {
      const owner = ownerOf.get(i.destination!);
      return {
        amount: i.amount!,
        home: parties.flatMap((_, k) => (vaults[k]!.has(i.destination!) ? [k] : [])),
        worker: parties.flatMap((p, k) =>
          owner !== undefined && p.worker === owner && isWorker.has(owner) ? [k] : [],
        ),
      };
    });
}

/**
 * Search steps `toldByTransfers` may take for one closing before it gives up (tells nothing, and
 * the split falls back on net balances). Every job naming the closing runs the search again in
 * one turn of the event loop: at 50,000 steps a settlement of 50 transfers naming ten jobs held
 * `serve`'s loop 0.5 to 0.8 s a round; at 5,000, about 0.1 s. A settlement of two or three jobs
 * takes a few dozen steps.
 */
const TRANSFER_SEARCH_STEPS = 5_000;

/**
 * What a closing's transfers out of escrow tell of each candidate set of parties released in
 * full, as `[fit, charges]` (higher is better), or null when they tell nothing (unread, or too
 * many ways to try). The transfers must be parted among the set's jobs, each job's adding up to
 * its lock, a return going to a job that locked from that vault, worker pay to a job of that
 * worker, anything else (the treasury) to any. `fit` is 2 when they part so with at most one
 * transfer of each kind (return, worker, other) per job, as a protocol settlement pays a job;
 * 1 when only with more; 0 when not at all. `charges`: of the best parting, jobs whose payout
 * (all but the return) is the charge their receipt claims, less those whose is not. One
 * transfer paying two jobs of one worker at once parts no way, and is no fit.
 */
function toldByTransfers(
  sets: readonly (readonly number[])[],
  transfers: readonly PayoutTransfer[] | null,
  locked: readonly bigint[],
  charge: readonly (bigint | null)[],
): [number, number][] | null {
  if (transfers === null) return null;
  const sorted = [...transfers].sort((x, y) =>
    x.amount > y.amount ? -1 : x.amount < y.amount ? 1 : 0,
  );
  let steps = 0;
  // Parties the transfers may go to alike, with one charge: the same kin.
  const kin = locked.map(
    (_, i) =>
      `${charge[i]}|${sorted.map((x) => `${x.home.includes(i) ? 1 : 0}${x.worker.includes(i) ? 1 : 0}`).join("")}`,
  );
  const kindOf = (t: PayoutTransfer, i: number) =>
    t.home.includes(i) ? 0 : t.worker.includes(i) ? 1 : 2;
  /** The best charge score of a parting of `sorted` among `set`, null when none parts it. */
  const part = (set: readonly number[], shaped: boolean): number | null => {
    const room = set.map((i) => locked[i]!);
    const counts = set.map(() => [0, 0, 0]);
    const paid = set.map(() => 0n);
    const most = set.filter((i) => charge[i] !== null).length;
    let best: number | null = null;
    const walk = (t: number): boolean => {
      if (++steps > TRANSFER_SEARCH_STEPS) throw new Error("too many partings");
      if (t === sorted.length) {
        const score = set.reduce(
          (s, i, k) => s + (charge[i] === null ? 0 : charge[i] === paid[k] ? 1 : -1),
          0,
        );
        if (best === null || score > best) best = score;
        return best === most;
      }
      const tr = sorted[t]!;
      const tried = new Set<string>();
      for (const [k, i] of set.entries()) {
        if (tr.home.length > 0 && !tr.home.includes(i)) continue;
        if (tr.home.length === 0 && tr.worker.length > 0 && !tr.worker.includes(i)) continue;
        if (room[k]! < tr.amount) continue;
        const kind = kindOf(tr, i);
        if (shaped && counts[k]![kind]! > 0) continue;
        // Jobs alike in all that matters here part the rest alike: one is tried.
        const alike = `${kin[i]}|${room[k]}|${counts[k]}|${paid[k]}`;
        if (tried.has(alike)) continue;
        tried.add(alike);
        room[k]! -= tr.amount;
        counts[k]![kind]! += 1;
        if (kind !== 0) paid[k]! += tr.amount;
        const done = walk(t + 1);
        room[k]! += tr.amount;
        counts[k]![kind]! -= 1;
        if (kind !== 0) paid[k]! -= tr.amount;
        if (done) return true;
      }
      return false;
    };
    walk(0);
    return best;
  };
  try {
    return sets.map((set) => {
      const shaped = part(set, true);
      if (shaped !== null) return [2, shaped];
      const loose = part(set, false);
      return loose !== null ? [1, loose] : [0, 0];
    });
  } catch {
    return null;
  }
}

/**
 * One lock transaction taking the locks of several jobs (each its escrow memo) out of their
 * vaults at once: the job owning it reads its escrow credit whole, so each job's report group
 * (key, worker, model, day) must be told what the transaction locked for its own job. Each
 * transfer into escrow is read as the lock of the job whose escrow memo stands in the same
 * place among the escrow memos (the k-th transfer, the k-th memo: one lock instruction and its
 * memo per job, as the protocol's lock is made). Read from the transaction alone, so every job
 * naming it reads the same parts. By job id, for the jobs naming it (`namers`) whose escrow
 * memo it carries, the owner's among them; empty when it locks for one job, when the transfers
 * into escrow are not as many as its escrow memos, add up to other than escrow's credit, or
 * are stored without their amounts (then the owner keeps it whole, as before).
 */
export function lockParts(
  profile: Profile,
  facts: TransactionFacts,
  namers: readonly string[],
  owner: string | null,
): Map<string, bigint> {
  const out = new Map<string, bigint>();
  if (!facts.succeeded || owner === null) return out;
  const memoJobs = [
    ...new Set(
      parseJobMemos(profile, facts.memos)
        .filter((m) => m.kind === "escrow")
        .map((m) => m.jobId),
    ),
  ];
  const parties = [...new Set(namers)].filter((id) => memoJobs.includes(id));
  if (parties.length < 2 || !parties.includes(owner)) return out;
  const reading = readLock(profile, facts);
  if (reading.escrowAccount === null) return out;
  const into = facts.tokenInstructions.filter(
    (i) => i.destination === reading.escrowAccount || i.accounts.includes(reading.escrowAccount!),
  );
  const transfers = into.filter((i) => i.kind.startsWith("transfer"));
  if (transfers.length !== into.length || transfers.length !== memoJobs.length) return out;
  if (transfers.some((i) => i.destination !== reading.escrowAccount || i.amount === undefined)) {
    return out;
  }
  if (transfers.reduce((s, i) => s + i.amount!, 0n) !== reading.lock) return out;
  for (const id of parties) out.set(id, transfers[memoJobs.indexOf(id)]!.amount!);
  return out;
}
