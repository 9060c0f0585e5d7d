import { describe, expect, it } from "vitest";
import { createTestApi } from "./support/audit-api-app.js";
import { insertJob } from "./support/job-rows.js";

type Role = "read" | "ingest" | "admin";

/** Every route of the API with the least role it needs and a role that must be refused. */
const routes: { method: "GET" | "POST"; path: string; role: Role; wrong: Role }[] = [
  { method: "GET", path: "/audit/job_a", role: "read", wrong: "ingest" },
  { method: "POST", path: "/jobs/job_a/reverify", role: "admin", wrong: "read" },
  {
    method: "GET",
    path: "/reports/reconciliation?from=2026-11-01&to=2026-12-01",
    role: "read",
    wrong: "ingest",
  },
  { method: "GET", path: "/reports/discrepancies", role: "read", wrong: "ingest" },
  {
    method: "GET",
    path: "/reports/workers/DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe?from=2026-11-01&to=2026-12-01",
    role: "read",
    wrong: "ingest",
  },
  { method: "GET", path: "/jobs", role: "read", wrong: "ingest" },
  { method: "POST", path: "/jobs", role: "ingest", wrong: "read" },
  { method: "GET", path: "/readyz", role: "read", wrong: "ingest" },
  { method: "GET", path: "/metrics", role: "read", wrong: "ingest" },
  { method: "GET", path: "/openapi.json", role: "read", wrong: "ingest" },
];

async function setup() {
  const api = await createTestApi({ verifier: { reverify: async () => {} } });
  insertJob(api.store, { jobId: "job_a" });
  const call = (route: (typeof routes)[number], headers: Record<string, string>) =>
    api.app.request(route.path, {
      method: route.method,
      headers: { "content-type": "application/json", ...headers },
      ...(route.method === "POST" && route.path === "/jobs" ? { body: "{}" } : {}),
    });
  return { ...api, call };
}

describe("the access-token matrix", () => {
  for (const route of routes) {
    it(`${route.method} ${route.path.split("?")[0]} refuses no token, refuses role ${route.wrong}, admits role ${route.role}`, async () => {
      const { call, tokens, bearer } = await setup();

      const none = await call(route, {});
      expect(none.status).toBe(401);
      const noneBody = (await none.json()) as { error: { code: string; message: string } };
      expect(noneBody.error.code).toBe("unauthorized");
      expect(noneBody.error.message).toMatch(/access token is required/);

      const wrong = await call(route, bearer(tokens[route.wrong]));
      expect(wrong.status).toBe(403);
      const wrongBody = (await wrong.json()) as { error: { code: string; message: string } };
      expect(wrongBody.error.code).toBe("forbidden");
      expect(wrongBody.error.message).toContain(route.wrong);

      const right = await call(route, bearer(tokens[route.role]));
      expect([401, 403]).not.toContain(right.status);
      expect(right.status).toBeLessThan(500);

      if (route.role !== "admin") {
        const admin = await call(route, bearer(tokens.admin));
        expect([401, 403]).not.toContain(admin.status);
      }
    });
  }

  it("answers /healthz without a token", async () => {
    const { app } = await setup();
    const res = await app.request("/healthz");
    expect(res.status).toBe(200);
  });

  it("treats unknown, malformed and revoked tokens alike as 401", async () => {
    const { app, store, tokens } = await setup();
    const tries = [
      "Bearer da_read_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      `Basic ${tokens.read}`,
      "Bearer",
    ];
    for (const authorization of tries) {
      const res = await app.request("/jobs", { headers: { authorization } });
      expect(res.status).toBe(401);
    }
    store.sqlite.prepare("UPDATE access_tokens SET revoked_at = 1").run();
    const res = await app.request("/jobs", {
      headers: { authorization: `Bearer ${tokens.admin}` },
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/revoked/);
  });

  it("never echoes the presented token in an error body", async () => {
    const { app, tokens } = await setup();
    const res = await app.request("/jobs/job_a/reverify", {
      method: "POST",
      headers: { authorization: `Bearer ${tokens.read}` },
    });
    expect(await res.text()).not.toContain(tokens.read);
  });

  it("requires an ingest token in x-audit-token on /v1/* when the proxy demands one", async () => {
    const { app, tokens } = await createTestApi({ proxyRequireToken: true });
    const decentralKey = { authorization: "Bearer dcntrl_test_abcdefghijklmnopqrstuvwxyz012345" };
    const none = await app.request("/v1/models", { headers: decentralKey });
    expect(none.status).toBe(401);
    const wrong = await app.request("/v1/models", {
      headers: { ...decentralKey, "x-audit-token": tokens.read },
    });
    expect(wrong.status).toBe(403);
    const right = await app.request("/v1/models", {
      headers: { ...decentralKey, "x-audit-token": tokens.ingest },
    });
    expect([401, 403]).not.toContain(right.status);
  });

  // A live token sent in the other header's form was told "unknown or revoked" (x-audit-token
  // written as Authorization is) or "required" as if none had been sent (Authorization without
  // its scheme): the user looked for a revoked token, or a header lost on the way.
  it("says a live token sent in the wrong form is in the wrong form, not revoked or missing", async () => {
    const { app, tokens } = await createTestApi({ proxyRequireToken: true });
    const decentralKey = { authorization: "Bearer dcntrl_test_abcdefghijklmnopqrstuvwxyz012345" };
    const prefixed = await app.request("/v1/models", {
      headers: { ...decentralKey, "x-audit-token": `Bearer ${tokens.ingest}` },
    });
    expect(prefixed.status).toBe(401);
    const prefixedBody = (await prefixed.json()) as { error: { message: string } };
    expect(prefixedBody.error.message).toBe(
      'x-audit-token holds the token alone (da_...), without "Bearer "',
    );
    expect(JSON.stringify(prefixedBody)).not.toContain(tokens.ingest);
    const bare = await app.request("/jobs", { headers: { authorization: tokens.read } });
    expect(bare.status).toBe(401);
    const bareBody = (await bare.json()) as { error: { message: string } };
    expect(bareBody.error.message).toContain(
      'the Authorization header holds no Bearer token: send "Bearer <token>"',
    );
    expect(JSON.stringify(bareBody)).not.toContain(tokens.read);
    // Nothing sent still reads as nothing sent.
    const none = await app.request("/jobs");
    expect(((await none.json()) as { error: { message: string } }).error.message).toBe(
      "an access token is required (Authorization: Bearer <token>)",
    );
  });
});
