import { describe, expect, it } from "vitest";
import {
  authenticateToken,
  createToken,
  hashToken,
  listTokens,
  revokeToken,
  roleSatisfies,
} from "../src/auth/tokens.js";
import { createTokensStore } from "../src/store/tokens.js";
import { createTestStore } from "./support/store.js";

describe("access tokens", () => {
  it("are shown once with a da_ prefix and stored only as a hash", async () => {
    const store = createTestStore();
    const created = await createToken(store, { role: "read", name: "grafana" });
    expect(created.token).toMatch(/^da_read_[A-Za-z0-9_-]{43}$/);
    const stored = await createTokensStore(store).findByHash(hashToken(created.token));
    expect(stored?.id).toBe(created.id);
    expect(JSON.stringify(stored)).not.toContain(created.token);
    expect(JSON.stringify(await listTokens(store))).not.toContain(created.token);
    expect(await listTokens(store)).toEqual([
      expect.objectContaining({ id: created.id, name: "grafana", role: "read", revokedAt: null }),
    ]);
  });

  it("authenticate by their text until revoked", async () => {
    const store = createTestStore();
    const { id, token } = await createToken(store, { role: "ingest", name: "backend" });
    expect((await authenticateToken(store, token))?.role).toBe("ingest");
    expect(await authenticateToken(store, `${token.slice(0, -1)}x`)).toBeNull();
    expect(await authenticateToken(store, "not-a-token")).toBeNull();
    await revokeToken(store, id, () => 42);
    expect(await authenticateToken(store, token)).toBeNull();
    expect((await listTokens(store))[0]?.revokedAt).toBe(42);
    // Revoking again keeps the first revocation time.
    expect((await revokeToken(store, id, () => 99)).revokedAt).toBe(42);
  });

  it("refuse to revoke an unknown id and reject an empty name", async () => {
    const store = createTestStore();
    await expect(revokeToken(store, "tok_nope")).rejects.toThrow(/no token/);
    await expect(createToken(store, { role: "read", name: "  " })).rejects.toThrow(/name/);
  });

  it("let admin do everything while read and ingest stay apart", () => {
    expect(roleSatisfies("admin", "read")).toBe(true);
    expect(roleSatisfies("admin", "ingest")).toBe(true);
    expect(roleSatisfies("read", "ingest")).toBe(false);
    expect(roleSatisfies("ingest", "read")).toBe(false);
    expect(roleSatisfies("read", "admin")).toBe(false);
  });
});
