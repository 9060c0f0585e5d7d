import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCliInProcess } from "./support/cli-in-process.js";

// `db migrate --db /dev/null` failed with "SQLite could not open or write it
// (SQLITE_IOERR_FSYNC)" and left a `/dev/null-journal` file in /dev; a named pipe as --db
// blocked the open. Refused before anything is opened, naming what the path is, as a folder is.
describe("a --db that is a device or a named pipe", () => {
  it("is refused with exit 2, naming it, before SQLite opens it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "inp66-db-device-"));
    const fifo = join(dir, "pipe");
    execFileSync("mkfifo", [fifo]);
    const cases: [string, string][] = [
      ["/dev/zero", "a device"],
      [fifo, "a named pipe"],
    ];
    for (const [path, what] of cases) {
      for (const args of [
        ["db", "migrate"],
        ["tokens", "list"],
        ["report", "reconciliation", "--since", "24h"],
      ]) {
        const run = await runCliInProcess([...args, "--db", path], {});
        expect(run.code, `${args.join(" ")} ${path}`).toBe(2);
        expect(run.stderr.trim()).toBe(
          `error: ${path} is ${what}, not a SQLite database file; nothing was opened (check --db / DATABASE_URL)`,
        );
      }
    }
    expect(existsSync("/dev/zero-journal")).toBe(false);
    expect(existsSync(`${fifo}-journal`)).toBe(false);
  }, 60_000);
});
