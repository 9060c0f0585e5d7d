import { hash, randomBytes } from "node:crypto";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import type { Store } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { createRecordingFetch } from "../src/recorder/fetch-wrapper.js";
import { keyCheck, keyFingerprint } from "../src/recorder/key-fingerprint.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { parseReceiptInput, wireReceiptOf } from "../src/recorder/receipt-input.js";
import { type Receipt, recordReceipts } from "../src/recorder/receipts.js";
import { reportsStore } from "../src/store/reports.js";
import { createVerifier } from "../src/verify/engine.js";
import { clockPause } from "./support/chain-clock.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { nightlyOnChain, periodEdge, vaultReader } from "./support/ledger-periods.js";
import {
  discrepancyIncluding,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import {
  closedAfterTest,
  ingestToken,
  jobUpstream,
  listen,
  serveApp,
} from "./support/recorder-fixtures.js";

/**
 * The operator mints the API keys (`dcntrl_live_<32 alnum>`), and a key's fingerprint is 64 bits
 * of its SHA-256: two keys with one fingerprint cost it about 2^32 hashes (this pair took 7
 * minutes on 2 cores). Taken for one key, the second key's jobs locked and settled out of the
 * first key's credit vault were `verified`, and a nightly run exited 0 over them. Each receipt
 * now carries the next 64 bits of the hash (`key_check`): one fingerprint recorded with two of
 * them fails `key.fingerprint_unique`, whichever key's jobs came first.
 */
const K1 = "dcntrl_live_826ac7a850a53198q7z3k9m2w5x8r4t6";
const K2 = "dcntrl_live_39ad1e3bf1ea0d04q7z3k9m2w5x8r4t6";
const fingerprint = keyFingerprint(`Bearer ${K1}`)!;
/** Hex digits 16..32 of the key's SHA-256, as the integration docs compute it. */
const check = (key: string) => hash("sha256", key, "hex").slice(16, 32);
const log = createLogger({ level: "silent" });
const unique = "key.fingerprint_unique";

/** The answer each job gets: 700 bytes of text, charged for the 640 tokens its usage names. */
const completionOf = (plan: JobPlan) => ({
  id: "c",
  object: "chat.completion",
  model: plan.model,
  choices: [
    {
      index: 0,
      finish_reason: "stop",
      message: { role: "assistant", content: "x".repeat(700) },
    },
  ],
  usage: { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 },
});

/** The chat request `plan`'s job answers, asked with `key`. */
const chatRequest = (plan: JobPlan, key: string): RequestInit => ({
  method: "POST",
  headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
  body: JSON.stringify({
    model: plan.requestedModel,
    messages: [{ role: "user", content: "hi" }],
  }),
});

/** A recording proxy over an operator upstream answering each request with the next job queued. */
async function proxyOver(h: ReturnType<typeof useAdversaryHarness>, store: Store) {
  const queue: { plan: JobPlan; txs: { escrowTx: string; settlementTx: string } }[] = [];
  const upstream = await listen(
    http.createServer(async (req, res) => {
      for await (const _ of req) {
      }
      const { plan, txs } = queue.shift()!;
      res.writeHead(200, {
        "content-type": "application/json",
        "x-decentral-job-id": plan.jobId,
        "x-decentral-tx-signature": txs.escrowTx,
        "x-decentral-settlement-tx": txs.settlementTx,
        "x-decentral-worker": plan.worker.address,
      });
      res.end(JSON.stringify(completionOf(plan)));
    }),
  );
  const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
  const app = await serveApp({ store, log, proxy });
  return {
    /** Asks `plan`'s job with `key`; the operator sends its chain steps as the request comes. */
    async ask(plan: JobPlan, key: string): Promise<number> {
      queue.push({ plan, txs: h.op.honestJob(plan) });
      const res = await fetch(`${app.url}/v1/chat/completions`, chatRequest(plan, key));
      await res.text();
      await proxy.idle();
      return res.status;
    },
    async close() {
      await app.close();
      await proxy.close();
      await upstream.close();
    },
  };
}

describe.each(dialects)(
  "%s store: two API keys the operator made with one fingerprint",
  (dialect) => {
    const stores = useDialectStores(dialect);
    const h = useAdversaryHarness({ openStore: () => stores.open() });

    /** Posts `plan`'s receipt to POST /jobs as a recorder holding `key` would: 201. */
    async function post(c: Scenario, plan: JobPlan, key: string) {
      const { status, body } = await c.ingest(plan, h.op.honestJob(plan), {
        key_fingerprint: keyFingerprint(`Bearer ${key}`),
        key_check: check(key),
      });
      expect({ status, body }).toMatchObject({ status: 201 });
    }

    it("share the fingerprint, not the key check", () => {
      expect(K1).toMatch(/^dcntrl_live_[a-z0-9]{32}$/);
      expect(K2).toMatch(/^dcntrl_live_[a-z0-9]{32}$/);
      expect(keyFingerprint(`Bearer ${K2}`)).toBe(fingerprint);
      expect(fingerprint).toBe("b0a7b1b9a2a0a449");
      expect(check(K1)).toMatch(/^[0-9a-f]{16}$/);
      expect(check(K1)).not.toBe(check(K2));
      // What the proxy and the recording fetch record, from the Authorization header.
      expect(keyCheck(`Bearer ${K2}`)).toBe(check(K2));
    });

    it("an import line the proxy writes keeps the key check, read back as it was", () => {
      const receipt = {
        jobId: "job_abcdefghij0123456789",
        escrowTx: bs58.encode(Buffer.alloc(64, 7)),
        settlementTx: null,
        worker: null,
        creditsRemainingUnits: null,
        model: "qwen3-8b",
        promptTokens: null,
        completionTokens: null,
        totalTokens: null,
        keyFingerprint: fingerprint,
        keyCheck: check(K2),
      };
      const line = wireReceiptOf(receipt);
      expect(line).toMatchObject({ key_fingerprint: fingerprint, key_check: check(K2) });
      const read = parseReceiptInput(line);
      expect(read.ok ? read.receipt.keyCheck : read).toBe(check(K2));
    });

    it("the first key's jobs first: the second key's, paid from its vault, are a discrepancy, and the first key's are judged again as one", async () => {
      const c = await h.scenario();
      const first = h.op.plan({ keyIndex: 1 });
      await post(c, first, K1);
      await c.verify();
      expect(await c.outcome(first.jobId)).toEqual(verified);
      // Key 2's customer asks jobs; the operator locks and settles them out of key 1's vault.
      const before = h.op.balance(first.vault);
      const thefts = [h.op.plan({ keyIndex: 1 }), h.op.plan({ keyIndex: 1 })];
      for (const theft of thefts) await post(c, theft, K2);
      await c.verify();
      expect(before - h.op.balance(first.vault)).toBe(thefts[0]!.charge + thefts[1]!.charge);
      for (const theft of thefts) {
        expect(await c.outcome(theft.jobId)).toEqual(discrepancyIncluding(unique));
      }
      // The vault pinned for the fingerprint is either key's: key 1's job is sent back and fails too.
      expect(await c.outcome(first.jobId)).toEqual(discrepancyIncluding(unique));
    });

    it("the second key's jobs first: judged verified alone, sent back once the first key's receipt comes", async () => {
      const c = await h.scenario();
      const thefts = [h.op.plan({ keyIndex: 1 }), h.op.plan({ keyIndex: 1 })];
      for (const theft of thefts) await post(c, theft, K2);
      await c.verify();
      // Alone, a key with one key check: nothing tells yet that another key shares its fingerprint.
      for (const theft of thefts) expect(await c.outcome(theft.jobId)).toEqual(verified);
      const own = h.op.plan({ keyIndex: 1 });
      await post(c, own, K1);
      await c.verify();
      expect(await c.outcome(own.jobId)).toEqual(discrepancyIncluding(unique));
      for (const theft of thefts) {
        expect(await c.outcome(theft.jobId)).toEqual(discrepancyIncluding(unique));
      }
    });

    it("the second key's job first imported naming only the fingerprint: its receipt naming the key check, posted later, fails both keys' jobs", async () => {
      const c = await h.scenario();
      const first = h.op.plan({ keyIndex: 1 });
      await post(c, first, K1);
      const theft = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(theft);
      c.record(theft, txs, { keyFingerprint: fingerprint }, "import");
      await c.verify();
      // Named by its fingerprint alone, the job is the first key's.
      expect(await c.outcome(theft.jobId)).toEqual(verified);
      expect(await c.outcome(first.jobId)).toEqual(verified);
      const later = await c.ingest(theft, txs, {
        key_fingerprint: fingerprint,
        key_check: check(K2),
      });
      expect(later.status).toBeLessThan(300);
      await c.verify();
      expect(await c.outcome(theft.jobId)).toEqual(discrepancyIncluding(unique));
      expect(await c.outcome(first.jobId)).toEqual(discrepancyIncluding(unique));
    });

    it("the second key's job first imported naming only the fingerprint and no credits header: its full receipt, a conflict, still fails both keys' jobs", async () => {
      const c = await h.scenario();
      const first = h.op.plan({ keyIndex: 1 });
      await post(c, first, K1);
      const theft = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(theft);
      c.record(theft, txs, { keyFingerprint: fingerprint, creditsRemainingUnits: null }, "import");
      await c.verify();
      expect(await c.outcome(theft.jobId)).toEqual(verified);
      const later = await c.ingest(theft, txs, {
        key_fingerprint: fingerprint,
        key_check: check(K2),
      });
      expect(later.status).toBe(409);
      await c.verify();
      expect(await c.outcome(theft.jobId)).toEqual(discrepancyIncluding(unique));
      expect(await c.outcome(first.jobId)).toEqual(discrepancyIncluding(unique));
    });

    it("one key's many jobs, each receipt naming its key check: all verified", async () => {
      const c = await h.scenario();
      const plans = [1, 2, 3, 4].map(() => h.op.plan({ keyIndex: 2 }));
      for (const plan of plans) await post(c, plan, K1);
      await c.verify();
      for (const plan of plans) expect(await c.outcome(plan.jobId)).toEqual(verified);
    });

    it("a receipt of a job naming another key check than its own is a conflict over key_check", async () => {
      const c = await h.scenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      const own = { key_fingerprint: fingerprint, key_check: check(K1) };
      expect((await c.ingest(plan, txs, own)).status).toBe(201);
      const again = await c.ingest(plan, txs, { ...own, key_check: check(K2) });
      expect(again.status).toBe(409);
      const audit = await reportsStore(c.store).auditRows(plan.jobId);
      expect(audit?.conflicts).toEqual([
        expect.objectContaining({
          differences: ["key_check"],
          receipt: expect.objectContaining({ key_check: check(K2) }),
        }),
      ]);
    });

    it("ingest takes a key check beside its fingerprint, and refuses a malformed one or one alone by field", async () => {
      const c = await h.scenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      for (const overrides of [
        { key_check: "XYZ" },
        { key_check: check(K1).toUpperCase() },
        { key_check: `${check(K1)}0` },
        { key_check: 5 },
        { key_fingerprint: undefined, key_check: check(K1) },
      ]) {
        const { status, body } = await c.ingest(plan, txs, overrides);
        expect(status).toBe(400);
        expect(JSON.stringify(body)).toContain('"field":"key_check"');
      }
      const taken = await c.ingest(plan, txs, {
        key_fingerprint: fingerprint,
        key_check: check(K1),
      });
      expect(taken.status).toBe(201);
    });

    it("through one proxy: the second key's job paid from the first key's vault is a discrepancy", async () => {
      const c = await h.scenario();
      const p = await proxyOver(h, c.store);
      try {
        const first = h.op.plan({ keyIndex: 1 });
        expect(await p.ask(first, K1)).toBe(200);
        await c.verify();
        expect(await c.outcome(first.jobId)).toEqual(verified);
        const theft = h.op.plan({ keyIndex: 1 });
        expect(await p.ask(theft, K2)).toBe(200);
        await c.verify();
        expect(await c.outcome(theft.jobId)).toEqual(discrepancyIncluding(unique));
        expect(await c.outcome(first.jobId)).toEqual(discrepancyIncluding(unique));
      } finally {
        await p.close();
      }
    });

    it("through one recording fetch: the second key's job paid from the first key's vault is a discrepancy", async () => {
      const c = await h.scenario();
      const audit = closedAfterTest(await serveApp({ store: c.store, log }));
      const errors: string[] = [];
      const recordingFetch = createRecordingFetch({
        ingestUrl: `${audit.url}/jobs`,
        token: await ingestToken(c.store),
        onError: (error) => errors.push(error.message),
      });
      const ask = async (plan: JobPlan, key: string) => {
        const upstream = await jobUpstream(plan, h.op.honestJob(plan), {
          body: JSON.stringify(completionOf(plan)),
        });
        const res = await recordingFetch(
          `${upstream.url}/v1/chat/completions`,
          chatRequest(plan, key),
        );
        await res.text();
        await recordingFetch.flush();
      };
      const first = h.op.plan({ keyIndex: 1 });
      await ask(first, K1);
      const theft = h.op.plan({ keyIndex: 1 });
      await ask(theft, K2);
      expect(errors).toEqual([]);
      await c.verify();
      expect(await c.outcome(theft.jobId)).toEqual(discrepancyIncluding(unique));
      expect(await c.outcome(first.jobId)).toEqual(discrepancyIncluding(unique));
    });

    it("completions posted with _decentral naming the key check, as the Python integration posts them: the second key's is a discrepancy", async () => {
      const c = await h.scenario();
      const audit = closedAfterTest(await serveApp({ store: c.store, log }));
      const token = await ingestToken(c.store);
      const postCompletion = async (plan: JobPlan, key: string) => {
        const txs = h.op.honestJob(plan);
        const res = await fetch(`${audit.url}/jobs`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({
            ...completionOf(plan),
            _decentral: {
              job_id: plan.jobId,
              escrow_tx: txs.escrowTx,
              settlement_tx: txs.settlementTx,
              worker: plan.worker.address,
              requested_model: plan.requestedModel,
              key_fingerprint: keyFingerprint(`Bearer ${key}`),
              key_check: check(key),
            },
          }),
        });
        expect(res.status).toBe(201);
      };
      const first = h.op.plan({ keyIndex: 1 });
      await postCompletion(first, K1);
      const theft = h.op.plan({ keyIndex: 1 });
      await postCompletion(theft, K2);
      await c.verify();
      expect(await c.outcome(theft.jobId)).toEqual(discrepancyIncluding(unique));
      expect(await c.outcome(first.jobId)).toEqual(discrepancyIncluding(unique));
    });

    it("a nightly run over the second key's jobs paid from the first key's vault exits 1", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const first = h.op.plan({ keyIndex: 3 });
      c.record(first, h.op.honestJob(first), { keyFingerprint: fingerprint, keyCheck: check(K1) });
      const thefts: JobPlan[] = [];
      for (let i = 0; i < 3; i++) {
        const theft = h.op.plan({ keyIndex: 3 });
        c.record(theft, h.op.honestJob(theft), {
          keyFingerprint: fingerprint,
          keyCheck: check(K2),
        });
        thefts.push(theft);
      }
      await h.finalized();
      const now = () => h.op.now();
      const reader = vaultReader(h, c, first.vault, h.rpc, { now });
      const run = await nightlyOnChain(h, c, reader, now, clockPause(h)).nightly({
        from,
        to: now(),
      });
      expect(run.exitCode).toBe(1);
      for (const t of thefts)
        expect(await c.outcome(t.jobId)).toEqual(discrepancyIncluding(unique));
    });
  },
);

/**
 * Two hosts on one PostgreSQL database, each recording the first receipt of one of two keys
 * sharing a fingerprint and judging its job at once: the second receipt is written while the
 * first host's verifier judges the first job (started as that verifier asks the chain for its
 * transactions), committing before or after the verifier reads the fingerprint's key checks.
 * Whichever comes first, both jobs end failing `key.fingerprint_unique`: the verifier waits for
 * a writer holding the fingerprint's stripe, and one that comes after it sends the job back,
 * its lease dropped, in the receipt's transaction.
 */
describe("two API keys with one fingerprint recorded at once from two PostgreSQL pools", () => {
  const stores = useDialectStores("postgres");
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** `plan`'s receipt naming key `fingerprint` and `keyCheck`, as its recorder records it. */
  const receiptOf = (plan: JobPlan, keyFingerprint: string, keyCheck: string): Receipt => {
    const txs = h.op.honestJob(plan);
    return {
      jobId: plan.jobId,
      escrowTx: txs.escrowTx,
      settlementTx: txs.settlementTx,
      worker: plan.worker.address,
      creditsRemainingUnits: h.op.balance(plan.vault),
      model: plan.requestedModel ?? plan.model,
      responseModel: plan.model,
      promptTokens: plan.promptTokens,
      completionTokens: plan.completionTokens,
      totalTokens:
        plan.completionTokens === null ? null : (plan.promptTokens ?? 0) + plan.completionTokens,
      maxTokens: plan.maxTokens,
      stream: false,
      httpStatus: 200,
      keyFingerprint,
      keyCheck,
    };
  };

  it("fails both keys' first jobs, the second written while the first host judges the first", async () => {
    const c = await h.scenario();
    if (c.store.kind !== "postgres") throw new Error("expected PostgreSQL");
    const two = openPostgres(stores.lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 });
    /** Records `receipt` on `store`, then judges what is due there, as a host does. */
    const host = async (store: Store, receipt: Receipt, rpc: RpcPool) => {
      const [result] = await recordReceipts(store, [receipt], "ingest");
      expect(result).toEqual({ outcome: "created" });
      const verifier = createVerifier({
        store,
        rpc,
        profile: c.profile,
        log,
        options: quickVerifierOptions,
      });
      await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    };
    const jobs: string[] = [];
    try {
      // The two keys made to collide, then, for the second write to meet the first host's
      // judging at other points, one fingerprint (any 64 bits: the audit reads no more of a
      // receipt's key) per round, its write started later and later after the first question.
      for (const [round, delayMs] of [0, 0, 10, 25, 50, 100, 200, 400].entries()) {
        const [f, c1, c2] =
          round === 0
            ? [fingerprint, check(K1), check(K2)]
            : [1, 2, 3].map(() => randomBytes(8).toString("hex"));
        const own = h.op.plan({ keyIndex: 1 });
        const theft = h.op.plan({ keyIndex: 1 });
        const first = receiptOf(own, f!, c1!);
        const second = receiptOf(theft, f!, c2!);
        jobs.push(own.jobId, theft.jobId);
        await h.finalized();
        let secondHost: Promise<void> | undefined;
        // The first host's chain: its first question starts the second host's write.
        const rpc = new Proxy(h.rpc, {
          get(target, name, receiver) {
            const value = Reflect.get(target, name, receiver);
            if (typeof value !== "function") return value;
            return (...args: unknown[]) => {
              secondHost ??= sleep(delayMs).then(() => host(two, second, h.rpc));
              return value.apply(target, args);
            };
          },
        });
        await host(c.store, first, rpc);
        await secondHost;
      }
      await c.verify();
      for (const jobId of jobs) {
        expect({ jobId, ...(await c.outcome(jobId)) }).toEqual({
          jobId,
          ...discrepancyIncluding(unique),
        });
      }
    } finally {
      await two.close();
    }
  }, 120_000);
});
