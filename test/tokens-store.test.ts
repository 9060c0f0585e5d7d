import { describe, expect, it } from "vitest";
import {
  authenticateToken,
  createToken,
  listTokens,
  revokeToken,
  roleSatisfies,
} from "../src/auth/tokens.js";
import { createTestStore } from "./support/store.js";

describe("access tokens", () => {
  it("are shown once with a da_ prefix and stored only as a hash", () => {
    const store = createTestStore();
    const created = createToken(store, { role: "read", name: "grafana" });
    expect(created.token).toMatch(/^da_read_[A-Za-z0-9_-]{43}$/);
    const stored = store.sqlite.prepare("SELECT * FROM access_tokens").all();
    expect(JSON.stringify(stored)).not.toContain(created.token);
    expect(JSON.stringify(listTokens(store))).not.toContain(created.token);
    expect(listTokens(store)).toEqual([
      expect.objectContaining({ id: created.id, name: "grafana", role: "read", revokedAt: null }),
    ]);
  });

  it("authenticate by their text until revoked", () => {
    const store = createTestStore();
    const { id, token } = createToken(store, { role: "ingest", name: "backend" });
    expect(authenticateToken(store, token)?.role).toBe("ingest");
    expect(authenticateToken(store, `${token.slice(0, -1)}x`)).toBeNull();
    expect(authenticateToken(store, "not-a-token")).toBeNull();
    revokeToken(store, id, () => 42);
    expect(authenticateToken(store, token)).toBeNull();
    expect(listTokens(store)[0]?.revokedAt).toBe(42);
  });

  it("refuse to revoke an unknown id and reject an empty name", () => {
    const store = createTestStore();
    expect(() => revokeToken(store, "tok_nope")).toThrow(/no token/);
    expect(() => createToken(store, { role: "read", name: "  " })).toThrow(/name/);
  });

  it("let admin do everything while read and ingest stay apart", () => {
    expect(roleSatisfies("admin", "read")).toBe(true);
    expect(roleSatisfies("admin", "ingest")).toBe(true);
    expect(roleSatisfies("read", "ingest")).toBe(false);
    expect(roleSatisfies("ingest", "read")).toBe(false);
    expect(roleSatisfies("read", "admin")).toBe(false);
  });
});
