import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createRpcPool } from "../src/chain/rpc-pool.js";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { splitSum } from "../src/db/split-sums.js";
import { createEscrowScanner } from "../src/ledger/escrow-scan.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { creditsToUnits } from "../src/money.js";
import { keyFingerprint } from "../src/recorder/proxy.js";
import { type Receipt, recordReceipts } from "../src/recorder/receipts.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { cacheDir, reportDbVersion } from "./report-db.js";
import { percentile, round } from "./stats.js";

/**
 * The credit vault ledger's figures (issue 10):
 * - RPC requests per ledger line against the local world: the verifier first verifies every
 *   recorded job, then the ledger reads the vault; it should fetch only what no receipt named
 *   (top-ups), once each, plus one getSignaturesForAddress per 1,000 lines;
 * - the time to build a statement over `lines` ledger lines of one vault (30 days), generated
 *   with set-based SQL into a cached database.
 */

export interface LedgerRpcFigures {
  jobs: number;
  deposits: number;
  lines: number;
  /** Vault transactions the verifier had not fetched (the top-ups). */
  notFetchedByVerifier: number;
  getTransaction: number;
  getSignaturesForAddress: number;
  getAccountInfo: number;
  getTransactionPerUnfetched: number;
  /** The same vault read by a fresh ledger with no verifier before it: 1 per line is ideal. */
  alone: { lines: number; getTransaction: number; getSignaturesForAddress: number };
  /**
   * `serve`'s first escrow scan over the same world (every job's settlement named by its
   * receipt): entries listed, calls, time. Nothing to fetch is ideal.
   */
  escrowScan: {
    entries: number;
    getTransaction: number;
    getSignaturesForAddress: number;
    kept: number;
    ms: number;
  };
}

export interface LedgerStatementFigures {
  lines: number;
  generateSeconds: number;
  /** A 28-day period with a partial first and last day, and the whole history. */
  periodMedianMs: number;
  periodP95Ms: number;
  wholeMedianMs: number;
  runs: number;
  differenceUnits: string | null;
  counted: { locks: number; returns: number; deposits: number; unexplained: number };
}

export interface LedgerResult {
  rpc: LedgerRpcFigures;
  statement: LedgerStatementFigures;
}

const log = createLogger({ level: "silent" });

/** Honest non-streamed jobs of one key plus top-ups, verified, then the vault read. */
async function measureRpc(jobs: number, deposits: number): Promise<LedgerRpcFigures> {
  const world = await startLocalWorld({ slotMs: 20, finalitySlots: 3 });
  const pool = () =>
    createRpcPool({
      endpoints: [{ url: world.rpcUrl, rateLimitPerSec: 2000, concurrency: 16, timeoutMs: 5000 }],
      backoffBaseMs: 10,
      backoffMaxMs: 50,
    });
  const rpc = pool();
  const store = openSqliteStore(":memory:");
  try {
    migrateStore(store);
    const apiKey = world.apiKeys[0]!;
    const vault = world.accounts.creditVaults[0]!.vault;
    const receipts: Receipt[] = [];
    for (let i = 0; i < jobs; i++) {
      if (deposits > 0 && i % Math.ceil(jobs / deposits) === 0) {
        await fetch(`${world.simulatorUrl}/sim/deposits`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ apiKeyIndex: 0, units: "1000000" }),
        });
      }
      const res = await fetch(`${world.decentralBaseUrl}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({
          model: "qwen3-8b",
          messages: [{ role: "user", content: `ledger ${i}` }],
        }),
      });
      const body = (await res.json()) as {
        usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
      };
      const h = (name: string) => res.headers.get(name) || null;
      const credits = h("x-decentral-credits-remaining");
      receipts.push({
        jobId: h("x-decentral-job-id") ?? "",
        escrowTx: h("x-decentral-tx-signature"),
        settlementTx: h("x-decentral-settlement-tx"),
        worker: h("x-decentral-worker"),
        creditsRemainingUnits: credits === null ? null : creditsToUnits(credits),
        model: "qwen3-8b",
        promptTokens: body.usage.prompt_tokens,
        completionTokens: body.usage.completion_tokens,
        totalTokens: body.usage.total_tokens,
        stream: false,
        httpStatus: res.status,
        maxTokens: null,
        keyFingerprint: keyFingerprint(`Bearer ${apiKey}`),
      });
    }
    recordReceipts(store, receipts, "ingest");
    const target = world.currentSlot() + 5;
    while (world.currentSlot() < target) await new Promise((r) => setTimeout(r, 20));
    const verifier = createVerifier({
      store,
      rpc,
      profile: localnetProfile,
      log,
      options: { pollIntervalMs: 20, errorBackoffMs: 20, backfillWaitMs: 20 },
    });
    await verifier.runUntilSettled({}, { timeoutMs: 120_000 });

    const before = { ...world.rpcStats().byMethod };
    const custody = { vaults: [vault], byKey: {} };
    const result = await createLedgerReader({
      store,
      rpc,
      profile: localnetProfile,
      log,
      custody,
    }).syncVault(vault);
    const after = world.rpcStats().byMethod;
    const used = (m: string) => (after[m] ?? 0) - (before[m] ?? 0);

    // A second database read by the ledger alone: every line is a fetch.
    const alone = openSqliteStore(":memory:");
    migrateStore(alone);
    const beforeAlone = { ...world.rpcStats().byMethod };
    const aloneResult = await createLedgerReader({
      store: alone,
      rpc,
      profile: localnetProfile,
      log,
      custody,
    }).syncVault(vault);
    const afterAlone = world.rpcStats().byMethod;
    alone.close();
    const usedAlone = (m: string) => (afterAlone[m] ?? 0) - (beforeAlone[m] ?? 0);

    const beforeScan = { ...world.rpcStats().byMethod };
    const scanner = createEscrowScanner({ store, rpc, profile: localnetProfile, log });
    const scanStarted = performance.now();
    let scanned = { listed: 0, kept: 0 };
    for (let more = true; more; ) {
      const round = await scanner.scanNew();
      scanned = { listed: scanned.listed + round.listed, kept: scanned.kept + round.kept.length };
      more = round.more;
    }
    const scanMs = performance.now() - scanStarted;
    const afterScan = world.rpcStats().byMethod;
    const usedScan = (m: string) => (afterScan[m] ?? 0) - (beforeScan[m] ?? 0);

    const unfetched = result.listed - result.shared;
    return {
      jobs,
      deposits,
      lines: result.listed,
      notFetchedByVerifier: unfetched,
      getTransaction: used("getTransaction"),
      getSignaturesForAddress: used("getSignaturesForAddress"),
      getAccountInfo: used("getAccountInfo"),
      getTransactionPerUnfetched: round(used("getTransaction") / Math.max(1, unfetched), 3),
      alone: {
        lines: aloneResult.listed,
        getTransaction: usedAlone("getTransaction"),
        getSignaturesForAddress: usedAlone("getSignaturesForAddress"),
      },
      escrowScan: {
        entries: scanned.listed,
        getTransaction: usedScan("getTransaction"),
        getSignaturesForAddress: usedScan("getSignaturesForAddress"),
        kept: scanned.kept,
        ms: round(scanMs, 1),
      },
    };
  } finally {
    store.close();
    await rpc.close();
    await world.close();
  }
}

/** Fixed start of the generated history (UTC), so a cached database always means the same. */
const historyStartSec = Date.UTC(2026, 9, 1) / 1000;
const historyDays = 30;
/** Bumped when the generated history changes, so a cached database is made again. */
const generatorVersion = "ledger-2";
export const LEDGER_BENCH_VAULT = "BenchVau1t111111111111111111111111111111111";

/**
 * `lines` lines of one vault over 30 days, as the reader leaves them: pairs of a lock of 20,000
 * units and a return of 5,000 naming the same job, a deposit every 1,000th line and 3
 * unexplained debits, balances chaining from 10^12. The per-day sums are written with one
 * GROUP BY (their insert trigger dropped meanwhile), as a backfill would.
 */
function generateLedger(store: SqliteStore, lines: number): void {
  const db = store.sqlite;
  const trigger = db
    .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?")
    .pluck()
    .get("ledger_lines_daily_insert") as string;
  db.exec("DROP TRIGGER ledger_lines_daily_insert");
  const span = historyDays * 86_400;
  db.transaction(() => {
    db.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < @lines),
       d AS (SELECT i,
         CASE WHEN i IN (@lines / 3, @lines / 2, @lines * 2 / 3) THEN -7777
              WHEN i % 1000 = 0 THEN 1000000000
              WHEN i % 2 = 1 THEN -20000 ELSE 5000 END AS delta,
         CASE WHEN i IN (@lines / 3, @lines / 2, @lines * 2 / 3) THEN 'unexplained'
              WHEN i % 1000 = 0 THEN 'deposit'
              WHEN i % 2 = 1 THEN 'lock' ELSE 'return' END AS kind
         FROM n),
       b AS (SELECT i, delta, kind,
         1000000000000 + sum(delta) OVER (ORDER BY i ROWS UNBOUNDED PRECEDING) AS post FROM d)
       INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, state, succeeded,
         pre_units, post_units, delta_units, memo, memo_kind, memo_job_id, listed_at, kind,
         job_id, released, header_ok)
       SELECT @vault, 'bench-sig-' || i, i, 1000 + i * 2, @start + (i * @span) / @lines, 'read', 1,
         post - delta, post, delta,
         CASE kind WHEN 'lock' THEN 'decentral:escrow:job-' || (i / 2)
                   WHEN 'return' THEN 'decentral:settle:job-' || (i / 2 - 1) END,
         CASE kind WHEN 'lock' THEN 'escrow' WHEN 'return' THEN 'settle' END,
         CASE kind WHEN 'lock' THEN 'job-' || (i / 2) WHEN 'return' THEN 'job-' || (i / 2 - 1) END,
         0, kind,
         CASE kind WHEN 'lock' THEN 'job-' || (i / 2) WHEN 'return' THEN 'job-' || (i / 2 - 1) END,
         kind = 'lock', CASE kind WHEN 'lock' THEN 1 END
       FROM b`,
      // Bigints bind as INTEGER: with numbers the division would be a REAL one.
    ).run({
      lines: BigInt(lines),
      vault: LEDGER_BENCH_VAULT,
      start: BigInt(historyStartSec),
      span: BigInt(span),
    });
    db.prepare(
      `INSERT INTO ledger_daily (vault, day, kind, lines, units_lo, units_hi)
       SELECT vault, block_time / 86400, kind, count(*), ${splitSum("delta_units", "units")}
       FROM ledger_lines WHERE vault = ? GROUP BY vault, block_time / 86400, kind`,
    ).run(LEDGER_BENCH_VAULT);
    db.prepare(
      `INSERT INTO ledger_cursors (vault, newest_signature, newest_slot, sync_number, balance_units,
         balance_slot, balance_at, synced_at, final_through, chained_ord, updated_at)
       SELECT vault, signature, slot, 1, post_units, slot, @now, @now, @now, ord, @now
       FROM ledger_lines WHERE vault = @vault ORDER BY ord DESC LIMIT 1`,
    ).run({ vault: LEDGER_BENCH_VAULT, now: BigInt((historyStartSec + span + 3600) * 1000) });
  }).immediate();
  db.exec(trigger);
}

async function measureStatement(lines: number, runs: number): Promise<LedgerStatementFigures> {
  mkdirSync(cacheDir, { recursive: true });
  const path = join(
    cacheDir,
    `ledger-${reportDbVersion(lines, "sql")}-${generatorVersion}-${lines}.db`,
  );
  let generateSeconds = 0;
  if (!existsSync(path)) {
    const building = `${path}.building`;
    for (const s of ["", "-wal", "-shm"]) rmSync(building + s, { force: true });
    const started = performance.now();
    const fresh = openSqliteStore(building);
    migrateStore(fresh);
    generateLedger(fresh, lines);
    fresh.sqlite.pragma("wal_checkpoint(TRUNCATE)");
    fresh.sqlite.exec("ANALYZE");
    fresh.close();
    renameSync(building, path);
    generateSeconds = round((performance.now() - started) / 1000, 1);
  }
  const store = openSqliteStore(path);
  try {
    const profile = localnetProfile;
    const period = {
      from: (historyStartSec + 86_400 + 43_200) * 1000,
      to: (historyStartSec + 29 * 86_400 + 43_200) * 1000,
      vault: LEDGER_BENCH_VAULT,
    };
    const whole = {
      from: 0,
      to: (historyStartSec + historyDays * 86_400 + 60) * 1000,
      vault: LEDGER_BENCH_VAULT,
    };
    const now = () => (historyStartSec + historyDays * 86_400 + 3600) * 1000;
    const timed = async (q: typeof period) => {
      const t = performance.now();
      const s = await buildStatement(store, q, { profile, graceSeconds: 300, now });
      return { ms: performance.now() - t, s };
    };
    await timed(period);
    const periodMs: number[] = [];
    const wholeMs: number[] = [];
    let last = await timed(whole);
    for (let k = 0; k < runs; k++) {
      periodMs.push((await timed(period)).ms);
      last = await timed(whole);
      wholeMs.push(last.ms);
    }
    const v = last.s.vaults[0]!;
    return {
      lines,
      generateSeconds,
      periodMedianMs: round(percentile(periodMs, 50), 1),
      periodP95Ms: round(percentile(periodMs, 95), 1),
      wholeMedianMs: round(percentile(wholeMs, 50), 1),
      runs,
      differenceUnits: v.differenceUnits === null ? null : v.differenceUnits.toString(),
      counted: {
        locks: v.counts.locks,
        returns: v.counts.returns,
        deposits: v.counts.deposits,
        unexplained: v.counts.unexplained,
      },
    };
  } finally {
    store.close();
  }
}

/** Both ledger measurements; `quick` reads fewer jobs (the statement stays at `lines`). */
export async function measureLedger(options: {
  lines: number;
  quick: boolean;
  say: (line: string) => void;
}): Promise<LedgerResult> {
  const jobs = options.quick ? 150 : 600;
  options.say(`ledger: ${jobs} verified jobs and ${jobs / 50} top-ups, then the vault read`);
  const rpc = await measureRpc(jobs, jobs / 50);
  options.say(`ledger: statement over ${options.lines.toLocaleString("en-US")} lines`);
  const statement = await measureStatement(options.lines, options.quick ? 5 : 11);
  return { rpc, statement };
}
