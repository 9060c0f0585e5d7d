import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { authenticateToken } from "../src/auth/tokens.js";
import { buildProgram } from "../src/cli.js";
import { openSqliteStore } from "../src/db/client.js";
import { createTokensStore } from "../src/store/tokens.js";

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
    expect(listed).toEqual([
      expect.objectContaining({
        name: "ops laptop",
        role: "admin",
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
        revokedAt: null,
      }),
    ]);
    expect(JSON.stringify(listed)).not.toContain(token);
    expect(readFileSync(db).includes(Buffer.from(token!))).toBe(false);

    const first = (await cli("tokens", "revoke", listed[0]!.id, "--db", db)).join("\n");
    expect(first).toMatch(new RegExp(`^revoked ${listed[0]!.id} at `));
    // Again: said as the revocation it was, at its first time.
    await new Promise((r) => setTimeout(r, 5));
    const again = (await cli("tokens", "revoke", listed[0]!.id, "--db", db)).join("\n");
    expect(again).toBe(`already ${first}`);
    const store = openSqliteStore(db);
    try {
      expect(await authenticateToken(store, token!)).toBeNull();
    } finally {
      store.close();
    }
  });

  it("refuses a name with a line break, tab or escape sequence, and lists old ones on one line", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "tokens-")), "audit.db");
    await cli("db", "migrate", "--db", db);
    for (const name of [
      "ops\nlaptop",
      "a\tb",
      "red \u001b[31mtext",
      "x\u202etxt.exe",
      "n".repeat(201),
    ]) {
      await expect(
        cli("tokens", "create", "--role", "read", "--name", name, "--db", db),
        JSON.stringify(name),
      ).rejects.toMatchObject({ code: "validation_failed", details: { field: "name" } });
    }
    expect(JSON.parse((await cli("tokens", "list", "--json", "--db", db)).join("\n"))).toEqual([]);

    // A name stored before names were checked.
    const store = openSqliteStore(db);
    try {
      await createTokensStore(store).insert({
        id: "tok_old",
        name: "old\nname \u001b[2J",
        role: "read",
        tokenHash: "0".repeat(64),
        createdAt: 0,
        lastUsedAt: null,
        revokedAt: null,
      });
    } finally {
      store.close();
    }
    const table = await cli("tokens", "list", "--db", db);
    expect(table).toHaveLength(2);
    expect(table[1]).toContain("old\\u000aname \\u001b[2J");
    expect(table.join("")).not.toContain("\u001b");
  });
});

// `tokens revoke da_…` (the leaked text, pasted where the id goes) answered "no token with id
// da_…", printing the secret again to the terminal or CI log, and left the token live.
describe("decentral-audit tokens revoke given a token's text", () => {
  it("revokes the token that text opens, and never repeats the text", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "tokens-")), "audit.db");
    await cli("db", "migrate", "--db", db);
    const [token] = await cli("tokens", "create", "--role", "ingest", "--name", "ci", "--db", db);
    const printed: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: unknown) => printed.push(String(line)));
    await buildProgram().parseAsync([
      "node",
      "decentral-audit",
      "tokens",
      "revoke",
      token!,
      "--db",
      db,
    ]);
    vi.restoreAllMocks();
    expect(printed.join("\n")).toMatch(/^revoked tok_\w+ at /);
    expect(printed.join("\n")).not.toContain(token);
    const store = openSqliteStore(db);
    try {
      expect(await authenticateToken(store, token!)).toBeNull();
    } finally {
      store.close();
    }
    const unknown = `${token!.slice(0, -4)}AAAA`;
    const refusal = await cli("tokens", "revoke", unknown, "--db", db).catch((e: Error) => e);
    expect(refusal).toMatchObject({ code: "not_found" });
    expect((refusal as Error).message).not.toContain(unknown.slice(9));
    const byId = await cli("tokens", "revoke", "tok_\u001b[2J", "--db", db).catch((e: Error) => e);
    expect((byId as Error).message).not.toContain("\u001b");
  });

  // Pasted from a header, quoted or with a space before it, the text was taken for an id: the
  // token stayed live and the refusal printed it whole.
  it.each([
    ["from a header", (t: string) => `Bearer ${t}`],
    ["after a space", (t: string) => ` ${t}`],
    ["quoted", (t: string) => `"${t}"`],
    ["quoted, with spaces", (t: string) => ` ' ${t}'\n`],
  ])("revokes a token's text pasted %s, and never repeats it", async (_how, paste) => {
    const db = join(mkdtempSync(join(tmpdir(), "tokens-")), "audit.db");
    await cli("db", "migrate", "--db", db);
    const [token] = await cli("tokens", "create", "--role", "admin", "--name", "ci", "--db", db);
    const printed = await cli("tokens", "revoke", paste(token!), "--db", db);
    expect(printed.join("\n")).toMatch(/^revoked tok_[0-9a-f]{16} at /);
    const store = openSqliteStore(db);
    try {
      expect(await authenticateToken(store, token!)).toBeNull();
    } finally {
      store.close();
    }
    // A text found nowhere, pasted so, is not repeated either.
    const other = paste(`${token!.slice(0, -4)}AAAA`);
    const refusal = await cli("tokens", "revoke", other, "--db", db).catch((e: Error) => e);
    expect(refusal).toMatchObject({ code: "not_found" });
    expect((refusal as Error).message).not.toContain(token!.slice(9, -4));
    // Nor is a text of no id's shape, which may be a token's of another program.
    const mistyped = await cli("tokens", "revoke", "xda_admin_secret", "--db", db).catch(
      (e: Error) => e,
    );
    expect((mistyped as Error).message).not.toContain("secret");
    expect((mistyped as Error).message).toMatch(/not shown/);
    const unknownId = await cli("tokens", "revoke", "tok_0123456789abcdef", "--db", db).catch(
      (e: Error) => e,
    );
    expect((unknownId as Error).message).toContain('no token with id "tok_0123456789abcdef"');
  });
});

// Beside another process's write lock (serve's leader in a long round, an import, a backup),
// `tokens create` waited out the busy timeout and printed a bare "database is locked": no file,
// no word of what was not done, where `import` and `verify` say both.
describe("decentral-audit tokens beside a held write lock", () => {
  it("says whose lock it waited for, how long, and that nothing was written", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "tokens-")), "audit.db");
    await cli("db", "migrate", "--db", db);
    const [token] = await cli("tokens", "create", "--role", "read", "--name", "ci", "--db", db);
    const other = new Database(db);
    other.exec("BEGIN IMMEDIATE");
    try {
      const held = (undone: string) => ({
        code: "store_unavailable",
        message: `database is locked: another process (serve, an import, a backup) held the write lock of ${db} through the 5 s wait; ${undone}; running the command again once it is free is safe`,
      });
      await expect(
        cli("tokens", "create", "--role", "read", "--name", "grafana", "--db", db),
      ).rejects.toMatchObject(held("no token was created"));
      await expect(cli("tokens", "revoke", token!, "--db", db)).rejects.toMatchObject(
        held("no token was revoked"),
      );
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    const listed = JSON.parse((await cli("tokens", "list", "--json", "--db", db)).join("\n"));
    expect(listed).toEqual([expect.objectContaining({ name: "ci", revokedAt: null })]);
  }, 60_000);
});
