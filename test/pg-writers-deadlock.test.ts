import { describe, expect, it } from "vitest";
import { createBackfillStore } from "../src/store/backfill.js";
import type { CustodyProfile } from "../src/store/custody.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createJobsApiStore } from "../src/store/jobs-api.js";
import { createLedgerStore, type LineRead } from "../src/store/ledger.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { createVerdictStore, type VerdictWrite } from "../src/store/verdicts.js";
import { fakeSignature } from "./support/job-rows.js";
import {
  backendsWaiting,
  listLines,
  useDeadlockHosts,
  whileGroupHeld,
} from "./support/pg-deadlock.js";
import { statementsSentBy } from "./support/pg-statements.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt, signature } from "./support/recorder-fixtures.js";
import { seedCheck, seedJob } from "./support/seed-ledger.js";
import { seedJobs } from "./support/seed-verdicts.js";

/**
 * A receipt group (one host's receipt writer) against another host's verdict batch on one
 * PostgreSQL: the group's insert of a new job moved the rollup row of its model, worker and
 * hour, and a later receipt of the group locked an existing job's row; the verdict batch had
 * locked that job's row and its statement trigger then waited for the same rollup row. One of
 * the two was aborted as a deadlock (the receipt writer logged "could not record receipts; will
 * retry" and the proxy's callers waited a deadlock_timeout and a backoff more).
 *
 * The interleaving is forced: the group stops between its two receipts until the verdict
 * batch waits on a lock. The group's connections find deadlocks after 20 ms, the verdict
 * store's after 10 s, so a cycle aborts the group, which the test sees.
 */

const database = usePostgresDatabase();
const profile: CustodyProfile = { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 };
const WORKER = "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe";
const CREATED = Date.UTC(2026, 10, 1, 12);

const host = useDeadlockHosts(database, ["A", "B"]);

function verdictOf(jobId: string): VerdictWrite {
  return {
    job: { jobId, keyFingerprint: "kf_0001", verdictAt: null, verifyAttempts: 0 },
    verdict: "verified",
    nextVerifyAt: CREATED + 60_000,
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
      learned: { creditVault: null, treasuryCandidate: null },
    },
    checks: [{ name: "escrow.amount", outcome: "pass", reason: null, expected: "1", actual: "1" }],
  };
}

describe("a receipt group and another host's verdict batch on the same rollup rows", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    const existing = "job_deadlock_verdict_existing";
    await seedJobs(host.B, [{ jobId: existing, leaseOwner: "verifier-b", createdAt: CREATED }]);
    const sameRollup = { model: "qwen3-8b", worker: WORKER, keyFingerprint: "kf_0001" };
    const fresh = receipt({ ...sameRollup, createdAt: CREATED });
    // Another receipt of the existing job (another escrow): a conflict, read `FOR UPDATE`.
    const other = receipt({ ...sameRollup, jobId: existing, escrowTx: signature() });
    const verdicts = createVerdictStore(host.B, profile);
    // The group has written the new job (and its rollup rows) once it waits at the gate.
    const written = await whileGroupHeld(
      host.A,
      [recordReceiptsUnit([fresh], "proxy")],
      [recordReceiptsUnit([other], "proxy")],
      () =>
        verdicts.write([verdictOf(existing)], {
          owner: "verifier-b",
          runId: null,
          t: CREATED + 1000,
        }),
    );
    // The group's other receipt reopened the job, ending the verifier's lease: the batch,
    // run after the group, writes no verdict (the job is verified again).
    expect(written).toEqual([false]);
    const { rows } = await host.A.pool.query<{ verdict: string; n: string }>(
      `SELECT (SELECT verdict FROM jobs WHERE job_id = $1) AS verdict,
        (SELECT count(*) FROM jobs WHERE job_id = $2) AS n`,
      [existing, fresh.jobId],
    );
    expect(rows[0]).toEqual({ verdict: "pending", n: "1" });
  }, 30_000);
});

describe("a receipt group and another host's ledger batch keeping lines with the same jobs", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    // The ledger keeps a refund under each job's memo with that job, locking the jobs in id
    // order (JA, then JB); the group's receipts of the same jobs came JB first.
    const vault = "dEad1ockVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const sig = (name: string) => fakeSignature(`writers-deadlock:${name}`);
    const at = Date.UTC(2026, 10, 3, 12) / 1000;
    const ids = ["job_deadlock_ledger_a", "job_deadlock_ledger_b"] as const;
    for (const jobId of ids) {
      await seedJob(host.B, {
        jobId,
        escrowTx: sig(`lock:${jobId}`),
        settlementTx: sig(`settle:${jobId}`),
        verdict: "verified",
        recordedAt: (at + 60) * 1000,
      });
    }
    const lines = ids.flatMap((jobId, i): LineRead[] => {
      const base = 1_000_000n - BigInt(i) * 100_000n;
      const line = (name: string, second: number, pre: bigint, post: bigint, memo: boolean) => ({
        signature: sig(`${name}:${jobId}`),
        blockTime: at + i * 10 + second,
        succeeded: true,
        pre,
        post,
        delta: post - pre,
        memo: memo ? `refund:${jobId}` : null,
        memoKind: memo ? ("refund" as const) : null,
        memoJobId: memo ? jobId : null,
        opened: false,
      });
      return [
        line("lock", 0, base, base - 100_000n, false),
        line("refund", 1, base - 100_000n, base, true),
      ];
    });
    const ledger = createLedgerStore(host.B);
    const now = (at + 3600) * 1000;
    await listLines(ledger, vault, lines, now, 1000);
    const group = (jobId: string) =>
      recordReceiptsUnit(
        [
          receipt({
            jobId,
            escrowTx: sig(`lock:${jobId}`),
            settlementTx: sig(`settle:${jobId}`),
          }),
        ],
        "proxy",
      );
    await whileGroupHeld(host.A, [group(ids[1])], [group(ids[0])], () =>
      ledger.recordReads(vault, lines, [], now),
    );
    const { rows } = await host.A.pool.query<{ job_id: string; kept: string[] }>(
      "SELECT job_id, conflict_signatures AS kept FROM jobs WHERE job_id = ANY($1) ORDER BY job_id",
      [ids],
    );
    expect(rows.map((r) => r.kept.includes(sig(`refund:${r.job_id}`)))).toEqual([true, true]);
  }, 30_000);
});

describe("a ledger batch of jobs' own steps", () => {
  it("writes no job row and leaves the receipt writers alone", async () => {
    // Each job's lock and the return of its settlement, both named by the job: nothing is kept
    // with any job. Each was one guarded UPDATE of its job (a round trip, a third of a batch's
    // statements) under the receipt writers' turn.
    const vault = "0wnStepsVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const sig = (name: string) => fakeSignature(`own-steps:${name}`);
    const at = Date.UTC(2026, 10, 4, 12) / 1000;
    const ids = Array.from({ length: 8 }, (_, i) => `job_own_steps_${i}`);
    let balance = 10_000_000n;
    const lines: LineRead[] = [];
    for (const [i, jobId] of ids.entries()) {
      await seedJob(host.B, {
        jobId,
        escrowTx: sig(`lock:${jobId}`),
        settlementTx: sig(`settle:${jobId}`),
        recordedAt: (at + i * 10 + 5) * 1000,
      });
      for (const [name, delta, second] of [
        ["lock", -100_000n, 0],
        ["settle", 80_000n, 3],
      ] as const) {
        const pre = balance;
        balance += delta;
        const memo = name === "settle";
        lines.push({
          signature: sig(`${name}:${jobId}`),
          blockTime: at + i * 10 + second,
          succeeded: true,
          pre,
          post: balance,
          delta,
          memo: memo ? `settle:${jobId}` : null,
          memoKind: memo ? "settle" : null,
          memoJobId: memo ? jobId : null,
          opened: false,
        });
      }
    }
    const ledger = createLedgerStore(host.B);
    const now = (at + 3600) * 1000;
    await listLines(ledger, vault, lines, now, 2000);
    const sent = await statementsSentBy(() => ledger.recordReads(vault, lines, [], now));
    const jobWrites = sent.filter((s) => /^\s*update "jobs"/i.test(s.text));
    const turns = sent.filter((s) => /pg_advisory_xact_lock\(\$1::int, 0\)/.test(s.text));
    expect({ jobWrites: jobWrites.length, turns: turns.length }).toEqual({
      jobWrites: 0,
      turns: 0,
    });
    const { rows } = await host.B.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM ledger_lines WHERE vault = $1 AND state = 'read'",
      [vault],
    );
    expect(rows[0]?.n).toBe(String(lines.length));
  }, 30_000);
});

describe("the reader's look-up of transactions already stored", () => {
  it("asks once for a part of the listing, not once per line", async () => {
    const sig = (name: string) => fakeSignature(`stored-part:${name}`);
    const at = Date.UTC(2026, 10, 5, 12) / 1000;
    const names = Array.from({ length: 8 }, (_, i) => `tx${i}`);
    const ledger = createLedgerStore(host.B);
    const vault = "St0redPartVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    await ledger.recordReads(
      vault,
      [],
      names.map((name, i) => ({
        signature: sig(name),
        slot: 3000 + i,
        blockTime: at + i,
        fee: 5_000n,
        succeeded: true,
        err: "null",
        facts: `{"signature": "${sig(name)}", "slot": ${3000 + i}}`,
        raw: `raw:${name}`,
      })),
      (at + 60) * 1000,
    );
    const part = [...names.map(sig), sig("never-stored")];
    let found = new Map<string, { raw: string | null }>();
    const sent = await statementsSentBy(async () => {
      found = await ledger.storedTransactions(part);
    });
    expect(sent.length).toBe(1);
    expect([...found.keys()].sort()).toEqual(names.map(sig).sort());
    expect(found.get(sig("tx3"))?.raw).toBe("raw:tx3");
  }, 30_000);
});

describe("a receipt group and another host's poll keeping its jobs' verdicts", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    // A poll of still-waiting jobs writes their queue columns only (no verdict, no rollup row);
    // it locked the jobs' rows in its own order (JA, then JB), the group's receipts came JB first.
    const ids = ["job_deadlock_keep_a", "job_deadlock_keep_b"] as const;
    await seedJobs(
      host.B,
      ids.map((jobId) => ({ jobId, leaseOwner: "verifier-keep", createdAt: CREATED })),
    );
    const keep = (jobId: string): VerdictWrite => ({
      job: { jobId, verdict: "pending", verdictAt: null, verifyAttempts: 0 },
      verdict: "pending",
      nextVerifyAt: CREATED + 60_000,
      lastError: null,
      commitment: "confirmed",
      evaluation: null,
      checks: null,
    });
    const other = (jobId: string) =>
      recordReceiptsUnit([receipt({ jobId, escrowTx: signature() })], "proxy");
    const verdicts = createVerdictStore(host.B, profile);
    const written = await whileGroupHeld(host.A, [other(ids[1])], [other(ids[0])], () =>
      verdicts.write(ids.map(keep), { owner: "verifier-keep", runId: null, t: CREATED + 1000 }),
    );
    expect(written).toEqual([false, false]);
    // Both receipts reopened their jobs: the poll, run after the group, kept no lease of them.
    const { rows } = await host.A.pool.query<{ lease_owner: string | null }>(
      "SELECT lease_owner FROM jobs WHERE job_id = ANY($1) ORDER BY job_id",
      [ids],
    );
    expect(rows).toEqual([{ lease_owner: null }, { lease_owner: null }]);
  }, 30_000);
});

describe("a review's credits header checks", () => {
  it("read the vault's lines once for every lock, not once per lock, and decide each", async () => {
    const vault = "HeaderPartVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const sig = (name: string) => fakeSignature(`header-part:${name}`);
    const at = Date.UTC(2026, 10, 7, 12) / 1000;
    const ids = Array.from({ length: 10 }, (_, i) => `job_header_part_${i}`);
    // Jobs 3 and 7 answered a header no balance of their span matches; 0 to 2 were verified
    // before the vault was read (their header check a skip naming the vault).
    const wrong = new Set([3, 7]);
    const skipped = [0, 1, 2];
    let balance = 50_000_000n;
    const lines: LineRead[] = [];
    for (const [i, jobId] of ids.entries()) {
      const pre = balance;
      balance -= 100_000n;
      await seedJob(host.B, {
        jobId,
        escrowTx: sig(`lock:${jobId}`),
        recordedAt: (at + i * 10 + 5) * 1000,
        creditsRemainingUnits: wrong.has(i) ? 7n : balance,
      });
      lines.push({
        signature: sig(`lock:${jobId}`),
        blockTime: at + i * 10,
        succeeded: true,
        pre,
        post: balance,
        delta: -100_000n,
        memo: null,
        memoKind: null,
        memoJobId: null,
        opened: false,
      });
    }
    for (const i of skipped) {
      await seedCheck(host.B, {
        jobId: ids[i]!,
        name: "credits.header",
        outcome: "skip",
        expected: { vault },
        at: (at + 60) * 1000,
      });
    }
    const ledger = createLedgerStore(host.B);
    const now = (at + 3600) * 1000;
    await listLines(ledger, vault, lines, now, 4000);
    await ledger.recordReads(vault, lines, [], now);
    const sent = await statementsSentBy(() => ledger.review(vault, now));
    const spanReads = sent.filter((s) => /^select "ord", "block_time", "post_units"/i.test(s.text));
    const headerReads = sent.filter((s) => /"credits_remaining_units"/i.test(s.text));
    const checkWrites = sent.filter((s) => /^\s*update "?check_results/i.test(s.text));
    expect({
      spanReads: spanReads.length <= 2,
      headerReads: headerReads.length <= 2,
      checkWrites: checkWrites.length,
    }).toEqual({ spanReads: true, headerReads: true, checkWrites: 1 });
    const { rows } = await host.B.pool.query<{ signature: string; header_ok: boolean | null }>(
      "SELECT signature, header_ok FROM ledger_lines WHERE vault = $1",
      [vault],
    );
    const okOf = new Map(rows.map((r) => [r.signature, r.header_ok]));
    expect(ids.map((jobId) => okOf.get(sig(`lock:${jobId}`)))).toEqual(
      ids.map((_, i) => !wrong.has(i)),
    );
    const checks = await host.B.pool.query<{ job_id: string; outcome: string; actual: unknown }>(
      "SELECT job_id, outcome, actual FROM check_results WHERE name = 'credits.header' AND job_id = ANY($1) ORDER BY job_id",
      [ids],
    );
    expect(checks.rows).toEqual(
      skipped.map((i) => ({
        job_id: ids[i],
        outcome: "pass",
        actual: { balanceUnits: String(50_000_000n - 100_000n * BigInt(i + 1)) },
      })),
    );
  }, 30_000);
});

describe("a receipt group and another host's jobs API answer reopening a job naming its escrow", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    // The answer locks its job (JX), then reopens the job whose receipt names the escrow it
    // names (JY); the group's receipts came JY first. Outside a writer (a nightly `verify`'s
    // settlement backfill), the answer is a transaction of its own.
    const sig = (name: string) => fakeSignature(`answer-deadlock:${name}`);
    const at = Date.UTC(2026, 10, 8, 12);
    const [jx, jy] = ["job_deadlock_answer_x", "job_deadlock_answer_y"] as const;
    await seedJob(host.B, { jobId: jx, verdict: "pending", recordedAt: at });
    await seedJob(host.B, { jobId: jy, escrowTx: sig("lock:y"), recordedAt: at });
    const other = (jobId: string) =>
      recordReceiptsUnit([receipt({ jobId, escrowTx: signature() })], "proxy");
    await whileGroupHeld(host.A, [other(jy)], [other(jx)], () =>
      createJobsApiStore(host.B).recordAnswer(
        jx,
        {
          status: "completed",
          creditsChargedUnits: 1_000n,
          escrowTx: sig("lock:y"),
          settlementTx: null,
          worker: null,
          raw: {},
        },
        at + 1000,
      ),
    );
    const { rows } = await host.A.pool.query<{ job_id: string; verdict: string }>(
      "SELECT job_id, verdict FROM jobs WHERE job_id = ANY($1) ORDER BY job_id",
      [[jx, jy]],
    );
    expect(rows.map((r) => r.verdict)).toEqual(["pending", "pending"]);
  }, 30_000);
});

describe("a receipt group and another host's settlement backfill pass claiming the same jobs", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    // The pass claims its jobs in id order (JA, then JB) in a transaction of its own (a nightly
    // `verify` has no writer); the group's receipts came JB first.
    const at = Date.UTC(2026, 10, 9, 12);
    const ids = ["job_deadlock_backfill_a", "job_deadlock_backfill_b"] as const;
    for (const jobId of ids) {
      await seedJob(host.B, { jobId, verdict: "pending", recordedAt: at });
    }
    await host.B.pool.query(
      "UPDATE jobs SET backfill_state = 'pending', backfill_next_at = $2 WHERE job_id = ANY($1)",
      [ids, at],
    );
    const other = (jobId: string) =>
      recordReceiptsUnit([receipt({ jobId, escrowTx: signature() })], "proxy");
    const claimed = await whileGroupHeld(host.A, [other(ids[1])], [other(ids[0])], () =>
      createBackfillStore(host.B).claim(
        ids.map((jobId) => ({ jobId, nextAt: at + 60_000 })),
        [],
        at + 1000,
      ),
    );
    // Claimed after the group committed: its receipts, which name settlements, left none
    // of the two for the backfill.
    expect(claimed).toEqual([]);
  }, 30_000);
});

describe("a receipt group and another host's verifier dropping its leases as it stops", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    // The verifier drops every lease it holds (one statement, the rows in table order: JA,
    // then JB); the group's receipts of the same jobs came JB first.
    const ids = ["job_deadlock_release_a", "job_deadlock_release_b"] as const;
    await seedJobs(
      host.B,
      ids.map((jobId) => ({ jobId, leaseOwner: "verifier-stopping", createdAt: CREATED })),
    );
    const other = (jobId: string) =>
      recordReceiptsUnit([receipt({ jobId, escrowTx: signature() })], "proxy");
    await whileGroupHeld(
      host.A,
      [other(ids[1])],
      [other(ids[0])],
      () => createJobQueueStore(host.B).releaseLeases("verifier-stopping"),
      // Either it waits for the group (its rows held), or it is done without waiting.
      (released) => Promise.race([released, backendsWaiting(host.A)]),
    );
    const { rows } = await host.A.pool.query<{ lease_owner: string | null }>(
      "SELECT lease_owner FROM jobs WHERE job_id = ANY($1)",
      [ids],
    );
    expect(rows).toEqual([{ lease_owner: null }, { lease_owner: null }]);
  }, 30_000);
});
