import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { cliArgv } from "./support/service-process.js";

function migratedStore(): string {
  const path = join(mkdtempSync(join(tmpdir(), "cli-entry-")), "audit.db");
  const store = openSqliteStore(path);
  migrateStore(store);
  store.close();
  return path;
}

describe("CLI flags that only mean something with another", () => {
  // `report account-snapshot --vault X` without --list asked GET /v1/account about the key's own
  // vault and kept that snapshot, printed as if it were of X.
  it("refuses report account-snapshot --vault without --list, asking nothing and keeping nothing", () => {
    const db = migratedStore();
    const run = spawnSync(
      process.execPath,
      cliArgv([
        "report",
        "account-snapshot",
        "--vault",
        "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
        "--db",
        db,
      ]),
      {
        encoding: "utf8",
        timeout: 30_000,
        env: {
          ...process.env,
          DECENTRAL_API_KEY: "dcntrl_test_entryEntryEntryEntryEntryEntry12",
          DECENTRAL_BASE_URL: "http://127.0.0.1:9/v1",
          SOLANA_RPC_URLS: "http://127.0.0.1:9",
        },
      },
    );
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("--vault: only with --list");
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toContain("dcntrl_test_entryEntryEntryEntryEntryEntry12");
    const store = openSqliteStore(db);
    try {
      const kept = store.sqlite.prepare("SELECT count(*) AS n FROM account_snapshots").get();
      expect(kept).toEqual({ n: 0 });
    } finally {
      store.close();
    }
  });
});
