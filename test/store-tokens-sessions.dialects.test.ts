import { afterEach, describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
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
