import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * All SQL lives in the store's own modules (`src/store/`, with the connection, schema and
 * migrations in `src/db/`), so a second dialect is one more implementation of that layer rather
 * than edits all over `src/`. This test reads the code to keep it so: outside those folders no
 * file imports drizzle, reaches for the raw connection or the drizzle handle of a store, or
 * prepares a statement. `src/localnet/` is the simulated chain and operator, which has no store.
 */

const root = join(import.meta.dirname, "..");
const src = join(root, "src");
const exempt = ["store", "db", "localnet"].map((dir) => join(src, dir));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return exempt.includes(path) ? [] : sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

const forbidden: [what: string, pattern: RegExp][] = [
  ["imports drizzle", /from\s+["']drizzle-orm/],
  ["uses a raw connection", /\.sqlite\b/],
  ["uses a store's drizzle handle", /\bstore\.db\b|\{\s*db\s*(,[^}]*)?\}\s*=\s*(deps\.)?store\b/],
  ["prepares a statement", /\.prepare\(/],
];

describe("the data layer", () => {
  it("is the only place that speaks SQL", () => {
    const offences: string[] = [];
    for (const file of sourceFiles(src)) {
      const lines = readFileSync(file, "utf8").split("\n");
      lines.forEach((line, i) => {
        if (/^\s*(\/\/|\*|\/\*)/.test(line)) return;
        for (const [what, pattern] of forbidden) {
          if (pattern.test(line)) offences.push(`${relative(root, file)}:${i + 1} ${what}`);
        }
      });
    }
    expect(offences).toEqual([]);
  });

  it("would notice a file that does", () => {
    const line = 'import { eq } from "drizzle-orm";';
    expect(forbidden.some(([, pattern]) => pattern.test(line))).toBe(true);
    expect(
      forbidden.some(([, pattern]) => pattern.test("  const row = store.sqlite.prepare(q)")),
    ).toBe(true);
  });
});
