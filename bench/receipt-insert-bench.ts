/**
 * CPU of recording one proxied receipt on a file database with the real schema, and what each
 * index and trigger on `jobs` adds to it: the same receipts are written on copies of one
 * migrated database, each copy with one index or trigger dropped, interleaved round by round.
 *
 *   npx tsx bench/receipt-insert-bench.ts [--jobs 20000] [--receipts 2000] [--rounds 3]
 *     [--only name,name] [--shapes json1,json16,stream1,json2w8,json1w8] [--json]
 *
 * `--only` keeps the schema as migrated and the variants whose names end with one of those
 * given (`--only "before 0043"`: the A/B of that migration). The databases go in `BENCH_TMP`
 * (default the system's temporary directory; a tmpfs takes the disk out of a long run).
 *
 * Each receipt goes through the receipt writer's path: `recordReceiptsInTransaction` on a
 * connection of its own (no busy timeout, checkpoints left to another connection, as `serve`
 * leaves them to the checkpointer's thread), in `BEGIN IMMEDIATE` transactions of `group`
 * receipts (1: one commit per receipt; 16: a group commit at 16 in flight). A stream writes
 * twice: its open receipt, then its completion. CPU is `process.cpuUsage()` (user + system).
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import bs58 from "bs58";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { openWriterConnection } from "../src/store/group-commit.js";
import { type Receipt, recordReceiptsInTransaction } from "../src/store/receipts.js";
import { percentile, round } from "./stats.js";

/**
 * One way of writing receipts: how many share a commit, whether each is a stream, and how many
 * writer connections take turns at the commits (2: two `serve` workers on one file, each
 * commit of one emptying the other's page cache; default 1).
 */
interface Shape {
  name: string;
  group: number;
  stream: boolean;
  writers?: number;
}

const shapes: Shape[] = [
  { name: "json, 1 a commit", group: 1, stream: false },
  { name: "json, 16 a commit", group: 16, stream: false },
  { name: "stream, 1 a commit", group: 1, stream: true },
  { name: "json2w, 8 a commit, two writers taking turns", group: 8, stream: false, writers: 2 },
  { name: "json1w, 8 a commit, one writer", group: 8, stream: false, writers: 1 },
];

/** Indexes the queue's statements name (`INDEXED BY`): a database without them prepares none. */
const queueIndexes = ["jobs_open_due", "jobs_leased"];

/** A schema variant: the migrated database with some indexes or triggers dropped. */
interface Variant {
  name: string;
  drop: string[];
  /** Statements run after the drops. */
  create?: string[];
}

/** The schema before migration 0043: every job in the recording-time index, the proxy's too. */
const before0043: Variant = {
  name: "before 0043",
  drop: ["jobs_recorded_late"],
  create: ["CREATE INDEX jobs_recorded_created ON jobs (recorded_at, created_at)"],
};

const workers = Array.from({ length: 60 }, () => bs58.encode(randomBytes(32)));
const keys = Array.from({ length: 40 }, () => randomBytes(8).toString("hex"));
const models = ["phi-4-mini", "qwen3-8b", "mistral-small-3.1-24b", "llama-3.3-70b"];

/** A receipt as the proxy writes it for one answered job. */
function proxyReceipt(tag: string, i: number, open: boolean): Receipt {
  return {
    jobId: `job_${tag}${i.toString(36).padStart(8, "0")}`,
    escrowTx: bs58.encode(randomBytes(64)),
    settlementTx: open ? null : bs58.encode(randomBytes(64)),
    worker: workers[i % workers.length] as string,
    creditsRemainingUnits: BigInt(10_000_000 - i),
    model: models[i % models.length] as string,
    promptTokens: open ? null : 120,
    completionTokens: open ? null : 480 + (i % 900),
    totalTokens: open ? null : 600 + (i % 900),
    tags: {},
    maxTokens: 1024,
    stream: open,
    httpStatus: 200,
    latencyMs: open ? null : 350,
    ttfbMs: 80,
    keyFingerprint: keys[i % keys.length] as string,
    responseModel: models[i % models.length] as string,
    captureState: open ? "open" : "complete",
    receiptWriter: open ? "bench-host:1:1" : null,
    answerBytes: open ? null : 2400,
    answerToolCalls: open ? null : 0,
  };
}

/** The indexes and triggers on `jobs` (the primary key's own index aside), by name. */
function jobsObjects(store: SqliteStore): { indexes: string[]; triggers: string[] } {
  const rows = store.sqlite
    .prepare(
      "SELECT type, name FROM sqlite_master WHERE tbl_name = 'jobs' AND sql IS NOT NULL AND type IN ('index', 'trigger') ORDER BY name",
    )
    .all() as { type: string; name: string }[];
  return {
    indexes: rows.filter((r) => r.type === "index").map((r) => r.name),
    triggers: rows.filter((r) => r.type === "trigger").map((r) => r.name),
  };
}

/** A migrated database holding `count` jobs recorded by the proxy, checkpointed and closed. */
function template(dir: string, count: number): string {
  const path = join(dir, "template.db");
  const store = openSqliteStore(path, { create: true });
  migrateStore(store);
  for (let start = 0; start < count; start += 1000) {
    const batch = Array.from({ length: Math.min(1000, count - start) }, (_, k) =>
      proxyReceipt("seed", start + k, false),
    );
    recordReceiptsInTransaction(store, batch, "proxy", { now: Date.now() });
  }
  store.sqlite.pragma("wal_checkpoint(TRUNCATE)");
  store.close();
  return path;
}

/** A copy of the template with the variant's objects dropped. */
function variantCopy(templatePath: string, dir: string, variant: Variant, run: number): string {
  const path = join(dir, `v${run}.db`);
  copyFileSync(templatePath, path);
  const store = openSqliteStore(path);
  for (const name of variant.drop) {
    const type = store.sqlite
      .prepare("SELECT type FROM sqlite_master WHERE name = ?")
      .pluck()
      .get(name) as string;
    store.sqlite.exec(`DROP ${type.toUpperCase()} "${name}"`);
  }
  for (const statement of variant.create ?? []) store.sqlite.exec(statement);
  store.sqlite.pragma("wal_checkpoint(TRUNCATE)");
  store.close();
  return path;
}

/** CPU µs per receipt written in `shape` on the database at `path` (`count` receipts). */
function measure(path: string, shape: Shape, count: number, tag: string): number {
  const store = openSqliteStore(path);
  store.sqlite.pragma("wal_autocheckpoint = 0");
  const connections = Array.from({ length: shape.writers ?? 1 }, () =>
    openWriterConnection(store, 0),
  );
  const writes = connections.map((connection) => {
    const conn = connection.store;
    conn.sqlite.pragma("wal_autocheckpoint = 0");
    return connection.immediate((receipts: Receipt[]) => {
      const now = Date.now();
      for (const receipt of receipts) {
        recordReceiptsInTransaction(conn, [receipt], "proxy", { now, backfillDelayMs: 5000 });
      }
    });
  });
  // Each commit by the next writer in turn.
  let turn = 0;
  const write = (receipts: Receipt[]) => writes[turn++ % writes.length]!(receipts);
  const conn = connections[0]!.store;
  const opens = Array.from({ length: count }, (_, i) => proxyReceipt(tag, i, shape.stream));
  const completions = shape.stream
    ? Array.from({ length: count }, (_, i) => ({
        ...proxyReceipt(tag, i, false),
        ...same(opens[i]),
      }))
    : [];
  // Warm-up: statements prepared, pages cached.
  for (let w = 0; w < writes.length; w++) write([proxyReceipt(`${tag}w${w}`, 0, false)]);
  const before = process.cpuUsage();
  for (let i = 0; i < count; i += shape.group) {
    write(opens.slice(i, i + shape.group));
    if (shape.stream) write(completions.slice(i, i + shape.group));
  }
  const used = process.cpuUsage(before);
  const commits = Math.ceil(count / shape.group) * (shape.stream ? 2 : 1);
  const pageSize = Number(conn.sqlite.pragma("page_size", { simple: true }));
  frames.set(`${path}\t${shape.name}`, walFrames(`${path}-wal`, pageSize) / commits);
  for (const connection of connections) connection.close();
  store.sqlite.pragma("wal_checkpoint(TRUNCATE)");
  store.close();
  return (used.user + used.system) / count;
}

/** WAL frames per commit of the last `measure` of each database and shape (checkpoints off). */
const frames = new Map<string, number>();

/** Frames in a WAL file (32-byte header, then a 24-byte header and a page per frame). */
function walFrames(walPath: string, pageSize: number): number {
  return Math.max(0, statSync(walPath).size - 32) / (24 + pageSize);
}

/** What a stream's completion keeps of its open receipt (the job and its lock). */
function same(open: Receipt | undefined): Partial<Receipt> {
  return open ? { jobId: open.jobId, escrowTx: open.escrowTx } : {};
}

function main(): void {
  const { values } = parseArgs({
    options: {
      jobs: { type: "string", default: "20000" },
      receipts: { type: "string", default: "2000" },
      rounds: { type: "string", default: "3" },
      only: { type: "string" },
      json: { type: "boolean", default: false },
      shapes: { type: "string" },
    },
  });
  const dir = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), "receipt-insert-"));
  try {
    const templatePath = template(dir, Number(values.jobs));
    const probe = openSqliteStore(templatePath);
    const { indexes, triggers } = jobsObjects(probe);
    probe.close();
    const variants: Variant[] = [
      { name: "as migrated", drop: [] },
      before0043,
      // jobs_open_due and jobs_leased are named by the queue's statements (INDEXED BY),
      // prepared with the receipt's: they cannot go.
      ...[...indexes, ...triggers]
        .filter((name) => !queueIndexes.includes(name))
        .map((name) => ({ name: `without ${name}`, drop: [name] })),
      {
        name: "without every index and trigger",
        drop: [...indexes, ...triggers].filter((name) => !queueIndexes.includes(name)),
      },
    ].filter(
      (v) =>
        !values.only ||
        v.name === "as migrated" ||
        values.only.split(",").some((n) => v.name.endsWith(n)),
    );
    const count = Number(values.receipts);
    const measured = shapes.filter(
      (s) =>
        !values.shapes || values.shapes.split(",").includes(s.name.split(",")[0] + String(s.group)),
    );
    const figures = new Map<string, number[]>();
    const walPerCommit = new Map<string, number>();
    let run = 0;
    for (let r = 0; r < Number(values.rounds); r++) {
      for (const variant of variants) {
        for (const shape of measured) {
          const path = variantCopy(templatePath, dir, variant, run++);
          const us = measure(path, shape, count, `r${r}`);
          const key = `${variant.name}\t${shape.name}`;
          figures.set(key, [...(figures.get(key) ?? []), us]);
          walPerCommit.set(key, frames.get(`${path}\t${shape.name}`) ?? Number.NaN);
          rmSync(path, { force: true });
          rmSync(`${path}-wal`, { force: true });
          rmSync(`${path}-shm`, { force: true });
        }
      }
    }
    const base = (shape: Shape) => percentile(figures.get(`as migrated\t${shape.name}`) ?? [], 50);
    const rows = variants.flatMap((variant) =>
      measured.map((shape) => {
        const us = percentile(figures.get(`${variant.name}\t${shape.name}`) ?? [], 50);
        return {
          variant: variant.name,
          shape: shape.name,
          us: round(us, 1),
          saves: round(base(shape) - us, 1),
          wal: round(walPerCommit.get(`${variant.name}\t${shape.name}`) ?? Number.NaN, 1),
        };
      }),
    );
    if (values.json) {
      console.log(JSON.stringify({ jobs: Number(values.jobs), receipts: count, rows }, null, 2));
      return;
    }
    console.log(
      `${values.jobs} jobs recorded before; ${count} receipts a figure; median of ${values.rounds}`,
    );
    console.log(`template ${round(statSync(templatePath).size / 1e6, 1)} MB`);
    for (const row of rows)
      console.log(
        `${row.variant}\t${row.shape}\t${row.us} µs\t(−${row.saves})\t${row.wal} WAL frames a commit`,
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
