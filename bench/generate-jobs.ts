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

/**
 * Writes `count` finished jobs (no evidence rows) with set-based SQL, a million per statement,
 * for the 10,000,000-job report benchmark: the same shape as `generateJobs` (four models by
 * weight, 60 workers, 25 keys, 30 days, the same verdict mix and amounts) drawn from integer
 * hashes of the job number instead of a PRNG, so it takes minutes, not an hour.
 */
export function generateJobsSql(
  store: SqliteStore,
  options: { count: number; endAt: number; days?: number; onProgress?: (done: number) => void },
): void {
  const db = store.sqlite;
  const span = (options.days ?? 30) * 86_400_000;
  db.exec(`CREATE TEMP TABLE gen_workers (idx INTEGER PRIMARY KEY, address TEXT, rate_bps INTEGER);
    CREATE TEMP TABLE gen_keys (idx INTEGER PRIMARY KEY, fingerprint TEXT);
    CREATE TEMP TABLE gen_models (idx INTEGER PRIMARY KEY, name TEXT, per_request INTEGER, per_1k INTEGER)`);
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
  // Seven independent 32-bit hashes of the job number (multiply, then xorshift-multiply), one
  // per drawn attribute: a plain multiplicative hash would tie worker to key.
  const multipliers = [
    2654435761, 2246822519, 3266489917, 668265263, 374761393, 3624381073, 1103515245,
  ];
  const xor = (a: string, b: string) => `((${a}) | (${b})) - ((${a}) & (${b}))`;
  const stage1 = multipliers.map((m, s) => `((i + ${s * 7919}) * ${m}) % 4294967296 AS x${s}`);
  const stage2 = multipliers.map(
    (_, s) => `(${xor(`x${s}`, `x${s} >> 15`)}) * 2246822519 % 4294967296 AS y${s}`,
  );
  const h = (s: number) => `(${xor(`y${s}`, `y${s} >> 13`)})`;
  const insert = db.prepare(`
    WITH RECURSIVE seq(i) AS (SELECT CAST(? AS INTEGER) UNION ALL SELECT i + 1 FROM seq WHERE i < ?),
    mixed1 AS (SELECT i, ${stage1.join(", ")} FROM seq),
    mixed2 AS (SELECT i, ${stage2.join(", ")} FROM mixed1),
    drawn AS (
      SELECT i,
        ${h(0)} % 60 AS wi, ${h(1)} % 25 AS ki,
        CASE WHEN ${h(2)} % 100 < 30 THEN 0 WHEN ${h(2)} % 100 < 70 THEN 1
             WHEN ${h(2)} % 100 < 90 THEN 2 ELSE 3 END AS mi,
        50 + (${h(3)} % 2400) * (${h(4)} % 1000) / 1000 AS completion,
        ${h(5)} % 1000 AS roll,
        ${h(6)} % 2 AS no_max
      FROM mixed2),
    priced AS (
      SELECT d.*, g.name AS model, g.per_request, g.per_1k, wk.address, wk.rate_bps,
        kk.fingerprint,
        (g.per_request + g.per_1k * 2) * 10000 AS lock,
        (g.per_request + g.per_1k * ((max(0, d.completion - 500) + 999) / 1000)) * 10000 AS charge,
        CAST(? - ? + (d.i * ?) / ? AS INTEGER) AS created_at
      FROM drawn d JOIN gen_models g ON g.idx = d.mi JOIN gen_workers wk ON wk.idx = d.wi
        JOIN gen_keys kk ON kk.idx = d.ki),
    judged AS (
      SELECT p.*,
        CASE WHEN roll < 970 THEN 'verified' WHEN roll < 985 THEN 'discrepancy'
             WHEN roll < 990 THEN 'verified' ELSE 'awaiting_finality' END AS verdict,
        (roll >= 985 AND roll < 990) AS refunded, roll < 990 AS final
      FROM priced p)
    INSERT INTO jobs (job_id, source, escrow_tx, settlement_tx, worker, credits_remaining_units,
      model, prompt_tokens, completion_tokens, total_tokens, max_tokens, stream, http_status,
      latency_ms, ttfb_ms, key_fingerprint, tags, capture_state, receipt_hash, created_at,
      recorded_at, updated_at, verdict, verdict_at, commitment, escrowed_units, charged_units,
      worker_paid_units, treasury_paid_units, refunded_units, expected_charge_units, fees_lamports)
    SELECT printf('job_s%019d', i), 'proxy', printf('E%087d', i), printf('S%087d', i), address,
      (1000000 - i % 100000) * 10000, model, 20 + i % 600, completion, 20 + i % 600 + completion,
      CASE WHEN no_max THEN NULL ELSE 2000 END, i % 5 < 2, CASE WHEN refunded THEN 504 ELSE 200 END,
      200 + i % 3000, 50 + i % 400, fingerprint, '{}', 'complete', printf('job_s%019d', i),
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
    FROM judged`);
  const chunk = 1_000_000;
  for (let start = 0; start < options.count; start += chunk) {
    const end = Math.min(options.count, start + chunk) - 1;
    insert.run(start, end, options.endAt, span, span, options.count);
    options.onProgress?.(end + 1);
  }
  db.exec("DROP TABLE gen_workers; DROP TABLE gen_keys; DROP TABLE gen_models");
}
