import pg from "pg";
import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { createBackfillStore } from "../src/store/backfill.js";
import { createCustodyStore } from "../src/store/custody.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { readJob, seedJob } from "./support/seed-recorder.js";
import { jobRow, seedRows } from "./support/seed-reports.js";

/**
 * Review findings on the PostgreSQL store: each test failed on PostgreSQL before its fix.
 */

/**
 * A PostgreSQL database whose default collation is a linguistic one (en-US, as most servers
 * are initialised), where SQLite compares text bytewise.
 */
function useLinguisticDatabase() {
  const database = usePostgresDatabase();
  const opened: { store: Store; name: string; url: string }[] = [];
  return {
    async open(): Promise<Store> {
      const creator = await database.create();
      const url = new URL(creator);
      const name = `${url.pathname.slice(1)}_icu`;
      const admin = new pg.Client({ connectionString: url.toString() });
      await admin.connect();
      try {
        await admin.query(
          `CREATE DATABASE "${name}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`,
        );
      } finally {
        await admin.end();
      }
      url.pathname = `/${name}`;
      const store = openPostgres(url.toString(), { poolSize: 4, statementTimeoutMs: 30_000 });
      await migratePostgres(store.pool);
      opened.push({ store, name, url: creator });
      return store;
    },
    async closeAll() {
      for (const { store, name, url } of opened.splice(0)) {
        await store.close();
        const admin = new pg.Client({ connectionString: url });
        await admin.connect();
        try {
          await admin.query(`DROP DATABASE IF EXISTS "${name}"`);
        } finally {
          await admin.end();
        }
      }
    },
  };
}

describe.each(dialects)("%s", (dialect) => {
  const stores = useDialectStores(dialect);
  const linguistic = dialect === "postgres" ? useLinguisticDatabase() : null;
  const openStore = () => (linguistic ? linguistic.open() : stores.open());

  it("jobsNaming cuts and orders the jobs naming a signature bytewise, as SQLite does", async () => {
    const store = await openStore();
    try {
      const shared = "shared-signature";
      // Bytewise: "Job-Z" < "job-a" < "job_b"; en-US: "job_b"/"job-a" < "Job-Z".
      const ids = ["job-a", "Job-Z", "job_b"];
      await seedRows(
        store,
        "jobs",
        ids.map((jobId) => jobRow({ jobId, escrowTx: shared })),
      );
      const signatures = createSignatureStore(store);
      const cut = await signatures.jobsNaming([shared], 2);
      expect(cut.named.get(shared)).toEqual(["Job-Z", "job-a"]);
      expect(cut.totals.get(shared)).toBe(3);
      const all = await signatures.jobsNaming([shared], 10);
      expect(all.named.get(shared)).toEqual(["Job-Z", "job-a", "job_b"]);
    } finally {
      await linguistic?.closeAll();
    }
  });

  it("a backfill claim naming one job twice claims it once, as SQLite does", async () => {
    const store = await stores.open();
    const id = "job_twice1";
    await seedJob(store, {
      jobId: id,
      settlementTx: null,
      backfillState: "pending",
      backfillNextAt: 500,
      backfillAttempts: 0,
    });
    const claimed = await createBackfillStore(store).claim(
      [
        { jobId: id, nextAt: 4000 },
        { jobId: id, nextAt: 9000 },
      ],
      [],
      1000,
    );
    // Asked about once: the second claim finds its next attempt already pushed past `at`.
    expect(claimed).toEqual([id]);
    const row = await readJob(store, id);
    expect(row?.backfillAttempts).toBe(1);
    expect(row?.backfillNextAt).toBe(4000);
  });
});

describe("postgres: a verifier's custody store", () => {
  const stores = useDialectStores("postgres");

  it("pins the configured vaults again after the first attempt failed while the database was busy", async () => {
    const admin = await stores.open();
    const store = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 300 });
    if (admin.kind !== "postgres") throw new Error("a PostgreSQL store");
    const holder = await admin.pool.connect();
    try {
      // Another session holds the table: the pin at start times out (a transient failure).
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE credit_vaults IN ACCESS EXCLUSIVE MODE");
      const custody = createCustodyStore(
        store,
        { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 },
        { vaults: ["VaultConfigured1"], byKey: { kf_cfg: "VaultConfigured1" } },
      );
      await expect(custody.pins(["kf_cfg"], [])).rejects.toThrow();
      await holder.query("COMMIT");
      // The database answers again: the process is not left failing every round until restart.
      const pins = await custody.pins(["kf_cfg"], []);
      expect(pins.byKey.get("kf_cfg")).toEqual({ vault: "VaultConfigured1", source: "configured" });
    } finally {
      await holder.query("ROLLBACK").catch(() => {});
      holder.release();
      await store.close();
    }
  });
});
