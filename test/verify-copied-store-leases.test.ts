import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { SqliteStore } from "../src/db/client.js";
import { thisHost } from "../src/host-identity.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createVerifier } from "../src/verify/engine.js";
import { type AdversaryHarness, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

const log = createLogger({ level: "silent" });

/**
 * A copy of a live SQLite store (`VACUUM INTO`, a backup) holds the run row and the job leases
 * of the `serve` that goes on working on the original file. A `verify` run on the copy took that
 * process, alive on this host, for a verifier beside it: the jobs it had leased were never
 * claimed, and stayed `awaiting_finality` until the run's --timeout (15 minutes of a nightly
 * over a minute of 2,138 jobs, 8 left open), said to wait for the escrow scan and for a row
 * "held locked by another database session".
 */

/** The start time `/proc` gives a process (the 22nd field of its stat). */
function startOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
}

/**
 * An owner id naming the process that started this one: alive on this host as long as the test
 * runs, as the copied serve is (this process's own id would be this verifier's).
 */
const liveOwner = `verifier-00000000-0000-4000-8000-000000000000-pid${process.ppid}.${startOf(process.ppid)}@${thisHost()}`;

const h: AdversaryHarness = useAdversaryHarness();

/** One honest job, recorded and final on chain, leased by `liveOwner` (lease run out). */
async function leasedJob(c: Scenario, now: number): Promise<string> {
  const plan = h.op.plan({ keyIndex: 0 });
  c.record(plan, h.op.honestJob(plan));
  await c.flush();
  await h.finalized();
  const { sqlite } = c.store as SqliteStore;
  sqlite
    .prepare(
      "INSERT INTO verification_runs (trigger, status, started_at, owner) VALUES ('serve', 'running', ?, ?)",
    )
    .run(now - 60_000, liveOwner);
  sqlite
    .prepare("INSERT INTO locks (name, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)")
    .run(`verifier:${liveOwner}`, liveOwner, now - 60_000, now - 30_000);
  sqlite
    .prepare(
      "UPDATE jobs SET verdict = 'awaiting_finality', lease_owner = ?, lease_until = ?, next_verify_at = ? WHERE job_id = ?",
    )
    .run(liveOwner, now - 1_000, now - 1_000, plan.jobId);
  return plan.jobId;
}

function verifierOf(c: Scenario) {
  return createVerifier({
    store: c.store,
    rpc: h.rpc,
    profile: c.profile,
    log,
    options: { ...quickVerifierOptions, leaseMs: 600 },
  });
}

describe("verify on a copy of a live store", () => {
  it("takes over the jobs leased by a live process that beats no heartbeat into this database", async () => {
    const c = await h.scenario();
    const jobId = await leasedJob(c, Date.now());
    const summary = await verifierOf(c).runUntilSettled({}, { timeoutMs: 8_000 });
    expect(summary.status).toBe("completed");
    expect((await c.outcome(jobId)).verdict).toBe("verified");
  }, 30_000);

  it("leaves alone the leases of a live process whose heartbeat here goes on", async () => {
    const c = await h.scenario();
    const jobId = await leasedJob(c, Date.now());
    const { sqlite } = c.store as SqliteStore;
    // The serve beside the run on the same file: its heartbeat renewed a few times a lease.
    const beat = setInterval(() => {
      const t = Date.now();
      sqlite
        .prepare("UPDATE locks SET acquired_at = ?, expires_at = ? WHERE name = ?")
        .run(t, t + 600, `verifier:${liveOwner}`);
    }, 100);
    try {
      const summary = await verifierOf(c).runUntilSettled({}, { timeoutMs: 2_000 });
      expect(summary.status).toBe("timed_out");
      expect(summary.rowsHeld).toBe(true);
    } finally {
      clearInterval(beat);
    }
    expect((await c.outcome(jobId)).verdict).toBe("awaiting_finality");
  }, 30_000);

  it("says, of a job leased by such a process beside the run, a lease and no row lock SQLite never takes", async () => {
    const c = await h.scenario();
    const now = Date.now();
    await leasedJob(c, now);
    const { sqlite } = c.store as SqliteStore;
    const beat = setInterval(() => {
      const t = Date.now();
      sqlite
        .prepare("UPDATE locks SET acquired_at = ?, expires_at = ? WHERE name = ?")
        .run(t, t + 600, `verifier:${liveOwner}`);
    }, 100);
    try {
      const run = await runNightlyVerification(c.store, verifierOf(c), {
        from: now - 3_600_000,
        to: now + 1_000,
        timeoutMs: 2_000,
      });
      expect(run.exitCode).toBe(2);
      expect(run.reason).toContain(
        "a due job was leased by another verifier of this host working on this database (serve's beside this run, or another verify) during the run",
      );
      expect(run.reason).not.toContain("database session");
      // Its transactions are final: it waits on that verifier, not on the escrow scan.
      expect(run.reason).toContain(
        "1 jobs not final: 1 leased by another verifier (serve's beside this run, or another verify), which judges them",
      );
      expect(run.reason).not.toContain("escrow scan");
    } finally {
      clearInterval(beat);
    }
  }, 30_000);
});
