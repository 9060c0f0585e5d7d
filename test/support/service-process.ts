import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { afterAll, inject } from "vitest";
import { modulesFolder } from "./compiled-cli-global-setup.js";

/** A `decentral-audit` command in its own process, run as the binary runs it. */
export interface CliProcess {
  child: ChildProcess;
  /** Every JSON log line seen so far on stdout (pino) and the raw stderr. */
  logs: Record<string, unknown>[];
  stderr: () => string;
  /** Resolves with the first log line matching `test` (bounded by `timeoutMs`). */
  waitForLog(
    test: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/**
 * Node's arguments that run `decentral-audit` with `args`: the binary over the program compiled
 * once for the run (test/support/compiled-cli-global-setup.ts), or the sources through tsx when
 * there is none (watch mode). `packagesApart`: the build whose packages load from node_modules
 * file by file, as `npm run build` ships them (the other bundles them), for a test of what a
 * command loads.
 */
export function cliArgv(
  args: readonly string[],
  options: { packagesApart?: boolean } = {},
): string[] {
  const compiled = inject("compiledCli");
  if (compiled !== undefined && "bin" in compiled) {
    const bin = options.packagesApart ? compiled.packagesApartBin : compiled.bin;
    if (bin === undefined) throw new Error("no build with packages apart was made for this run");
    return [bin, ...args];
  }
  // Both by full path, for a process started in another folder.
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  const cli = pathToFileURL(join(import.meta.dirname, "..", "..", "src", "cli.ts")).href;
  return [
    ...["--import", tsx, "-e"],
    `import(${JSON.stringify(cli)}).then((m) => m.runCli(["node", "decentral-audit", ...process.argv.slice(1)]))`,
    ...["--", ...args],
  ];
}

/**
 * The program's own modules for a script run in a process of its own (`node -e`):
 * `url("db/client")` names a module by its path under src/, without extension, in the program
 * compiled once for the run (each module a file of its own there: the binary's build bundles
 * them), or in the sources when there is none (watch mode). `nodeArgs` go
 * before the script's arguments: none for the compiled program, tsx's loader for the sources.
 */
export function programModules(): { url(path: string): string; nodeArgs: string[] } {
  const compiled = inject("compiledCli");
  if (compiled !== undefined && "bin" in compiled) {
    const modules = join(dirname(compiled.bin), "..", modulesFolder);
    return { url: (path) => pathToFileURL(join(modules, `${path}.js`)).href, nodeArgs: [] };
  }
  const src = join(import.meta.dirname, "..", "..", "src");
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  return {
    url: (path) => pathToFileURL(join(src, `${path}.ts`)).href,
    nodeArgs: ["--import", tsx],
  };
}

/** The processes this test file started that have not exited. */
const live = new Set<ChildProcess>();
// A process a test left running (it timed out while waiting for it, or never stopped it) is
// killed with its file: left to run, it would take the CPU from every later file of the run.
afterAll(() => {
  for (const child of live) child.kill("SIGKILL");
});

export function startCli(
  args: string[],
  env: Record<string, string> = {},
  options: { detached?: boolean; stdoutFd?: number } = {},
): CliProcess {
  const child = spawn(
    process.execPath,
    cliArgv(args),
    // One process per `serve` unless a test asks for a cluster (test/serve-cluster.test.ts):
    // several clusters of one worker per core on a 2-core runner only add minutes.
    {
      env: { ...process.env, LOG_LEVEL: "info", WORKERS: "1", ...env },
      // A file descriptor of the test's (a FIFO it reads, or stops reading) instead of a pipe.
      stdio: ["ignore", options.stdoutFd ?? "pipe", "pipe"],
      // Its own process group, for a signal sent to the whole group as a supervisor does.
      detached: options.detached ?? false,
    },
  );
  live.add(child);
  child.once("exit", () => live.delete(child));
  const logs: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  if (child.stdout)
    createInterface({ input: child.stdout }).on("line", (line) => {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ text: line });
      }
      for (const wake of [...waiters]) wake();
    });
  // 'exit' can come before the process's last output is read (its pipes still hold it): a
  // line it wrote just before it ended, or its last stderr, was missing to a test reading them
  // once it exited. Resolved once the pipes end too, unless a test stopped reading one (then
  // the exit alone), and at most a second after the exit (a process it started may hold them).
  const exited = once(child, "exit").then(async ([code]) => {
    const open = [child.stdout, child.stderr].filter(
      (s): s is NonNullable<typeof s> => !!s && !s.readableEnded && s.readableFlowing !== false,
    );
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(open.map((s) => once(s, "close").catch(() => undefined))),
      new Promise((resolve) => {
        bound = setTimeout(resolve, 1000);
      }),
    ]);
    clearTimeout(bound);
    return code as number | null;
  });
  return {
    child,
    logs,
    stderr: () => stderr,
    exited,
    waitForLog(test, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find(test);
          if (!found) return false;
          cleanup();
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no such log line within ${timeoutMs} ms; stderr: ${stderr}`));
        }, timeoutMs);
        // Judged once its last lines were read (`exited`), not at the exit itself.
        const onExit = () =>
          void exited.then(() => {
            if (check()) return;
            cleanup();
            reject(new Error(`process exited first; stderr: ${stderr}`));
          });
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(wake);
          child.off("exit", onExit);
        };
        const wake = () => void check();
        if (check()) return;
        waiters.add(wake);
        child.once("exit", onExit);
      });
    },
  };
}

/** Resolves with `probe`'s first truthy value, tried every `everyMs`; throws past `timeoutMs`. */
export async function until<T>(probe: () => T, timeoutMs: number, everyMs = 50): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Starts `serve` and resolves with its URL once it listens. */
export async function startServe(
  db: string,
  env: Record<string, string>,
): Promise<CliProcess & { url: string }> {
  const proc = startCli(["serve", "--port", "0", "--db", db, "--profile", "localnet"], env);
  // A serve that did not listen in time is the test's failure, not a process left running: on
  // a loaded host such leftovers (a cluster's primary restarting its workers) piled up.
  const line = await proc
    .waitForLog((l) => l.msg === "decentral-audit listening")
    .catch((error) => {
      proc.child.kill("SIGKILL");
      throw error;
    });
  return Object.assign(proc, { url: String(line.url) });
}

/**
 * `GET /metrics` on a connection of its own: successive scrapes reach either worker of a
 * cluster, and never one a stopped worker holds.
 */
export function scrapeMetrics(
  base: string,
  token: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      `${base}/metrics`,
      { agent: false, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("error", reject);
  });
}

/** The sum of a metric's samples in a `/metrics` text whose line starts with `name` (labels any). */
export function metricSample(text: string, name: string): number {
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))]
    .map((m) => Number(m[1]))
    .reduce((a, b) => a + b, 0);
}
