import { describe, expect, it } from "vitest";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createVerificationRunStore } from "../src/store/verification-runs.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  leaseOwners,
  lockExpiries,
  runColumns,
  seedHeartbeat,
  seedJobs,
  seedRuns,
  T0,
  twoProcesses,
} from "./support/seed-queue.js";

const t = T0 + 3_600_000;

describe.each(dialects)("verification runs on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("opens a run with its owner's heartbeat and finishes it with a summary", async () => {
    const store = await stores.open();
    const runs = createVerificationRunStore(store);

    const { runId, closed } = await runs.open(
      { trigger: "verify", window: { from: T0, to: t }, heartbeatUntil: t + 30_000 },
      { owner: "me", t, deadOwners: [] },
    );
    expect(closed).toBe(0);
    expect(await lockExpiries(store)).toEqual({ "verifier:me": t + 30_000 });
    expect(await runColumns(store)).toEqual([
      { id: runId, owner: "me", status: "running", finishedAt: null, summary: null },
    ]);
    expect(await runs.runningOwners("other")).toEqual(["me"]);
    expect(await runs.runningOwners("me")).toEqual([]);

    await runs.finish(runId, "completed", { total: 3, final: 3 }, t + 5);
    expect(await runColumns(store)).toEqual([
      {
        id: runId,
        owner: "me",
        status: "completed",
        finishedAt: t + 5,
        summary: { total: 3, final: 3 },
      },
    ]);
    expect(await runs.runningOwners("other")).toEqual([]);
  });

  it("writes a nightly's outcome into its finished run's summary, keeping the verifier's counts", async () => {
    const store = await stores.open();
    const runs = createVerificationRunStore(store);
    const open = () =>
      runs.open(
        { trigger: "verify", window: { from: T0, to: t }, heartbeatUntil: t + 30_000 },
        { owner: "me", t, deadOwners: [] },
      );
    const found = (await open()).runId;
    const timedOut = (await open()).runId;
    const byVerdict = { verified: 3 };
    await runs.finish(found, "completed", { total: 3, final: 3, byVerdict }, t + 5);
    await runs.finish(timedOut, "completed", { total: 3, final: 3, byVerdict }, t + 5);

    await runs.recordOutcome(
      found,
      { outcome: "ledger_findings", exitCode: 1, reason: null, ledgerFindings: 2 },
      t + 9,
    );
    const reason = "timed out after 60 s (reading the credit vaults' history)";
    await runs.recordOutcome(
      timedOut,
      { outcome: "incomplete", exitCode: 2, reason, ledgerFindings: 0 },
      t + 7,
    );
    const byId = new Map((await runColumns(store)).map((r) => [r.id, r]));
    expect(byId.get(found)).toEqual({
      id: found,
      owner: "me",
      status: "completed",
      finishedAt: t + 9,
      summary: {
        total: 3,
        final: 3,
        byVerdict,
        outcome: "ledger_findings",
        exitCode: 1,
        reason: null,
        ledgerFindings: 2,
      },
    });
    expect(byId.get(timedOut)?.summary).toEqual({
      total: 3,
      final: 3,
      byVerdict,
      outcome: "incomplete",
      exitCode: 2,
      reason,
      ledgerFindings: 0,
    });
    if (store.kind === "sqlite") {
      // Whole numbers as a reader of the column (sqlite3, a JSON tool) sees them, not `1.0`.
      const text = store.sqlite
        .prepare("SELECT summary FROM verification_runs WHERE id = ?")
        .pluck()
        .get(found) as string;
      expect(text).toContain('"exitCode":1,');
      expect(text).toContain('"ledgerFindings":2');
    }
  });

  it("renews a heartbeat and drops only the owner's own", async () => {
    const store = await stores.open();
    const runs = createVerificationRunStore(store);

    await runs.beat("me", t, t + 10);
    await runs.beat("me", t + 5, t + 20);
    await runs.beat("you", t, t + 10);
    expect(await lockExpiries(store)).toEqual({ "verifier:me": t + 20, "verifier:you": t + 10 });
    await runs.dropHeartbeat("me");
    expect(await lockExpiries(store)).toEqual({ "verifier:you": t + 10 });
  });

  it("closes the runs whose heartbeat expired, never its own, and drops stale heartbeats", async () => {
    const store = await stores.open();
    const [live, stale, silent, mine, done] = await seedRuns(store, [
      { owner: "live" },
      { owner: "stale" },
      { owner: "silent" },
      { owner: "me" },
      { owner: "gone", status: "completed" },
    ]);
    await seedHeartbeat(store, "live", t + 1);
    await seedHeartbeat(store, "stale", t);
    const runs = createVerificationRunStore(store);

    expect((await runs.runningOwners("me")).sort()).toEqual(["live", "silent", "stale"]);
    expect(await runs.closeAbandoned({ owner: "me", t, deadOwners: [] })).toBe(2);
    const byId = new Map((await runColumns(store)).map((r) => [r.id, r]));
    expect(byId.get(live!)).toMatchObject({ status: "running", finishedAt: null });
    expect(byId.get(stale!)).toMatchObject({ status: "abandoned", finishedAt: t });
    expect(byId.get(silent!)).toMatchObject({ status: "abandoned", finishedAt: t });
    expect(byId.get(mine!)).toMatchObject({ status: "running" });
    expect(byId.get(done!)).toMatchObject({ status: "completed" });
    expect(await lockExpiries(store)).toEqual({ "verifier:live": t + 1 });
    expect(await runs.closeAbandoned({ owner: "me", t, deadOwners: [] })).toBe(0);
  });

  it("keeps the runs and heartbeats of owners known alive, however long expired", async () => {
    const store = await stores.open();
    const [alive, stale] = await seedRuns(store, [{ owner: "alive" }, { owner: "stale" }]);
    await seedHeartbeat(store, "alive", t - 600_000);
    await seedHeartbeat(store, "stale", t - 600_000);
    const runs = createVerificationRunStore(store);

    const closer = { owner: "me", t, deadOwners: [], liveOwners: ["alive"] };
    expect(await runs.closeAbandoned(closer)).toBe(1);
    const byId = new Map((await runColumns(store)).map((r) => [r.id, r]));
    expect(byId.get(alive!)).toMatchObject({ status: "running", finishedAt: null });
    expect(byId.get(stale!)).toMatchObject({ status: "abandoned", finishedAt: t });
    expect(await lockExpiries(store)).toEqual({ "verifier:alive": t - 600_000 });
  });

  it("closes a dead owner's runs despite a live heartbeat and frees its jobs at once", async () => {
    const store = await stores.open();
    await seedRuns(store, [
      { owner: "dead" },
      { owner: "dead" },
      { owner: "me" },
      { owner: "alive" },
    ]);
    await seedHeartbeat(store, "dead", t + 60_000);
    await seedHeartbeat(store, "alive", t + 60_000);
    await seedJobs(store, [
      { jobId: "of-dead", leaseOwner: "dead", leaseUntil: t + 60_000 },
      { jobId: "of-alive", leaseOwner: "alive", leaseUntil: t + 60_000 },
      { jobId: "of-me", leaseOwner: "me", leaseUntil: t + 60_000 },
    ]);
    const runs = createVerificationRunStore(store);

    // Its own id among the dead ones is ignored: a process never abandons itself.
    const closed = await runs.closeAbandoned({ owner: "me", t, deadOwners: ["dead", "me"] });
    expect(closed).toBe(2);
    expect((await runColumns(store)).map((r) => [r.owner, r.status])).toEqual([
      ["dead", "abandoned"],
      ["dead", "abandoned"],
      ["me", "running"],
      ["alive", "running"],
    ]);
    expect(await leaseOwners(store)).toEqual({
      "of-alive": "alive",
      "of-dead": null,
      "of-me": "me",
    });
    const taken = await createJobQueueStore(store).claim("other", null, {
      t,
      leaseMs: 1000,
      limit: 10,
    });
    expect(taken.map((j) => j.jobId)).toEqual(["of-dead"]);
  });

  it("closes abandoned runs when a run opens, and says how many", async () => {
    const store = await stores.open();
    await seedRuns(store, [{ owner: "crashed" }, { owner: "killed" }]);
    await seedHeartbeat(store, "crashed", t - 1);
    const runs = createVerificationRunStore(store);

    const opened = await runs.open(
      { trigger: "serve", window: null, heartbeatUntil: t + 30_000 },
      { owner: "me", t, deadOwners: ["killed"] },
    );
    expect(opened.closed).toBe(2);
    expect((await runColumns(store)).map((r) => [r.owner, r.status])).toEqual([
      ["crashed", "abandoned"],
      ["killed", "abandoned"],
      ["me", "running"],
    ]);
    expect(await lockExpiries(store)).toEqual({ "verifier:me": t + 30_000 });
  });
});

describe.each(dialects)("the nightly coverage kept in verification runs on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("says where the last nightly that finished (exit 0 or 1) ended, before a time", async () => {
    const store = await stores.open();
    const runs = createVerificationRunStore(store);
    const night = 86_400_000;
    const nightly = async (from: number, exitCode: number | null, status = "completed") => {
      const { runId } = await runs.open(
        { trigger: "verify", window: { from, to: from + night }, heartbeatUntil: t + 30_000 },
        { owner: "me", t, deadOwners: [] },
      );
      await runs.finish(runId, status as "completed", { total: 1, final: 1 }, t);
      if (exitCode !== null) {
        const outcome = { outcome: "x", exitCode, reason: null, ledgerFindings: null };
        await runs.recordOutcome(runId, outcome, t);
      }
    };
    const since = T0 - 2 * night;
    expect(await runs.nightlyCoveredUntil(T0 + 9 * night, since)).toBeNull();
    // None finished yet: the time is open since the first nightly window began.
    await nightly(T0 - night, null, "abandoned");
    expect(await runs.nightlyCoveredUntil(T0 + 9 * night, since)).toBe(T0 - night);
    await nightly(T0, 0);
    await nightly(T0 + night, 1);
    // Could not finish, killed before its outcome, or the verifier's own run: none covers.
    await nightly(T0 + 2 * night, 2);
    await nightly(T0 + 3 * night, null, "abandoned");
    await runs.open(
      { trigger: "serve", window: null, heartbeatUntil: t + 30_000 },
      { owner: "serve", t, deadOwners: [] },
    );
    // The night before T0 never finished: it stays open, whatever finished after it.
    expect(await runs.nightlyCoveredUntil(T0 + 9 * night, since)).toBe(T0 - night);
    expect(await runs.nightlyCoveredUntil(T0 + 9 * night, T0)).toBe(T0 + 2 * night);
    expect(await runs.nightlyCoveredUntil(T0 + 2 * night - 1, T0)).toBe(T0 + night);
    expect(await runs.nightlyCoveredUntil(T0, since)).toBe(T0 - night);
    expect(await runs.nightlyCoveredUntil(T0 - 1, since)).toBeNull();
    // A run over the last hour of a night that never finished judges that hour only.
    const hour = 3_600_000;
    const { runId } = await runs.open(
      {
        trigger: "verify",
        window: { from: T0 + 4 * night - hour, to: T0 + 4 * night },
        heartbeatUntil: t + 30_000,
      },
      { owner: "me", t, deadOwners: [] },
    );
    await runs.finish(runId, "completed", { total: 1, final: 1 }, t);
    await runs.recordOutcome(
      runId,
      { outcome: "x", exitCode: 0, reason: null, ledgerFindings: null },
      t,
    );
    expect(await runs.nightlyCoveredUntil(T0 + 9 * night, T0)).toBe(T0 + 2 * night);
    await nightly(T0 + 2 * night, 0);
    // The night from T0 + 3 nights was killed: its last hour does not stand for it.
    expect(await runs.nightlyCoveredUntil(T0 + 9 * night, T0)).toBe(T0 + 3 * night);
    expect(await runs.nightlyCoveredUntil(T0 + 4 * night - hour, T0)).toBe(T0 + 3 * night);
  });
});

describe("verification runs on PostgreSQL, closed from two processes at once", () => {
  const stores = useDialectStores("postgres");

  it("counts each abandoned run once when verifiers on two hosts close and open at once", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      for (let round = 0; round < 5; round++) {
        const dead = [`dead-a-${round}`, `dead-b-${round}`];
        const seeded = await seedRuns(one, [
          ...Array.from({ length: 8 }, (_, i) => ({ owner: `stale-${round}-${i}` })),
          ...Array.from({ length: 4 }, (_, i) => ({ owner: dead[i % 2]! })),
        ]);
        for (const owner of dead) await seedHeartbeat(one, owner, t + 60_000);
        await seedJobs(
          one,
          Array.from({ length: 10 }, (_, i) => ({
            jobId: `job-${round}-${i}`,
            leaseOwner: dead[i % 2]!,
            leaseUntil: t + 60_000,
          })),
        );
        const [a, b] = [createVerificationRunStore(one), createVerificationRunStore(two)];
        // Each host knows different owners dead, in a different order; one closer opens a run.
        const closedCounts = await Promise.all([
          a.closeAbandoned({ owner: `a-${round}`, t, deadOwners: dead }),
          b.closeAbandoned({ owner: `b-${round}`, t, deadOwners: [...dead].reverse() }),
          b.closeAbandoned({ owner: `c-${round}`, t, deadOwners: [] }),
          a
            .open(
              { trigger: "serve", window: null, heartbeatUntil: t + 60_000 },
              { owner: `d-${round}`, t, deadOwners: [dead[1]!] },
            )
            .then((r) => r.closed),
        ]);
        expect(closedCounts.reduce((x, y) => x + y, 0)).toBe(seeded.length);
        const rows = await runColumns(one);
        const ofRound = rows.filter((r) => seeded.includes(r.id));
        expect(ofRound.every((r) => r.status === "abandoned" && r.finishedAt === t)).toBe(true);
        const owners = await leaseOwners(one);
        for (let i = 0; i < 10; i++) expect(owners[`job-${round}-${i}`]).toBeNull();
        // The run opened alongside stays open with its heartbeat.
        expect(rows.filter((r) => r.owner === `d-${round}`).map((r) => r.status)).toEqual([
          "running",
        ]);
        await a.finish(rows.find((r) => r.owner === `d-${round}`)!.id, "completed", null, t);
      }
    } finally {
      await two.close();
    }
  });

  it("ends a run finished while another process abandons it as completed", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      const ids = await seedRuns(
        one,
        Array.from({ length: 20 }, (_, i) => ({ owner: `slow-${i}` })),
      );
      const [a, b] = [createVerificationRunStore(one), createVerificationRunStore(two)];
      await Promise.all([
        a.closeAbandoned({ owner: "closer", t, deadOwners: [] }),
        ...ids.map((id) => b.finish(id, "completed", { id }, t + 1)),
      ]);
      // Serially: a run finished first is not abandoned; a run abandoned first is finished
      // over. Either way it ends completed, with its own summary.
      const rows = await runColumns(one);
      expect(rows.map((r) => r.status)).toEqual(ids.map(() => "completed"));
      expect(rows.map((r) => r.summary)).toEqual(ids.map((id) => ({ id })));
    } finally {
      await two.close();
    }
  });
});

// A nightly's row was finished `completed` when its jobs settled, before the ledger was read:
// killed in that phase, it stayed `completed` with no exit code. It is held `running` (counts
// written, no finish time) until the outcome closes it, so the sweep abandons a dead one.
describe.each(dialects)("a nightly's run row held through the ledger on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("stays running with its counts, closes with the outcome, or is abandoned when its owner dies", async () => {
    const store = await stores.open();
    const runs = createVerificationRunStore(store);
    const open = () =>
      runs.open(
        { trigger: "verify", window: { from: T0, to: t }, heartbeatUntil: t + 30_000 },
        { owner: "me", t, deadOwners: [] },
      );
    const ended = (await open()).runId;
    const killed = (await open()).runId;
    const counts = { total: 3, final: 3, byVerdict: { verified: 3 } };
    await runs.finish(ended, "running", counts, t + 5);
    await runs.finish(killed, "running", counts, t + 5);
    expect(await runColumns(store)).toEqual([
      { id: ended, owner: "me", status: "running", finishedAt: null, summary: counts },
      { id: killed, owner: "me", status: "running", finishedAt: null, summary: counts },
    ]);

    await runs.recordOutcome(
      ended,
      { outcome: "ledger_findings", exitCode: 1, reason: null, ledgerFindings: 2 },
      t + 9,
      "completed",
    );
    expect(await runs.closeAbandoned({ owner: "other", t: t + 10, deadOwners: ["me"] })).toBe(1);
    expect(await runColumns(store)).toEqual([
      {
        id: ended,
        owner: "me",
        status: "completed",
        finishedAt: t + 9,
        summary: {
          ...counts,
          outcome: "ledger_findings",
          exitCode: 1,
          reason: null,
          ledgerFindings: 2,
        },
      },
      { id: killed, owner: "me", status: "abandoned", finishedAt: t + 10, summary: counts },
    ]);
  });
});
