import { mkdtempSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createLockStore } from "../src/store/locks.js";
import { address, jobId, signature } from "./support/recorder-fixtures.js";
import { jobRow, seedRows } from "./support/seed-reports.js";
import { type CliProcess, startCli } from "./support/service-process.js";

/**
 * `serve --workers 2` under a burst of report readers, as real processes: 500 readers at once
 * (a year's reconciliation by a time zone's days, worker statements, audit records, dashboard
 * pages) while paid jobs go through the proxy. A year by a zone's days is summed day by day,
 * tens of milliseconds a report however few the jobs: a few thousand jobs show what a hundred
 * thousand did, 500 of them one after another on a worker's event loop held it for seconds.
 */

const DAY_MS = 86_400_000;
const JOBS = 2_000;
const READERS = 500;
const PROXIED = 200;
const ZONE = "Asia/Kolkata";

interface Upstream {
  url: string;
  close(): void;
}

/** A stand-in Decentral API: every completion is a fresh job, answered at once. */
async function upstream(): Promise<Upstream> {
  const server = http.createServer(async (req, res) => {
    for await (const _ of req);
    if ((req.url ?? "").startsWith("/v1/jobs/")) {
      res.writeHead(404, { "content-type": "application/json" }).end("{}");
      return;
    }
    res.writeHead(200, {
      "content-type": "application/json",
      "x-decentral-job-id": jobId(),
      "x-decentral-tx-signature": signature(),
      "x-decentral-worker": address(),
    });
    res.end(JSON.stringify({ model: "m", usage: { prompt_tokens: 3, completion_tokens: 5 } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** A store of `JOBS` verified jobs over the last year, and a read token for it. */
async function seededStore(now: number): Promise<{ db: string; token: string; jobIds: string[] }> {
  const db = join(mkdtempSync(join(tmpdir(), "reader-burst-")), "audit.db");
  const store = openSqliteStore(db);
  try {
    migrateStore(store);
    const jobIds = Array.from({ length: JOBS }, (_, i) => `job_burst${i}`);
    await seedRows(
      store,
      "jobs",
      jobIds.map((id, i) => jobRow({ jobId: id, createdAt: now - 365 * DAY_MS + i * 15_000_000 })),
    );
    const { token } = await createToken(store, { role: "read", name: "finance" });
    return { db, token, jobIds };
  } finally {
    store.close();
  }
}

async function leaderOwner(db: string): Promise<string | null> {
  const store = openSqliteStore(db);
  try {
    return (await createLockStore(store).holder("serve-leader"))?.owner ?? null;
  } finally {
    store.close();
  }
}

async function until<T>(probe: () => T | Promise<T>, timeoutMs = 30_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Answer {
  status: number;
  retryAfter: string | undefined;
}

/** One request on a connection of its own (the cluster spreads them over its workers). */
function request(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.request(
      url,
      { method: options.method ?? "GET", agent: false, headers: options.headers ?? {} },
      (res) => {
        res.resume();
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] }),
        );
        res.on("error", () => resolve({ status: -1, retryAfter: undefined }));
      },
    );
    // A connection refused or reset is a failed request, counted as such.
    req.on("error", () => resolve({ status: -1, retryAfter: undefined }));
    req.end(options.body);
  });
}

let serve: CliProcess | undefined;
let up: Upstream | undefined;
afterEach(() => {
  serve?.child.kill("SIGKILL");
  up?.close();
  serve = undefined;
  up = undefined;
});

describe("serve --workers 2 under a burst of report readers", () => {
  it("keeps its leader lease, answers every proxied job, and tells readers beyond its limit when to come back", async () => {
    const now = Date.now();
    const { db, token, jobIds } = await seededStore(now);
    up = await upstream();
    serve = startCli(["serve", "--port", "0", "--db", db, "--profile", "localnet"], {
      WORKERS: "2",
      SOLANA_RPC_URLS: "http://127.0.0.1:9",
      DECENTRAL_BASE_URL: `${up.url}/v1`,
      LOG_LEVEL: "info",
      // A short queue: the readers beyond it are answered at once, and the burst takes seconds.
      READ_QUEUE: "16",
    });
    const listening = await serve.waitForLog((l) => l.msg === "decentral-audit listening");
    const base = String(listening.url);
    await serve.waitForLog((l) => l.msg === "serve cluster ready");
    const leader = await until(() => leaderOwner(db));

    // A dashboard session, as a finance person's browser holds one.
    const signIn = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        `${base}/dashboard/sign-in`,
        {
          method: "POST",
          agent: false,
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            origin: new URL(base).origin,
          },
        },
        (res) => {
          res.resume();
          resolve(String(res.headers["set-cookie"] ?? "").split(";")[0] ?? "");
        },
      );
      req.on("error", reject);
      req.end(new URLSearchParams({ token, next: "/dashboard" }).toString());
    });
    expect(signIn).toMatch(/^da_session=/);

    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    const yearFrom = day(now - 365 * DAY_MS);
    const yearTo = day(now);
    const bearer = { authorization: `Bearer ${token}` };
    const readerPaths = [
      {
        path: `/reports/reconciliation?groupBy=day&timeZone=${ZONE}&from=${yearFrom}&to=${yearTo}`,
        headers: bearer,
      },
      {
        path: `/reports/workers/DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe?timeZone=${ZONE}&from=${yearFrom}&to=${yearTo}`,
        headers: bearer,
      },
      { path: `/audit/${jobIds[7]}`, headers: bearer },
      {
        path: `/dashboard?period=custom&from=${yearFrom}&to=${yearTo}&timeZone=${ZONE}`,
        headers: { cookie: signIn },
      },
      {
        path: `/dashboard/workers?period=custom&from=${yearFrom}&to=${yearTo}&timeZone=${ZONE}`,
        headers: { cookie: signIn },
      },
    ];

    // Paid jobs through the proxy, ten at a time, before, during and after the burst.
    const proxied: Answer[] = [];
    let sent = 0;
    const caller = async () => {
      while (sent < PROXIED) {
        sent++;
        proxied.push(
          await request(`${base}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
            body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
          }),
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const callers = Promise.all(Array.from({ length: 10 }, caller));
    await until(() => sent >= 20);
    const readers = await Promise.all(
      Array.from({ length: READERS }, (_, i) => {
        const { path, headers } = readerPaths[i % readerPaths.length]!;
        return request(`${base}${path}`, { headers });
      }),
    );
    await callers;

    // Every paid job was answered: none failed for the readers' sake.
    expect(proxied.filter((a) => a.status !== 200)).toEqual([]);
    // Each reader got its answer, or a 503 saying when to ask again.
    const refused = readers.filter((a) => a.status === 503);
    expect(readers.filter((a) => a.status !== 200 && a.status !== 503)).toEqual([]);
    for (const a of refused) expect(Number(a.retryAfter)).toBeGreaterThan(0);
    expect(readers.filter((a) => a.status === 200).length).toBeGreaterThan(0);
    // The lease never moved nor ran out: one leader throughout.
    expect(await leaderOwner(db)).toBe(leader);
    const leaseTrouble = serve.logs.filter((l) =>
      /leader lock taken|leader lease ran out|leader lock lost/.test(String(l.msg)),
    );
    expect(leaseTrouble).toEqual([]);
  }, 120_000);
});
