import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createSessionsStore } from "../src/store/sessions.js";
import { createTokensStore, type TokenRow } from "../src/store/tokens.js";
import { dialects, useDialectStores } from "./support/dialects.js";

function token(id: string, overrides: Partial<TokenRow> = {}): TokenRow {
  return {
    id,
    name: `name of ${id}`,
    role: "read",
    tokenHash: `hash-of-${id}`,
    createdAt: 1000,
    lastUsedAt: null,
    revokedAt: null,
    ...overrides,
  };
}

describe.each(dialects)("tokens and sessions stores on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("store tokens, list them newest first without their hash, and find one by its hash", async () => {
    const store = await stores.open();
    const tokens = createTokensStore(store);
    await tokens.insert(token("tok_old", { createdAt: 1000 }));
    await tokens.insert(token("tok_new", { createdAt: 2000, role: "admin" }));
    expect(await tokens.list()).toEqual([
      {
        id: "tok_new",
        name: "name of tok_new",
        role: "admin",
        createdAt: 2000,
        lastUsedAt: null,
        revokedAt: null,
      },
      {
        id: "tok_old",
        name: "name of tok_old",
        role: "read",
        createdAt: 1000,
        lastUsedAt: null,
        revokedAt: null,
      },
    ]);
    expect(await tokens.findByHash("hash-of-tok_old")).toEqual(token("tok_old"));
    expect(await tokens.findByHash("nope")).toBeUndefined();
    await tokens.touch("tok_old", 1500);
    expect((await tokens.findByHash("hash-of-tok_old"))?.lastUsedAt).toBe(1500);
    // The hash is unique: the same secret cannot be stored twice.
    await expect(
      tokens.insert(token("tok_twin", { tokenHash: "hash-of-tok_old" })),
    ).rejects.toThrow();
  });

  it("revoke a token once, keeping its first revocation time, and know no unknown id", async () => {
    const store = await stores.open();
    const tokens = createTokensStore(store);
    await tokens.insert(token("tok_a"));
    expect(await tokens.revoke("tok_a", 42)).toMatchObject({ id: "tok_a", revokedAt: 42 });
    expect(await tokens.revoke("tok_a", 99)).toMatchObject({ id: "tok_a", revokedAt: 42 });
    expect(await tokens.revoke("tok_unknown", 42)).toBeNull();
    expect((await tokens.findByHash("hash-of-tok_a"))?.revokedAt).toBe(42);
  });

  it("open sessions, sweeping expired ones, and find only live ones of tokens not revoked", async () => {
    const store = await stores.open();
    const tokens = createTokensStore(store);
    const sessions = createSessionsStore(store);
    await tokens.insert(token("tok_a", { role: "admin" }));
    await tokens.insert(token("tok_b"));
    await sessions.open({ idHash: "s_old", tokenId: "tok_a", createdAt: 100, expiresAt: 500 });
    await sessions.open({ idHash: "s_b", tokenId: "tok_b", createdAt: 100, expiresAt: 5000 });
    expect(await sessions.find("s_old", 400)).toEqual({
      tokenId: "tok_a",
      tokenName: "name of tok_a",
      role: "admin",
      expiresAt: 500,
    });
    expect(await sessions.find("s_old", 500)).toBeNull();
    // Opening a session at 600 sweeps the one that expired at 500.
    await sessions.open({ idHash: "s_new", tokenId: "tok_a", createdAt: 600, expiresAt: 6000 });
    expect(await sessions.find("s_old", 400)).toBeNull();
    expect((await sessions.find("s_new", 700))?.tokenId).toBe("tok_a");
    await tokens.revoke("tok_b", 700);
    expect(await sessions.find("s_b", 800)).toBeNull();
    await sessions.delete("s_new");
    await sessions.delete("s_unknown");
    expect(await sessions.find("s_new", 700)).toBeNull();
    // A session needs a token that exists.
    await expect(
      sessions.open({ idHash: "s_x", tokenId: "tok_none", createdAt: 700, expiresAt: 900 }),
    ).rejects.toThrow();
  });
});

describe("tokens store on postgres, two processes revoking at once", () => {
  const stores = useDialectStores("postgres");
  const extra: Store[] = [];
  afterEach(async () => {
    for (const store of extra.splice(0)) await store.close();
  });

  it("keeps one revocation time, and both see it", async () => {
    const a = await stores.open();
    const b = openPostgres(stores.lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 });
    extra.push(b);
    const ids = Array.from({ length: 40 }, (_, i) => `tok_${i}`);
    for (const id of ids) await createTokensStore(a).insert(token(id));
    const results = await Promise.all(
      ids.map((id) =>
        Promise.all([createTokensStore(a).revoke(id, 100), createTokensStore(b).revoke(id, 200)]),
      ),
    );
    for (const [i, [fromA, fromB]] of results.entries()) {
      const stored = (await createTokensStore(a).findByHash(`hash-of-${ids[i]}`))?.revokedAt;
      expect(stored === 100 || stored === 200).toBe(true);
      expect(fromA?.revokedAt).toBe(stored);
      expect(fromB?.revokedAt).toBe(stored);
    }
  });
});

describe("tokens store on postgres, live tokens kept in memory while revocations are heard", () => {
  const stores = useDialectStores("postgres");
  const extra: Store[] = [];
  afterEach(async () => {
    for (const store of extra.splice(0)) await store.close();
  });
  const channel = "decentral_audit_token_revoked";

  /** Reads the token until this store's listener is on and the read is kept. */
  async function cached(store: Store, hash: string) {
    const pg = store as PgStore;
    const until = Date.now() + 10_000;
    while (!pg.listener.listening(channel)) {
      if (Date.now() > until) throw new Error("the listener never came up");
      await createTokensStore(store).findByHash(hash);
      await sleep(10);
    }
    await createTokensStore(store).findByHash(hash);
  }

  /** Marks the token revoked behind the store's back: no announcement. */
  const revokeSilently = (store: Store, id: string) =>
    (store as PgStore).pool.query("UPDATE access_tokens SET revoked_at = 5 WHERE id = $1", [id]);

  async function eventually(read: () => Promise<unknown>, until: (value: unknown) => boolean) {
    const started = Date.now();
    while (!until(await read())) {
      if (Date.now() - started > 5000) throw new Error("never");
      await sleep(2);
    }
    return Date.now() - started;
  }

  it("answers from memory, and drops a token another process revokes as the revocation commits", async () => {
    const a = await stores.open();
    const b = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
    extra.push(b);
    await createTokensStore(a).insert(token("tok_1"));
    await createTokensStore(a).insert(token("tok_2"));
    await cached(a, "hash-of-tok_1");
    await cached(a, "hash-of-tok_2");
    // Changed without the store: process a still answers from memory (no round trip)...
    await revokeSilently(b, "tok_2");
    expect((await createTokensStore(a).findByHash("hash-of-tok_2"))?.revokedAt).toBeNull();
    // ...until a revocation is announced: the other process's revoke reaches it at commit.
    await createTokensStore(b).revoke("tok_1", 300);
    const ms = await eventually(
      () => createTokensStore(a).findByHash("hash-of-tok_1"),
      (row) => (row as TokenRow | undefined)?.revokedAt === 300,
    );
    expect(ms).toBeLessThan(1000);
    // Only the revoked token is dropped from memory.
    expect((await createTokensStore(a).findByHash("hash-of-tok_2"))?.revokedAt).toBeNull();
    // The process that revokes drops it at once, before any announcement comes back.
    await createTokensStore(a).revoke("tok_2", 400);
    expect((await createTokensStore(a).findByHash("hash-of-tok_2"))?.revokedAt).toBe(5);
  });

  it("reads every token from the database again once its listener is lost", async () => {
    const a = await stores.open();
    const admin = openPostgres(stores.lastUrl, { poolSize: 1, statementTimeoutMs: 30_000 });
    extra.push(admin);
    await createTokensStore(a).insert(token("tok_1"));
    await cached(a, "hash-of-tok_1");
    await revokeSilently(admin, "tok_1");
    expect((await createTokensStore(a).findByHash("hash-of-tok_1"))?.revokedAt).toBeNull();
    // The listening connection dies (a server restart, a network cut): nothing said since can
    // be trusted, so nothing is taken from memory.
    await admin.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND query LIKE 'LISTEN%'`,
    );
    await eventually(
      () => createTokensStore(a).findByHash("hash-of-tok_1"),
      (row) => (row as TokenRow | undefined)?.revokedAt === 5,
    );
    // It listens again: a token read afterwards is kept and revocations are heard again.
    await createTokensStore(a).insert(token("tok_3"));
    await cached(a, "hash-of-tok_3");
    await createTokensStore(admin).revoke("tok_3", 700);
    await eventually(
      () => createTokensStore(a).findByHash("hash-of-tok_3"),
      (row) => (row as TokenRow | undefined)?.revokedAt === 700,
    );
  });
});

describe("tokens on postgres while the database is away", () => {
  const stores = useDialectStores("postgres");
  const extra: Store[] = [];
  afterEach(async () => {
    for (const store of extra.splice(0)) await Promise.resolve(store.close()).catch(() => {});
  });

  it("trust a token found live shortly before, never one revoked before nor one never seen", async () => {
    await stores.open();
    const a = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
    const b = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
    extra.push(a, b);
    for (const id of ["tok_live", "tok_revoked", "tok_unseen"]) {
      await createTokensStore(b).insert(token(id));
    }
    await createTokensStore(a).findByHash("hash-of-tok_live");
    await createTokensStore(a).findByHash("hash-of-tok_revoked");
    // Another process revokes it; this one hears the revocation (or reads it) before the outage.
    await createTokensStore(b).revoke("tok_revoked", 300);
    const until = Date.now() + 5000;
    while ((await createTokensStore(a).findByHash("hash-of-tok_revoked"))?.revokedAt !== 300) {
      if (Date.now() > until) throw new Error("the revocation never reached a");
      await sleep(5);
    }
    // The database goes away for process a.
    await (a as PgStore).pool.end();
    const tokens = createTokensStore(a);
    await expect(tokens.findByHash("hash-of-tok_live")).rejects.toThrow();
    const now = Date.now();
    expect(tokens.lastKnown("hash-of-tok_live", now, 600_000)?.id).toBe("tok_live");
    expect(tokens.lastKnown("hash-of-tok_revoked", now, 600_000)).toBeUndefined();
    expect(tokens.lastKnown("hash-of-tok_unseen", now, 600_000)).toBeUndefined();
    // Found too long ago: not trusted either.
    expect(tokens.lastKnown("hash-of-tok_live", now + 700_000, 600_000)).toBeUndefined();
  });

  it("hears of a revocation it never read, and forgets the token", async () => {
    await stores.open();
    const a = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
    const b = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
    extra.push(a, b);
    await createTokensStore(b).insert(token("tok_1"));
    const pg = a as PgStore;
    const until = Date.now() + 10_000;
    // Found live while a's listener is on, so the announcement reaches it.
    while (!pg.listener.listening("decentral_audit_token_revoked")) {
      if (Date.now() > until) throw new Error("the listener never came up");
      await createTokensStore(a).findByHash("hash-of-tok_1");
      await sleep(10);
    }
    await createTokensStore(a).findByHash("hash-of-tok_1");
    expect(createTokensStore(a).lastKnown("hash-of-tok_1", Date.now(), 600_000)?.id).toBe("tok_1");
    await createTokensStore(b).revoke("tok_1", 300);
    const heard = Date.now() + 5000;
    while (createTokensStore(a).lastKnown("hash-of-tok_1", Date.now(), 600_000)) {
      if (Date.now() > heard) throw new Error("the revocation was never heard");
      await sleep(5);
    }
  });
});

describe("the listening connection on postgres, when the network goes silent", () => {
  const stores = useDialectStores("postgres");

  /** A TCP relay to the server that can stop forwarding without closing anything. */
  async function silentRelay(target: URL) {
    const sockets: Socket[] = [];
    let silent = false;
    const server = createServer((down) => {
      const up = connect(Number(target.port), target.hostname);
      sockets.push(up, down);
      down.on("data", (data) => silent || up.write(data));
      up.on("data", (data) => silent || down.write(data));
      for (const s of [up, down]) s.on("error", () => {});
      down.on("close", () => up.destroy());
      up.on("close", () => down.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = new URL(target.href);
    url.port = String((server.address() as AddressInfo).port);
    return {
      url: url.href,
      silence: () => {
        silent = true;
      },
      close: () => {
        server.close();
        for (const s of sockets) s.destroy();
      },
    };
  }

  it("stops trusting it within seconds, and closes without waiting for the server", async () => {
    await stores.open();
    const relay = await silentRelay(new URL(stores.lastUrl));
    const b = openPostgres(relay.url, { poolSize: 1, statementTimeoutMs: 30_000 });
    try {
      const channel = "decentral_audit_token_revoked";
      const until = Date.now() + 10_000;
      while (!b.listener.listening(channel) && Date.now() < until) {
        await createTokensStore(b).findByHash("nothing");
        await sleep(10);
      }
      expect(b.listener.listening(channel)).toBe(true);
      // No FIN, no RST: TCP would notice after hours. The missed heartbeat notices.
      relay.silence();
      const silencedAt = Date.now();
      while (b.listener.listening(channel)) await sleep(50);
      expect(Date.now() - silencedAt).toBeLessThan(5000);
      const closing = Date.now();
      await b.close();
      expect(Date.now() - closing).toBeLessThan(1000);
    } finally {
      relay.close();
    }
  });
});
