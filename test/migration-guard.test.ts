import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import { latestKnown, refuseNewerDatabase } from "../src/db/migration-guard.js";

const journalOf = (folder: string) =>
  JSON.parse(readFileSync(join(folder, "meta", "_journal.json"), "utf8")) as {
    entries: { tag: string; when: number }[];
  };

describe("migrations a build does not know", () => {
  it("refuses a migrations folder newer than the build, naming what is newer", () => {
    const folder = mkdtempSync(join(tmpdir(), "migrations-"));
    mkdirSync(join(folder, "meta"));
    const entries = [
      { idx: 0, tag: "0000_first", when: 1000 },
      { idx: 1, tag: "0001_next", when: 2000 },
    ];
    writeFileSync(join(folder, "meta", "_journal.json"), JSON.stringify({ entries }));
    // What a build recorded (dist/migrations-built.json) against the folder it runs beside.
    expect(latestKnown(folder, "sqlite", "0001_next")).toEqual({ tag: "0001_next", millis: 2000 });
    expect(() => latestKnown(folder, "sqlite", "0000_first")).toThrow(
      /holds 0001_next, newer than this build .*npm run build/,
    );
    expect(() => latestKnown(folder, "sqlite", "0002_gone")).toThrow(/does not hold/);
    // Run from source, the checkout's own newest migration is the known one.
    expect(latestKnown(folder, "sqlite", undefined)).toEqual({ tag: "0001_next", millis: 2000 });
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
