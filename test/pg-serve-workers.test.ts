import net from "node:net";
import { availableParallelism } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres } from "../src/db/pg/client.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { startCli } from "./support/service-process.js";

/**
 * `serve` on a PostgreSQL database that allows 20 connections (its CONNECTION LIMIT, as a small
 * server's max_connections): a cluster of two workers at the default pool (10) needs up to 35.
 */

const database = usePostgresDatabase();

beforeAll(async () => {
  const admin = openPostgres(database.url);
  try {
    const name = decodeURIComponent(new URL(database.url).pathname.slice(1));
    await admin.pool.query(`ALTER DATABASE "${name}" CONNECTION LIMIT 20`);
  } finally {
    await admin.close();
  }
});

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

const serveArgs = () => ["serve", "--port", "0", "--db", database.url, "--profile", "localnet"];
const env = { SOLANA_RPC_URLS: "http://127.0.0.1:9", DATABASE_POOL_SIZE: "10" };

describe("serve --workers on a PostgreSQL that allows 20 connections", () => {
  it("refuses an explicit --workers 2 it has no connections for, naming it", async () => {
    const serve = startCli([...serveArgs(), "--workers", "2"], env);
    const outcome = await Promise.race([
      serve.exited,
      serve.waitForLog((l) => l.msg === "serve cluster ready", 60_000).then(() => "started"),
    ]);
    serve.child.kill("SIGKILL");
    expect(outcome).toBe(2);
    expect(serve.stderr()).toMatch(
      /^error: --workers 2 \(WORKERS\) needs up to 35 PostgreSQL connections with DATABASE_POOL_SIZE 10 .*, but PostgreSQL at postgres:\/\/.* allows 20 \(the database's CONNECTION LIMIT\): no cluster fits; lower --workers or DATABASE_POOL_SIZE/,
    );
  }, 60_000);

  it("refuses an explicit --workers 1 whose one process does not fit, as it refuses more", async () => {
    // At a pool of 11 one process may need 22: its pool, listener, writer and background work.
    const serve = startCli([...serveArgs(), "--workers", "1"], {
      ...env,
      DATABASE_POOL_SIZE: "11",
    });
    const outcome = await Promise.race([
      serve.exited,
      serve.waitForLog((l) => l.msg === "decentral-audit listening", 60_000).then(() => "started"),
    ]);
    serve.child.kill("SIGKILL");
    expect(outcome).toBe(2);
    expect(serve.stderr()).toMatch(
      /^error: --workers 1 \(WORKERS\) needs up to 22 PostgreSQL connections with DATABASE_POOL_SIZE 11 .*, but PostgreSQL at postgres:\/\/.* allows 20 \(the database's CONNECTION LIMIT\); lower DATABASE_POOL_SIZE, or raise the limit/,
    );
  }, 60_000);

  it("runs an explicit --workers N as asked behind another port, a pooler's, and says so", async () => {
    // A forwarded port stands for PgBouncer: the limits serve reads are the server's, and a
    // pooler takes more clients than that. Refused, no WORKERS behind one could run a cluster.
    const server = new URL(database.url);
    const forward = net.createServer((socket) => {
      const upstream = net.connect(Number(server.port), server.hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on("error", () => upstream.destroy());
      upstream.on("error", () => socket.destroy());
    });
    closers.push(() => new Promise((resolve) => forward.close(() => resolve())));
    await new Promise<void>((resolve) => forward.listen(0, "127.0.0.1", resolve));
    const pooled = new URL(database.url);
    pooled.port = String((forward.address() as net.AddressInfo).port);
    const args = ["serve", "--port", "0", "--db", pooled.href, "--profile", "localnet"];
    const serve = startCli([...args, "--workers", "2"], env);
    try {
      const said = await Promise.race([
        serve.exited,
        serve.waitForLog((l) => String(l.msg).startsWith("--workers 2 may need"), 60_000),
      ]);
      expect(said).toMatchObject({ level: 40, workers: 2, connections: 20 });
      expect(String((said as { msg: string }).msg)).toMatch(
        new RegExp(
          `^--workers 2 may need up to 35 PostgreSQL connections .*; run as asked, since serve reaches it through port ${pooled.port}, not the server's ${server.port}: a pooler \\(PgBouncer\\)`,
        ),
      );
      // Drained, its workers with it, as they start.
      serve.child.kill("SIGTERM");
      expect(await serve.exited).toBe(0);
    } finally {
      serve.child.kill("SIGKILL");
    }
  }, 60_000);

  it.skipIf(availableParallelism() < 2)(
    "runs one process by default, not one per core, and says why",
    async () => {
      // At a pool of 11 even one process may need 22 (its pool, listener, writer, background).
      const serve = startCli(serveArgs(), { ...env, DATABASE_POOL_SIZE: "11", WORKERS: "" });
      try {
        const listening = await serve.waitForLog((l) => l.msg === "decentral-audit listening");
        expect((await fetch(`${listening.url}/healthz`)).status).toBe(200);
        const said = serve.logs.find((l) => String(l.msg).startsWith("serve runs 1 worker(s)"));
        expect(said).toMatchObject({ level: 40, workers: 1, connections: 20 });
        expect(String(said?.msg)).toMatch(
          /allows 20 \(the database's CONNECTION LIMIT\); even one process may need up to 22: lower DATABASE_POOL_SIZE or raise the limit$/,
        );
        serve.child.kill("SIGTERM");
        expect(await serve.exited).toBe(0);
        expect(serve.logs.filter((l) => l.msg === "decentral-audit listening")).toHaveLength(1);
        expect(serve.logs.some((l) => l.msg === "serve cluster ready")).toBe(false);
      } finally {
        serve.child.kill("SIGKILL");
      }
    },
    60_000,
  );
});
