import http from "node:http";
import { beforeAll, describe, expect, it } from "vitest";
import { buildStatement } from "../src/ledger/statement.js";
import { localApiKey } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { reportsStore } from "../src/store/reports.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type JobPlan, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { closedAfterTest, listen, serveApp } from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A credits header names the vault's balance when the response came: the lines surely before
 * it are those the chain dated up to the response's second, by the clock of who saw it arrive
 * (the proxy, or the caller's `created_at`). The receipt's row may be written much later: a
 * held JSON body, a write retried under load, an ingest or import of old responses. Dated by
 * that write, a lock the operator landed after its answer was taken as surely before it, and a
 * header naming the balance after that lock (false when it was sent) verified. A receipt that
 * says nothing of when its response came proves no line before it but its own lock's and
 * settlement's.
 */
describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  let shared: { c: Scenario; vault: string };
  beforeAll(async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    shared = { c, vault };
  });

  /** The block's scenario, a period starting now, the chain's clock ~50 ms into a whole second. */
  function start() {
    return { ...shared, from: periodEdge(h) };
  }

  /** The lock of a second job of the same key, landing now (the job is not this test's). */
  function concurrentLock() {
    return h.op.send(h.op.lockIxs(h.op.plan({ keyIndex: 0 }))).signature;
  }

  /**
   * Reads the vault once the chain has finalized past every time the job spans, then verifies:
   * the job's verdict, unproven codes and `credits.header`, and the statement's header findings.
   */
  async function judge(c: Scenario, vault: string, from: number, plan: JobPlan) {
    h.op.advanceClock(4_000);
    await h.finalized();
    await vaultReader(h, c, vault).syncVault(vault);
    await c.verify();
    const statement = await buildStatement(
      c.store,
      { from, to: h.op.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const audit = await reportsStore(c.store).auditRows(plan.jobId);
    return {
      verdict: audit?.job.verdict,
      unproven: audit?.job.unproven ?? [],
      check: await c.check(plan.jobId, "credits.header"),
      mismatches: statement.vaults[0]!.creditsHeaderMismatches.map((m) => m.jobId),
    };
  }

  /** Not verified, not a discrepancy: the header's balance may have come after the response. */
  function expectOrderUnknown(judged: Awaited<ReturnType<typeof judge>>) {
    expect(judged.check?.outcome).toBe("skip");
    expect(judged.verdict).toBe("partially_verified");
    expect(judged.unproven).toEqual(["credits_header_order_unknown"]);
    expect(judged.mismatches).toEqual([]);
  }

  /**
   * An honest job answered now (the response's time, by the chain's clock), then, 10 s later,
   * the customer's next lock: the header names the balance after that lock, which the vault held
   * only after the response.
   */
  function answeredThenLocked() {
    const started = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    const respondedAt = h.op.now();
    h.op.advanceClock(10_000);
    h.op.nextSlot();
    concurrentLock();
    const header = h.op.balance(started.vault);
    h.op.advanceClock(50_000);
    return { ...started, plan, txs, respondedAt, header, recordedAt: h.op.now() };
  }

  it("does not verify a header of the balance after a lock landed 10 s after the response, its receipt imported a minute later with the response's time", async () => {
    const { c, vault, from, plan, txs, respondedAt, header, recordedAt } = answeredThenLocked();
    c.record(
      plan,
      txs,
      { creditsRemainingUnits: header, createdAt: respondedAt, respondedAt },
      "import",
      recordedAt,
    );
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("does not verify a header of the balance after a lock landed 10 s after the response, its receipt posted a minute later without a time of its own", async () => {
    const { c, vault, from, plan, txs, header, recordedAt } = answeredThenLocked();
    c.record(plan, txs, { creditsRemainingUnits: header, respondedAt: null }, "ingest", recordedAt);
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("still verifies an honest header of the balance after the job's settlement, its receipt posted a minute later without a time of its own", async () => {
    // Nothing but the job's own lock and settlement between: whenever the response came, the
    // balance after them is the job's.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    h.op.advanceClock(10_000);
    h.op.nextSlot();
    concurrentLock();
    const next = h.op.balance(vault);
    h.op.advanceClock(50_000);
    c.record(
      plan,
      txs,
      { creditsRemainingUnits: next + plan.lock, respondedAt: null },
      "ingest",
      h.op.now(),
    );
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("pass");
    expect(judged.verdict).toBe("verified");
  });

  it("still verifies an honest header counting another job's lock that landed before the response, its receipt imported a minute later with the response's time", async () => {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    h.op.nextSlot();
    concurrentLock();
    const header = h.op.balance(vault);
    h.op.advanceClock(3_000);
    const respondedAt = h.op.now();
    h.op.advanceClock(60_000);
    h.op.nextSlot();
    concurrentLock();
    c.record(
      plan,
      txs,
      { creditsRemainingUnits: header, createdAt: respondedAt, respondedAt },
      "import",
      h.op.now(),
    );
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("pass");
    expect(judged.verdict).toBe("verified");
  });

  it("does not verify a proxied header of the balance after a lock the operator landed while holding the answer's body, its receipt written when the body ended", async () => {
    // The operator answers with the job's headers at once, the credits header naming the
    // balance after the customer's next lock, lands that lock 10 s later, and only then ends
    // the body: the proxy writes the receipt of a JSON answer once it is whole.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    const next = h.op.plan({ keyIndex: 0 });
    const header = (h.op.balance(vault) - next.lock) / 10_000n;
    let headersAt = 0;
    const log = createLogger({ level: "silent" });
    const upstream = closedAfterTest(
      await listen(
        http.createServer(async (req, res) => {
          for await (const _ of req) {
          }
          res.writeHead(200, {
            "content-type": "application/json",
            "x-decentral-job-id": plan.jobId,
            "x-decentral-tx-signature": txs.escrowTx,
            "x-decentral-settlement-tx": txs.settlementTx,
            "x-decentral-worker": plan.worker.address,
            "x-decentral-credits-remaining": header.toString(),
          });
          res.flushHeaders();
          headersAt = h.op.now();
          await new Promise((resolve) => setTimeout(resolve, 100));
          h.op.advanceClock(10_000);
          h.op.nextSlot();
          h.op.send(h.op.lockIxs(next));
          h.op.advanceClock(2_000);
          res.end(
            JSON.stringify({
              id: "chatcmpl-1",
              object: "chat.completion",
              model: plan.model,
              choices: [
                {
                  index: 0,
                  finish_reason: "stop",
                  message: { role: "assistant", content: "w".repeat(plan.completionTokens ?? 0) },
                },
              ],
              usage: {
                prompt_tokens: plan.promptTokens,
                completion_tokens: plan.completionTokens,
                total_tokens: (plan.promptTokens ?? 0) + (plan.completionTokens ?? 0),
              },
            }),
          );
        }),
      ),
    );
    const proxy = createRecordingProxy({
      store: c.store,
      log,
      upstreamBaseUrl: `${upstream.url}/v1`,
      now: () => h.op.now(),
    });
    const app = closedAfterTest(await serveApp({ store: c.store, log, proxy }));
    try {
      const res = await fetch(`${app.url}/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${localApiKey(plan.keyIndex)}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({
          model: plan.requestedModel,
          messages: [{ role: "user", content: "Say hi" }],
        }),
      });
      expect(res.status).toBe(200);
      await res.text();
      await proxy.idle();
    } finally {
      await proxy.close();
    }
    const row = await readJob(c.store, plan.jobId);
    // Written when the body ended, 12 s after the headers came.
    expect(Number(row?.recordedAt)).toBeGreaterThanOrEqual(headersAt + 12_000);
    // The response's time is the headers', before the lock.
    expect(Number(row?.respondedAt)).toBeGreaterThanOrEqual(headersAt);
    expect(Number(row?.respondedAt)).toBeLessThan(headersAt + 10_000);
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("takes the caller's created_at on POST /jobs as the response's time, and none when it is left out", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    const posted = await c.ingest(plan, txs, { created_at: "2026-11-30T10:00:00.250Z" });
    expect(posted.status).toBe(201);
    expect(await readJob(c.store, plan.jobId)).toMatchObject({
      createdAt: Date.parse("2026-11-30T10:00:00.250Z"),
      respondedAt: Date.parse("2026-11-30T10:00:00.250Z"),
    });
    const undated = h.op.plan({ keyIndex: 0 });
    expect((await c.ingest(undated, h.op.honestJob(undated))).status).toBe(201);
    expect((await readJob(c.store, undated.jobId))?.respondedAt).toBeNull();
  });
});
