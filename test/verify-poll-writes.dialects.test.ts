import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import type { Verdict } from "../src/db/schema.js";
import { createVerdictStore, type VerdictWrite } from "../src/store/verdicts.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { statementsSentBy } from "./support/pg-statements.js";
import { readJob, seedJobs } from "./support/seed-verdicts.js";

/**
 * A poll that learns nothing new of a job (its signatures still unseen) writes its next look:
 * the verifier's stub jobs, thousands waiting for finality, are polled round after round, and a
 * statement a job cost the service's CPU with no request at all. The jobs of a batch still
 * waiting are written by one statement, each guarded by its lease and verdict as before.
 */

const profile = { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 };
const T = Date.UTC(2026, 10, 2, 9);

/** A decision keeping the verdict the job was claimed with (no checks ran). */
const still = (jobId: string, verdict: Verdict, nextVerifyAt: number): VerdictWrite => ({
  job: { jobId, keyFingerprint: null, verdictAt: null, verifyAttempts: 1, verdict },
  verdict,
  nextVerifyAt,
  lastError: verdict === "error" ? "getSignatureStatuses: timed out" : null,
  commitment: null,
  evaluation: null,
  checks: null,
});

/** The statements updating `jobs` that `run` made the store send, in order. */
async function jobUpdatesBy(store: Store, run: () => Promise<unknown>): Promise<string[]> {
  if (store.kind === "postgres") {
    const sent = await statementsSentBy(run);
    return sent.map((s) => s.text).filter((text) => /^\s*UPDATE\s+"?jobs"?\s/i.test(text));
  }
  // Every run of a prepared statement on this process's connections.
  const statement = Object.getPrototypeOf(new Database(":memory:").prepare("SELECT 1")) as {
    run: (...args: unknown[]) => unknown;
    all: (...args: unknown[]) => unknown;
  };
  const seen: string[] = [];
  const original = { run: statement.run, all: statement.all };
  for (const method of ["run", "all"] as const) {
    statement[method] = function (this: { source: string }, ...args: unknown[]) {
      seen.push(this.source);
      return original[method].apply(this, args);
    };
  }
  restore = () => Object.assign(statement, original);
  try {
    await run();
  } finally {
    restore();
  }
  return seen.filter((text) => /^\s*UPDATE\s+"?jobs"?\s/i.test(text));
}
let restore = () => {};
afterEach(() => restore());

describe.each(dialects)("a batch of jobs still waiting on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("is written by one statement, each job's first decision only, none final", async () => {
    const store = await stores.open();
    const ids = Array.from({ length: 40 }, (_, i) => `wait-${i.toString().padStart(2, "0")}`);
    await seedJobs(store, [
      ...ids.map((jobId) => ({ jobId, verdict: "awaiting_finality" as const })),
      { jobId: "trouble", verdict: "error" },
    ]);
    const decisions = [
      ...ids.map((id, i) => still(id, "awaiting_finality", T + 2_000 * (i + 1))),
      still("trouble", "error", T + 8_000),
      // A second decision of a job in the batch: its first one released the lease.
      still("wait-00", "awaiting_finality", T + 999_000),
    ];
    const verdicts = createVerdictStore(store, profile);
    let written: boolean[] = [];
    const updates = await jobUpdatesBy(store, async () => {
      written = await verdicts.write(decisions, { owner: "owner-a", runId: null, t: T });
    });
    expect(written).toEqual(decisions.map(() => false));
    // The 41 kept verdicts in one statement; the second decision of wait-00 finds no lease (on
    // SQLite its guarded writes are tried, and change nothing).
    expect(updates.length).toBeLessThanOrEqual(dialect === "sqlite" ? 3 : 1);
    expect(await readJob(store, "wait-00")).toMatchObject({
      verdict: "awaiting_finality",
      nextVerifyAt: T + 2_000,
      leaseOwner: null,
      leaseUntil: null,
      verifyAttempts: 0,
      updatedAt: T,
    });
    expect(await readJob(store, "wait-39")).toMatchObject({
      nextVerifyAt: T + 80_000,
      leaseOwner: null,
    });
    expect(await readJob(store, "trouble")).toMatchObject({
      verdict: "error",
      verifyAttempts: 2,
      nextVerifyAt: T + 8_000,
      lastError: "getSignatureStatuses: timed out",
      leaseOwner: null,
    });
  });
});
