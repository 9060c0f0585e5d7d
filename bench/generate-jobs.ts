import { createHash } from "node:crypto";
import bs58 from "bs58";
import type { SqliteStore } from "../src/db/client.js";

/**
 * Writes `count` realistic finished jobs (receipt, verdict, amounts, transactions and check
 * results) for report and audit benchmarks. Deterministic for a given seed, so runs compare.
 *
 * Shape of the data, per job: one of four models priced as the localnet profile, usage drawn
 * around the 500 included tokens, one of 60 workers (a third staked at 85%), one of 25 API key
 * fingerprints, created over the 30 days before `endAt`; 97% verified, 1.5% discrepancy,
 * 0.5% refunded (504), 1% not final yet.
 */
export interface GenerateOptions {
  count: number;
  endAt: number;
  days?: number;
  seed?: number;
  /** Write chain_transactions and check_results for every job (audit lookups need them). */
  withEvidence?: boolean;
  onProgress?: (done: number) => void;
}

const models = [
  { name: "phi-4-mini", perRequest: 2n, per1k: 1n, weight: 30 },
  { name: "qwen3-8b", perRequest: 8n, per1k: 4n, weight: 40 },
  { name: "mistral-small-3.1-24b", perRequest: 16n, per1k: 8n, weight: 20 },
  { name: "llama-3.3-70b", perRequest: 40n, per1k: 20n, weight: 10 },
] as const;

/** The checks the verifier records for a settled job under the localnet profile. */
const checkNames = [
  "escrow.exists",
  "escrow.vault",
  "escrow.covers_charge",
  "settlement.exists",
  "settlement.after_escrow",
  "settlement.single",
  "settlement.recipients",
  "settlement.worker_paid",
  "settlement.split",
  "settlement.conserves_lock",
  "settlement.within_window",
  "signatures.unique",
  "charge.matches_price",
  "jobs_api.matches_receipt",
];

/** Bump when the generated rows change, so cached benchmark databases are regenerated. */
export const generatorVersion = "2";

/** Small deterministic PRNG (mulberry32): benchmark data must be the same on every run. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function key58(label: string, bytes: 32 | 64): string {
  const digest = createHash("sha512").update(label).digest();
  return bs58.encode(digest.subarray(0, bytes));
}

/** A token balance change as stored in transaction facts (amounts as decimal strings). */
function tokenChange(account: string, owner: string, delta: bigint) {
  const pre = 1_000_000_000_000n;
  return {
    account,
    owner,
    mint: usdcMint,
    programId: "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    decimals: 6,
    pre: pre.toString(),
    post: (pre + delta).toString(),
    delta: delta.toString(),
  };
}

const usdcMint = key58("mint", 32);
const escrowVault = key58("escrow-vault", 32);
const escrowAuthority = key58("escrow-authority", 32);
const treasury = key58("treasury-account", 32);
const treasuryOwner = key58("treasury", 32);
const feePayer = key58("payer", 32);

function priceCredits(model: (typeof models)[number], completionTokens: number): bigint {
  const extra = Math.max(0, completionTokens - 500);
  return model.perRequest + model.per1k * BigInt(Math.ceil(extra / 1000));
}

export function generateJobs(store: SqliteStore, options: GenerateOptions): void {
  const rand = prng(options.seed ?? 42);
  const days = options.days ?? 30;
  const span = days * 86_400_000;
  const workers = Array.from({ length: 60 }, (_, i) => ({
    address: key58(`worker-${i}`, 32),
    tokenAccount: key58(`worker-account-${i}`, 32),
    rateBps: i % 3 === 0 ? 8500n : 7500n,
  }));
  const keys = Array.from({ length: 25 }, (_, i) =>
    createHash("sha256").update(`key-${i}`).digest("hex").slice(0, 16),
  );
  const vaults = keys.map((_, i) => key58(`credit-vault-${i}`, 32));
  const totalWeight = models.reduce((s, m) => s + m.weight, 0);
  const pickModel = () => {
    let r = rand() * totalWeight;
    for (const m of models) {
      r -= m.weight;
      if (r < 0) return m;
    }
    return models[0];
  };

  const insertJob = store.sqlite.prepare(`insert into jobs (
    job_id, source, escrow_tx, settlement_tx, worker, credits_remaining_units, model,
    prompt_tokens, completion_tokens, total_tokens, max_tokens, stream, http_status, latency_ms,
    ttfb_ms, key_fingerprint, tags, capture_state, receipt_hash, created_at, recorded_at, updated_at,
    verdict, verdict_at, commitment, escrowed_units, charged_units, worker_paid_units,
    treasury_paid_units, refunded_units, expected_charge_units, fees_lamports
  ) values (?, 'proxy', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', 'complete', ?, ?, ?, ?,
    ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertTx = store.sqlite.prepare(`insert or ignore into chain_transactions (
    signature, state, commitment, slot, block_time, fee_lamports, succeeded, err, facts, first_seen_at,
    status_checked_at, fetched_at
  ) values (?, 'finalized', 'finalized', ?, ?, 5000, 1, 'null', ?, ?, ?, ?)`);
  const insertCheck = store.sqlite.prepare(`insert into check_results (
    job_id, name, outcome, reason, expected, actual, checked_at
  ) values (?, ?, ?, ?, ?, ?, ?)`);

  const batch = 10_000;
  for (let start = 0; start < options.count; start += batch) {
    const end = Math.min(options.count, start + batch);
    const writeBatch = store.sqlite.transaction(() => {
      for (let i = start; i < end; i++) {
        const createdAt = Math.floor(options.endAt - span + (i / options.count) * span);
        const model = pickModel();
        const worker = workers[Math.floor(rand() * workers.length)]!;
        const keyIndex = Math.floor(rand() * keys.length);
        const key = keys[keyIndex]!;
        const completion = Math.floor(50 + rand() * rand() * 2400);
        const prompt = Math.floor(20 + rand() * 600);
        const maxTokens = rand() < 0.5 ? null : 2000;
        const lock = priceCredits(model, maxTokens ?? 2000) * 10_000n;
        const charge = priceCredits(model, completion) * 10_000n;
        const roll = rand();
        const verdict =
          roll < 0.97
            ? "verified"
            : roll < 0.985
              ? "discrepancy"
              : roll < 0.99
                ? "verified"
                : "awaiting_finality";
        const refunded = roll >= 0.985 && roll < 0.99;
        const final = verdict !== "awaiting_finality";
        const workerPaid = refunded ? 0n : (charge * worker.rateBps) / 10_000n;
        const treasuryPaid = refunded ? 0n : charge - workerPaid;
        const jobId = `job_${i.toString(36).padStart(20, "0")}`;
        const escrowTx = key58(`escrow-${i}`, 64);
        const settlementTx = key58(`settle-${i}`, 64);
        const slot = 300_000_000 + i * 3;
        insertJob.run(
          jobId,
          escrowTx,
          settlementTx,
          worker.address,
          (1_000_000n - BigInt(i % 100_000)) * 10_000n,
          model.name,
          prompt,
          completion,
          prompt + completion,
          maxTokens,
          rand() < 0.4 ? 1 : 0,
          refunded ? 504 : 200,
          Math.floor(200 + rand() * 3000),
          Math.floor(50 + rand() * 400),
          key,
          jobId,
          createdAt,
          createdAt + 5,
          createdAt + 20_000,
          verdict,
          final ? createdAt + 20_000 : null,
          final ? "finalized" : "confirmed",
          final ? lock : null,
          final && !refunded ? charge : final ? 0n : null,
          final ? workerPaid : null,
          final ? treasuryPaid : null,
          final ? (refunded ? lock : lock - charge) : null,
          refunded ? 0n : charge,
          final ? 10_000n : null,
        );
        if (options.withEvidence !== false) {
          const blockTime = Math.floor(createdAt / 1000);
          const escrowMoves = [
            tokenChange(vaults[keyIndex]!, escrowAuthority, -lock),
            tokenChange(escrowVault, escrowAuthority, lock),
          ];
          const settleMoves = refunded
            ? [
                tokenChange(escrowVault, escrowAuthority, -lock),
                tokenChange(vaults[keyIndex]!, escrowAuthority, lock),
              ]
            : [
                tokenChange(escrowVault, escrowAuthority, -lock),
                tokenChange(worker.tokenAccount, worker.address, workerPaid),
                tokenChange(treasury, treasuryOwner, treasuryPaid),
                tokenChange(vaults[keyIndex]!, escrowAuthority, lock - charge),
              ];
          for (const [sig, s, memo, moves] of [
            [escrowTx, slot, `decentral:escrow:${jobId}`, escrowMoves],
            [
              settlementTx,
              slot + 2,
              `decentral:${refunded ? "refund" : "settle"}:${jobId}`,
              settleMoves,
            ],
          ] as const) {
            insertTx.run(
              sig,
              s,
              blockTime,
              JSON.stringify({
                signature: sig,
                slot: s,
                blockTime,
                succeeded: true,
                fee: "5000",
                feePayer,
                memos: [memo],
                tokenChanges: moves.filter((m) => m.delta !== "0"),
              }),
              createdAt,
              createdAt + 15_000,
              createdAt + 15_000,
            );
          }
          for (const name of checkNames) {
            const failing = verdict === "discrepancy" && name === "settlement.split";
            insertCheck.run(
              jobId,
              name,
              failing ? "fail" : "pass",
              failing ? "worker share below the rate" : null,
              failing ? `"${(charge * worker.rateBps) / 10_000n}"` : null,
              failing ? `"${workerPaid - 1n}"` : null,
              createdAt + 20_000,
            );
          }
        }
      }
    });
    writeBatch.immediate();
    options.onProgress?.(end);
  }
}

/** Bump when the rows `generateJobsSql` writes change (its cached databases are keyed on it). */
export const sqlGeneratorVersion = "3";

/**
 * Sizes of the two tables of drawn attributes `generateJobsSql` reads (both prime): job i takes
 * its model, worker, key, max_tokens and stream from row i mod the first, and its usage, verdict
 * and timings from row i mod the second, so no combination repeats within 10^12 jobs.
 */
const drawRows = [1_000_003, 999_983] as const;

/**
 * Writes `count` finished jobs (no evidence rows) with set-based SQL, a million per statement,
 * for the 10,000,000-job report benchmark. The random draws are those of `generateJobs` (the
 * same PRNG, seed and order: model by weight, worker, key, usage, max_tokens, stream, verdict
 * roll, latencies), made once in JavaScript into a table of a million rows; one
 * `INSERT ... SELECT` over a recursive CTE of job numbers then joins each job to its draws and
 * prices it. Up to 999,983 jobs get exactly the attributes and amounts `generateJobs` gives job
 * i; past that, each job pairs two rows of the table (see `drawRows`). Only the job id, the
 * signatures (fixed-length placeholders, as long as real ones) and created_at's rounding differ.
 * The caller turns triggers and indexes off first if it wants speed (report-db.ts does).
 */
export function generateJobsSql(
  store: SqliteStore,
  options: { count: number; endAt: number; days?: number; onProgress?: (done: number) => void },
): void {
  const db = store.sqlite;
  const span = (options.days ?? 30) * 86_400_000;
  const rand = prng(42);
  const totalWeight = models.reduce((s, m) => s + m.weight, 0);
  db.exec(`CREATE TEMP TABLE gen_workers (idx INTEGER PRIMARY KEY, address TEXT, rate_bps INTEGER);
    CREATE TEMP TABLE gen_keys (idx INTEGER PRIMARY KEY, fingerprint TEXT);
    CREATE TEMP TABLE gen_models (idx INTEGER PRIMARY KEY, name TEXT, per_request INTEGER, per_1k INTEGER);
    CREATE TEMP TABLE gen_draws (idx INTEGER PRIMARY KEY, mi INTEGER, wi INTEGER, ki INTEGER,
      completion INTEGER, prompt INTEGER, no_max INTEGER, stream INTEGER, roll REAL,
      latency INTEGER, ttfb INTEGER)`);
  const w = db.prepare("INSERT INTO gen_workers VALUES (?, ?, ?)");
  for (let i = 0; i < 60; i++) w.run(i, key58(`worker-${i}`, 32), i % 3 === 0 ? 8500 : 7500);
  const k = db.prepare("INSERT INTO gen_keys VALUES (?, ?)");
  for (let i = 0; i < 25; i++) {
    k.run(i, createHash("sha256").update(`key-${i}`).digest("hex").slice(0, 16));
  }
  const m = db.prepare("INSERT INTO gen_models VALUES (?, ?, ?, ?)");
  models.forEach((model, i) => {
    m.run(i, model.name, Number(model.perRequest), Number(model.per1k));
  });
  // The draws of generateJobs, in its order (see the loop there), one row per job number.
  const sizes = drawRows.map((n) => Math.min(n, options.count));
  const draw = db.prepare("INSERT INTO gen_draws VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  db.transaction(() => {
    for (let i = 0; i < Math.max(...sizes); i++) {
      // pickModel of generateJobs: the first model whose cumulative weight passes the draw.
      let r = rand() * totalWeight - models[0].weight;
      let mi = 0;
      while (r >= 0 && mi < models.length - 1) {
        mi++;
        r -= models[mi]!.weight;
      }
      const wi = Math.floor(rand() * 60);
      const ki = Math.floor(rand() * 25);
      const completion = Math.floor(50 + rand() * rand() * 2400);
      const prompt = Math.floor(20 + rand() * 600);
      const noMax = rand() < 0.5 ? 1 : 0;
      const roll = rand();
      const stream = rand() < 0.4 ? 1 : 0;
      const latency = Math.floor(200 + rand() * 3000);
      const ttfb = Math.floor(50 + rand() * 400);
      draw.run(i, mi, wi, ki, completion, prompt, noMax, stream, roll, latency, ttfb);
    }
  }).immediate();
  // Parameters bind as bigints: a JavaScript number binds as REAL, and the divisions must not.
  const insert = db.prepare(`
    WITH RECURSIVE seq(i) AS (SELECT @first UNION ALL SELECT i + 1 FROM seq WHERE i < @last),
    drawn AS (
      SELECT s.i, g.name AS model, g.per_request, g.per_1k, wk.address, wk.rate_bps,
        kk.fingerprint, a.no_max, a.stream, b.completion, b.prompt, b.roll, b.latency, b.ttfb,
        @endAt - @span + s.i * @span / @count AS created_at
      FROM seq s JOIN gen_draws a ON a.idx = s.i % @rowsA JOIN gen_draws b ON b.idx = s.i % @rowsB
        JOIN gen_models g ON g.idx = a.mi JOIN gen_workers wk ON wk.idx = a.wi
        JOIN gen_keys kk ON kk.idx = a.ki),
    priced AS (
      SELECT d.*,
        -- the lock prices max_tokens, or 2,000 tokens when the request set none
        (per_request + per_1k * 2) * 10000 AS lock,
        (per_request + per_1k * ((max(0, completion - 500) + 999) / 1000)) * 10000 AS charge,
        CASE WHEN roll < 0.97 THEN 'verified' WHEN roll < 0.985 THEN 'discrepancy'
             WHEN roll < 0.99 THEN 'verified' ELSE 'awaiting_finality' END AS verdict,
        (roll >= 0.985 AND roll < 0.99) AS refunded, roll < 0.99 AS final
      FROM drawn d)
    INSERT INTO jobs (job_id, source, escrow_tx, settlement_tx, worker, credits_remaining_units,
      model, prompt_tokens, completion_tokens, total_tokens, max_tokens, stream, http_status,
      latency_ms, ttfb_ms, key_fingerprint, tags, capture_state, receipt_hash, created_at,
      recorded_at, updated_at, verdict, verdict_at, commitment, escrowed_units, charged_units,
      worker_paid_units, treasury_paid_units, refunded_units, expected_charge_units, fees_lamports)
    SELECT printf('job_s%019d', i), 'proxy', printf('E%087d', i), printf('S%087d', i), address,
      (1000000 - i % 100000) * 10000, model, prompt, completion, prompt + completion,
      CASE WHEN no_max THEN NULL ELSE 2000 END, stream, CASE WHEN refunded THEN 504 ELSE 200 END,
      latency, ttfb, fingerprint, '{}', 'complete', printf('job_s%019d', i),
      created_at, created_at + 5, created_at + 20000, verdict,
      CASE WHEN final THEN created_at + 20000 END,
      CASE WHEN final THEN 'finalized' ELSE 'confirmed' END,
      CASE WHEN final THEN lock END,
      CASE WHEN NOT final THEN NULL WHEN refunded THEN 0 ELSE charge END,
      CASE WHEN NOT final THEN NULL WHEN refunded THEN 0 ELSE charge * rate_bps / 10000 END,
      CASE WHEN NOT final THEN NULL WHEN refunded THEN 0 ELSE charge - charge * rate_bps / 10000 END,
      CASE WHEN NOT final THEN NULL WHEN refunded THEN lock ELSE lock - charge END,
      CASE WHEN refunded THEN 0 ELSE charge END,
      CASE WHEN final THEN 10000 END
    FROM priced`);
  const chunk = 1_000_000;
  for (let start = 0; start < options.count; start += chunk) {
    const end = Math.min(options.count, start + chunk);
    insert.run({
      first: BigInt(start),
      last: BigInt(end - 1),
      endAt: BigInt(options.endAt),
      span: BigInt(span),
      count: BigInt(options.count),
      rowsA: BigInt(sizes[0]!),
      rowsB: BigInt(sizes[1]!),
    });
    options.onProgress?.(end);
  }
  db.exec(`DROP TABLE gen_workers; DROP TABLE gen_keys; DROP TABLE gen_models;
    DROP TABLE gen_draws`);
}
