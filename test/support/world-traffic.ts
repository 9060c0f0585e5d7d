import { expect } from "vitest";
import type { LocalWorld } from "../../src/localnet/world.js";
import { keyFingerprint } from "../../src/recorder/proxy.js";

/**
 * Jobs against the local world as a deployment's clients send them, for the tests that run
 * `serve` processes: through a serve's recording proxy, or straight to the simulator with the
 * receipt posted to a serve's ingest API. Each resolves with the job id it was answered for.
 */

/** One job through a serve's recording proxy, as the OpenAI SDK would send it. */
export async function proxiedJob(
  world: LocalWorld,
  url: string,
  i: number,
  stream = false,
): Promise<string> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${world.apiKeys[i % 3]}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({
      model: "qwen3-8b",
      messages: [{ role: "user", content: `job ${i}` }],
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    }),
  });
  await res.text();
  expect(res.status).toBe(200);
  return String(res.headers.get("x-decentral-job-id"));
}

/** One job run straight against the simulator, its receipt posted to a serve's ingest API. */
export async function ingestedJob(
  world: LocalWorld,
  url: string,
  ingestToken: string,
  i: number,
): Promise<string> {
  const base = world.decentralBaseUrl.replace(/\/v1$/, "");
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${world.apiKeys[0]}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "phi-4-mini", messages: [{ role: "user", content: `i${i}` }] }),
  });
  const body = (await res.json()) as { usage: Record<string, number> };
  const h = (name: string) => res.headers.get(name);
  const post = await fetch(`${url}/jobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${ingestToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      job_id: h("x-decentral-job-id"),
      escrow_tx: h("x-decentral-tx-signature"),
      settlement_tx: h("x-decentral-settlement-tx"),
      worker: h("x-decentral-worker"),
      credits_remaining: h("x-decentral-credits-remaining"),
      model: "phi-4-mini",
      usage: body.usage,
      key_fingerprint: keyFingerprint(`Bearer ${world.apiKeys[0]}`),
    }),
  });
  expect(post.status).toBe(201);
  return String(h("x-decentral-job-id"));
}
