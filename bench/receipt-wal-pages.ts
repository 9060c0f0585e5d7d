/**
 * What a receipt's commit writes, page by page: every WAL frame of `--receipts` proxied receipts,
 * written as the receipt writer writes them (`recordReceiptsInTransaction` on a connection of its
 * own, `BEGIN IMMEDIATE` transactions of `--group` receipts, checkpoints off), counted by the
 * b-tree its page belongs to (SQLite's `dbstat`), over a migrated file database that already
 * holds `--jobs` receipts. A count, not a timing: the same on a busy host as on an idle one.
 *
 *   npx tsx bench/receipt-wal-pages.ts [--jobs 20000] [--receipts 400] [--group 1] [--stream]
 *
 * `--stream` writes each receipt twice, as a stream's are: its open receipt, then its completion.
 * The receipts name one key and eight workers, as a deployment's traffic does; every signature
 * is new. Page 1 (the header every commit writes) is counted under `sqlite_schema`.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import bs58 from "bs58";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { openWriterConnection } from "../src/store/group-commit.js";
import { type Receipt, recordReceiptsInTransaction } from "../src/store/receipts.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "20000" },
    receipts: { type: "string", default: "400" },
    group: { type: "string", default: "1" },
    stream: { type: "boolean", default: false },
  },
});
const count = (name: string, value: string, min: number) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${name}: an integer >= ${min}, not ${value}`);
  return n;
};
const jobs = count("jobs", values.jobs, 0);
const receipts = count("receipts", values.receipts, 1);
const group = count("group", values.group, 1);
const stream = values.stream;

const workers = Array.from({ length: 8 }, () => bs58.encode(randomBytes(32)));

/** A receipt as the proxy writes it; `open`: a stream's open receipt (usage not known yet). */
function receipt(i: number, tag: string, open = false): Receipt {
  return {
    jobId: `job_${tag}${i.toString(36).padStart(8, "0")}`,
    escrowTx: bs58.encode(randomBytes(64)),
    settlementTx: open ? null : bs58.encode(randomBytes(64)),
    worker: workers[i % workers.length] as string,
    creditsRemainingUnits: 10_000_000n,
    model: "phi-4-mini",
    promptTokens: open ? null : 120,
    completionTokens: open ? null : 480,
    totalTokens: open ? null : 600,
    tags: {},
    maxTokens: 1024,
    stream: open || stream,
    httpStatus: 200,
    latencyMs: open ? null : 350,
    ttfbMs: 80,
    keyFingerprint: "0123456789abcdef",
    responseModel: "phi-4-mini",
    captureState: open ? "open" : "complete",
    receiptWriter: open ? "bench-host:1:1" : null,
    answerBytes: open ? null : 2400,
    answerToolCalls: open ? null : 0,
  };
}

const dir = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), "receipt-wal-pages-"));
try {
  const path = join(dir, "store.db");
  const store = openSqliteStore(path, { create: true });
  migrateStore(store);
  for (let start = 0; start < jobs; start += 1000) {
    const batch = Array.from({ length: Math.min(1000, jobs - start) }, (_, k) =>
      receipt(start + k, "seed"),
    );
    recordReceiptsInTransaction(store, batch, "proxy", { now: Date.now() - 3_600_000 });
  }
  store.sqlite.pragma("wal_checkpoint(TRUNCATE)");
  store.sqlite.pragma("wal_autocheckpoint = 0");
  const connection = openWriterConnection(store, 0);
  const conn = connection.store;
  conn.sqlite.pragma("wal_autocheckpoint = 0");
  const write = connection.immediate((batch: Receipt[]) => {
    const now = Date.now();
    for (const r of batch) {
      recordReceiptsInTransaction(conn, [r], "proxy", { now, backfillDelayMs: 5000 });
    }
  });
  write([receipt(0, "warm")]); // statements prepared
  const from = statSync(`${path}-wal`).size;
  const opens = Array.from({ length: receipts }, (_, i) => receipt(i, "m", stream));
  const completions = opens.map((o, i) => ({ ...receipt(i, "m"), escrowTx: o.escrowTx }));
  for (let i = 0; i < receipts; i += group) {
    write(opens.slice(i, i + group));
    if (stream) write(completions.slice(i, i + group));
  }
  const pageSize = Number(conn.sqlite.pragma("page_size", { simple: true }));
  const owner = new Map<number, string>();
  const pages = store.sqlite.prepare("SELECT name, pageno FROM dbstat").all() as {
    name: string;
    pageno: number;
  }[];
  for (const { name, pageno } of pages) owner.set(pageno, name);
  const wal = readFileSync(`${path}-wal`);
  const byTree = new Map<string, number>();
  let frames = 0;
  // A frame: a 24-byte header (its page number first, big-endian), then the page.
  for (let at = from; at + 24 + pageSize <= wal.length; at += 24 + pageSize) {
    const name = owner.get(wal.readUInt32BE(at)) ?? "(freelist)";
    byTree.set(name, (byTree.get(name) ?? 0) + 1);
    frames++;
  }
  const commits = Math.ceil(receipts / group) * (stream ? 2 : 1);
  console.log(
    `${stream ? "stream" : "json"}, ${group} a commit, ${jobs} jobs before: ${(frames / receipts).toFixed(2)} WAL frames a receipt, ${(frames / commits).toFixed(1)} a commit (${pageSize}-byte pages)`,
  );
  for (const [name, n] of [...byTree].sort((a, b) => b[1] - a[1])) {
    console.log(`  ${name}\t${(n / receipts).toFixed(2)}`);
  }
  connection.close();
  store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
