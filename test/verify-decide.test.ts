import { describe, expect, it } from "vitest";
import type { TransactionFacts } from "../src/chain/transaction-facts.js";
import type { SignatureRow } from "../src/store/signatures.js";
import {
  type CreditsSpan,
  creditsHeaderMatches,
  type ReceiptForChecks,
} from "../src/verify/checks.js";
import {
  type CustodyView,
  type DecideJob,
  type DecideTiming,
  decide,
  type SignatureView,
} from "../src/verify/decide.js";
import {
  coverViewOf,
  createEscrowCoverGate,
  ESCROW_COVER_AFTERWARD_MS,
  ESCROW_COVER_MARGIN_SLOTS,
  ESCROW_COVER_RECHECK_MS,
  ESCROW_COVER_WAIT_MS,
  type EscrowCoverView,
} from "../src/verify/escrow-cover.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { accounts, change, facts, honest, sig, vault, worker } from "./support/verify-fixtures.js";

// decide() is a pure function of the job, what is known of its signatures, the profile and
// the custody pins: these tests build that knowledge by hand, with no store and no node.

type Row = Pick<SignatureRow, "state" | "commitment" | "notFoundSlot" | "notFoundSince">;

const finalized: Row = {
  state: "finalized",
  commitment: "finalized",
  notFoundSlot: null,
  notFoundSince: null,
};

function claimed(job: ReceiptForChecks, queue: Partial<DecideJob> = {}): DecideJob {
  return {
    ...job,
    verdictAt: null,
    verifyAttempts: 0,
    backfillState: null,
    backfillNextAt: null,
    source: "ingest",
    recordedAt: 900_000,
    ...queue,
  };
}

function known(
  rows: Record<string, Row>,
  fetched: TransactionFacts[],
  round: Partial<Pick<SignatureView, "trouble" | "disagreements" | "finalityDue" | "dropDue">> = {},
): SignatureView {
  const facts = new Map(fetched.map((f) => [f.signature, f]));
  return {
    row: (s) => rows[s],
    facts: (s) => facts.get(s),
    trouble: round.trouble ?? new Map(),
    disagreements: round.disagreements ?? new Map(),
    ...(round.finalityDue ? { finalityDue: round.finalityDue } : {}),
    ...(round.dropDue ? { dropDue: round.dropDue } : {}),
    named: new Map(),
    namedTotal: new Map(),
  };
}

const noPins: CustodyView = {
  custody: { pinned: null, configured: new Set() },
  learnedTreasury: null,
};

const timing: DecideTiming = {
  now: 1_000_000,
  pollIntervalMs: 2000,
  errorBackoffMs: 1000,
  maxBackoffMs: 60_000,
  backfillWaitMs: 5000,
  random: () => 0.5,
};

describe("deciding a claimed job", () => {
  it("verifies a job whose transactions are finalized, fetched and honest", () => {
    const { job, escrow, settlement } = honest();
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const d = decide(
      claimed(job),
      known(rows, [escrow, settlement]),
      localnetProfile,
      noPins,
      timing,
    );
    expect(d.verdict).toBe("verified");
    expect(d.commitment).toBe("finalized");
    expect(d.evaluation?.amounts.chargedUnits).toBe(80_000n);
    expect(d.nextVerifyAt).toBe(timing.now);
  });

  it("decides a job whose amounts the store cannot hold without them: never verified, a failed check still a discrepancy", () => {
    const huge = 2n ** 63n + 7n;
    const charge = 80_000n;
    const workerShare = (charge * 7500n) / 10_000n;
    const { job } = honest("job_huge", "h");
    const escrow = facts(sig("Eh"), 10, "decentral:escrow:job_huge", [
      change(vault, accounts.escrowAuthority, -huge),
      change(accounts.escrowVault, accounts.escrowAuthority, huge),
    ]);
    const settlement = facts(sig("Sh"), 12, "decentral:settle:job_huge", [
      change(accounts.escrowVault, accounts.escrowAuthority, -huge),
      change(worker.tokenAccount, worker.address, workerShare),
      change(accounts.treasury.tokenAccount, accounts.treasury.owner, charge - workerShare),
      change(vault, accounts.escrowAuthority, huge - charge),
    ]);
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const decideFor = (receipt: ReceiptForChecks) =>
      decide(
        claimed({ ...receipt, escrowTx: escrow.signature, settlementTx: settlement.signature }),
        known(rows, [escrow, settlement]),
        localnetProfile,
        noPins,
        timing,
      );
    const honestOne = decideFor(job);
    expect(honestOne.verdict).toBe("unverifiable");
    expect(honestOne.evaluation?.amounts.escrowedUnits).toBeNull();
    expect(honestOne.evaluation?.checks.filter((c) => c.outcome === "fail")).toEqual([]);
    const storable = honestOne.evaluation?.checks.find((c) => c.name === "amounts.storable");
    expect(storable).toMatchObject({ outcome: "skip", actual: { escrowedUnits: String(huge) } });
    expect(storable?.reason).toContain(`escrowedUnits ${huge}`);
    // The worker the receipt names was not paid: that finding stands beside the amount's.
    const unpaid = decideFor({ ...job, worker: accounts.workers[0]!.address });
    expect(unpaid.verdict).toBe("discrepancy");
    expect(unpaid.evaluation?.amounts.chargedUnits).toBeNull();
    expect(unpaid.evaluation?.checks.some((c) => c.name === "amounts.storable")).toBe(true);
  });

  it("waits for finality, on the poll grid, while a transaction is only confirmed", () => {
    const { job, escrow, settlement } = honest();
    const rows: Record<string, Row> = {
      [escrow.signature]: finalized,
      [settlement.signature]: { ...finalized, state: "landed", commitment: "confirmed" },
    };
    const d = decide(claimed(job), known(rows, [escrow]), localnetProfile, noPins, timing);
    expect(d.verdict).toBe("awaiting_finality");
    expect(d.commitment).toBe("confirmed");
    expect(d.nextVerifyAt).toBeGreaterThan(timing.now);
    expect(d.nextVerifyAt % timing.pollIntervalMs).toBe(0);
    expect(d.evaluation).toBeNull();
  });

  it("looks again at a landed job when the cluster's pace says its last transaction is final", () => {
    const { job, escrow, settlement } = honest();
    const landed: Row = { ...finalized, state: "landed", commitment: "confirmed" };
    const waitFor = (rows: Record<string, Row>, finalityDue: Map<string, number>) => {
      const d = decide(
        claimed(job),
        known(rows, [], { finalityDue }),
        localnetProfile,
        noPins,
        timing,
      );
      expect(d.verdict).toBe("awaiting_finality");
      expect(d.nextVerifyAt % timing.pollIntervalMs).toBe(0);
      return d.nextVerifyAt - timing.now;
    };
    const both = { [escrow.signature]: landed, [settlement.signature]: landed };
    const at = (escrowMs: number, settlementMs: number) =>
      new Map([
        [escrow.signature, timing.now + escrowMs],
        [settlement.signature, timing.now + settlementMs],
      ]);
    // The settlement, the later of the two, is final in 11.2 s: the next look is then (on the
    // grid), not in 2 s.
    expect(waitFor(both, at(9_000, 11_200))).toBe(12_000);
    // Due within a poll interval, or already: the next poll, as before.
    expect(waitFor(both, at(500, 1_000))).toBe(2000);
    expect(waitFor(both, at(-5_000, -1))).toBe(2000);
    // No pace known: the next poll.
    expect(waitFor(both, new Map())).toBe(2000);
    // A pace that says an hour (a lying node) waits no longer than the longest backoff.
    expect(waitFor(both, at(3_600_000, 0))).toBe(60_000);
    // A transaction unseen for a while keeps its backoff when that is later.
    const unseen: Row = {
      state: "unknown",
      commitment: null,
      notFoundSlot: 400,
      notFoundSince: timing.now - 14_000,
    };
    expect(waitFor({ ...both, [settlement.signature]: unseen }, at(3_000, 0))).toBe(44_000);
    expect(waitFor({ ...both, [settlement.signature]: unseen }, at(50_000, 0))).toBe(50_000);
  });

  it("polls a signature unseen for longer less often: three times as far off as it has been unseen, up to the longest backoff", () => {
    const { job, escrow, settlement } = honest();
    const unseenSince = (since: number | null) =>
      decide(
        claimed(job),
        known(
          {
            [escrow.signature]: finalized,
            [settlement.signature]: {
              state: "unknown",
              commitment: null,
              notFoundSlot: 400,
              notFoundSince: since,
            },
          },
          [escrow],
        ),
        localnetProfile,
        noPins,
        timing,
      );
    const waitFor = (since: number | null) => {
      const d = unseenSince(since);
      expect(d.verdict).toBe("awaiting_finality");
      // On the poll grid, at or after the backoff (jitter 1.0 with random 0.5).
      expect(d.nextVerifyAt % timing.pollIntervalMs).toBe(0);
      return d.nextVerifyAt - timing.now;
    };
    // First miss now, or not recorded: the next poll interval.
    expect(waitFor(null)).toBe(2000);
    expect(waitFor(timing.now)).toBe(2000);
    // Unseen for 2 s, 10 s: the next look 8 s, 32 s on.
    expect(waitFor(timing.now - 2000)).toBe(8000);
    expect(waitFor(timing.now - 10_000)).toBe(32_000);
    // A first miss ahead of this clock (another process's): the next poll interval.
    expect(waitFor(timing.now + 5000)).toBe(2000);
    // Unseen for ten minutes: the longest backoff.
    expect(waitFor(timing.now - 600_000)).toBe(60_000);
  });

  it("ends dropped, failing the exists check, when a signature never landed before its blockhash expired, and counts the lock that did land", () => {
    const { job, escrow, settlement } = honest();
    const rows: Record<string, Row> = {
      [escrow.signature]: finalized,
      [settlement.signature]: {
        state: "dropped",
        commitment: null,
        notFoundSlot: 500,
        notFoundSince: 1_000,
      },
    };
    const d = decide(claimed(job), known(rows, [escrow]), localnetProfile, noPins, timing);
    expect(d.verdict).toBe("dropped");
    const checks = d.evaluation?.checks ?? [];
    expect(checks.filter((c) => c.outcome === "fail")).toEqual([
      expect.objectContaining({ name: "settlement.exists", outcome: "fail" }),
    ]);
    expect(checks.find((c) => c.name === "settlement.exists")?.reason).toContain(
      "blockhash has expired",
    );
    // The lock landed: it is judged and its money counted.
    expect(checks.find((c) => c.name === "escrow.vault")?.outcome).toBe("pass");
    expect(d.evaluation?.amounts).toMatchObject({ escrowedUnits: 160_000n, chargedUnits: null });
  });

  it("ends a discrepancy, not dropped, when a transaction that landed beside one that never did is wrong", () => {
    const { job, escrow, settlement } = honest();
    settlement.tokenChanges[1]!.delta = 68_000n;
    settlement.tokenChanges[2]!.delta = 12_000n;
    const rows: Record<string, Row> = {
      [escrow.signature]: finalized,
      [settlement.signature]: finalized,
      [sig("P")]: { state: "dropped", commitment: null, notFoundSlot: 500, notFoundSince: 1_000 },
    };
    const d = decide(
      claimed({ ...job, apiSettlementTx: sig("P"), apiCheckedAt: 1 }),
      known(rows, [escrow, settlement]),
      localnetProfile,
      noPins,
      timing,
    );
    expect(d.verdict).toBe("discrepancy");
    const failed = d.evaluation?.checks.filter((c) => c.outcome === "fail").map((c) => c.name);
    expect(failed?.sort()).toEqual(["settlement.exists", "settlement.split"]);
    expect(d.evaluation?.amounts.chargedUnits).toBe(80_000n);
  });

  it("ends unverifiable when the node no longer serves a finalized transaction (pruned), counting the one it serves", () => {
    const { job, escrow, settlement } = honest();
    const rows: Record<string, Row> = {
      [escrow.signature]: { ...finalized, state: "pruned" },
      [settlement.signature]: finalized,
    };
    const d = decide(claimed(job), known(rows, [settlement]), localnetProfile, noPins, timing);
    expect(d.verdict).toBe("unverifiable");
    const checks = d.evaluation?.checks ?? [];
    expect(checks.filter((c) => c.outcome === "fail")).toEqual([]);
    expect(checks.find((c) => c.name === "escrow.exists")?.outcome).toBe("skip");
    expect(d.evaluation?.amounts.workerPaidUnits).toBe(60_000n);
  });

  it("says how many misses over how long made a transaction count as pruned", () => {
    const { job, escrow, settlement } = honest();
    const rows: Record<string, Row & { notFoundCount: number }> = {
      [escrow.signature]: {
        ...finalized,
        state: "pruned",
        notFoundCount: 7,
        notFoundSince: timing.now - 300_000,
      },
      [settlement.signature]: { ...finalized, notFoundCount: 0 },
    };
    const d = decide(claimed(job), known(rows, [settlement]), localnetProfile, noPins, timing);
    expect(d.evaluation?.checks.find((c) => c.name === "escrow.exists")?.reason).toMatch(
      /answered "not found" 7 times over 300 s since /,
    );
  });

  it("looks again for a finalized transaction no endpoint returned as seldom as an unseen one", () => {
    const { job, escrow, settlement } = honest();
    const missedSince = (since: number) =>
      decide(
        claimed(job),
        known(
          {
            [escrow.signature]: finalized,
            [settlement.signature]: { ...finalized, notFoundSince: since },
          },
          [escrow],
        ),
        localnetProfile,
        noPins,
        timing,
      ).nextVerifyAt - timing.now;
    // Missing for 14 s: the next look 16 s on, not at the next poll (5 misses in 10 s).
    expect(missedSince(timing.now - 14_000)).toBe(16_000);
    expect(missedSince(timing.now - 600_000)).toBe(60_000);
  });

  it("is partially verified when usage was not recorded, naming what is unproven", () => {
    const { job, escrow, settlement } = honest();
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const d = decide(
      claimed({ ...job, completionTokens: null }),
      known(rows, [escrow, settlement]),
      localnetProfile,
      noPins,
      timing,
    );
    expect(d.verdict).toBe("partially_verified");
    expect(d.evaluation?.unproven).toEqual(["usage_unknown"]);
  });

  it("finds a discrepancy when the worker was paid at a rate the profile does not allow", () => {
    const { job, escrow, settlement } = honest();
    settlement.tokenChanges[1]!.delta = 68_000n;
    settlement.tokenChanges[2]!.delta = 12_000n;
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const d = decide(
      claimed(job),
      known(rows, [escrow, settlement]),
      localnetProfile,
      noPins,
      timing,
    );
    expect(d.verdict).toBe("discrepancy");
    const failed = d.evaluation?.checks.filter((c) => c.outcome === "fail").map((c) => c.name);
    expect(failed).toEqual(["settlement.split"]);
  });

  it("retries with a growing backoff after RPC trouble, keeping the error", () => {
    const { job, escrow, settlement } = honest();
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const trouble = new Map([[settlement.signature, "getTransaction: timeout"]]);
    const first = decide(
      claimed(job),
      known(rows, [escrow], { trouble }),
      localnetProfile,
      noPins,
      timing,
    );
    const later = decide(
      claimed(job, { verifyAttempts: 3 }),
      known(rows, [escrow], { trouble }),
      localnetProfile,
      noPins,
      timing,
    );
    expect(first.verdict).toBe("error");
    expect(first.lastError).toBe("getTransaction: timeout");
    expect(first.nextVerifyAt - timing.now).toBe(1000);
    expect(later.nextVerifyAt - timing.now).toBe(8000);
  });

  it("waits on quorum endpoints that disagree, keeping every answer as evidence", () => {
    const { job, escrow, settlement } = honest();
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const disagreements = new Map([
      [
        settlement.signature,
        {
          signature: settlement.signature,
          method: "getTransaction" as const,
          quorum: 2,
          answers: [
            { endpoint: "a", kind: "answer" as const, digest: "1" },
            { endpoint: "b", kind: "not_found" as const, digest: "2" },
          ],
        },
      ],
    ]);
    const d = decide(
      claimed(job),
      known(rows, [escrow, settlement], { disagreements }),
      localnetProfile,
      noPins,
      timing,
    );
    expect(d.verdict).toBe("rpc_disagreement");
    expect(d.checks?.[0]).toMatchObject({ name: "settlement.rpc_quorum", outcome: "skip" });
    expect(d.checks?.[0]?.actual).toMatchObject({
      answers: [{ endpoint: "a" }, { endpoint: "b" }],
    });
  });

  it("keeps one check a role when two of the job's settlements are disputed, so its verdict can be written", () => {
    const { job, escrow, settlement } = honest();
    const named = "5".repeat(87);
    const rows = {
      [escrow.signature]: finalized,
      [settlement.signature]: finalized,
      [named]: finalized,
    };
    const disputed = (signature: string) => ({
      signature,
      method: "getTransaction" as const,
      quorum: 2,
      answers: [
        { endpoint: "a", kind: "answer" as const, digest: "1" },
        { endpoint: "b", kind: "answer" as const, digest: "2" },
      ],
    });
    const d = decide(
      // The header names one settlement, the jobs API another: both drew disagreeing answers.
      claimed({ ...job, apiSettlementTx: named }),
      known(rows, [escrow, settlement], {
        disagreements: new Map([
          [settlement.signature, disputed(settlement.signature)],
          [named, disputed(named)],
        ]),
      }),
      localnetProfile,
      noPins,
      timing,
    );
    expect(d.verdict).toBe("rpc_disagreement");
    const names = (d.checks ?? []).map((c) => c.name);
    expect(names).toEqual(["settlement.rpc_quorum"]);
    expect(d.checks?.[0]?.reason).toContain(named);
    expect(d.checks?.[0]?.reason).toContain(settlement.signature);
  });

  it("waits for the settlement backfill of a streamed job that names no settlement yet", () => {
    const { job, escrow } = honest();
    const d = decide(
      claimed({ ...job, settlementTx: null }, { backfillState: "pending", backfillNextAt: null }),
      known({ [escrow.signature]: finalized }, [escrow]),
      localnetProfile,
      noPins,
      timing,
    );
    expect(d.verdict).toBe("awaiting_finality");
    expect(d.nextVerifyAt).toBe(timing.now + timing.backfillWaitMs);
  });

  it("stops waiting for the backfill once the lock is older than the protocol lets it stay open", () => {
    // The operator locked and never settled; the jobs API keeps saying processing, and the
    // backfill would keep asking for hours: the job is judged, its lock counted.
    const { job, escrow } = honest();
    const closeBy =
      (escrow.blockTime! +
        localnetProfile.settlementWindowSeconds +
        localnetProfile.receiptTimeSkewSeconds) *
      1000;
    const decideAt = (now: number) =>
      decide(
        claimed(
          { ...job, settlementTx: null, apiStatus: "processing" },
          { backfillState: "pending", backfillNextAt: now + 600_000 },
        ),
        known({ [escrow.signature]: finalized }, [escrow]),
        localnetProfile,
        noPins,
        { ...timing, now },
      );
    const early = decideAt(closeBy - 60_000);
    expect(early.verdict).toBe("awaiting_finality");
    // Looked at again when the lock is due closed, not when the backfill next asks.
    expect(early.nextVerifyAt).toBe(closeBy);
    const late = decideAt(closeBy);
    expect(late.verdict).toBe("unverifiable");
    expect(late.evaluation?.amounts.escrowedUnits).toBeGreaterThan(0n);
    expect(late.evaluation?.checks.find((c) => c.name === "settlement.exists")?.outcome).toBe(
      "skip",
    );
  });

  it("holds a clean verdict while the jobs API is being asked about the job, up to the wait", () => {
    // An ingested job the backfill is about to ask about: the answer may name a second
    // settlement, so `verified` now could be taken back after a backend read it.
    const { job, escrow, settlement } = honest();
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const waiting = { ...timing, jobsApiWaitMs: 60_000, proxyJobsApiWaitMs: 10_000 };
    const decideAs = (queue: Partial<DecideJob>, receipt: Partial<ReceiptForChecks>, now: number) =>
      decide(
        claimed({ ...job, ...receipt }, { recordedAt: now - 5_000, ...queue }),
        known(rows, [escrow, settlement]),
        localnetProfile,
        noPins,
        { ...waiting, now },
      );
    const asked = decideAs({ backfillState: "pending" }, {}, timing.now);
    expect(asked).toMatchObject({ verdict: "awaiting_finality", evaluation: null });
    expect(asked.nextVerifyAt).toBe(timing.now - 5_000 + 60_000);
    // The proxy asks about every job it records, with no backfill state, for a few seconds: a
    // proxy killed before it asked leaves nobody asking.
    expect(decideAs({ source: "proxy" }, {}, timing.now).verdict).toBe("awaiting_finality");
    const unasked = decideAs({ source: "proxy", recordedAt: timing.now - 10_000 }, {}, timing.now);
    expect(unasked.verdict).toBe("verified");
    // "processing" is no answer yet: the one naming the settlement may name a second one.
    const processing = { apiStatus: "processing", apiCheckedAt: timing.now - 1_000 };
    expect(decideAs({ backfillState: "pending" }, processing, timing.now).verdict).toBe(
      "awaiting_finality",
    );
    expect(decideAs({ source: "proxy" }, processing, timing.now).verdict).toBe("awaiting_finality");
    // Nor is "settling" naming the settlement: the final status and charge are still to come.
    const settling = {
      apiStatus: "settling",
      apiSettlementTx: settlement.signature,
      apiCheckedAt: timing.now - 1_000,
    };
    expect(decideAs({ source: "proxy" }, settling, timing.now).verdict).toBe("awaiting_finality");
    const unanswered = decideAs(
      { source: "proxy", recordedAt: timing.now - 10_000 },
      settling,
      timing.now,
    );
    expect(unanswered.verdict).toBe("partially_verified");
    expect(unanswered.evaluation?.unproven).toEqual(["jobs_api_not_final"]);
    // Answered, nobody asking (no key: the backfill gave up), or waited long enough: decided.
    const answered = {
      apiStatus: "settled",
      apiSettlementTx: settlement.signature,
      apiCheckedAt: timing.now - 1_000,
    };
    expect(decideAs({ backfillState: "pending" }, answered, timing.now).verdict).toBe("verified");
    expect(decideAs({ backfillState: "gave_up" }, {}, timing.now).verdict).toBe("verified");
    const late = decideAs(
      { backfillState: "pending", recordedAt: timing.now - 60_000 },
      {},
      timing.now,
    );
    expect(late.verdict).toBe("verified");
    // `verify`, which asks nothing itself, does not wait.
    const run = decide(
      claimed(job, { backfillState: "pending", recordedAt: timing.now }),
      known(rows, [escrow, settlement]),
      localnetProfile,
      noPins,
      timing,
    );
    expect(run.verdict).toBe("verified");
  });

  it("does not hold a discrepancy for the jobs API: no answer undoes a failed check", () => {
    const { job, escrow, settlement } = honest();
    const d = decide(
      claimed(
        { ...job, worker: accounts.workers[0]!.address },
        { source: "proxy", recordedAt: timing.now },
      ),
      known({ [escrow.signature]: finalized, [settlement.signature]: finalized }, [
        escrow,
        settlement,
      ]),
      localnetProfile,
      noPins,
      { ...timing, jobsApiWaitMs: 60_000, proxyJobsApiWaitMs: 10_000 },
    );
    expect(d.verdict).toBe("discrepancy");
  });

  it("holds a job until a completed escrow scan began past the job's newest transaction, with nothing of it pending", () => {
    const { job, escrow, settlement } = honest();
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const judge = (cover: EscrowCoverView, now = timing.now) =>
      decide(
        claimed(job),
        known(rows, [escrow, settlement]),
        localnetProfile,
        noPins,
        { ...timing, now },
        null,
        cover,
      );
    const wanted = settlement.slot + ESCROW_COVER_MARGIN_SLOTS;
    const none = new Set<string>();
    // No scan yet, or one that began before the margin past the settlement: a payout made with
    // it may not be listed yet.
    for (const coveredSlot of [null, settlement.slot, wanted - 1]) {
      const d = judge({ coveredSlot, pending: none });
      expect(d.verdict).toBe("awaiting_finality");
      expect(d.escrowWait).toMatchObject({ slot: wanted, pending: false });
      expect(d.nextVerifyAt).toBe(timing.now + ESCROW_COVER_RECHECK_MS);
    }
    // Covered, but an entry under its memo is held pending: not judged by the scan yet.
    const held = judge({ coveredSlot: wanted, pending: new Set([job.jobId]) });
    expect(held.verdict).toBe("awaiting_finality");
    expect(held.escrowWait?.pending).toBe(true);
    expect(judge({ coveredSlot: wanted, pending: none }).verdict).toBe("verified");
    expect(judge({ coveredSlot: wanted + 500, pending: new Set(["another"]) }).verdict).toBe(
      "verified",
    );
    // A scan that does not come within the wait (from the job's newest transaction) leaves it
    // RPC trouble, retried, never judged as it stands: a payout it did not list may be there.
    const waited = settlement.blockTime! * 1000 + ESCROW_COVER_WAIT_MS;
    expect(judge({ coveredSlot: null, pending: none }, waited - 1).nextVerifyAt).toBe(waited);
    for (const coveredSlot of [null, wanted - 1]) {
      const overdue = judge({ coveredSlot, pending: none }, waited);
      expect(overdue).toMatchObject({ verdict: "error", evaluation: null });
      expect(overdue.lastError).toContain(
        "the escrow scan has not read past this job's transactions",
      );
      expect(overdue.nextVerifyAt).toBeGreaterThan(waited);
    }
    // Read past, entries held past the wait: the next scan judges them, the job waits for it.
    const heldLong = judge({ coveredSlot: wanted, pending: new Set([job.jobId]) }, waited);
    expect(heldLong).toMatchObject({ verdict: "awaiting_finality", escrowWait: { pending: true } });
    expect(heldLong.nextVerifyAt).toBe(waited + ESCROW_COVER_RECHECK_MS);
    expect(judge({ coveredSlot: wanted, pending: none }, waited).verdict).toBe("verified");
  });

  it("holds a failing job for the escrow scan too, unjudged, then finds its discrepancy", () => {
    const { job, escrow, settlement } = honest();
    const judge = (coveredSlot: number | null) =>
      decide(
        claimed({ ...job, worker: accounts.workers[0]!.address }),
        known({ [escrow.signature]: finalized, [settlement.signature]: finalized }, [
          escrow,
          settlement,
        ]),
        localnetProfile,
        noPins,
        timing,
        null,
        { coveredSlot, pending: new Set() },
      );
    const held = judge(null);
    expect(held.verdict).toBe("awaiting_finality");
    expect(held.evaluation).toBeNull();
    expect(judge(settlement.slot + ESCROW_COVER_MARGIN_SLOTS).verdict).toBe("discrepancy");
  });

  it("fails the lock's source when it came from a vault other than the key's pinned one", () => {
    const { job, escrow, settlement } = honest();
    const rows = { [escrow.signature]: finalized, [settlement.signature]: finalized };
    const pinned: CustodyView = {
      custody: { pinned: { vault: "another-vault", source: "configured" }, configured: new Set() },
      learnedTreasury: null,
    };
    const d = decide(
      claimed(job),
      known(rows, [escrow, settlement]),
      localnetProfile,
      pinned,
      timing,
    );
    expect(d.verdict).toBe("discrepancy");
    expect(d.evaluation?.checks.find((c) => c.name === "escrow.source")?.outcome).toBe("fail");
  });
});

describe("credits.header: the credits header against the vault's balances over the job's span", () => {
  const credits = (whole: bigint) => whole * 10_000n;
  const rows = (escrow: string, settlement: string) => ({
    [escrow]: finalized,
    [settlement]: finalized,
  });
  const decideWith = (header: bigint | null, span: CreditsSpan | null) => {
    const { job, escrow, settlement } = honest();
    return decide(
      claimed({ ...job, creditsRemainingUnits: header }),
      known(rows(escrow.signature, settlement.signature), [escrow, settlement]),
      localnetProfile,
      noPins,
      timing,
      span,
    );
  };
  const credit = (d: ReturnType<typeof decideWith>) =>
    d.evaluation?.checks.find((c) => c.name === "credits.header");

  it("matches a balance by its whole credits, rounded down: 12,345,678 base units is 1234, not 1235", () => {
    expect(creditsHeaderMatches(credits(1234n), 12_345_678n)).toBe(true);
    expect(creditsHeaderMatches(credits(1235n), 12_345_678n)).toBe(false);
    expect(creditsHeaderMatches(credits(1234n), 12_340_000n)).toBe(true);
    expect(creditsHeaderMatches(credits(1234n), 12_339_999n)).toBe(false);
    expect(creditsHeaderMatches(credits(1234n), 12_349_999n)).toBe(true);
    expect(creditsHeaderMatches(credits(1234n), 12_350_000n)).toBe(false);
  });

  it("passes when one balance of the span matches, and fails with a discrepancy when none does", () => {
    const span = {
      vault: "v",
      balancesUnits: [12_500_000n, 12_345_678n],
      ordered: 2,
      covered: true,
    };
    const ok = decideWith(credits(1234n), span);
    expect(ok.verdict).toBe("verified");
    expect(credit(ok)).toMatchObject({ outcome: "pass", actual: { balanceUnits: "12345678" } });

    const off = decideWith(credits(1235n), span);
    expect(off.verdict).toBe("discrepancy");
    expect(off.evaluation?.checks.filter((c) => c.outcome === "fail").map((c) => c.name)).toEqual([
      "credits.header",
    ]);
    expect(credit(off)?.actual).toEqual({ balancesUnits: ["12500000", "12345678"] });
  });

  it("leaves a header matching only a balance that may have come after the response unproven, never verified nor a discrepancy", () => {
    // The second balance follows a line the chain dated within its clocks' slack after the
    // response's second: whether it came before the response is not known.
    const span = { vault: "v", balancesUnits: [12_500_000n, 12_345_678n], ordered: 1 };
    const unordered = decideWith(credits(1234n), { ...span, covered: true });
    expect(unordered.verdict).toBe("partially_verified");
    expect(unordered.evaluation?.unproven).toEqual(["credits_header_order_unknown"]);
    expect(credit(unordered)).toMatchObject({ outcome: "skip", expected: null });
    // A line before it not read yet may still hold a balance surely before the response.
    const waiting = decideWith(credits(1234n), { ...span, covered: false });
    expect(waiting.verdict).toBe("verified");
    expect(credit(waiting)).toMatchObject({ outcome: "skip", expected: { vault: "v" } });
    expect(decideWith(credits(1250n), { ...span, covered: true }).verdict).toBe("verified");
  });

  it("is not applied, and leaves the verdict alone, until the ledger has read past the response", () => {
    const waiting = decideWith(credits(1235n), {
      vault: "v",
      balancesUnits: [12_345_678n],
      ordered: 1,
      covered: false,
    });
    expect(waiting.verdict).toBe("verified");
    // The skip names the vault whose ledger the job waits for.
    expect(credit(waiting)).toMatchObject({ outcome: "skip", expected: { vault: "v" } });
    // A match needs no more of the history.
    const early = decideWith(credits(1234n), {
      vault: "v",
      balancesUnits: [12_345_678n],
      ordered: 1,
      covered: false,
    });
    expect(credit(early)?.outcome).toBe("pass");
    for (const d of [decideWith(null, null), decideWith(credits(1234n), null)]) {
      expect(d.verdict).toBe("verified");
      expect(credit(d)).toMatchObject({ outcome: "skip", expected: null });
    }
  });

  it("looks at a never-seen signature five times before its drop is due on mainnet, not six, and then when it is due", () => {
    // Polls of a phantom signature (never seen by any RPC) from its first miss until it may be
    // dropped: 300 slots of 400 ms, 120 s. Each poll is a claim, a status request and a
    // verdict write; twice as far off as it had been unseen they came at 2, 6, 14, 30, 62 s.
    const { job, escrow, settlement } = honest();
    const firstMiss = 1_000_000;
    const schedule = (dropDue: number | null) => {
      const looks: number[] = [firstMiss];
      for (let t = firstMiss; t < firstMiss + 120_500; ) {
        const d = decide(
          claimed(job),
          known(
            {
              [escrow.signature]: finalized,
              [settlement.signature]: {
                state: "unknown",
                commitment: null,
                notFoundSlot: 400,
                notFoundSince: firstMiss,
              },
            },
            [escrow],
            dropDue === null ? {} : { dropDue: new Map([[settlement.signature, dropDue]]) },
          ),
          localnetProfile,
          noPins,
          { ...timing, now: t },
        );
        expect(d.verdict).toBe("awaiting_finality");
        t = d.nextVerifyAt;
        looks.push(t);
      }
      return looks.map((t) => (t - firstMiss) / 1000);
    };
    // The round knows when the drop is due (by the finalized slot's pace): looked at then.
    expect(schedule(firstMiss + 120_500)).toEqual([0, 2, 10, 42, 102, 122]);
    // No pace known yet: up to the longest backoff.
    expect(schedule(null)).toEqual([0, 2, 10, 42, 102, 162]);
    // A drop due sooner than the next poll, or past (a node behind the pace): the next poll at
    // the earliest, never a poll at once.
    expect(schedule(firstMiss + 1000)).toEqual([0, 2, 10, 42, 102, 162]);
  });

  it("puts a job waiting for a never-seen signature off to its drop when the round watches the signature, and says when to poll it", () => {
    const { job, escrow, settlement } = honest();
    const firstMiss = 1_000_000;
    const unseen: Row = {
      state: "unknown",
      commitment: null,
      notFoundSlot: 400,
      notFoundSince: firstMiss,
    };
    const at = (t: number, rows: Record<string, Row>, dropDue: number | null) =>
      decide(
        claimed(job),
        known(
          rows,
          [escrow],
          dropDue === null ? {} : { dropDue: new Map([[settlement.signature, dropDue]]) },
        ),
        localnetProfile,
        noPins,
        { ...timing, now: t, watchesUnseen: true },
      );
    const waiting = { [escrow.signature]: finalized, [settlement.signature]: unseen };
    // Polled at 10 s as before, by the round; the job itself when the drop is due (120.5 s).
    expect(at(firstMiss + 2_000, waiting, firstMiss + 120_500)).toMatchObject({
      verdict: "awaiting_finality",
      watchAt: firstMiss + 10_000,
      nextVerifyAt: firstMiss + 122_000,
    });
    // A drop far off by the pace (a node's pace may lie): three longest backoffs at most.
    expect(at(firstMiss + 2_000, waiting, firstMiss + 3_600_000).nextVerifyAt).toBe(
      firstMiss + 182_000,
    );
    // No pace known yet, or the drop due by the next poll: the job keeps its own look.
    for (const [dropDue, look] of [
      [null, firstMiss + 10_000],
      [firstMiss + 3_000, firstMiss + 4_000],
    ] as const) {
      const d = at(firstMiss + 2_000, waiting, dropDue);
      expect(d.watchAt).toBeUndefined();
      expect(d.nextVerifyAt).toBe(look);
    }
    // A landed transaction waits for its finality: nothing to watch.
    const landed: Row = { ...unseen, state: "landed", commitment: "confirmed" };
    const d = at(
      firstMiss + 2_000,
      { [escrow.signature]: finalized, [settlement.signature]: landed },
      firstMiss + 120_500,
    );
    expect(d.watchAt).toBeUndefined();
  });
});

describe("a clean verdict held for the ledger's read of the credit vault, where a ledger runs beside", () => {
  const header = 1234n * 10_000n;
  const unread = { vault, balancesUnits: [], ordered: 0, covered: false };
  const covered = { vault, balancesUnits: [12_345_678n], ordered: 1, covered: true };
  const scanned: EscrowCoverView = { coveredSlot: Number.MAX_SAFE_INTEGER, pending: new Set() };
  const pinnedTo = (v: string): CustodyView => ({
    custody: { pinned: { vault: v, source: "learned" }, configured: new Set() },
    learnedTreasury: null,
  });
  const decideWith = (
    span: CreditsSpan,
    custody: CustodyView,
    cover: EscrowCoverView | null = scanned,
    now = timing.now,
  ) => {
    const { job, escrow, settlement } = honest();
    return decide(
      claimed({ ...job, creditsRemainingUnits: header }),
      known({ [escrow.signature]: finalized, [settlement.signature]: finalized }, [
        escrow,
        settlement,
      ]),
      localnetProfile,
      custody,
      { ...timing, now },
      span,
      cover,
    );
  };

  it("waits while the ledger has not read the pinned vault past the response, then judges on its read", () => {
    const held = decideWith(unread, pinnedTo(vault));
    expect(held.verdict).toBe("awaiting_finality");
    expect(held.escrowWait).toMatchObject({ slot: -1, vault, pending: false });
    expect(held.nextVerifyAt).toBe(timing.now + ESCROW_COVER_RECHECK_MS);
    expect(decideWith(covered, pinnedTo(vault)).verdict).toBe("verified");
    // Read, and the header matches nothing: the discrepancy a verdict given at once hid.
    const off = decideWith({ ...covered, balancesUnits: [99_990_000n] }, pinnedTo(vault));
    expect(off.verdict).toBe("discrepancy");
  });

  it("pins the vault its first lock teaches with the held verdict: the ledger reads pinned vaults only", () => {
    const first = decideWith(unread, noPins);
    expect(first.verdict).toBe("awaiting_finality");
    expect(first.pins).toEqual({ creditVault: vault, treasuryCandidate: null });
  });

  it("does not wait where no ledger runs beside, nor for a vault the ledger will not read, nor past the wait", () => {
    expect(decideWith(unread, pinnedTo(vault), null).verdict).toBe("verified");
    // A vault nothing ties to the key (another key's, configured for none): never read.
    const keyless: CustodyView = {
      custody: { pinned: null, configured: new Set() },
      learnedTreasury: null,
    };
    const { job, escrow, settlement } = honest();
    const untied = decide(
      claimed({ ...job, keyFingerprint: null, creditsRemainingUnits: header }),
      known({ [escrow.signature]: finalized, [settlement.signature]: finalized }, [
        escrow,
        settlement,
      ]),
      localnetProfile,
      keyless,
      timing,
      unread,
      scanned,
    );
    expect(untied.verdict).not.toBe("awaiting_finality");
    const until = settlement.blockTime! * 1000 + ESCROW_COVER_WAIT_MS;
    expect(decideWith(unread, pinnedTo(vault), scanned, until).verdict).toBe("verified");
  });
});

describe("the gate between the verifier and the escrow scan of one process", () => {
  const wait = (slot: number, pending = false, until = 10_000) => ({ slot, until, pending });

  it("asks for a scan while a job waits for a slot not covered, and makes due the jobs each scan covers", () => {
    let t = 0;
    const gate = createEscrowCoverGate(() => t);
    expect(gate.wanted()).toBe(false);
    gate.waiting([
      { jobId: "a", wait: wait(100, false, Number.POSITIVE_INFINITY) },
      { jobId: "b", wait: wait(120, false, Number.POSITIVE_INFINITY) },
    ]);
    expect(gate.wanted()).toBe(true);
    expect(gate.covered(110)).toEqual(["a"]);
    expect(gate.wanted()).toBe(true);
    expect(gate.covered(110)).toEqual([]);
    expect(gate.covered(130)).toEqual(["b"]);
    t = ESCROW_COVER_AFTERWARD_MS;
    expect(gate.wanted()).toBe(false);
  });

  it("makes a job with entries held pending due after the next completed scan, without asking for one sooner", () => {
    const gate = createEscrowCoverGate(() => 0);
    gate.covered(200);
    gate.waiting([{ jobId: "held", wait: wait(150, true) }]);
    // The scan at its own pace judges the held entries first.
    expect(gate.wanted()).toBe(false);
    expect(gate.covered(201)).toEqual(["held"]);
    expect(gate.covered(202)).toEqual([]);
  });

  it("forgets jobs past their wait when no scan completes", () => {
    let t = 0;
    const gate = createEscrowCoverGate(() => t);
    gate.waiting(Array.from({ length: 1001 }, (_, i) => ({ jobId: `j${i}`, wait: wait(500) })));
    expect(gate.wanted()).toBe(true);
    t = 20_000;
    gate.waiting([{ jobId: "late", wait: wait(500, false, 30_000) }]);
    expect(gate.covered(600)).toEqual(["late"]);
  });

  it("keeps asking for a scan a minute after one let jobs through, and not for jobs past their wait", () => {
    let t = 0;
    const gate = createEscrowCoverGate(() => t);
    gate.waiting([{ jobId: "a", wait: wait(100) }]);
    expect(gate.covered(100)).toEqual(["a"]);
    // A payout just past the margin is listed within a second of its finality.
    t = ESCROW_COVER_AFTERWARD_MS - 1;
    expect(gate.wanted()).toBe(true);
    t = ESCROW_COVER_AFTERWARD_MS;
    expect(gate.wanted()).toBe(false);
    // One whose wait is over is judged at its own due time: no scan is hurried for it.
    gate.waiting([{ jobId: "b", wait: wait(900, false, t) }]);
    expect(gate.wanted()).toBe(false);
  });
});

describe("the gate's wake-up by the ledger", () => {
  it("makes due the jobs waiting for a vault the ledger read, and no other", () => {
    const gate = createEscrowCoverGate(() => 0);
    gate.waiting([
      { jobId: "a", wait: { slot: -1, until: 10_000, pending: false, vault: "v1" } },
      { jobId: "b", wait: { slot: -1, until: 10_000, pending: false, vault: "v2" } },
    ]);
    // Waiting for the ledger alone asks for no scan, and no scan lets it through.
    expect(gate.wanted()).toBe(false);
    expect(gate.covered(1_000)).toEqual([]);
    expect(gate.ledgerRead(["v1", "v3"])).toEqual(["a"]);
    expect(gate.ledgerRead(["v1", "v2"])).toEqual(["b"]);
  });
});

describe("which scan a verifier's verdicts wait for", () => {
  const read = { coveredSlot: 50, pending: new Set(["p"]), scannedAt: 1_000 };

  it("this process's own, always", () => {
    const config = { vault: "v", gate: createEscrowCoverGate() };
    expect(coverViewOf(config, { ...read, scannedAt: null }, 10_000_000)).toEqual({
      coveredSlot: 50,
      pending: new Set(["p"]),
    });
  });

  it("another process's (serve beside a nightly verify) only while it runs", () => {
    const config = { vault: "v", liveWithinMs: 120_000, recheckMs: 500 };
    expect(coverViewOf(config, read, 121_000)).toEqual({
      coveredSlot: 50,
      pending: new Set(["p"]),
      recheckMs: 500,
    });
    expect(coverViewOf(config, read, 121_001)).toBeNull();
    expect(coverViewOf(config, { ...read, scannedAt: null }, 2_000)).toBeNull();
  });
});
