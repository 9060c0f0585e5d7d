import { describe, expect, it } from "vitest";
import { profileStatus } from "../src/verify/profile-status.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createTestApi } from "./support/audit-api-app.js";
import { createTestStore } from "./support/store.js";

/**
 * A client generated from `/openapi.json` reads the fields the document names: a field an answer
 * sends that the document leaves out is invisible to it (a typed client drops it, a strict
 * validator refuses the answer), and an error body it does not describe (`requestId`) is one it
 * cannot quote when it reports the failure.
 */
type Schema = {
  $ref?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  anyOf?: Schema[];
  allOf?: Schema[];
};
type Doc = {
  components: { schemas: Record<string, Schema> };
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, { schema: Schema }> }> }>
  >;
};

/** The object schema `schema` stands for, its `$ref` followed and a nullable `anyOf` opened. */
function resolve(doc: Doc, schema: Schema): Schema {
  if (schema.$ref) return resolve(doc, doc.components.schemas[schema.$ref.split("/").at(-1)!]!);
  const object = schema.anyOf?.find((s) => s.$ref || s.properties);
  return object ? resolve(doc, object) : schema;
}

/** Paths of `value`'s members (array elements read as `[]`) that `schema` does not name. */
function undocumented(doc: Doc, schema: Schema, value: unknown, path = ""): string[] {
  if (value === null || typeof value !== "object") return [];
  const s = resolve(doc, schema);
  if (Array.isArray(value)) {
    return s.items ? value.flatMap((v) => undocumented(doc, s.items!, v, `${path}[]`)) : [];
  }
  if (!s.properties) return [];
  return Object.entries(value).flatMap(([key, member]) => {
    const property = s.properties![key];
    return property === undefined
      ? [`${path}.${key}`]
      : undocumented(doc, property, member, `${path}.${key}`);
  });
}

const schemaOf = (doc: Doc, path: string, method: string, status: number) =>
  doc.paths[path]![method]!.responses[String(status)]!.content!["application/json"]!.schema;

describe("answers name only fields /openapi.json documents", () => {
  it("GET /readyz: the profile's id, which verdicts name as verdictProfile", async () => {
    const store = createTestStore();
    const api = await createTestApi({
      readiness: { rpc: async () => 1, profile: () => profileStatus(store, localnetProfile) },
    });
    const doc = (await (await api.get("/openapi.json")).json()) as Doc;
    const res = await api.get("/readyz");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { profile: { id: string } };
    expect(body.profile.id).toMatch(/^localnet@[0-9a-f]{16}$/);
    expect(undocumented(doc, schemaOf(doc, "/readyz", "get", 200), body)).toEqual([]);
  });

  it("GET /reports/statement: a vault's setAside entries", async () => {
    const api = await createTestApi({ statement: { profile: localnetProfile, graceSeconds: 0 } });
    const doc = (await (await api.get("/openapi.json")).json()) as Doc;
    const vault = "F11Zd87fGZBi1tD6uYQyPQ2JCmaG3e7RcDmrm3eJucpB";
    const res = await api.get(`/reports/statement?from=2026-11-01&to=2026-11-02&vault=${vault}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { vaults: { setAside: unknown[] }[] };
    expect(body.vaults[0]!.setAside).toEqual([]);
    expect(undocumented(doc, schemaOf(doc, "/reports/statement", "get", 200), body)).toEqual([]);
    const item = resolve(doc, schemaOf(doc, "/reports/statement", "get", 200));
    const vaultItem = resolve(doc, item.properties!.vaults!.items!);
    expect(Object.keys(resolve(doc, vaultItem.properties!.setAside!.items!).properties!)).toEqual([
      "signature",
      "slot",
      "blockTime",
      "why",
    ]);
  });

  it("POST /reports/account-snapshots without a key: its 409 carries the requestId every error has", async () => {
    const api = await createTestApi({ statement: { profile: localnetProfile, graceSeconds: 0 } });
    const doc = (await (await api.get("/openapi.json")).json()) as Doc;
    const res = await api.app.request("/reports/account-snapshots", {
      method: "POST",
      headers: api.bearer(api.tokens.admin),
    });
    expect(res.status).toBe(409);
    const body = (await res.json()) as { requestId: string };
    expect(body.requestId).toEqual(expect.any(String));
    expect(
      undocumented(doc, schemaOf(doc, "/reports/account-snapshots", "post", 409), body),
    ).toEqual([]);
  });
});
