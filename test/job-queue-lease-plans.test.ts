import { describe, expect, it } from "vitest";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createTestStore, recordPrepared, sqlitePlanOf } from "./support/store.js";

describe("the verifier's lease renewal and release by owner (SQLite)", () => {
  it("read the open jobs through an index, not every job of the table", async () => {
    const store = createTestStore();
    const prepared = recordPrepared(store);
    const queue = createJobQueueStore(store);
    await queue.renewLeases("me", Date.now() + 120_000);
    await queue.releaseLeases("me");
    // The renewal (prepared with the store) and the release of every lease of an owner (at a
    // verifier's stop, and for an owner found dead).
    const byOwner = prepared.filter(
      (text) =>
        /^update "jobs" set .*"jobs"\."lease_owner" = \?/is.test(text) &&
        !text.includes("json_each"),
    );
    expect(byOwner).toHaveLength(2);
    for (const text of byOwner) {
      const plan = sqlitePlanOf(store, text);
      // A full scan read every job inside the write lock: 0.4 to 0.7 s over 300,000 jobs; by
      // the open jobs' verdicts, every open job (29 ms with 50,000 waiting). The leased ones are
      // read by their own index, each then written by its key.
      expect(plan, text).toMatch(/^SEARCH jobs USING (COVERING )?INDEX sqlite_autoindex_jobs_1/);
      expect(plan, text).toMatch(/SEARCH jobs USING INDEX jobs_leased/);
      expect(plan, text).not.toMatch(/jobs_verdict_created|jobs_open_due|SCAN jobs$/m);
    }
  });
});
