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

describe("--help says what the README says", () => {
  const help = (...command: string[]) => {
    const run = spawnSync(process.execPath, cliArgv([...command, "--help"]), {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(run.status).toBe(0);
    // commander wraps at 80 columns: compare the words, not the lines.
    return run.stdout.replace(/\s+/g, " ");
  };

  // A cron script reading `verify --help` took exit 1 for "a job is not verified" only: a night
  // whose jobs all verified but whose credit vault lost money no receipt explains, or one with
  // fewer jobs than --min-jobs, exits 1 too.
  it("verify names every outcome that exits 1", () => {
    const text = help("verify");
    expect(text).toContain("credit vault ledger finding");
    expect(text).toContain("fewer jobs than --min-jobs");
    expect(text).toContain("epoch seconds");
  });

  // `--window yesterday` and dates are the zone's days with --time-zone; the help said UTC only.
  it("report reconciliation says its days follow --time-zone", () => {
    const text = help("report", "reconciliation");
    expect(text).toContain("the previous day, [00:00, 00:00), in UTC or --time-zone");
    expect(text).toContain("(UTC, or --time-zone's days)");
    expect(text).toContain("epoch seconds");
  });
});
