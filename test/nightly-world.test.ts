import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import type { SqliteStore } from "../src/db/client.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { runVerifyCommand } from "../src/nightly/verify-command.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { createTestStore } from "./support/store.js";
import { runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });

let world: LocalWorld;
beforeAll(async () => {
  world = await startLocalWorld({ slotMs: 10, finalitySlots: 3 });
});
afterAll(async () => {
  await world?.close();
});

function pool(url: string): RpcPool {
  return createRpcPool({
    endpoints: [{ url, rateLimitPerSec: 200, concurrency: 4, timeoutMs: 1000 }],
    backoffBaseMs: 10,
    backoffMaxMs: 50,
    breakerCooldownMs: 200,
  });
}

/** `verify --since 1h` with the real verifier over `rpcUrl`, as the CLI composes it. */
async function verify(store: SqliteStore, rpcUrl: string, timeout = "20s") {
  const rpc = pool(rpcUrl);
  const verifier = createVerifier({
    store,
    rpc,
    profile: localnetProfile,
    log,
    options: quickVerifierOptions,
  });
  const out: string[] = [];
  const err: string[] = [];
  try {
    const code = await runVerifyCommand(
      store,
      verifier,
      { since: "1h", timeout },
      { out: (t) => out.push(t), err: (l) => err.push(l), progress: false },
      { preflight: () => rpc.getSlot("finalized") },
    );
    return { code, out: out.join(""), err: err.join("\n") };
  } finally {
    await rpc.close();
  }
}

describe("decentral-audit verify against the local chain", () => {
  it("exits 0 when every simulated job is honest", async () => {
    const store = createTestStore();
    await runRecordedJob(world, store, { model: "qwen3-8b" });
    await runRecordedJob(world, store, { model: "phi-4-mini", stream: true });
    const { code, out } = await verify(store, world.rpcUrl);
    expect(out).toContain("all 2 jobs verified");
    expect(code).toBe(0);
  });

  it("exits 1 and names the faulty job and its failing check", async () => {
    const store = createTestStore();
    await runRecordedJob(world, store, { model: "qwen3-8b" });
    const { jobId } = await runRecordedJob(world, store, {
      model: "qwen3-8b",
      fault: "underpay-worker",
    });
    const { code, out } = await verify(store, world.rpcUrl);
    expect(code).toBe(1);
    expect(out).toContain(`${jobId}: discrepancy (settlement.split)`);
  });

  it("exits 2 when the RPC endpoint is unreachable", async () => {
    const store = createTestStore();
    await runRecordedJob(world, store, { model: "qwen3-8b" });
    const { code, err } = await verify(store, "http://127.0.0.1:9", "5s");
    expect(code).toBe(2);
    expect(err).toMatch(/RPC unreachable/);
  });
});
