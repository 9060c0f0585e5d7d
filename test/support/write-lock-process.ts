import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore } from "../../src/db/client.js";
import { migrateStore } from "../../src/db/migrate.js";
import { ingestReceipts } from "../../src/recorder/ingest.js";
import { wireReceipt } from "./recorder-fixtures.js";

/** A migrated SQLite store in a new folder named from `prefix`, holding one receipt; its path. */
export async function storeOfOneReceipt(prefix: string): Promise<string> {
  const db = join(mkdtempSync(join(tmpdir(), prefix)), "audit.db");
  const store = openSqliteStore(db);
  migrateStore(store);
  await ingestReceipts(store, [wireReceipt()], "ingest");
  store.close();
  return db;
}

/**
 * Another process with SQLite file `db` open (a backup, a long import, a serve's leader in a long
 * round) that takes its write lock (BEGIN IMMEDIATE) when told to, and commits `holdMs` after it
 * started. `take` tells it and resolves with what it printed then ("locked" once it holds the
 * lock); `freed()` says whether it has committed; `kill` ends it (SIGKILL), lock and all.
 */
export function writeLockProcess(db: string, holdMs: number) {
  const script = `const Database = require("better-sqlite3");
      const db = new Database(${JSON.stringify(db)});
      process.stdin.once("data", () => { db.exec("BEGIN IMMEDIATE"); console.log("locked"); });
      setTimeout(() => { db.exec("COMMIT"); db.close(); console.log("freed"); }, ${holdMs});`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["pipe", "pipe", "inherit"] });
  let freed = false;
  child.stdout.on("data", (chunk: Buffer) => {
    if (String(chunk).includes("freed")) freed = true;
  });
  return {
    child,
    freed: () => freed,
    async take(): Promise<string> {
      child.stdin.write("lock\n");
      const [chunk] = (await once(child.stdout, "data")) as [Buffer];
      return String(chunk);
    },
    kill: () => child.kill("SIGKILL"),
  };
}
