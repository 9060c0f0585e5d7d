import { payableWorker, readLock, readRelease } from "../money-movements.js";
import { usagePrice } from "./charge.js";
import type { ChainAmounts, CheckInput } from "./check-input.js";
import { sum } from "./check-list.js";
import type { UsableLock } from "./escrow.js";
import { parseJobMemos } from "./memos.js";
import { type ClosingShare, closingShares, lockParts } from "./shared-closing.js";
import { signatureOwner } from "./signatures.js";
import type { RoleTx } from "./transaction.js";

/**
 * The money of the transactions this job owns (see `signatureOwner`): a replayed receipt owns
 * nothing it replays, so every on-chain movement is counted for exactly one job. Within the
 * job each signature is read once, in one role, however many names (receipt, jobs API,
 * conflicting receipts) it has: a transaction named as a closing step is read as one, and
 * what it moved into escrow counts as escrowed; any other is read as a lock. `refunds` are the
 * closings that are refunds only (no settle memo of the job): they pay no worker. `feesOnly`:
 * transactions of the job that moved none of its credits and play no step (a failed payout a
 * conflicting receipt names): only their fees are counted.
 */
export function amountsOf(
  input: CheckInput,
  escrow: RoleTx | null,
  givenExtraLocks: RoleTx[],
  givenClosings: RoleTx[],
  refunds: RoleTx[],
  lock: UsableLock | null,
  feesOnly: RoleTx[] = [],
): ChainAmounts {
  const { job, profile, namedBy } = input;
  let extraLocks = givenExtraLocks;
  let closings = givenClosings;
  const owns = (tx: RoleTx) =>
    signatureOwner(profile, tx.facts, namedBy.get(tx.signature) ?? [job.jobId], input.names) ===
    job.jobId;
  const amounts: ChainAmounts = {
    escrowedUnits: null,
    chargedUnits: null,
    workerPaidUnits: null,
    treasuryPaidUnits: null,
    refundedUnits: null,
    expectedChargeUnits:
      job.completionTokens === null ? null : usagePrice(profile, job, job.completionTokens),
    feesLamports: null,
  };
  // A second lock named only by the jobs API moved the customer's money too (its mismatch is
  // jobs_api.matches_receipt's finding): it is counted like the first.
  const apiLockFacts =
    job.apiEscrowTx !== null && job.apiEscrowTx !== escrow?.signature
      ? input.transactions.get(job.apiEscrowTx)
      : undefined;
  let apiLock: RoleTx | null = apiLockFacts
    ? { role: "escrow", signature: job.apiEscrowTx!, facts: apiLockFacts, stolenBy: null }
    : null;
  // What this job's own memos make of a transaction, whatever header named it: a receipt
  // naming its settlement as the escrow and its lock as the settlement (headers swapped, by a
  // recorder or an operator) was read the other way round, each against the wrong accounts,
  // and the job's lock and settlement, both its own by their memos, were in no figure.
  const kindsOf = (t: RoleTx) =>
    new Set(
      parseJobMemos(profile, t.facts.memos)
        .filter((m) => m.jobId === job.jobId)
        .map((m) => m.kind),
    );
  const closesByMemo = (t: RoleTx) => {
    const k = kindsOf(t);
    return !k.has("escrow") && (k.has("settle") || k.has("refund"));
  };
  const locksByMemo = (t: RoleTx) => {
    const k = kindsOf(t);
    return k.has("escrow") && !k.has("settle") && !k.has("refund");
  };
  // The escrow named as a closing step too (the headers or the jobs API) is read as a closing,
  // and so is one carrying this job's settle or refund memo and not its escrow memo.
  // One carrying its escrow memo alone stays a lock, whatever a header or the jobs API named it.
  const escrowCloses =
    escrow !== null &&
    (closesByMemo(escrow) ||
      ((escrow.signature === job.settlementTx || escrow.signature === job.apiSettlementTx) &&
        !locksByMemo(escrow)));
  // A closing carrying this job's escrow memo alone is read as a lock, and a lock the jobs API
  // names carrying its settle or refund memo alone as a closing.
  const closingLocks = closings
    .filter((c) => c.signature !== escrow?.signature && locksByMemo(c))
    .map((c) => ({ ...c, role: "escrow" as const }));
  closings = closings.filter((c) => !closingLocks.some((l) => l.signature === c.signature));
  extraLocks = [...closingLocks, ...extraLocks];
  if (apiLock !== null && closesByMemo(apiLock)) {
    closings = [{ ...apiLock, role: "settlement" }, ...closings];
    apiLock = null;
  }
  const seen = new Set<string>();
  const once = (t: RoleTx | null): t is RoleTx => {
    if (t === null || seen.has(t.signature)) return false;
    seen.add(t.signature);
    return true;
  };
  const judged = escrowCloses ? null : escrow;
  const ownLock = [judged].filter(once);
  const closingsRead = [
    ...(escrowCloses ? [{ ...escrow!, role: "settlement" as const }] : []),
    ...closings,
  ].filter(once);
  const locks = [...ownLock, ...[apiLock, ...extraLocks].filter(once)];
  const known = [...locks, ...closingsRead, ...feesOnly.filter(once)];
  if (known.length > 0) amounts.feesLamports = sum(known.filter(owns).map((t) => t.facts.fee));
  // What a lock moved to any account but escrow left the customer all the same: it counts as
  // escrowed and, at once, as charged (paid to someone), so the job's figures hold every credit
  // its transactions moved. Balances show only each account's net change: a lock whose escrow
  // paid the money straight on shows no escrow movement at all, only where the money went.
  // Money put into another customer's vault (the escrow authority's) is no one's pay: left out
  // of charged, as a settlement's return to another customer's vault is (it stays escrowed, so
  // unaccounted shows it). Money put into this job's own vault (a top-up inside the lock) never
  // left the customer: neither escrowed nor charged.
  const ownVaults = new Set(
    [lock?.creditVault, job.creditVault, input.custody?.pinned?.vault].filter(
      (v): v is string => typeof v === "string",
    ),
  );
  // With no vault known for the job (a first lock that failed its checks, no key), the one
  // the receipt's lock drew on first is taken for it, as the closings below take it.
  // The lock the vault and escrow accounts are read from: the receipt's escrow, unless its
  // own memos made it a closing (headers swapped), then the first lock read.
  const lockRead = escrow !== null && !closesByMemo(escrow) ? escrow : (locks[0] ?? escrow);
  const firstSource = lockRead ? readLock(profile, lockRead.facts).sources[0]?.account : undefined;
  if (ownVaults.size === 0 && firstSource !== undefined) ownVaults.add(firstSource);
  const toVault = (m: { owner: string | null }) =>
    profile.escrowAuthority !== null && m.owner === profile.escrowAuthority;
  const lockPartsOf = (l: RoleTx) => {
    const namers = namedBy.get(l.signature) ?? [job.jobId];
    return lockParts(
      profile,
      l.facts,
      namers,
      signatureOwner(profile, l.facts, namers, input.names),
    );
  };
  let escrowed = 0n;
  let diverted = 0n;
  // What the locks moved to an account besides escrow while escrow took its own part: counted
  // escrowed above, but it never reached the account the settlement pays out of.
  let missedEscrow = 0n;
  // Accounts besides escrow that hold money of this job's locks, with how much of it: what
  // they pay back to the job's vault at settlement or refund, up to that, is the lock going back.
  const heldElsewhere = new Map<string, bigint>();
  for (const l of locks) {
    if (!owns(l) || !l.facts.succeeded) continue;
    const reading = readLock(profile, l.facts);
    // Money into other customers' vaults first: no one's pay, it is cut first below.
    const out = reading.elsewhere
      .filter((m) => !ownVaults.has(m.account))
      .sort((a, b) => Number(toVault(b)) - Number(toVault(a)));
    // Only what left the job's own vault is this job's escrow: a lock that also moves money
    // between two other accounts (one customer's vault to another's) took none of it from this
    // customer, and each of those vaults' statements shows it. That holds when the own vault
    // paid nothing at all too (a lock, or a second one, drawn wholly on another vault): then
    // nothing beyond escrow's credit is this job's. What escrow received is counted whole,
    // wherever it came from: settlement and refund are read against it.
    const ownDebited = -sum(
      reading.sources.filter((m) => ownVaults.has(m.account)).map((m) => BigInt(m.amount)),
    );
    let excess = 0n;
    if (ownVaults.size > 0) {
      const outTotal = sum(out.map((m) => BigInt(m.amount)));
      const allowed = ownDebited > reading.lock ? ownDebited - reading.lock : 0n;
      if (outTotal > allowed) excess = outTotal - allowed;
    }
    // A lock taken for other jobs too (each its escrow memo): their parts are theirs.
    let forOthers = 0n;
    for (const [id, part] of lockPartsOf(l)) if (id !== job.jobId) forOthers += part;
    escrowed += reading.lock - forOthers;
    for (const m of out) {
      const amount = BigInt(m.amount);
      const cut = excess < amount ? excess : amount;
      excess -= cut;
      const counted = amount - cut;
      if (counted === 0n) continue;
      escrowed += counted;
      heldElsewhere.set(m.account, (heldElsewhere.get(m.account) ?? 0n) + counted);
      // With no escrow account to follow (no pinned escrow vault, a lock crediting several
      // accounts), escrow's own credit is among them: none of it is counted as paid out here.
      if (reading.escrowAccount === null) continue;
      missedEscrow += counted;
      if (!toVault(m)) diverted += counted;
    }
  }
  // A lock of this job that another job owns (one lock for two keys' jobs): its escrow credit
  // is that job's figure, but what it took from this job's own vault is what this job's own
  // settlement pays out of. Left out, the settlement was read as paying out nothing of a lock
  // (none owned), and the vault statement listed the job's charge as an unreleased_lock the
  // chain paid.
  let lockedForOthers = 0n;
  for (const l of locks) {
    if (owns(l) || !l.facts.succeeded) continue;
    // Its part of a lock taken for several jobs is escrowed in its own figures.
    const part = lockPartsOf(l).get(job.jobId);
    if (part !== undefined) {
      escrowed += part;
      continue;
    }
    const reading = readLock(profile, l.facts);
    const debited = -sum(
      reading.sources.filter((m) => ownVaults.has(m.account)).map((m) => BigInt(m.amount)),
    );
    // At most what the lock put into escrow: the rest went elsewhere, never escrow's to pay.
    if (debited > reading.lock) lockedForOthers += reading.lock;
    else if (debited > 0n) lockedForOthers += debited;
  }
  if (locks.length > 0) amounts.escrowedUnits = escrowed;
  if (closingsRead.length === 0) {
    if (diverted > 0n) {
      amounts.chargedUnits = diverted;
      amounts.escrowPaidUnits = 0n;
    }
    return amounts;
  }
  const creditVault =
    lock?.creditVault ??
    (lockRead ? readLock(profile, lockRead.facts).sources[0]?.account : undefined) ??
    job.creditVault ??
    "";
  const escrowAccount =
    lock?.escrowAccount ??
    (lockRead ? readLock(profile, lockRead.facts).escrowAccount : null) ??
    profile.escrowVault ??
    "";
  const treasury = profile.treasury ?? input.learnedTreasury ?? null;
  const vaultOwner =
    lock?.reading.sources[0]?.owner ??
    (lockRead ? readLock(profile, lockRead.facts).sources[0]?.owner : undefined) ??
    null;
  const payee = payableWorker(profile, job.worker, vaultOwner);
  // Credit vaults besides this job's: those its own locks drew on, those the locks of the other
  // jobs naming its closings drew on, and any the deployment lists or pins to a key.
  const lockSources = new Set<string>();
  for (const l of locks) {
    if (!owns(l) || !l.facts.succeeded) continue;
    for (const s of readLock(profile, l.facts).sources) lockSources.add(s.account);
  }
  const isCustomerVault = (account: string) =>
    ownVaults.has(account) ||
    lockSources.has(account) ||
    input.custody?.configured.has(account) === true ||
    input.custody?.namerVaults?.has(account) === true ||
    (input.custody?.keyOfVault?.(account) ?? null) !== null;
  // A vault known for a customer's only through this job's own locks (pinned to no key, not a
  // configured vault) gets back at most what those locks took from it, across the job's
  // closings: an honest remainder is never more than its lock. Unbounded, a job recorded here
  // whose lock drew 1 unit out of an account of the operator's counted all a payout it owned
  // sent into that account as its return (refunded 40,000 above the chain): the operator's
  // money read as a customer's back. The rest is no return: unaccounted, as money into any
  // account of the escrow authority's that is no customer's vault.
  const vaultTied =
    creditVault === input.custody?.pinned?.vault ||
    input.custody?.configured.has(creditVault) === true ||
    (input.custody?.keyOfVault?.(creditVault) ?? null) !== null;
  let returnRoom: bigint | null = null;
  if (!vaultTied) {
    returnRoom = 0n;
    for (const l of escrowCloses ? [escrow!, ...locks] : locks) {
      if (!l.facts.succeeded) continue;
      const reading = readLock(profile, l.facts);
      const debited = -sum(
        reading.sources.filter((m) => m.account === creditVault).map((m) => BigInt(m.amount)),
      );
      // Of a lock that is no closing too, at most what it put into escrow: a lock of 1 unit
      // that also sent 39,999 out of the same account elsewhere made room for a 40,000 return.
      const closes = escrowCloses && l === escrow;
      returnRoom += !closes && debited > reading.lock ? reading.lock : debited;
    }
  }
  const refundSigs = new Set(refunds.map((r) => r.signature));
  let worker = 0n;
  let treasuryPaid = 0n;
  let charged = diverted;
  let returned = 0n;
  let returnedElsewhere = 0n;
  // What held accounts (not escrow) paid back of the returns: the rest came out of escrow.
  let returnedByHolders = 0n;
  // The lock read as a closing (one transaction named for both): balances show only each
  // account's net change, so escrow's credit nets against what it paid out at once, and what
  // left the job's vault beyond what stayed in escrow went through escrow to the payees.
  let lockedThrough = 0n;
  // Of a closing paying other jobs too: what came home into this job's vault for those jobs
  // (one vault for both: one net credit), and what the vault's ledger files of it under
  // another job than the one it came home for (`sharedReturnUnits`).
  let othersReturned = 0n;
  let sharedReturn = 0n;
  // A closing paying other jobs too (each its settle or refund memo): what it moved for each
  // of them is that job's figure, in its own report group, not the owner's (`closingShares`).
  const sharesOf = (c: RoleTx): Map<string, ClosingShare> => {
    const namers = input.custody?.closingNamers?.get(c.signature);
    if (namers === undefined) return new Map();
    const owner = signatureOwner(
      profile,
      c.facts,
      namedBy.get(c.signature) ?? [job.jobId],
      input.names,
    );
    return owner === null ? new Map() : closingShares(profile, c.facts, namers, owner, treasury);
  };
  for (const c of closingsRead) {
    if (!c.facts.succeeded) continue;
    // One lock transaction taking several jobs' locks, read as this job's closing (it carries
    // the job's settle or refund memo too): each job escrows its own part of it all the same,
    // as where it is read as a lock. Left out, the owner gave the part up and no job took it
    // (a report's escrowed 160,000 below the chain's), or the owner kept it whole while the
    // other job, reading it as a lock, took its part too.
    const parts = lockPartsOf(c);
    if (!owns(c)) {
      escrowed += parts.get(job.jobId) ?? 0n;
      const mine = sharesOf(c).get(job.jobId);
      if (mine === undefined) continue;
      worker += mine.workerPaidUnits;
      treasuryPaid += mine.treasuryPaidUnits;
      charged += mine.chargedUnits;
      returnedElsewhere += mine.refundedUnits;
      sharedReturn += mine.returnFiledElsewhereUnits - mine.othersFiledHereUnits;
      continue;
    }
    // What came home into this job's own vault for other jobs in this closing.
    let othersHere = 0n;
    for (const [jobId, s] of sharesOf(c)) {
      if (jobId === job.jobId) {
        sharedReturn += s.returnFiledElsewhereUnits - s.othersFiledHereUnits;
        continue;
      }
      worker -= s.workerPaidUnits;
      treasuryPaid -= s.treasuryPaidUnits;
      charged -= s.chargedUnits;
      returnedElsewhere -= s.refundedUnits;
      // What came home into this job's own vault for another job is no part of its lock.
      othersHere += s.refundedInto.get(creditVault) ?? 0n;
    }
    othersReturned += othersHere;
    const r = readRelease(profile, c.facts, {
      creditVault,
      escrowAccount,
      worker: refundSigs.has(c.signature) ? null : payee,
      treasury,
      vaultOwner: profile.escrowAuthority ?? vaultOwner,
      heldElsewhere,
    });
    // What a held account paid back is spent: a second closing returns only the rest of it.
    for (const [account, paid] of r.heldReturned) {
      heldElsewhere.set(account, (heldElsewhere.get(account) ?? 0n) - paid);
      returnedByHolders += paid;
    }
    if (escrowCloses && c.signature === escrow!.signature) {
      const debited = -sum(
        readLock(profile, c.facts)
          .sources.filter((m) => ownVaults.has(m.account))
          .map((m) => BigInt(m.amount)),
      );
      if (debited > r.intoEscrow) lockedThrough += debited - r.intoEscrow;
    }
    // The worker of another job naming this closing (a settlement paying two jobs, each its
    // own worker): its pay is worker pay all the same, up to what counts as paid to no one
    // named. Left as that, the report's worker paid stood below what the chain paid workers.
    let namerWorkerPaid = 0n;
    const namerWorkers = input.custody?.namerWorkers;
    if (namerWorkers !== undefined && namerWorkers.size > 0 && r.unexplainedTotal > 0n) {
      for (const m of r.unexplained) {
        if (m.owner !== null && namerWorkers.has(m.owner)) namerWorkerPaid += BigInt(m.amount);
      }
      if (namerWorkerPaid > r.unexplainedTotal) namerWorkerPaid = r.unexplainedTotal;
    }
    worker += r.worker + namerWorkerPaid;
    treasuryPaid += r.treasury;
    let back = r.returned;
    if (returnRoom !== null) {
      const own = back > othersHere ? back - othersHere : 0n;
      const kept = own < returnRoom ? own : returnRoom;
      returnRoom -= kept;
      back -= own - kept;
    }
    returned += back;
    // Escrow's money put into another customer's credit vault (a settlement naming two jobs of
    // two keys, each remainder sent home; a lock naming two keys' jobs, read with the other
    // key's vault as this job's) is money back out of escrow into a credit vault all the same:
    // left out, the report's refunded stood below what the chain moved and unaccounted above it.
    // Up to what left escrow (and the held accounts) beyond what is already returned and paid
    // to the worker and the treasury: money another account put into that vault in the same
    // transaction (a top-up riding in the settlement) is no return out of escrow, nor is what it
    // paid the other jobs' workers.
    const room =
      r.outflow +
      sum([...r.heldReturned.values()]) -
      r.returned -
      r.worker -
      namerWorkerPaid -
      r.treasury;
    let home = 0n;
    for (const m of r.misdirected) {
      if (m.account !== creditVault && isCustomerVault(m.account)) home += BigInt(m.amount);
    }
    // Counted apart: escrowPaid reads the lock's own returns, and another vault's remainder is
    // no part of this job's lock coming back (taken from it, this job's lock read as paid out
    // less than it was, an unreleased_lock for money the chain paid).
    if (home > 0n && room > 0n) returnedElsewhere += home < room ? home : room;
    escrowed += r.intoEscrow;
    for (const [id, part] of parts) if (id !== job.jobId) escrowed -= part;
    charged += r.worker + r.treasury + r.unexplainedTotal;
  }
  if (locks.length > 0 || escrowed > 0n) amounts.escrowedUnits = escrowed;
  amounts.workerPaidUnits = worker;
  amounts.treasuryPaidUnits = treasuryPaid;
  amounts.chargedUnits = charged;
  amounts.refundedUnits = returned + returnedElsewhere;
  const ownReturned = returned - othersReturned;
  const returnedFromEscrow = ownReturned > returnedByHolders ? ownReturned - returnedByHolders : 0n;
  if (sharedReturn !== 0n) amounts.sharedReturnUnits = sharedReturn;
  amounts.escrowPaidUnits = escrowPaid(
    charged - diverted,
    escrowed + lockedThrough + lockedForOthers - missedEscrow - returnedFromEscrow,
  );
  return amounts;
}

/**
 * What the job's closings paid out of escrow (`paidOut`: charged, less what its locks paid
 * straight to someone else), at most what its locks and closings left in escrow for it
 * (`left`: what they put into the escrow account, less what escrow sent back to the vault):
 * what the vault statement's release rule may count as settled of the job's locks. Charged
 * counts a payout riding in a lock as paid at once, so read as settled it released the lock's
 * whole debit, payout and all, and no statement finding named the money escrow never held;
 * unbounded, a settlement paying out more than the lock brought (escrow's other money) did so.
 */
export function escrowPaid(paidOut: bigint, left: bigint): bigint {
  const bound = left > 0n ? left : 0n;
  if (paidOut <= 0n) return 0n;
  return paidOut < bound ? paidOut : bound;
}
