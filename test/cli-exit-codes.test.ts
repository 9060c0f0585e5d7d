import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

/** Runs the CLI from source in a child process, as a crontab would run the binary. */
function cli(...args: string[]) {
  const result = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      "-e",
      'import("./src/cli.ts").then((m) => m.runCli(["node", "decentral-audit", ...process.argv.slice(1)]))',
      "--",
      ...args,
    ],
    { encoding: "utf8", env: { ...process.env, DATABASE_URL: ":memory:" } },
  );
  return { code: result.status, stderr: result.stderr };
}

describe("CLI exit codes", () => {
  it("exits 2, never 1, on a mistyped flag, so cron does not read it as a discrepancy", () => {
    const run = cli("verify", "--sinse", "24h");
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("unknown option '--sinse'");
  });

  it("exits 2 with one line and no stack trace when a file cannot be read", () => {
    const run = cli("import", "/nonexistent/receipts.jsonl");
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain("/nonexistent/receipts.jsonl");
  });

  it("exits 0 for --help", () => {
    expect(cli("--help").code).toBe(0);
  });
});
