import { Worker } from "node:worker_threads";

/** src/ (or dist/ in a build): the folder the modules' paths below are taken from. */
const root = new URL(".", import.meta.url).href;

/**
 * A worker thread that runs the module `file` (a URL of this program's, `.ts` when run from
 * source), given `workerData`. Run from source (tsx), the thread registers tsx itself: a worker
 * thread does not inherit the process's module hooks. Test-only: with
 * `DECENTRAL_AUDIT_THREAD_BUILD` set to the URL of a `dist/` folder built from these same
 * sources, a thread of a process run from source runs that build's module instead, without tsx
 * (the test suite sets it to the build it compiles once per run: a thread loading the program's
 * modules through tsx's hooks took 1.4 s of CPU, the built ones 0.25 s).
 */
export function startModuleThread(file: URL, workerData: unknown): Worker {
  if (!file.href.endsWith(".ts")) return new Worker(file, { workerData });
  const build = process.env.DECENTRAL_AUDIT_THREAD_BUILD;
  if (build !== undefined && build !== "" && file.href.startsWith(root)) {
    const built = new URL(file.href.slice(root.length).replace(/\.ts$/, ".js"), build);
    return new Worker(built, { workerData });
  }
  return new Worker(
    `import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(file.href)}); })`,
    { eval: true, workerData },
  );
}
