import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { Logger } from "../log.js";
import type { SqliteStore } from "./client.js";
import { JOURNAL_SIZE_LIMIT, setAutoCheckpoint } from "./client.js";
import { deltaFoldRows, foldRollupDeltasSql, rollupDeltasTable } from "./rollups.js";

/**
 * Runs SQLite's WAL checkpoints on a worker thread with its own connection, instead of letting
 * whichever commit crosses the WAL threshold do it on the event loop. A checkpoint writes pages
 * back and fsyncs: on a busy disk that took up to ~18 ms, stalling every proxied response in
 * flight. A PASSIVE checkpoint never blocks writers or readers, so it can run beside them.
 *
 * PASSIVE alone does not bound the WAL: while readers keep old snapshots open (reports, other
 * processes) it cannot copy the last frames back, the WAL is never reset, and under continuous
 * writes it grew past 1 GB. So when the file passes `truncateAboveBytes`, the worker runs a
 * TRUNCATE checkpoint, which waits (briefly, `truncateBusyMs`) for readers to move on, writes
 * everything back and cuts the file to zero; `journal_size_limit` on every connection cuts it
 * back whenever a writer restarts a fully checkpointed WAL.
 *
 * The same thread sums the pending rollup deltas into `job_rollups` (src/db/rollups.ts) once
 * `foldAboveRows` are pending, in a write transaction of its own. Left to the fold trigger, the
 * write that added the 1,024th delta (a proxied receipt, one in 1,024) summed them all on the
 * event loop: about 10 ms in which no response moved. A receipt commit that finds the thread's
 * fold holding the write lock is retried from a timer (src/recorder/receipt-writer.ts); the
 * trigger stays, for the writers of a process without this thread.
 */

// Plain JavaScript evaluated in the worker, so it runs the same from src/ (tsx) and dist/.
const workerSource = `
const { statSync } = require("node:fs");
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma("busy_timeout = 5000");
db.pragma("journal_size_limit = " + workerData.journalSizeLimit);
const walSize = () => {
  try {
    return statSync(workerData.path + "-wal").size;
  } catch {
    return 0;
  }
};
// After a TRUNCATE that could not finish, skip that many ticks (doubling, at most 4) before the
// next one: a longer pause let the WAL grow by gigabytes in a soak while readers kept coming.
let skipTruncate = 0;
let truncateBackoff = 1;
// Changes whenever another connection commits. While it holds the value it had when a
// checkpoint left nothing in the WAL to write back (and the file needs no cutting), a tick has
// nothing to do: an idle service ran a checkpoint, a stat and a message to its event loop
// every second for nothing.
const dataVersion = db.prepare("PRAGMA data_version").pluck();
let settledAt = null;
let runs = 0;
// The main thread waits for a result (nextCheckpoint): the next tick runs and answers.
let wanted = false;
const checkpoint = () => {
  try {
    const version = dataVersion.get();
    if (!wanted && version === settledAt) return;
    wanted = false;
    let [result] = db.pragma("wal_checkpoint(PASSIVE)");
    let mode = "PASSIVE";
    if (skipTruncate > 0) {
      skipTruncate--;
    } else if (walSize() > workerData.truncateAboveBytes) {
      // TRUNCATE holds new writers back while it waits for readers: keep that wait short, and
      // back off when a reader is still there, so a long report cannot starve the writers.
      // Far past the threshold, wait a little longer for readers: a WAL that keeps growing costs
      // every reader more than a short pause of the writers does.
      const far = walSize() > 4 * workerData.truncateAboveBytes;
      db.pragma("busy_timeout = " + (far ? 3 : 1) * workerData.truncateBusyMs);
      try {
        [result] = db.pragma("wal_checkpoint(TRUNCATE)");
        mode = "TRUNCATE";
      } finally {
        db.pragma("busy_timeout = 5000");
      }
      if (result.busy) {
        skipTruncate = truncateBackoff;
        truncateBackoff = Math.min(truncateBackoff * 2, 4);
      } else {
        truncateBackoff = 1;
      }
    }
    const walBytes = walSize();
    settledAt =
      result.busy === 0 && result.log === result.checkpointed && skipTruncate === 0 &&
      walBytes <= workerData.truncateAboveBytes
        ? version
        : null;
    parentPort.postMessage({
      log: result.log,
      checkpointed: result.checkpointed,
      busy: result.busy,
      mode,
      walBytes,
      runs: ++runs,
    });
  } catch (error) {
    settledAt = null;
    parentPort.postMessage({ error: String(error && error.message), walBytes: walSize() });
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
// The rollup fold: looked at only when another connection committed since the last look. The
// table is read by its rowid, which counts the pending rows (it restarts at 1 once emptied).
let foldSeen = null;
let foldFailed = false;
let pendingDeltas = null;
let foldTransaction = null;
const fold = () => {
  try {
    const version = dataVersion.get();
    if (version === foldSeen) return;
    foldSeen = version;
    pendingDeltas ??= db.prepare(workerData.pendingDeltasSql).pluck();
    if (!(Number(pendingDeltas.get()) >= workerData.foldAboveRows)) return;
    if (foldTransaction === null) {
      const statements = workerData.foldSql.map((text) => db.prepare(text));
      foldTransaction = db.transaction(() => {
        for (const statement of statements) statement.run();
      });
    }
    foldTransaction.immediate();
    foldFailed = false;
    // Its own commit does not move this connection's data_version: the next tick checkpoints.
    wanted = true;
  } catch (error) {
    foldSeen = null;
    // A write lock held past the busy timeout (a long import): the next tick tries again.
    if (error && error.code === "SQLITE_BUSY") return;
    if (!foldFailed) parentPort.postMessage({ foldError: String(error && error.message) });
    foldFailed = true;
  }
};
const foldTimer = setInterval(fold, workerData.foldIntervalMs);
parentPort.on("message", (message) => {
  if (message === "checkpoint") {
    wanted = true;
    checkpoint();
    return;
  }
  if (message === "want") {
    wanted = true;
    return;
  }
  if (message !== "close") return;
  clearInterval(timer);
  clearInterval(foldTimer);
  wanted = true;
  checkpoint();
  db.close();
  parentPort.close();
});
`;

/** Frames in the WAL and frames written back to the database by one checkpoint. */
export interface CheckpointResult {
  log: number;
  checkpointed: number;
  /** 1 when a TRUNCATE checkpoint could not finish (a reader or writer was in the way). */
  busy?: number;
  mode?: "PASSIVE" | "TRUNCATE";
  /** Size of the -wal file after the checkpoint, in bytes. */
  walBytes?: number;
  /** Checkpoints the worker has run so far, this one included. */
  runs?: number;
}

export interface WalCheckpointer {
  /**
   * Resolves with the result of the next checkpoint (tests, diagnostics): the next tick runs
   * one even when nothing was committed since the WAL was last written back.
   */
  nextCheckpoint(): Promise<CheckpointResult>;
  /**
   * Checkpoints run so far, as of the last one reported. A tick finding nothing committed since
   * a checkpoint left the WAL written back (and small) runs none.
   */
  runs(): number;
  /** Size of the -wal file at the last checkpoint, in bytes (0 for `:memory:`). */
  walBytes(): number;
  /** Runs a last checkpoint and stops the worker. */
  close(): Promise<void>;
}

export interface WalCheckpointerOptions {
  /** How often to checkpoint, in ms. Default 1000. */
  intervalMs?: number;
  /** WAL size above which a TRUNCATE checkpoint is run. Default 64 MiB. */
  truncateAboveBytes?: number;
  /** How long a TRUNCATE checkpoint waits for readers and writers, in ms. Default 100. */
  truncateBusyMs?: number;
  /** How often the pending rollup deltas are counted, in ms. Default 100. */
  foldIntervalMs?: number;
  /**
   * Pending rollup deltas from which the thread sums them. Default half the fold trigger's
   * count: each fold costs about the same for 100 rows as for 500 (its groups, not its rows),
   * so folding often costs CPU, while each fold holds the write lock a little longer per row.
   */
  foldAboveRows?: number;
  log?: Logger;
  /** Given the worker thread once it starts (tests: to end it as a crash would). */
  thread?: (worker: Worker) => void;
}

/**
 * Moves the store's WAL checkpoints to a worker thread: turns off auto-checkpointing on the
 * store's connection and checkpoints every `intervalMs` from the worker. A no-op for
 * `:memory:` stores, which have no WAL to share.
 */
export function startWalCheckpointer(
  store: SqliteStore,
  options: WalCheckpointerOptions = {},
): WalCheckpointer {
  const path = store.sqlite.name;
  if (store.sqlite.memory || path === ":memory:" || path === "") {
    return {
      nextCheckpoint: () => Promise.resolve({ log: 0, checkpointed: 0 }),
      walBytes: () => 0,
      runs: () => 0,
      close: async () => {},
    };
  }
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: {
      driver,
      path,
      intervalMs: options.intervalMs ?? 1000,
      truncateAboveBytes: options.truncateAboveBytes ?? JOURNAL_SIZE_LIMIT,
      truncateBusyMs: options.truncateBusyMs ?? 100,
      journalSizeLimit: JOURNAL_SIZE_LIMIT,
      foldIntervalMs: options.foldIntervalMs ?? 100,
      foldAboveRows: options.foldAboveRows ?? deltaFoldRows / 2,
      foldSql: foldRollupDeltasSql(),
      pendingDeltasSql: `SELECT coalesce(max(rowid), 0) FROM ${rollupDeltasTable}`,
    },
  });
  let lastWalBytes = 0;
  let runs = 0;
  let waiting: ((result: CheckpointResult) => void)[] = [];
  worker.on(
    "message",
    (message: { error?: string; foldError?: string } & Partial<CheckpointResult>) => {
      if (message.foldError !== undefined) {
        options.log?.warn(
          { reason: message.foldError },
          "rollup fold failed; the fold trigger sums them",
        );
        return;
      }
      if (message.walBytes !== undefined) lastWalBytes = message.walBytes;
      if (message.runs !== undefined) runs = message.runs;
      if (message.error) {
        options.log?.warn({ reason: message.error }, "WAL checkpoint failed");
        return;
      }
      const result: CheckpointResult = {
        log: message.log ?? 0,
        checkpointed: message.checkpointed ?? 0,
        busy: message.busy ?? 0,
        mode: message.mode ?? "PASSIVE",
        walBytes: lastWalBytes,
        runs,
      };
      if (result.mode === "TRUNCATE") {
        options.log?.info({ ...result }, "WAL over its size threshold: truncating checkpoint");
      }
      const resolvers = waiting;
      waiting = [];
      for (const resolve of resolvers) resolve(result);
    },
  );
  let closing = false;
  // Watched from the start: close() after the thread already ended waited for an exit that had
  // come and gone, and a service stopping after a crash of the thread never stopped.
  let ended = false;
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  worker.on("error", (error) => {
    options.log?.error({ err: error }, "WAL checkpointer failed");
  });
  // Any end but close() (an error, the thread ended): every connection that left its
  // checkpoints to the thread, the receipt writer's and the lease's too, goes back to in-line
  // ones, or the WAL grows for as long as only they write.
  worker.on("exit", (code) => {
    ended = true;
    if (closing) return;
    options.log?.error({ code }, "WAL checkpointer stopped; SQLite checkpoints in-line");
    setAutoCheckpoint(store, 1000);
    const resolvers = waiting;
    waiting = [];
    for (const resolve of resolvers)
      resolve({ log: 0, checkpointed: 0, walBytes: lastWalBytes, runs });
  });
  options.thread?.(worker);
  store.sqlite.pragma("wal_autocheckpoint = 0");
  return {
    nextCheckpoint: () =>
      new Promise((resolve) => {
        if (ended) return resolve({ log: 0, checkpointed: 0, walBytes: lastWalBytes, runs });
        if (waiting.length === 0) worker.postMessage("want");
        waiting.push(resolve);
      }),
    walBytes: () => lastWalBytes,
    runs: () => runs,
    async close() {
      closing = true;
      worker.postMessage("close");
      await exited;
      setAutoCheckpoint(store, 1000);
    },
  };
}
