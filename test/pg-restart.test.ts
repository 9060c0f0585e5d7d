import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { loadConfig } from "../src/config.js";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { openStoreWaiting } from "../src/nightly/verify-run.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { startEmbeddedPostgres, type TestPostgresServer } from "./support/postgres-server.js";
import { receipt } from "./support/recorder-fixtures.js";
import { seedJobs } from "./support/seed-verdicts.js";
import { type CliProcess, scrapeMetrics, startServe } from "./support/service-process.js";

/**
 * PostgreSQL stopped or restarted under running work, as an operator's restart or a failover
 * does: a server of this file's own (the shared one serves every other file), shut down fast
 * (sessions ended, connections refused) and started again on the same port with its data.
 */

const log = createLogger({ level: "silent" });
let server: TestPostgresServer;
let down = false;

/** A fresh database on this file's server (a copy of `template`, a database's name, if given). */
async function createDatabase(name: string, template?: string): Promise<string> {
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  try {
    const copy = template === undefined ? "" : ` TEMPLATE ${admin.escapeIdentifier(template)}`;
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}${copy}`);
  } finally {
    await admin.end();
  }
  const url = new URL(server.adminUrl);
  url.pathname = `/${name}`;
  return url.href;
}

/**
 * A fresh database on this file's server, a copy of one migrated once for the file: a copy
 * costs a fraction of running every migration again.
 */
let template: Promise<string> | undefined;
async function createMigratedDatabase(name: string): Promise<string> {
  template ??= (async () => {
    const url = await createDatabase("migrated_template");
    const store = openPostgres(url, { poolSize: 1, statementTimeoutMs: 30_000 });
    try {
      await migratePostgres(store.pool);
    } finally {
      // Copied only while nobody is connected to it.
      await store.close();
    }
    return url;
  })();
  await template;
  return createDatabase(name, "migrated_template");
}

/** Stops the server; `up` starts it again. */
async function halt(): Promise<void> {
  down = true;
  await server.halt();
}
async function up(): Promise<void> {
  if (!down) return;
  await server.resume();
  down = false;
}

beforeAll(async () => {
  server = await startEmbeddedPostgres();
}, 60_000);

afterEach(async () => {
  await up();
}, 30_000);

afterAll(async () => {
  await server?.stop();
});

/** A sample's value as Prometheus reads it (prom-client writes NaN as "Nan"). */
function value(text: string, name: string): number | undefined {
  const found = new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1];
  return found === undefined ? undefined : Number(found.toLowerCase() === "nan" ? NaN : found);
}

describe("serve --workers 2 while PostgreSQL is stopped", () => {
  let serve: (CliProcess & { url: string }) | undefined;
  afterEach(async () => {
    serve?.child.kill("SIGKILL");
    await serve?.exited;
  });

  it("reads NaN for the lag and the queue on /metrics, and 0 for database_up, as one process does", async () => {
    const url = await createDatabase("cluster_outage");
    serve = await startServe(url, {
      WORKERS: "2",
      SOLANA_RPC_URLS: "http://127.0.0.1:9",
      VERIFY_POLL_MS: "200",
    });
    await serve.waitForLog((l) => l.msg === "serve cluster ready");
    const store = openPostgres(url);
    const token = (await createToken(store, { role: "read", name: "metrics" })).token;
    // A job waiting for its verdict: lag and queue are numbers while the database answers. It
    // is held by another verifier's lease, so serve's own verifier (which may judge a job with no
    // escrow at once) leaves it open for the scrapes however long a loaded host takes to reach them.
    await seedJobs(store, [
      { jobId: "job_open", leaseOwner: "verifier-elsewhere", createdAt: Date.now() - 60_000 },
    ]);
    await store.close();
    // Each worker knows the token before the outage (it keeps trusting a token it saw live).
    const served = () =>
      new Set(
        serve?.logs.filter((l) => l.msg === "request" && l.path === "/metrics").map((l) => l.pid),
      );
    let before = "";
    for (let i = 0; i < 200 && served().size < 2; i++) {
      const res = await scrapeMetrics(serve.url, token);
      expect(res.status).toBe(200);
      before = res.text;
      await sleep(20);
    }
    expect(served().size).toBe(2);
    expect(value(before, "decentral_audit_database_up")).toBe(1);
    expect(value(before, "decentral_audit_serve_workers_answered")).toBe(2);
    expect(value(before, "decentral_audit_verification_queue_depth")).toBe(1);
    expect(value(before, "decentral_audit_verification_lag_seconds")).toBeGreaterThan(30);

    await halt();
    const during = await scrapeMetrics(serve.url, token);
    expect(during.status).toBe(200);
    expect(value(during.text, "decentral_audit_serve_workers_answered")).toBe(2);
    expect(value(during.text, "decentral_audit_database_up")).toBe(0);
    // Not known, never 0: a lag of 0 would clear the very alert the outage should keep.
    expect(value(during.text, "decentral_audit_verification_lag_seconds")).toBeNaN();
    expect(value(during.text, "decentral_audit_verification_queue_depth")).toBeNaN();
    expect(value(during.text, "decentral_audit_ledger_lag_seconds")).toBeNaN();

    await up();
    // Once it is back, the numbers are back.
    for (let i = 0; ; i++) {
      const after = await scrapeMetrics(serve.url, token);
      if (value(after.text, "decentral_audit_database_up") === 1) {
        expect(value(after.text, "decentral_audit_verification_queue_depth")).toBe(1);
        break;
      }
      expect(i).toBeLessThan(100);
      await sleep(100);
    }
  }, 90_000);
});

describe("the nightly verify while PostgreSQL restarts at its start or in its ledger phase", () => {
  const from = Date.UTC(2026, 10, 1);
  const to = Date.UTC(2026, 10, 2);
  let store: PgStore | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  /** A window of 3 verified jobs and 1 discrepancy, and a run whose ledger meets a restart. */
  async function run(
    name: string,
    when: "as the run starts" | "before the ledger reads" | "as the ledger ends",
  ) {
    const url = await createMigratedDatabase(name);
    store = openPostgres(url);
    await seedJobs(store, [
      { jobId: "job_v1", verdict: "verified", leaseOwner: null, createdAt: from + 1000 },
      { jobId: "job_v2", verdict: "verified", leaseOwner: null, createdAt: from + 2000 },
      { jobId: "job_v3", verdict: "verified", leaseOwner: null, createdAt: from + 3000 },
      { jobId: "job_d1", verdict: "discrepancy", leaseOwner: null, createdAt: from + 4000 },
    ]);
    const check = ledgerWindowCheck({
      store,
      reader: createLedgerReader({
        store,
        // No credit vault is configured or learned: the ledger reads the store only.
        rpc: {} as Parameters<typeof createLedgerReader>[0]["rpc"],
        // Nor an escrow vault: nothing is scanned on chain.
        profile: { ...localnetProfile, escrowVault: null },
        log,
        custody: { vaults: [], byKey: {} },
      }),
      profile: localnetProfile,
      graceSeconds: 0,
    });
    // A restart of 1.5 s and the server's own start: shut down now, started again 1.5 s later
    // while the run goes on, which meets it down and tries again (every second) until it is up.
    let restarted: Promise<void> | undefined;
    const restart = async () => {
      await halt();
      restarted = sleep(1500).then(up);
    };
    const ledger = Object.assign(
      async (window: { from: number; to: number; signal?: AbortSignal }) => {
        if (restarted === undefined && when === "before the ledger reads") await restart();
        const result = await check(window);
        if (restarted === undefined && when === "as the ledger ends") await restart();
        return result;
      },
      { commit: check.commit },
    );
    // Cron's hour is often the database's maintenance hour too: its lock is the first read.
    if (when === "as the run starts") await restart();
    const summary = await runNightlyVerification(
      store,
      // Every job of the window is final already: the jobs phase has nothing to do.
      { runUntilSettled: async () => ({ status: "completed" as const }) },
      { from, to, timeoutMs: 60_000, ledger },
    );
    await restarted;
    return summary;
  }

  for (const when of [
    "as the run starts",
    "before the ledger reads",
    "as the ledger ends",
  ] as const) {
    it(`rides out a restart ${when}: exit 1 for the discrepancy, every count right`, async () => {
      const summary = await run(`nightly_${when.replaceAll(" ", "_")}`, when);
      expect(summary.reason).toBeNull();
      expect(summary.outcome).toBe("discrepancies");
      expect(summary.exitCode).toBe(1);
      expect(summary.total).toBe(4);
      expect(summary.byVerdict.verified).toBe(3);
      expect(summary.byVerdict.discrepancy).toBe(1);
      expect(summary.findings.map((f) => f.jobId)).toEqual(["job_d1"]);
      expect(summary.countsUnknown).toBeUndefined();
      expect(summary.ledger?.incomplete).toBeNull();
    }, 60_000);
  }
});

describe("the verify command's database, restarting as cron starts it", () => {
  it("is waited for within the run's time, and not past it", async () => {
    const url = await createMigratedDatabase("verify_open");
    const config = loadConfig({ DATABASE_URL: url });
    await halt();
    const restarted = sleep(1500).then(up);
    const started = performance.now();
    const store = await openStoreWaiting(config, 30_000, log);
    try {
      expect(performance.now() - started).toBeGreaterThan(1400);
      expect(store.kind).toBe("postgres");
      if (store.kind === "postgres") await store.pool.query("SELECT 1");
    } finally {
      await store.close();
    }
    await restarted;
    // Past its time, the last error is the run's: it cannot reach the database.
    await halt();
    await expect(openStoreWaiting(config, 1500, log)).rejects.toThrow(/cannot reach PostgreSQL/);
  }, 60_000);
});

describe("the PostgreSQL receipt writer closed while the server is stopped", () => {
  it("rejects what still waits after refuseAfterMs instead of waiting for the server for ever", async () => {
    const url = await createMigratedDatabase("writer_close");
    const store = openPostgres(url);
    const writer = createReceiptWriter(store, { log, refuseAfterMs: 500 });
    try {
      await writer.run(recordReceiptsUnit([receipt()], "proxy"));
      await halt();
      // A receipt the proxy held an answer back for, waiting while the server is away.
      const waiting = receipt();
      const written = writer.run(recordReceiptsUnit([waiting], "proxy")).then(
        () => "written",
        (error: Error) => error.message,
      );
      await expect.poll(() => writer.health().reachable, { timeout: 10_000 }).toBe(false);
      // SIGTERM: the service closes its writer. It used to wait until the server came back
      // (a single `serve` never exited; a cluster's worker was killed with the receipt).
      const started = performance.now();
      const closed = await Promise.race([
        writer.close().then(() => "closed"),
        sleep(10_000).then(() => "still closing"),
      ]);
      expect(closed).toBe("closed");
      expect(performance.now() - started).toBeLessThan(8_000);
      // Its caller is told, and logs the job for an import once the database is back.
      expect(await written).toMatch(/did not take the write before the writer closed/);
    } finally {
      await up();
      await writer.close();
      await store.close();
    }
  }, 60_000);
});
