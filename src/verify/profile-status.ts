import type { Store } from "../db/client.js";
import { createCustodyStore } from "../store/custody.js";
import { type Profile, profileId } from "./profiles.js";

/**
 * What a profile cannot check for any job (profile-level gaps, said once rather than on every
 * job) and what the store learned in its place. Shown by `/readyz`, reports and the nightly run.
 */
export interface ProfileStatus {
  name: string;
  /** The profile's `profileId` (name and content digest): what its verdicts are written under. */
  id: string;
  /** Checks no job can pass under this profile, with why. */
  gaps: { check: string; reason: string }[];
  treasury:
    | { source: "profile"; address: string }
    | { source: "learned"; address: string; settlements: number }
    | {
        source: "learning";
        candidates: { address: string; settlements: number }[];
        needed: number;
      };
}

/** The profile's gaps and the treasury as pinned, learned or still being learned. */
export async function profileStatus(store: Store, profile: Profile): Promise<ProfileStatus> {
  const gaps: ProfileStatus["gaps"] = [];
  if (profile.programs.jobEscrow === null) {
    gaps.push({
      check: "escrow.program, refund.program",
      reason:
        "the job_escrow program id is not known: the program that moved the lock is not proven",
    });
  }
  if (profile.programs.settlement === null) {
    gaps.push({
      check: "settlement.program",
      reason: "the settlement program id is not known",
    });
  }
  if (profile.treasury !== null) {
    return {
      name: profile.name,
      id: profileId(profile),
      gaps,
      treasury: { source: "profile", address: profile.treasury },
    };
  }
  const treasury = await createCustodyStore(store, profile).treasuryStatus();
  if (treasury.source === "learned")
    return { name: profile.name, id: profileId(profile), gaps, treasury };
  gaps.push({
    check: "settlement.recipients",
    reason: `the treasury is not known yet: settlements stay partially verified until ${profile.treasuryLearnAfter} agree on one address`,
  });
  return {
    name: profile.name,
    id: profileId(profile),
    gaps,
    treasury: { ...treasury, needed: profile.treasuryLearnAfter },
  };
}
