import http, { type IncomingMessage, type ServerResponse } from "node:http";
import Database from "better-sqlite3";
import { listenAsProxyChild, upstreamOf } from "./proxy-child.js";

/**
 * Child process of the benchmark (`--proxy-floor`): the least a Node proxy can do that keeps
 * the recording proxy's promises, to tell the cost of those promises from the cost of how we
 * keep them. Beyond the bare pass-through (bare-proxy-child.ts) it does only what a receipt
 * needs and nothing the service adds around it:
 * - reads the request's body for the model and `max_tokens` the checks price by, and forwards it;
 * - a JSON answer is read whole, its `usage` parsed, and its receipt committed before the client
 *   gets a byte (an answered job is a recorded one);
 * - a stream's open receipt is committed before its headers go out (a job a client saw begin is
 *   recorded if the process dies), its chunks pass as they come with the tail kept, and its
 *   completion (usage from the tail) is committed before its last byte;
 * - after each response, one `GET /jobs/{id}` with the caller's key, its answer written too;
 * - writes go to a SQLite file in WAL mode, `synchronous = NORMAL`, in group commits (every
 *   write waiting when the event loop comes round), into one table keyed by the job id with the
 *   indexes the verifier and the replay check cannot do without: both signatures and the
 *   worker's (worker, time). No verifier, no metrics, no request log, no validation.
 * It speaks the protocol of children.ts (bench/proxy-child.ts), with `rows`: receipts completed.
 */

const { base, basePath, agent, forward } = upstreamOf(process.env.BARE_UPSTREAM ?? "");
const tailBytes = 64 * 1024;

const db = new Database(process.env.FLOOR_DB ?? "");
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");
db.exec(`
  CREATE TABLE IF NOT EXISTS receipts (
    job_id TEXT PRIMARY KEY,
    escrow_tx TEXT,
    settlement_tx TEXT,
    worker TEXT,
    credits_remaining TEXT,
    model TEXT,
    max_tokens INTEGER,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    http_status INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    jobs_api TEXT
  );
  CREATE INDEX IF NOT EXISTS receipts_escrow ON receipts (escrow_tx);
  CREATE INDEX IF NOT EXISTS receipts_settlement ON receipts (settlement_tx);
  CREATE INDEX IF NOT EXISTS receipts_worker ON receipts (worker, created_at);
`);
const insert = db.prepare(
  `INSERT OR IGNORE INTO receipts (job_id, escrow_tx, settlement_tx, worker, credits_remaining,
     model, max_tokens, prompt_tokens, completion_tokens, http_status, created_at, completed)
   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
);
const complete = db.prepare(
  "UPDATE receipts SET prompt_tokens = ?, completion_tokens = ?, completed = 1 WHERE job_id = ?",
);
const answered = db.prepare(
  "UPDATE receipts SET jobs_api = ?, settlement_tx = coalesce(settlement_tx, ?) WHERE job_id = ?",
);

/** Writes waiting for the next group commit, each with what to do once it is committed. */
let waiting: { write(): void; then(): void }[] = [];
const commitGroup = db.transaction((group: typeof waiting) => {
  for (const w of group) w.write();
});
function flush() {
  const group = waiting;
  waiting = [];
  // IMMEDIATE, as every write transaction here: the write lock is taken at BEGIN.
  commitGroup.immediate(group);
  for (const w of group) w.then();
}
function write(w: () => void, then: () => void) {
  if (waiting.length === 0) setImmediate(flush);
  waiting.push({ write: w, then });
}

interface Usage {
  prompt: number | null;
  completion: number | null;
}

function usageOf(value: unknown): Usage {
  const usage = (value as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } })
    ?.usage;
  const n = (v: unknown) => (typeof v === "number" ? v : null);
  return { prompt: n(usage?.prompt_tokens), completion: n(usage?.completion_tokens) };
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The usage of a stream: the last `data:` event of its tail that names one. */
function streamUsage(tail: string): Usage {
  let at = tail.lastIndexOf('"usage"');
  while (at >= 0) {
    const start = tail.lastIndexOf("data:", at);
    const end = tail.indexOf("\n", at);
    const event = parse(tail.slice(start + 5, end < 0 ? tail.length : end));
    const usage = usageOf(event);
    if (usage.completion !== null) return usage;
    at = start < 0 ? -1 : tail.lastIndexOf('"usage"', start);
  }
  return { prompt: null, completion: null };
}

function askJobsApi(jobId: string, authorization: string | undefined) {
  if (authorization === undefined) return;
  const ask = http.request(
    {
      hostname: base.hostname,
      port: base.port,
      path: `${basePath}/jobs/${encodeURIComponent(jobId)}`,
      headers: { authorization, accept: "application/json" },
      agent,
    },
    (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => {
        const text = Buffer.concat(parts).toString("utf8");
        const answer = parse(text) as { on_chain?: { settlement_tx?: unknown } } | null;
        const settlement = answer?.on_chain?.settlement_tx;
        write(
          () => answered.run(text, typeof settlement === "string" ? settlement : null, jobId),
          () => {},
        );
      });
    },
  );
  ask.on("error", () => {});
  ask.end();
}

const header = (upstream: IncomingMessage, name: string) => {
  const v = upstream.headers[name];
  return typeof v === "string" ? v : null;
};

function answer(
  req: IncomingMessage,
  res: ServerResponse,
  asked: { model: string | null; maxTokens: number | null },
  upstream: IncomingMessage,
) {
  const status = upstream.statusCode ?? 502;
  const out: http.OutgoingHttpHeaders = { ...upstream.headers };
  delete out.connection;
  delete out["keep-alive"];
  const jobId = header(upstream, "x-decentral-job-id");
  const row = (usage: Usage, completed: number) => () =>
    insert.run(
      jobId,
      header(upstream, "x-decentral-tx-signature"),
      header(upstream, "x-decentral-settlement-tx"),
      header(upstream, "x-decentral-worker"),
      header(upstream, "x-decentral-credits-remaining"),
      asked.model,
      asked.maxTokens,
      usage.prompt,
      usage.completion,
      status,
      Date.now(),
      completed,
    );
  if (jobId === null) {
    res.writeHead(status, out);
    upstream.pipe(res);
    return;
  }
  const authorization = req.headers.authorization;
  if (!String(upstream.headers["content-type"]).startsWith("text/event-stream")) {
    const parts: Buffer[] = [];
    upstream.on("data", (c: Buffer) => parts.push(c));
    upstream.on("end", () => {
      const body = Buffer.concat(parts);
      write(row(usageOf(parse(body.toString("utf8"))), 1), () => {
        res.writeHead(status, out);
        res.end(body);
        askJobsApi(jobId, authorization);
      });
    });
    return;
  }
  upstream.pause();
  write(row({ prompt: null, completion: null }, 0), () => {
    res.writeHead(status, out);
    let tail = "";
    upstream.on("data", (c: Buffer) => {
      res.write(c);
      tail += c.toString("utf8");
      if (tail.length > 2 * tailBytes) tail = tail.slice(-tailBytes);
    });
    upstream.on("end", () => {
      const usage = streamUsage(tail);
      write(
        () => complete.run(usage.prompt, usage.completion, jobId),
        () => {
          res.end();
          askJobsApi(jobId, authorization);
        },
      );
    });
    upstream.resume();
  });
}

function handle(req: IncomingMessage, res: ServerResponse) {
  const parts: Buffer[] = [];
  req.on("data", (c: Buffer) => parts.push(c));
  req.on("end", () => {
    const body = Buffer.concat(parts);
    const parsed = parse(body.toString("utf8")) as { model?: unknown; max_tokens?: unknown } | null;
    const asked = {
      model: typeof parsed?.model === "string" ? parsed.model : null,
      maxTokens: typeof parsed?.max_tokens === "number" ? parsed.max_tokens : null,
    };
    forward(req, res, { "content-length": body.length }, (upstream) =>
      answer(req, res, asked, upstream),
    ).end(body);
  });
}

listenAsProxyChild(
  handle,
  () => {
    agent.destroy();
    db.close();
  },
  {
    rows: () =>
      (db.prepare("SELECT count(*) AS n FROM receipts WHERE completed = 1").get() as { n: number })
        .n,
  },
);
