import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { describe, expect, it } from "vitest";
import { SESSION_COOKIE } from "../src/dashboard/routes.js";
import { createReadGate, type ReadGate } from "../src/read-gate.js";
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

  it("judges a reader's token before it takes a place: a flood of wrong tokens leaves every place to readers with the right one", async () => {
    const api = await createTestApi({ readGate: createReadGate({ maxWaiting: 3 }) });
    const wrong = Array.from({ length: 20 }, () =>
      api.app.request(`/reports/reconciliation?${YEAR}`, {
        headers: { authorization: "Bearer da_not_a_token" },
      }),
    );
    // Of the role that may not read (ingest): told so at once too.
    const ingest = api.get(`/reports/reconciliation?${YEAR}`, "ingest");
    const right = Array.from({ length: 4 }, () => api.get(`/reports/reconciliation?${YEAR}`));
    const answers = await Promise.all([...wrong, ingest, ...right]);
    expect(answers.slice(0, 20).map((res) => res.status)).toEqual(Array(20).fill(401));
    expect(answers[20]?.status).toBe(403);
    // One runs, three wait: none of them was refused as busy.
    expect(answers.slice(21).map((res) => res.status)).toEqual(Array(4).fill(200));
    const metrics = await (await api.get("/metrics", "admin")).text();
    expect(metrics).toMatch(/^decentral_audit_readers_turned_away_total\{reason="busy"\} 0$/m);
  });

  it("lets a reader whose client hung up while it waited leave its place, unread, and counts it on /metrics", async () => {
    const gate = createReadGate({ maxWaiting: 64 });
    let begun = 0;
    // The gate as the app uses it, counting the readers whose work began.
    const counting: ReadGate = {
      run: (work, signal) =>
        gate.run(() => {
          begun++;
          return work();
        }, signal),
      retryAfterSeconds: () => gate.retryAfterSeconds(),
      stats: () => gate.stats(),
    };
    const api = await createTestApi({ readGate: counting });
    const server = serve({ fetch: api.app.fetch, port: 0, hostname: "127.0.0.1" });
    try {
      await new Promise<void>((resolve) => server.once("listening", () => resolve()));
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      // A reader holding the turn.
      let release = () => {};
      const holding = gate.run(() => new Promise<void>((resolve) => (release = resolve)));
      const clients = Array.from({ length: 5 }, () => new AbortController());
      const readers = clients.map((client) =>
        fetch(`${base}/reports/reconciliation?${YEAR}`, {
          headers: api.bearer(api.tokens.read),
          signal: client.signal,
        }).catch((error: unknown) => (error as Error).name),
      );
      await expect.poll(() => gate.stats().waiting, { timeout: 5_000 }).toBe(5);
      for (const client of clients) client.abort();
      expect(await Promise.all(readers)).toEqual(Array(5).fill("AbortError"));
      await expect.poll(() => gate.stats().waiting, { timeout: 5_000 }).toBe(0);
      expect(gate.stats().turnedAway).toEqual({ busy: 0, hung_up: 5 });
      release();
      await holding;
      // The next reader is read at once, and none of the five was.
      const next = await fetch(`${base}/reports/reconciliation?${YEAR}`, {
        headers: api.bearer(api.tokens.read),
      });
      expect(next.status).toBe(200);
      expect(begun).toBe(1);
      const metrics = await (
        await fetch(`${base}/metrics`, { headers: api.bearer(api.tokens.admin) })
      ).text();
      expect(metrics).toMatch(/^decentral_audit_readers_turned_away_total\{reason="hung_up"\} 5$/m);
      expect(metrics).toMatch(/^decentral_audit_readers\{state="waiting"\} 0$/m);
    } finally {
      const closed = new Promise((resolve) => server.close(resolve));
      (server as import("node:http").Server).closeAllConnections();
      await closed;
    }
  });
});
