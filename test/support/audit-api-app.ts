import { type AppDeps, createApp } from "../../src/api/app.js";
import { createToken } from "../../src/auth/tokens.js";
import { createLogger } from "../../src/log.js";
import { createTestStore } from "./store.js";

/**
 * A fresh app over an in-memory store with one live token per role, for API tests. Logs go
 * nowhere. Extra deps (verifier, probes, clock) override the defaults.
 */
export async function createTestApi(extra: Partial<Omit<AppDeps, "store" | "log">> = {}) {
  const store = createTestStore();
  const log = createLogger({ level: "silent" });
  const app = createApp({ store, log, ...extra });
  const tokens = {
    read: (await createToken(store, { role: "read", name: "dashboard" })).token,
    ingest: (await createToken(store, { role: "ingest", name: "backend" })).token,
    admin: (await createToken(store, { role: "admin", name: "ops" })).token,
  };
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  /** GET `path` with the given role's token. */
  const get = (path: string, role: keyof typeof tokens = "read", headers = {}) =>
    app.request(path, { headers: { ...bearer(tokens[role]), ...headers } });
  return { app, store, tokens, bearer, get };
}
