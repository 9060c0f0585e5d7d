import { describe, expect, it } from "vitest";
import type { TransactionFacts } from "../src/chain/transaction-facts.js";
import type { SignatureRow } from "../src/store/signatures.js";
import type { ReceiptForChecks } from "../src/verify/checks.js";
import {
  type CustodyView,
  type DecideJob,
  type DecideTiming,
  decide,
  type SignatureView,
} from "../src/verify/decide.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { honest } from "./support/verify-fixtures.js";

// decide() is a pure function of the job, what is known of its signatures, the profile and
// the custody pins: these tests build that knowledge by hand, with no store and no node.

type Row = Pick<SignatureRow, "state" | "commitment" | "notFoundSlot" | "notFoundCount">;

const finalized: Row = {
  state: "finalized",
  commitment: "finalized",
  notFoundSlot: null,
  notFoundCount: 0,
};

function claimed(job: ReceiptForChecks, queue: Partial<DecideJob> = {}): DecideJob {
  return {
    ...job,
    verdictAt: null,
    verifyAttempts: 0,
    backfillState: null,
    backfillNextAt: null,
    ...queue,
  };
}

function known(
  rows: Record<string, Row>,
  fetched: TransactionFacts[],
  round: Partial<Pick<SignatureView, "trouble" | "disagreements">> = {},
): SignatureView {
  const facts = new Map(fetched.map((f) => [f.signature, f]));
  return {
    row: (s) => rows[s],
    facts: (s) => facts.get(s),
    trouble: round.trouble ?? new Map(),
    disagreements: round.disagreements ?? new Map(),
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

  it("ends dropped, failing the exists check, when a signature never landed before its blockhash expired", () => {
    const { job, escrow, settlement } = honest();
    const rows: Record<string, Row> = {
      [escrow.signature]: finalized,
      [settlement.signature]: {
        state: "dropped",
        commitment: null,
        notFoundSlot: 500,
        notFoundCount: 7,
      },
    };
    const d = decide(claimed(job), known(rows, [escrow]), localnetProfile, noPins, timing);
    expect(d.verdict).toBe("dropped");
    expect(d.checks).toEqual([
      expect.objectContaining({ name: "settlement.exists", outcome: "fail" }),
    ]);
    expect(d.checks?.[0]?.reason).toContain("blockhash has expired");
  });

  it("ends unverifiable when the node no longer serves a finalized transaction (pruned)", () => {
    const { job, escrow, settlement } = honest();
    const rows: Record<string, Row> = {
      [escrow.signature]: { ...finalized, state: "pruned", notFoundCount: 5 },
      [settlement.signature]: finalized,
    };
    const d = decide(claimed(job), known(rows, [settlement]), localnetProfile, noPins, timing);
    expect(d.verdict).toBe("unverifiable");
    expect(d.checks).toEqual([expect.objectContaining({ name: "escrow.exists", outcome: "skip" })]);
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
