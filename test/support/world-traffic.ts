import { writeFileSync } from "node:fs";
import { expect } from "vitest";
import type { LocalWorld } from "../../src/localnet/world.js";
import { keyFingerprint } from "../../src/recorder/proxy.js";

/**
 * Jobs against the local world as a deployment's clients send them, for the tests that run
 * `serve` processes: through a serve's recording proxy, or straight to the simulator with the
 * receipt posted to a serve's ingest API (each resolves with the job id it was answered for) or
 * written to a file for `import`.
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

/**
 * One job run straight against the simulator with `key` (the world's first key unless given),
 * asking `content`, and the receipt a backend would post for it to `POST /jobs` or write to a file
 * for `import`: the response's headers and usage, the key named by its fingerprint.
 */
export async function simulatorJob(
  world: LocalWorld,
  content: string,
  key = world.apiKeys[0] as string,
): Promise<{ job_id: string | null } & Record<string, unknown>> {
  const base = world.decentralBaseUrl.replace(/\/v1$/, "");
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "phi-4-mini", messages: [{ role: "user", content }] }),
  });
  const body = (await res.json()) as { usage: Record<string, number> };
  const h = (name: string) => res.headers.get(name);
  return {
    job_id: h("x-decentral-job-id"),
    escrow_tx: h("x-decentral-tx-signature"),
    settlement_tx: h("x-decentral-settlement-tx"),
    worker: h("x-decentral-worker"),
    credits_remaining: h("x-decentral-credits-remaining"),
    model: "phi-4-mini",
    usage: body.usage,
    key_fingerprint: keyFingerprint(`Bearer ${key}`),
  };
}

/**
 * `jobs` simulator jobs with `key` (`simulatorJob`, asking `${prefix}${i}`), their receipts as
 * JSONL in `file` for `import`; resolves with their job ids.
 */
export async function simulatorReceiptsFile(
  world: LocalWorld,
  file: string,
  options: { jobs: number; prefix: string; key?: string },
): Promise<string[]> {
  const receipts = [];
  for (let i = 0; i < options.jobs; i++) {
    receipts.push(await simulatorJob(world, `${options.prefix}${i}`, options.key));
  }
  writeFileSync(file, `${receipts.map((r) => JSON.stringify(r)).join("\n")}\n`);
  return receipts.map((r) => String(r.job_id));
}

/** One job run straight against the simulator, its receipt posted to a serve's ingest API. */
export async function ingestedJob(
  world: LocalWorld,
  url: string,
  ingestToken: string,
  i: number,
): Promise<string> {
  const receipt = await simulatorJob(world, `i${i}`);
  const post = await fetch(`${url}/jobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${ingestToken}`, "content-type": "application/json" },
    body: JSON.stringify(receipt),
  });
  expect(post.status).toBe(201);
  return String(receipt.job_id);
}
