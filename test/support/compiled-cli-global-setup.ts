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
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { BuildOptions } from "esbuild";
import type { TestProject } from "vitest/node";

/**
 * vitest globalSetup: the program compiled once for the run, laid out as the package ships it
 * (`bin/`, `dist/` with its `migrations-built.json`, `migrations/`, `package.json`), for the
 * tests that start the CLI in a process of its own. Each `node --import tsx` start compiles the
 * sources again in that process (and in each of its workers and threads): seconds of CPU per
 * process on a 2-core runner, where the compiled program starts in a fraction of it. The
 * sources are compiled by the esbuild tsx runs. The modules a process or thread starts from
 * (`entryModules`) are bundled with the program's modules and the packages they import, their
 * shared code in files of their own (`dist/deps/`; native packages excepted): loading the few
 * hundred files of zod, drizzle, hono, pino and prom-client one by one was most of a process's
 * start (`serve` reached "listening" on about a quarter less CPU once they were bundled), and
 * then the 220 files of the program's own that a `serve` loads were (bundled too, a `serve` on
 * a fresh database reached "listening" on 0.76-0.87 s of CPU, against 0.91-0.99 s); every
 * `serve`, worker, background thread and CLI command of the run pays it. Each module still
 * sees its own path in `import.meta.url`, as in a build. A test's script that imports the
 * program's modules by path gets them each a file of their own (`modulesFolder`), and a test of
 * which packages a command loads (`packagesApart`) a build whose packages load from
 * node_modules, as `npm run build` leaves them. Runs after the temp-root setup: the builds live
 * and end with the run's temp folder.
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
  const out = join(tmpdir(), "compiled-cli");
  const [bin, packagesApart] = await Promise.all([
    buildProgram(root, out, { bundle: "entries" }),
    texts.some((text) => text.includes("packagesApart"))
      ? buildProgram(root, join(tmpdir(), "compiled-cli-packages-apart"), { bundle: "none" })
      : undefined,
    texts.some((text) => text.includes("programModules"))
      ? buildModules(root, join(out, modulesFolder))
      : undefined,
  ]);
  project.provide("compiledCli", {
    bin,
    ...(packagesApart === undefined ? {} : { packagesApartBin: packagesApart }),
  });
}

/**
 * The modules a process or thread of the program starts from: the binary's (`cli`), a
 * cluster's worker's, and the threads' (src/thread-entry.ts starts them by their paths).
 */
const entryModules = [
  "cli.ts",
  "serve-worker.ts",
  "background-thread.ts",
  "recorder/receipt-writer-thread.ts",
];

/** The folder, beside `dist/`, of the program's every module compiled on its own (`buildModules`). */
export const modulesFolder = "modules";

/**
 * esbuild's options that bundle the program and the packages it imports. `entries`: the modules
 * a process or thread starts from (`entryModules`), each with the program's modules it imports
 * bundled in, their shared code in chunks (`deps/`): a `serve` loaded some 220 files of its own
 * one by one (resolving, reading and compiling each). `modules`: every module a file of its own, only the packages
 * bundled, for a test's script that imports the program's modules by path (`programModules` in
 * test/support/service-process.ts). Either way, each of the program's modules sees its own
 * path in `import.meta.url` (`dist` + its path under src/), as in a build of `npm run build`: the
 * program finds its migrations, `package.json` and the modules its threads run from it.
 */
function bundled(src: string, dist: string, kind: "entries" | "modules"): BuildOptions {
  return {
    bundle: true,
    splitting: true,
    chunkNames: "deps/[name]-[hash]",
    // Native modules load their binaries from their own folders.
    external: ["better-sqlite3", "litesvm", "pg-native"],
    // Bundling renames a function or class whose name another module also uses: each keeps its
    // own `name`, which errors and logs show.
    keepNames: true,
    // Bundled CommonJS packages call `require` (node's built-ins, the native modules above).
    banner: {
      js: 'import { createRequire as __bundledRequire } from "node:module"; const require = __bundledRequire(import.meta.url);',
    },
    plugins: [
      {
        name: "own-module-paths",
        setup(builder) {
          if (kind === "modules") {
            // The program's own imports stay imports of its own files, compiled one by one.
            builder.onResolve({ filter: /^\.\.?\// }, (args) =>
              args.kind !== "entry-point" && args.importer.startsWith(src)
                ? { path: args.path, external: true }
                : undefined,
            );
          }
          builder.onLoad({ filter: /\.ts$/ }, (args) => {
            if (!args.path.startsWith(src)) return undefined;
            const own = pathToFileURL(join(dist, relative(src, args.path).replace(/\.ts$/, ".js")));
            return {
              contents: readFileSync(args.path, "utf8").replaceAll(
                "import.meta.url",
                JSON.stringify(own.href),
              ),
              loader: "ts",
            };
          });
        },
      },
    ],
  };
}

/** Builds the program's modules into `dist` (`bundled`'s `kind`; `none`: no bundling at all). */
async function compile(root: string, dist: string, kind: "entries" | "modules" | "none") {
  const src = join(root, "src");
  const sources = readdirSync(src, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .filter((file) => kind !== "entries" || entryModules.includes(file.replaceAll("\\", "/")));
  // tsx's own esbuild (the compiler every `--import tsx` process runs), found from tsx.
  const fromTsx = createRequire(createRequire(import.meta.url).resolve("tsx"));
  const { build } = fromTsx("esbuild") as typeof import("esbuild");
  await build({
    entryPoints: sources.map((file) => join(src, file)),
    outbase: src,
    outdir: dist,
    format: "esm",
    platform: "node",
    target: "node20",
    ...(kind === "none" ? { bundle: false } : bundled(src, dist, kind)),
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
    join(dist, "migrations-built.json"),
    `${JSON.stringify({ sqlite: last("migrations"), postgres: last("migrations/postgres") })}\n`,
  );
}

/** Every module of the program, a file of its own, into `dist` (`bundled`'s `modules`). */
async function buildModules(root: string, dist: string): Promise<void> {
  await compile(root, dist, "modules");
}

/**
 * The program built into `out` in the package's layout; resolves with its binary's path.
 * `entries`: its processes' and threads' modules bundled (`bundled`); `none`: every module and
 * package a file of its own, as `npm run build` leaves them.
 */
async function buildProgram(
  root: string,
  out: string,
  options: { bundle: "entries" | "none" },
): Promise<string> {
  mkdirSync(out, { recursive: true });
  for (const name of ["migrations", "package.json", "node_modules"]) {
    symlinkSync(join(root, name), join(out, name));
  }
  await compile(root, join(out, "dist"), options.bundle);
  mkdirSync(join(out, "bin"));
  copyFileSync(join(root, "bin", "decentral-audit.js"), join(out, "bin", "decentral-audit.js"));
  return join(out, "bin", "decentral-audit.js");
}
