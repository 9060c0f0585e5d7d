import { beforeAll, describe, expect, it } from "vitest";
import { windowFromFlags } from "../src/reports/period.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createTestApi } from "./support/audit-api-app.js";
import { insertCheck, insertJob } from "./support/job-rows.js";

type Api = Awaited<ReturnType<typeof createTestApi>>;
type Operation = { parameters?: { name: string; in: string; required?: boolean }[] };

const values: Record<string, string> = {
  jobId: "job_ep",
  address: "11111111111111111111111111111111",
  from: "2026-11-01",
  to: "2026-12-01",
};

/**
 * Every route of the API but the two that take a body (`POST /jobs`, and the proxy), each with
 * the path and query that it answers 2xx to with an admin token.
 */
async function bodilessRoutes(api: Api) {
  const doc = (await (await api.get("/openapi.json")).json()) as {
    paths: Record<string, Record<string, Operation>>;
  };
  const routes: { method: string; path: string; label: string }[] = [
    { method: "GET", path: "/healthz?", label: "GET /healthz" },
    { method: "GET", path: "/openapi.json?", label: "GET /openapi.json" },
  ];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (method === "post" && template === "/jobs") continue;
      const path = template.replace(/\{(\w+)\}/g, (_, name: string) => values[name] ?? name);
      const required = (operation.parameters ?? [])
        .filter((p) => p.in === "query" && p.required)
        .map((p) => `${p.name}=${values[p.name]}&`)
        .join("");
      routes.push({
        method: method.toUpperCase(),
        path: `${path}?${required}`,
        label: `${method.toUpperCase()} ${template}`,
      });
    }
  }
  return routes;
}

/** The session cookie of a dashboard sign-in with the read token. */
async function dashboardCookie(api: Api) {
  const res = await api.app.request("/dashboard/sign-in", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: "http://localhost" },
    body: new URLSearchParams({ token: api.tokens.read }).toString(),
  });
  return (res.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
}

describe("every route's entry checks", () => {
  let api: Api;
  let routes: Awaited<ReturnType<typeof bodilessRoutes>>;
  const asAdmin = (method: string, path: string, init: RequestInit = {}) =>
    api.app.request(path, {
      method,
      ...init,
      headers: { ...api.bearer(api.tokens.admin), ...(init.headers as object) },
    });

  beforeAll(async () => {
    api = await createTestApi({
      statement: {
        profile: localnetProfile,
        graceSeconds: 0,
        takeAccountSnapshot: async () => ({
          id: 1,
          takenAt: 0,
          keyFingerprint: "0123456789abcdef",
          vault: null,
          creditsRemaining: null,
          usdcValueUnits: null,
          vaultUnits: null,
          vaultSlot: null,
          creditsDifference: null,
          usdcDifferenceUnits: null,
          error: "test",
        }),
      },
      verifier: { reverify: async () => {} },
    });
    insertJob(api.store, { jobId: "job_ep" });
    routes = await bodilessRoutes(api);
    expect(routes.map((r) => r.label)).toEqual(
      expect.arrayContaining([
        "POST /jobs/{jobId}/reverify",
        "POST /reports/account-snapshots",
        "GET /readyz",
      ]),
    );
  });

  // `POST /reports/account-snapshots?vault=X` took a snapshot of the key's own vault, and
  // `/healthz?deep=1` answered as a shallow probe, each without a word, where every other route
  // refuses a parameter it does not take.
  it("refuses a query parameter a route does not take, naming it", async () => {
    for (const route of routes) {
      expect((await asAdmin(route.method, route.path)).status, route.label).toBeLessThan(300);
      const res = await asAdmin(route.method, `${route.path}vualt=x`);
      expect(res.status, route.label).toBe(400);
      const body = (await res.json()) as { error: { code: string; field: string } };
      expect(body.error, route.label).toMatchObject({ code: "validation_failed", field: "vualt" });
    }
  });

  // `POST /jobs/:id/reverify` with `{"jobIds": [...]}` (or any body) queued the one job of its
  // path and answered 202, as if the body had been read: a route that reads no body refuses one.
  it("refuses a body on a route that reads none, and takes an empty one", async () => {
    for (const route of routes) {
      if (route.method === "GET") continue;
      const empty = await asAdmin(route.method, route.path, { body: "" });
      expect(empty.status, route.label).toBeLessThan(300);
      const res = await asAdmin(route.method, route.path, {
        body: JSON.stringify({ jobIds: ["job_other"] }),
        headers: { "content-type": "application/json" },
      });
      expect(res.status, route.label).toBe(400);
      const body = (await res.json()) as { error: { code: string; field: string } };
      expect(body.error, route.label).toMatchObject({ code: "bad_request", field: "body" });
    }
  });

  it("refuses a body sent in chunks, without a length", async () => {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"force":true}'));
        controller.close();
      },
    });
    const res = await asAdmin("POST", "/jobs/job_ep/reverify", {
      body: stream,
      headers: { "transfer-encoding": "chunked" },
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(400);
  });

  it("still asks for the token first: no token is a 401 whatever the query or body", async () => {
    const res = await api.app.request("/jobs/job_ep/reverify?x=1", { method: "POST", body: "{}" });
    expect(res.status).toBe(401);
  });
});

// `GET /jobs?model=%FF` listed the jobs whose model is the three characters `%FF`: a byte that
// is not UTF-8 was read literally, and the dashboard the same, where a POST body is refused.
describe("a query parameter that is not UTF-8", () => {
  it("is a 400 naming the parameter, on the API and the dashboard, never matched literally", async () => {
    const api = await createTestApi();
    insertJob(api.store, { jobId: "job_literal", model: "%FF" });
    const listed = await api.get("/jobs?model=%25FF");
    expect(((await listed.json()) as { items: unknown[] }).items).toHaveLength(1);
    for (const [query, field] of [
      ["model=%FF", "model"],
      ["model=%C3", "model"],
      ["model=a%C3%28", "model"],
      ["limit=5&model=%ED%A0%80", "model"],
      ["%FF=1", "%FF"],
    ] as const) {
      const res = await api.get(`/jobs?${query}`);
      expect(res.status, query).toBe(400);
      const body = (await res.json()) as {
        error: { code: string; field: string; message: string };
      };
      expect(body.error, query).toMatchObject({ code: "bad_request", field });
      expect(body.error.message, query).toContain("not valid UTF-8");
    }
    const cookie = await dashboardCookie(api);
    const page = await api.app.request("/dashboard/discrepancies?check=%FF", {
      headers: { cookie },
    });
    expect(page.status).toBe(400);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(await page.text()).toContain("check: not valid UTF-8");
  });
});

// `GET /audit/%FF` answered "no job %FF", the byte read as the three characters sent.
describe("a path with a trailing slash", () => {
  it("is a 404 naming the path and the route without the slash", async () => {
    const api = await createTestApi();
    for (const path of ["/jobs/", "/reports/reconciliation/", "/audit/job_abc/"]) {
      const res = await api.get(path);
      expect(res.status, path).toBe(404);
      const body = (await res.json()) as { error: { field: string; message: string } };
      expect(body.error.field, path).toBe("path");
      expect(body.error.message, path).toContain(
        `the route is ${path.slice(0, -1)}, without the trailing slash`,
      );
    }
    const unknown = (await (await api.get("/nothing/")).json()) as { error: { field?: string } };
    expect(unknown.error.field).toBeUndefined();
  });
});

describe("a path that is not UTF-8", () => {
  it("is a 400 naming the path, on the API and the dashboard", async () => {
    const api = await createTestApi();
    for (const path of ["/audit/job_%FF", "/jobs/job_%C3/reverify"]) {
      const res = await api.app.request(path, {
        method: path.endsWith("reverify") ? "POST" : "GET",
        headers: api.bearer(api.tokens.admin),
      });
      expect(res.status, path).toBe(400);
      const body = (await res.json()) as { error: { code: string; field: string } };
      expect(body.error, path).toMatchObject({ code: "bad_request", field: "path" });
    }
    const page = await api.app.request("/dashboard/jobs/job_%FF");
    expect(page.status).toBe(400);
    expect(await page.text()).toContain("not valid UTF-8");
  });
});

// `limit=9007199254740993` was answered "Too big: expected int to be <=9007199254740991", naming
// as the most a `limit` takes a number 18 million million times its 500.
describe("a whole-number parameter past 2^53", () => {
  it("names the parameter's own bound, in the API and in the configuration", async () => {
    const api = await createTestApi();
    for (const path of [
      "/jobs?limit=9007199254740993",
      "/reports/discrepancies?from=2026-11-01&to=2026-11-02&limit=99999999999999999999",
    ]) {
      const res = await api.get(path);
      expect(res.status, path).toBe(400);
      const { error } = (await res.json()) as { error: { message: string; field: string } };
      expect(error).toMatchObject({ field: "limit" });
      expect(error.message).toContain("<=500");
    }
    const { loadConfig } = await import("../src/config.js");
    expect(() => loadConfig({ LEDGER_GRACE_SECONDS: "99999999999999999999" })).toThrow(
      /^invalid configuration:\n {2}LEDGER_GRACE_SECONDS: Too big: expected number to be <=31536000$/,
    );
  });
});

// `groupBy=model&groupBy=day` was answered "Invalid option: expected one of day|model|worker|key"
// (both values are among them) and `limit=3&limit=4` "expected string, received array": the
// caller was told its values were wrong, where the dashboard says what is: given twice.
describe("a query parameter given more than once", () => {
  it("is a 400 naming it and saying it was given more than once", async () => {
    const api = await createTestApi();
    for (const [path, field] of [
      [
        "/reports/reconciliation?from=2026-11-01&to=2026-12-01&groupBy=model&groupBy=day",
        "groupBy",
      ],
      ["/reports/reconciliation?from=2026-11-01&from=2026-10-01&to=2026-12-01", "from"],
      ["/jobs?limit=3&limit=3", "limit"],
      ["/reports/discrepancies?verdict=dropped&verdict=discrepancy", "verdict"],
    ] as const) {
      const res = await api.get(path);
      expect(res.status, path).toBe(400);
      const { error } = (await res.json()) as { error: { field: string; message: string } };
      expect(error, path).toMatchObject({ code: "validation_failed", field });
      expect(error.message, path).toBe(`${field}: given more than once; give it once`);
    }
  });
});

// `/jobs?=discrepancy` listed every job: a parameter with no name was dropped unread, so a
// filter whose name a client left out answered as if every job matched it.
describe("a query parameter with no name", () => {
  it("is a 400 naming the query, on the API and the dashboard", async () => {
    const api = await createTestApi();
    insertJob(api.store, { jobId: "job_unnamed" });
    for (const [method, path] of [
      ["GET", "/jobs?=discrepancy"],
      ["GET", "/reports/reconciliation?from=2026-11-01&to=2026-12-01&=model"],
      ["POST", "/jobs?=1"],
    ] as const) {
      const res = await api.app.request(path, { method, headers: api.bearer(api.tokens.admin) });
      expect(res.status, path).toBe(400);
      const { error } = (await res.json()) as { error: { field: string; message: string } };
      expect(error, path).toMatchObject({ code: "bad_request", field: "query" });
      expect(error.message, path).toContain("no name");
    }
    const page = await api.app.request("/dashboard/discrepancies?=dropped");
    expect(page.status).toBe(400);
    expect(await page.text()).toContain("no name");
    expect((await api.get("/jobs?&limit=5&")).status).toBe(200);
  });
});

// `/reports/workers/1111111111111111111111111111111111111111111` (43 characters of base58: 43
// bytes, no address) answered 200 with a statement of no payouts, where `/jobs?worker=` refuses
// it: a worker or vault mistyped so read as one that earned or held nothing.
describe("an address that is base58 but not 32 bytes", () => {
  it("is a 400 naming it on every route and page that takes one", async () => {
    const api = await createTestApi({ statement: { profile: localnetProfile, graceSeconds: 0 } });
    for (const notAddress of ["1".repeat(43), "z".repeat(44)]) {
      for (const [path, field] of [
        [`/reports/workers/${notAddress}?from=2026-11-01&to=2026-12-01`, "address"],
        [`/reports/statement?from=2026-11-01&to=2026-12-01&vault=${notAddress}`, "vault"],
        [`/reports/account-snapshots?vault=${notAddress}`, "vault"],
      ] as const) {
        const res = await api.get(path);
        expect(res.status, path).toBe(400);
        const { error } = (await res.json()) as { error: { field: string } };
        expect(error.field, path).toBe(field);
      }
      const cookie = await dashboardCookie(api);
      for (const path of [
        `/dashboard/workers/${notAddress}`,
        `/dashboard/statement?vault=${notAddress}`,
      ]) {
        const page = await api.app.request(path, { headers: { cookie } });
        expect(page.status, path).toBe(400);
      }
    }
    const worker = "1".repeat(32);
    expect((await api.get(`/reports/workers/${worker}?from=2026-11-01&to=2026-12-01`)).status).toBe(
      200,
    );
  });
});

// `GET /jobs` and `GET /audit/:id` asked with `Accept: text/csv` (a spreadsheet's download) or
// `text/html` answered JSON 200, where `/reports/*` say the type is not one they answer.
describe("an Accept that refuses JSON on the jobs listing and the audit record", () => {
  it("is a 406 naming accept, as on the reports; JSON, */*, none and q-values still answer", async () => {
    const api = await createTestApi();
    insertJob(api.store, { jobId: "job_accept" });
    const get = (path: string, accept?: string) =>
      api.get(path, "read", accept === undefined ? {} : { accept });
    for (const path of ["/jobs", "/audit/job_accept"]) {
      for (const accept of ["text/csv", "text/html", "application/json;q=0, text/html"]) {
        const res = await get(path, accept);
        expect(res.status, `${path} ${accept}`).toBe(406);
        const { error } = (await res.json()) as { error: { code: string; field: string } };
        expect(error, `${path} ${accept}`).toMatchObject({
          code: "not_acceptable",
          field: "accept",
          message: "Accept: this route answers application/json",
        });
      }
      for (const accept of [undefined, "*/*", "application/json", "text/html, */*;q=0.1"]) {
        expect((await get(path, accept)).status, `${path} ${accept}`).toBe(200);
      }
    }
  });
});

// An unknown `timeZone` was said back whole: 5,000 characters sent, 5,000 in the 400's message.
describe("an unknown time zone of 5,000 characters", () => {
  it("is a 400 naming timeZone that shows the name cut, on the API and the dashboard", async () => {
    const api = await createTestApi();
    const zone = `Mars/${"x".repeat(5000)}`;
    const res = await api.get(
      `/reports/reconciliation?from=2026-11-01&to=2026-12-01&timeZone=${zone}`,
    );
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { field: string; message: string } };
    expect(error.field).toBe("timeZone");
    expect(error.message).toMatch(/^timeZone: no time zone named "Mars\/x+…": give an IANA name/);
    expect(error.message.length).toBeLessThan(200);
    const page = await api.app.request(`/dashboard?timeZone=${zone}`, {
      headers: { cookie: await dashboardCookie(api) },
    });
    expect(page.status).toBe(400);
    const text = await page.text();
    expect(text).toContain("timeZone: no time zone named");
    expect(text).not.toContain("x".repeat(100));
  });
});

// `GET /jobs?from=2026-11-01&timeZone=America/New_York` was a 400 (no such parameter), and so
// was `/reports/discrepancies`: a listing's dates could be read only as UTC days, where the
// reports read them in the zone.
describe("a listing's dates in a time zone", () => {
  it.each(["/jobs", "/reports/discrepancies"])(
    "%s reads from and to as that zone's days, refusing what the reports refuse",
    async (path) => {
      const api = await createTestApi();
      // 02:00 UTC on 1 November is the evening of 31 October in New York (UTC-4 then).
      for (const [jobId, at] of [
        ["job_ny_oct31", "2026-11-01T02:00:00Z"],
        ["job_ny_nov1", "2026-11-01T05:00:00Z"],
      ] as const) {
        insertJob(api.store, { jobId, createdAt: Date.parse(at), verdict: "discrepancy" });
        insertCheck(api.store, jobId, "settlement.split", "fail");
      }
      const ids = async (query: string) => {
        const res = await api.get(`${path}?${query}`);
        expect(res.status, query).toBe(200);
        return ((await res.json()) as { items: { jobId: string }[] }).items.map((i) => i.jobId);
      };
      expect(await ids("from=2026-11-01&to=2026-11-02")).toEqual(["job_ny_nov1", "job_ny_oct31"]);
      const ny = "timeZone=america/new_york";
      expect(await ids(`from=2026-11-01&to=2026-11-02&${ny}`)).toEqual(["job_ny_nov1"]);
      expect(await ids(`from=2026-11-01&${ny}`)).toEqual(["job_ny_nov1"]);
      expect(await ids(`to=2026-11-01&${ny}`)).toEqual(["job_ny_oct31"]);
      expect(await ids(ny)).toHaveLength(2);
      for (const [query, field] of [
        ["from=2026-11-01&to=2026-11-02&timeZone=Mars/Olympus", "timeZone"],
        ["from=2026-11-01&to=2026-11-02T00:00:00Z&timeZone=America/New_York", "to"],
        ["from=2026-11-02&to=2026-11-01&timeZone=America/New_York", "to"],
      ] as const) {
        const listed = await api.get(`${path}?${query}`);
        expect(listed.status, query).toBe(400);
        const reported = await api.get(`/reports/reconciliation?${query}`);
        const { error } = (await listed.json()) as { error: { field: string; message: string } };
        const expected = (await reported.json()) as { error: { message: string } };
        expect(error, query).toMatchObject({ field, message: expected.error.message });
      }
    },
  );
});

// A refused `from` or `to` was said back whole: `GET /jobs?from=` and 5,000 digits answered a
// message of 5,096 characters, and so did the CLI's `--from`, `--to` and `--since`.
describe("a refused instant of 5,000 characters", () => {
  const long = "1".repeat(5000);
  const refused = [
    [`${long}`, /^from: 1+… has 5000 digits: an epoch integer is seconds/],
    [
      `2026-11-01T${long}%200100`,
      /^from: the offset's \+ arrived as a space .* e\.g\. 2026-11-01T1+…%2B0100$/,
    ],
    [`x${long}`, /^from: not a date \(YYYY-MM-DD\)/],
  ] as const;

  it("is a 400 naming the field that shows the value cut, on every route taking from", async () => {
    const api = await createTestApi();
    const worker = "11111111111111111111111111111111";
    for (const path of [
      "/jobs?",
      "/reports/discrepancies?",
      "/reports/reconciliation?to=2026-12-01&",
      `/reports/workers/${worker}?to=2026-12-01&`,
    ]) {
      for (const [value, message] of refused) {
        const res = await api.get(`${path}from=${value}`);
        expect(res.status, path).toBe(400);
        const { error } = (await res.json()) as { error: { field: string; message: string } };
        expect(error.field, path).toBe("from");
        expect(error.message, path).toMatch(message);
        expect(error.message.length, path).toBeLessThan(300);
      }
    }
  });

  it("is refused naming the flag, the value cut, by the CLI's --from, --to and --since", () => {
    const now = Date.parse("2026-12-01T00:00:00Z");
    for (const [flags, shown] of [
      [{ from: long }, /^--from: 1+… has 5000 digits/],
      [{ from: `x${long}` }, /^--from: not a date or ISO 8601 date-time: x1+…$/],
      [{ from: "2026-11-01", to: `x${long}` }, /^--to: not a date or ISO 8601 date-time: x1+…$/],
      [{ since: `x${long}` }, /^--since: not a duration like 24h, 90m or 7d: x1+…$/],
      [{ since: `0${"0".repeat(5000)}h` }, /^--since: must be more than 0 \(at least 1ms\): 0+…$/],
      [{ since: `${"9".repeat(5000)}d` }, /^--since: reaches back before 1970: 9+…$/],
    ] as const) {
      let message = "";
      try {
        windowFromFlags(flags, now);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(shown);
      expect(message.length).toBeLessThan(300);
    }
  });
});
