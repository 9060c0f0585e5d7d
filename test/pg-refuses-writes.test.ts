import { randomBytes } from "node:crypto";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { usePostgresDatabase } from "./support/postgres.js";
import {
  address,
  jobId,
  listen,
  serveApp,
  signature,
  wireReceipt,
} from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * PostgreSQL that answers but will not write, under a running proxy: the database turned
 * read-only (a failover to a standby) or the proxy's role losing a privilege. Every request
 * forwarded then is charged by Decentral: after the first refusal, the proxy must turn paid
 * work away before forwarding it, say why on /readyz, and record again once writes work.
 */

const database = usePostgresDatabase({ migrated: true });
const log = createLogger({ level: "silent" });
const role = `app_${randomBytes(4).toString("hex")}`;
let admin: PgStore;
let store: PgStore;

beforeAll(async () => {
  admin = openPostgres(database.url);
  // A role of least privilege, as a production proxy runs: the superuser would bypass GRANTs.
  const password = randomBytes(12).toString("hex");
  await admin.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  await admin.pool.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
  await admin.pool.query(`GRANT ALL ON ALL TABLES IN SCHEMA public TO ${role}`);
  await admin.pool.query(`GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
  const url = new URL(database.url);
  url.username = role;
  url.password = password;
  store = openPostgres(url.href);
});

afterAll(async () => {
  await store?.close();
  await admin?.pool.query(`DROP OWNED BY ${role}`);
  await admin?.close();
  const server = openPostgres(database.url);
  await server.pool.query(`DROP ROLE IF EXISTS ${role}`);
  await server.close();
});

/** A Decentral stand-in that counts what reaches it and names a fresh job each time. */
async function countingUpstream() {
  const seen: string[] = [];
  const server = await listen(
    http.createServer(async (req, res) => {
      for await (const _ of req);
      const id = jobId();
      seen.push(id);
      res.writeHead(200, {
        "content-type": "application/json",
        "x-decentral-job-id": id,
        "x-decentral-tx-signature": signature(),
        "x-decentral-settlement-tx": signature(),
        "x-decentral-worker": address(),
      });
      res.end(JSON.stringify({ model: "qwen3-8b", choices: [], usage: { total_tokens: 3 } }));
    }),
  );
  return { ...server, seen };
}

async function setup() {
  const upstream = await countingUpstream();
  const writer = createReceiptWriter(store, { log, refuseAfterMs: 300 });
  const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1`, writer });
  const app = await serveApp({
    store,
    log,
    proxy,
    readiness: { receipts: () => writer.health() },
  });
  const read = (await createToken(store, { role: "read", name: "probe" })).token;
  const ingest = (await createToken(store, { role: "ingest", name: "backend" })).token;
  const completion = () =>
    fetch(`${app.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
    });
  const readyz = async () => {
    const response = await fetch(`${app.url}/readyz`, {
      headers: { authorization: `Bearer ${read}` },
    });
    return {
      status: response.status,
      body: (await response.json()) as { checks: { database: { ok: boolean; detail?: string } } },
    };
  };
  const ingestOne = () =>
    fetch(`${app.url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ingest}` },
      body: JSON.stringify(wireReceipt()),
    });
  const close = async () => {
    await app.close();
    await proxy.close();
    await writer.close();
    await upstream.close();
  };
  return { url: app.url, upstream, writer, completion, readyz, ingestOne, close };
}

/** Ends the proxy role's sessions, as a failover does: the pool connects again. */
async function dropSessions() {
  await admin.pool.query(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
    [role],
  );
}

/** What a client sees when the database refuses writes, and that it comes back. */
async function refusesThenRecovers(
  t: Awaited<ReturnType<typeof setup>>,
  refuse: () => Promise<void>,
  restore: () => Promise<void>,
  reason: RegExp,
) {
  const first = await t.completion();
  expect(first.status).toBe(200);
  await first.text();
  expect(await readJob(store, t.upstream.seen[0] as string)).toBeDefined();

  await refuse();
  // Forwarded before anything was known: this one is charged and answered unrecorded.
  const charged = await t.completion();
  expect(charged.status).toBe(503);
  expect(await charged.json()).toMatchObject({ error: { code: "receipt_not_recorded" } });
  expect(t.upstream.seen).toHaveLength(2);

  // From now on nothing is forwarded, so nothing more is charged.
  const refused = await t.completion();
  expect(refused.status).toBe(503);
  expect(await refused.json()).toMatchObject({ error: { code: "receipt_store_unavailable" } });
  expect(t.upstream.seen).toHaveLength(2);

  const ready = await t.readyz();
  expect(ready.status).toBe(503);
  expect(ready.body.checks.database.ok).toBe(false);
  expect(ready.body.checks.database.detail).toMatch(/^refusing writes since /);
  expect(ready.body.checks.database.detail).toMatch(reason);

  const ingested = await t.ingestOne();
  expect(ingested.status).toBe(503);
  expect(await ingested.json()).toMatchObject({ error: { code: "store_unavailable" } });

  // A probe finds writes working again, and the proxy takes and records jobs again.
  await restore();
  await expect.poll(async () => (await t.readyz()).status, { timeout: 15_000 }).toBe(200);
  const after = await t.completion();
  expect(after.status).toBe(200);
  await after.text();
  expect(t.upstream.seen).toHaveLength(3);
  expect(await readJob(store, t.upstream.seen[2] as string)).toBeDefined();
  expect((await t.ingestOne()).status).toBe(201);
}

describe("the proxy on a PostgreSQL that refuses writes", () => {
  it("stops forwarding after the role lost INSERT on jobs, and records again once granted", async () => {
    const t = await setup();
    const grant = () => admin.pool.query(`GRANT INSERT, UPDATE ON jobs TO ${role}`).then(() => {});
    try {
      await refusesThenRecovers(
        t,
        () => admin.pool.query(`REVOKE INSERT, UPDATE ON jobs FROM ${role}`).then(() => {}),
        grant,
        /permission denied/,
      );
    } finally {
      await grant();
      await t.close();
    }
  });

  it("stops forwarding once the database is read-only after a failover, and records again after it", async () => {
    const t = await setup();
    const name = new URL(database.url).pathname.slice(1);
    const writable = async () => {
      await admin.pool.query(`ALTER DATABASE "${name}" RESET default_transaction_read_only`);
      await dropSessions();
      // The pool drops its ended connections as their notice arrives; the next test's first
      // query must not get one.
      await sleep(100);
    };
    try {
      await refusesThenRecovers(
        t,
        async () => {
          await admin.pool.query(`ALTER DATABASE "${name}" SET default_transaction_read_only = on`);
          await dropSessions();
          await sleep(100);
        },
        writable,
        /read-only transaction/,
      );
    } finally {
      await writable();
      await t.close();
    }
  });
});

describe("a receipt PostgreSQL refuses while the system clock steps back", () => {
  it("is answered after refuseAfterMs of elapsed time, not after the clock catches up", async () => {
    const t = await setup();
    const grant = () => admin.pool.query(`GRANT INSERT, UPDATE ON jobs TO ${role}`).then(() => {});
    const realNow = Date.now.bind(Date);
    let stepMs = 0;
    const now = vi.spyOn(Date, "now").mockImplementation(() => realNow() - stepMs);
    try {
      await admin.pool.query(`REVOKE INSERT, UPDATE ON jobs FROM ${role}`);
      const started = performance.now();
      const charged = t.completion().then((response) => response.status);
      // Refused once; then NTP (or a VM restored) steps the clock an hour back.
      await expect.poll(() => t.writer.health(), { interval: 5 }).toMatchObject({ refusing: true });
      stepMs = 3_600_000;
      const answered = await Promise.race([charged, sleep(4000).then(() => "still waiting")]);
      expect(answered).toBe(503);
      expect(performance.now() - started).toBeLessThan(3000);
    } finally {
      now.mockRestore();
      await grant();
      await t.close();
    }
  });
});

describe("a refusal that is one receipt's, on a database that takes writes", () => {
  it("fails only the receipt a row-level security policy rejects, not its group or the proxy", async () => {
    const t = await setup();
    // 42501 as a privilege revoked would raise it, but for one row only.
    await admin.pool.query("ALTER TABLE jobs ENABLE ROW LEVEL SECURITY");
    await admin.pool.query(
      "CREATE POLICY one_model ON jobs USING (true) WITH CHECK (coalesce(model, '') <> 'blocked-model')",
    );
    const send = async (model: string) => {
      const response = await fetch(`${t.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, messages: [] }),
      });
      return { status: response.status, body: await response.text() };
    };
    try {
      // Sent together, so that the writer commits them as one group.
      const [blocked, ...others] = await Promise.all([
        send("blocked-model"),
        send("qwen3-8b"),
        send("qwen3-8b"),
      ]);
      expect(blocked.status).toBe(503);
      expect(blocked.body).toContain("receipt_not_recorded");
      for (const other of others) expect(other.status).toBe(200);
      expect(t.upstream.seen).toHaveLength(3);
      let recorded = 0;
      for (const id of t.upstream.seen) if (await readJob(store, id)) recorded++;
      expect(recorded).toBe(2);

      // The database takes writes: nothing is turned away, and /readyz says so.
      expect(t.writer.health()).toEqual({ reachable: true });
      const next = await send("qwen3-8b");
      expect(next.status).toBe(200);
      expect(t.upstream.seen).toHaveLength(4);
      expect((await t.readyz()).status).toBe(200);
    } finally {
      await admin.pool.query("DROP POLICY IF EXISTS one_model ON jobs");
      await admin.pool.query("ALTER TABLE jobs DISABLE ROW LEVEL SECURITY");
      await t.close();
    }
  });
});

describe("row-level security that admits no receipt", () => {
  it("is the database refusing writes: paid work is turned away before it is forwarded", async () => {
    const t = await setup();
    // Turned on with no policy: every row is refused (42501), while a statement that writes
    // no row passes.
    await admin.pool.query("ALTER TABLE jobs ENABLE ROW LEVEL SECURITY");
    const send = async () => {
      const response = await fetch(`${t.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
      });
      return { status: response.status, body: await response.text() };
    };
    try {
      const first = await send();
      expect(first.status).toBe(503);
      expect(first.body).toContain("receipt_not_recorded");
      const second = await send();
      expect(second.status).toBe(503);
      expect(second.body).toContain("receipt_store_unavailable");
      // One job charged without a receipt, not one per request.
      expect(t.upstream.seen).toHaveLength(1);
      expect((await t.readyz()).status).toBe(503);
    } finally {
      await admin.pool.query("ALTER TABLE jobs DISABLE ROW LEVEL SECURITY");
      await t.close();
    }
  });
});

describe("a stream in flight when the database starts refusing writes", () => {
  it("ends for its client, and its completion is written with its usage once writes work", async () => {
    const id = jobId();
    let revoked!: () => void;
    const refusing = new Promise<void>((resolve) => {
      revoked = resolve;
    });
    const upstream = await listen(
      http.createServer(async (req, res) => {
        for await (const _ of req);
        res.writeHead(200, {
          "content-type": "text/event-stream",
          "x-decentral-job-id": id,
          "x-decentral-tx-signature": signature(),
          "x-decentral-settlement-tx": signature(),
          "x-decentral-worker": address(),
        });
        res.write(
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "Hi" } }] })}\n\n`,
        );
        await refusing;
        const usage = { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 };
        res.end(`data: ${JSON.stringify({ choices: [], usage })}\n\ndata: [DONE]\n\n`);
      }),
    );
    const writer = createReceiptWriter(store, { log, refuseAfterMs: 300 });
    const proxy = createRecordingProxy({
      store,
      log,
      upstreamBaseUrl: `${upstream.url}/v1`,
      writer,
    });
    const app = await serveApp({
      store,
      log,
      proxy,
      readiness: { receipts: () => writer.health() },
    });
    const grant = () => admin.pool.query(`GRANT INSERT, UPDATE ON jobs TO ${role}`);
    const row = async () =>
      (
        await admin.pool.query(
          "SELECT capture_state, completion_tokens::int AS completion_tokens FROM jobs WHERE job_id = $1",
          [id],
        )
      ).rows[0];
    try {
      const response = await fetch(`${app.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "qwen3-8b",
          stream: true,
          stream_options: { include_usage: true },
          messages: [],
        }),
      });
      expect(response.status).toBe(200);
      expect(await row()).toEqual({ capture_state: "open", completion_tokens: null });

      await admin.pool.query(`REVOKE INSERT, UPDATE ON jobs FROM ${role}`);
      revoked();
      // The client has the whole stream, as it would have without the refusal.
      expect(await response.text()).toMatch(/data: \[DONE\]\n\n$/);
      expect(await row()).toEqual({ capture_state: "open", completion_tokens: null });
      expect(writer.health()).toMatchObject({ reachable: false, refusing: true, waiting: 1 });

      await grant();
      await expect
        .poll(row, { timeout: 15_000 })
        .toEqual({ capture_state: "complete", completion_tokens: 2 });
      expect(writer.health()).toEqual({ reachable: true });
    } finally {
      await grant();
      await app.close();
      await proxy.close();
      await writer.close();
      await upstream.close();
    }
  });
});
