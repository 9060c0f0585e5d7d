import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { createLogger } from "../src/log.js";
import { createCustodyStore } from "../src/store/custody.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { createVerdictStore } from "../src/store/verdicts.js";
import type { SignatureStatusLike } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createRound } from "../src/verify/round.js";
import { defaultVerifierOptions } from "../src/verify/verifier-options.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { queueColumns, seedJobs, seedSignatures, T0 } from "./support/seed-queue.js";

/**
 * Thousands of jobs whose signatures no node has seen yet (the RPC has not caught up, or they
 * never land) wait while the proxy serves. Their signatures are polled as before (2, 10, 42 s
 * after the first miss...), but a poll that finds them still unseen costs a status request and
 * nothing in the database: the jobs are not claimed, written or decided again until they may be
 * dropped, or until one of their signatures shows up, which sends its job back at once.
 */

const POLL_MS = 2_000;
const SLOT_MS = 400;

/**
 * A node that has seen nothing but what lands (its finalized slot moving at 400 ms a slot), a
 * queue whose claims are noted by job, and verifiers over `store` as processes start them.
 */
function watchWorld(store: Store) {
  let clock = T0;
  const landed = new Map<string, number>();
  const polled = new Map<string, number[]>();
  const slot = () => 1_000 + Math.floor((clock - T0) / SLOT_MS);
  const rpc = {
    async getSignatureStatuses(signatures: string[]) {
      for (const s of signatures) polled.set(s, [...(polled.get(s) ?? []), clock - T0]);
      return signatures.map((signature): SignatureStatusLike | null => {
        const at = landed.get(signature);
        return at === undefined
          ? null
          : { signature, slot: at, confirmationStatus: "confirmed", err: null };
      });
    },
    async getTransaction() {
      return null;
    },
    async getSlot() {
      return slot();
    },
  };
  const queue = createJobQueueStore(store);
  const claims = new Map<string, number[]>();
  const claim = queue.claim.bind(queue);
  queue.claim = async (...args) => {
    const got = await claim(...args);
    for (const j of got) claims.set(j.jobId, [...(claims.get(j.jobId) ?? []), clock - T0]);
    return got;
  };
  /** A verifier as a process starts it: its watch empty. */
  const start = () =>
    createRound({
      queue,
      signatures: createSignatureStore(store),
      verdicts: createVerdictStore(store, localnetProfile),
      custody: createCustodyStore(store, localnetProfile, { vaults: [], byKey: {} }),
      ledger: createLedgerStore(store),
      configuredVaults: new Set(),
      rpc,
      profile: localnetProfile,
      options: { ...defaultVerifierOptions, pollIntervalMs: POLL_MS },
      owner: "verifier",
      now: () => clock,
      sharedNow: async () => clock,
      log: createLogger({ level: "silent" }),
    });
  const signal = new AbortController().signal;
  /** The loop: rounds while they find work, then the next poll. */
  const runFor = async (round: ReturnType<typeof createRound>, ms: number) => {
    const end = clock + ms;
    for (; clock < end; clock += POLL_MS) {
      while ((await round(null, null, signal)) > 0) {}
    }
  };
  return {
    queue,
    landed,
    polled,
    claims,
    slot,
    start,
    runFor,
    advance: (ms: number) => {
      clock += ms;
    },
    elapsed: () => clock - T0,
  };
}

describe.each(dialects)("jobs whose signatures no node has seen yet, on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("are polled without being claimed at each poll, and looked at as soon as one shows up", async () => {
    const store = await stores.open();
    const ids = Array.from({ length: 12 }, (_, i) => `job_wait${i.toString().padStart(2, "0")}`);
    const escrow = (id: string) => `sig_e_${id}`;
    const settlement = (id: string) => `sig_s_${id}`;
    await seedJobs(
      store,
      ids.map((jobId) => ({
        jobId,
        escrowTx: escrow(jobId),
        settlementTx: settlement(jobId),
        nextVerifyAt: 0,
        leaseOwner: null,
        leaseUntil: null,
      })),
    );
    const w = watchWorld(store);
    const { landed, polled, claims, slot } = w;
    const round = w.start();
    const runFor = (ms: number) => w.runFor(round, ms);

    await runFor(30_000);
    // One lands 30 s after the first miss: its job is looked at at the next poll of its escrow.
    const late = ids[0]!;
    landed.set(escrow(late), slot());
    await runFor(70_000);

    const waiting = ids.slice(1);
    for (const id of waiting) {
      // The first poll and the one that learnt the pace of the slots: then the job waits for its
      // drop (300 slots: 120 s), and its signatures are polled without it.
      expect(claims.get(id), id).toHaveLength(2);
      for (const s of [escrow(id), settlement(id)]) {
        expect(polled.get(s)?.length ?? 0, s).toBeGreaterThanOrEqual(4);
      }
    }
    const jobs = await queueColumns(store);
    for (const job of jobs.filter((j) => j.jobId !== late)) {
      expect(job).toMatchObject({ verdict: "awaiting_finality", leaseOwner: null });
      expect(job.nextVerifyAt, job.jobId).toBeGreaterThanOrEqual(T0 + 100_000);
    }
    // Claimed again in the round after the poll that saw its escrow land.
    const seen = polled.get(escrow(late))!.find((at) => at >= 30_000)!;
    expect(claims.get(late)).toContain(seen);
    const [row] =
      store.kind === "postgres"
        ? (
            await store.pool.query("SELECT state FROM chain_transactions WHERE signature = $1", [
              escrow(late),
            ])
          ).rows
        : [
            store.sqlite
              .prepare("SELECT state FROM chain_transactions WHERE signature = ?")
              .get(escrow(late)),
          ];
    expect(row).toEqual({ state: "landed" });
  }, 60_000);

  it("are watched again by a verifier that starts after the one that put them off, which saw a landing at its next look only", async () => {
    const store = await stores.open();
    const ids = ["job_restart_a", "job_restart_b"];
    await seedJobs(
      store,
      ids.map((jobId) => ({
        jobId,
        escrowTx: `sig_e_${jobId}`,
        nextVerifyAt: 0,
        leaseOwner: null,
        leaseUntil: null,
      })),
    );
    const w = watchWorld(store);
    const { landed, claims, slot, start, runFor } = w;
    await runFor(start(), 30_000);
    // Put off to their drop, 120 s after the first miss, while that verifier watched them.
    for (const job of await queueColumns(store)) {
      expect(job.nextVerifyAt, job.jobId).toBeGreaterThanOrEqual(T0 + 100_000);
    }
    // It stops (a restart, a leader that died); one escrow lands before the next starts.
    const late = ids[0]!;
    landed.set(`sig_e_${late}`, slot());
    w.advance(4_000);
    const restartedAt = w.elapsed();
    await runFor(start(), 10_000);
    // Seen in its first round: looked at within a poll, not at its drop 70 s later.
    expect(claims.get(late)?.filter((at) => at >= restartedAt)[0]).toBeLessThanOrEqual(
      restartedAt + POLL_MS,
    );
    // The other still waits, unclaimed, for its own look.
    expect(claims.get(ids[1]!)?.filter((at) => at >= restartedAt)).toEqual([]);
  }, 60_000);

  it("are taken up by a starting verifier a page at a time, more than a page of them, the last as soon as it lands", async () => {
    const store = await stores.open();
    // 300 jobs a verifier before put off together to their drop while it watched their escrows.
    const ids = Array.from({ length: 300 }, (_, i) => `job_page${i.toString().padStart(3, "0")}`);
    await seedJobs(
      store,
      ids.map((jobId) => ({
        jobId,
        verdict: "awaiting_finality" as const,
        escrowTx: `sig_e_${jobId}`,
        nextVerifyAt: T0 + 100_000,
        leaseOwner: null,
        leaseUntil: null,
      })),
    );
    await seedSignatures(
      store,
      ids.map((jobId) => ({
        signature: `sig_e_${jobId}`,
        state: "unknown" as const,
        notFoundCount: 3,
        notFoundSince: T0 - 20_000,
      })),
    );
    const w = watchWorld(store);
    const reads: number[] = [];
    const putOff = w.queue.putOff.bind(w.queue);
    w.queue.putOff = async (...args) => {
      const got = await putOff(...args);
      reads.push(got.length);
      return got;
    };
    // The last of them in the queue's order lands before the verifier starts.
    const last = ids.at(-1)!;
    w.landed.set(`sig_e_${last}`, w.slot());
    await w.runFor(w.start(), 4_000);
    // Read in pages of at most 128 jobs, each a short stretch of the event loop: every job once.
    expect(Math.max(...reads)).toBeLessThanOrEqual(128);
    expect(reads.reduce((a, b) => a + b, 0)).toBe(300);
    // Seen at the first poll of the watch it took up, not at its drop 96 s later.
    expect(w.claims.get(last)?.[0]).toBeLessThanOrEqual(POLL_MS);
    expect(w.claims.get(ids[0]!)).toBeUndefined();
  }, 60_000);
});
