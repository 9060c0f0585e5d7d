import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { handleError } from "../src/api/error-handler.js";

/** An app whose one route throws `error`, answered by the project's error handler. */
function throwing(error: Error) {
  const app = new Hono();
  app.get("/x", () => {
    throw error;
  });
  app.onError(handleError);
  return app;
}

describe("errors a route did not expect", () => {
  it("answers 503 store_unavailable with retry-after when the database is away or locked", async () => {
    const gone = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), {
      code: "ECONNREFUSED",
    });
    const shuttingDown = Object.assign(new Error("terminating connection"), { code: "57P01" });
    const busy = Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
    // A receipt the writer gave up on while the disk was full: nothing of the request is kept.
    const full = Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
    const io = Object.assign(new Error("disk I/O error"), { code: "SQLITE_IOERR_WRITE" });
    // Every connection slot of PostgreSQL held: a token not seen yet was checked with a query
    // that failed so, and an ingest client retrying only on 503 lost its receipt to a 500.
    const noSlot = Object.assign(new Error("sorry, too many clients already"), { code: "53300" });
    const wrapped = new Error("Failed query: select 1", { cause: noSlot });
    for (const error of [gone, shuttingDown, busy, full, io, noSlot, wrapped]) {
      const response = await throwing(error).request("/x");
      expect(response.status, error.message).toBe(503);
      expect(response.headers.get("retry-after")).toBe("1");
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
        "store_unavailable",
      );
    }
  });

  it("answers anything else 500 internal, saying nothing of it", async () => {
    // A statement timeout would time out again, and a missing file is no database away.
    const timedOut = Object.assign(new Error("canceling statement"), { code: "57014" });
    const missing = Object.assign(new Error("ENOENT: no such file"), { code: "ENOENT" });
    for (const error of [timedOut, missing]) {
      expect((await throwing(error).request("/x")).status, error.message).toBe(500);
    }
    const response = await throwing(new Error("secret detail")).request("/x");
    expect(response.status).toBe(500);
    const text = await response.text();
    expect(text).toContain('"internal"');
    expect(text).not.toContain("secret detail");
  });
});
