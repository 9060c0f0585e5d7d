import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * A deferred SQLite transaction that reads and then writes fails at once with SQLITE_BUSY when
 * another process wrote in between: the busy timeout never applies to that upgrade. That is how
 * `verify` beside `serve` used to exit 2 with "database is locked". So every transaction opened
 * in src/ must take the write lock when it begins, and this test reads the code to keep it so:
 * better-sqlite3's `db.transaction(fn)` must be invoked as `.immediate(...)` and drizzle's
 * `db.transaction(fn, { behavior: "immediate" })`; no raw `BEGIN` other than `BEGIN IMMEDIATE`.
 */

const root = join(import.meta.dirname, "..");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

const isFunction = (node: ts.Node | undefined) =>
  node !== undefined && (ts.isArrowFunction(node) || ts.isFunctionExpression(node));

function hasImmediateBehavior(options: ts.Expression | undefined): boolean {
  if (!options || !ts.isObjectLiteralExpression(options)) return false;
  return options.properties.some(
    (p) =>
      ts.isPropertyAssignment(p) &&
      p.name.getText() === "behavior" &&
      ts.isStringLiteral(p.initializer) &&
      p.initializer.text === "immediate",
  );
}

/** Every way the transaction function is used must be `.immediate(...)`. */
function usedImmediately(call: ts.CallExpression, file: ts.SourceFile): boolean {
  let parent = call.parent;
  while (ts.isParenthesizedExpression(parent)) parent = parent.parent;
  if (ts.isPropertyAccessExpression(parent)) return parent.name.text === "immediate";
  if (ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name)) {
    const name = parent.name.text;
    const uses: ts.Identifier[] = [];
    const visit = (node: ts.Node) => {
      const declared =
        node.parent !== undefined &&
        ts.isVariableDeclaration(node.parent) &&
        node.parent.name === node;
      if (ts.isIdentifier(node) && node.text === name && !declared) uses.push(node);
      ts.forEachChild(node, visit);
    };
    visit(file);
    return (
      uses.length > 0 &&
      uses.every(
        (u) => ts.isPropertyAccessExpression(u.parent) && u.parent.name.text === "immediate",
      )
    );
  }
  return false;
}

/**
 * The one transaction allowed to begin deferred: `inReadSnapshot` in src/store/prepared.ts,
 * reads only, on one snapshot, holding no writer back.
 */
function isReadSnapshot(call: ts.CallExpression, path: string): boolean {
  if (relative(root, path) !== join("src", "store", "prepared.ts")) return false;
  let node: ts.Node | undefined = call.parent;
  while (node !== undefined && !ts.isFunctionDeclaration(node)) node = node.parent;
  return node?.name?.text === "inReadSnapshot";
}

/** Places in a source text that open a transaction without taking the write lock. */
function deferredTransactions(path: string, text: string): string[] {
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const where = (node: ts.Node) =>
    `${relative(root, path)}:${file.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  const visit = (node: ts.Node) => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      node.expression.name.text === "transaction" &&
      isFunction(node.arguments[0])
    ) {
      const ok =
        hasImmediateBehavior(node.arguments[1]) ||
        usedImmediately(node, file) ||
        isReadSnapshot(node, path);
      if (!ok) found.push(where(node));
    }
    if (
      (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) &&
      /\bBEGIN\b(?!\s+IMMEDIATE)/i.test(node.text) &&
      /^\s*BEGIN/i.test(node.text)
    ) {
      found.push(where(node));
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
}

/**
 * Not SQLite write transactions, so outside this rule: PostgreSQL code (its transactions wait
 * on row locks; there is no deferred lock upgrade to fail), and the snapshot `db copy` holds on
 * its source, a connection opened read-only that cannot write.
 */
const outOfScope = (path: string) =>
  relative(root, path).startsWith(join("src", "db", "pg")) ||
  relative(root, path).startsWith(join("src", "store", "pg")) ||
  relative(root, path) === join("src", "db", "copy.ts");

describe("write transactions", () => {
  it("all begin IMMEDIATE in src/ and bench/", () => {
    const files = [...sourceFiles(join(root, "src")), ...sourceFiles(join(root, "bench"))].filter(
      (f) => !outOfScope(f),
    );
    const deferred = files.flatMap((f) => deferredTransactions(f, readFileSync(f, "utf8")));
    expect(deferred).toEqual([]);
  });

  it("the check catches a deferred transaction in each form it can take", () => {
    const cases = [
      "store.sqlite.transaction(() => { a.run(); })();",
      "const write = store.sqlite.transaction(() => {}); write(1);",
      "db.transaction((tx) => { tx.select(); });",
      'db.transaction((tx) => {}, { behavior: "deferred" });',
      'sqlite.exec("BEGIN");',
    ];
    for (const source of cases) {
      expect(deferredTransactions(join(root, "src/x.ts"), source), source).toHaveLength(1);
    }
    const fine = [
      "store.sqlite.transaction(() => { a.run(); }).immediate();",
      "const write = store.sqlite.transaction(() => {}); write.immediate(1);",
      'db.transaction((tx) => {}, { behavior: "immediate" });',
      'sqlite.exec("BEGIN IMMEDIATE");',
      "chain.transaction(signature);",
    ];
    for (const source of fine) {
      expect(deferredTransactions(join(root, "src/x.ts"), source), source).toEqual([]);
    }
  });
});
