import { describe, expect, it } from "vitest";
import { localnetProfile, parseProfile, profileId } from "../src/verify/profiles.js";

/** Which profile judged a verdict is told by its id: content, not spelling, decides it. */
describe("profileId", () => {
  it("is the name and a digest of the profile's effective content", () => {
    expect(profileId(localnetProfile)).toMatch(/^localnet@[0-9a-f]{16}$/);
  });

  it("is the same for the same content in another key order, with defaults spelt out or not", () => {
    const reordered = parseProfile(
      Object.fromEntries(Object.entries(localnetProfile).reverse()) as unknown,
    );
    expect(profileId(reordered)).toBe(profileId(localnetProfile));
    const { dropAfterSlots: _, ...withoutDefault } = localnetProfile;
    expect(profileId(parseProfile(withoutDefault))).toBe(profileId(localnetProfile));
  });

  it("changes with a price or the treasury", () => {
    const price = parseProfile({
      ...localnetProfile,
      pricing: {
        ...localnetProfile.pricing,
        "qwen3-8b": { creditsPerRequest: 9, creditsPer1kTokens: 4 },
      },
    });
    expect(profileId(price)).not.toBe(profileId(localnetProfile));
    const treasury = parseProfile({
      ...localnetProfile,
      treasury: localnetProfile.escrowVault,
    });
    expect(profileId(treasury)).not.toBe(profileId(localnetProfile));
  });

  it("is the same with another cluster, which only explorer links and a start-up warning read", () => {
    // Swapping `custom` for `localnet` in a profile file judged every final job again.
    const relinked = parseProfile({ ...localnetProfile, cluster: "devnet" });
    expect(profileId(relinked)).toBe(profileId(localnetProfile));
  });

  it("is the same with the token programs or payout rates listed in another order", () => {
    const reordered = parseProfile({
      ...localnetProfile,
      tokenPrograms: [...localnetProfile.tokenPrograms].reverse(),
      payout: { ...localnetProfile.payout, ratesBps: [8500, 7500] },
    });
    expect(profileId(reordered)).toBe(profileId(localnetProfile));
    expect(profileId(localnetProfile)).toBe("localnet@2d63503b9d1c5483");
  });
});
