import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CliProcess, startCli, startServe, until } from "./support/service-process.js";

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

  it("warns once at start when a mainnet profile takes chain facts from one endpoint", async () => {
    const warning = (l: Record<string, unknown>) =>
      typeof l.msg === "string" && l.msg.startsWith("RPC_QUORUM is 1");
    const start = (extra: Record<string, string>) => {
      const db = join(mkdtempSync(join(tmpdir(), "decentral-audit-log-")), "audit.db");
      const args = ["serve", "--port", "0", "--db", db, "--profile", "decentral-mainnet"];
      return startCli(args, { WORKERS: "1", LEDGER_POLL_MS: "0", ...extra });
    };
    serve = start({ SOLANA_RPC_URLS: "http://127.0.0.1:9" });
    await serve.waitForLog((l) => l.msg === "decentral-audit listening");
    expect(serve.logs.filter(warning)).toHaveLength(1);
    serve.child.kill("SIGTERM");
    await serve.exited;
    serve = start({ SOLANA_RPC_URLS: "http://127.0.0.1:9,http://127.0.0.1:10", RPC_QUORUM: "2" });
    await serve.waitForLog((l) => l.msg === "decentral-audit listening");
    expect(serve.logs.filter(warning)).toHaveLength(0);
  });
});

// PROXY_REQUIRE_TOKEN on a store holding no ingest or admin token refused every proxied job 401
// without a word at start: it read as a proxy fault, not as the token still to be created.
describe("serve's log with PROXY_REQUIRE_TOKEN", () => {
  it("warns at start when no live token opens the proxy", async () => {
    const warning = (l: Record<string, unknown>) =>
      typeof l.msg === "string" && l.msg.startsWith("PROXY_REQUIRE_TOKEN is on but no live");
    const db = join(mkdtempSync(join(tmpdir(), "decentral-audit-log-")), "audit.db");
    const env = { WORKERS: "1", LEDGER_POLL_MS: "0", SOLANA_RPC_URLS: "http://127.0.0.1:9" };
    serve = startCli(["serve", "--port", "0", "--db", db], { ...env, PROXY_REQUIRE_TOKEN: "1" });
    await serve.waitForLog((l) => l.msg === "decentral-audit listening");
    expect(serve.logs.filter(warning)).toHaveLength(1);
    serve.child.kill("SIGTERM");
    await serve.exited;
    const created = startCli(["tokens", "create", "--role", "ingest", "--name", "b", "--db", db]);
    await created.exited;
    serve = startCli(["serve", "--port", "0", "--db", db], { ...env, PROXY_REQUIRE_TOKEN: "1" });
    await serve.waitForLog((l) => l.msg === "decentral-audit listening");
    expect(serve.logs.filter(warning)).toHaveLength(0);
  });
});

// `serve --workers 2` on a port another program holds logged the worker's refusal with its
// stack trace, where one process says the same in one line.
describe("serve's log when a worker cannot listen", () => {
  it("names the cause without a stack trace", async () => {
    const { createServer } = await import("node:net");
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    try {
      const port = String((taken.address() as { port: number }).port);
      const db = join(mkdtempSync(join(tmpdir(), "decentral-audit-log-")), "audit.db");
      serve = startCli(["serve", "--port", port, "--db", db], {
        WORKERS: "2",
        LEDGER_POLL_MS: "0",
        SOLANA_RPC_URLS: "http://127.0.0.1:9",
      });
      expect(await serve.exited).toBe(2);
      const said = JSON.stringify(serve.logs) + serve.stderr();
      expect(said).toContain("is already in use");
      expect(said).not.toMatch(/"stack"|\n\s+at /);
    } finally {
      taken.close();
    }
  });
});

// `serve --workers 3` with PROXY_REQUIRE_TOKEN and no token said the warning three times, once
// per worker (and again at each restart): the primary says it once.
describe("serve's log with PROXY_REQUIRE_TOKEN and workers", () => {
  it("warns once, from the primary, not from each worker", async () => {
    const warning = (l: Record<string, unknown>) =>
      typeof l.msg === "string" && l.msg.startsWith("PROXY_REQUIRE_TOKEN is on but no live");
    const db = join(mkdtempSync(join(tmpdir(), "decentral-audit-log-")), "audit.db");
    serve = startCli(["serve", "--port", "0", "--db", db], {
      WORKERS: "2",
      LEDGER_POLL_MS: "0",
      SOLANA_RPC_URLS: "http://127.0.0.1:9",
      PROXY_REQUIRE_TOKEN: "1",
    });
    await serve.waitForLog((l) => l.msg === "serve cluster ready");
    // Each process writes its own lines: the primary's "ready" can be read before a worker's
    // "listening", and each worker's warning came before its own "listening".
    const listening = () => serve?.logs.filter((l) => l.msg === "decentral-audit listening") ?? [];
    await until(() => listening().length >= 2, 10_000);
    expect(listening()).toHaveLength(2);
    expect(serve.logs.filter(warning)).toHaveLength(1);
  });
});
