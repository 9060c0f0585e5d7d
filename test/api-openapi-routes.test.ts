import { describe, expect, it } from "vitest";
import type { App } from "../src/api/app.js";
import type { RecordingProxy } from "../src/recorder/proxy.js";
import { createTestApi } from "./support/audit-api-app.js";

/**
 * Every route the API serves is in `/openapi.json` with its parameters and the answers it gives.
 * The dashboard's pages are HTML for people and `/v1/*` is Decentral's own API passed through:
 * neither is part of this API's document.
 */
const undocumented = (path: string) => /^\/(dashboard|v1)(\/|$)/.test(path);

/** Entries of `app.routes` that are middleware in front of routes, not routes themselves. */
const isMiddleware = (route: { method: string; path: string }) =>
  route.method === "ALL" && (route.path.endsWith("*") || route.path === "/openapi.json");

type Operation = {
  parameters?: { name: string; in: string; required?: boolean }[];
  responses: Record<string, unknown>;
  security?: unknown[];
};
type Doc = { paths: Record<string, Record<string, Operation>> };

const api = await createTestApi({
  proxy: { handle: async () => 200, writer: undefined } as unknown as RecordingProxy,
  verifier: { reverify: async () => {} },
  statement: { profile: {} as never, graceSeconds: 60 },
});
const doc = (await (await api.get("/openapi.json")).json()) as Doc;

/** "METHOD /path/{param}" of every served route. */
function servedRoutes(app: App): string[] {
  const keys = app.routes
    .filter((r) => !isMiddleware(r) && !undocumented(r.path))
    .map((r) => `${r.method} ${r.path.replace(/:([A-Za-z]+)/g, "{$1}")}`);
  return [...new Set(keys)].sort();
}

/** A valid value of each required query parameter. */
const sampleValues: Record<string, string> = { from: "2026-11-01", to: "2026-11-02" };

const documented = Object.entries(doc.paths)
  .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
  .sort();

describe("the OpenAPI document and the routes served", () => {
  it("documents every route served, and serves every route documented", () => {
    expect(documented).toEqual(servedRoutes(api.app));
  });

  it.each(documented)("%s: parameters and answers as documented", async (key) => {
    const [method = "", path = ""] = key.split(" ");
    const op = doc.paths[path]![method.toLowerCase()]!;
    const params = op.parameters ?? [];
    const pathNames = [...path.matchAll(/\{([A-Za-z]+)\}/g)].map((m) => m[1]);
    expect(params.filter((p) => p.in === "path").map((p) => p.name)).toEqual(pathNames);
    const url = path.replace(/\{[A-Za-z]+\}/g, "job_a");
    const statuses = Object.keys(op.responses);
    const isPublic = Array.isArray(op.security) && op.security.length === 0;
    const call = (query: string, token?: string) =>
      api.app.request(`${url}${query}`, {
        method,
        headers: token ? api.bearer(token) : {},
      });

    // An unknown query parameter is refused naming the ones the route takes: those documented.
    // Required ones are given (a missing one is named first).
    const required = params
      .filter((p) => p.in === "query" && p.required)
      .map((p) => `${p.name}=${sampleValues[p.name]}&`)
      .join("");
    const unknown = await call(`?${required}zz_unknown=1`, api.tokens.admin);
    expect(statuses).toContain(String(unknown.status));
    expect(unknown.status).toBe(400);
    const body = (await unknown.json()) as { error: { field: string; message: string } };
    expect(body.error.field).toBe("zz_unknown");
    const takes = /this route takes (.*)$/.exec(body.error.message)?.[1];
    const queryNames = params.filter((p) => p.in === "query").map((p) => p.name);
    expect(takes === "none" ? [] : takes?.split(", ")).toEqual(queryNames);

    if (!isPublic) {
      const none = await call("");
      expect(none.status).toBe(401);
      expect(statuses).toContain("401");
      expect(statuses).toContain("403");
    }
  });
});
