import { randomBytes } from "node:crypto";
import { createReadStream, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bs58 from "bs58";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { importReceipts } from "../src/recorder/import.js";
import { clientAgent, timedRequest } from "./http-client.js";
import { round } from "./stats.js";

/** `count` distinct, valid receipts as the ingest API documents them. */
export function benchReceipts(count: number, tag: string): Record<string, unknown>[] {
  const workers = Array.from({ length: 60 }, () => bs58.encode(randomBytes(32)));
  const models = ["phi-4-mini", "qwen3-8b", "mistral-small-3.1-24b", "llama-3.3-70b"];
  const start = Date.now() - 3_600_000;
  return Array.from({ length: count }, (_, i) => ({
    job_id: `job_${tag}${i.toString(36).padStart(8, "0")}`,
    escrow_tx: bs58.encode(randomBytes(64)),
    settlement_tx: bs58.encode(randomBytes(64)),
    worker: workers[i % workers.length],
    credits_remaining: String(1_000_000 - i),
    model: models[i % models.length],
    usage: {
      prompt_tokens: 120,
      completion_tokens: 480 + (i % 900),
      total_tokens: 600 + (i % 900),
    },
    created_at: new Date(start + i).toISOString(),
    tags: { team: `team-${i % 7}` },
  }));
}

export interface IngestFigures {
  receipts: number;
  batchSize: number;
  seconds: number;
  receiptsPerSec: number;
  /** Items not answered `created`. */
  notCreated: number;
}

/**
 * `POST /jobs` with batches of `batchSize`, `concurrency` requests in flight, against the
 * running service (HTTP, auth, JSON parsing, validation, one transaction per batch).
 */
export async function measurePostJobs(
  serviceUrl: string,
  token: string,
  receipts: Record<string, unknown>[],
  batchSize: number,
  concurrency: number,
): Promise<IngestFigures> {
  const agent = clientAgent(concurrency);
  const bodies: string[] = [];
  for (let i = 0; i < receipts.length; i += batchSize) {
    bodies.push(JSON.stringify(receipts.slice(i, i + batchSize)));
  }
  let next = 0;
  let notCreated = 0;
  const started = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= bodies.length) return;
      const t = await timedRequest(agent, `${serviceUrl}/jobs`, {
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: bodies[i]!,
        keep: true,
      });
      if (t.status !== 200) throw new Error(`POST /jobs answered HTTP ${t.status}`);
      const answer = JSON.parse(Buffer.concat(t.chunks).toString("utf8")) as { created: number };
      notCreated += Math.min(batchSize, receipts.length - i * batchSize) - answer.created;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return {
    receipts: receipts.length,
    batchSize,
    seconds: round(seconds, 3),
    receiptsPerSec: round(receipts.length / seconds, 0),
    notCreated,
  };
}

/**
 * The `import` command's work (`importReceipts`, batches of 1,000) reading a JSONL file into a
 * fresh database file with the production pragmas. Process start-up is not counted.
 */
export async function measureImport(receipts: Record<string, unknown>[]): Promise<IngestFigures> {
  const dir = tmpdir();
  const file = join(dir, `bench-import-${process.pid}.jsonl`);
  const db = join(dir, `bench-import-${process.pid}.db`);
  writeFileSync(file, `${receipts.map((r) => JSON.stringify(r)).join("\n")}\n`);
  const store = openSqliteStore(db);
  try {
    migrateStore(store);
    const started = performance.now();
    const summary = await importReceipts(store, createReadStream(file));
    const seconds = (performance.now() - started) / 1000;
    return {
      receipts: receipts.length,
      batchSize: 1000,
      seconds: round(seconds, 3),
      receiptsPerSec: round(receipts.length / seconds, 0),
      notCreated: receipts.length - summary.created,
    };
  } finally {
    store.close();
    for (const path of [file, db, `${db}-wal`, `${db}-shm`]) rmSync(path, { force: true });
  }
}
