import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { reportsStore } from "../src/store/reports.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt } from "./support/recorder-fixtures.js";

/**
 * PostgreSQL going away under a running writer: the connection to the server goes through a
 * relay on this host that the test cuts (every connection dropped, new ones refused) and
 * restores, as a database restart or a network cut would.
 */

const database = usePostgresDatabase({ migrated: true });
const log = createLogger({ level: "silent" });

/** A TCP relay to the server that can be cut and restored on the same port. */
class Relay {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(
    private readonly host: string,
    private readonly targetPort: number,
  ) {}

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.host);
      this.sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
    });
    server.listen(this.port, "127.0.0.1");
    await once(server, "listening");
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Drops every connection and refuses new ones (the port is closed). */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

let relay: Relay;
let store: PgStore;

beforeAll(async () => {
  const target = new URL(database.url);
  relay = new Relay(target.hostname, Number(target.port));
  await relay.open();
  const viaRelay = new URL(database.url);
  viaRelay.port = String(relay.port);
  store = openPostgres(viaRelay.href, { poolSize: 2, statementTimeoutMs: 5000 });
});

afterAll(async () => {
  await relay?.cut();
  await store?.close();
});

describe("the receipt writer when PostgreSQL goes away", () => {
  it("keeps receipts waiting, refuses new work, says so, and writes them all once the database is back", async () => {
    const writer = createReceiptWriter(store, { log, maxRetryDelayMs: 200 });
    const before = receipt();
    await writer.run(recordReceiptsUnit([before], "proxy"));
    expect(writer.health()).toEqual({ reachable: true });

    await relay.cut();
    const waiting = [receipt(), receipt(), receipt()];
    const written = waiting.map((r) => writer.run(recordReceiptsUnit([r], "proxy")));
    let settled = false;
    void Promise.allSettled(written).then(() => {
      settled = true;
    });
    // The group fails on the cut connection, and keeps failing while the port is closed.
    await expect.poll(() => writer.health().reachable, { timeout: 10_000 }).toBe(false);
    const health = writer.health();
    expect(health).toMatchObject({ reachable: false, waiting: 3 });
    expect(writer.full()).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(settled).toBe(false);

    await relay.open();
    const results = await Promise.all(written);
    expect(results.map((r) => r[0]?.outcome)).toEqual(["created", "created", "created"]);
    expect(writer.health()).toEqual({ reachable: true });
    expect(writer.full()).toBe(false);
    const reports = reportsStore(store);
    for (const r of [before, ...waiting]) {
      expect((await reports.auditRows(r.jobId))?.job.jobId).toBe(r.jobId);
    }
    await writer.close();
  }, 30_000);

  it("finds the database back by itself when nothing is waiting", async () => {
    const writer = createReceiptWriter(store, { log, maxRetryDelayMs: 200 });
    await relay.cut();
    const lost = writer.run(recordReceiptsUnit([receipt()], "proxy"));
    await expect.poll(() => writer.health().reachable, { timeout: 10_000 }).toBe(false);
    await relay.open();
    await lost;
    await expect.poll(() => writer.health().reachable, { timeout: 10_000 }).toBe(true);
    await writer.close();
  }, 30_000);
});
