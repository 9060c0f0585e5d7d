import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { inject } from "vitest";

/**
 * vitest setup file of the isolated project: the worker threads a test starts in its own process
 * (the service's background thread, the receipt writer's thread) run the program compiled once
 * for the run (test/support/compiled-cli-global-setup.ts) instead of the sources through tsx,
 * which each thread loaded through tsx's hooks anew: 1.4 s of CPU a thread against 0.25 s
 * (src/thread-entry.ts). The same sources, compiled by the same esbuild tsx runs. In watch mode,
 * or when the run made no build, threads run from source as before.
 */
const compiled = inject("compiledCli");
if (compiled !== undefined && "bin" in compiled && !process.env.DECENTRAL_AUDIT_THREAD_BUILD) {
  process.env.DECENTRAL_AUDIT_THREAD_BUILD = pathToFileURL(
    `${join(dirname(compiled.bin), "..", "dist")}/`,
  ).href;
}
