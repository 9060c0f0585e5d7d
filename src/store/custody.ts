import { and, inArray, sql } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";
import type { SqliteStore, Store } from "../db/client.js";
import { creditVaults, jobs, waitsForTreasuryTerm } from "../db/schema.js";
import { untiedJobsWhere } from "./custody-rules.js";
import { reopenJobs } from "./job-queue.js";
import { keyCheckSpans, sharedSpan } from "./key-checks.js";
import { pgTwins } from "./pg-twins.js";

/** The jobs of `keys` whose verdict counts their money as verified. */
const verifiedJobsOf = (keys: readonly string[]) =>
  and(
    inArray(jobs.keyFingerprint, [...keys]),
    inArray(jobs.verdict, ["verified", "partially_verified"]),
  )!;
/** Keyless jobs judged on a lock from `vault` while no key held it (see `untiedJobsWhere`). */
const untiedJobsOf = (vault: string) =>
  untiedJobsWhere(jobs, sql.raw("json_extract(c.actual, '$.vault')"), vault);

/**
 * What ties money to the customer and to the protocol, as the store pins it: the credit vault
 * of each API key (configured, or learned from the key's first lock) and, when the profile does
 * not name it, the treasury (learned once enough settlements agree). Pins never move once set:
 * a later lock from another vault, or a later payee other than the pinned treasury, is a
 * finding, not a new truth. Tables: `credit_vaults`, `treasury_evidence`, `profile_pins`.
 */

/** Credit vaults a deployment declares (`CREDIT_VAULTS`). */
export interface CustodyConfig {
  /** Vaults of this deployment, any key: a lock from any other vault is a finding. */
  vaults: readonly string[];
  /** A key's vault by key fingerprint: pinned at start, over anything learned. */
  byKey: Readonly<Record<string, string>>;
}

/** A key's pinned credit vault. */
export interface VaultPin {
  vault: string;
  source: "configured" | "learned";
}

/** What an evaluation learned, to pin with its verdict. */
export interface LearnedPins {
  /** The key's credit vault, from its first lock (when nothing pinned it before). */
  creditVault: string | null;
  /** A settlement's one payee besides worker and credit vault, while the treasury is unknown. */
  treasuryCandidate: { signature: string; address: string } | null;
  /**
   * The account the lock went into, taken for escrow because no pin made it a customer's credit
   * vault (a profile with no escrow vault). The checks read pins once per slice, so a vault
   * pinned by another job of the slice is still nobody's to them: the verdict is then stale.
   */
  escrowAccount?: string | null;
  /**
   * The vault the lock of a receipt naming no key and no vault drew on, passed because no key
   * held it as the slice read the pins. A key that holds it by the time the verdict is written
   * (pinned since, or learned by another job of the batch) makes the verdict stale: that lock
   * may be the key's customer's credits.
   */
  untiedVault?: string | null;
  /**
   * The owner of the vault the lock came from, which is also the owner of the escrow account it
   * went into, under a profile that names no escrow authority and while none is learned: the
   * first such owner written is pinned as the escrow authority (PROTOCOL.md section 2: one key
   * owns every credit vault and the escrow vault). A verdict that learned another owner than
   * the one pinned first is stale, and is decided again against the pin.
   */
  vaultOwner?: string | null;
  /**
   * Whether learning `creditVault` sends keyless verdicts drawn on it back (see `untiedJobsOf`):
   * false where the deployment lists one credit vault, whose keyless locks pass whoever holds
   * it, so each key's first lock would judge them all again for nothing.
   */
  reopensKeyless?: boolean;
}

/** The treasury as pinned by the profile, learned, or still being learned. */
export type TreasuryStatus =
  | { source: "learned"; address: string; settlements: number }
  | { source: "learning"; candidates: { address: string; settlements: number }[] };

export interface CustodyStore {
  /**
   * The pins the checks of a few jobs see: each key's credit vault, the key each vault is
   * pinned to, and the learned treasury (null when the profile pins one or none is learned).
   */
  pins(
    keys: readonly string[],
    vaults: readonly string[],
  ): Promise<{
    byKey: Map<string, VaultPin>;
    keyOfVault: Map<string, string>;
    treasury: string | null;
    /**
     * The escrow authority learned from the first lock written (see `LearnedPins.vaultOwner`),
     * null when the profile names one or none is learned yet.
     */
    escrowAuthority: string | null;
    /**
     * Those of `keys` recorded with two or more key checks: two API keys share the fingerprint
     * (`key.fingerprint_unique`).
     */
    sharedKeys?: ReadonlySet<string>;
  }>;
  /** The learned treasury with its evidence, or the leading candidates while learning. */
  treasuryStatus(): Promise<TreasuryStatus>;
}

/** Pins written with a verdict, inside the verdict writer's transaction (verdicts.ts). */
export interface CustodyPinning {
  /**
   * Pins what an evaluation learned. False when another job pinned something else first (this
   * key to another vault, or this vault to another key), or pinned the account the lock went
   * into as a credit vault, or a job of the same batch (`batch`: every job's learned pins)
   * learns it as one: the evaluation is stale and must run again. In that last case the key's
   * own vault is pinned all the same. Stale too: a keyless lock from a vault no key held
   * (`untiedVault`) that a key holds now. A vault learned is one key's: never pinned to a
   * second key by learning, and the keyless verdicts already written on a lock from it are
   * looked at again.
   */
  pin(
    job: { jobId: string; keyFingerprint?: string | null },
    learned: LearnedPins,
    t: number,
    batch?: readonly { jobId: string; learned: LearnedPins }[],
  ): boolean;
  /**
   * Records a settlement's treasury candidate; once `treasuryLearnAfter` settlements agree the
   * address is pinned, and jobs left unproven for want of it are queued again.
   */
  countTreasuryEvidence(
    jobId: string,
    candidate: { signature: string; address: string },
    t: number,
  ): void;
  /**
   * Whether the treasury is learned by now (false when the profile names it): a verdict that
   * waits for it (`waitsForTreasury`) and is written after it was pinned is stale.
   */
  treasuryLearned(): boolean;
}

/** The part of a profile custody depends on. */
export interface CustodyProfile {
  name: string;
  treasury: string | null;
  /** Owner of every credit vault and the escrow vault, when the profile names it. */
  escrowAuthority?: string | null;
  treasuryLearnAfter: number;
}

/**
 * Jobs that waited for the treasury (the SQL of `waitsForTreasury`), decided again once it is
 * known: learned, or named by the profile a verifier opens custody under. A profile that comes
 * to name it after jobs waited (as Known limits advise) pins nothing to learn, so they stayed
 * `treasury_unknown` for good, and `dataCompleteUntil`, which stops at the oldest, froze there.
 */
const treasuryWaiters = waitsForTreasuryTerm(jobs.verdict, sql`${jobs.unproven}`);

/**
 * The custody store of either dialect. A verifier passes its `config` (configured vaults are
 * pinned, and jobs waiting for a treasury the profile names are decided again, as it opens);
 * a reader (the status page) passes none, and the store writes nothing as it opens.
 */
export function createCustodyStore(
  store: Store,
  profile: CustodyProfile,
  config?: CustodyConfig,
): CustodyStore {
  return store.kind === "postgres"
    ? pgTwins().createPgCustodyStore(store, profile, config)
    : createSqliteCustodyStore(store, profile, config);
}

/**
 * Opens custody over the store. Vaults configured by key are pinned now (they win over
 * anything learned).
 */
function createSqliteCustodyStore(
  store: SqliteStore,
  profile: CustodyProfile,
  opened?: CustodyConfig,
): CustodyStore {
  const { db, sqlite } = store;
  const config = opened ?? { vaults: [], byKey: {} };
  // Raw SQL, prepared once: read for every slice of a round.
  const selectTreasury = sqlite.prepare(
    "SELECT value, evidence FROM profile_pins WHERE profile = ? AND name = 'treasury'",
  );
  // Raw SQL: a grouped count that must come back as a safe integer.
  const selectAuthority = sqlite
    .prepare("SELECT value FROM profile_pins WHERE profile = ? AND name = 'escrow_authority'")
    .pluck();
  const selectCandidates = sqlite.prepare(
    `SELECT address, count(*) AS settlements FROM treasury_evidence WHERE profile = ?
     GROUP BY address ORDER BY settlements DESC LIMIT 5`,
  );

  if (Object.keys(config.byKey).length > 0) {
    // Raw SQL: an upsert whose update is guarded (a pin that already says so is not rewritten).
    const upsert = sqlite.prepare(
      `INSERT INTO credit_vaults (key_fingerprint, vault, source, job_id, pinned_at)
       VALUES (?, ?, 'configured', NULL, ?)
       ON CONFLICT (key_fingerprint) DO UPDATE SET vault = excluded.vault, source = 'configured'
       WHERE credit_vaults.vault <> excluded.vault OR credit_vaults.source <> 'configured'`,
    );
    // A vault configured for a key is that customer's: another key that learned it (its first
    // lock came from there) loses the pin, and its verified jobs are looked at again.
    const voidLearned = sqlite.prepare(
      `DELETE FROM credit_vaults WHERE source = 'learned'
         AND vault IN (SELECT value FROM json_each(@vaults))
         AND key_fingerprint NOT IN (SELECT value FROM json_each(@keys))
       RETURNING key_fingerprint, vault`,
    );
    // So are that key's locks of the vault the ledger released: open again, the next ledger
    // round classifies them anew, where the pin now shows they are no job's lock of this key.
    const reopenLocks = sqlite.prepare(
      `UPDATE ledger_lines SET released = 0 WHERE vault = ? AND kind = 'lock' AND released = 1
         AND job_id IN (SELECT job_id FROM jobs WHERE key_fingerprint = ?)`,
    );
    const t = Date.now();
    sqlite
      .transaction(() => {
        const held = new Set<string>();
        for (const [key, vault] of Object.entries(config.byKey)) {
          if (upsert.run(key, vault, t).changes > 0) held.add(vault);
        }
        // A vault a key holds from now on: keyless locks from it are no longer no key's.
        for (const vault of held) reopenJobs(store, { where: untiedJobsOf(vault) }, t);
        const voided = voidLearned.all({
          vaults: JSON.stringify(Object.values(config.byKey)),
          keys: JSON.stringify(Object.keys(config.byKey)),
        }) as { key_fingerprint: string; vault: string }[];
        if (voided.length === 0) return;
        for (const v of voided) reopenLocks.run(v.vault, v.key_fingerprint);
        reopenJobs(store, { where: verifiedJobsOf(voided.map((v) => v.key_fingerprint)) }, t);
      })
      .immediate();
  }
  // A verifier opening custody under a profile that names the treasury: jobs left waiting to
  // learn it (under a profile that did not) are decided again (see `treasuryWaiters`).
  if (opened !== undefined && profile.treasury !== null) {
    const waiting = db.select({ id: jobs.jobId }).from(jobs).where(treasuryWaiters).limit(1);
    if (waiting.all().length > 0) {
      const t = Date.now();
      sqlite
        .transaction(() => reopenJobs(store, { where: treasuryWaiters }, t, { dueAt: 0 }))
        .immediate();
    }
  }

  // Prepared once, each list one JSON parameter: pins are read for every slice of a round, and
  // drizzle building an IN list per call cost more than SQLite running it.
  const inList = (column: SQLiteColumn) =>
    sql`${column} IN (SELECT value FROM json_each(${sql.placeholder("list")}))`;
  const pinsOfKeys = db
    .select({
      key: creditVaults.keyFingerprint,
      vault: creditVaults.vault,
      source: creditVaults.source,
    })
    .from(creditVaults)
    .where(inList(creditVaults.keyFingerprint))
    .prepare();
  const keysOfVaults = db
    .select({ key: creditVaults.keyFingerprint, vault: creditVaults.vault })
    .from(creditVaults)
    .where(inList(creditVaults.vault))
    .prepare();

  return {
    async pins(keys, vaults) {
      const byKey = new Map<string, VaultPin>();
      const keyOfVault = new Map<string, string>();
      const wantedKeys = [...new Set(keys)];
      if (wantedKeys.length > 0) {
        for (const row of pinsOfKeys.all({ list: JSON.stringify(wantedKeys) })) {
          byKey.set(row.key, { vault: row.vault, source: row.source });
        }
      }
      const wantedVaults = [...new Set(vaults)];
      if (wantedVaults.length > 0) {
        for (const row of keysOfVaults.all({ list: JSON.stringify(wantedVaults) })) {
          if (!keyOfVault.has(row.vault)) keyOfVault.set(row.vault, row.key);
        }
      }
      const treasury =
        profile.treasury !== null
          ? null
          : ((selectTreasury.get(profile.name) as { value: string } | undefined)?.value ?? null);
      const escrowAuthority =
        (profile.escrowAuthority ?? null) !== null
          ? null
          : ((selectAuthority.get(profile.name) as string | undefined) ?? null);
      const sharedKeys = new Set<string>();
      for (const [key, span] of keyCheckSpans(store, wantedKeys)) {
        if (sharedSpan(span)) sharedKeys.add(key);
      }
      return { byKey, keyOfVault, treasury, escrowAuthority, sharedKeys };
    },
    async treasuryStatus() {
      const pinned = selectTreasury.get(profile.name) as
        | { value: string; evidence: number }
        | undefined;
      if (pinned) return { source: "learned", address: pinned.value, settlements: pinned.evidence };
      const candidates = selectCandidates.all(profile.name) as {
        address: string;
        settlements: number;
      }[];
      return { source: "learning", candidates };
    },
  };
}

/** Custody's writes that compose inside the verdict writer's transaction. */
export function createCustodyPinning(store: SqliteStore, profile: CustodyProfile): CustodyPinning {
  const { sqlite } = store;
  // Raw SQL, prepared once: these run for every job inside the verdict writer's transaction,
  // the hottest path of a run.
  const selectPin = sqlite
    .prepare("SELECT vault FROM credit_vaults WHERE key_fingerprint = ?")
    .pluck();
  const selectOtherHolder = sqlite
    .prepare("SELECT key_fingerprint FROM credit_vaults WHERE vault = ? AND key_fingerprint <> ?")
    .pluck();
  const selectHolder = sqlite
    .prepare("SELECT key_fingerprint FROM credit_vaults WHERE vault = ? LIMIT 1")
    .pluck();
  const insertLearned = sqlite.prepare(
    `INSERT INTO credit_vaults (key_fingerprint, vault, source, job_id, pinned_at)
     VALUES (?, ?, 'learned', ?, ?) ON CONFLICT (key_fingerprint) DO NOTHING`,
  );
  const selectTreasury = sqlite
    .prepare("SELECT value FROM profile_pins WHERE profile = ? AND name = 'treasury'")
    .pluck();
  const insertEvidence = sqlite.prepare(
    `INSERT INTO treasury_evidence (profile, signature, address, job_id, seen_at)
     VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
  );
  // Raw SQL: the count is compared with a number, so it must come back as one.
  const countEvidence = sqlite
    .prepare("SELECT count(*) FROM treasury_evidence WHERE profile = ? AND address = ?")
    .pluck();
  const insertTreasury = sqlite.prepare(
    `INSERT INTO profile_pins (profile, name, value, evidence, pinned_at)
     VALUES (?, 'treasury', ?, ?, ?) ON CONFLICT DO NOTHING`,
  );
  const selectAuthority = sqlite
    .prepare("SELECT value FROM profile_pins WHERE profile = ? AND name = 'escrow_authority'")
    .pluck();
  const insertAuthority = sqlite.prepare(
    `INSERT INTO profile_pins (profile, name, value, evidence, pinned_at)
     VALUES (?, 'escrow_authority', ?, 1, ?) ON CONFLICT DO NOTHING`,
  );
  /**
   * Pins the owner of the credit vaults the lock showed as the escrow authority, when the
   * profile names none and none is pinned; false when the one pinned first is another.
   */
  const pinAuthority = (learned: LearnedPins, t: number): boolean => {
    const owner = learned.vaultOwner ?? null;
    if (owner === null || (profile.escrowAuthority ?? null) !== null) return true;
    insertAuthority.run(profile.name, owner, t);
    return selectAuthority.get(profile.name) === owner;
  };
  /** Pins the key's learned vault; false when a pin set first disagrees. */
  const pinOwn = (
    job: { jobId: string; keyFingerprint?: string | null },
    learned: LearnedPins,
    t: number,
  ): boolean => {
    if (learned.creditVault === null || !job.keyFingerprint) return true;
    const own = selectPin.get(job.keyFingerprint) as string | undefined;
    if (own !== undefined) return own === learned.creditVault;
    // The checks read pins once per slice, so two keys' first locks from one vault both pass
    // them; the first written takes the vault, and the other is looked at again, where the
    // pin now seen makes its lock another customer's (the IMMEDIATE transaction orders this
    // read and the insert against every other writer).
    if (selectOtherHolder.get(learned.creditVault, job.keyFingerprint) !== undefined) {
      return false;
    }
    insertLearned.run(job.keyFingerprint, learned.creditVault, job.jobId, t);
    if (learned.reopensKeyless !== false) {
      reopenJobs(store, { where: untiedJobsOf(learned.creditVault) }, t);
    }
    return true;
  };
  return {
    pin(job, learned, t, batch = []) {
      // The lock's escrow account passed as nobody's vault on the pins its slice read: one
      // pinned since, or learned by another job of this batch (written before or after this
      // one), is a customer's vault, and the lock into it is no escrow.
      const escrow = learned.escrowAccount ?? null;
      const learnedInBatch =
        escrow !== null &&
        batch.some((o) => o.jobId !== job.jobId && o.learned.creditVault === escrow);
      if (escrow !== null && !learnedInBatch && selectHolder.get(escrow) !== undefined) {
        return false;
      }
      // Stale only because another job of this batch learns the escrow account: where this
      // key's first lock drew from is still true, whatever it went into, so it is pinned. Two
      // first locks into each other's vault then both find their escrow pinned next round;
      // pinning nothing left each stale because of the other, round after round.
      const own = pinOwn(job, learned, t);
      // A keyless lock that passed as drawn on a vault no key held: a key holds it now, or
      // another job of this batch learns it (written before or after this one).
      const untied = learned.untiedVault ?? null;
      const untiedHeld =
        untied !== null &&
        (batch.some((o) => o.jobId !== job.jobId && o.learned.creditVault === untied) ||
          selectHolder.get(untied) !== undefined);
      // The vaults' owner is pinned by the first lock written: one that showed another owner
      // is stale (decided again, against the pin, its lock fails escrow.source).
      const authority = pinAuthority(learned, t);
      return own && !learnedInBatch && !untiedHeld && authority;
    },
    countTreasuryEvidence(jobId, candidate, t) {
      if (profile.treasury !== null) return;
      insertEvidence.run(profile.name, candidate.signature, candidate.address, jobId, t);
      if (selectTreasury.get(profile.name) !== undefined) return;
      const agreeing = countEvidence.get(profile.name, candidate.address) as number;
      if (agreeing < profile.treasuryLearnAfter) return;
      insertTreasury.run(profile.name, candidate.address, agreeing, t);
      reopenJobs(store, { where: treasuryWaiters }, t, { dueAt: 0 });
    },
    treasuryLearned() {
      return profile.treasury === null && selectTreasury.get(profile.name) !== undefined;
    },
  };
}
