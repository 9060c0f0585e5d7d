import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import {
  LATEST_MIGRATION,
  latestKnownMillis,
  refuseNewerDatabase,
} from "../src/db/migration-guard.js";
import { pgMigrationsFolder } from "../src/db/pg/migrate.js";

const journalOf = (folder: string) =>
  JSON.parse(readFileSync(join(folder, "meta", "_journal.json"), "utf8")) as {
    entries: { tag: string; when: number }[];
  };

describe("migrations a build does not know", () => {
  it("names, for each dialect, the last migration of its journal", () => {
    // A migration added without this constant would be refused by the build that adds it.
    expect(journalOf(migrationsFolder).entries.at(-1)?.tag).toBe(LATEST_MIGRATION.sqlite);
    expect(journalOf(pgMigrationsFolder).entries.at(-1)?.tag).toBe(LATEST_MIGRATION.postgres);
  });

  it("refuses a migrations folder newer than the build, naming what is newer", () => {
    const folder = mkdtempSync(join(tmpdir(), "migrations-"));
    mkdirSync(join(folder, "meta"));
    const entries = [
      { idx: 0, tag: "0000_first", when: 1000 },
      { idx: 1, tag: "0001_next", when: 2000 },
    ];
    writeFileSync(join(folder, "meta", "_journal.json"), JSON.stringify({ entries }));
    expect(latestKnownMillis(folder, "0001_next")).toBe(2000);
    expect(() => latestKnownMillis(folder, "0000_first")).toThrow(
      /holds 0001_next, newer than this build .*npm run build/,
    );
    expect(() => latestKnownMillis(folder, "0002_gone")).toThrow(/does not hold/);
    expect(() => refuseNewerDatabase(2001, 2000, "0001_next")).toThrow(/upgraded by a newer/);
    expect(() => refuseNewerDatabase(2000, 2000, "0001_next")).not.toThrow();
  });

  it("leaves untouched a database a newer version has migrated", () => {
    const path = join(mkdtempSync(join(tmpdir(), "newer-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    const latest = journalOf(migrationsFolder).entries.at(-1)!.when;
    store.sqlite
      .prepare(`INSERT INTO "__drizzle_migrations" ("hash", "created_at") VALUES ('x', ?)`)
      .run(latest + 1);
    expect(() => migrateStore(store)).toThrow(/upgraded by a newer version/);
    store.close();
  });
});
