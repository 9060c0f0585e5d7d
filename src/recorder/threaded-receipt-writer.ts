import type { Worker } from "node:worker_threads";
import { followCheckpointsBy, type SqliteStore, sqliteFileOf } from "../db/client.js";
import { AppError, type ErrorCode } from "../errors.js";
import { rawLineWriter } from "../log.js";
import type { WriteUnitData } from "../store/write-unit.js";
import { startModuleThread } from "../thread-entry.js";
import { recordWriterThreadCommit } from "./commit-hold.js";
import type {
  ReceiptWriter,
  ReceiptWriterOptions,
  RunOptions,
  WriterHealth,
  WriteTask,
} from "./receipt-writer.js";

/** The numeric options of the writer, as the thread is sent them. */
type ThreadOptions = Omit<ReceiptWriterOptions, "log" | "commitTimes">;

/** What the receipt writer's thread (receipt-writer-thread.ts) is started with. */
export interface WriterThreadData {
  path: string;
  options: ThreadOptions;
  /** The process's checkpoint policy (`wal_autocheckpoint` pages) when it starts. */
  autocheckpoint: number;
  logLevel: string;
}

/** An error of a task, as sent back: an `AppError` keeps its code and details. */
export interface SentError {
  message: string;
  name?: string;
  /** A SQLite error's code (`SQLITE_FULL`, …). */
  code?: string;
  app?: { code: ErrorCode; details: Record<string, unknown> };
}

export type Settled =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: SentError };

export type ToWriterThread =
  | { type: "run"; items: { id: number; data: WriteUnitData; keep: boolean }[] }
  | { type: "autocheckpoint"; pages: number }
  | { type: "close" };

export type FromWriterThread =
  | { type: "ready"; health: WriterHealth }
  | { type: "settled"; items: Settled[]; commits: number[]; health: WriterHealth }
  | { type: "keep"; id: number }
  | { type: "log"; line: string }
  | { type: "closed" };

interface Pending {
  data: WriteUnitData;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  keep?: () => void;
  kept: boolean;
}

/** A task refused because the thread ended: the database is not taking receipts (503). */
function threadEnded(what: string): AppError {
  return new AppError("store_unavailable", `the receipt writer's thread ended ${what}`);
}

/** The error a task of the thread failed with, rebuilt in this thread. */
function receivedError(sent: SentError): Error {
  if (sent.app) return new AppError(sent.app.code, sent.message, sent.app.details);
  const error = new Error(sent.message);
  if (sent.name) error.name = sent.name;
  if (sent.code) Object.assign(error, { code: sent.code });
  return error;
}

/**
 * The SQLite receipt writer in a worker thread of its own (receipt-writer-thread.ts): the same
 * group commits, retries and promises as `createReceiptWriter`'s, but no `BEGIN IMMEDIATE` …
 * `COMMIT` runs on this event loop, which proxies every byte. A task is sent as data (its
 * `WriteUnit.data`), in one message with the others of its event-loop turn; its promise settles
 * when the thread's commit is durable, one message back per group. The cost is that message's
 * round trip on each receipt, against a loop no commit holds (at 16 in flight 8% to 30% of the
 * loop's group commits took over 1 ms, some 20 ms). For a file database only: `:memory:` is
 * one connection's.
 *
 * Resolves once the thread has opened its connection. Should the thread end on its own (a
 * crash), the tasks it held are rejected (their clients are answered 503, as for a database
 * refusing writes), new work is turned away (`full()`) and a new thread is started after
 * `restartMs` (1 s).
 */
export async function startThreadedReceiptWriter(
  store: SqliteStore,
  options: ReceiptWriterOptions & {
    /** Called with each thread started (tests end one to see the writer start another). */
    thread?: (worker: Worker) => void;
    /** How long after a thread ended on its own the next one is started, in ms. Default 1000. */
    restartMs?: number;
  },
): Promise<ReceiptWriter> {
  const {
    log,
    commitTimes: _ignored,
    thread: onThread,
    restartMs = 1000,
    ...threadOptions
  } = options;
  const path = sqliteFileOf(store);
  if (path === null) throw new Error("a receipt writer thread needs a database file, not :memory:");
  const maxBacklog = options.maxBacklog ?? 2000;
  const writeLine = rawLineWriter(log);
  const here = import.meta.url;
  const fromSource = here.endsWith(".ts");
  const entry = new URL(
    fromSource ? "./receipt-writer-thread.ts" : "./receipt-writer-thread.js",
    here,
  );

  const pending = new Map<number, Pending>();
  let nextId = 0;
  let kept = 0;
  let outbox: { id: number; data: WriteUnitData; keep: boolean }[] = [];
  let sending = false;
  let health: WriterHealth = { reachable: true };
  /** No thread takes tasks (it ended and the next one has not started). */
  let down: { since: number; error: string } | null = null;
  let closing = false;
  /** A thread has started once: one that ends after that is started again. */
  let everReady = false;
  let idleWaiters: (() => void)[] = [];
  let thread!: Worker;
  let closed!: Promise<void>;

  // Idle as the in-process writer is: when nothing waits but the writes kept while the
  // database refuses them (a drain would otherwise wait for a disk that may not come back).
  const settleIdle = () => {
    if (pending.size > kept) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const w of waiters) w();
  };
  const settle = (item: Settled) => {
    const waiting = pending.get(item.id);
    if (!waiting) return;
    pending.delete(item.id);
    if (waiting.kept) kept--;
    if (item.ok) waiting.resolve(item.value);
    else waiting.reject(receivedError(item.error));
  };
  const send = () => {
    sending = false;
    // While no thread runs, what may wait waits here for the next one.
    if (outbox.length === 0 || down) return;
    const items = outbox;
    outbox = [];
    thread.postMessage({ type: "run", items } satisfies ToWriterThread);
  };

  /** The process's checkpoint policy (`wal_autocheckpoint` pages), followed by the thread. */
  let autocheckpoint = 0;
  const unfollow = followCheckpointsBy(store, (pages) => {
    autocheckpoint = pages;
    thread?.postMessage({ type: "autocheckpoint", pages } satisfies ToWriterThread);
  });

  const spawn = (): Promise<void> => {
    const workerData: WriterThreadData = {
      path,
      options: threadOptions,
      autocheckpoint,
      logLevel: log.level,
    };
    thread = startModuleThread(entry, workerData);
    const current = thread;
    onThread?.(current);
    let ready!: () => void;
    let failed!: (error: unknown) => void;
    const started = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    let threadError: unknown = null;
    current.on("message", (message: FromWriterThread) => {
      switch (message.type) {
        case "log":
          return writeLine(message.line);
        case "ready":
          health = message.health;
          down = null;
          everReady = true;
          send();
          return ready();
        case "settled":
          health = message.health;
          for (const c of message.commits) recordWriterThreadCommit(c);
          for (const item of message.items) settle(item);
          return settleIdle();
        case "keep": {
          const waiting = pending.get(message.id);
          if (waiting && !waiting.kept) {
            waiting.kept = true;
            kept++;
            waiting.keep?.();
            settleIdle();
          }
          return;
        }
        case "closed":
          // Everything it had to say came before this: it ends now, whatever it still holds.
          void current.terminate();
          return;
      }
    });
    current.on("error", (error) => {
      threadError = error;
      log.error({ err: error }, "the receipt writer's thread failed");
    });
    closed = new Promise<void>((resolve) => {
      current.once("exit", (code) => {
        resolve();
        failed(threadError ?? new Error(`the receipt writer's thread ended (code ${code})`));
        // What it held may or may not be committed. A write that may be kept (what a client
        // already has: a stream's completion) goes to the next thread, which writes it again
        // (a receipt written twice is a duplicate); the others' callers answer as for a refused
        // write (a 503 withholds an answer).
        const restart = !closing && everReady;
        outbox = [];
        for (const [id, waiting] of [...pending]) {
          if (restart && waiting.keep) {
            outbox.push({ id, data: waiting.data, keep: true });
            continue;
          }
          pending.delete(id);
          if (waiting.kept) kept--;
          waiting.reject(threadEnded("before committing this"));
        }
        settleIdle();
        // A first thread that could not start fails the start instead (the caller stops).
        if (!restart) return;
        down = { since: Date.now(), error: "the receipt writer's thread ended" };
        log.error(
          { code },
          `the receipt writer's thread ended; starting it again in ${restartMs / 1000} s`,
        );
        setTimeout(() => {
          if (!closing) spawn().catch(() => {});
        }, restartMs).unref();
      });
    });
    return started;
  };
  await spawn();

  return {
    run<T>(task: WriteTask<T>, runOptions?: RunOptions): Promise<T> {
      if (closing) return Promise.reject(new Error("the receipt writer is closed"));
      const data = task.data;
      if (!data) {
        return Promise.reject(
          new Error("a task for the receipt writer's thread must carry its data"),
        );
      }
      // Refused as a database refusing writes refuses it; one that may be kept waits.
      if (down && !runOptions?.keep) return Promise.reject(threadEnded("and is starting again"));
      return new Promise<T>((resolve, reject) => {
        const id = nextId++;
        const waiting: Pending = {
          data,
          resolve: resolve as (v: unknown) => void,
          reject,
          kept: false,
        };
        if (runOptions?.keep) waiting.keep = runOptions.keep;
        pending.set(id, waiting);
        outbox.push({ id, data, keep: runOptions?.keep !== undefined });
        // The tasks of one callback go in one message (one group); sent before the loop turns.
        if (!sending) {
          sending = true;
          queueMicrotask(send);
        }
      });
    },
    backlog: () => pending.size - kept,
    full: () => pending.size - kept >= maxBacklog || !health.reachable || down !== null,
    health: (): WriterHealth =>
      down
        ? { reachable: false, since: down.since, error: down.error, waiting: pending.size }
        : health,
    idle() {
      if (pending.size <= kept) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    async close() {
      closing = true;
      unfollow();
      if (down) {
        // No thread to give them to: their callers log them (a completion's facts, for an import).
        for (const [id, waiting] of [...pending]) {
          pending.delete(id);
          waiting.reject(threadEnded("and the writer closed before another started"));
        }
        kept = 0;
        settleIdle();
        return;
      }
      send();
      // The thread commits what it holds (a last try for writes kept while the database
      // refused them), sends every outcome, then ends.
      thread.postMessage({ type: "close" } satisfies ToWriterThread);
      await closed;
    },
  };
}
