import { expect, it } from "vitest";
import type { SqliteStore } from "../src/db/client.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { reopenJobs } from "../src/store/job-queue.js";
import { createVerifier } from "../src/verify/engine.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

const log = createLogger({ level: "silent" });
const h = useAdversaryHarness();

/**
 * With only the nightly `verify` deployed (no `serve`), a job sent back to be judged again after
 * its window's run (a reverify, an upgrade's rule, a conflicting receipt, a ledger line read
 * late) was judged by no run: each settles its own window, and that job's had passed. It stayed
 * `pending`, and every later run exited 0 without a word of it.
 */
it("judges a job of an earlier window sent back to be judged again since its run", async () => {
  const c = await h.scenario();
  const plan = h.op.plan({ keyIndex: 0 });
  c.record(plan, h.op.honestJob(plan));
  await c.flush();
  await h.finalized();
  const t = Date.now();
  const verifier = () =>
    createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      options: quickVerifierOptions,
    });
  const first = await runNightlyVerification(c.store, verifier(), {
    from: t - 3_600_000,
    to: t + 1_000,
    timeoutMs: 10_000,
  });
  expect(first.exitCode).toBe(0);
  expect((await c.outcome(plan.jobId)).verdict).toBe("verified");

  // Sent back by hand (`POST /jobs/:id/reverify`) after its run; the next night's run follows.
  reopenJobs(c.store as SqliteStore, { jobIds: [plan.jobId] }, Date.now(), { because: "reverify" });
  const next = await runNightlyVerification(c.store, verifier(), {
    from: t + 1_000,
    to: t + 2_000,
    timeoutMs: 10_000,
  });
  expect((await c.outcome(plan.jobId)).verdict).toBe("verified");
  expect(next.exitCode).toBe(0);
  expect(next.earlierJobs).toBeUndefined();
}, 60_000);
