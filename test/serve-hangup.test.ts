import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cliArgv } from "./support/service-process.js";

/**
 * `serve` run in a terminal that then closes (a window, an ssh session): the terminal hangs up
 * and serve gets SIGHUP, on which it drains. It then ends by that hangup, not by a failed
 * assertion of Node's (putting back the settings of a terminal that is gone) and a core dump.
 * The terminal is `script`'s (util-linux); killing `script` closes it.
 */

const hasScript = spawnSync("script", ["--version"]).status === 0;

const quote = (arg: string) => `'${arg.replaceAll("'", "'\\''")}'`;

/** Whether the process `pid` still runs. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!hasScript)("serve whose terminal closes", () => {
  it.each([1, 2])(
    "ends on the hangup (--workers %i), no process failing an assertion on its way out",
    async (workers) => {
      const dir = mkdtempSync(join(tmpdir(), "serve-hangup-"));
      const stderr = join(dir, "stderr.txt");
      const args = cliArgv([
        ...["serve", "--port", "0", "--db", join(dir, "audit.db"), "--profile", "localnet"],
        ...["--workers", String(workers)],
      ]);
      // serve is the terminal's session leader (exec), which a hangup signals.
      const command = `exec ${[process.execPath, ...args].map(quote).join(" ")} 2>${quote(stderr)}`;
      const terminal = spawn("script", ["-qfc", command, "/dev/null"], {
        env: { ...process.env, SHELL: "/bin/sh", SOLANA_RPC_URLS: "http://127.0.0.1:9" },
        stdio: ["pipe", "pipe", "inherit"],
      });
      let out = "";
      let pid: number | undefined;
      try {
        pid = await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 60_000);
          terminal.stdout.on("data", (chunk: Buffer) => {
            out += chunk.toString();
            const line = out
              .split(/\r?\n/)
              .find(
                (l) =>
                  l.includes('"serve cluster ready"') ||
                  (workers === 1 && l.includes('"decentral-audit listening"')),
              );
            if (line) {
              clearTimeout(timer);
              resolve(JSON.parse(line.slice(line.indexOf("{"))).pid as number);
            }
          });
        });
        terminal.kill("SIGKILL");
        const started = Date.now();
        while (alive(pid!) && Date.now() - started < 30_000) {
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(alive(pid!)).toBe(false);
        const said = existsSync(stderr) ? readFileSync(stderr, "utf8") : "";
        expect(said).not.toMatch(/Assertion failed|ResetStdio/);
      } finally {
        terminal.kill("SIGKILL");
        if (pid !== undefined && alive(pid)) process.kill(pid, "SIGKILL");
        rmSync(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});
