import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { loadProfile } from "../src/verify/profiles.js";
import { cliArgv } from "./support/service-process.js";

/** A migrated SQLite file in a folder of its own. */
function migratedDb(): string {
  const db = join(mkdtempSync(join(tmpdir(), "profile-bound-db-")), "audit.db");
  const store = openSqliteStore(db);
  migrateStore(store);
  store.close();
  return db;
}

describe("a profile file is read up to 1 MiB", () => {
  it("refuses a file larger than any profile, naming it", () => {
    const path = join(mkdtempSync(join(tmpdir(), "profile-bound-")), "big.json");
    writeFileSync(path, `${" ".repeat(1024 * 1024)}{}`);
    expect(() => loadProfile(path)).toThrow(/big\.json is larger than 1 MiB/);
  });

  it("ends `verify --profile /dev/zero` with exit 2 and a message, not an endless read", () => {
    // It read the device whole: 13.8 GB in 2.5 minutes, SIGTERM not heard. Killed at 20 s here,
    // which the old code reached with about a gigabyte read.
    const db = migratedDb();
    const ran = spawnSync(
      process.execPath,
      cliArgv(["verify", "--since", "1h", "--profile", "/dev/zero", "--db", db]),
      { encoding: "utf8", timeout: 20_000, killSignal: "SIGKILL" },
    );
    expect(ran.signal).toBeNull();
    expect(ran.status).toBe(2);
    expect(ran.stderr).toMatch(/profile file \/dev\/zero is larger than 1 MiB/);
  }, 30_000);
});

describe("DATABASE_SSL_ROOT_CERT is read up to 4 MiB", () => {
  it("ends a command given /dev/zero as the certificate with exit 2 naming the setting", () => {
    // Read whole, it grew `tokens list` by 1.1 GB in 5 s and never ended.
    const ran = spawnSync(process.execPath, cliArgv(["tokens", "list"]), {
      encoding: "utf8",
      timeout: 20_000,
      killSignal: "SIGKILL",
      env: {
        ...process.env,
        DATABASE_URL: "postgres://audit@127.0.0.1:1/audit",
        DATABASE_SSLMODE: "verify-full",
        DATABASE_SSL_ROOT_CERT: "/dev/zero",
      },
    });
    expect(ran.signal).toBeNull();
    expect(ran.status).toBe(2);
    expect(ran.stderr).toMatch(/DATABASE_SSL_ROOT_CERT \/dev\/zero is larger than 4 MiB/);
  }, 30_000);
});

describe("a profile named by a pipe", () => {
  const profile = JSON.stringify({
    name: "staging",
    cluster: "devnet",
    usdcMint: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
    tokenPrograms: ["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"],
    pricing: { "qwen3-8b": { creditsPerRequest: 8, creditsPer1kTokens: 4 } },
  });
  const fifo = () => {
    const path = join(mkdtempSync(join(tmpdir(), "profile-pipe-")), "profile");
    spawnSync("mkfifo", [path]);
    return path;
  };

  it("ends `verify` with exit 2 when no one writes to it for 5 s, not a wait for ever", () => {
    // The open waited for a writer: `--timeout` and SIGTERM went unheard (killed at 20 s here).
    const db = migratedDb();
    const ran = spawnSync(
      process.execPath,
      cliArgv(["verify", "--since", "1h", "--timeout", "5s", "--profile", fifo(), "--db", db]),
      { encoding: "utf8", timeout: 20_000, killSignal: "SIGKILL" },
    );
    expect(ran.signal).toBeNull();
    expect(ran.status).toBe(2);
    expect(ran.stderr).toMatch(/profile file .*profile: nothing came from it for 5 s/);
  }, 30_000);

  it("reads what a writer sends, however late it comes, as `--profile <(...)` gives it", () => {
    const path = fifo();
    // Its writer opens it after the read began, and sends in two pieces.
    const writer = spawn("sh", [
      "-c",
      'sleep 0.3; { printf %s "$0" | head -c 40; sleep 0.3; printf %s "$0" | tail -c +41; } > "$1"',
      profile,
      path,
    ]);
    try {
      expect(loadProfile(path).name).toBe("staging");
    } finally {
      writer.kill();
    }
  });
});
