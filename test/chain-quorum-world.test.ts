import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { createQuorumRpc, type QuorumRpc, quorumReadiness } from "../src/chain/quorum.js";
import { inspectWithQuorum } from "../src/chain/quorum-inspect.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import { loadConfig } from "../src/config.js";
import type { SqliteStore } from "../src/db/client.js";
import { checkResults, finalVerdicts, jobs, type Verdict } from "../src/db/schema.js";
import { lieFor, lieKinds } from "../src/localnet/lying-rpc.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { startService } from "../src/main.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { createTestStore } from "./support/store.js";
import { type JobSpec, runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });
const profile: Profile = { ...localnetProfile, dropAfterSlots: 50 };

let world: LocalWorld;
let liar: string;
let honestB: string;
let down: string;
let store: SqliteStore;
/** Each job's verdict when verified through one honest endpoint: the right verdict. */
let reference: Map<string, Verdict>;

const specs: JobSpec[] = [
  {},
  { stream: true },
  { model: "llama-3.3-70b" },
  { fault: "underpay-worker" },
  { fault: "wrong-worker" },
  { fault: "overcharge" },
  { fault: "failed-settlement" },
  { fault: "timeout" },
  { apiKeyIndex: 1 },
  { stream: true, model: "phi-4-mini" },
  {},
  { model: "mistral-small-3.1-24b" },
];

function endpointPool(url: string): RpcPool {
  return createRpcPool({
    endpoints: [{ url, rateLimitPerSec: 500, concurrency: 4, timeoutMs: 2000 }],
    maxAttempts: 2,
    backoffBaseMs: 5,
    backoffMaxMs: 20,
  });
}

function quorumOver(urls: string[], k = 2): QuorumRpc {
  return createQuorumRpc({
    members: urls.map((url) => ({ name: url, rpc: endpointPool(url) })),
    quorum: k,
  });
}

/** Forgets every verdict and fetched transaction, then verifies all jobs again through `rpc`. */
async function verifyThrough(rpc: RpcPool, timeoutMs: number) {
  store.sqlite.exec(
    "UPDATE jobs SET verdict = 'pending', next_verify_at = 0, verify_attempts = 0, lease_owner = NULL, lease_until = NULL; DELETE FROM chain_transactions; DELETE FROM check_results;",
  );
  const verifier = createVerifier({
    store,
    rpc,
    profile,
    log,
    options: { ...quickVerifierOptions, maxBackoffMs: 200 },
  });
  const summary = await verifier.runUntilSettled({}, { timeoutMs });
  await rpc.close();
  const verdicts = new Map(
    store.db
      .select({ jobId: jobs.jobId, verdict: jobs.verdict })
      .from(jobs)
      .all()
      .map((r) => [r.jobId, r.verdict]),
  );
  return { summary, verdicts };
}

/**
 * Each job's outcome against the reference: right, in rpc_disagreement, still waiting (not
 * final), or wrong (a final verdict that is not the reference's).
 */
function outcomesOf(verdicts: Map<string, Verdict>): string[] {
  return [...verdicts].map(([id, v]) =>
    v === reference.get(id)
      ? "right"
      : v === "rpc_disagreement"
        ? "disagreement"
        : finalVerdicts.includes(v)
          ? `wrong ${v}`
          : "waiting",
  );
}

beforeAll(async () => {
  world = await startLocalWorld({
    slotMs: 10,
    finalitySlots: 3,
    lyingRpc: { share: 0.6, seed: "quorum-test-lies" },
  });
  liar = world.lyingRpcUrl!;
  honestB = await world.addRpcEndpoint();
  down = await world.addRpcEndpoint({ down: true });
  store = createTestStore();
  for (const spec of specs) await runRecordedJob(world, store, { apiKeyIndex: 2, ...spec });
  const honest = await verifyThrough(endpointPool(world.rpcUrl), 20_000);
  expect(honest.summary.status).toBe("completed");
  reference = honest.verdicts;
}, 60_000);

afterAll(async () => {
  await world?.close();
});

describe("a quorum of 2 over RPC endpoints, one of which lies", () => {
  it("lies about the transactions of these jobs", async () => {
    const verdicts = await verifyThrough(endpointPool(liar), 5000);
    const wrong = [...verdicts.verdicts].filter(([id, v]) => v !== reference.get(id));
    expect(wrong.length).toBeGreaterThan(0);
  });

  it("gives every job its right verdict when two honest endpoints are listed with the liar", async () => {
    // The liar is listed first, so it is asked about every transaction.
    const rpc = quorumOver([liar, world.rpcUrl, honestB]);
    const { summary, verdicts } = await verifyThrough(rpc, 20_000);
    expect(summary.status).toBe("completed");
    expect(Object.fromEntries(verdicts)).toEqual(Object.fromEntries(reference));
    const liarStanding = rpc.quorumStatus().endpoints.find((e) => e.endpoint === liar)!;
    expect(liarStanding.outvoted).toBeGreaterThan(0);
    const honestStanding = rpc.quorumStatus().endpoints.filter((e) => e.endpoint !== liar);
    expect(honestStanding.map((e) => e.outvoted)).toEqual([0, 0]);
  });

  it("never gives a wrong verdict with one honest endpoint down: a job is right, in rpc_disagreement or still waiting", async () => {
    const { verdicts } = await verifyThrough(quorumOver([liar, down, world.rpcUrl]), 4000);
    // A job whose final status the liar keeps from agreement cannot become final before the
    // deadline (on a loaded host the deadline comes first): waiting, not wrong.
    const outcomes = outcomesOf(verdicts);
    expect(outcomes.filter((o) => o.startsWith("wrong"))).toEqual([]);
    expect(outcomes).toContain("disagreement");
    // Every answer is kept as evidence, the endpoints named.
    const evidence = store.db
      .select()
      .from(checkResults)
      .all()
      .filter((c) => c.name.endsWith(".rpc_quorum"));
    expect(evidence.length).toBeGreaterThan(0);
    const answers = (evidence[0]!.actual as { answers: { endpoint: string }[] }).answers;
    expect(answers.map((a) => a.endpoint)).toEqual(expect.arrayContaining([liar, world.rpcUrl]));
    expect(evidence[0]!.reason).toContain("no 2 endpoints agree");
  });

  it("still forms the quorum from the remaining honest endpoints when one is down", async () => {
    const { summary, verdicts } = await verifyThrough(
      quorumOver([world.rpcUrl, down, honestB]),
      20_000,
    );
    expect(summary.status).toBe("completed");
    expect(Object.fromEntries(verdicts)).toEqual(Object.fromEntries(reference));
  });
});

describe("/readyz's RPC probe over a quorum with one endpoint down", () => {
  it("is ready while the quorum answers, naming the endpoint down, and not ready below it", async () => {
    const two = quorumOver([world.rpcUrl, down, honestB], 2);
    try {
      const ready = await quorumReadiness(two);
      expect(ready?.detail?.startsWith(`2 of 3 endpoints answer (quorum 2); ${down}: `)).toBe(true);
    } finally {
      await two.close();
    }
    const three = quorumOver([world.rpcUrl, down, honestB], 3);
    try {
      await expect(quorumReadiness(three)).rejects.toThrow(
        `2 of 3 endpoints answer, fewer than the quorum of 3: ${down}: `,
      );
    } finally {
      await three.close();
    }
  });
});

describe("each lie on its own, against a quorum of 2 with one honest endpoint", () => {
  for (const kind of lieKinds) {
    it(`never turns the liar's ${kind} lies into a verdict`, async () => {
      const lying = await world.addRpcEndpoint({
        lies: { share: 1, kinds: [kind], seed: `only-${kind}` },
      });
      // Finality lies only delay: every job ends right, and the run ends as soon as they are
      // (a deadline to spare for a loaded host). Other lies keep some jobs open to the deadline.
      const deadline = kind === "finality" ? 15_000 : 2500;
      const { verdicts } = await verifyThrough(quorumOver([lying, world.rpcUrl]), deadline);
      // Safety is what a quorum promises: no job ends with a wrong final verdict. A job the
      // liar keeps from finality within the deadline is waiting, not wrong.
      const outcomes = outcomesOf(verdicts);
      expect(outcomes.filter((o) => o.startsWith("wrong"))).toEqual([]);
      if (kind === "finality") expect(new Set(outcomes)).toEqual(new Set(["right"]));
      else expect(outcomes).toContain("disagreement");
    });
  }
});

describe("a phantom signature, with one of three endpoints lying about it", () => {
  it("is dropped though the liar shows it confirmed and answers a frozen slot", async () => {
    // A status short of final comes from one endpoint, and the drop window ran on the lowest
    // of k slots: one "confirmed" for the phantom, or one frozen slot, kept its job waiting for
    // ever and every nightly run exiting 2.
    const phantomStore = createTestStore();
    const { jobId } = await runRecordedJob(world, phantomStore, {
      fault: "phantom-signature",
      apiKeyIndex: 3,
    });
    const pool = endpointPool(world.rpcUrl);
    const liar: RpcPool = {
      ...pool,
      async getSignatureStatuses(signatures, options) {
        const statuses = await pool.getSignatureStatuses(signatures, options);
        return statuses.map(
          (s, i) =>
            s ?? {
              signature: signatures[i]!,
              slot: world.currentSlot() - 5,
              confirmationStatus: "confirmed",
              err: null,
            },
        );
      },
      getSlot: async () => 1000,
    };
    // The liar is asked first: its "confirmed" is the first status the job's row records.
    const rpc = createQuorumRpc({
      members: [
        { name: "liar", rpc: liar },
        { name: "honest", rpc: endpointPool(world.rpcUrl) },
        { name: "honestB", rpc: endpointPool(honestB) },
      ],
      quorum: 2,
    });
    const verifier = createVerifier({
      store: phantomStore,
      rpc,
      profile,
      log,
      options: { ...quickVerifierOptions, maxBackoffMs: 200 },
    });
    const summary = await verifier.runUntilSettled({}, { timeoutMs: 15_000 });
    await rpc.close();
    expect(summary.status).toBe("completed");
    const [row] = phantomStore.db
      .select({ verdict: jobs.verdict })
      .from(jobs)
      .where(eq(jobs.jobId, jobId))
      .all();
    expect(row?.verdict).toBe("dropped");
  });
});

describe("tx inspect SIGNATURE --quorum k", () => {
  it("shows each endpoint's facts and that the honest ones agree while the liar does not", async () => {
    const lies = { share: 0.6, kinds: [...lieKinds], seed: "quorum-test-lies" };
    const signature = store.db
      .select({ sig: jobs.escrowTx })
      .from(jobs)
      .all()
      .map((r) => r.sig)
      .find(
        (sig) =>
          sig !== null && ["amount", "memo", "owner", "error"].includes(lieFor(lies, sig) ?? ""),
      )!;
    const config = loadConfig({ SOLANA_RPC_URLS: [liar, world.rpcUrl, honestB].join(",") });
    const inspection = await inspectWithQuorum(signature, { config, quorum: 2 });
    expect(inspection.agreed).toBe(true);
    expect(inspection.endpoints.map((e) => [e.endpoint, e.kind, e.agrees])).toEqual([
      [liar, "answer", false],
      [world.rpcUrl, "answer", true],
      [honestB, "answer", true],
    ]);
    expect(inspection.endpoints[0]!.digest).not.toBe(inspection.digest);

    const split = loadConfig({ SOLANA_RPC_URLS: [liar, world.rpcUrl].join(",") });
    expect((await inspectWithQuorum(signature, { config: split, quorum: 2 })).agreed).toBe(false);
  });
});

describe("serve with RPC_QUORUM=2", () => {
  it("builds the quorum over SOLANA_RPC_URLS and shows each endpoint's standing in /readyz and /metrics", async () => {
    const config = loadConfig({
      DATABASE_URL: ":memory:",
      PORT: "0",
      AUDIT_PROFILE: "localnet",
      SOLANA_RPC_URLS: [liar, world.rpcUrl, honestB].join(","),
      RPC_QUORUM: "2",
    });
    const service = await startService(config, log);
    try {
      const { token } = await createToken(service.store, { role: "read", name: "ops" });
      const headers = { authorization: `Bearer ${token}` };
      const ready = (await (await fetch(`${service.url}/readyz`, { headers })).json()) as {
        checks: { rpc: { ok: boolean } };
        rpcQuorum: {
          quorum: number;
          endpoints: { endpoint: string }[];
          jobsInDisagreement: number;
        };
      };
      expect(ready.checks.rpc.ok).toBe(true);
      expect(ready.rpcQuorum.quorum).toBe(2);
      expect(ready.rpcQuorum.jobsInDisagreement).toBe(0);
      expect(ready.rpcQuorum.endpoints.map((e) => e.endpoint)).toEqual([
        liar,
        world.rpcUrl,
        honestB,
      ]);
      const metrics = await (await fetch(`${service.url}/metrics`, { headers })).text();
      expect(metrics).toContain(`decentral_audit_rpc_endpoint_set_aside{endpoint="${liar}"} 0`);
    } finally {
      await service.close();
    }
  });
});
