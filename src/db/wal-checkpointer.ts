import { once } from "node:events";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { Logger } from "../log.js";
import type { Store } from "./client.js";

/**
 * Runs SQLite's WAL checkpoints on a worker thread with its own connection, instead of letting
 * whichever commit crosses the WAL threshold do it on the event loop. A checkpoint writes pages
 * back and fsyncs: on a busy disk that took up to ~18 ms, stalling every proxied response in
 * flight. A PASSIVE checkpoint never blocks writers or readers, so it can run beside them.
 */

// Plain JavaScript evaluated in the worker, so it runs the same from src/ (tsx) and dist/.
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
const checkpoint = () => {
  try {
    const [result] = db.pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage({ log: result.log, checkpointed: result.checkpointed });
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message) });
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on("message", (message) => {
  if (message !== "close") return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
`;

/** Frames in the WAL and frames written back to the database by one checkpoint. */
export interface CheckpointResult {
  log: number;
  checkpointed: number;
}

export interface WalCheckpointer {
  /** Resolves with the result of the next checkpoint (tests, diagnostics). */
  nextCheckpoint(): Promise<CheckpointResult>;
  /** Runs a last checkpoint and stops the worker. */
  close(): Promise<void>;
}

/**
 * Moves the store's WAL checkpoints to a worker thread: turns off auto-checkpointing on the
 * store's connection and checkpoints every `intervalMs` (default 1,000) from the worker. A
 * no-op for `:memory:` stores, which have no WAL to share.
 */
export function startWalCheckpointer(
  store: Store,
  options: { intervalMs?: number; log?: Logger } = {},
): WalCheckpointer {
  const path = store.sqlite.name;
  if (store.sqlite.memory || path === ":memory:" || path === "") {
    return {
      nextCheckpoint: () => Promise.resolve({ log: 0, checkpointed: 0 }),
      close: async () => {},
    };
  }
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: { driver, path, intervalMs: options.intervalMs ?? 1000 },
  });
  let waiting: ((result: CheckpointResult) => void)[] = [];
  worker.on("message", (message: { error?: string } & Partial<CheckpointResult>) => {
    if (message.error) {
      options.log?.warn({ reason: message.error }, "WAL checkpoint failed");
      return;
    }
    const result = { log: message.log ?? 0, checkpointed: message.checkpointed ?? 0 };
    const resolvers = waiting;
    waiting = [];
    for (const resolve of resolvers) resolve(result);
  });
  worker.on("error", (error) => {
    options.log?.error({ err: error }, "WAL checkpointer stopped; SQLite checkpoints in-line");
    store.sqlite.pragma("wal_autocheckpoint = 1000");
  });
  store.sqlite.pragma("wal_autocheckpoint = 0");
  return {
    nextCheckpoint: () => new Promise((resolve) => waiting.push(resolve)),
    async close() {
      const exited = once(worker, "exit");
      worker.postMessage("close");
      await exited;
      if (store.sqlite.open) store.sqlite.pragma("wal_autocheckpoint = 1000");
    },
  };
}
