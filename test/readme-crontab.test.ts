import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cliArgv } from "./support/service-process.js";

/** The crontab line of the README's "Nightly verification", as a user copies it. */
function readmeCrontabLine(): string {
  const readme = readFileSync("README.md", "utf8");
  const block = readme.slice(
    readme.indexOf("Crontab:\n\n```cron\n") + "Crontab:\n\n```cron\n".length,
  );
  return block.slice(0, block.indexOf("\n```"));
}

/**
 * Runs the README's crontab command under /bin/sh, as cron does, with its paths put in a scratch
 * folder: the program, the env file and the on-call notifier. Returns what the notifier was told
 * (null when it never ran) and the shell's exit code.
 */
function runCrontab(envFile: string | null): { notified: string | null; code: number | null } {
  const dir = mkdtempSync(join(tmpdir(), "readme-crontab-"));
  const notes = join(dir, "notified");
  const notify = join(dir, "notify-oncall");
  writeFileSync(notify, `#!/bin/sh\nprintf '%s' "$1" > ${JSON.stringify(notes)}\n`);
  chmodSync(notify, 0o755);
  const cli = join(dir, "decentral-audit");
  const argv = [process.execPath, ...cliArgv([])].map((a) => `'${a.replaceAll("'", `'\\''`)}'`);
  writeFileSync(cli, `#!/bin/sh\nexec ${argv.join(" ")} "$@"\n`);
  chmodSync(cli, 0o755);
  const env = join(dir, "decentral-audit.env");
  if (envFile !== null) writeFileSync(env, envFile);
  // The crontab's `%` escape is cron's, not the shell's.
  const line = readmeCrontabLine();
  // The program as the recipe starts it, from the project's folder: replaced by the scratch one.
  if (!line.includes("node bin/decentral-audit.js")) throw new Error(`no program in ${line}`);
  const command = line
    .replace(/^(\S+\s+){5}/, "")
    .replaceAll("\\%", "%")
    .replaceAll("/srv/decentral-audit", dir)
    .replaceAll("/etc/decentral-audit.env", env)
    .replaceAll("/var/log/decentral-audit", dir)
    .replaceAll("/usr/local/bin/notify-oncall", notify)
    .replaceAll("node bin/decentral-audit.js", cli);
  const ran = spawnSync("/bin/sh", ["-c", command], {
    cwd: dir,
    timeout: 60_000,
    encoding: "utf8",
  });
  return { notified: existsSync(notes) ? readFileSync(notes, "utf8") : null, code: ran.status };
}

describe("the README's crontab line", () => {
  it("tells on-call when the env file is missing, as when verify cannot finish", () => {
    // `.` is a special built-in: a file it cannot read ends the shell that sources it, and
    // everything after it on the line, the notification too, was skipped.
    expect(runCrontab(null).notified).toBe("decentral-audit verify exited 2");
  });

  it("tells on-call the exit code of a verify that could not finish", () => {
    const missing = join(mkdtempSync(join(tmpdir(), "readme-crontab-db-")), "missing.db");
    const ran = runCrontab(`DATABASE_URL=${missing}\n`);
    expect(ran.notified).toBe("decentral-audit verify exited 2");
  });
});
