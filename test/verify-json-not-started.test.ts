import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { runCliInProcess } from "./support/cli-in-process.js";
import { cliArgv } from "./support/service-process.js";

/**
 * `verify --json` that cannot start (no such database, a flag refused, a profile not found)
 * prints one JSON object on stdout, as the RPC being down does: a script parsing the summary
 * got an empty string. The message stays on stderr, the exit code 2.
 */

const dir = mkdtempSync(join(tmpdir(), "verify-json-"));
const missing = join(dir, "missing.db");
const store = join(dir, "audit.db");
const made = openSqliteStore(store);
migrateStore(made);
made.close();

/** The one JSON object of stdout, with exit code 2 and the reason said on stderr too. */
function notStarted(run: { code: number | null; stdout: string; stderr: string }, said: string) {
  expect(run.code).toBe(2);
  const answer = JSON.parse(run.stdout) as Record<string, unknown>;
  expect(answer).toMatchObject({ outcome: "incomplete", exitCode: 2 });
  expect(answer.reason).toContain(said);
  expect(run.stderr).toContain(said);
}

describe("verify --json that cannot start", () => {
  it("prints one JSON object from the process for a database file that does not exist", () => {
    const run = spawnSync(
      process.execPath,
      cliArgv(["verify", "--json", "--since", "1h", "--db", missing]),
      {
        encoding: "utf8",
        timeout: 30_000,
        env: { ...process.env, SOLANA_RPC_URLS: "http://127.0.0.1:9" },
      },
    );
    notStarted(
      { code: run.status, stdout: run.stdout, stderr: run.stderr },
      `no SQLite store at ${missing}`,
    );
  }, 30_000);

  it.each([
    [["--since", "1h", "--bogus"], "unknown option '--bogus'"],
    [["--since"], "argument missing"],
    [["--since", "xx"], "--since: not a duration"],
    [["--since", "1h", "--profile", "nope"], 'profile "nope"'],
    [["--since", "1h", "--out", "-", "--db", store, "--db", missing], "--db: given more than once"],
  ])("prints one JSON object for %j", async (args, said) => {
    const run = await runCliInProcess(["verify", "--json", "--db", store, ...args], {
      SOLANA_RPC_URLS: "http://127.0.0.1:9",
    });
    notStarted(run, said);
  });

  it("puts it in --out FILE in place of the last run's summary, in the format asked for", async () => {
    const cases = [
      [["--json"], "s.json"],
      [["--markdown"], "s.md"],
      [[], "s.txt"],
    ] as const;
    for (const [format, name] of cases) {
      const file = join(dir, name);
      // Last night's summary, which a cron job reading the file took for tonight's.
      writeFileSync(file, '{"outcome":"verified","exitCode":0}\n');
      const run = await runCliInProcess(
        ["verify", ...format, "--since", "1h", "--out", file, "--db", missing],
        { SOLANA_RPC_URLS: "http://127.0.0.1:9" },
      );
      expect(run.code).toBe(2);
      expect(run.stdout).toBe("");
      expect(run.stderr).toContain(`no SQLite store at ${missing}`);
      const written = readFileSync(file, "utf8");
      expect(written).not.toContain('"verified"');
      expect(written).toContain(`could not start: no SQLite store at ${missing}`);
      if (format[0] === "--json") {
        expect(JSON.parse(written)).toMatchObject({ outcome: "incomplete", exitCode: 2 });
      }
    }
  });
});
