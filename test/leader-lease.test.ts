import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it, vi } from "vitest";
import { openSqliteStore, type Store } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { thisHost } from "../src/host-identity.js";
import { holdLeaderLease, type LeaderLease } from "../src/leader-lease.js";
import { createLogger } from "../src/log.js";
import { createLockStore } from "../src/store/locks.js";
import { programModules } from "./support/service-process.js";

/** A pid no process has: above Linux's pid_max default and its largest setting. */
const GONE_PID = 4_194_400;

/** Whether this host lets an unprivileged process start a PID namespace of its own. */
const namespaces =
  process.platform === "linux" &&
  spawnSync("unshare", ["-Upf", "--map-root-user", "true"]).status === 0;

let cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

function freshStore(): { db: string; store: Store } {
  const db = join(mkdtempSync(join(tmpdir(), "lease-")), "audit.db");
  const store = openSqliteStore(db);
  migrateStore(store);
  cleanup.push(() => store.close());
  return { db, store };
}

/** Holds the lease in this process and resolves once it leads. */
async function lead(
  store: Store,
  options: { heartbeatMs?: number; ttlMs?: number; onLose?: () => void } = {},
): Promise<LeaderLease> {
  let gained!: () => void;
  const leading = new Promise<void>((resolve) => {
    gained = resolve;
  });
  const lease = holdLeaderLease({
    store,
    log: createLogger({ level: "silent" }),
    heartbeatMs: options.heartbeatMs ?? 100,
    ttlMs: options.ttlMs,
    onGain: () => gained(),
    onLose: async () => options.onLose?.(),
  });
  cleanup.push(() => lease.stop());
  await leading;
  return lease;
}

describe("leader lease", () => {
  it("takes the lease when another connection's write lock frees, without waiting in SQLite", async () => {
    const { db } = freshStore();
    // As `serve` opens it: no busy timeout, so no heartbeat sleeps in SQLite's busy handler
    // (on the event loop of a worker that proxies).
    const store = openSqliteStore(db, { busyTimeoutMs: 0 });
    cleanup.push(() => store.close());
    const other = openSqliteStore(db);
    cleanup.push(() => other.close());
    // Another worker's receipts hold the write lock for 20 ms as the heartbeat comes.
    other.sqlite.exec("BEGIN IMMEDIATE");
    const release = setTimeout(() => other.sqlite.exec("COMMIT"), 20);
    cleanup.push(() => clearTimeout(release));
    const started = performance.now();
    const leading = lead(store, { heartbeatMs: 5000 });
    const within = await Promise.race([
      leading.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000)),
    ]);
    // In this heartbeat, not the next one 5 s later: a leader whose renewals kept meeting a
    // busy lock would see its lease run out under load.
    expect(within).toBe(true);
    expect(performance.now() - started).toBeLessThan(1000);
    await leading;
  });

  it("releases its lease on stop while another worker's receipts hold the write lock", async () => {
    const { db, store: reader } = freshStore();
    // As `serve` opens it: no busy timeout. A drain writes the last receipts as it stops.
    const store = openSqliteStore(db, { busyTimeoutMs: 0 });
    cleanup.push(() => store.close());
    const lease = await lead(store, { heartbeatMs: 5000 });
    const other = openSqliteStore(db);
    cleanup.push(() => other.close());
    other.sqlite.exec("BEGIN IMMEDIATE");
    const release = setTimeout(() => other.sqlite.exec("COMMIT"), 100);
    cleanup.push(() => clearTimeout(release));
    await lease.stop();
    // Left held, the next `serve` (or a worker of this one) waited out its TTL to lead.
    expect(await createLockStore(reader).holder("serve-leader")).toBeNull();
  });

  it("stops leading once its lease runs out unrenewed, as another process may take it then", async () => {
    const { db } = freshStore();
    const store = openSqliteStore(db);
    let lost = 0;
    let lostAt = 0;
    const lease = await lead(store, {
      heartbeatMs: 50,
      ttlMs: 1000,
      onLose: () => {
        lost += 1;
        lostAt = performance.now();
      },
    });
    // The store goes away (a database restart, a failover): every renewal fails.
    store.close();
    const closedAt = performance.now();
    while (lease.isLeader() && performance.now() - closedAt < 5000)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(lease.isLeader()).toBe(false);
    expect(lost).toBe(1);
    // Still leading 300 ms after the close, timed when it stepped down: a check after a fixed
    // wait read the step-down of a process stalled past the TTL (a loaded host) as too early.
    expect(lostAt - closedAt).toBeGreaterThanOrEqual(300);
    // Not before the lease it held could have run out.
    expect(performance.now() - closedAt).toBeGreaterThanOrEqual(900);
  });

  it("names this host's PID namespace in its owner, on Linux", async () => {
    const { store } = freshStore();
    const lease = await lead(store);
    expect(lease.owner.split("/")[0]).toBe(thisHost());
    if (process.platform === "linux")
      expect(thisHost()).toMatch(/^.+@pid:\[\d+\]~[0-9a-f]{8}(~t\d+)?$/);
  });

  it("takes the lease at once from a holder of this host and namespace whose pid is gone", async () => {
    const { store } = freshStore();
    await createLockStore(store).acquire("serve-leader", `${thisHost()}/${GONE_PID}/x`, 60_000);
    const lease = await lead(store);
    expect(lease.isLeader()).toBe(true);
  });

  it.skipIf(process.platform !== "linux")(
    "leaves a holder named by its hostname alone (an owner of an older version) to expire",
    async () => {
      const { store } = freshStore();
      const locks = createLockStore(store);
      await locks.acquire("serve-leader", `${hostname()}/${GONE_PID}/x`, 60_000);
      const lease = holdLeaderLease({
        store,
        log: createLogger({ level: "silent" }),
        heartbeatMs: 50,
        onGain: () => {},
        onLose: async () => {},
      });
      cleanup.push(() => lease.stop());
      // Several heartbeats: none takes it.
      await new Promise((r) => setTimeout(r, 400));
      expect(lease.isLeader()).toBe(false);
      expect((await locks.holder("serve-leader"))?.owner).toBe(`${hostname()}/${GONE_PID}/x`);
    },
  );

  it.skipIf(!namespaces)(
    "is not taken from a live leader by a process in another PID namespace of the same host",
    async () => {
      const { db, store } = freshStore();
      const leader = await lead(store);
      // A process in a PID namespace of its own (as in a container sharing the host's network
      // and hostname) asks for the lease for 2 s, 20 heartbeats; our pid means nothing there.
      const program = programModules();
      const module = (path: string) => JSON.stringify(program.url(path));
      const script = `
        const { openSqliteStore } = await import(${module("db/client")});
        const { holdLeaderLease } = await import(${module("leader-lease")});
        const { createLogger } = await import(${module("log")});
        const store = openSqliteStore(${JSON.stringify(db)});
        const lease = holdLeaderLease({
          store, log: createLogger({ level: "silent" }), heartbeatMs: 100,
          onGain: () => { console.log("gained"); process.exit(0); },
          onLose: async () => {},
        });
        setTimeout(() => { console.log("not gained"); process.exit(0); }, 2000);
      `;
      // Run without blocking this process, whose leader renews its lease meanwhile: a leader
      // held still by a synchronous wait longer than its TTL (a loaded host) is one that ran out.
      const other = await promisify(execFile)(
        "unshare",
        [
          "-Upf",
          "--map-root-user",
          process.execPath,
          ...program.nodeArgs,
          "--input-type=module",
          "-e",
          script,
        ],
        { encoding: "utf8", timeout: 20_000 },
      );
      expect(other.stderr).toBe("");
      expect(other.stdout.trim()).toBe("not gained");
      expect(leader.isLeader()).toBe(true);
      expect((await createLockStore(store).holder("serve-leader"))?.owner).toBe(leader.owner);
    },
    30_000,
  );
});

/** Steps this process's wall clock (Date.now, which the lock store reads) by `ms` from now on. */
function stepClock(ms: number) {
  const now = Date.now.bind(Date);
  const spy = vi.spyOn(Date, "now").mockImplementation(() => now() + ms);
  cleanup.push(() => spy.mockRestore());
}

describe("leader lease under a stepped host clock", () => {
  it("stays with its live leader when the host clock steps 3 minutes forward", async () => {
    const { db, store } = freshStore();
    // A leader that renews each second, as in `serve`; the other worker asks more often, so
    // its heartbeat is the first to read the lease after the step.
    const leader = await lead(store, { heartbeatMs: 1000, ttlMs: 3000 });
    const other = openSqliteStore(db, { busyTimeoutMs: 0 });
    cleanup.push(() => other.close());
    let gained = 0;
    const follower = holdLeaderLease({
      store: other,
      log: createLogger({ level: "silent" }),
      heartbeatMs: 20,
      ttlMs: 3000,
      onGain: () => {
        gained += 1;
      },
      onLose: async () => {},
    });
    cleanup.push(() => follower.stop());
    await new Promise((resolve) => setTimeout(resolve, 100));
    stepClock(180_000);
    // Two of the leader's renewals and about 100 of the follower's heartbeats.
    await new Promise((resolve) => setTimeout(resolve, 2200));
    expect(gained).toBe(0);
    expect(leader.isLeader()).toBe(true);
    expect((await createLockStore(store).holder("serve-leader"))?.owner).toBe(leader.owner);
  });

  it("takes a lease no one renews within its TTL when the host clock stepped 3 minutes back", async () => {
    const { store } = freshStore();
    // The leader of another host (no pid to look at) renewed just before the step, then hung.
    await createLockStore(store).acquire("serve-leader", "elsewhere/4242/x", 500);
    stepClock(-180_000);
    const asked = performance.now();
    const lease = holdLeaderLease({
      store,
      log: createLogger({ level: "silent" }),
      heartbeatMs: 20,
      ttlMs: 500,
      onGain: () => {},
      onLose: async () => {},
    });
    cleanup.push(() => lease.stop());
    while (!lease.isLeader() && performance.now() - asked < 5000)
      await new Promise((resolve) => setTimeout(resolve, 20));
    // Within about its TTL as this process counts time, not 3 minutes later.
    expect(lease.isLeader()).toBe(true);
  });
});
