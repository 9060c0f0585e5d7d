import { parse } from "csv-parse/sync";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { jobs } from "../src/db/schema.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { reopenJobs } from "../src/store/job-queue.js";
import { reportsStore } from "../src/store/reports.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createTestApi } from "./support/audit-api-app.js";
import { insertJob } from "./support/job-rows.js";
import { createTestStore } from "./support/store.js";

const day = (d: number, h = 12) => Date.UTC(2026, 10, d, h);

type Report = {
  dataCompleteUntil: string;
  groups: Record<string, string | number | null>[];
  totals: Record<string, string | number>;
};

/** A small book of jobs whose figures are known by construction. */
async function seed() {
  const api = await createTestApi({ now: () => day(20) });
  const s = api.store;
  insertJob(s, { jobId: "a1", createdAt: day(1, 0), model: "qwen3-8b", chargedUnits: 80_000n });
  insertJob(s, {
    jobId: "a2",
    createdAt: day(1, 23),
    model: "llama, 70b",
    chargedUnits: 400_000n,
    escrowedUnits: 4_000_000n,
  });
  insertJob(s, {
    jobId: "b1",
    createdAt: day(2),
    model: "qwen3-8b",
    verdict: "discrepancy",
    chargedUnits: 120_000n,
    workerPaidUnits: 50_000n,
    treasuryPaidUnits: 20_000n,
    refundedUnits: 200_000n,
  });
  insertJob(s, { jobId: "b2", createdAt: day(2, 13), model: "qwen3-8b", verdict: "pending" });
  insertJob(s, {
    jobId: "c1",
    createdAt: day(3),
    model: null,
    verdict: "dropped",
    chargedUnits: 0n,
    escrowedUnits: 400_000n,
    workerPaidUnits: 0n,
    treasuryPaidUnits: 0n,
    refundedUnits: 400_000n,
  });
  // Outside the period [Nov 1, Nov 3): never counted.
  insertJob(s, { jobId: "z1", createdAt: day(3, 0), chargedUnits: 999_999n });
  return api;
}

describe("GET /reports/reconciliation", () => {
  it("groups by day with exact totals and the instant before which data is final", async () => {
    const { get } = await seed();
    const res = await get("/reports/reconciliation?from=2026-11-01&to=2026-11-03&groupBy=day");
    expect(res.status).toBe(200);
    const body = (await res.json()) as Report;
    expect(
      body.groups.map((g) => [g.group, g.jobs, g.verified, g.pending, g.discrepancies]),
    ).toEqual([
      ["2026-11-01", 2, 2, 0, 0],
      ["2026-11-02", 2, 0, 1, 1],
    ]);
    // a1 + a2 + b1 charged; b2 has no amounts yet.
    expect(body.totals.chargedUnits).toBe("600000");
    expect(body.totals.chargedUsdc).toBe("0.600000");
    expect(body.totals.escrowedUnits).toBe(String(400_000 + 4_000_000 + 400_000));
    // b1 leaks: escrowed 400000 - 50000 - 20000 - 200000 = 130000.
    expect(body.totals.unaccountedUnits).toBe("130000");
    expect(body.totals.unaccountedUsdc).toBe("0.130000");
    expect(body.totals.feesLamports).toBe("30000");
    expect(body.dataCompleteUntil).toBe(new Date(day(2, 13)).toISOString());
  });

  it("calls figures final only up to a few seconds before now, though every job is final", async () => {
    // A receipt committing as the report is read may carry a time just before it.
    const api = await createTestApi({ now: () => day(20) });
    insertJob(api.store, { jobId: "f1", createdAt: day(19), chargedUnits: 80_000n });
    const res = await api.get("/reports/reconciliation?from=2026-11-19&to=2026-11-21");
    const body = (await res.json()) as Report;
    expect(body.dataCompleteUntil).toBe(new Date(day(20) - 5_000).toISOString());
  });

  it("never calls final a part whose sums missed a job that turned final meanwhile", async () => {
    const store = createTestStore();
    insertJob(store, { jobId: "late", createdAt: day(19), verdict: "pending" });
    let reads = 0;
    // The verifier decides the job while the report is being built.
    const clock = () => {
      reads += 1;
      if (reads === 1) {
        store.db
          .update(jobs)
          .set({ verdict: "verified", chargedUnits: 80_000n, verdictAt: day(20) })
          .where(eq(jobs.jobId, "late"))
          .run();
      }
      return day(20);
    };
    const report = await reconciliationReport(
      store,
      { from: day(18), to: day(21), groupBy: "day" },
      clock,
    );
    const summed = report.totals.jobs === 1 && report.totals.verified === 1;
    // Either the job is after the final instant, or it is summed as it now stays.
    expect(report.dataCompleteUntil <= day(19) || summed).toBe(true);
  });

  it("groups by model, with a job of unknown model in its own group", async () => {
    const { get } = await seed();
    const res = await get("/reports/reconciliation?from=2026-11-01&to=2026-11-04&groupBy=model");
    const body = (await res.json()) as Report;
    expect(body.groups.map((g) => [g.group, g.jobs])).toEqual([
      [null, 1],
      ["llama, 70b", 1],
      ["qwen3-8b", 4],
    ]);
    expect(body.totals.dropped).toBe(1);
  });

  it("gives CSV whose totals row equals the JSON totals exactly", async () => {
    const { get } = await seed();
    for (const groupBy of ["day", "model", "worker", "key"]) {
      const query = `from=2026-11-01T00:00:00Z&to=2026-11-04&groupBy=${groupBy}`;
      const json = (await (await get(`/reports/reconciliation?${query}`)).json()) as Report;
      const csvRes = await get(`/reports/reconciliation?${query}&format=csv`);
      expect(csvRes.headers.get("content-type")).toMatch(/^text\/csv/);
      const text = await csvRes.text();
      expect(text.endsWith("\r\n")).toBe(true);
      const rows = parse(text, { columns: true }) as Record<string, string>[];
      const totals = rows.at(-1)!;
      expect(totals.kind).toBe("total");
      for (const [key, value] of Object.entries(json.totals))
        expect(totals[key]).toBe(String(value));
      const groups = rows.filter((r) => r.kind === "group");
      expect(groups.map((g) => g.group)).toEqual(json.groups.map((g) => g.group ?? ""));
    }
  });

  it("answers CSV to Accept: text/csv", async () => {
    const { get } = await seed();
    const res = await get("/reports/reconciliation?from=2026-11-01&to=2026-11-04", "read", {
      accept: "text/csv",
    });
    expect(await res.text()).toMatch(/^kind,group,jobs,verified,/);
  });

  it.each([
    ["text/csv", "csv"],
    ["TEXT/CSV", "csv"],
    ["text/csv;q=0, application/json", "json"],
    ["application/json;q=0.5, text/csv;q=0.9", "csv"],
    ["application/json, text/csv", "json"],
    ["text/csv, application/json", "json"],
    ["text/*, application/json;q=0.1", "csv"],
    ["text/csv;q=0.5, */*", "json"],
    ["*/*", "json"],
    ["application/json;q=0, */*;q=0.1", "csv"],
  ])("reads Accept: %s as asking for %s, by q-value, JSON on a tie", async (accept, format) => {
    const { get } = await seed();
    const res = await get("/reports/reconciliation?from=2026-11-01&to=2026-11-04", "read", {
      accept,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(format === "csv" ? /^text\/csv/ : /json/);
    // The same URL answers by Accept, so a cache must key on it.
    expect(res.headers.get("vary")).toMatch(/\baccept\b/i);
  });

  it("answers 406 on every report route to an Accept that refuses every type it has", async () => {
    const { get } = await createTestApi({
      now: () => day(20),
      statement: { profile: localnetProfile, graceSeconds: 0 },
    });
    const routes = [
      "/reports/reconciliation?from=2026-11-01&to=2026-11-04",
      "/reports/statement?from=2026-11-01&to=2026-11-04",
      "/reports/discrepancies",
      "/reports/workers/11111111111111111111111111111111?from=2026-11-01&to=2026-11-04",
      "/reports/account-snapshots",
    ];
    for (const route of routes) {
      for (const accept of ["image/png", "application/json;q=0"]) {
        const res = await get(route, "read", { accept });
        expect(res.status, `${route} ${accept}`).toBe(406);
        const body = (await res.json()) as { error: { code: string; field: string } };
        expect(body.error).toMatchObject({ code: "not_acceptable", field: "accept" });
      }
      expect((await get(route, "read", { accept: "image/png, */*;q=0.1" })).status, route).toBe(
        200,
      );
    }
    // A JSON-only report is not answered to a client that takes CSV alone.
    expect((await get("/reports/discrepancies", "read", { accept: "text/csv" })).status).toBe(406);
  });

  it("quotes a model name holding a comma as RFC 4180 says", async () => {
    const { get } = await seed();
    const res = await get(
      "/reports/reconciliation?from=2026-11-01&to=2026-11-04&groupBy=model&format=csv",
    );
    expect(await res.text()).toContain('\r\ngroup,"llama, 70b",1,');
  });

  it("writes a group name that starts like a spreadsheet formula as text", async () => {
    const api = await seed();
    insertJob(api.store, { jobId: "f1", createdAt: day(2), model: '=HYPERLINK("http://x","y")' });
    const res = await api.get(
      "/reports/reconciliation?from=2026-11-01&to=2026-11-04&groupBy=model&format=csv",
    );
    const rows = parse(await res.text()) as string[][];
    expect(rows.map((r) => r[1])).toContain(`'=HYPERLINK("http://x","y")`);
  });

  it("writes a group name led by spaces, a full-width sign or holding a semicolon as text", async () => {
    const api = await seed();
    const models = [" =1+1", '\uff1dHYPERLINK("http://x")', "\uff20SUM(1)", "llama;70b"];
    models.forEach((model, i) => {
      insertJob(api.store, { jobId: `g${i}`, createdAt: day(2), model });
    });
    const res = await api.get(
      "/reports/reconciliation?from=2026-11-01&to=2026-11-04&groupBy=model&format=csv",
    );
    const csv = await res.text();
    const groups = (parse(csv) as string[][]).map((r) => r[1]);
    expect(groups).toEqual(
      expect.arrayContaining([" =1+1", ...models.slice(1, 3)].map((m) => `'${m}`)),
    );
    expect(csv).toContain(',"llama;70b",');
  });

  it.each([
    ["to=2026-11-04", "from"],
    ["from=2026-11-01", "to"],
    ["from=yesterday&to=2026-11-04", "from"],
    ["from=2026-02-30&to=2026-11-04", "from"],
    ["from=2026-11-04&to=2026-11-01", "to"],
    ["from=2026-11-01&to=2026-11-04&groupBy=hour", "groupBy"],
    ["from=2026-11-01&to=2026-11-04&format=xml", "format"],
  ])("rejects %s with a 400 naming %s", async (query, field) => {
    const { get } = await seed();
    const res = await get(`/reports/reconciliation?${query}`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; field: string; message: string } };
    expect(body.error.code).toBe("validation_failed");
    expect(body.error.field).toBe(field);
    expect(body.error.message.startsWith(`${field}:`)).toBe(true);
  });
});

describe("GET /reports/workers/:address", () => {
  it.each(["..%2F..", "not-an-address", "0OIl111111111111111111111111111111111111"])(
    "answers 400 naming address for %s, not an empty statement",
    async (address) => {
      const { get } = await seed();
      const res = await get(`/reports/workers/${address}?from=2026-11-01&to=2026-11-30`);
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { field: string } };
      expect(body.error.field).toBe("address");
    },
  );

  it("is the worker's payout statement per day for the period", async () => {
    const { get, store } = await seed();
    insertJob(store, {
      jobId: "w1",
      createdAt: day(2),
      worker: "WorkerTwo1111111111111111111111111111111111",
      workerPaidUnits: 7n,
    });
    const res = await get(
      "/reports/workers/WorkerTwo1111111111111111111111111111111111?from=2026-11-01&to=2026-11-30",
    );
    const body = (await res.json()) as {
      days: { day: string; jobs: number }[];
      totals: Record<string, unknown>;
    };
    expect(body.days).toEqual([expect.objectContaining({ day: "2026-11-02", jobs: 1 })]);
    expect(body.totals.workerPaidUnits).toBe("7");
  });
});

describe("a period written as dates without dashes", () => {
  it("is a 400 naming the field and the date to write, not a report of a day in 1970", async () => {
    const { get } = await seed();
    const res = await get("/reports/reconciliation?from=20261101&to=20261103&format=csv");
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { field: string; message: string } };
    expect(body.error.field).toBe("from");
    expect(body.error.message).toContain("2026-11-01");
  });
});

describe("a report read while a final job is sent back to the verifier", () => {
  it("never calls final a part whose sums show that job open", async () => {
    const store = createTestStore();
    insertJob(store, { jobId: "back", createdAt: day(19), chargedUnits: 80_000n });
    // A reverify (or the ledger's reopen) lands after the final instant is read and before the
    // sums are: the sums show the job open, its figures about to be judged again.
    const module = reportsStore(store);
    const sums = module.sumsWithRejudging;
    module.sumsWithRejudging = async (query) => {
      store.db.update(jobs).set({ verdict: "pending" }).where(eq(jobs.jobId, "back")).run();
      return sums(query);
    };
    const report = await reconciliationReport(
      store,
      { from: day(18), to: day(21), groupBy: "day" },
      () => day(20),
    );
    expect(report.totals).toMatchObject({ jobs: 1, pending: 1, verified: 0 });
    expect(report.dataCompleteUntil).toBeLessThanOrEqual(day(19));
  });

  it("counts it once: verified in the sums, or judged again beside them, never both", async () => {
    const store = createTestStore();
    insertJob(store, { jobId: "back", createdAt: day(19), chargedUnits: 80_000n });
    // New evidence sends the job back once the sums are read.
    const module = reportsStore(store);
    const sums = module.groupSums;
    module.groupSums = async (query) => {
      const read = await sums(query);
      reopenJobs(store, { jobIds: ["back"] }, day(20));
      return read;
    };
    const report = await reconciliationReport(
      store,
      { from: day(18), to: day(21), groupBy: "day" },
      () => day(20),
    );
    const { verified, pending } = report.totals;
    expect(verified + report.rejudging.byPreviousVerdict.verified).toBe(1);
    expect(report.rejudging.jobs).toBeLessThanOrEqual(pending);
  });
});

describe("a period whose offset's + was sent unencoded", () => {
  it("is a 400 that says the + arrived as a space and how to send it", async () => {
    const { get } = await seed();
    const res = await get("/reports/reconciliation?from=2026-11-01T00:00:00+01:00&to=2026-11-03");
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { field: string; message: string } };
    expect(body.error.field).toBe("from");
    expect(body.error.message).toContain("%2B01:00");
  });
});

// A CSV saved from the API held figures alone: a finance user could not tell which period it
// covered, nor whether its last days were still moving (the JSON says both).
describe("the reconciliation CSV says what it covers", () => {
  it("ends every row with the period and dataCompleteUntil of the JSON, the header first", async () => {
    const { get } = await seed();
    const query = "from=2026-11-01T01:00:00%2B01:00&to=2026-11-03&groupBy=model";
    const json = (await (await get(`/reports/reconciliation?${query}`)).json()) as Report & {
      from: string;
      to: string;
      generatedAt: string;
    };
    const csv = await (await get(`/reports/reconciliation?${query}&format=csv`)).text();
    const rows = parse(csv, { columns: true }) as Record<string, string>[];
    expect(rows.length).toBe(json.groups.length + 1);
    for (const row of rows) {
      expect(row).toMatchObject({
        from: "2026-11-01T00:00:00.000Z",
        to: "2026-11-03T00:00:00.000Z",
        groupBy: "model",
        timeZone: "UTC",
        generatedAt: json.generatedAt,
        dataCompleteUntil: json.dataCompleteUntil,
      });
    }
    expect(json.dataCompleteUntil).toBe(new Date(day(2, 13)).toISOString());
    // The figures keep their places: the period columns come after the last figure, and
    // `timeZone`, added after them, comes last, so a reader of `generatedAt` or
    // `dataCompleteUntil` by position still reads it.
    const header = csv.split("\r\n")[0]?.split(",") ?? [];
    expect(header.slice(0, 3)).toEqual(["kind", "group", "jobs"]);
    expect(header.slice(-6)).toEqual([
      "from",
      "to",
      "groupBy",
      "generatedAt",
      "dataCompleteUntil",
      "timeZone",
    ]);
  });
});
