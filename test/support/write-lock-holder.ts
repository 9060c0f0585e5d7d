import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/**
 * Another connection, on its own thread, that takes the database's write lock (BEGIN IMMEDIATE
 * and a write) and keeps it for `holdMs`, then commits, as a second process's transaction would
 * (the commit is what makes a deferred read-then-write fail: its snapshot is then stale). A thread,
 * not this one: a connection waiting for the lock blocks its own event loop in SQLite's busy
 * loop, so the holder must run beside it.
 *
 * `holdWriteLockSync` returns once the lock is held (it blocks on a shared flag, so it can be
 * called from inside synchronous code under test); `release()` lets it go before `holdMs` (a
 * test that has seen what it waited for need not wait out the rest); `released` settles when it
 * is let go.
 */
const source = `
const { workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const flag = new Int32Array(workerData.flag);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
db.exec("BEGIN IMMEDIATE");
db.exec("CREATE TABLE IF NOT EXISTS lock_holder (n INTEGER)");
db.exec("INSERT INTO lock_holder VALUES (1)");
Atomics.store(flag, 0, 1);
Atomics.notify(flag, 0);
Atomics.wait(flag, 1, 0, workerData.holdMs);
db.exec("COMMIT");
db.close();
Atomics.store(flag, 0, 2);
`;

export function holdWriteLockSync(
  path: string,
  holdMs: number,
): { release(): void; released: Promise<void> } {
  return startHolder(source, { path, holdMs });
}

/**
 * Runs a holder's `code` on a thread of its own with `data` (and the driver, and the shared
 * flag: [0] set to 1 once it holds the lock, [1] set to let it go), and returns once it holds it.
 */
function startHolder(
  code: string,
  data: Record<string, unknown>,
): { release(): void; released: Promise<void> } {
  const flag = new SharedArrayBuffer(8);
  const view = new Int32Array(flag);
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(code, { eval: true, workerData: { ...data, driver, flag } });
  const exited = new Promise<void>((resolve, reject) => {
    worker.once("exit", () => resolve());
    worker.once("error", reject);
  });
  // Wait (bounded) until the holder has the lock.
  Atomics.wait(view, 0, 0, 10_000);
  if (Atomics.load(view, 0) !== 1) throw new Error("the lock holder did not get the lock");
  const release = () => {
    Atomics.store(view, 1, 1);
    Atomics.notify(view, 1);
  };
  return { release, released: exited };
}

const pacedSource = `
const { workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const flag = new Int32Array(workerData.flag);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
db.exec("CREATE TABLE IF NOT EXISTS lock_holder (n INTEGER)");
let held = 0;
while (Atomics.load(flag, 1) === 0) {
  db.exec("BEGIN IMMEDIATE");
  db.exec("INSERT INTO lock_holder VALUES (1)");
  if (held++ === 0) {
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  }
  Atomics.wait(flag, 1, 0, workerData.holdMs);
  db.exec("COMMIT");
  Atomics.wait(flag, 1, 0, workerData.freeMs);
}
db.close();
`;

/**
 * Another connection, on its own thread, that takes the write lock for `holdMs`, leaves it free
 * `freeMs`, and again, until `release()`: as `import` paces its transactions beside a service.
 * Returns once it first holds the lock.
 */
export function paceWriteLockSync(
  path: string,
  holdMs: number,
  freeMs: number,
): { release(): void; released: Promise<void> } {
  return startHolder(pacedSource, { path, holdMs, freeMs });
}
