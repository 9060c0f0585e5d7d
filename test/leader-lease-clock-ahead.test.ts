import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import type { Store } from "../src/db/client.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { holdLeaderLease } from "../src/leader-lease.js";
import { createLogger } from "../src/log.js";
import type { LockStore } from "../src/store/locks.js";

/**
 * A worker finds no lease, and another host's process takes it before this worker's own write:
 * that write judged the new lease by this host's wall clock. A clock ahead by more than the TTL
 * read the live lease as expired and overwrote it, and two processes led until the next
 * heartbeat, when the lease moved to the host with the fast clock. Between the worker's read
 * and its write the other host's acquire is made here by hand (a wrapped lock store).
 */

const hooks: { afterHolderRead?: (store: Store) => Promise<void> } = {};

vi.mock("../src/store/locks.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../src/store/locks.js")>();
  return {
    ...actual,
    createLockStore(store: Store): LockStore {
      const locks = actual.createLockStore(store);
      return {
        ...locks,
        async holder(name) {
          const seen = await locks.holder(name);
          const hook = hooks.afterHolderRead;
          hooks.afterHolderRead = undefined;
          await hook?.(store);
          return seen;
        },
      };
    },
  };
});

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

it("leaves a live lease taken between its read and its write when this host's clock is ahead", async () => {
  const db = join(mkdtempSync(join(tmpdir(), "lease-ahead-")), "audit.db");
  const store = openSqliteStore(db, { busyTimeoutMs: 0 });
  migrateStore(store);
  cleanup.push(() => store.close());
  const { createLockStore } =
    await vi.importActual<typeof import("../src/store/locks.js")>("../src/store/locks.js");
  const realNow = Date.now.bind(Date);
  const other = "elsewhere/4242/x";
  // The other host's leader takes the lease by its own (right) clock, for 60 s.
  hooks.afterHolderRead = async () => {
    expect(await createLockStore(store).acquire("serve-leader", other, 60_000, realNow())).toBe(
      null,
    );
  };
  // This host's clock is 3 minutes ahead.
  const spy = vi.spyOn(Date, "now").mockImplementation(() => realNow() + 180_000);
  cleanup.push(() => spy.mockRestore());
  let gained = 0;
  const lease = holdLeaderLease({
    store,
    log: createLogger({ level: "silent" }),
    heartbeatMs: 20,
    ttlMs: 3_000,
    onGain: () => {
      gained += 1;
    },
    onLose: async () => {},
  });
  cleanup.push(() => lease.stop());
  // About ten heartbeats, all well within the other lease's TTL on any clock.
  await new Promise((resolve) => setTimeout(resolve, 250));
  expect(hooks.afterHolderRead).toBeUndefined();
  expect(gained).toBe(0);
  expect((await createLockStore(store).holder("serve-leader"))?.owner).toBe(other);
});
