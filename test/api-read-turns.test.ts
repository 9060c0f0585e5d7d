import { describe, expect, it } from "vitest";
import { SESSION_COOKIE } from "../src/dashboard/routes.js";
import { createReadGate } from "../src/read-gate.js";
import { createTestApi } from "./support/audit-api-app.js";
import { DASHBOARD_NOW } from "./support/dashboard-fixtures.js";

/**
 * Report readers take turns (src/read-gate.ts): each runs in a turn of the event loop of its
 * own, so a timer (the leader lease's heartbeat) and the proxy's sockets get the loop between
 * any two of them, and the readers beyond the queue are told 503 with when to come back.
 */

const YEAR = "from=2025-11-20&to=2026-11-20&groupBy=day&timeZone=Asia%2FKolkata";

describe("report readers at once", () => {
  it("take turns: a timer due while they wait fires before the last of them is read", async () => {
    const api = await createTestApi({ now: () => DASHBOARD_NOW });
    const answered: number[] = [];
    let answeredWhenTimerFired = -1;
    // Due at once: on a loop that reads every reader in the turn that took them, it fires after
    // all of them.
    setTimeout(() => {
      answeredWhenTimerFired = answered.length;
    }, 0);
    const readers = Array.from({ length: 12 }, (_, i) =>
      Promise.resolve(api.get(`/reports/reconciliation?${YEAR}`)).then((res) => {
        answered.push(i);
        return res.status;
      }),
    );
    expect(await Promise.all(readers)).toEqual(Array(12).fill(200));
    expect(answeredWhenTimerFired).toBeGreaterThanOrEqual(0);
    expect(answeredWhenTimerFired).toBeLessThan(12);
  });

  it("answers the readers beyond the queue 503 busy with Retry-After, and reads the rest", async () => {
    const api = await createTestApi({ readGate: createReadGate({ maxWaiting: 3 }) });
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => api.get(`/reports/reconciliation?${YEAR}`)),
    );
    const statuses = answers.map((res) => res.status);
    // One runs, three wait; the six after them are refused as they come.
    expect(statuses.filter((s) => s === 200)).toHaveLength(4);
    const refused = answers.filter((res) => res.status === 503);
    expect(refused).toHaveLength(6);
    for (const res of refused) {
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("busy");
    }
    // Once they were read, a reader is taken again.
    expect((await api.get(`/reports/reconciliation?${YEAR}`)).status).toBe(200);
    // A reader without a token is told so even when the queue is full: a 401 is no reason to
    // come back.
    const [, , , , tokenless] = await Promise.all([
      ...Array.from({ length: 4 }, () => api.get(`/reports/reconciliation?${YEAR}`)),
      api.app.request(`/reports/reconciliation?${YEAR}`),
    ]);
    expect(tokenless?.status).toBe(401);
    expect(tokenless?.headers.get("retry-after")).toBeNull();
  });

  it("answers a dashboard page beyond the queue with a page saying when to reload", async () => {
    const api = await createTestApi({
      now: () => DASHBOARD_NOW,
      readGate: createReadGate({ maxWaiting: 0 }),
    });
    const signIn = await api.app.request("/dashboard/sign-in", {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: "http://localhost",
      },
      body: new URLSearchParams({ token: api.tokens.read, next: "/dashboard" }).toString(),
    });
    const id = new RegExp(`${SESSION_COOKIE}=([^;]+)`).exec(
      signIn.headers.get("set-cookie") ?? "",
    )?.[1];
    const cookie = `${SESSION_COOKIE}=${id}`;
    const [first, second] = await Promise.all([
      api.app.request("/dashboard", { headers: { cookie } }),
      api.app.request("/dashboard", { headers: { cookie } }),
    ]);
    expect(first?.status).toBe(200);
    expect(second?.status).toBe(503);
    expect(second?.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
    expect(second?.headers.get("content-type")).toMatch(/text\/html/);
    expect(await second?.text()).toMatch(/Reload the page in \d+ seconds?/);
    // The proxy's and ingest's paths, probes and the sign-in never wait behind readers.
    expect((await api.app.request("/healthz")).status).toBe(200);
  });
});
