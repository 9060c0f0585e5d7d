import { createHash } from "node:crypto";
import bs58 from "bs58";
import { formatUnits, UNITS_PER_CREDIT } from "../money.js";
import type { LocalChain } from "./chain.js";
import {
  completionWords,
  naturalCompletionTokens,
  promptDigest,
  promptTokenCount,
} from "./completion-text.js";
import type { EscrowLedger, SettlementInput, SettlementShape } from "./escrow-ledger.js";
import type { LocalAccounts, LocalWorker } from "./keys.js";
import { DEFAULT_MAX_TOKENS, findModel, type ModelEntry, priceUnits } from "./models.js";

/**
 * The Decentral simulator's domain: admits a job, locks its escrow, "runs" it, and settles it
 * the way the reference model says, or with exactly one injected discrepancy. Knows nothing of
 * HTTP. Every chain step is synchronous, so jobs never interleave inside a step.
 */

/** Discrepancies the simulator can inject; each names exactly what it does wrong. */
export const chainFaults = [
  "underpay-worker",
  "wrong-worker",
  "skip-settlement",
  "double-settle",
  "reuse-escrow",
  "phantom-signature",
  "overcharge",
  "failed-settlement",
] as const;
/** Faults that end a request with an error instead of a completion. */
export const errorFaults = ["busy", "timeout"] as const;
/**
 * Frauds no receipt shows, found only by reading the credit vault's history (src/ledger):
 * `unreceipted-charge` locks and settles a hidden second job against the same vault besides the
 * job it answers; `unreleased-lock` locks and never settles or refunds. Not drawn at random
 * unless listed in `faults`: the verifier alone cannot see them.
 */
export const ledgerFaults = [
  "unreceipted-charge",
  "unreleased-lock",
  "credits-header-off",
] as const;
export const simFaults = [...chainFaults, ...errorFaults, ...ledgerFaults] as const;
export type SimFault = (typeof simFaults)[number];

export function isSimFault(name: string): name is SimFault {
  return (simFaults as readonly string[]).includes(name);
}

export type JobStatus = "pending" | "processing" | "settling" | "settled" | "failed" | "refunded";

export interface SimulatorOptions {
  /**
   * Seed of job ids and fault draws. `startLocalWorld` picks a random one unless given, so job
   * ids and signatures never repeat across runs that share a database.
   */
  seed: string;
  /** Share (0..1) of requests without `x-sim-fault` that get a fault drawn from `faults`. Default 0. */
  faultRate: number;
  /** Faults drawn at `faultRate`. Default: every chain and error fault (not the ledger ones). */
  faults: SimFault[];
  /** `error.details.retry_after` of a 503, in seconds. Default 2. */
  retryAfterSeconds: number;
  /** Milliseconds a `timeout` job waits before its refund and the 504 (the network waits 120 s). Default 0. */
  timeoutAfterMs: number;
  /** Simulated inference time per job in milliseconds. Default 0. */
  inferenceMs: number;
  /** Words (tokens) per streamed chunk. Default 16. */
  streamChunkTokens: number;
  /**
   * Every this many ms, each funded key's vault gets a top-up of `topUpUnits` (a customer
   * paying in on a schedule). Read by `startLocalWorld`. Default 0: none.
   */
  topUpEveryMs: number;
  /** Base units of each periodic top-up. Default 5,000,000 (500 credits). */
  topUpUnits: bigint;
  /**
   * `GET /v1/account` reports 5 credits more than the key's vault holds (`account-balance-off`;
   * one request can ask the same with `x-sim-fault: account-balance-off`). Default false.
   */
  accountBalanceOff: boolean;
}

/** What `account-balance-off` adds to the balance `GET /v1/account` reports: 5 credits. */
export const ACCOUNT_BALANCE_OFF_UNITS = 50_000n;

export const defaultSimulatorOptions: SimulatorOptions = {
  seed: "decentral-audit",
  faultRate: 0,
  faults: [...chainFaults, ...errorFaults],
  retryAfterSeconds: 2,
  timeoutAfterMs: 0,
  inferenceMs: 0,
  streamChunkTokens: 16,
  accountBalanceOff: false,
  topUpEveryMs: 0,
  topUpUnits: 5_000_000n,
};

/** What the simulator really did for one job (`GET /sim/jobs/{id}`); units are bigint here. */
export interface SimJob {
  jobId: string;
  apiKeyIndex: number;
  model: string;
  stream: boolean;
  /** The fault applied, or null for an honest job. */
  fault: SimFault | null;
  /** Real outcome: `failed` when the settlement failed on chain or never happened. */
  status: JobStatus;
  /** Status the jobs API reports (what Decentral claims). */
  apiStatus: JobStatus;
  promptTokens: number;
  completionTokens: number;
  maxTokens: number;
  finishReason: "stop" | "length";
  priceUnits: bigint;
  lockUnits: bigint;
  /** Amount charged: the price, or more under `overcharge`. */
  chargeUnits: bigint;
  /** Paid to the worker by each settlement (0 when nothing settled). */
  workerShareUnits: bigint;
  /** What the reference model says the worker should get: floor(charge * rate). */
  expectedWorkerShareUnits: bigint;
  treasuryShareUnits: bigint;
  /** Returned to the credit vault: lock - charge on settlement, the whole lock on refund. */
  refundUnits: bigint;
  workerNamed: string;
  workerPaid: string | null;
  staked: boolean;
  rate: number;
  rateBps: number;
  /** This job's own escrow lock (null under `reuse-escrow`). */
  escrowTx: string | null;
  /** Settlement transactions that landed (failed ones included). */
  settlementTxs: string[];
  refundTx: string | null;
  /** What `x-decentral-tx-signature` carries. */
  claimedEscrowTx: string | null;
  /** What `x-decentral-settlement-tx` carries; null when absent (always, for a stream). */
  headerSettlementTx: string | null;
  /** What `GET /v1/jobs/{id}` reports as `on_chain.settlement_tx`. */
  apiSettlementTx: string | null;
  settlementShape: SettlementShape;
  /**
   * Under `unreceipted-charge`: the hidden job the operator locked and settled against the same
   * vault, which no response names (units as decimal strings).
   */
  hidden: {
    jobId: string;
    escrowTx: string;
    settlementTx: string;
    lockUnits: string;
    chargeUnits: string;
    refundUnits: string;
  } | null;
  /** Slot of the last transaction of the job. */
  slot: number | null;
  creditVault: string;
  createdAt: string;
  /** Fingerprint of the prompt; the completion text is regenerated from it, not stored. */
  promptDigest: Buffer;
}

export type JobError = {
  status: 400 | 401 | 402 | 404 | 503 | 504;
  code: string;
  type: string;
  message: string;
  param: string | null;
  details?: Record<string, unknown>;
  headers?: Record<string, string>;
};

export interface JobRequest {
  apiKeyIndex: number;
  model: string;
  promptText: string;
  messageCount: number;
  maxTokens: number | null;
  stream: boolean;
  /** From `x-sim-fault`; already validated. */
  fault: SimFault | null;
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** A seeded pseudo-random source (xorshift128+ folded to [0, 1)). */
export function seededRandom(seed: string): () => number {
  const d = sha256(seed);
  let s0 = d.readBigUInt64LE(0) | 1n;
  let s1 = d.readBigUInt64LE(8) | 2n;
  const mask = 0xffff_ffff_ffff_ffffn;
  return () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= (x << 23n) & mask;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number(((s1 + y) & mask) >> 11n) / 2 ** 53;
  };
}

const JOB_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export class DecentralJobs {
  private readonly jobs = new Map<string, SimJob>();
  /** The newest escrow lock of each API key: what `reuse-escrow` presents again. */
  private readonly lastEscrowByKey = new Map<number, string>();
  private readonly random: () => number;
  /** Jobs locked and not yet settled or refunded, with the worker the chain will pay. */
  private readonly awaitingSettlement = new Map<string, LocalWorker>();
  private sequence = 0;
  private nextWorker = 0;

  constructor(
    private readonly chain: LocalChain,
    private readonly ledger: EscrowLedger,
    private readonly accounts: LocalAccounts,
    readonly options: SimulatorOptions,
  ) {
    this.random = seededRandom(`${options.seed}/faults`);
  }

  /** The model entry, or a 404 error. */
  model(id: string): ModelEntry | JobError {
    return (
      findModel(id) ?? {
        status: 404,
        code: "model_not_found",
        type: "invalid_request_error",
        message: `model ${id} does not exist`,
        param: "model",
      }
    );
  }

  /** Credits left in an API key's credit vault, in base units. */
  creditUnits(apiKeyIndex: number): bigint {
    const vault = this.accounts.creditVaults[apiKeyIndex]?.vault;
    return vault ? this.ledger.balance(vault) : 0n;
  }

  /** A job by id (callers check that the asking key owns it). */
  job(jobId: string): SimJob | undefined {
    return this.jobs.get(jobId);
  }

  allJobs(): SimJob[] {
    return [...this.jobs.values()];
  }

  /**
   * Admits a job: picks its fault, prices it, and locks its escrow. Returns the job in status
   * `processing`, or the error to answer with (402 and 503 leave no trace on chain).
   */
  begin(request: JobRequest): SimJob | JobError {
    const model = this.model(request.model);
    if ("code" in model) return model;
    const fault = request.fault ?? this.drawFault();
    if (fault === "busy") {
      return {
        status: 503,
        code: "workers_busy",
        type: "server_error",
        message: "all workers for this model are busy; retry later",
        param: null,
        details: { retry_after: this.options.retryAfterSeconds },
        headers: { "retry-after": String(this.options.retryAfterSeconds) },
      };
    }
    const maxTokens = request.maxTokens ?? DEFAULT_MAX_TOKENS;
    const natural = naturalCompletionTokens(model.id, request.promptText);
    const completionTokens = Math.min(natural, maxTokens);
    const price = priceUnits(model, completionTokens);
    let lock = priceUnits(model, maxTokens);
    let charge = price;
    if (fault === "overcharge") {
      charge = price + BigInt(model.creditsPerRequest) * UNITS_PER_CREDIT;
      if (lock < charge) lock = charge;
    }
    const creditVault = this.accounts.creditVaults[request.apiKeyIndex]?.vault;
    if (!creditVault || this.ledger.balance(creditVault) < lock) {
      return {
        status: 402,
        code: "insufficient_credits",
        type: "billing_error",
        message: `this job needs ${lock / UNITS_PER_CREDIT} credits locked; the balance is ${this.creditUnits(request.apiKeyIndex) / UNITS_PER_CREDIT}`,
        param: null,
      };
    }

    const seq = this.sequence++;
    const jobId = this.jobId(seq);
    const named = this.pickWorker();
    const paid = fault === "wrong-worker" ? this.partnerOf(named) : named;
    const reused =
      fault === "reuse-escrow" ? this.lastEscrowByKey.get(request.apiKeyIndex) : undefined;
    const appliedFault = fault === "reuse-escrow" && !reused ? null : fault;
    const expectedWorker = (charge * BigInt(paid.rateBps)) / 10_000n;

    const job: SimJob = {
      jobId,
      apiKeyIndex: request.apiKeyIndex,
      model: model.id,
      stream: request.stream,
      fault: appliedFault,
      status: "pending",
      apiStatus: "pending",
      promptTokens: promptTokenCount(request.promptText, request.messageCount),
      completionTokens,
      maxTokens,
      finishReason: natural > maxTokens ? "length" : "stop",
      priceUnits: price,
      lockUnits: lock,
      chargeUnits: appliedFault === "timeout" ? 0n : charge,
      workerShareUnits: 0n,
      expectedWorkerShareUnits: appliedFault === "timeout" ? 0n : expectedWorker,
      treasuryShareUnits: 0n,
      refundUnits: 0n,
      workerNamed: named.address,
      workerPaid: null,
      staked: paid.staked,
      rate: paid.rateBps / 10_000,
      rateBps: paid.rateBps,
      escrowTx: null,
      settlementTxs: [],
      refundTx: null,
      claimedEscrowTx: null,
      headerSettlementTx: null,
      apiSettlementTx: null,
      settlementShape: (["legacy", "v0", "v0-lookup"] as const)[seq % 3]!,
      hidden: null,
      slot: null,
      creditVault,
      createdAt: new Date().toISOString(),
      promptDigest: promptDigest(request.promptText),
    };
    this.jobs.set(jobId, job);

    if (reused) {
      job.claimedEscrowTx = reused;
    } else {
      const lockTx = this.ledger.lock(jobId, creditVault, lock);
      job.escrowTx = lockTx.signature;
      job.claimedEscrowTx = lockTx.signature;
      job.slot = lockTx.slot;
      this.lastEscrowByKey.set(request.apiKeyIndex, lockTx.signature);
    }
    job.status = "processing";
    job.apiStatus = "processing";
    this.awaitingSettlement.set(jobId, paid);
    return job;
  }

  /** A `timeout` job: the whole lock goes back to the credit vault; the 504 to send. */
  timeOut(job: SimJob): JobError {
    const refund = this.ledger.refund(job.jobId, job.creditVault, job.lockUnits);
    job.refundTx = refund.signature;
    job.refundUnits = job.lockUnits;
    job.slot = refund.slot;
    job.status = "refunded";
    job.apiStatus = "refunded";
    job.apiSettlementTx = refund.signature;
    this.awaitingSettlement.delete(job.jobId);
    return {
      status: 504,
      code: "job_timeout",
      type: "timeout_error",
      message: "the job was not proven in time; its credits were refunded",
      param: null,
      headers: {
        "x-decentral-job-id": job.jobId,
        "x-decentral-tx-signature": job.claimedEscrowTx ?? "",
        "x-decentral-settlement-tx": refund.signature,
      },
    };
  }

  /** Settles a finished job as its fault says; sets what headers and the jobs API will claim. */
  settle(job: SimJob): void {
    const paid = this.awaitingSettlement.get(job.jobId);
    if (!paid) throw new Error(`job ${job.jobId} is not awaiting settlement`);
    this.awaitingSettlement.delete(job.jobId);
    job.status = "settling";
    job.apiStatus = "settling";
    const charge = job.chargeUnits;
    let workerShare = job.expectedWorkerShareUnits;
    if (job.fault === "underpay-worker") workerShare -= workerShare / 10n;
    const treasuryShare = charge - workerShare;
    const refund = job.lockUnits - charge;
    const input = {
      jobId: job.jobId,
      creditVault: job.creditVault,
      workerTokenAccount: paid.tokenAccount,
      workerShare,
      treasuryShare,
      refund,
      shape: job.settlementShape,
    };

    job.apiStatus = "settled";
    switch (job.fault) {
      case "unreleased-lock":
        // The operator keeps the lock: nothing settles, nothing returns, the API says processing.
        job.status = "failed";
        job.apiStatus = "processing";
        return;
      case "skip-settlement":
        job.status = "failed";
        return;
      case "phantom-signature": {
        const phantom = bs58.encode(
          Buffer.concat([sha256(`${job.jobId}/phantom/0`), sha256(`${job.jobId}/phantom/1`)]),
        );
        job.status = "failed";
        if (!job.stream) job.headerSettlementTx = phantom;
        job.apiSettlementTx = phantom;
        return;
      }
      case "failed-settlement": {
        // More than the escrow vault holds: the Token program fails the whole transaction.
        const tx = this.ledger.settle({
          ...input,
          workerShare: this.ledger.balance(this.accounts.escrowVault) + 1n,
        });
        job.status = "failed";
        job.settlementTxs.push(tx.signature);
        if (!job.stream) job.headerSettlementTx = tx.signature;
        job.apiSettlementTx = tx.signature;
        job.slot = tx.slot;
        return;
      }
      default: {
        const first = this.ledger.settle(input);
        job.settlementTxs.push(first.signature);
        if (!job.stream) job.headerSettlementTx = first.signature;
        job.apiSettlementTx = first.signature;
        job.slot = first.slot;
        if (job.fault === "double-settle") {
          const second = this.ledger.settle(input);
          job.settlementTxs.push(second.signature);
          job.apiSettlementTx = second.signature;
          job.slot = second.slot;
        }
        if (job.fault === "unreceipted-charge") this.chargeHiddenJob(job, input);
        job.status = "settled";
        job.workerPaid = paid.address;
        job.workerShareUnits = workerShare;
        job.treasuryShareUnits = treasuryShare;
        job.refundUnits = refund;
      }
    }
  }

  /**
   * A second job nobody asked for, charged like `job` against the same credit vault: locked,
   * then settled with its remainder returned. No header or jobs-API answer names it.
   */
  private chargeHiddenJob(job: SimJob, input: SettlementInput): void {
    const hiddenId = this.jobId(this.sequence++);
    const lock = this.ledger.lock(hiddenId, job.creditVault, job.lockUnits);
    const settlement = this.ledger.settle({ ...input, jobId: hiddenId });
    job.hidden = {
      jobId: hiddenId,
      escrowTx: lock.signature,
      settlementTx: settlement.signature,
      lockUnits: job.lockUnits.toString(),
      chargeUnits: (input.workerShare + input.treasuryShare).toString(),
      refundUnits: input.refund.toString(),
    };
  }

  /**
   * A top-up: `units` from the key owner's own token account (funded here first, as if bought
   * elsewhere) into the key's credit vault, signed by the owner. Returns the deposit's signature.
   */
  deposit(apiKeyIndex: number, units: bigint): { signature: string; slot: number } {
    const vault = this.accounts.creditVaults[apiKeyIndex];
    if (!vault) throw new RangeError(`no API key index ${apiKeyIndex}`);
    const tx = this.ledger.deposit(vault.vault, apiKeyIndex, units);
    return { signature: tx.signature, slot: tx.slot };
  }

  /** Ground truth: every movement the simulator made in a credit vault, oldest first. */
  vaultMovements(vault: string) {
    return this.ledger.movements(vault);
  }

  /** `x-decentral-credits-remaining`: the credit vault balance in whole credits. */
  creditsRemaining(job: SimJob): string {
    const off = job.fault === "credits-header-off" ? 3n : 0n;
    return (this.ledger.balance(job.creditVault) / UNITS_PER_CREDIT + off).toString();
  }

  /** The five (or, streamed, four) `x-decentral-*` headers of a job. */
  headers(job: SimJob, withSettlement: boolean): Record<string, string> {
    const headers: Record<string, string> = {
      "x-decentral-job-id": job.jobId,
      "x-decentral-tx-signature": job.claimedEscrowTx ?? "",
      "x-decentral-worker": job.workerNamed,
      "x-decentral-credits-remaining": this.creditsRemaining(job),
    };
    if (withSettlement && job.headerSettlementTx) {
      headers["x-decentral-settlement-tx"] = job.headerSettlementTx;
    }
    return headers;
  }

  /** `GET /v1/jobs/{id}` body: what Decentral claims about the job. */
  apiView(job: SimJob) {
    const charged = job.apiStatus === "refunded" ? 0n : job.chargeUnits;
    return {
      job_id: job.jobId,
      status: job.apiStatus,
      model: job.model,
      credits_charged: Number(charged / UNITS_PER_CREDIT),
      usdc_value: formatUnits(charged),
      worker_address: job.workerNamed,
      created_at: job.createdAt,
      usage: {
        prompt_tokens: job.promptTokens,
        completion_tokens: job.completionTokens,
        total_tokens: job.promptTokens + job.completionTokens,
      },
      on_chain: {
        escrow_tx: job.claimedEscrowTx,
        settlement_tx: job.apiSettlementTx,
        escrow_pda: this.accounts.escrowVault,
        slot: job.slot,
        proof_hash: sha256(`${job.jobId}\n${this.completionText(job)}`).toString("hex"),
      },
    };
  }

  /** `GET /sim/jobs/{id}` body: what really happened, units as decimal strings. */
  groundTruth(job: SimJob) {
    const { promptDigest: _digest, ...rest } = job;
    return {
      ...rest,
      priceUnits: job.priceUnits.toString(),
      lockUnits: job.lockUnits.toString(),
      chargeUnits: job.chargeUnits.toString(),
      workerShareUnits: job.workerShareUnits.toString(),
      expectedWorkerShareUnits: job.expectedWorkerShareUnits.toString(),
      treasuryShareUnits: job.treasuryShareUnits.toString(),
      refundUnits: job.refundUnits.toString(),
    };
  }

  /** The job's completion text (deterministic, regenerated on each call). */
  completionText(job: SimJob): string {
    return completionWords(job.promptDigest, job.completionTokens).join(" ");
  }

  /** Current slot of the chain the jobs settle on. */
  currentSlot(): number {
    return this.chain.currentSlot();
  }

  private drawFault(): SimFault | null {
    const { faultRate, faults } = this.options;
    if (faultRate <= 0 || faults.length === 0) return null;
    if (this.random() >= faultRate) return null;
    return faults[Math.floor(this.random() * faults.length)] ?? null;
  }

  private jobId(seq: number): string {
    const digest = sha256(`${this.options.seed}/job/${seq}`);
    let id = "job_";
    for (let i = 0; i < 20; i++) id += JOB_ID_ALPHABET[digest[i]! % JOB_ID_ALPHABET.length];
    return id;
  }

  private pickWorker(): LocalWorker {
    const worker = this.accounts.workers[this.nextWorker % this.accounts.workers.length]!;
    this.nextWorker++;
    return worker;
  }

  /** Another registered worker with the same payout rate, so only the payee differs. */
  private partnerOf(worker: LocalWorker): LocalWorker {
    return (
      this.accounts.workers.find((w) => w.index !== worker.index && w.staked === worker.staked) ??
      this.accounts.workers.find((w) => w.index !== worker.index)!
    );
  }
}
