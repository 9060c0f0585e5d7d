import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import {
  createLedgerStore,
  type FetchedTransaction,
  type LedgerStore,
  type LineRead,
  type ListedSignature,
} from "../src/store/ledger.js";
import { fakeSignature } from "./support/job-rows.js";
import { seedCreditVault, seedJob } from "./support/seed-ledger.js";

/**
 * On SQLite a ledger review files a vault's lines again and releases its locks in short write
 * transactions, each line read as it stands when its batch comes. Another writer (a pin, receipts,
 * decided jobs) or another verifier's review of the same vault (serve's leader and a nightly
 * `verify`) commits between two of them here, never inside one: each lock is released once,
 * counted once, and the next round leaves the lines as the writes before a round would have.
 */

const VAULT = "bVau1tCred1tsXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
const OTHER = "oTherVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
const NOV = Date.UTC(2026, 10, 1) / 1000;
const NOW = Date.UTC(2026, 11, 11);
const DEPOSITS = 3_000;
const sig = (name: string) => fakeSignature(`review-interleaved:${name}`);
const KEY = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";

function history() {
  const page: ListedSignature[] = [];
  const reads: LineRead[] = [];
  const fetched: FetchedTransaction[] = [];
  let balance = 10_000_000_000n;
  let t = NOV;
  const line = (
    name: string,
    delta: bigint,
    memo: { kind: "escrow" | "settle" | "refund"; job: string } | null,
  ) => {
    const pre = balance;
    balance += delta;
    t++;
    page.push({ signature: sig(name), slot: 100 + page.length, blockTime: t, err: null });
    reads.push({
      signature: sig(name),
      blockTime: t,
      succeeded: true,
      pre,
      post: balance,
      delta,
      memo: memo === null ? null : `${memo.kind}:${memo.job}`,
      memoKind: memo?.kind ?? null,
      memoJobId: memo?.job ?? null,
      opened: page.length === 1,
    });
    fetched.push({
      signature: sig(name),
      slot: 100 + page.length,
      blockTime: t,
      fee: 5_000n,
      succeeded: true,
      err: "null",
      facts: "{}",
      raw: `raw:${name}`,
    });
  };
  let written = 0;
  const write = async (ledger: LedgerStore) => {
    const seen = await ledger.cursor(VAULT, NOW);
    const from = written;
    written = page.length;
    await ledger.storePage(VAULT, seen, page.slice(from).reverse(), true, NOW, NOW);
    await ledger.recordReads(VAULT, reads.slice(from), fetched.slice(from), NOW);
  };
  const reset = (to: number) => {
    written = to;
  };
  const count = () => page.length;
  return { line, write, reset, count };
}

/**
 * O0..O299: locks with receipts (O200..O299 of key KEY, no pin yet). late0..late199: debits
 * under U<i>'s escrow memo with no receipt at first (unexplained). Then thousands of deposits,
 * then late200..late249 (same as late), then returns of U0..U49 under settle memos.
 */
async function seed(path: string) {
  const store = openSqliteStore(path);
  migrateStore(store);
  const ledger = createLedgerStore(store);
  const h = history();
  for (let i = 0; i < 300; i++) {
    h.line(`open${i}`, -10_000n, { kind: "escrow", job: `O${i}` });
    await seedJob(store, {
      jobId: `O${i}`,
      escrowTx: sig(`open${i}`),
      recordedAt: (NOV + 10) * 1000,
      verdict: "pending",
      keyFingerprint: i >= 200 ? KEY : null,
    });
  }
  for (let i = 0; i < 200; i++) h.line(`late${i}`, -10_000n, { kind: "escrow", job: `U${i}` });
  for (let i = 0; i < DEPOSITS; i++) h.line(`dep${i}`, 1n, null);
  for (let i = 200; i < 250; i++) h.line(`late${i}`, -10_000n, { kind: "escrow", job: `U${i}` });
  for (let i = 0; i < 50; i++) h.line(`ret${i}`, 10_000n, { kind: "settle", job: `U${i}` });
  await h.write(ledger);
  await ledger.review(VAULT, NOW);
  // Before the round under test: some jobs decided, some receipts renamed, some recorded.
  const s = store.sqlite;
  const decide = s.prepare(
    "UPDATE jobs SET verdict = 'verified', charged_units = 10000 WHERE job_id = ?",
  );
  for (let i = 0; i < 50; i++) decide.run(`O${i}`);
  const renamed = s.prepare("UPDATE jobs SET escrow_tx = ? WHERE job_id = ?");
  for (let i = 50; i < 100; i++) renamed.run(sig(`elsewhere${i}`), `O${i}`);
  for (let i = 100; i < 150; i++) {
    await seedJob(store, {
      jobId: `U${i}`,
      escrowTx: sig(`late${i}`),
      recordedAt: (NOV + 20) * 1000,
      verdict: "pending",
    });
  }
  return { store, ledger, h };
}

/** What another writer commits: a pin, receipts of unexplained debits, decided jobs. */
async function otherWrites(store: SqliteStore) {
  await seedCreditVault(store, {
    keyFingerprint: KEY,
    vault: OTHER,
    pinnedAt: NOW,
    source: "learned",
  });
  for (const i of [...Array(50).keys()]
    .map((k) => k + 150)
    .concat([...Array(50).keys()].map((k) => k + 200))) {
    await seedJob(store, {
      jobId: `U${i}`,
      escrowTx: sig(`late${i}`),
      recordedAt: (NOV + 30) * 1000,
      verdict: "pending",
    });
  }
  // Receipts of U0..U49 (whose returns came): their debits become locks, released.
  for (let i = 0; i < 50; i++) {
    await seedJob(store, {
      jobId: `U${i}`,
      escrowTx: sig(`late${i}`),
      recordedAt: (NOV + 30) * 1000,
      verdict: "pending",
    });
  }
  const decide = store.sqlite.prepare(
    "UPDATE jobs SET verdict = 'verified', charged_units = 10000 WHERE job_id = ?",
  );
  for (let i = 250; i < 300; i++) decide.run(`O${i}`);
  for (let i = 100; i < 150; i++) decide.run(`O${i}`);
}

function digest(s: SqliteStore) {
  const lines = s.sqlite
    .prepare(
      "SELECT signature, kind, job_id, released FROM ledger_lines WHERE vault = ? ORDER BY signature",
    )
    .all(VAULT) as { signature: string; kind: string; job_id: string | null; released: number }[];
  const jobs = s.sqlite.prepare("SELECT job_id, verdict FROM jobs ORDER BY job_id").all();
  return { lines, jobs };
}

/**
 * Runs `action` in one write transaction of `s`, once, at the first moment between two of the
 * review's transactions that `when` holds; `finished` gives how many moments it looked at (-1:
 * never held).
 */
function between(s: SqliteStore, when: () => boolean, action: () => Promise<void>) {
  let stop = false;
  let polls = 0;
  const finished = new Promise<number>((resolve, reject) => {
    const poll = async () => {
      if (stop) return resolve(-1);
      polls++;
      try {
        if (when()) {
          // One transaction: the other writer commits whole.
          s.sqlite.exec("BEGIN IMMEDIATE");
          await action();
          s.sqlite.exec("COMMIT");
          return resolve(polls);
        }
      } catch (e) {
        return reject(e);
      }
      setImmediate(poll);
    };
    setImmediate(poll);
  });
  return {
    finished,
    cancel: () => {
      stop = true;
    },
  };
}

const kindOf = (s: SqliteStore, name: string) =>
  s.sqlite
    .prepare("SELECT kind, job_id, released FROM ledger_lines WHERE vault = ? AND signature = ?")
    .get(VAULT, sig(name)) as { kind: string; job_id: string | null; released: number };

/** A copy of the database as it stands, opened on a connection of its own. */
function copyOf(s: SqliteStore, dir: string, name: string) {
  s.sqlite.exec(`VACUUM INTO '${join(dir, name)}'`);
  const copy = openSqliteStore(join(dir, name));
  return { store: copy, ledger: createLedgerStore(copy) };
}

it("two reviews of one vault at once file each line and release each lock once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "review-interleaved-"));
  const { store, ledger } = await seed(join(dir, "audit.db"));
  const alone = copyOf(store, dir, "alone.db");
  const one = await alone.ledger.review(VAULT, NOW);
  const other = openSqliteStore(join(dir, "audit.db"));
  const both = await Promise.all([
    ledger.review(VAULT, NOW),
    createLedgerStore(other).review(VAULT, NOW),
  ]);
  expect(one).toMatchObject({ classified: 100, released: 50 });
  // Each line filed anew by one of them, each lock released by one of them.
  expect(both[0]!.classified + both[1]!.classified).toBe(one.classified);
  expect(both[0]!.released + both[1]!.released).toBe(one.released);
  expect(digest(store)).toEqual(digest(alone.store));
  for (const s of [store, other, alone.store]) s.close();
}, 120_000);

it("a pin, receipts and decisions committed between two batches of two reviews", async () => {
  const dir = mkdtempSync(join(tmpdir(), "review-interleaved-"));
  const { store, ledger } = await seed(join(dir, "audit.db"));
  // The writes first, then two rounds.
  const serial = copyOf(store, dir, "serial.db");
  serial.store.sqlite.exec("BEGIN IMMEDIATE");
  await otherWrites(serial.store);
  serial.store.sqlite.exec("COMMIT");
  await serial.ledger.review(VAULT, NOW);
  await serial.ledger.review(VAULT, NOW);

  const other = openSqliteStore(join(dir, "audit.db"));
  // Once the first batch of the `unexplained` and `deposit` lines is committed (late100, whose
  // receipt came before the round, is a lock) and before the lines after the deposits are.
  const writer = between(
    other,
    () => kindOf(other, "late100").kind === "lock" && kindOf(other, "late249").kind !== "lock",
    () => otherWrites(other),
  );
  await Promise.all([ledger.review(VAULT, NOW), createLedgerStore(other).review(VAULT, NOW)]);
  writer.cancel();
  expect(await writer.finished, "the writes came between two batches").toBeGreaterThan(0);
  // A lock the pin took from its job, filed in the round's last steps: the next round files it.
  await ledger.review(VAULT, NOW);
  expect(digest(store)).toEqual(digest(serial.store));
  for (const s of [store, other, serial.store]) s.close();
}, 120_000);
