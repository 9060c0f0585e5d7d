import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { cliArgv } from "./support/service-process.js";

describe("verify on a SQLite path no wait can mend", () => {
  it("exits 2 at once naming the path, not after waiting for a database that is away", () => {
    // A file named as a folder: ENOTDIR, read as a PostgreSQL connection failing, was waited
    // for up to 2 minutes (the whole --timeout when shorter) before the run gave up.
    const started = performance.now();
    const ran = spawnSync(
      process.execPath,
      cliArgv(["verify", "--since", "1h", "--timeout", "60s", "--db", "/etc/passwd/audit.db"]),
      { encoding: "utf8", timeout: 90_000, killSignal: "SIGKILL" },
    );
    const tookMs = performance.now() - started;
    expect(ran.status).toBe(2);
    expect(ran.stderr).toMatch(
      /\/etc\/passwd\/audit\.db: no such file \(a part of its path is a file, not a folder\)/,
    );
    expect(ran.stderr).not.toMatch(/waiting for it/);
    expect(tookMs).toBeLessThan(30_000);
  }, 100_000);
});
