import type { TokenInstruction, TransactionFacts } from "../../chain/transaction-facts.js";
import {
  foreignChanges,
  isOtherOwner,
  type LockReading,
  MOVEMENT_KINDS,
  readLock,
} from "../money-movements.js";
import { priceUnits } from "../profiles.js";
import { askedNoCompletion } from "./charge.js";
import type { CheckInput, CheckResult, Evaluation, ReceiptForChecks } from "./check-input.js";
import { type CheckList, fail, pass, skip } from "./check-list.js";
import { type RoleTx, roleChecks } from "./transaction.js";

/**
 * The lock: it came from the key's credit vault alone (configured, declared, or learned from
 * the key's first lock), arrived whole in one escrow account that is no customer's credit
 * vault, and moved no other mint; money of the lock returned anywhere but to that vault is
 * this check's finding too.
 */

/** The lock as the later checks use it, once the escrow checks passed. */
export interface UsableLock {
  reading: LockReading;
  creditVault: string;
  escrowAccount: string;
  slot: number;
  blockTime: number | null;
}

/** Escrow checks; returns the lock when settlement and refund checks can rest on it. */
export function escrowChecks(
  input: CheckInput,
  tx: RoleTx,
  list: CheckList,
  learned: Evaluation["learned"],
): UsableLock | null {
  const { job, profile } = input;
  const readable = roleChecks(input, tx, list);
  const later = ["escrow.balances", "escrow.source", "escrow.vault"] as const;
  if (!readable) {
    const reason = !tx.facts.succeeded
      ? "the escrow failed on chain (see escrow.succeeded)"
      : tx.stolenBy !== null
        ? "see signatures.unique"
        : "see escrow.memo and escrow.instructions";
    list.skipAll(later, reason);
    return null;
  }
  const facts = tx.facts;
  const foreign = foreignChanges(profile, facts);
  list.add(
    foreign.length === 0
      ? pass("escrow.balances", [], [])
      : fail("escrow.balances", "balances changed in another mint or token program", [], foreign),
  );

  const reading = readLock(profile, facts);
  // Source: the one account debited must be the key's credit vault.
  let creditVault: string | null = null;
  const sources = reading.sources;
  if (sources.length !== 1) {
    list.add(
      fail(
        "escrow.source",
        sources.length === 0
          ? "nothing was debited for the lock"
          : `the lock drew on ${sources.length} accounts; it must come from the key's credit vault alone`,
        { from: "the key's credit vault, alone" },
        sources,
      ),
    );
  } else {
    const source = sources[0]!.account;
    const sourceOwner = sources[0]!.owner;
    const custody = input.custody ?? { pinned: null, configured: new Set<string>() };
    const ties: { by: string; vault: string }[] = [];
    if (custody.pinned)
      ties.push({ by: `${custody.pinned.source} for the key`, vault: custody.pinned.vault });
    if (job.creditVault) ties.push({ by: "declared by the receipt", vault: job.creditVault });
    const mismatched = ties.filter((t) => t.vault !== source);
    const listed = custody.configured.size === 0 || custody.configured.has(source);
    // Every credit vault of the model is a token account of the escrow authority: a lock
    // from any other owner's account is not a customer's credits. A profile that does not name
    // that authority still knows one key owns the credit vaults and the escrow vault alike
    // (PROTOCOL.md section 2): the owner of the account the lock went into, as its token
    // balances name it. A vault another owns (handed away by a SetAuthority in a transaction
    // naming no job, or made for a fresh key by someone else) is that owner's to spend alone.
    const vaultOwner = profile.escrowAuthority ?? reading.escrowOwner;
    const ownerOk = vaultOwner === null || sourceOwner === null || sourceOwner === vaultOwner;
    // A vault pinned to another key is that customer's: this key cannot learn it as its own.
    const otherKey =
      custody.pinned === null && job.keyFingerprint ? (custody.keyOfVault?.(source) ?? null) : null;
    const takenByOther = otherKey !== null && otherKey !== job.keyFingerprint;
    // A receipt naming no key and no vault ties its lock to no customer: a vault an API key
    // holds (pinned by CREDIT_VAULTS or learned) is that key's customer's, and the lock may be
    // another customer's credits spent on this job. A deployment that lists one vault has every
    // job draw on it, so there the keyless lock from it is this job's customer's too.
    const untied = !job.keyFingerprint && ties.length === 0 && custody.configured.size !== 1;
    const heldBy = untied ? (custody.keyOfVault?.(source) ?? null) : null;
    if (mismatched.length > 0 || !listed || !ownerOk || takenByOther) {
      list.add(
        fail(
          "escrow.source",
          mismatched.length > 0
            ? `the lock was taken from ${source}, not the key's credit vault ${mismatched[0]!.vault} (${mismatched[0]!.by})`
            : !listed
              ? `the lock was taken from ${source}, which is not one of the configured credit vaults`
              : !ownerOk
                ? profile.escrowAuthority === null
                  ? `the lock was taken from ${source}, owned by ${sourceOwner}, not by ${vaultOwner}, the owner of the escrow account it went into: one escrow authority owns every credit vault and the escrow vault`
                  : `the lock was taken from ${source}, owned by ${sourceOwner}, not by the escrow authority that owns every credit vault`
                : `the lock was taken from ${source}, the credit vault of another API key (${otherKey})`,
          {
            vault:
              mismatched[0]?.vault ?? (listed ? "the key's credit vault" : [...custody.configured]),
          },
          { vault: source, owner: sourceOwner },
        ),
      );
    } else if (heldBy !== null) {
      creditVault = source;
      list.gap(
        "escrow.source",
        "vault_untied",
        `the lock came from ${source}, the credit vault of API key ${heldBy}, while the receipt names no key: nothing ties that key's customer to this job`,
      );
    } else if (ties.length > 0 || custody.configured.size > 0) {
      creditVault = source;
      // A vault declared by the receipt or allowed by the deployment's list is pinned for the
      // key too, so a later lock of the key cannot come from another listed vault.
      if (custody.pinned === null && job.keyFingerprint) {
        learned.creditVault = source;
        learned.reopensKeyless = custody.configured.size !== 1;
      }
      // No key held the vault on the pins of this slice: one that comes to hold it before the
      // verdict is written makes the verdict stale (after, the pin sends this job back).
      if (untied) learned.untiedVault = source;
      list.add(
        pass(
          "escrow.source",
          { vault: ties[0]?.vault ?? "a configured credit vault", tiedBy: ties.map((t) => t.by) },
          { vault: source },
        ),
      );
    } else if (job.keyFingerprint) {
      // The key's first lock: its vault is pinned for every later job of this key.
      creditVault = source;
      learned.creditVault = source;
      learned.reopensKeyless = custody.configured.size !== 1;
      list.add(
        pass(
          "escrow.source",
          { vault: "the key's credit vault (learned now: this is the key's first lock)" },
          { vault: source },
        ),
      );
    } else {
      creditVault = source;
      list.gap(
        "escrow.source",
        "vault_untied",
        `the lock came from ${source}, but nothing ties that vault to the customer`,
      );
    }
  }

  // Vault: everything taken arrived in the escrow account, and nothing went elsewhere.
  const customerVault =
    profile.escrowVault === null ? vaultKnownAs(input, reading.escrowAccount) : null;
  // Nobody's vault as the pins of this slice read: one pinned before the verdict is written
  // (another key's first lock judged beside this job) makes the verdict stale.
  if (profile.escrowVault === null && customerVault === null) {
    learned.escrowAccount = reading.escrowAccount;
  }
  // The escrow authority owns the escrow vault as it owns every credit vault: an account the
  // lock credited that another owns (a profile that pins no escrow vault takes whichever one
  // the lock paid) is that owner's to spend alone, not money held in escrow. A pinned escrow
  // vault's address is pinned, not its owner: a SetAuthority in a transaction naming no job
  // hands it, and every lock paid into it since, to whoever it names.
  const escrowOwner = profile.escrowAuthority !== null ? reading.escrowOwner : null;
  const ownedByOther = isOtherOwner(profile.escrowAuthority, escrowOwner);
  const expected = {
    ...(ownedByOther ? { owner: profile.escrowAuthority } : {}),
    vault:
      customerVault !== null
        ? "one escrow account, no customer's credit vault"
        : (reading.escrowAccount ?? "one escrow account"),
    taken: reading.lock.toString(),
    paidElsewhere: [],
  };
  const actual = {
    ...(customerVault !== null || ownedByOther ? { vault: reading.escrowAccount } : {}),
    ...(customerVault !== null ? { vaultIs: customerVault } : {}),
    ...(ownedByOther ? { owner: escrowOwner } : {}),
    locked: reading.lock.toString(),
    taken: reading.taken.toString(),
    paidElsewhere: reading.elsewhere,
  };
  const vaultProblem =
    reading.escrowAccount === null
      ? "the lock paid several accounts: there is no single escrow account"
      : customerVault !== null
        ? `the lock went into ${reading.escrowAccount}, ${customerVault}, not an escrow account`
        : ownedByOther
          ? `the lock went into ${reading.escrowAccount}, owned by ${escrowOwner}, not by the escrow authority that owns the escrow vault`
          : reading.lock === 0n
            ? "nothing was locked in the escrow vault"
            : reading.elsewhere.length > 0
              ? "the lock also paid accounts other than the escrow vault"
              : reading.taken !== reading.lock
                ? "more left the credit vault than arrived in the escrow vault"
                : null;
  list.add(
    vaultProblem === null
      ? pass("escrow.vault", expected, actual)
      : fail("escrow.vault", vaultProblem, expected, actual),
  );
  if (creditVault !== null) vaultSpentByDelegate(creditVault, facts, list, profile.escrowAuthority);
  ownersUnnamed(list, profile.escrowAuthority, facts, [
    { account: sources.length === 1 ? sources[0]!.account : null, check: "escrow.source" },
    { account: reading.escrowAccount, check: "escrow.vault" },
  ]);
  // A profile naming no escrow authority (none learned either: a learned one stands in for
  // it) learns it from this lock: the owner of the vault it came from, which `escrow.source`
  // passed as the owner of the escrow account it went into. Pinned with the first verdict
  // written, it judges every later lock and release as a named authority does, so a vault and
  // a fresh escrow account both handed to another key before a lock are that key's, not the
  // customer's credits held in escrow.
  if (
    profile.escrowAuthority === null &&
    sources.length === 1 &&
    sources[0]!.owner !== null &&
    list.outcome("escrow.source") === "pass" &&
    list.outcome("escrow.vault") === "pass"
  ) {
    learned.vaultOwner = sources[0]!.owner;
  }
  const usable =
    creditVault !== null &&
    vaultProblem === null &&
    foreign.length === 0 &&
    list.outcome("escrow.source") !== "fail";
  return usable
    ? {
        reading,
        creditVault: creditVault!,
        escrowAccount: reading.escrowAccount!,
        slot: facts.slot,
        blockTime: facts.blockTime,
      }
    : null;
}

/**
 * What the custody store knows `account` as, when it is a customer's credit vault: a lock into
 * it is no lock at all (the customer's credits sit in another customer's balance, and a
 * settlement paying out of it spends that customer's money). Null for any other account. Only a
 * profile that pins no escrow vault takes the one account a lock credited for its escrow, so
 * only there can the lock's escrow account be someone's vault.
 */
function vaultKnownAs(input: CheckInput, account: string | null): string | null {
  if (account === null) return null;
  const custody = input.custody;
  if (account === custody?.pinned?.vault || account === input.job.creditVault) {
    return "this key's own credit vault";
  }
  if (custody?.configured.has(account)) return "one of the configured credit vaults";
  const key = custody?.keyOfVault?.(account) ?? null;
  if (key === null) return null;
  return key === input.job.keyFingerprint
    ? "this key's own credit vault"
    : `the credit vault of another API key (${key})`;
}

/**
 * The owner every credit vault and the escrow account have while they hold customers' credits:
 * the escrow authority the profile names, else the owner the lock's token balances name for the
 * vault it came from (or for the escrow account, where they name none for the vault).
 * `escrow.source` passed the lock only where those two agree, so a profile that names no escrow
 * authority still knows who may spend the lock and the vault it returns to: whoever owned them
 * at the lock. A SetAuthority since, in a transaction naming no job, makes another the owner of
 * the vault (or of the escrow account), who then spends what comes back (or the lock) alone.
 */
export function lockOwner(escrowAuthority: string | null, reading: LockReading): string | null {
  return escrowAuthority ?? reading.sources[0]?.owner ?? reading.escrowOwner ?? null;
}

/**
 * Remainders or refunds sent to a customer's vault other than the one the lock came from, or
 * to that vault while its owner after the transaction is not the owner of the credit vaults
 * (`lockOwner`: the escrow authority, or the vault's owner at the lock where the profile names
 * none), changed by a SetAuthority since the lock: the owner named can spend it alone, as it
 * could a lock's source, which this check fails too.
 */
export function misdirectedReturn(
  lock: UsableLock,
  misdirected: { account: string; owner: string | null; amount: string }[],
  list: CheckList,
  escrowAuthority: string | null,
) {
  if (misdirected.length === 0) return;
  const vaultOwner = lockOwner(escrowAuthority, lock.reading);
  const who =
    escrowAuthority === null
      ? `not ${vaultOwner}, its owner when the lock left it`
      : "not the escrow authority that owns every credit vault";
  const elsewhere = misdirected.filter((m) => m.account !== lock.creditVault);
  const owned = misdirected.filter((m) => m.account === lock.creditVault);
  const why = [
    ...(elsewhere.length > 0
      ? [
          `money of this lock went back to ${elsewhere.map((m) => m.account).join(", ")}, not to the credit vault it came from`,
        ]
      : []),
    ...owned.map(
      (m) =>
        `money of this lock went back to its credit vault ${m.account} while ${m.owner} owned it, ${who}: that owner can spend it alone`,
    ),
  ];
  list.replace(
    fail(
      "escrow.source",
      why.join("; "),
      owned.length > 0
        ? { returnedTo: lock.creditVault, owner: vaultOwner }
        : { returnedTo: lock.creditVault },
      { returnedTo: misdirected },
    ),
  );
}

/**
 * The escrow account paid this job's release (settlement or refund) while another than the
 * escrow authority owned it (where the profile names none, another than its owner after the
 * lock, `lockOwner`): a SetAuthority between the lock and its release, in a transaction naming
 * no job, handed the lock (and every other lock held there) to that owner, who may spend it
 * alone; a release it signed paying exactly what it should shows only that the owner gave this
 * one back. `escrow.vault` judged the owner after the lock; this judges it at release.
 */
export function escrowOwnedAtRelease(
  lock: UsableLock,
  facts: TransactionFacts,
  signature: string,
  list: CheckList,
  escrowAuthority: string | null,
) {
  const owner =
    facts.tokenChanges.find((c) => c.account === lock.escrowAccount)?.owner ??
    facts.ownersAfter?.find((o) => o.account === lock.escrowAccount)?.owner ??
    null;
  const expected = escrowAuthority ?? lock.reading.escrowOwner;
  if (!isOtherOwner(expected, owner)) {
    escrowSpentByDelegate(lock, facts, signature, list, escrowAuthority);
    return;
  }
  const who =
    escrowAuthority === null
      ? `not ${expected}, its owner when the lock went into it`
      : "not the escrow authority that owns the escrow vault";
  list.replace(
    fail(
      "escrow.vault",
      `the escrow account ${lock.escrowAccount} released this job's lock while ${owner} owned it, ${who}: the lock was that owner's to spend alone`,
      { vault: lock.escrowAccount, owner: expected },
      { vault: lock.escrowAccount, owner, releasedBy: signature },
    ),
  );
}

/**
 * A job's transaction whose token balances name no owner for the escrow account or the credit
 * vault: who could spend the lock, or the money returned, is not known, so the check that asks
 * it cannot pass. Every node names owners since 2021; one that leaves them out (the operator's,
 * say) would otherwise pass a vault a SetAuthority gave away, and under a profile naming no
 * escrow authority every owner rule at once (the owners the lock's balances name are the only
 * ones known there). Replaces only a passing check: a finding stays the finding.
 */
export function ownersUnnamed(
  list: CheckList,
  escrowAuthority: string | null,
  facts: TransactionFacts,
  accounts: { account: string | null; check: "escrow.source" | "escrow.vault" }[],
) {
  const whose = escrowAuthority === null ? "its owner at the lock" : "the escrow authority";
  for (const { account, check } of accounts) {
    if (account === null || list.outcome(check) !== "pass") continue;
    const change = facts.tokenChanges.find((c) => c.account === account);
    const owner =
      change?.owner ?? facts.ownersAfter?.find((o) => o.account === account)?.owner ?? null;
    if (change === undefined || owner !== null) continue;
    list.unproven.add("owner_unknown");
    list.replace(
      skip(
        check,
        `the node named no owner for ${account} in ${facts.signature}: whether ${whose} owned it is not known`,
      ),
    );
  }
}

/**
 * The key that may sign a transfer out of `account` as its owner: the escrow authority where the
 * profile names it, else the owner the transaction's token balances name for `account` (null when
 * they name none). A profile naming no escrow authority (`decentral-mainnet`: the programs are not
 * public) still knows who owns the account from the chain: PROTOCOL.md section 2 has one owner
 * (the escrow authority) hold every credit vault and the escrow vault and spend them itself, and
 * section 3 allows no Approve on any account a job touches, so an honest lock or release is signed
 * by that owner, and a transfer another key signed is a delegate's.
 */
function spendingOwner(
  facts: TransactionFacts,
  account: string,
  escrowAuthority: string | null,
): string | null {
  if (escrowAuthority !== null) return escrowAuthority;
  return (
    facts.tokenChanges.find((c) => c.account === account)?.owner ??
    facts.ownersAfter?.find((o) => o.account === account)?.owner ??
    null
  );
}

/**
 * The first transfer or burn out of `account` in `facts` that its owner did not sign (its
 * authority place names another key: a delegate), with the owner expected (`spendingOwner`).
 * Facts stored before that place was kept fall back to the owner being named at all.
 */
function spentByOther(
  facts: TransactionFacts,
  account: string,
  escrowAuthority: string | null,
): { spent: TokenInstruction; owner: string } | undefined {
  const owner = spendingOwner(facts, account, escrowAuthority);
  if (owner === null) return undefined;
  const spent = facts.tokenInstructions.find(
    (ix) =>
      ix.source === account &&
      MOVEMENT_KINDS.has(ix.kind) &&
      (ix.authority === undefined ? !ix.accounts.includes(owner) : ix.authority !== owner),
  );
  return spent === undefined ? undefined : { spent, owner };
}

/**
 * The lock left the credit vault by a transfer the escrow authority that owns it did not sign: a
 * delegate an Approve named spent it. Its money went where a lock's should, but that delegate can
 * spend the vault's credits alone, and the Approve that made it is seen by no step of any job:
 * only a statement that reads the vault's Approve names it, and none does where the Approve ran
 * inside another program's call served with no inner instructions and the allowance was the lock
 * to the unit (the balance read then shows no delegate left). The same rule as the escrow
 * account's at release (`escrowSpentByDelegate`): the lock's one transaction is where the
 * delegate shows for sure, so its job fails `escrow.source` on it.
 */
function vaultSpentByDelegate(
  vault: string,
  facts: TransactionFacts,
  list: CheckList,
  escrowAuthority: string | null,
) {
  const found = spentByOther(facts, vault, escrowAuthority);
  if (found === undefined) return;
  const { spent, owner } = found;
  const who = escrowAuthority === null ? `its owner ${owner}` : "the escrow authority that owns it";
  list.replace(
    fail(
      "escrow.source",
      `the lock left the credit vault ${vault} by a ${spent.kind} ${who} did not sign: a delegate spent it, who may spend the vault's credits alone`,
      { vault, spentBy: owner },
      { vault, spentBy: spent.authority ?? spent.accounts },
    ),
  );
}

/**
 * Money left the escrow account in this job's release by a transfer or burn the escrow
 * authority did not sign: a delegate an Approve named (in a transaction naming no job, after
 * the lock) spent it, and could spend every lock held there alone, as a new owner could. A
 * token instruction names its authority at a fixed place among its accounts (a multisig owner
 * too): another key there is a delegate, whatever the accounts after it name (the escrow
 * authority's address added there is read by nobody and signs nothing). Facts stored before
 * that place was kept fall back to the escrow authority being named at all.
 */
function escrowSpentByDelegate(
  lock: UsableLock,
  facts: TransactionFacts,
  signature: string,
  list: CheckList,
  escrowAuthority: string | null,
) {
  const found = spentByOther(facts, lock.escrowAccount, escrowAuthority);
  if (found === undefined) return;
  const { spent, owner } = found;
  const who = escrowAuthority === null ? `its owner ${owner}` : "the escrow authority";
  list.replace(
    fail(
      "escrow.vault",
      `the escrow account ${lock.escrowAccount} released this job's lock by a ${spent.kind} ${who} did not sign: a delegate spent it, who may spend the lock alone`,
      { vault: lock.escrowAccount, owner },
      {
        vault: lock.escrowAccount,
        spentBy: spent.authority ?? spent.accounts,
        releasedBy: signature,
      },
    ),
  );
}

/**
 * `escrow.single`: one job id locks the customer's credits once. Any other transaction the
 * job's receipts or jobs-API answers name that carries this job's escrow memo and moves money
 * is a second lock: the operator answered the same job id twice and took the credits twice.
 * Whether it was returned is not asked: a refund names the job, not the lock, so no return
 * can be tied to one lock rather than the other.
 */
export function singleLock(
  input: CheckInput,
  escrowSig: string | null,
  named: readonly string[],
  isLockOfJob: (facts: TransactionFacts) => boolean,
): CheckResult {
  const { profile, transactions } = input;
  const others = named
    .filter((s) => s !== escrowSig)
    .flatMap((signature) => {
      const facts = transactions.get(signature);
      if (!facts?.succeeded || !isLockOfJob(facts)) return [];
      const reading = readLock(profile, facts);
      if (reading.taken === 0n && reading.lock === 0n) return [];
      return [
        {
          signature,
          lock: reading.lock.toString(),
          taken: reading.taken.toString(),
          from: reading.sources,
        },
      ];
    });
  const locks = others.length + (escrowSig === null ? 0 : 1);
  const actual = { escrow: escrowSig, otherLocks: others };
  return locks <= 1
    ? pass("escrow.single", { locks: 1 }, actual)
    : fail(
        "escrow.single",
        `the job was locked ${locks} times: ${others
          .map(
            (o) => `${o.signature} took ${o.taken} from ${o.from.map((m) => m.account).join(", ")}`,
          )
          .join("; ")}; one job id locks the customer's credits once`,
        { locks: 1 },
        actual,
      );
}

/**
 * The completion-token ceiling the job's lock is the price at: the receipt's `max_tokens`, or
 * the profile's default where a null provably means the request set none. Only the proxy knows
 * that: it read the request it forwarded, and a named model shows the body was a JSON object.
 * A receipt sent to the ingest API (the fetch wrapper's too) leaves the field out as well when
 * its sender did not record it, so there a null says nothing about the request.
 */
export function lockCeilingTokens(
  job: ReceiptForChecks,
  defaultMaxTokens: number,
): { tokens: number; defaulted: boolean } | null {
  if (job.maxTokens !== null) return { tokens: job.maxTokens, defaulted: false };
  return job.source === "proxy" && job.model !== null
    ? { tokens: defaultMaxTokens, defaulted: true }
    : null;
}

/**
 * `escrow.within_ceiling`: the lock is at most the price at the request's ceiling, the most
 * the job can cost. A larger lock ties up credits the job can never spend (one lock can take a
 * customer's whole vault and answer their next jobs 402), even when the rest comes back, and a
 * refund of it is as much an over-lock. Below that price the lock is bounded by
 * `escrow.covers_charge`. A ceiling or price not known skips it without leaving money
 * unproven: the lock came back or was charged, and the other checks judge that.
 */
export function lockWithinCeiling(
  input: CheckInput,
  lock: UsableLock | null,
  escrowSkip: string,
): CheckResult {
  const { job, profile } = input;
  const name = "escrow.within_ceiling";
  if (lock === null) return skip(name, escrowSkip);
  const asked = askedNoCompletion(job);
  if (asked !== null) {
    const { described, ...request } = asked;
    const expected = { lockAtMost: "0", ...request };
    const actual = { lock: lock.reading.lock.toString() };
    return lock.reading.lock === 0n
      ? pass(name, expected, actual)
      : fail(
          name,
          `the request was ${described}, which asks for no completion: a job answering it may lock nothing`,
          expected,
          actual,
        );
  }
  if (job.model === null) return skip(name, "the receipt does not name the model asked for");
  const ceiling = lockCeilingTokens(job, profile.defaultMaxTokens);
  if (ceiling === null) {
    return skip(
      name,
      "the receipt records no max_tokens, and its source cannot say the request set none",
    );
  }
  const most = priceUnits(profile, job.model, ceiling.tokens);
  if (most === null) {
    return skip(name, `the profile has no price for model ${JSON.stringify(job.model)}`);
  }
  const expected = {
    lockAtMost: most.toString(),
    model: job.model,
    maxTokens: ceiling.tokens,
    ...(ceiling.defaulted ? { maxTokensFrom: "the profile's default: the request set none" } : {}),
  };
  const actual = { lock: lock.reading.lock.toString() };
  return lock.reading.lock <= most
    ? pass(name, expected, actual)
    : fail(
        name,
        `the lock exceeds the price of ${job.model} at ${ceiling.tokens} completion tokens${ceiling.defaulted ? " (the default: the request set no max_tokens)" : ""}, the most the job can cost`,
        expected,
        actual,
      );
}
