import { describe, expect, it } from "vitest";
import type { PgStore } from "../src/db/pg/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import { DAY_MS } from "../src/db/rollups.js";
import { type CustodyProfile, createCustodyStore } from "../src/store/custody.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createVerdictStore, type VerdictWrite } from "../src/store/verdicts.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { fakeSignature } from "./support/job-rows.js";
import { linesOf, seedCreditVault, seedJob } from "./support/seed-ledger.js";
import {
  readJob,
  readProfilePins,
  readVaultPins,
  seedJobs,
  seedTreasuryEvidence,
  treasuryStatusOf,
} from "./support/seed-verdicts.js";

const profile: CustodyProfile = { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 };
const T = Date.UTC(2026, 10, 2, 9);
const DAY1 = Date.UTC(2026, 10, 1, 12);

/** A verified decision whose evaluation learned `learned`. */
function learning(
  jobId: string,
  keyFingerprint: string,
  learned: VerdictWrite["evaluation"] extends infer E
    ? E extends { learned: infer L }
      ? L
      : never
    : never,
): VerdictWrite {
  return {
    job: { jobId, keyFingerprint, verdictAt: null, verifyAttempts: 0 },
    verdict: "verified",
    nextVerifyAt: T + 60_000,
    lastError: null,
    commitment: "finalized",
    evaluation: {
      amounts: {
        escrowedUnits: 400_000n,
        chargedUnits: 80_000n,
        workerPaidUnits: 60_000n,
        treasuryPaidUnits: 20_000n,
        refundedUnits: 320_000n,
        expectedChargeUnits: 80_000n,
        feesLamports: 10_000n,
      },
      unproven: [],
      learned,
    },
    checks: [],
  };
}

describe.each(dialects)("custody store on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("pins configured vaults at open, over a learned one, and answers the checks' pins", async () => {
    const store = await stores.open();
    await seedJobs(store, [{ jobId: "job-1", keyFingerprint: "kf_b" }]);
    await createVerdictStore(store, profile).write(
      [learning("job-1", "kf_b", { creditVault: "LearnedB", treasuryCandidate: null })],
      { owner: "owner-a", runId: null, t: T },
    );
    const custody = createCustodyStore(store, profile, {
      vaults: ["VaultA", "VaultB"],
      byKey: { kf_a: "VaultA", kf_b: "VaultB" },
    });
    const pins = await custody.pins(
      ["kf_a", "kf_b", "kf_c", "kf_a"],
      ["VaultB", "LearnedB", "Nope"],
    );
    expect(pins).toEqual({
      byKey: new Map([
        ["kf_a", { vault: "VaultA", source: "configured" }],
        ["kf_b", { vault: "VaultB", source: "configured" }],
      ]),
      keyOfVault: new Map([["VaultB", "kf_b"]]),
      treasury: null,
      escrowAuthority: null,
      // No job names a key check: no key is shared.
      sharedKeys: new Set(),
    });
    // Opening again with the same configuration rewrites nothing.
    const before = await readVaultPins(store);
    await createCustodyStore(store, profile, { vaults: [], byKey: { kf_a: "VaultA" } }).pins(
      [],
      [],
    );
    expect(await readVaultPins(store)).toEqual(before);
  });

  it("never lets a key learn a vault another key holds, in one batch or a later one", async () => {
    const store = await stores.open();
    await seedJobs(
      store,
      ["job-1", "job-2", "job-3", "job-4", "job-5", "job-6", "job-7"].map((jobId) => ({
        jobId,
        keyFingerprint: "kf_x",
      })),
    );
    await createCustodyStore(store, profile, { vaults: [], byKey: { kf_d: "VD" } }).pins([], []);
    const learn = (jobId: string, key: string, vault: string) =>
      learning(jobId, key, { creditVault: vault, treasuryCandidate: null });
    const context = { owner: "owner-a", runId: null, t: T };
    // One batch, as the checks of one slice see it: no key had a pin when they were read.
    const first = await createVerdictStore(store, profile).write(
      [learn("job-1", "kf_a", "V1"), learn("job-2", "kf_b", "V1"), learn("job-3", "kf_a", "V1")],
      context,
    );
    // Later: another key's lock from V1, or from a configured key's vault; a key learning its
    // own vault; the configured key's own vault, learned again by a check that ran before.
    const later = await createVerdictStore(store, profile).write(
      [
        learn("job-4", "kf_c", "V1"),
        learn("job-5", "kf_e", "VD"),
        learn("job-6", "kf_b", "VB"),
        learn("job-7", "kf_d", "VD"),
      ],
      context,
    );
    expect({ first, later }).toEqual({
      first: [true, false, true],
      later: [false, false, true, true],
    });
    for (const jobId of ["job-2", "job-4", "job-5"]) {
      expect(await readJob(store, jobId)).toMatchObject({ verdict: "pending", nextVerifyAt: T });
    }
    expect(await readVaultPins(store)).toEqual([
      { key: "kf_a", vault: "V1", source: "learned", jobId: "job-1" },
      { key: "kf_b", vault: "VB", source: "learned", jobId: "job-6" },
      { key: "kf_d", vault: "VD", source: "configured", jobId: null },
    ]);
  });

  it("looks again at a verdict whose lock went into an account pinned as a credit vault since its checks read the pins", async () => {
    const store = await stores.open();
    await seedJobs(
      store,
      ["job-1", "job-2", "job-3", "job-4", "job-5"].map((jobId) => ({
        jobId,
        keyFingerprint: "kf_x",
      })),
    );
    const context = { owner: "owner-a", runId: null, t: T };
    // One batch: kf_a's lock went into V2 while nobody held it, and kf_b's first lock, written
    // after it, learns V2; kf_c's lock went into an account nobody learns.
    const first = await createVerdictStore(store, profile).write(
      [
        learning("job-1", "kf_a", {
          creditVault: null,
          treasuryCandidate: null,
          escrowAccount: "V2",
        }),
        learning("job-2", "kf_b", { creditVault: "V2", treasuryCandidate: null }),
        learning("job-3", "kf_c", {
          creditVault: null,
          treasuryCandidate: null,
          escrowAccount: "E3",
        }),
      ],
      context,
    );
    // Later, on pins read before kf_b's was written: a lock into V2, and a first lock whose
    // escrow is V2 too, which pins nothing.
    const later = await createVerdictStore(store, profile).write(
      [
        learning("job-4", "kf_c", {
          creditVault: null,
          treasuryCandidate: null,
          escrowAccount: "V2",
        }),
        learning("job-5", "kf_e", {
          creditVault: "V5",
          treasuryCandidate: null,
          escrowAccount: "V2",
        }),
      ],
      context,
    );
    expect({ first, later }).toEqual({ first: [false, true, true], later: [false, false] });
    for (const jobId of ["job-1", "job-4", "job-5"]) {
      expect(await readJob(store, jobId)).toMatchObject({ verdict: "pending", nextVerifyAt: T });
    }
    expect(await readVaultPins(store)).toEqual([
      { key: "kf_b", vault: "V2", source: "learned", jobId: "job-2" },
    ]);
  });

  it("pins both vaults of two first locks that went into each other's vault, so the next round sees them", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "job-a", keyFingerprint: "kf_a" },
      { jobId: "job-b", keyFingerprint: "kf_b" },
    ]);
    const context = { owner: "owner-a", runId: null, t: T };
    // One batch, on pins that held neither vault: kf_a's first lock went V1 -> V2, kf_b's
    // V2 -> V1. Each is stale because of the other; if neither pinned its own vault, every
    // round would rebuild this batch and find them stale again.
    const written = await createVerdictStore(store, profile).write(
      [
        learning("job-a", "kf_a", {
          creditVault: "V1",
          treasuryCandidate: null,
          escrowAccount: "V2",
        }),
        learning("job-b", "kf_b", {
          creditVault: "V2",
          treasuryCandidate: null,
          escrowAccount: "V1",
        }),
      ],
      context,
    );
    expect(written).toEqual([false, false]);
    for (const jobId of ["job-a", "job-b"]) {
      expect(await readJob(store, jobId)).toMatchObject({ verdict: "pending", nextVerifyAt: T });
    }
    expect(await readVaultPins(store)).toEqual([
      { key: "kf_a", vault: "V1", source: "learned", jobId: "job-a" },
      { key: "kf_b", vault: "V2", source: "learned", jobId: "job-b" },
    ]);
    // The next round's checks see each lock's account as the other customer's vault.
    const pins = await createCustodyStore(store, profile, { vaults: [], byKey: {} }).pins(
      [],
      ["V1", "V2"],
    );
    expect(pins.keyOfVault).toEqual(
      new Map([
        ["V1", "kf_a"],
        ["V2", "kf_b"],
      ]),
    );
  });

  it("takes a configured vault from a key that learned it, and looks at that key's jobs again", async () => {
    // Key kf_b's first lock came from kf_a's vault, so kf_b learned it; configuring the vault
    // for kf_a must not leave kf_b free to keep paying from it, nor its jobs verified.
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "job-b1", keyFingerprint: "kf_b" },
      { jobId: "job-a1", keyFingerprint: "kf_a" },
    ]);
    const context = { owner: "owner-a", runId: null, t: T };
    await createVerdictStore(store, profile).write(
      [
        learning("job-b1", "kf_b", { creditVault: "V1", treasuryCandidate: null }),
        learning("job-a1", "kf_a", { creditVault: null, treasuryCandidate: null }),
      ],
      context,
    );
    expect((await readJob(store, "job-b1"))?.verdict).toBe("verified");
    await createCustodyStore(store, profile, { vaults: [], byKey: { kf_a: "V1" } }).pins([], []);
    expect(await readVaultPins(store)).toEqual([
      { key: "kf_a", vault: "V1", source: "configured", jobId: null },
    ]);
    expect((await readJob(store, "job-b1"))?.verdict).toBe("pending");
    expect((await readJob(store, "job-a1"))?.verdict).toBe("verified");
  });

  it("looks again at a receipt naming no key whose lock passed from a vault a key then learns", async () => {
    // The operator drew a keyless job on customer 2's vault before customer 2's first job; the
    // lock passed as a listed vault no key held. Once kf_b learns V2, that lock may be its
    // customer's credits: the verdict must not depend on which came first.
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "keyless-v2", keyFingerprint: null },
      { jobId: "keyless-v3", keyFingerprint: null },
      { jobId: "keyed-v2", keyFingerprint: "kf_c" },
      { jobId: "kf_b-first", keyFingerprint: "kf_b" },
    ]);
    const context = { owner: "owner-a", runId: null, t: T };
    const drewOn = (jobId: string, key: string | null, vault: string): VerdictWrite => {
      const d = learning(jobId, "", { creditVault: null, treasuryCandidate: null });
      return {
        ...d,
        job: { ...d.job, keyFingerprint: key },
        checks: [
          {
            name: "escrow.source",
            outcome: "pass",
            reason: null,
            expected: { vault: "a configured credit vault", tiedBy: [] },
            actual: { vault },
          },
        ],
      };
    };
    await createVerdictStore(store, profile).write(
      [
        drewOn("keyless-v2", null, "V2"),
        drewOn("keyless-v3", null, "V3"),
        drewOn("keyed-v2", "kf_c", "V2"),
      ],
      context,
    );
    const later = { ...context, t: T + 1 };
    await createVerdictStore(store, profile).write(
      [learning("kf_b-first", "kf_b", { creditVault: "V2", treasuryCandidate: null })],
      later,
    );
    expect(await readJob(store, "keyless-v2")).toMatchObject({
      verdict: "pending",
      nextVerifyAt: T + 1,
      leaseOwner: null,
    });
    for (const jobId of ["keyless-v3", "keyed-v2", "kf_b-first"]) {
      expect((await readJob(store, jobId)).verdict).toBe("verified");
    }
    // Where the deployment lists one vault its keyless locks pass whoever holds it: a key
    // learning it sends none of them back to be judged again for nothing.
    await seedJobs(store, [{ jobId: "kf_d-first", keyFingerprint: "kf_d" }]);
    await createVerdictStore(store, profile).write([drewOn("keyless-v3", null, "V3")], context);
    await createVerdictStore(store, profile).write(
      [
        learning("kf_d-first", "kf_d", {
          creditVault: "V3",
          treasuryCandidate: null,
          reopensKeyless: false,
        }),
      ],
      later,
    );
    expect((await readJob(store, "keyless-v3")).verdict).toBe("verified");
  });

  it("looks again at a receipt naming no key whose lock passed from a vault then configured for a key", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "keyless-v1", keyFingerprint: null },
      { jobId: "keyless-v3", keyFingerprint: null },
    ]);
    const context = { owner: "owner-a", runId: null, t: T };
    await createVerdictStore(store, profile).write(
      ["keyless-v1", "keyless-v3"].map((jobId) => {
        const d = learning(jobId, "", { creditVault: null, treasuryCandidate: null });
        return {
          ...d,
          job: { ...d.job, keyFingerprint: null },
          checks: [
            {
              name: "escrow.source" as const,
              outcome: "pass" as const,
              reason: null,
              expected: { vault: "a configured credit vault", tiedBy: [] },
              actual: { vault: jobId === "keyless-v1" ? "V1" : "V3" },
            },
          ],
        };
      }),
      context,
    );
    await createCustodyStore(store, profile, { vaults: [], byKey: { kf_a: "V1" } }).pins([], []);
    expect((await readJob(store, "keyless-v1")).verdict).toBe("pending");
    expect((await readJob(store, "keyless-v3")).verdict).toBe("verified");
  });

  it("looks again at a receipt naming no key whose lock's vault a key comes to hold before its verdict is written", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "keyless-1", keyFingerprint: null },
      { jobId: "kf_b-first", keyFingerprint: "kf_b" },
      { jobId: "keyless-2", keyFingerprint: null },
      { jobId: "keyless-3", keyFingerprint: null },
      { jobId: "keyless-4", keyFingerprint: null },
    ]);
    const context = { owner: "owner-a", runId: null, t: T };
    const untied = (jobId: string, vault: string) =>
      learning(jobId, "", { creditVault: null, treasuryCandidate: null, untiedVault: vault });
    const keyless = (d: VerdictWrite): VerdictWrite => ({
      ...d,
      job: { ...d.job, keyFingerprint: null },
    });
    // One batch, on pins where no key held V2: kf_b's first lock learns it, written between
    // two keyless locks from it; a keyless lock from V3 is still no key's.
    const first = await createVerdictStore(store, profile).write(
      [
        keyless(untied("keyless-1", "V2")),
        learning("kf_b-first", "kf_b", { creditVault: "V2", treasuryCandidate: null }),
        keyless(untied("keyless-2", "V2")),
        keyless(untied("keyless-3", "V3")),
      ],
      context,
    );
    // Later, on pins read before kf_b's was written.
    const later = await createVerdictStore(store, profile).write(
      [keyless(untied("keyless-4", "V2"))],
      context,
    );
    expect({ first, later }).toEqual({ first: [false, true, false, true], later: [false] });
    for (const jobId of ["keyless-1", "keyless-2", "keyless-4"]) {
      expect(await readJob(store, jobId)).toMatchObject({ verdict: "pending", nextVerifyAt: T });
    }
  });

  it("opens again the locks the ledger released for a key whose learned vault is configured for another, so the next round files them as unreceipted debits", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    // kf_b learned V1 (its first lock came from there) and its job's lock was accounted for.
    await seedCreditVault(store, {
      keyFingerprint: "kf_b",
      vault: "V1",
      pinnedAt: DAY1,
      source: "learned",
    });
    const lock = fakeSignature("custody:lock-b2");
    const settle = fakeSignature("custody:settle-b2");
    await seedJob(store, {
      jobId: "job-b2",
      keyFingerprint: "kf_b",
      escrowTx: lock,
      settlementTx: settle,
      chargedUnits: 80_000n,
      recordedAt: DAY1 + 10_000,
    });
    const block = Math.floor(DAY1 / 1000);
    await ledger.storePage(
      "V1",
      await ledger.cursor("V1", T),
      [
        { signature: settle, slot: 11, blockTime: block + 1, err: null },
        { signature: lock, slot: 10, blockTime: block, err: null },
      ],
      true,
      T,
    );
    const line = (signature: string, pre: bigint, post: bigint, memo: "escrow" | "settle") => ({
      signature,
      blockTime: null,
      succeeded: true,
      pre,
      post,
      delta: post - pre,
      memo: `decentral:${memo}:job-b2`,
      memoKind: memo,
      memoJobId: "job-b2",
    });
    await ledger.recordReads(
      "V1",
      [line(lock, 1_000_000n, 600_000n, "escrow"), line(settle, 600_000n, 920_000n, "settle")],
      [],
      T,
    );
    await ledger.review("V1", T);
    expect((await linesOf(store, "V1")).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["lock", "job-b2", true],
      ["return", "job-b2", false],
    ]);

    await createCustodyStore(store, profile, { vaults: [], byKey: { kf_a: "V1" } }).pins([], []);
    expect(await ledger.review("V1", T + 1)).toMatchObject({ classified: 1 });
    expect((await linesOf(store, "V1")).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["unexplained", "job-b2", false],
      ["return", "job-b2", false],
    ]);
  });

  it("answers the learned treasury unless the profile pins one", async () => {
    const store = await stores.open();
    await seedTreasuryEvidence(store, profile.name, [
      { signature: "s1", address: "T1", jobId: "j1" },
      { signature: "s2", address: "T2", jobId: "j2" },
      { signature: "s3", address: "T2", jobId: "j3" },
    ]);
    expect(await treasuryStatusOf(store, profile)).toEqual({
      source: "learning",
      candidates: [
        { address: "T2", settlements: 2 },
        { address: "T1", settlements: 1 },
      ],
    });
    expect((await createCustodyStore(store, profile).pins([], [])).treasury).toBeNull();

    await seedJobs(store, [{ jobId: "job-9" }]);
    await createVerdictStore(store, profile).write(
      [
        learning("job-9", "kf_0001", {
          creditVault: null,
          treasuryCandidate: { signature: "s4", address: "T1" },
        }),
      ],
      { owner: "owner-a", runId: null, t: T },
    );
    expect(await treasuryStatusOf(store, profile)).toEqual({
      source: "learned",
      address: "T1",
      settlements: 2,
    });
    expect((await createCustodyStore(store, profile).pins([], [])).treasury).toBe("T1");
    const pinnedByProfile = { ...profile, treasury: "TP" };
    expect((await createCustodyStore(store, pinnedByProfile).pins([], [])).treasury).toBeNull();
  });

  it("pins the credit vaults' owner the first lock written showed, and finds a verdict that showed another stale", async () => {
    const store = await stores.open();
    await seedJobs(
      store,
      ["job-1", "job-2", "job-3", "job-4"].map((jobId) => ({ jobId, keyFingerprint: "kf_x" })),
    );
    const owned = (jobId: string, key: string, vaultOwner: string) =>
      learning(jobId, key, { creditVault: null, treasuryCandidate: null, vaultOwner });
    const context = { owner: "owner-a", runId: null, t: T };
    // One batch, as the checks of one slice read the pins: none pinned yet.
    const first = await createVerdictStore(store, profile).write(
      [owned("job-1", "kf_a", "Owner1"), owned("job-2", "kf_b", "Attacker")],
      context,
    );
    const later = await createVerdictStore(store, profile).write(
      [owned("job-3", "kf_c", "Attacker"), owned("job-4", "kf_a", "Owner1")],
      context,
    );
    expect({ first, later }).toEqual({ first: [true, false], later: [false, true] });
    for (const jobId of ["job-2", "job-3"]) {
      expect(await readJob(store, jobId)).toMatchObject({ verdict: "pending", nextVerifyAt: T });
    }
    expect(await readProfilePins(store)).toEqual([
      { profile: profile.name, name: "escrow_authority", value: "Owner1", evidence: 1 },
    ]);
    expect((await createCustodyStore(store, profile).pins([], [])).escrowAuthority).toBe("Owner1");
    // A profile that names the escrow authority learns none, and reads none learned.
    const named = { ...profile, escrowAuthority: "Named" };
    expect((await createCustodyStore(store, named).pins([], [])).escrowAuthority).toBeNull();
    const other = { ...profile, name: "other-profile", escrowAuthority: "Named" };
    await seedJobs(store, [{ jobId: "job-5", keyFingerprint: "kf_x" }]);
    expect(
      await createVerdictStore(store, other).write([owned("job-5", "kf_a", "Anyone")], context),
    ).toEqual([true]);
    expect(await readProfilePins(store)).toHaveLength(1);
  });

  /** A settlement whose rest of the charge went to `payee`, the treasury still unknown. */
  const waitingForTreasury = (jobId: string, signature: string, payee: string): VerdictWrite => {
    const d = learning(jobId, "kf_0001", {
      creditVault: null,
      treasuryCandidate: { signature, address: payee },
    });
    return {
      ...d,
      verdict: "partially_verified",
      evaluation: { ...d.evaluation!, unproven: ["treasury_unknown"] },
    };
  };

  it("a verdict waiting for the treasury, written after another verifier pinned it, is decided again", async () => {
    const store = await stores.open();
    await seedTreasuryEvidence(store, profile.name, [
      { signature: "s1", address: "T1", jobId: "j1" },
    ]);
    await seedJobs(store, [{ jobId: "settles-t1" }, { jobId: "paid-y" }]);
    // Another verifier's verdict adds the second agreeing settlement: T1 is pinned, and the
    // jobs waiting for it then are sent back. This one was decided on the pins read before.
    await createVerdictStore(store, profile).write(
      [
        learning("settles-t1", "kf_0001", {
          creditVault: null,
          treasuryCandidate: { signature: "s2", address: "T1" },
        }),
      ],
      { owner: "owner-a", runId: null, t: T },
    );
    expect(await treasuryStatusOf(store, profile)).toMatchObject({
      source: "learned",
      address: "T1",
    });
    const written = await createVerdictStore(store, profile).write(
      [waitingForTreasury("paid-y", "s3", "Y")],
      { owner: "owner-a", runId: null, t: T + 1 },
    );
    // Its payee Y is not the treasury T1: decided again, that is a finding, not a gap.
    expect(written).toEqual([false]);
    expect(await readJob(store, "paid-y")).toMatchObject({ verdict: "pending", unproven: null });
    expect((await readJob(store, "paid-y")).nextVerifyAt).toBeLessThanOrEqual(T + 1);
  });

  it("a verdict waiting for the treasury, written after a job of its batch pinned it, is decided again", async () => {
    const store = await stores.open();
    await seedTreasuryEvidence(store, profile.name, [
      { signature: "s1", address: "T1", jobId: "j1" },
    ]);
    await seedJobs(store, [{ jobId: "settles-t1" }, { jobId: "paid-y" }]);
    await createVerdictStore(store, profile).write(
      [
        learning("settles-t1", "kf_0001", {
          creditVault: null,
          treasuryCandidate: { signature: "s2", address: "T1" },
        }),
        waitingForTreasury("paid-y", "s3", "Y"),
      ],
      { owner: "owner-a", runId: null, t: T },
    );
    expect(await readProfilePins(store)).toMatchObject([{ name: "treasury", value: "T1" }]);
    expect(await readJob(store, "paid-y")).toMatchObject({ verdict: "pending" });
    expect((await readJob(store, "paid-y")).nextVerifyAt).toBeLessThanOrEqual(T);
  });

  if (dialect === "postgres") {
    it("two processes learning the same keys' vaults at once end with one pin each, the first", async () => {
      const store = await stores.open();
      const other = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
      try {
        const keys = Array.from({ length: 12 }, (_, i) => `kf_${i}`);
        await seedJobs(
          store,
          keys.flatMap((key) => [
            { jobId: `${key}-a`, keyFingerprint: key },
            { jobId: `${key}-b`, keyFingerprint: key },
          ]),
        );
        // Each process decides every key's job at once, in opposite orders, learning its own vault.
        const [a, b] = await Promise.all([
          createVerdictStore(store, profile).write(
            keys.map((key) =>
              learning(`${key}-a`, key, { creditVault: `A-${key}`, treasuryCandidate: null }),
            ),
            { owner: "owner-a", runId: null, t: T },
          ),
          createVerdictStore(other, profile).write(
            [...keys]
              .reverse()
              .map((key) =>
                learning(`${key}-b`, key, { creditVault: `B-${key}`, treasuryCandidate: null }),
              ),
            { owner: "owner-a", runId: null, t: T },
          ),
        ]);
        const bByKey = new Map([...keys].reverse().map((key, i) => [key, b![i]]));
        const pins = await readVaultPins(store);
        expect(pins.map((p) => p.key).sort()).toEqual([...keys].sort());
        for (const [i, key] of keys.entries()) {
          const pin = pins.find((p) => p.key === key)!;
          const aWon = pin.vault === `A-${key}`;
          // The winner's verdict stands; the other sees the pin and goes back to pending.
          expect([a![i], bByKey.get(key)]).toEqual(aWon ? [true, false] : [false, true]);
          expect(pin.jobId).toBe(aWon ? `${key}-a` : `${key}-b`);
          const loser = await readJob(store, aWon ? `${key}-b` : `${key}-a`);
          expect(loser).toMatchObject({ verdict: "pending", nextVerifyAt: T });
        }
      } finally {
        await other.close();
      }
    });

    it("two processes learning one vault for two keys at once pin it to one key", async () => {
      const store = await stores.open();
      const other = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
      try {
        const vaults = Array.from({ length: 6 }, (_, i) => `V${i}`);
        await seedJobs(
          store,
          vaults.flatMap((v) => [{ jobId: `${v}-a` }, { jobId: `${v}-b` }]),
        );
        // Each process's keys learn every vault, in opposite orders.
        const batch = (side: "a" | "b", order: string[]) =>
          order.map((v) =>
            learning(`${v}-${side}`, `kf_${side}_${v}`, {
              creditVault: v,
              treasuryCandidate: null,
            }),
          );
        const context = { owner: "owner-a", runId: null, t: T };
        const [a, b] = await Promise.all([
          createVerdictStore(store, profile).write(batch("a", vaults), context),
          createVerdictStore(other, profile).write(batch("b", [...vaults].reverse()), context),
        ]);
        const pins = await readVaultPins(store);
        const bByVault = new Map([...vaults].reverse().map((v, i) => [v, b![i]]));
        for (const [i, v] of vaults.entries()) {
          const holders = pins.filter((p) => p.vault === v);
          expect(holders).toHaveLength(1);
          const aWon = holders[0]!.key === `kf_a_${v}`;
          expect([a![i], bByVault.get(v)]).toEqual(aWon ? [true, false] : [false, true]);
          const loser = await readJob(store, aWon ? `${v}-b` : `${v}-a`);
          expect(loser).toMatchObject({ verdict: "pending", nextVerifyAt: T });
        }
      } finally {
        await other.close();
      }
    });

    it("two processes configuring vaults at once end with the configured pins", async () => {
      const store = await stores.open();
      const other = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
      try {
        const byKey = Object.fromEntries(
          Array.from({ length: 20 }, (_, i) => [`kf_${i}`, `V${i}`]),
        );
        await Promise.all([
          createCustodyStore(store, profile, { vaults: [], byKey }).pins([], []),
          createCustodyStore(other, profile, { vaults: [], byKey }).pins([], []),
        ]);
        const pins = await readVaultPins(store);
        expect(pins).toHaveLength(20);
        expect(pins.every((p) => p.vault === byKey[p.key] && p.source === "configured")).toBe(true);
      } finally {
        await other.close();
      }
    });

    it("two settlements agreeing at once in two processes pin the treasury, once", async () => {
      const store = (await stores.open()) as PgStore;
      const other = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
      try {
        // Each process's jobs have their own day, model, worker and key: the two writes share
        // no rollup row, whose lock (taken by the rollup trigger) would order them by itself.
        const side = (p: "a" | "b", day: number) => ({
          createdAt: day,
          model: `m-${p}`,
          worker: `w-${p}`,
          keyFingerprint: `k-${p}`,
        });
        const extras = (p: "a" | "b") => Array.from({ length: 30 }, (_, i) => `${p}-extra-${i}`);
        await seedJobs(store, [
          ...["job-a", ...extras("a")].map((jobId) => ({ jobId, ...side("a", DAY1) })),
          ...["job-b", ...extras("b")].map((jobId) => ({ jobId, ...side("b", DAY1 + DAY_MS) })),
          {
            jobId: "waiting",
            leaseOwner: null,
            verdict: "partially_verified",
            unproven: ["treasury_unknown"],
          },
        ]);
        // The settlement comes first in each batch and more verdicts follow, so each
        // transaction stays open well after it counted: without their locks each would
        // count only its own settlement (1 < 2) and neither would pin (the writers take turns, and
        // treasury learning has its own lock besides).
        const batch = (p: "a" | "b") => [
          learning(`job-${p}`, `k-${p}`, {
            creditVault: null,
            treasuryCandidate: { signature: `s${p}`, address: "T1" },
          }),
          ...extras(p).map((jobId) =>
            learning(jobId, `k-${p}`, { creditVault: null, treasuryCandidate: null }),
          ),
        ];
        // A third connection holds the rollup rows the settlements' verdicts move, so both
        // writers are under way, waiting, when it lets go (a job row held is left out of a
        // verdict write, not waited for).
        const blocker = await store.pool.connect();
        try {
          await blocker.query("BEGIN");
          await blocker.query("SELECT 1 FROM job_rollups FOR UPDATE");
          const context = { owner: "owner-a", runId: null, t: T };
          const writes = Promise.all([
            createVerdictStore(store, profile).write(batch("a"), context),
            createVerdictStore(other, profile).write(batch("b"), context),
          ]);
          await waitForLockWaiters(store, 2);
          await blocker.query("COMMIT");
          const [a, b] = await writes;
          expect([...a!, ...b!].every((w) => w)).toBe(true);
        } finally {
          blocker.release();
        }
        expect(await readProfilePins(store)).toEqual([
          { profile: profile.name, name: "treasury", value: "T1", evidence: 2 },
        ]);
        expect(await readJob(store, "waiting")).toMatchObject({
          verdict: "pending",
          nextVerifyAt: 0,
        });
      } finally {
        await other.close();
      }
    });
  }
});

/** Resolves once `n` sessions of the store's database wait on a lock (row or advisory). */
async function waitForLockWaiters(store: PgStore, n: number): Promise<void> {
  for (;;) {
    const { rows } = await store.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (Number(rows[0]?.n) >= n) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A deployment that learned its treasury for a while and then names it in its profile (as
 * Known limits advise): the jobs left partially verified for want of it were never decided
 * again (only a learned pin sent them back), so they stayed `treasury_unknown` for good, and
 * `dataCompleteUntil`, which stops at the oldest of them, froze there for ever.
 */
describe.each(dialects)("%s: a treasury the profile comes to name", (dialect) => {
  const stores = useDialectStores(dialect);

  it("decides again, when the verifier opens custody, the jobs that waited to learn it", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "waits", verdict: "partially_verified", unproven: ["treasury_unknown"] },
      { jobId: "usage", verdict: "partially_verified", unproven: ["usage_unknown"] },
    ]);
    const named = { ...profile, treasury: "TP" };
    // Opened to answer the status page (no configuration): a reader, it writes nothing.
    await createCustodyStore(store, named).pins([], []);
    expect(await readJob(store, "waits")).toMatchObject({ verdict: "partially_verified" });
    // Opened by a verifier: the waiting job is due again, the one unproven by its own data not.
    await createCustodyStore(store, named, { vaults: [], byKey: {} }).pins([], []);
    expect(await readJob(store, "waits")).toMatchObject({ verdict: "pending", nextVerifyAt: 0 });
    expect(await readJob(store, "usage")).toMatchObject({ verdict: "partially_verified" });
  });
});
