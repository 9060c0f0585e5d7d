import { describe, expect, it } from "vitest";
import { localnetProfile } from "../src/verify/profiles.js";
import { createTestApi } from "./support/audit-api-app.js";
import { insertCheck, insertJob } from "./support/job-rows.js";
import { address } from "./support/recorder-fixtures.js";

type Page = {
  items: { jobId: string; failingChecks?: { name: string }[] }[];
  nextCursor: string | null;
};

async function walk(
  get: (path: string) => Response | Promise<Response>,
  path: string,
  between?: (n: number) => void,
) {
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let n = 0; n < 100; n++) {
    const sep = path.includes("?") ? "&" : "?";
    const res = await get(cursor ? `${path}${sep}cursor=${cursor}` : path);
    expect(res.status).toBe(200);
    const page = (await res.json()) as Page;
    seen.push(...page.items.map((i) => i.jobId));
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
    between?.(n);
  }
  return seen;
}

describe("GET /jobs", () => {
  it("keeps pages stable while new jobs arrive: no job repeated or skipped", async () => {
    const api = await createTestApi();
    const t0 = Date.UTC(2026, 10, 1);
    // Ties on created_at on purpose: the job id breaks them.
    for (let i = 0; i < 25; i++)
      insertJob(api.store, {
        jobId: `job_${String(i).padStart(2, "0")}`,
        createdAt: t0 + Math.floor(i / 3) * 1000,
      });
    let added = 0;
    const seen = await walk(api.get, "/jobs?limit=4", () => {
      insertJob(api.store, { jobId: `new_${added++}`, createdAt: t0 + 1_000_000 + added });
      // A late receipt in the past, behind the pages not yet read: it shows up once, in order.
      insertJob(api.store, { jobId: `late_${added}`, createdAt: t0 - 1000 });
    });
    const original = Array.from({ length: 25 }, (_, i) => `job_${String(i).padStart(2, "0")}`);
    expect(seen.filter((id) => id.startsWith("job_"))).toEqual([...original].reverse());
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.filter((id) => id.startsWith("new_"))).toEqual([]);
  });

  it("walks oldest first with order=asc and filters by verdict, worker, model, key and period", async () => {
    const api = await createTestApi();
    const t0 = Date.UTC(2026, 10, 1);
    const [w1, w2] = [address(), address()];
    insertJob(api.store, {
      jobId: "j1",
      createdAt: t0,
      verdict: "discrepancy",
      model: "m1",
      worker: w1,
      keyFingerprint: "00000000000000a1",
    });
    insertJob(api.store, {
      jobId: "j2",
      createdAt: t0 + 1,
      verdict: "verified",
      model: "m1",
      worker: w2,
      keyFingerprint: "00000000000000a1",
    });
    insertJob(api.store, {
      jobId: "j3",
      createdAt: t0 + 2,
      verdict: "verified",
      model: "m2",
      worker: w1,
      keyFingerprint: "00000000000000a2",
    });
    const ids = async (q: string) =>
      ((await (await api.get(`/jobs?${q}`)).json()) as Page).items.map((i) => i.jobId);
    expect(await ids("order=asc")).toEqual(["j1", "j2", "j3"]);
    expect(await ids("verdict=verified")).toEqual(["j3", "j2"]);
    expect(await ids(`worker=${w1}`)).toEqual(["j3", "j1"]);
    expect(await ids("model=m1&key=00000000000000a1")).toEqual(["j2", "j1"]);
    expect(await ids(`from=${t0 + 1}&to=${t0 + 2}`)).toEqual(["j2"]);
  });

  it.each([
    ["limit=0", "limit"],
    ["limit=abc", "limit"],
    ["limit=501", "limit"],
    ["limit=1e2", "limit"],
    ["limit=0x10", "limit"],
    ["limit=", "limit"],
    ["verdict=great", "verdict"],
    ["order=sideways", "order"],
    ["cursor=garbage", "cursor"],
    ["from=2026-13-01", "from"],
    // A mistyped fingerprint would list nothing, read as "no jobs for this key".
    ["key=xyz", "key"],
    ["key=00000000000000A1", "key"],
    // Nor a worker that is no address: it was answered as "no jobs for this worker".
    ["worker=notbase58!", "worker"],
    ["worker=w1", "worker"],
  ])("rejects %s with a 400 naming %s", async (query, field) => {
    const api = await createTestApi();
    const res = await api.get(`/jobs?${query}`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { field: string } };
    expect(body.error.field).toBe(field);
  });
});

describe("GET /reports/discrepancies", () => {
  it("lists exactly the jobs with a failing check, with those checks, filterable by check", async () => {
    const api = await createTestApi();
    const t0 = Date.UTC(2026, 10, 1);
    for (let i = 0; i < 12; i++) {
      const jobId = `job_${i}`;
      insertJob(api.store, {
        jobId,
        createdAt: t0 + i * 1000,
        verdict: i % 4 === 0 ? "discrepancy" : "verified",
      });
      insertCheck(api.store, jobId, "settlement.memo", "pass");
      insertCheck(api.store, jobId, "charge.matches_price", i === 4 ? "skip" : "pass");
      if (i % 4 === 0)
        insertCheck(api.store, jobId, "settlement.split", "fail", { expected: "75", actual: "70" });
      if (i === 8) insertCheck(api.store, jobId, "settlement.worker_paid", "fail");
    }
    const seen = await walk(api.get, "/reports/discrepancies?limit=2&order=asc");
    expect(seen).toEqual(["job_0", "job_4", "job_8"]);
    const page = (await (await api.get("/reports/discrepancies?order=asc")).json()) as Page;
    expect(page.items.map((i) => i.failingChecks?.map((c) => c.name))).toEqual([
      ["settlement.split"],
      ["settlement.split"],
      ["settlement.split", "settlement.worker_paid"],
    ]);
    const byCheck = (await (
      await api.get("/reports/discrepancies?check=settlement.worker_paid")
    ).json()) as Page;
    expect(byCheck.items.map((i) => i.jobId)).toEqual(["job_8"]);
    const inPeriod = (await (
      await api.get(`/reports/discrepancies?from=${t0 + 1}&to=${t0 + 8000}`)
    ).json()) as Page;
    expect(inPeriod.items.map((i) => i.jobId)).toEqual(["job_4"]);
  });
});

describe("GET /reports/discrepancies?check=", () => {
  it.each(["nope", "settlement.worker-paid", "Settlement.split"])(
    "refuses %s, a check the catalogue does not name, with a 400 naming check",
    async (check) => {
      const api = await createTestApi();
      insertJob(api.store, { jobId: "job_d", verdict: "discrepancy" });
      insertCheck(api.store, "job_d", "settlement.split", "fail");
      const res = await api.get(`/reports/discrepancies?check=${check}`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { field: string } }).error.field).toBe("check");
    },
  );
});

describe("GET /reports/discrepancies?verdict=", () => {
  it("lists only the jobs of that verdict, dropped or discrepancy, as the dashboard's filter does", async () => {
    const api = await createTestApi();
    for (const [jobId, verdict] of [
      ["job_d", "discrepancy"],
      ["job_x", "dropped"],
    ] as const) {
      insertJob(api.store, { jobId, verdict });
      insertCheck(api.store, jobId, "settlement.split", "fail");
    }
    const ids = async (q: string) =>
      ((await (await api.get(`/reports/discrepancies?${q}`)).json()) as Page).items.map(
        (i) => i.jobId,
      );
    expect(await ids("order=asc")).toEqual(["job_d", "job_x"]);
    expect(await ids("verdict=dropped")).toEqual(["job_x"]);
    expect(await ids("verdict=discrepancy")).toEqual(["job_d"]);
    const wrong = await api.get("/reports/discrepancies?verdict=verified");
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { error: { field: string } }).error.field).toBe("verdict");
  });
});

describe("a query parameter a route does not take", () => {
  it("is a 400 naming it on every report, listing and audit route, never ignored", async () => {
    const api = await createTestApi({ statement: { profile: localnetProfile, graceSeconds: 0 } });
    insertJob(api.store, { jobId: "job_q" });
    type Operation = { parameters?: { name: string; in: string; required?: boolean }[] };
    const doc = (await (await api.get("/openapi.json")).json()) as {
      paths: Record<string, { get?: Operation }>;
    };
    const values: Record<string, string> = {
      jobId: "job_q",
      address: "11111111111111111111111111111111",
      from: "2026-11-01",
      to: "2026-12-01",
    };
    const routes = Object.entries(doc.paths).filter(
      ([path, item]) => item.get && /^\/(reports|jobs|audit)(\/|$)/.test(path),
    );
    expect(routes.map(([path]) => path)).toEqual(
      expect.arrayContaining([
        "/audit/{jobId}",
        "/jobs",
        "/reports/reconciliation",
        "/reports/discrepancies",
        "/reports/workers/{address}",
        "/reports/statement",
        "/reports/account-snapshots",
      ]),
    );
    for (const [template, item] of routes) {
      const path = template.replace(/\{(\w+)\}/g, (_, name: string) => values[name]!);
      const required = (item.get?.parameters ?? [])
        .filter((p) => p.in === "query" && p.required)
        .map((p) => `${p.name}=${values[p.name]}&`)
        .join("");
      // Each route answers with its documented parameters, and refuses one more.
      expect((await api.get(`${path}?${required}`)).status, template).toBe(200);
      const res = await api.get(`${path}?${required}groupby=model`);
      expect(res.status, template).toBe(400);
      const body = (await res.json()) as {
        error: { code: string; field: string; message: string };
      };
      expect(body.error, template).toMatchObject({ code: "validation_failed", field: "groupby" });
      expect(body.error.message, template).toMatch(/^groupby: unknown query parameter/);
      // A required period bound left out is named and said to be required.
      if (required.includes("from=")) {
        const missing = await api.get(`${path}?${required.replace(/from=[^&]*&/, "")}`);
        expect(missing.status, template).toBe(400);
        const error = ((await missing.json()) as { error: { field: string; message: string } })
          .error;
        expect(error, template).toMatchObject({ field: "from" });
        expect(error.message, template).toMatch(/^from: required: UTC instant/);
      }
    }
    // The operations routes and the reverify action too.
    const reverifier = { reverify: async () => {} } as unknown as NonNullable<
      Parameters<typeof createTestApi>[0]
    >["verifier"];
    const ops = await createTestApi({ verifier: reverifier });
    insertJob(ops.store, { jobId: "job_q" });
    const asAdmin = (path: string, method = "GET") =>
      ops.app.request(path, { method, headers: ops.bearer(ops.tokens.admin) });
    for (const [path, method] of [
      ["/readyz", "GET"],
      ["/metrics", "GET"],
      ["/jobs/job_q/reverify", "POST"],
    ] as const) {
      expect((await asAdmin(path, method)).status, path).toBeLessThan(300);
      const res = await asAdmin(`${path}?groupby=model`, method);
      expect(res.status, path).toBe(400);
      const body = (await res.json()) as { error: { code: string; field: string } };
      expect(body.error, path).toMatchObject({ code: "validation_failed", field: "groupby" });
    }
    // The one the reviewer met: `groupBy` is the parameter, `groupby` was answered by day.
    const res = await api.get(
      "/reports/reconciliation?from=2026-11-01&to=2026-12-01&groupby=model",
    );
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe(
      "groupby: unknown query parameter; this route takes from, to, groupBy, timeZone, format",
    );
  });
});

// An empty cursor answered the first page again where every other empty parameter is refused:
// a pager that sends `cursor=${next}` with nothing in it walked the first page forever.
describe("an empty cursor", () => {
  it.each(["/jobs?cursor=", "/reports/discrepancies?cursor="])(
    "is refused on %s with a 400 naming cursor",
    async (path) => {
      const api = await createTestApi();
      const res = await api.get(path);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { field: string } }).error.field).toBe("cursor");
    },
  );
});

// A cursor keeps only a position: one from `order=desc` sent with `order=asc` walked back over
// the jobs already shown and never reached the older ones, and one from another filter or from
// `/jobs` sent to `/reports/discrepancies` started mid-list, leaving out every job before it,
// each answered 200 as a next page.
describe("a cursor from another query", () => {
  it("is a 400 naming cursor, and the cursor still continues its own query", async () => {
    const api = await createTestApi();
    for (let i = 0; i < 6; i++) {
      insertJob(api.store, {
        jobId: `job_c${i}`,
        verdict: i % 2 ? "discrepancy" : "dropped",
        createdAt: Date.UTC(2026, 10, 1) + i * 3600_000,
      });
      insertCheck(api.store, `job_c${i}`, "settlement.split", "fail");
    }
    const cursorOf = async (path: string) => {
      const res = await api.get(path);
      expect(res.status, path).toBe(200);
      return ((await res.json()) as Page).nextCursor ?? "";
    };
    const jobs = await cursorOf("/jobs?limit=2");
    const flagged = await cursorOf("/reports/discrepancies?limit=2&from=2026-11-01");
    for (const path of [
      `/jobs?limit=2&order=asc&cursor=${jobs}`,
      `/jobs?limit=2&verdict=dropped&cursor=${jobs}`,
      `/jobs?limit=2&from=2026-11-01&cursor=${jobs}`,
      `/reports/discrepancies?limit=2&cursor=${jobs}`,
      `/reports/discrepancies?limit=2&from=2026-11-01&verdict=dropped&cursor=${flagged}`,
      `/reports/discrepancies?limit=2&from=2026-10-01&cursor=${flagged}`,
      `/jobs?limit=2&from=2026-11-01&cursor=${flagged}`,
    ]) {
      const res = await api.get(path);
      expect(res.status, path).toBe(400);
      const { error } = (await res.json()) as { error: { field: string; message: string } };
      expect(error.field, path).toBe("cursor");
      expect(error.message, path).toContain("another query");
    }
    // A page size is no filter: a pager may change it between pages.
    const next = await api.get(`/jobs?limit=3&cursor=${jobs}`);
    expect(((await next.json()) as Page).items.map((i) => i.jobId)).toEqual([
      "job_c3",
      "job_c2",
      "job_c1",
    ]);
    expect(
      await walk(api.get, "/reports/discrepancies?limit=2&from=2026-11-01&verdict=dropped"),
    ).toEqual(["job_c4", "job_c2", "job_c0"]);
  });

  // A position no page can end at (a time before 1970, no job id), sent with the right
  // query's digest, was answered 200 with an empty page: a listing that seemed to end there.
  it("is a 400 naming cursor when its position is no job's", async () => {
    const api = await createTestApi();
    insertJob(api.store, { jobId: "job_c0", createdAt: Date.UTC(2026, 10, 1) });
    insertJob(api.store, { jobId: "job_c1", createdAt: Date.UTC(2026, 10, 2) });
    const first = await api.get("/jobs?limit=1");
    const cursor = ((await first.json()) as Page).nextCursor ?? "";
    const [, , digest] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    const forged = (position: unknown[]) =>
      Buffer.from(JSON.stringify([...position, digest])).toString("base64url");
    for (const position of [
      [-1, "job_c1"],
      [Date.UTC(2026, 10, 2), ""],
      [1.5, "job_c1"],
    ]) {
      const res = await api.get(`/jobs?limit=1&cursor=${forged(position)}`);
      expect(res.status, JSON.stringify(position)).toBe(400);
      expect(((await res.json()) as { error: { field: string } }).error.field).toBe("cursor");
    }
    const next = await api.get(`/jobs?limit=1&cursor=${forged([Date.UTC(2026, 10, 2), "job_c1"])}`);
    expect(((await next.json()) as Page).items.map((i) => i.jobId)).toEqual(["job_c0"]);
  });
});
