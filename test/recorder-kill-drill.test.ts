import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { checkResults, finalVerdicts, jobs, openVerdicts } from "../src/db/schema.js";
import { localApiKey } from "../src/localnet/keys.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { keyFingerprint } from "../src/recorder/proxy.js";
import { cliArgv } from "./support/service-process.js";
import { useStarted } from "./support/started-life.js";

/**
 * The kill -9 drill: real `serve` processes (the binary, over the program built for the run by
 * test/support/compiled-cli-global-setup.ts) on real file databases, in front of the local
 * world, SIGKILLed at random moments under plain and streamed proxy traffic from 20 concurrent
 * callers each with four API keys and ingest batches, restarted each time. Whatever a client was
 * answered 2xx for must be recorded, and every honest job must end verified, streams included
 * (their settlement comes from the backfill keys).
 *
 * The 20 kills are two drills of 10 run at once, each a process of its own on a database of its
 * own: a drill waits on its process's start most of the time (21 starts, one after the other,
 * were most of this file's minute), and two such waits overlap. The second drill's `serve`
 * commits its receipts from the writer's own thread (`RECEIPT_WRITER_THREAD`).
 */

const drills = 2;
const killsEach = 10;
const concurrency = 20;
/** Jobs answered 2xx in each life of a process before its random kill. */
const perLife = 8;
const keys = [0, 1, 2, 3].map(localApiKey);
const models = ["phi-4-mini", "qwen3-8b", "mistral-small-3.1-24b", "llama-3.3-70b"];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }), 120_000);
/** The running `serve` processes: killed after the test whatever happened (before the world). */
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});

interface Acked {
  plain: Set<string>;
  /** Streams whose headers came with a 2xx. */
  streamed: Set<string>;
  /** Streams read to `[DONE]`: their usage is known. */
  streamedWhole: Set<string>;
  ingested: Set<string>;
}

interface Drilled {
  acked: Acked;
  /** The database's jobs once the survivor settled them. */
  rows: Map<string, { jobId: string; verdict: string; captureState: string }>;
  /** Checks recorded twice for one job. */
  twice: unknown[];
  /** Verified jobs whose amounts differ from the simulator's (filled in by the caller). */
  verified: {
    jobId: string;
    escrowedUnits: bigint | null;
    chargedUnits: bigint | null;
    workerPaidUnits: bigint | null;
  }[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;

/**
 * One drill: a `serve` on a database of its own, killed `kills` times under traffic, then
 * started once more (with every process dead, the killed ones' leases expired) to settle what
 * they left.
 */
async function drill(kills: number, threaded: boolean): Promise<Drilled> {
  const dir = mkdtempSync(join(tmpdir(), "kill-drill-"));
  const db = join(dir, "audit.db");
  const setupStore = openSqliteStore(db);
  migrateStore(setupStore);
  const ingestToken = (await createToken(setupStore, { role: "ingest", name: "drill" })).token;
  setupStore.close();
  let child: ChildProcess | undefined;
  // The port is free when picked, but each start binds it anew: another process may take it
  // between two lives. A start that finds it taken moves the drill to a new one.
  let port = await freePort();
  let url = `http://127.0.0.1:${port}`;
  /**
   * Settled while a process is up. The callers wait on it while none is: the next process
   * starts without 20 callers hammering its closed port, nor the chain with ingest batches
   * nobody can take (that took a start from 8 s to 14 s on a loaded host). A process is still
   * killed with requests in flight: only a caller between two requests waits.
   */
  let serving: Promise<void> = Promise.resolve();
  let opened: () => void = () => {};

  const start = async (moves = 3): Promise<void> => {
    const started = spawn(process.execPath, cliArgv(["serve", "--profile", "localnet"]), {
      cwd: dir,
      env: {
        ...process.env,
        DATABASE_URL: db,
        PORT: String(port),
        SOLANA_RPC_URLS: world.rpcUrl,
        DECENTRAL_BASE_URL: world.decentralBaseUrl,
        DECENTRAL_API_KEYS: keys.join(","),
        RPC_RATE_LIMIT: "2000",
        RPC_CONCURRENCY: "16",
        VERIFY_POLL_MS: "100",
        // A job whose process was killed before it asked the jobs API is held for an
        // answer nobody asks for (45 s by default): 20 kills leave many such jobs.
        JOBS_API_WAIT_MS: "3000",
        LOG_LEVEL: "error",
        // One process, killed again and again: the cluster's own kill (a worker, mid-stream) is
        // test/serve-cluster.test.ts; booting a cluster 20 times would only add minutes.
        WORKERS: "1",
        // The second drill's receipts are committed by the writer's own thread.
        ...(threaded ? { RECEIPT_WRITER_THREAD: "true" } : {}),
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    child = started;
    children.add(started);
    started.once("exit", () => children.delete(started));
    for (;;) {
      const ok = await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok && started.exitCode === null && started.signalCode === null) {
        opened();
        return;
      }
      if (started.exitCode !== null) {
        // It could not listen (the port was taken meanwhile): start again on another.
        if (moves === 0) throw new Error(`serve exited ${started.exitCode} as it started`);
        port = await freePort();
        url = `http://127.0.0.1:${port}`;
        return start(moves - 1);
      }
      await sleep(20);
    }
  };
  const kill = async () => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    serving = new Promise((resolve) => {
      opened = resolve;
    });
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await exited;
  };

  const acked: Acked = {
    plain: new Set(),
    streamed: new Set(),
    streamedWhole: new Set(),
    ingested: new Set(),
  };
  let stopped = false;

  const completionBody = (stream: boolean) =>
    JSON.stringify({
      model: pick(models),
      messages: [{ role: "user", content: "Name three prime numbers." }],
      max_tokens: 600,
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    });

  async function plain() {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${pick(keys)}`, "content-type": "application/json" },
      body: completionBody(false),
    });
    const jobId = response.headers.get("x-decentral-job-id");
    if (response.ok && jobId) acked.plain.add(jobId);
    await response.arrayBuffer();
  }

  async function streamed() {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${pick(keys)}`, "content-type": "application/json" },
      body: completionBody(true),
    });
    const jobId = response.headers.get("x-decentral-job-id");
    if (!response.ok || !jobId) return;
    acked.streamed.add(jobId);
    const text = await response.text();
    if (text.includes("data: [DONE]")) acked.streamedWhole.add(jobId);
  }

  /** A backend calling Decentral directly and posting its receipts in a batch. */
  async function ingestBatch() {
    const receipts = [];
    for (let i = 0; i < 3; i++) {
      const key = pick(keys);
      const response = await fetch(`${world.decentralBaseUrl}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: completionBody(false),
      });
      const body = (await response.json()) as { model: string; usage: unknown };
      const h = (name: string) => response.headers.get(`x-decentral-${name}`);
      receipts.push({
        job_id: h("job-id"),
        escrow_tx: h("tx-signature"),
        settlement_tx: h("settlement-tx"),
        worker: h("worker"),
        credits_remaining: h("credits-remaining"),
        model: body.model,
        usage: body.usage,
        // The key's fingerprint ties the lock to the customer's vault, as the fetch wrapper does.
        key_fingerprint: keyFingerprint(`Bearer ${key}`),
      });
    }
    const response = await fetch(`${url}/jobs`, {
      method: "POST",
      headers: { authorization: `Bearer ${ingestToken}`, "content-type": "application/json" },
      body: JSON.stringify(receipts),
    });
    if (!response.ok) return;
    const outcome = (await response.json()) as { results: { jobId?: string; status: string }[] };
    for (const r of outcome.results) {
      if (r.jobId && (r.status === "created" || r.status === "duplicate")) {
        acked.ingested.add(r.jobId);
      }
    }
  }

  async function caller() {
    for (;;) {
      await serving;
      if (stopped) return;
      const roll = Math.random();
      const op = roll < 0.45 ? plain : roll < 0.85 ? streamed : ingestBatch;
      // A killed server shows as a refused or reset connection: the caller moves on.
      await op().catch(() => sleep(50));
    }
  }

  const ackedCount = () => acked.plain.size + acked.streamed.size + acked.ingested.size;
  await start();
  const callers = Array.from({ length: concurrency }, caller);
  for (let i = 0; i < kills; i++) {
    // Each life of the process answers some jobs (however loaded the machine is), then dies
    // at a random moment with requests in flight.
    const before = ackedCount();
    while (ackedCount() < before + perLife) await sleep(10);
    await sleep(Math.random() * 200);
    await kill();
    if (i < kills - 1) await start();
  }
  // The last kill ends the traffic: what was in flight failed with it.
  stopped = true;
  opened();
  await Promise.all(callers);

  // The verifier leases the jobs it works on for 120 s, and a killed process's leases are
  // taken over only when they expire. The drill does not wait two minutes for that: with
  // every process dead, it moves those leases' expiry to now, then starts the survivor.
  // Likewise a clean verdict a killed process left waiting for its escrow scan is due again
  // only 30 s on (ESCROW_COVER_RECHECK_MS): the scan that would have woken it died with the
  // process, and the survivor's scan knows only the jobs its own verifier leaves waiting.
  // Those waits were half of the file's time; the drill makes every open job due now, so the
  // survivor decides each once more (and waits, if it must, on its own scan).
  const store = openSqliteStore(db);
  try {
    const now = Date.now() - 1;
    store.sqlite.prepare("UPDATE jobs SET lease_until = ? WHERE lease_owner IS NOT NULL").run(now);
    store.sqlite
      .prepare(
        `UPDATE jobs SET next_verify_at = ? WHERE next_verify_at > ? AND verdict IN (${openVerdicts.map((v) => `'${v}'`).join(", ")})`,
      )
      .run(now, now);
    await start();

    const recorded = () =>
      new Map(
        store.db
          .select({ jobId: jobs.jobId, verdict: jobs.verdict, captureState: jobs.captureState })
          .from(jobs)
          .all()
          .map((r) => [r.jobId, r]),
      );
    // Every job reaches a final verdict.
    const final = new Set<string>(finalVerdicts);
    const deadline = Date.now() + 60_000;
    let rows = recorded();
    while ([...rows.values()].some((r) => !final.has(r.verdict)) && Date.now() < deadline) {
      await sleep(200);
      rows = recorded();
    }
    await new Promise<void>((resolve) => {
      child?.once("exit", () => resolve());
      child?.kill("SIGTERM");
    });
    rows = recorded();
    const twice = store.db
      .select({ jobId: checkResults.jobId, name: checkResults.name, n: sql<number>`count(*)` })
      .from(checkResults)
      .groupBy(checkResults.jobId, checkResults.name)
      .having(sql`count(*) > 1`)
      .all();
    const verified = store.db
      .select({
        jobId: jobs.jobId,
        escrowedUnits: jobs.escrowedUnits,
        chargedUnits: jobs.chargedUnits,
        workerPaidUnits: jobs.workerPaidUnits,
      })
      .from(jobs)
      .where(eq(jobs.verdict, "verified"))
      .all();
    return { acked, rows, twice, verified };
  } finally {
    store.close();
  }
}

describe("serve killed with SIGKILL under traffic", () => {
  it(`loses no acknowledged receipt over ${drills * killsEach} kills, and every honest job ends verified`, async () => {
    const drilled = await Promise.all(
      Array.from({ length: drills }, (_, i) => drill(killsEach, i === 1)),
    );

    const count = (of: (acked: Acked) => Set<string>) =>
      drilled.reduce((sum, d) => sum + of(d.acked).size, 0);
    expect(count((a) => a.plain)).toBeGreaterThan(20);
    expect(count((a) => a.streamed)).toBeGreaterThan(20);
    expect(count((a) => a.ingested)).toBeGreaterThan(5);

    const truth = new Map(
      (
        (await (await fetch(`${world.simulatorUrl}/sim/jobs`)).json()) as {
          jobs: {
            jobId: string;
            chargeUnits: string;
            lockUnits: string;
            workerShareUnits: string;
          }[];
        }
      ).jobs.map((j) => [j.jobId, j]),
    );
    for (const { acked, rows, twice, verified } of drilled) {
      // Every job a client was answered 2xx for is recorded.
      const acknowledged = [...acked.plain, ...acked.streamed, ...acked.ingested];
      expect(acknowledged.filter((id) => !rows.has(id))).toEqual([]);

      // Every honest job reaches a final verdict: verified. A stream cut by a kill has no
      // usage: its price cannot be checked, so it may end with a weaker verdict than verified,
      // but never as a finding.
      const mustVerify = [...acked.plain, ...acked.streamedWhole, ...acked.ingested];
      const notVerified = mustVerify
        .map((id) => [id, rows.get(id)?.verdict] as const)
        .filter(([, verdict]) => verdict !== "verified");
      expect(notVerified).toEqual([]);
      const findings = [...rows.values()].filter((r) =>
        ["discrepancy", "dropped", "unverifiable", "error"].includes(r.verdict),
      );
      expect(findings).toEqual([]);

      // No check recorded twice, and every amount equal to the simulator's ground truth.
      expect(twice).toEqual([]);
      const wrongAmounts = verified
        .filter((j) => {
          const t = truth.get(j.jobId);
          return (
            !t ||
            j.escrowedUnits !== BigInt(t.lockUnits) ||
            j.chargedUnits !== BigInt(t.chargeUnits) ||
            j.workerPaidUnits !== BigInt(t.workerShareUnits)
          );
        })
        .map((j) => j.jobId);
      expect(wrongAmounts).toEqual([]);
    }
    // 22 process starts, 11 after each other in each drill: the file a loaded host slows most.
  }, 300_000);
});
