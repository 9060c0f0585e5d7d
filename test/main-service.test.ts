import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { loadConfig } from "../src/config.js";
import { AppError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { startService } from "../src/main.js";
import { cliArgv, programModules } from "./support/service-process.js";

const quiet = createLogger({ level: "silent" });

describe("service", () => {
  it("serves /healthz on the configured port and closes cleanly", async () => {
    const config = loadConfig({ DATABASE_URL: ":memory:", PORT: "0", AUDIT_PROFILE: "localnet" });
    const service = await startService(config, quiet);
    const response = await fetch(`${service.url}/healthz`);
    expect(await response.json()).toEqual({ ok: true });
    await service.close();
  });

  it("refuses a port already in use with an error naming it, not a crash", async () => {
    const blocker = createServer().listen(0, "127.0.0.1");
    await once(blocker, "listening");
    const port = (blocker.address() as { port: number }).port;
    const config = loadConfig({ DATABASE_URL: ":memory:", PORT: String(port) });
    const started = startService(config, quiet);
    await expect(started).rejects.toBeInstanceOf(AppError);
    await expect(started).rejects.toThrow(`port ${port}`);
    blocker.close();
  });

  // `HOST=192.0.2.1` (an address of no interface here) said `cannot listen on 192.0.2.1:0:
  // listen EADDRNOTAVAIL`, naming no setting, where a port in use names PORT.
  it("names HOST when it cannot listen on the interface HOST names", async () => {
    const config = loadConfig({ DATABASE_URL: ":memory:", PORT: "0", HOST: "192.0.2.1" });
    const started = startService(config, quiet);
    await expect(started).rejects.toThrow(
      /^cannot listen on 192\.0\.2\.1:0 \(set HOST or --host\): listen EADDRNOTAVAIL/,
    );
    await expect(started).rejects.toMatchObject({ details: { field: "HOST" } });
  });

  it("validates the profile and cron expression before it opens the database or starts anything", async () => {
    const dir = mkdtempSync(join(tmpdir(), "service-"));
    const db = join(dir, "sub", "audit.db");
    const badProfile = loadConfig({ DATABASE_URL: db, PORT: "0", AUDIT_PROFILE: "no-such" });
    await expect(startService(badProfile, quiet)).rejects.toThrow("no-such");
    // A bad cron is named as the configuration is read, and again by a service handed one.
    const cronEnv = { DATABASE_URL: db, PORT: "0", AUDIT_PROFILE: "localnet" };
    expect(() => loadConfig({ ...cronEnv, VERIFY_CRON: "every night" })).toThrow("VERIFY_CRON");
    const badCron = { ...loadConfig(cronEnv), VERIFY_CRON: "every night" };
    await expect(startService(badCron, quiet)).rejects.toThrow("VERIFY_CRON");
    expect(existsSync(db)).toBe(false);
  });

  it("stops what it started when a later step fails, so a failed start does not keep the process alive", () => {
    const dir = mkdtempSync(join(tmpdir(), "service-"));
    const program = programModules();
    const run = spawnSync(
      process.execPath,
      [
        ...program.nodeArgs,
        "-e",
        `import(${JSON.stringify(program.url("main"))}).then(async (m) => {
          const { loadConfig } = await import(${JSON.stringify(program.url("config"))});
          const { createLogger } = await import(${JSON.stringify(program.url("log"))});
          const blocker = (await import("node:net")).createServer().listen(0, "127.0.0.1");
          await new Promise((r) => blocker.once("listening", r));
          const config = loadConfig({ DATABASE_URL: ${JSON.stringify(join(dir, "a.db"))},
            AUDIT_PROFILE: "localnet", PORT: String(blocker.address().port) });
          await m.startService(config, createLogger({ level: "silent" })).catch(() => {
            console.log("refused");
            blocker.close();
          });
        })`,
      ],
      { encoding: "utf8", timeout: 20_000 },
    );
    // The process ends on its own: no worker thread, loop or timer of the service is left.
    expect(run.error).toBeUndefined();
    expect(run.stdout).toContain("refused");
    expect(run.status).toBe(0);
  });

  it("exits non-zero at once on a bad AUDIT_PROFILE, as a real process", () => {
    const dir = mkdtempSync(join(tmpdir(), "service-"));
    const run = spawnSync(
      process.execPath,
      cliArgv(["serve", "--port", "0", "--profile", "no-such-profile", "--db", join(dir, "a.db")]),
      { encoding: "utf8", timeout: 20_000 },
    );
    expect(run.error).toBeUndefined();
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("no-such-profile");
  });
  // The probe asked getSlot of the verifier's pool, whose five attempts and backoffs (and, with
  // probes side by side, its rate limit) outlasted the probe's 3 s: an RPC refusing every
  // connection read "no answer within 3000 ms", as a hung one does.
  it("/readyz says an RPC that refuses the connection refused it, probes side by side too", async () => {
    const closed = createServer().listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));
    const config = loadConfig({
      DATABASE_URL: ":memory:",
      PORT: "0",
      AUDIT_PROFILE: "localnet",
      SOLANA_RPC_URLS: `http://127.0.0.1:${port}`,
    });
    const service = await startService(config, quiet);
    try {
      const read = (await createToken(service.store, { role: "read", name: "r" })).token;
      const probe = async () => {
        const response = await fetch(`${service.url}/readyz`, {
          headers: { authorization: `Bearer ${read}` },
        });
        return ((await response.json()) as { checks: { rpc: { detail?: string } } }).checks.rpc;
      };
      for (const rpc of await Promise.all(Array.from({ length: 10 }, probe))) {
        expect(rpc.detail).toMatch(/^connection refused \(.*ECONNREFUSED/);
      }
    } finally {
      await service.close();
    }
  });

  it("with PROXY_REQUIRE_TOKEN proxies only a request whose token may ingest, and answers the rest as the app did", async () => {
    const config = loadConfig({
      DATABASE_URL: ":memory:",
      PORT: "0",
      AUDIT_PROFILE: "localnet",
      PROXY_REQUIRE_TOKEN: "true",
      // Nothing listens there: a request let through gets the proxy's own upstream error.
      DECENTRAL_BASE_URL: "http://127.0.0.1:1/v1",
    });
    const service = await startService(config, quiet);
    try {
      const ingest = (await createToken(service.store, { role: "ingest", name: "i" })).token;
      const read = (await createToken(service.store, { role: "read", name: "r" })).token;
      const post = async (headers: Record<string, string>) => {
        const response = await fetch(`${service.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({ model: "m", messages: [] }),
        });
        const body = (await response.json()) as { error: { code: string } };
        return [response.status, body.error.code];
      };
      expect(await post({})).toEqual([401, "unauthorized"]);
      expect(await post({ "x-audit-token": "da_unknown" })).toEqual([401, "unauthorized"]);
      expect(await post({ "x-audit-token": read })).toEqual([403, "forbidden"]);
      const [status, code] = await post({ "x-audit-token": ingest });
      expect(status).toBeGreaterThanOrEqual(500);
      expect(code).not.toMatch(/unauthorized|forbidden/);
    } finally {
      await service.close();
    }
  });
});
