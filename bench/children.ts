import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";

/** A benchmark child process (world or service) reached over IPC. */
export interface Child<Ready> {
  ready: Ready;
  /** Sends `{op, ...args}` and resolves with the child's `value`. */
  request<T>(op: string, args?: Record<string, unknown>): Promise<T>;
  /** Peak resident set size of the child so far, in bytes. */
  peakRss(): Promise<number>;
  /** CPU time (user + system) the child used so far, in ms. */
  cpuMs(): Promise<number>;
  /** Disconnects; the child closes its servers and exits. Resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * Forks `script` (a file in bench/) under tsx with `env` added to this environment and waits
 * for its `ready` message. Its stdout is discarded (the service logs a line per request, and
 * the cost of writing it stays in the measurement); stderr is passed through.
 */
export async function startChild<Ready>(
  script: string,
  env: Record<string, string>,
): Promise<Child<Ready>> {
  const child: ChildProcess = fork(fileURLToPath(new URL(script, import.meta.url)), [], {
    env: { ...process.env, ...env },
    // BENCH_CHILD_NODE_OPTIONS adds flags for diagnosis, e.g. --cpu-prof.
    execArgv: [
      "--import",
      "tsx",
      ...(process.env.BENCH_CHILD_NODE_OPTIONS?.split(" ").filter(Boolean) ?? []),
    ],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  let nextId = 1;
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.on(
      "message",
      (message: { op?: string; id?: number; ok?: boolean; value?: unknown; error?: unknown }) => {
        if (message.op === "ready") resolve(message as Ready);
        else if (message.op === "failed") reject(new Error(`${script}: ${String(message.error)}`));
        else if (message.id !== undefined) {
          const w = waiting.get(message.id);
          waiting.delete(message.id);
          if (message.ok) w?.resolve(message.value);
          else w?.reject(new Error(String(message.error)));
        }
      },
    );
    child.once("exit", (code) => reject(new Error(`${script} exited with code ${code}`)));
  });
  const request = <T>(op: string, args: Record<string, unknown> = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ id, op, ...args });
    });
  return {
    ready,
    request,
    peakRss: () => request<number>("rss"),
    cpuMs: () => request<number>("cpu"),
    async stop() {
      if (child.connected) child.disconnect();
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
