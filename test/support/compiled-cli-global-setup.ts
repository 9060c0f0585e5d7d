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
import type { BuildOptions } from "esbuild";
import type { TestProject } from "vitest/node";

/**
 * vitest globalSetup: the program compiled once for the run, laid out as the package ships it
 * (`bin/`, `dist/` with its `migrations-built.json`, `migrations/`, `package.json`), for the
 * tests that start the CLI in a process of its own. Each `node --import tsx` start compiles the
 * sources again in that process (and in each of its workers and threads): seconds of CPU per
 * process on a 2-core runner, where the compiled program starts in a fraction of it. The
 * program's own modules are compiled with esbuild file by file as tsx does (the same module
 * graph), so `import.meta.url` paths resolve as in a build. The packages they import are
 * bundled into shared files of their own (`dist/deps/`; native ones excepted): loading the few
 * hundred files of zod, drizzle, hono, pino and prom-client one by one was most of a process's
 * start, and every `serve`, worker, background thread and CLI command of the run pays it
 * (`serve` reached "listening" on about a quarter less CPU). A test of which packages a command
 * loads (`packagesApart`) gets a second build whose packages load from node_modules, as `npm run
 * build` leaves them. Runs after the temp-root setup: the builds live and end with the run's
 * temp folder.
 *
 * Built only when a test file of the run imports the helper or starts the program's worker
 * threads in its own process (test/support/compiled-threads.ts runs those threads from the
 * build); not in watch mode, where an edit of src/ must reach the next rerun (the helper then
 * falls back to running from source).
 */

/**
 * What test files receive through `inject("compiledCli")`: `packagesApartBin` when a test file
 * of the run asks for it (it names `packagesApart`).
 */
export type ProvidedCompiledCli =
  | { bin: string; packagesApartBin?: string }
  | { unavailable: string };

declare module "vitest" {
  export interface ProvidedContext {
    compiledCli: ProvidedCompiledCli;
  }
}

const helperImports = [
  "support/service-process.js",
  // Threads started in the test's own process: the service's, the demo's, the writer's.
  "src/main.js",
  "src/cli.js",
  "support/cli-in-process.js",
  "run-demo.js",
  "startBackgroundThread(",
  "startThreadedReceiptWriter(",
];

/** The texts of the test files this run executes. */
async function runTestTexts(project: TestProject): Promise<string[]> {
  // As in postgres-global-setup.ts: the file filters of `vitest run a b` (not public API).
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
  const { testFiles } = await project.globTestFiles(filters);
  return testFiles.map((file) => readFileSync(file, "utf8"));
}

export async function setup(project: TestProject): Promise<void> {
  if (project.config.watch) {
    project.provide("compiledCli", { unavailable: "watch mode runs the sources" });
    return;
  }
  const texts = (await runTestTexts(project)).filter((text) =>
    helperImports.some((marker) => text.includes(marker)),
  );
  if (texts.length === 0) {
    project.provide("compiledCli", { unavailable: "no test file of this run imports the helper" });
    return;
  }
  const root = resolve(project.config.root);
  // Both at once: esbuild's builds run in parallel.
  const [bin, packagesApart] = await Promise.all([
    buildProgram(root, join(tmpdir(), "compiled-cli"), { bundlePackages: true }),
    texts.some((text) => text.includes("packagesApart"))
      ? buildProgram(root, join(tmpdir(), "compiled-cli-packages-apart"), {
          bundlePackages: false,
        })
      : undefined,
  ]);
  project.provide("compiledCli", {
    bin,
    ...(packagesApart === undefined ? {} : { packagesApartBin: packagesApart }),
  });
}

/** esbuild's options that bundle the packages the program imports, its own modules apart. */
function packagesBundled(src: string): BuildOptions {
  return {
    bundle: true,
    splitting: true,
    chunkNames: "deps/[name]-[hash]",
    // Native modules load their binaries from their own folders.
    external: ["better-sqlite3", "litesvm", "pg-native"],
    // Bundled CommonJS packages call `require` (node's built-ins, the native modules above).
    banner: {
      js: 'import { createRequire as __bundledRequire } from "node:module"; const require = __bundledRequire(import.meta.url);',
    },
    plugins: [
      {
        // The program's own imports stay imports of its own files, compiled one by one.
        name: "own-modules-apart",
        setup(builder) {
          builder.onResolve({ filter: /^\.\.?\// }, (args) =>
            args.kind !== "entry-point" && args.importer.startsWith(src)
              ? { path: args.path, external: true }
              : undefined,
          );
        },
      },
    ],
  };
}

/** The program built into `out` in the package's layout; resolves with its binary's path. */
async function buildProgram(
  root: string,
  out: string,
  options: { bundlePackages: boolean },
): Promise<string> {
  const src = join(root, "src");
  const sources = readdirSync(src, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => join(src, file));
  // tsx's own esbuild (the compiler every `--import tsx` process runs), found from tsx.
  const fromTsx = createRequire(createRequire(import.meta.url).resolve("tsx"));
  const { build } = fromTsx("esbuild") as typeof import("esbuild");
  await build({
    entryPoints: sources,
    outbase: src,
    outdir: join(out, "dist"),
    format: "esm",
    platform: "node",
    target: "node20",
    ...(options.bundlePackages ? packagesBundled(src) : { bundle: false }),
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
  return join(out, "bin", "decentral-audit.js");
}
