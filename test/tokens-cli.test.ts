import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { authenticateToken } from "../src/auth/tokens.js";
import { buildProgram } from "../src/cli.js";
import { openSqliteStore } from "../src/db/client.js";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs the CLI in-process and returns what it printed on stdout. */
async function cli(...args: string[]) {
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((line: unknown) => lines.push(String(line)));
  vi.spyOn(console, "error").mockImplementation(() => {});
  await buildProgram().parseAsync(["node", "decentral-audit", ...args]);
  vi.restoreAllMocks();
  return lines;
}

describe("decentral-audit tokens", () => {
  it("creates a token shown once, lists it without its text, and revokes it", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "tokens-")), "audit.db");
    // Only `serve`, `demo` and `db migrate` create a store; `tokens` needs one that exists.
    await cli("db", "migrate", "--db", db);
    const [token] = await cli(
      "tokens",
      "create",
      "--role",
      "admin",
      "--name",
      "ops laptop",
      "--db",
      db,
    );
    expect(token).toMatch(/^da_admin_/);

    const listed = JSON.parse((await cli("tokens", "list", "--json", "--db", db)).join("\n")) as {
      id: string;
      name: string;
      role: string;
    }[];
    expect(listed).toEqual([expect.objectContaining({ name: "ops laptop", role: "admin" })]);
    expect(JSON.stringify(listed)).not.toContain(token);
    expect(readFileSync(db).includes(Buffer.from(token!))).toBe(false);

    await cli("tokens", "revoke", listed[0]!.id, "--db", db);
    const store = openSqliteStore(db);
    try {
      expect(await authenticateToken(store, token!)).toBeNull();
    } finally {
      store.close();
    }
  });
});
