import { parentPort, workerData } from "node:worker_threads";
import { openSqliteStore, setAutoCheckpoint } from "../db/client.js";
import { isAppError } from "../errors.js";
import { createLogger } from "../log.js";
import { unitOfData } from "../store/write-units.js";
import { createSqliteReceiptWriter, type WriterHealth } from "./receipt-writer.js";
import type {
  FromWriterThread,
  SentError,
  Settled,
  ToWriterThread,
  WriterThreadData,
} from "./threaded-receipt-writer.js";

/**
 * Entry of the receipt writer's thread (see threaded-receipt-writer.ts): today's SQLite receipt
 * writer, its group commits and retries, on a connection and an event loop of its own, so that
 * no `BEGIN IMMEDIATE` … `COMMIT` ever holds the loop that proxies the bytes. Tasks arrive as
 * data (`WriteUnitData`) and their outcomes, the writes kept while the database refuses them,
 * the writer's health and each group commit's time go back as messages.
 */
const port = parentPort;
if (!port) throw new Error("receipt-writer-thread.ts runs as a worker thread");
const { path, options, autocheckpoint, logLevel } = workerData as WriterThreadData;
const post = (message: FromWriterThread) => port.postMessage(message);
// Its lines go to the process's logger, which writes them (a thread's own write to stdout could
// block on a full pipe, and a thread stuck in a write cannot be stopped).
const log = createLogger(
  { level: logLevel, name: "decentral-audit" },
  { write: (line: string) => post({ type: "log", line }) },
);
// Holds the checkpoint policy the writer's connection follows (the process's, sent here).
const policy = openSqliteStore(path, { busyTimeoutMs: 1000, create: false });
setAutoCheckpoint(policy, autocheckpoint);

let commits: number[] = [];
const writer = createSqliteReceiptWriter(policy, {
  ...options,
  log,
  // Sent after each group with its outcomes, or alone (a refused group has none yet): the
  // process turns new work away as soon as the database refuses it.
  commitTimes: (ms) => {
    commits.push(ms);
    sendSoon();
  },
});

let settled: Settled[] = [];
let sending = false;
let lastHealth = "";
/** Sends what settled in this turn, with the commits' times and the writer's state, at once. */
function send() {
  sending = false;
  const health = writer.health();
  const said = JSON.stringify(health);
  if (settled.length === 0 && commits.length === 0 && said === lastHealth) return;
  lastHealth = said;
  const message: FromWriterThread = { type: "settled", items: settled, commits, health };
  settled = [];
  commits = [];
  try {
    post(message);
  } catch {
    // A value or an error's details that cannot be cloned: the outcome alone goes back.
    post({
      ...message,
      items: message.items.map((item) =>
        item.ok
          ? { id: item.id, ok: true, value: null }
          : { id: item.id, ok: false, error: { message: item.error.message } },
      ),
    });
  }
}
function sendSoon() {
  if (sending) return;
  sending = true;
  // After every outcome of the group commit that settled them (each is a microtask before it).
  queueMicrotask(send);
}
// The health changes between groups too (a database that took writes again, found by a probe).
const healthTimer = setInterval(sendSoon, 100);

function sentError(error: unknown): SentError {
  if (isAppError(error)) {
    return { message: error.message, app: { code: error.code, details: error.details } };
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      message: error.message,
      name: error.name,
      ...(typeof code === "string" ? { code } : {}),
    };
  }
  return { message: String(error) };
}

port.on("message", (message: ToWriterThread) => {
  if (message.type === "run") {
    for (const { id, data, keep } of message.items) {
      let unit: ReturnType<typeof unitOfData>;
      try {
        unit = unitOfData(data);
      } catch (error) {
        settled.push({ id, ok: false, error: sentError(error) });
        sendSoon();
        continue;
      }
      writer
        .run(unit, keep ? { keep: () => post({ type: "keep", id }) } : undefined)
        .then(
          (value) => settled.push({ id, ok: true, value }),
          (error: unknown) => settled.push({ id, ok: false, error: sentError(error) }),
        )
        .finally(sendSoon);
    }
    // The message is this turn's group: committed now, not in the loop's next turn.
    writer.commitNow();
  } else if (message.type === "autocheckpoint") {
    setAutoCheckpoint(policy, message.pages);
  } else if (message.type === "close") {
    void writer
      .close()
      .catch((error: unknown) => log.error({ err: error }, "closing the receipt writer failed"))
      .finally(() => {
        clearInterval(healthTimer);
        send();
        policy.close();
        post({ type: "closed" });
        port.close();
      });
  }
});
post({ type: "ready", health: writer.health() satisfies WriterHealth });
