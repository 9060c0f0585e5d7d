import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

// `npm test` runs test/run.mjs: the type check beside the suite. Each case is a small project
// of its own (a tsconfig, a source file, a passing test) with this checkout's node_modules.
const root = join(import.meta.dirname, "..");
const projects: string[] = [];

function project(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), "npm-test-runner-"));
  projects.push(dir);
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir");
  mkdirSync(join(dir, "src"));
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, module: "NodeNext", skipLibCheck: true },
      include: ["src"],
    }),
  );
  writeFileSync(join(dir, "src/value.ts"), source);
  writeFileSync(
    join(dir, "src/value.test.ts"),
    'import { expect, it } from "vitest";\nit("passes", () => expect(1 + 1).toBe(2));\n',
  );
  return dir;
}

function runTests(cwd: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [join(root, "test/run.mjs")], {
    cwd,
    env: { ...process.env, CI: "true", NO_COLOR: "1" },
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, output })));
}

afterAll(() => {
  for (const dir of projects) rmSync(dir, { recursive: true, force: true });
});

describe("npm test (test/run.mjs)", () => {
  it("fails the run on a type error, after running the tests beside the check", async () => {
    const [broken, clean] = await Promise.all([
      runTests(project('export const value: number = "not a number";\n')),
      runTests(project("export const value: number = 1;\n")),
    ]);

    expect(broken.output).toMatch(/1 passed/);
    expect(broken.output).toContain("src/value.ts(1,14): error TS2322");
    expect(broken.output).toContain("Type check failed");
    expect(broken.code).toBe(2);

    expect(clean.output).toMatch(/1 passed/);
    expect(clean.output).not.toContain("Type check failed");
    expect(clean.code).toBe(0);
  });
});
