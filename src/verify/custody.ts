import type { Store } from "../db/client.js";
import type { Custody, Evaluation, ReceiptForChecks } from "./checks.js";
import type { Profile } from "./profiles.js";

/**
 * What ties money to the customer and to the protocol, as the store pins it: the credit vault
 * of each API key (configured, or learned from the key's first lock) and, when the profile does
 * not name it, the treasury (learned once enough settlements agree). Pins never move once set:
 * a later lock from another vault, or a later payee other than the pinned treasury, is a
 * finding, not a new truth.
 */

/** Credit vaults a deployment declares (`CREDIT_VAULTS`). */
export interface CustodyConfig {
  /** Vaults of this deployment, any key: a lock from any other vault is a finding. */
  vaults: readonly string[];
  /** A key's vault by key fingerprint: pinned at start, over anything learned. */
  byKey: Readonly<Record<string, string>>;
}

export interface CustodyStore {
  /** What ties the job's lock to its customer. */
  of(job: Pick<ReceiptForChecks, "keyFingerprint">): Custody;
  /** The learned treasury of this profile, when the profile pins none. */
  treasury(): string | null;
  /**
   * Pins what an evaluation learned, inside the caller's write transaction. False when another
   * job pinned something else first: the evaluation is stale and must run again.
   */
  pin(
    job: Pick<ReceiptForChecks, "jobId" | "keyFingerprint">,
    learned: Evaluation["learned"],
    t: number,
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
}

export function createCustodyStore(
  store: Store,
  profile: Profile,
  config: CustodyConfig = { vaults: [], byKey: {} },
): CustodyStore {
  const { sqlite } = store;
  const configured = new Set(config.vaults);
  const selectKeyOfVault = sqlite
    .prepare("SELECT key_fingerprint FROM credit_vaults WHERE vault = ? LIMIT 1")
    .pluck();
  const keyOfVault = (vault: string) => (selectKeyOfVault.get(vault) as string | undefined) ?? null;
  const selectPin = sqlite.prepare(
    "SELECT vault, source FROM credit_vaults WHERE key_fingerprint = ?",
  );
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
  const countEvidence = sqlite
    .prepare("SELECT count(*) FROM treasury_evidence WHERE profile = ? AND address = ?")
    .pluck();
  const insertTreasury = sqlite.prepare(
    `INSERT INTO profile_pins (profile, name, value, evidence, pinned_at)
     VALUES (?, 'treasury', ?, ?, ?) ON CONFLICT DO NOTHING`,
  );
  // Jobs that waited for the treasury are decided again now that it is known.
  const reopenTreasuryWaiters = sqlite.prepare(
    `UPDATE jobs SET verdict = 'pending', next_verify_at = 0, lease_owner = NULL,
       lease_until = NULL, updated_at = ?
     WHERE verdict = 'partially_verified' AND unproven LIKE '%"treasury_unknown"%'`,
  );

  if (Object.keys(config.byKey).length > 0) {
    const upsert = sqlite.prepare(
      `INSERT INTO credit_vaults (key_fingerprint, vault, source, job_id, pinned_at)
       VALUES (?, ?, 'configured', NULL, ?)
       ON CONFLICT (key_fingerprint) DO UPDATE SET vault = excluded.vault, source = 'configured'
       WHERE credit_vaults.vault <> excluded.vault OR credit_vaults.source <> 'configured'`,
    );
    const t = Date.now();
    sqlite
      .transaction(() => {
        for (const [key, vault] of Object.entries(config.byKey)) upsert.run(key, vault, t);
      })
      .immediate();
  }

  return {
    of(job) {
      const row = job.keyFingerprint
        ? (selectPin.get(job.keyFingerprint) as
            | { vault: string; source: "configured" | "learned" }
            | undefined)
        : undefined;
      return { pinned: row ?? null, configured, keyOfVault };
    },
    treasury() {
      if (profile.treasury !== null) return null;
      return (selectTreasury.get(profile.name) as string | undefined) ?? null;
    },
    pin(job, learned, t) {
      if (learned.creditVault === null || !job.keyFingerprint) return true;
      insertLearned.run(job.keyFingerprint, learned.creditVault, job.jobId, t);
      const row = selectPin.get(job.keyFingerprint) as { vault: string } | undefined;
      return row?.vault === learned.creditVault;
    },
    countTreasuryEvidence(jobId, candidate, t) {
      if (profile.treasury !== null) return;
      insertEvidence.run(profile.name, candidate.signature, candidate.address, jobId, t);
      if (selectTreasury.get(profile.name) !== undefined) return;
      const agreeing = countEvidence.get(profile.name, candidate.address) as number;
      if (agreeing < profile.treasuryLearnAfter) return;
      insertTreasury.run(profile.name, candidate.address, agreeing, t);
      reopenTreasuryWaiters.run(t);
    },
  };
}
