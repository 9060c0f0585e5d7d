import bs58 from "bs58";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import type { StoredTransaction } from "../src/localnet/chain.js";
import type { DecentralJobs } from "../src/localnet/decentral-jobs.js";
import { findModel, modelCatalog, priceUnits } from "../src/localnet/models.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { parseUnits } from "../src/money.js";
import { useStarted } from "./support/started-life.js";

const world = useStarted(() => startLocalWorld({ slotMs: 20, finalitySlots: 2 }));

const JOB_ID = /^job_[a-z0-9]{20}$/;

function isSignature(text: string | null): boolean {
  if (!text || !/^[1-9A-HJ-NP-Za-km-z]{87,88}$/.test(text)) return false;
  return bs58.decode(text).length === 64;
}

function client(apiKey: string) {
  return new OpenAI({ baseURL: world.decentralBaseUrl, apiKey, maxRetries: 0 });
}

async function post(apiKey: string | null, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${world.decentralBaseUrl}/chat/completions`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

type ApiJob = ReturnType<DecentralJobs["apiView"]>;

async function getJson<T = ApiJob>(path: string, apiKey: string) {
  const response = await fetch(`${world.decentralBaseUrl}${path}`, {
    headers: { authorization: `Bearer ${apiKey}` },
  });
  return { status: response.status, body: (await response.json()) as T };
}

function tokenDelta(tx: StoredTransaction, account: string): bigint {
  const index = tx.accountKeys.indexOf(account);
  const pre = tx.preTokenBalances.find((b) => b.accountIndex === index)?.amount ?? 0n;
  const post = tx.postTokenBalances.find((b) => b.accountIndex === index)?.amount ?? 0n;
  return post - pre;
}

describe("Decentral simulator through the openai SDK", () => {
  it("returns a completion with all five x-decentral headers, after settlement", async () => {
    const apiKey = world.apiKeys[0]!;
    const { data, response } = await client(apiKey)
      .chat.completions.create({
        model: "mistral-small-3.1-24b",
        messages: [{ role: "user", content: "Explain escrow in one paragraph." }],
      })
      .withResponse();
    expect(data.choices[0]?.message.content?.split(" ").length).toBe(data.usage?.completion_tokens);
    const jobId = response.headers.get("x-decentral-job-id");
    expect(jobId).toMatch(JOB_ID);
    expect(isSignature(response.headers.get("x-decentral-tx-signature"))).toBe(true);
    const settlement = response.headers.get("x-decentral-settlement-tx");
    expect(isSignature(settlement)).toBe(true);
    expect(world.chain.transaction(settlement!)?.err).toBeNull();
    const worker = response.headers.get("x-decentral-worker");
    expect(world.accounts.workers.map((w) => w.address)).toContain(worker);
    const account = await getJson<{ credits_remaining: number; usdc_value: string }>(
      "/account",
      apiKey,
    );
    expect(response.headers.get("x-decentral-credits-remaining")).toBe(
      String(account.body.credits_remaining),
    );
    const vault = world.chain.tokenAmount(world.accounts.creditVaults[0]!.vault)!;
    expect(account.body).toEqual({
      credits_remaining: Number(vault / 10_000n),
      usdc_value: `${vault / 1_000_000n}.${(vault % 1_000_000n).toString().padStart(6, "0")}`,
    });
  });

  it("streams a completion whose headers come first, without a settlement, which the jobs API reports later", async () => {
    const apiKey = world.apiKeys[0]!;
    const { data: stream, response } = await client(apiKey)
      .chat.completions.create({
        model: "llama-3.3-70b",
        messages: [{ role: "user", content: "Stream a long answer about settlement proofs." }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    expect(response.headers.get("x-decentral-settlement-tx")).toBeNull();
    expect(isSignature(response.headers.get("x-decentral-tx-signature"))).toBe(true);
    expect(response.headers.get("x-decentral-worker")).toBeTruthy();
    expect(response.headers.get("x-decentral-credits-remaining")).toMatch(/^\d+$/);
    let text = "";
    let completionTokens: number | undefined;
    let finishReason: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
    expect(text.split(" ").length).toBe(completionTokens);
    expect(finishReason).toBe("stop");

    const jobId = response.headers.get("x-decentral-job-id")!;
    const job = await getJson(`/jobs/${jobId}`, apiKey);
    expect(job.body).toMatchObject({
      job_id: jobId,
      status: "settled",
      model: "llama-3.3-70b",
      worker_address: response.headers.get("x-decentral-worker"),
      usage: { completion_tokens: completionTokens },
      on_chain: {
        escrow_tx: response.headers.get("x-decentral-tx-signature"),
        escrow_pda: world.accounts.escrowVault,
      },
    });
    const price = priceUnits(findModel("llama-3.3-70b")!, completionTokens!);
    expect(job.body.credits_charged).toBe(Number(price / 10_000n));
    expect(isSignature(job.body.on_chain.settlement_tx)).toBe(true);
    expect(world.chain.transaction(job.body.on_chain.settlement_tx!)?.err).toBeNull();
  });

  it("honours max_tokens: the completion stops there and the lock assumes it", async () => {
    const apiKey = world.apiKeys[2]!;
    const prompt = "Write at length; this prompt asks for a long answer about proofs.";
    const { data, response } = await client(apiKey)
      .chat.completions.create({
        model: "qwen3-8b",
        max_tokens: 40,
        messages: [{ role: "user", content: prompt }],
      })
      .withResponse();
    expect(data.usage!.completion_tokens).toBeLessThanOrEqual(40);
    const escrow = world.chain.transaction(response.headers.get("x-decentral-tx-signature")!)!;
    const lock = priceUnits(findModel("qwen3-8b")!, 40);
    expect(tokenDelta(escrow, world.accounts.escrowVault)).toBe(lock);
  });

  it("answers the same prompt with the same text and usage", async () => {
    const ask = () =>
      client(world.apiKeys[3]!).chat.completions.create({
        model: "phi-4-mini",
        messages: [{ role: "user", content: "Same question twice." }],
      });
    const [a, b] = [await ask(), await ask()];
    expect(a.choices[0]?.message.content).toBe(b.choices[0]?.message.content);
    expect(a.usage).toEqual(b.usage);
    expect(a.id).not.toBe(b.id);
  });

  it("lists the model catalog with Decentral pricing", async () => {
    const models = await client(world.apiKeys[0]!).models.list();
    expect(
      models.data.map((m) => [m.id, (m as unknown as { decentral: unknown }).decentral]),
    ).toEqual(
      modelCatalog.map((m) => [
        m.id,
        {
          tier: m.tier,
          credits_per_request: m.creditsPerRequest,
          credits_per_1k_tokens: m.creditsPer1kTokens,
          included_tokens: 500,
        },
      ]),
    );
  });
});

describe("Decentral simulator errors", () => {
  it("rejects a missing or unknown API key with 401 and the documented error body", async () => {
    for (const key of [null, "dcntrl_live_00000000000000000000000000000000"]) {
      const response = await post(key, {
        model: "qwen3-8b",
        messages: [{ role: "user", content: "hi" }],
      });
      expect(response.status).toBe(401);
      const body = (await response.json()) as { error: Record<string, unknown> };
      expect(Object.keys(body.error).sort()).toEqual(["code", "docs", "message", "param", "type"]);
    }
    await expect(
      client("dcntrl_live_00000000000000000000000000000000").models.list(),
    ).rejects.toMatchObject({ status: 401 });
  });

  it("answers 402 insufficient_credits when the vault cannot cover the lock, touching nothing on chain", async () => {
    const before = world.chain.transactionCount();
    const response = await post(world.lowBalanceApiKey, {
      model: "phi-4-mini",
      max_tokens: 1,
      messages: [{ role: "user", content: "too poor" }],
    });
    expect(response.status).toBe(402);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
      "insufficient_credits",
    );
    expect(world.chain.transactionCount()).toBe(before);
  });

  it("answers 503 with error.details.retry_after when busy, touching nothing on chain", async () => {
    const before = world.chain.transactionCount();
    const response = await post(
      world.apiKeys[0]!,
      { model: "qwen3-8b", messages: [{ role: "user", content: "busy?" }] },
      { "x-sim-fault": "busy" },
    );
    expect(response.status).toBe(503);
    const body = (await response.json()) as { error: { details: { retry_after: number } } };
    expect(body.error.details.retry_after).toBeGreaterThan(0);
    expect(response.headers.get("retry-after")).toBe(String(body.error.details.retry_after));
    expect(world.chain.transactionCount()).toBe(before);
  });

  it("answers 504 on timeout only after the whole lock is back in the credit vault", async () => {
    const apiKey = world.apiKeys[1]!;
    const vault = world.accounts.creditVaults[1]!.vault;
    const before = world.chain.tokenAmount(vault);
    const response = await post(
      apiKey,
      { model: "llama-3.3-70b", messages: [{ role: "user", content: "slow" }] },
      { "x-sim-fault": "timeout" },
    );
    expect(response.status).toBe(504);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("job_timeout");
    const jobId = response.headers.get("x-decentral-job-id")!;
    const escrow = world.chain.transaction(response.headers.get("x-decentral-tx-signature")!)!;
    const refund = world.chain.transaction(response.headers.get("x-decentral-settlement-tx")!)!;
    const lock = priceUnits(findModel("llama-3.3-70b")!, 2000);
    expect(tokenDelta(escrow, vault)).toBe(-lock);
    expect(tokenDelta(refund, vault)).toBe(lock);
    expect(refund.slot).toBeGreaterThanOrEqual(escrow.slot);
    expect(refund.logMessages.join("\n")).toContain(`decentral:refund:${jobId}`);
    expect(world.chain.tokenAmount(vault)).toBe(before);

    const job = await getJson(`/jobs/${jobId}`, apiKey);
    expect(job.body).toMatchObject({
      status: "refunded",
      credits_charged: 0,
      on_chain: { escrow_tx: escrow.signature, settlement_tx: refund.signature },
    });
  });

  it("shows a job only to the API key that owns it", async () => {
    const response = await post(world.apiKeys[2]!, {
      model: "phi-4-mini",
      messages: [{ role: "user", content: "mine" }],
    });
    const jobId = response.headers.get("x-decentral-job-id")!;
    expect((await getJson(`/jobs/${jobId}`, world.apiKeys[2]!)).status).toBe(200);
    expect((await getJson(`/jobs/${jobId}`, world.apiKeys[3]!)).status).toBe(404);
    expect((await getJson("/jobs/job_aaaaaaaaaaaaaaaaaaaa", world.apiKeys[2]!)).status).toBe(404);
  });

  it("rejects an unknown model, a bad max_tokens and an unknown fault name with 4xx", async () => {
    const key = world.apiKeys[0]!;
    const messages = [{ role: "user", content: "x" }];
    expect((await post(key, { model: "gpt-9", messages })).status).toBe(404);
    expect((await post(key, { model: "qwen3-8b", messages, max_tokens: -3 })).status).toBe(400);
    expect((await post(key, { model: "qwen3-8b", messages: [] })).status).toBe(400);
    expect(
      (await post(key, { model: "qwen3-8b", messages }, { "x-sim-fault": "steal-everything" }))
        .status,
    ).toBe(400);
  });
});

describe("the simulator's account and top-ups", () => {
  it("tops every funded vault up on a schedule and lists each top-up as a vault movement", async () => {
    const topping = await startLocalWorld({
      slotMs: 20,
      finalitySlots: 2,
      simulator: { topUpEveryMs: 30, topUpUnits: 1_234n },
    });
    try {
      const vault = topping.accounts.creditVaults[0]!.vault;
      const before = topping.chain.tokenAmount(vault)!;
      const movements = async () =>
        (
          (await (await fetch(`${topping.simulatorUrl}/sim/vaults/${vault}/movements`)).json()) as {
            movements: { kind: string; deltaUnits: string }[];
          }
        ).movements;
      // The first movement is the vault's creation with its first payment, then the top-ups.
      let list = await movements();
      while (list.length < 3) {
        await new Promise((r) => setTimeout(r, 20));
        list = await movements();
      }
      expect(list.slice(0, 3)).toEqual([
        expect.objectContaining({ kind: "deposit", deltaUnits: "10000000000000" }),
        expect.objectContaining({ kind: "deposit", deltaUnits: "1234" }),
        expect.objectContaining({ kind: "deposit", deltaUnits: "1234" }),
      ]);
      expect(topping.chain.tokenAmount(vault)! - before).toBeGreaterThanOrEqual(2_468n);
    } finally {
      await topping.close();
    }
  });

  it("reports a wrong balance on GET /v1/account while account-balance-off is on, the true one otherwise", async () => {
    const key = world.apiKeys[0]!;
    const vault = world.accounts.creditVaults[0]!.vault;
    const account = async (headers: Record<string, string> = {}) =>
      (await (
        await fetch(`${world.decentralBaseUrl}/account`, {
          headers: { authorization: `Bearer ${key}`, ...headers },
        })
      ).json()) as { credits_remaining: number; usdc_value: string };
    const toggle = (on: boolean) =>
      fetch(`${world.simulatorUrl}/sim/account-balance-off`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ on }),
      });
    const units = (a: { usdc_value: string }) => parseUnits(a.usdc_value);
    const balance = world.chain.tokenAmount(vault)!;
    expect(units(await account())).toBe(balance);
    expect(units(await account({ "x-sim-fault": "account-balance-off" }))).toBe(balance + 50_000n);
    expect((await toggle(true)).status).toBe(200);
    const off = await account();
    expect((await toggle(false)).status).toBe(200);
    expect(units(off)).toBe(balance + 50_000n);
    expect(off.credits_remaining).toBe(Number((balance + 50_000n) / 10_000n));
    expect(units(await account())).toBe(balance);
  });
});
