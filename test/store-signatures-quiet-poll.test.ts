import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createSignatureStore } from "../src/store/signatures.js";

const dir = mkdtempSync(join(tmpdir(), "quiet-poll-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const t = Date.UTC(2026, 10, 1);
const poll = (at: number, currentSlot: number) => ({ currentSlot, dropAfterSlots: 150, t: at });
const missing = (...signatures: string[]) =>
  signatures.map((signature) => ({ signature, status: null }));

describe("a status poll of signatures still unseen (SQLite)", () => {
  it("takes no write lock for rows as read, and reads again a row another process moved", async () => {
    const path = join(dir, "audit.db");
    const store = openSqliteStore(path, { busyTimeoutMs: 200 });
    migrateStore(store);
    const other = new Database(path);
    try {
      const signatures = createSignatureStore(store);
      await signatures.track(["a", "b", "c"], t);
      await signatures.recordStatuses(missing("a", "b", "c"), poll(t + 1, 100));
      const known = await signatures.load(["a", "b", "c"]);
      // Another process finds b landed meanwhile.
      other
        .prepare(
          `UPDATE chain_transactions SET state = 'landed', commitment = 'confirmed', slot = 120,
             status_checked_at = ?, not_found_since = NULL, not_found_slot = NULL
           WHERE signature = 'b'`,
        )
        .run(t + 5);

      // A receipt writer holds the write lock: a poll that changes nothing does not wait for it
      // (it waited the busy timeout, then failed the round).
      other.exec("BEGIN IMMEDIATE");
      const quiet = await signatures.recordStatuses(missing("a", "c"), poll(t + 10, 200), known);
      other.exec("COMMIT");
      expect(quiet.get("a")).toMatchObject({ state: "unknown", notFoundSince: t + 1 });
      expect(quiet.get("c")).toMatchObject({ state: "unknown", notFoundSlot: 100 });

      // The moved row is read as stored and its first miss written, as without `known`.
      const after = await signatures.recordStatuses(missing("a", "b"), poll(t + 20, 200), known);
      expect(after.get("b")).toMatchObject({
        state: "landed",
        commitment: "confirmed",
        notFoundSince: t + 20,
        notFoundSlot: 200,
        statusCheckedAt: t + 20,
      });
      expect(after.get("a")).toMatchObject({ state: "unknown", statusCheckedAt: t + 1 });

      // A poll that drops it is written whatever was read.
      const dropped = await signatures.recordStatuses(missing("a", "c"), poll(t + 30, 251), known);
      expect(dropped.get("a")).toMatchObject({ state: "dropped", statusCheckedAt: t + 30 });
      expect((await signatures.load(["c"])).get("c")).toMatchObject({ state: "dropped" });
    } finally {
      other.close();
      store.close();
    }
  });
});
