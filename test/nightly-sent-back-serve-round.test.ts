import { randomBytes } from "node:crypto";
import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import type { VerifierRpc } from "../src/verify/verifier-rpc.js";
import { useAdversaryHarness, verified } from "./support/operator.js";
import { quickVerifier } from "./support/quick-verifier.js";

/**
 * `serve`'s scheduled nightly runs on serve's own verifier, whose loop shares its rounds' queue.
 * Its loop in a round waiting on a slow node (a job of an earlier window sent back by a
 * conflicting receipt naming a settlement no node has seen: its status asked), the run's
 * judging of the jobs sent back before it queued a round behind that one and waited for it to
 * end: past its budget, and past the run's own --timeout (25 s against 20 s) with exit 0. A run
 * of a window with nothing open waited for no round before.
 */
const log = createLogger({ level: "silent" });

describe("serve's scheduled nightly beside a round of serve's own on a slow node", () => {
  const h = useAdversaryHarness();

  it("waits for that round no longer than its share of the run's time", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    await c.flush();
    await h.finalized();
    const t = Date.now();
    const night = (engine: ReturnType<typeof quickVerifier>, from: number, to: number) =>
      runNightlyVerification(c.store, engine, {
        from,
        to,
        timeoutMs: 4_000,
        preflight: () => h.rpc.getSlot("finalized"),
      });
    expect(
      await night(quickVerifier(c.store, h.rpc, log, { profile: c.profile }), t - 3_600_000, t + 1),
    ).toMatchObject({ exitCode: 0, total: 1 });
    expect(await c.outcome(plan.jobId)).toEqual(verified);

    // The node answers no status until let go (at most 15 s).
    let letGo: () => void = () => {};
    const stuck = new Promise<void>((resolve) => {
      letGo = resolve;
      setTimeout(resolve, 15_000).unref();
    });
    let asked = 0;
    const rpc = new Proxy(h.rpc, {
      get(target, prop) {
        const value = Reflect.get(target, prop);
        if (typeof value !== "function") return value;
        if (prop !== "getSignatureStatuses") return value.bind(target);
        return async (...args: unknown[]) => {
          asked++;
          await stuck;
          return value.apply(target, args);
        };
      },
    }) as VerifierRpc;
    const serve = quickVerifier(c.store, rpc, log, { profile: c.profile });
    serve.start();
    try {
      c.recordConflict(plan, { ...txs, settlementTx: bs58.encode(randomBytes(64)) });
      await c.flush();
      for (let i = 0; asked === 0 && i < 250; i++) await new Promise((r) => setTimeout(r, 20));
      expect(asked).toBeGreaterThan(0);

      const started = performance.now();
      const scheduled = await night(serve, t + 1, t + 2);
      const ms = performance.now() - started;
      expect(scheduled).toMatchObject({
        exitCode: 0,
        reason: null,
        sentBackElsewhere: { judged: 0, changed: 0, left: 1 },
      });
      // Half its --timeout of 4 s, and the round's grace: not the 15 s serve's round took.
      expect(ms).toBeLessThan(4_000);
      expect((await c.outcome(plan.jobId)).verdict).toBe("pending");
    } finally {
      letGo();
      await serve.stop();
    }
  }, 60_000);
});
