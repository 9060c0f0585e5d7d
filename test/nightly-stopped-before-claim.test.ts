import { expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createVerifier } from "../src/verify/engine.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

const log = createLogger({ level: "silent" });
const h = useAdversaryHarness();

/**
 * A run stopped (its --timeout, SIGTERM) as a round started, before the round's claim, took no
 * job: the due job it left was counted as one "leased by another verifier" (or, on PostgreSQL,
 * "held locked by another database session"), sending on-call after a verifier that was not
 * there.
 */
it("names no other verifier's lease when the run was stopped as a round started, before it claimed", async () => {
  const c = await h.scenario();
  const plan = h.op.plan({ keyIndex: 0 });
  c.record(plan, h.op.honestJob(plan));
  await c.flush();
  await h.finalized();
  const stop = new AbortController();
  // The stop comes as the round reads the clock it claims by, its first step.
  const now = () => {
    const frames = new Error().stack?.split("\n").slice(2, 4) ?? [];
    if (frames[0]?.includes("sharedNow") && frames[1]?.includes("at round ")) stop.abort();
    return Date.now();
  };
  const verifier = createVerifier({
    store: c.store,
    rpc: h.rpc,
    profile: c.profile,
    log,
    now,
    options: quickVerifierOptions,
  });
  const t = Date.now();
  const run = await runNightlyVerification(c.store, verifier, {
    from: t - 3_600_000,
    to: t + 1_000,
    timeoutMs: 10_000,
    signal: stop.signal,
  });
  expect(stop.signal.aborted).toBe(true);
  expect(run.exitCode).toBe(2);
  expect(run.reason).toMatch(/^interrupted; 1 jobs not final/);
  expect(run.reason).not.toContain("another verifier");
  expect(run.reason).not.toContain("database session");
}, 30_000);
