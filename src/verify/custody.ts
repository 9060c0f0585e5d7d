import type { TransactionFacts } from "../chain/transaction-facts.js";
import type { CustodyStore } from "../store/custody.js";
import type { Custody } from "./checks.js";
import type { CustodyView, DecideJob } from "./decide.js";
import { readLock } from "./money-movements.js";
import type { Profile } from "./profiles.js";

export type { CustodyConfig } from "../store/custody.js";

/**
 * The store's custody pins as each job's checks see them (see src/store/custody.ts): the key's
 * credit vault, the deployment's vaults, the key each account a lock came from or went into is
 * pinned to, and the learned treasury. Read once per slice of jobs, before any of them is
 * written, so a vault learned from one job's lock binds the jobs of the next slice. Within a
 * slice two keys' first locks may both see a vault as nobody's: the verdict writer pins it to
 * the first, and the other's verdict is stale and decided again against that pin
 * (src/store/custody.ts `pin`). So is a verdict whose lock went into an account the checks saw
 * as nobody's vault, once a key's first lock beside it pins that account.
 */
export async function custodyViews(
  custody: CustodyStore,
  profile: Profile,
  configured: ReadonlySet<string>,
  jobs: readonly DecideJob[],
  factsOf: (signature: string) => TransactionFacts | undefined,
): Promise<CustodyView[]> {
  const keys: string[] = [];
  const vaults: string[] = [];
  for (const job of jobs) {
    if (job.keyFingerprint) keys.push(job.keyFingerprint);
    // The vaults a lock of this job drew on, and the account it went into: the checks ask
    // whom such a vault is pinned to (an escrow account that is a customer's vault is none).
    for (const sig of [job.escrowTx, job.apiEscrowTx]) {
      const facts = sig === null ? undefined : factsOf(sig);
      if (!facts) continue;
      const reading = readLock(profile, facts);
      // Keyless jobs' too: a lock from a vault some key holds is not proven to be theirs.
      for (const s of reading.sources) vaults.push(s.account);
      if (reading.escrowAccount !== null) vaults.push(reading.escrowAccount);
    }
    // The accounts a closing credited: one may be another key's vault (a settlement naming
    // two jobs sends each remainder home), whose money back the job's figures count returned.
    for (const sig of [job.settlementTx, job.apiSettlementTx]) {
      const facts = sig === null ? undefined : factsOf(sig);
      if (!facts) continue;
      for (const c of facts.tokenChanges) if (c.delta > 0n) vaults.push(c.account);
    }
  }
  const pins = await custody.pins(keys, vaults);
  const keyOfVault = (vault: string) => pins.keyOfVault.get(vault) ?? null;
  return jobs.map((job) => {
    const view: Custody = {
      pinned: (job.keyFingerprint && pins.byKey.get(job.keyFingerprint)) || null,
      configured,
      keyOfVault,
      keyShared: !!job.keyFingerprint && (pins.sharedKeys?.has(job.keyFingerprint) ?? false),
    };
    return {
      custody: view,
      learnedTreasury: pins.treasury,
      learnedEscrowAuthority: pins.escrowAuthority,
    };
  });
}
