import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CliProcess, startServe } from "./support/service-process.js";

let serve: CliProcess | null = null;
afterEach(async () => {
  serve?.child.kill("SIGTERM");
  await serve?.exited;
  serve = null;
});

describe("serve's log", () => {
  it("writes a request's line with nothing else to push it out, though request lines are gathered", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "decentral-audit-log-")), "audit.db");
    const started = await startServe(db, { SOLANA_RPC_URLS: "http://127.0.0.1:9" });
    serve = started;
    expect((await fetch(`${started.url}/healthz`)).status).toBe(200);
    // Gathered for at most 200 ms, then written, with nothing else to push it out.
    const line = await started.waitForLog(
      (l) => l.msg === "request" && l.path === "/healthz",
      2000,
    );
    expect(line).toMatchObject({ method: "GET", status: 200 });
  });
});
