import { getEventListeners } from "node:events";
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createJobsApiClient, JobsApiError } from "../src/recorder/jobs-api.js";
import { listen } from "./support/recorder-fixtures.js";

/**
 * A jobs API that answers a byte at a time, each within the client's timeout: the timeout was
 * the socket's idle time, so one call could last as long as the operator liked (64 KiB at a byte
 * every 9 s is a week), and the settlement backfill, which waits for every call of its batch,
 * asked about no other job meanwhile: streamed jobs stayed without their settlement and reports
 * called nothing after them final.
 */
describe("a jobs API answering a byte at a time", () => {
  const timers = new Set<NodeJS.Timeout>();
  let url = "";
  let close: () => Promise<void>;
  const body = JSON.stringify({ status: "settled", credits_charged: 8 });
  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      if (req.url?.endsWith("/job_fast")) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(body);
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      let at = 0;
      const next = () => {
        if (at >= body.length) return void res.end();
        res.write(body[at++]);
        const timer = setTimeout(next, 100);
        timers.add(timer);
      };
      next();
      res.on("close", () => {
        at = body.length;
      });
    });
    ({ url, close } = await listen(server));
  });
  afterAll(async () => {
    for (const timer of timers) clearTimeout(timer);
    await close();
  });

  it("is cut at the client's timeout counted from the call, not from the last byte", async () => {
    const ask = createJobsApiClient(`${url}/v1`, { timeoutMs: 600 });
    const started = performance.now();
    const error = await ask("job_slow", "Bearer k").then(
      () => null,
      (e: unknown) => e,
    );
    const took = performance.now() - started;
    expect(error).toBeInstanceOf(JobsApiError);
    expect((error as JobsApiError).retryable).toBe(true);
    // The whole body would take 3.5 s at a byte every 100 ms.
    expect(took).toBeLessThan(2500);
    // An answer within the time is read as ever.
    expect(await ask("job_fast", "Bearer k")).toMatchObject({ status: "settled" });
  });
});

/**
 * The proxy asks the jobs API after every job, all with its one stop signal: a listener added to
 * that signal for each call (and removed at its end) cost more CPU than reading the answer.
 */
describe("jobs API calls sharing one stop signal", () => {
  let url = "";
  let close: () => Promise<void>;
  const held: http.ServerResponse[] = [];
  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      if (req.url?.includes("/job_held")) {
        held.push(res);
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "settled", note: "a\\u0062c" }));
    });
    ({ url, close } = await listen(server));
  });
  afterAll(() => close());

  it("watch it with one listener, and all end at once when it is aborted", async () => {
    const ask = createJobsApiClient(`${url}/v1`, { timeoutMs: 5_000 });
    const stop = new AbortController();
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) => ask(`job_${round}${i}`, "Bearer k", stop.signal)),
      );
      expect(answers.every((a) => a.status === "settled")).toBe(true);
    }
    expect(getEventListeners(stop.signal, "abort").length).toBeLessThanOrEqual(1);
    const waiting = Array.from({ length: 4 }, (_, i) =>
      ask(`job_held${i}`, "Bearer k", stop.signal).catch((e: unknown) => e),
    );
    await vi.waitFor(() => expect(held.length).toBe(4));
    expect(getEventListeners(stop.signal, "abort").length).toBeLessThanOrEqual(1);
    const started = performance.now();
    stop.abort();
    for (const error of await Promise.all(waiting)) {
      expect(error).toBeInstanceOf(JobsApiError);
      expect((error as JobsApiError).message).toBe("jobs API call aborted");
    }
    expect(performance.now() - started).toBeLessThan(1_000);
    // A call made after the stop ends at once too.
    await expect(ask("job_late", "Bearer k", stop.signal)).rejects.toBeInstanceOf(JobsApiError);
  });
});

/**
 * A jobs API answering an error whose body never ends (a 500 page streamed by a balancer, or an
 * operator stalling the audit): each call failed at once, but its connection stayed in use
 * reading that body for good, and once every connection was so held no call was answered again.
 */
describe("a jobs API whose error answers never end", () => {
  let url = "";
  let close: () => Promise<void>;
  const held: http.ServerResponse[] = [];
  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      if (req.url?.includes("/job_err")) {
        res.writeHead(500, { "content-type": "text/html" });
        res.write("<html>");
        held.push(res);
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "settled" }));
    });
    ({ url, close } = await listen(server));
  });
  afterAll(() => {
    for (const res of held) res.destroy();
    return close();
  });

  it("leave the client's connections free for the next calls", async () => {
    const ask = createJobsApiClient(`${url}/v1`, { timeoutMs: 400, maxSockets: 2 });
    for (const id of ["job_err1", "job_err2"]) {
      await expect(ask(id, "Bearer k")).rejects.toMatchObject({ status: 500, retryable: true });
    }
    expect(await ask("job_fine", "Bearer k")).toMatchObject({ status: "settled" });
  });
});
