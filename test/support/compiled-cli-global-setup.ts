import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { TestProject } from "vitest/node";

/**
 * vitest globalSetup: the program compiled once for the run, laid out as the package ships it
 * (`bin/`, `dist/` with its `migrations-built.json`, `migrations/`, `package.json`), for the
 * tests that start the CLI in a process of its own. Each `node --import tsx` start compiles the sources again in that process
 * (and in each of its workers and threads): seconds of CPU per process on a 2-core runner,
 * where the compiled program starts in a fraction of it. Compiled with esbuild file by file as
 * tsx does (no bundling, the same module graph), so `import.meta.url` paths resolve as in a
 * build. Runs after the temp-root setup: the build lives and ends with the run's temp folder.
 *
 * Built only when a test file of the run imports the helper; not in watch mode, where an edit
 * of src/ must reach the next rerun (the helper then falls back to running from source).
 */

/** What test files receive through `inject("compiledCli")`. */
export type ProvidedCompiledCli = { bin: string } | { unavailable: string };

declare module "vitest" {
  export interface ProvidedContext {
    compiledCli: ProvidedCompiledCli;
  }
}

const helperImports = ["support/service-process.js"];

async function runNeedsCli(project: TestProject): Promise<boolean> {
  // As in postgres-global-setup.ts: the file filters of `vitest run a b` (not public API).
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
  const { testFiles } = await project.globTestFiles(filters);
  return testFiles.some((file) => {
    const text = readFileSync(file, "utf8");
    return helperImports.some((marker) => text.includes(marker));
  });
}

export async function setup(project: TestProject): Promise<void> {
  if (project.config.watch) {
    project.provide("compiledCli", { unavailable: "watch mode runs the sources" });
    return;
  }
  if (!(await runNeedsCli(project))) {
    project.provide("compiledCli", { unavailable: "no test file of this run imports the helper" });
    return;
  }
  const root = resolve(project.config.root);
  const out = join(tmpdir(), "compiled-cli");
  const sources = readdirSync(join(root, "src"), { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => join(root, "src", file));
  // tsx's own esbuild (the compiler every `--import tsx` process runs), found from tsx.
  const fromTsx = createRequire(createRequire(import.meta.url).resolve("tsx"));
  const { build } = fromTsx("esbuild") as typeof import("esbuild");
  await build({
    entryPoints: sources,
    outbase: join(root, "src"),
    outdir: join(out, "dist"),
    format: "esm",
    platform: "node",
    target: "node20",
    bundle: false,
    logLevel: "error",
    tsconfig: join(root, "tsconfig.json"),
  });
  // As `npm run build` records them: the newest migration of each dialect it was built with.
  const last = (folder: string) =>
    (
      JSON.parse(readFileSync(join(root, folder, "meta", "_journal.json"), "utf8")) as {
        entries: { tag: string }[];
      }
    ).entries.at(-1)?.tag;
  writeFileSync(
    join(out, "dist", "migrations-built.json"),
    `${JSON.stringify({ sqlite: last("migrations"), postgres: last("migrations/postgres") })}\n`,
  );
  mkdirSync(join(out, "bin"));
  copyFileSync(join(root, "bin", "decentral-audit.js"), join(out, "bin", "decentral-audit.js"));
  for (const name of ["migrations", "package.json", "node_modules"]) {
    symlinkSync(join(root, name), join(out, name));
  }
  project.provide("compiledCli", { bin: join(out, "bin", "decentral-audit.js") });
}
