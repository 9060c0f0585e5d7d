import { OpenAPIHono } from "@hono/zod-openapi";
import { describe, expect, it } from "vitest";
import type { App } from "../src/api/app.js";
import type { AppEnv } from "../src/api/context.js";
import { createRouter } from "../src/api/router.js";
import { createToken, roleSatisfies } from "../src/auth/tokens.js";
import { type TokenRole, tokenRoles } from "../src/db/schema.js";
import type { RecordingProxy } from "../src/recorder/proxy.js";
import { createTestApi } from "./support/audit-api-app.js";
import { createTestStore } from "./support/store.js";

/**
 * The role every token-guarded route needs. A route the app registers that is in neither this
 * table nor `publicRoutes` fails the test below: adding a route means deciding who may call it.
 */
const guardedRoutes: Record<string, TokenRole> = {
  "GET /audit/:jobId": "read",
  "POST /jobs/:jobId/reverify": "admin",
  "GET /jobs": "read",
  "POST /jobs": "ingest",
  "GET /reports/reconciliation": "read",
  "GET /reports/discrepancies": "read",
  "GET /reports/workers/:address": "read",
  "GET /reports/statement": "read",
  "GET /reports/account-snapshots": "read",
  "POST /reports/account-snapshots": "admin",
  "GET /readyz": "read",
  "GET /metrics": "read",
  "GET /openapi.json": "read",
  // PROXY_REQUIRE_TOKEN: the Decentral key stays in Authorization, the token in x-audit-token.
  "ALL /v1/*": "ingest",
};

/** Answered without any credential. */
const publicRoutes = new Set([
  "GET /healthz",
  "GET /dashboard/sign-in",
  "POST /dashboard/sign-in",
  "GET /dashboard/assets/dashboard.css",
]);

/** Entries of `app.routes` that are middleware in front of routes, not routes themselves. */
const middleware = new Set([
  "ALL /*",
  "ALL /openapi.json",
  "ALL /dashboard/*",
  "POST /dashboard/*",
]);

/** Every route the app serves, as "METHOD /path" (Hono's own route table, deduplicated). */
function registeredRoutes(app: App): string[] {
  const keys = new Set(app.routes.map((r) => `${r.method} ${r.path}`));
  return [...keys].filter((key) => !middleware.has(key)).sort();
}

/** A concrete request for a route pattern: parameters filled in, ALL sent as POST. */
function requestFor(key: string): { method: string; path: string } {
  const [method = "", pattern = ""] = key.split(" ");
  const path = pattern.replace(/:[A-Za-z]+/g, "job_a").replace(/\*$/, "models");
  return { method: method === "ALL" ? "POST" : method, path };
}

/** The app with every optional part mounted, so that every route exists. */
function fullApp() {
  const proxy = {
    handle: async () => 200,
    writer: undefined,
  } as unknown as RecordingProxy;
  return createTestApi({
    proxy,
    proxyRequireToken: true,
    verifier: { reverify: async () => {} },
    statement: {
      profile: {} as never,
      graceSeconds: 60,
    },
  });
}

const api = await fullApp();

describe("every route of the app is guarded by construction", () => {
  const routes = registeredRoutes(api.app);

  const isDashboard = (key: string) => key.split(" ")[1]!.startsWith("/dashboard");

  it("registers no route that is neither public, given a role, nor a dashboard page", () => {
    const unclassified = routes.filter(
      (key) => !publicRoutes.has(key) && !(key in guardedRoutes) && !isDashboard(key),
    );
    expect(unclassified).toEqual([]);
    for (const key of Object.keys(guardedRoutes)) expect(routes).toContain(key);
  });

  const tokenRoutes = routes.filter((key) => key in guardedRoutes);
  it.each(tokenRoutes)("%s answers 401 without a token and 403 to a lesser role", async (key) => {
    const role = guardedRoutes[key]!;
    const { method, path } = requestFor(key);
    const header = key.startsWith("ALL /v1/") ? "x-audit-token" : "authorization";
    const credential = (token: string) => (header === "authorization" ? `Bearer ${token}` : token);
    const call = (token?: string) =>
      api.app.request(path, {
        method,
        headers: {
          "content-type": "application/json",
          ...(token ? { [header]: credential(token) } : {}),
        },
        ...(method === "POST" ? { body: "{}" } : {}),
      });

    const none = await call();
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({
      error: { code: "unauthorized", requiredRole: role },
    });
    for (const held of tokenRoles) {
      const res = await call(api.tokens[held]);
      if (roleSatisfies(held, role)) {
        expect([401, 403], `${held} token on ${key}`).not.toContain(res.status);
      } else {
        expect(res.status, `${held} token on ${key}`).toBe(403);
        expect(await res.json()).toMatchObject({
          error: { code: "forbidden", requiredRole: role, tokenRole: held },
        });
      }
    }
  });

  const dashboardPages = routes.filter((key) => isDashboard(key) && !publicRoutes.has(key));
  it.each(dashboardPages)(
    "%s needs a dashboard session: no session, or a bearer token of any role, does not open it",
    async (key) => {
      const { method, path } = requestFor(key);
      for (const held of [undefined, ...tokenRoles]) {
        const res = await api.app.request(path, {
          method,
          redirect: "manual",
          headers: held ? { authorization: `Bearer ${api.tokens[held]}` } : {},
        });
        if (method === "GET") {
          expect(res.status).toBe(303);
          expect(res.headers.get("location")).toMatch(/^\/dashboard\/sign-in\?/);
        } else {
          expect(res.status).toBe(401);
        }
      }
    },
  );

  it("keeps an ingest token out of the dashboard at sign-in (403)", async () => {
    const res = await api.app.request("http://localhost/dashboard/sign-in", {
      method: "POST",
      headers: {
        origin: "http://localhost",
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ token: api.tokens.ingest }).toString(),
    });
    expect(res.status).toBe(403);
  });

  it.each([...publicRoutes].filter((key) => key.startsWith("GET")))(
    "%s answers without any credential",
    async (key) => {
      const { path } = requestFor(key);
      const res = await api.app.request(path);
      expect(res.status).toBe(200);
    },
  );
});

describe("createRouter", () => {
  it("guards a route added by any method of the router, and nothing mounted beside it", async () => {
    const store = createTestStore();
    const read = (await createToken(store, { role: "read", name: "reader" })).token;
    const admin = (await createToken(store, { role: "admin", name: "ops" })).token;
    const guarded = createRouter({ store, role: "admin" })
      .get("/a", (c) => c.text("a"))
      .post("/b", (c) => c.text("b"))
      .on("PUT", "/c", (c) => c.text("c"))
      .all("/d", (c) => c.text("d"));
    // Mounted at "/", like every sub-app of the API: its check must not reach /open.
    const app = new OpenAPIHono<AppEnv>().route("/", guarded).get("/open", (c) => c.text("open"));
    const call = (method: string, path: string, token?: string) =>
      app.request(path, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
    for (const [method, path] of [
      ["GET", "/a"],
      ["POST", "/b"],
      ["PUT", "/c"],
      ["DELETE", "/d"],
    ] as const) {
      expect((await call(method, path)).status).toBe(401);
      expect((await call(method, path, read)).status).toBe(403);
      expect((await call(method, path, admin)).status).toBe(200);
    }
    expect((await call("GET", "/open")).status).toBe(200);
    expect((await call("GET", "/open", read)).status).toBe(200);
  });
});
