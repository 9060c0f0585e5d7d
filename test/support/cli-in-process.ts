import { format } from "node:util";
import { vi } from "vitest";
import { buildProgram, fail } from "../../src/cli.js";

/** What a command line ended with: its exit code and what it printed. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `process.exit` as the command line called it, thrown to end the run where it stands. */
class Exited extends Error {
  constructor(readonly code: number) {
    super(`process.exit(${code})`);
  }
}

let previous: Promise<unknown> = Promise.resolve();

/**
 * Runs the CLI's command line in this process, as the binary's entry point does (commander's
 * parse, then the one handler that prints a failure and exits), with `env` set over the
 * process's environment for the run. `process.exit`, stdout and stderr are caught for it, so
 * its exit code and output are read as a shell would see them, in milliseconds where a process
 * of its own takes most of a second of CPU. One run at a time: each patches the process.
 * For what the process itself does with its streams and file descriptors, start one.
 */
export function runCliInProcess(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): Promise<CliRun> {
  const run = previous.then(() => runOnce(args, env));
  previous = run.catch(() => undefined);
  return run;
}

async function runOnce(
  args: readonly string[],
  env: Record<string, string | undefined>,
): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const saved = Object.fromEntries(Object.keys(env).map((key) => [key, process.env[key]]));
  setEnv(env);
  const spies = [
    vi.spyOn(process, "exit").mockImplementation((code) => {
      throw new Exited(Number(code ?? 0));
    }),
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      stdout += String(chunk);
      return true;
    }),
    vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
      stderr += String(chunk);
      return true;
    }),
    vi.spyOn(console, "log").mockImplementation((...parts) => {
      stdout += `${format(...parts)}\n`;
    }),
    vi.spyOn(console, "error").mockImplementation((...parts) => {
      stderr += `${format(...parts)}\n`;
    }),
  ];
  const exitCodeBefore = process.exitCode;
  process.exitCode = undefined;
  let code: number;
  try {
    await buildProgram()
      .parseAsync(["node", "decentral-audit", ...args])
      .catch(fail);
    code = Number(process.exitCode ?? 0);
  } catch (error) {
    if (!(error instanceof Exited)) throw error;
    code = error.code;
  } finally {
    for (const spy of spies) spy.mockRestore();
    process.exitCode = exitCodeBefore;
    setEnv(saved);
  }
  return { code, stdout, stderr };
}

function setEnv(env: Record<string, string | undefined>): void {
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
}
