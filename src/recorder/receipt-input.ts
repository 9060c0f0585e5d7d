import { isBase58OfLength } from "../chain/base58.js";
import { epochSecondsToMs, parseZonedDateTime } from "../instant.js";
import { creditsToUnits, unitsToCredits } from "../money.js";
import { hasUnprintable } from "../printable-text.js";
import { postedAnswerFacts } from "./answer-facts.js";
import { duplicateMembers, type GivenValue } from "./json-duplicate-members.js";
import { operatorModel, operatorTokens, operatorUsage, unreadAmount } from "./operator-values.js";
import { maxKeptSignatures, type OtherSignatures, type Receipt } from "./receipts.js";
import {
  maxChoices,
  maxRequestPathLength,
  maxTokenCount,
  receiptMethodOf,
  receiptPathOf,
} from "./request-facts.js";
import { holdsAnyKey, withoutAnyKey } from "./without-key.js";

export { maxTokenCount };

/**
 * Validation of receipts as they arrive on the wire (ingest API, import files, fetch wrapper).
 * Hand-written rather than zod: it runs per item at ingest rates of 10,000+/s and must name
 * the exact field at fault. A field it does not know is refused by name, not ignored: ignored,
 * `httpStatus: 500` (camelCase) was a receipt of a 2xx answer, whose settlement then passed.
 */

/** A job id: `job_` then lowercase letters and digits (the length is not fixed by the docs). */
export const jobIdPattern = /^job_[a-z0-9]{1,120}$/;

/** What is wrong with an id `jobIdPattern` refuses, in every refusal of one (API, dashboard). */
export const jobIdRule = "must be job_ followed by 1 to 120 lowercase letters and digits";

/** Tag rules of every recorder: a name, how many a receipt carries, a value's length. */
export const tagNamePattern = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
export const maxTags = 32;
export const maxTagValueLength = 256;
/** Receipts dated outside 2020-01-01 .. 2100-01-01 are refused. */
const minCreatedAt = Date.UTC(2020, 0, 1);
const maxCreatedAt = Date.UTC(2100, 0, 1);
/** How far ahead of this host's clock a receipt's date may be. */
const maxCreatedAtAheadMs = 24 * 3_600_000;

/**
 * A receipt on the wire (`POST /jobs`, import files, the fetch wrapper): the one declaration
 * of its field names, which `parseReceiptInput` reads through (the compiler refuses a name not
 * declared here) and the fetch wrapper sends. Values are checked one by one when parsed.
 */
export interface WireReceipt {
  job_id: string;
  /**
   * The lock's signature. Here and in `settlement_tx`, several joined by commas (a header the
   * operator sent twice) keep the first as the receipt's and each other as a conflicting receipt.
   */
  escrow_tx: string | null;
  /** Null for a stream: obtained later from the jobs API. */
  settlement_tx?: string | null;
  worker?: string | null;
  /** `x-decentral-credits-remaining`, in credits (at most 4 decimals). */
  credits_remaining?: string | number | null;
  /** The model asked for: it prices the job (with `requested_model`, the response's). */
  model?: string;
  requested_model?: string;
  /** The model the response named, kept only to compare. */
  response_model?: string;
  max_tokens?: number;
  /** The request's `n`, the choices it asked for: `max_tokens` bounds each of them. */
  n?: number;
  /**
   * The HTTP status the caller got: an answer outside 2xx gave no completion, so a settlement
   * of it charges for nothing (`refund.not_settled`).
   */
  http_status?: number;
  key_fingerprint?: string;
  /**
   * The next 16 hex digits of the same SHA-256 (digits 16..32): two receipts of one fingerprint
   * naming two of them are two keys (`key.fingerprint_unique`). Only beside `key_fingerprint`.
   */
  key_check?: string;
  credit_vault?: string;
  /**
   * The answer's usage as the operator sent it; `reasoning_tokens` and
   * `rejected_prediction_tokens` are a completion's `completion_tokens_details` members (a
   * Responses API answer's `output_tokens_details.reasoning_tokens`).
   */
  usage?: {
    prompt_tokens?: number;
    completion_tokens?: number;
    total_tokens?: number;
    reasoning_tokens?: number;
    rejected_prediction_tokens?: number;
  };
  /**
   * The bytes of the answer's generated text as its client read it, and the tool calls among
   * them, counted as the proxy counts them (`jsonBodyFacts`): they bound the completion tokens
   * its usage may name (`usage.consistent`). The fetch wrapper sends them for a JSON answer.
   */
  answer_bytes?: number;
  answer_tool_calls?: number;
  /**
   * Whether the request sent a `prediction` (predicted outputs): one that sent none has no
   * rejected prediction tokens, which named would lift the answer's bound for nothing.
   */
  prediction_sent?: boolean;
  /**
   * As the proxy records them (`jobs.stream`, `jobs.usage_asked`): `stream` true where the answer
   * was an event stream or the request asked for one, `usage_asked` whether such a stream owed
   * its usage (asked with `stream_options.include_usage`, or an answer of the other kind). With
   * `answer_bytes`, an answer that sent no usage where it was owed has its charge bounded by its
   * bytes (`charge.matches_price`), as the proxy's are.
   */
  stream?: boolean;
  usage_asked?: boolean;
  /**
   * The HTTP method of the request the answer came to (`POST` for a completion): money moved for
   * any other asked for nothing to run (`escrow.within_ceiling`, `charge.matches_price`).
   */
  request_method?: string;
  /**
   * The path of that request without its query: a POST to a free endpoint (`/v1/webhooks`) asked
   * for nothing to run either.
   */
  request_path?: string;
  /** ISO 8601 date-time or epoch seconds. */
  created_at?: string | number;
  tags?: Record<string, string>;
  /**
   * `aborted` when the caller got none of the answer (the proxy's import line of a job it
   * answered 503 for want of a receipt); `complete`, the default, when it got it whole.
   */
  capture_state?: "complete" | "aborted";
}

/**
 * A receipt as a line of an import file: what a process that could not write it logs, so that
 * `decentral-audit import` records it once the database takes writes again. Unknown values are
 * left out; a credits header that was no credit amount is left out too (its row would keep it
 * as sent; the import cannot).
 */
export function wireReceiptOf(receipt: Receipt): WireReceipt {
  const signatures = (own: string | null, others: readonly string[] = []) =>
    own === null ? null : [own, ...others.filter((s) => s !== own)].join(", ");
  const usage = {
    ...(receipt.promptTokens == null ? {} : { prompt_tokens: receipt.promptTokens }),
    ...(receipt.completionTokens == null ? {} : { completion_tokens: receipt.completionTokens }),
    ...(receipt.totalTokens == null ? {} : { total_tokens: receipt.totalTokens }),
    ...(receipt.reasoningTokens == null ? {} : { reasoning_tokens: receipt.reasoningTokens }),
    ...(receipt.rejectedPredictionTokens == null
      ? {}
      : { rejected_prediction_tokens: receipt.rejectedPredictionTokens }),
  };
  const known = <K extends keyof WireReceipt>(
    field: K,
    value: WireReceipt[K] | null | undefined,
  ) => (value == null ? {} : { [field]: value });
  return {
    job_id: receipt.jobId,
    escrow_tx: signatures(receipt.escrowTx, receipt.otherSignatures?.escrowTx),
    ...known(
      "settlement_tx",
      signatures(receipt.settlementTx, receipt.otherSignatures?.settlementTx),
    ),
    ...known("worker", receipt.worker),
    ...known(
      "credits_remaining",
      receipt.creditsRemainingUnits == null ? null : unitsToCredits(receipt.creditsRemainingUnits),
    ),
    ...known("model", receipt.model),
    ...known("response_model", receipt.responseModel),
    ...known("max_tokens", receipt.maxTokens),
    ...known("n", receipt.choices),
    ...known("http_status", receipt.httpStatus),
    ...known("key_fingerprint", receipt.keyFingerprint),
    ...known("key_check", receipt.keyCheck),
    ...known("credit_vault", receipt.creditVault),
    ...(Object.keys(usage).length === 0 ? {} : { usage }),
    ...known("answer_bytes", receipt.answerBytes),
    ...known("answer_tool_calls", receipt.answerToolCalls),
    ...known("prediction_sent", receipt.predictionSent),
    ...known("stream", receipt.stream),
    ...known("usage_asked", receipt.usageAsked),
    ...known("request_method", receipt.requestMethod),
    ...known("request_path", receipt.requestPath),
    ...known(
      "created_at",
      receipt.createdAt == null ? null : new Date(receipt.createdAt).toISOString(),
    ),
    ...(receipt.tags && Object.keys(receipt.tags).length > 0 ? { tags: receipt.tags } : {}),
    ...(receipt.captureState === "aborted" ? { capture_state: "aborted" } : {}),
  };
}

/**
 * Every field of a plain receipt, keyed by `WireReceipt`: the compiler refuses a field declared
 * there and missing here, or the reverse, so what is refused as unknown is exactly what is not
 * read.
 */
const wireFieldSet: Record<keyof WireReceipt, true> = {
  job_id: true,
  escrow_tx: true,
  settlement_tx: true,
  worker: true,
  credits_remaining: true,
  model: true,
  requested_model: true,
  response_model: true,
  max_tokens: true,
  n: true,
  http_status: true,
  key_fingerprint: true,
  key_check: true,
  credit_vault: true,
  usage: true,
  answer_bytes: true,
  answer_tool_calls: true,
  prediction_sent: true,
  stream: true,
  usage_asked: true,
  request_method: true,
  request_path: true,
  created_at: true,
  tags: true,
  capture_state: true,
};

/** The field names of a plain receipt, in the order they are documented. */
export const wireReceiptFields = Object.keys(wireFieldSet) as readonly (keyof WireReceipt)[];

/**
 * The fields a completion's `_decentral` member holds of its response headers. The model, usage
 * and `created` are read beside it, from the completion itself (the operator's answer).
 */
const headerFields = [
  "job_id",
  "escrow_tx",
  "settlement_tx",
  "worker",
  "credits_remaining",
] as const satisfies readonly (keyof WireReceipt)[];
type DecentralField = (typeof headerFields)[number];

/**
 * The fields of a completion carrying `_decentral` that the caller writes: read inside
 * `_decentral`, which the integration builds and sets whole. The completion's top level is the
 * operator's answer, copied as it came (an SDK's `model_dump()` keeps extra members): a
 * `requested_model` or `key_fingerprint` read there could be the operator's, pricing the job or
 * tying it to another key.
 */
const callerFields = [
  "requested_model",
  "max_tokens",
  "n",
  "key_fingerprint",
  "key_check",
  "credit_vault",
  "http_status",
  "request_method",
  "request_path",
] as const satisfies readonly (keyof WireReceipt)[];
type CallerField = (typeof callerFields)[number];

/**
 * Every field a completion's `_decentral` member holds: `tags` too, read there when it holds
 * them or names a caller field (then the top level is the operator's alone), else beside it.
 */
const decentralFields: readonly string[] = [...headerFields, ...callerFields, "tags"];

/** Receipt fields a completion carrying `_decentral` does not read at its top level. */
const unreadBesideDecentral = new Set<string>([...headerFields, "created_at"]);

/**
 * What a plain receipt's sender counted of the answer it got. Not read in a completion carrying
 * `_decentral`: its top level is the operator's answer, whose word on its own size would lift
 * its usage's bound, and whose members there never refuse the receipt.
 */
const plainOnlyFields: ReadonlySet<string> = new Set([
  "answer_bytes",
  "answer_tool_calls",
  "prediction_sent",
  "stream",
  "usage_asked",
]);

/**
 * Does `_decentral` name any caller field? One written as null counts: it has no value (read as
 * absent), but it shows the integration writes the caller's fields there, as one building the
 * member whole writes `None` for what it lacks. Read as naming none, the operator's answer at the
 * top level was taken as the caller's: its `http_status` refused the receipt, its tags kept.
 */
function namesCallerField(value: Record<string, unknown>): boolean {
  return callerFields.some((name) => value[name] !== undefined);
}

/** A name without case, `_` or `-`: how `keyFingerprint` is found to be `key_fingerprint`. */
function looseName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, "");
}

/** Edits (insert, delete, replace) from `a` to `b`. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      next[j] = Math.min(
        (row[j] as number) + 1,
        (next[j - 1] as number) + 1,
        (row[j - 1] as number) + cost,
      );
    }
    row = next;
  }
  return row[b.length] as number;
}

/**
 * The known field `name` most likely means: the same name in another case or spelling
 * (`httpStatus`, `HTTP_STATUS`), else one a typo or two away (`requested_modle`); or null.
 */
export function closestField(name: string, known: readonly string[]): string | null {
  const loose = looseName(name);
  if (loose === "") return null;
  const same = known.find((field) => looseName(field) === loose);
  if (same !== undefined) return same;
  const reach = loose.length <= 4 ? 1 : 2;
  let best: { field: string; distance: number } | null = null;
  for (const field of known) {
    const distance = editDistance(loose, looseName(field));
    if (distance <= reach && (best === null || distance < best.distance))
      best = { field, distance };
  }
  return best?.field ?? null;
}

/** Why an unknown field is refused: the field it likely means, or the fields there are. */
export function unknownFieldReason(name: string, known: readonly string[]): string {
  const guess = closestField(name, known);
  return guess !== null
    ? `unknown field; did you mean ${guess}?`
    : `unknown field; a receipt takes ${known.join(", ")}`;
}

/** A receipt's own fields, or a completion's `_decentral` member's, refused when unknown. */
function refuseUnknownFields(value: Record<string, unknown>, wrapped: boolean): void {
  if (!wrapped) {
    for (const [name, field] of Object.entries(value)) {
      if (field === undefined || Object.hasOwn(wireFieldSet, name)) continue;
      throw new FieldError(name, unknownFieldReason(name, wireReceiptFields));
    }
    return;
  }
  const decentral = value._decentral as Record<string, unknown>;
  for (const [name, field] of Object.entries(decentral)) {
    if (field === undefined || decentralFields.includes(name)) continue;
    // A receipt field put inside `_decentral` is not read there: refused, not lost.
    throw new FieldError(
      `_decentral.${name}`,
      Object.hasOwn(wireFieldSet, name) &&
        !unreadBesideDecentral.has(name) &&
        !plainOnlyFields.has(name)
        ? "is read beside _decentral, at the completion's top level: move it there"
        : `${unknownFieldReason(name, decentralFields)} (_decentral holds the x-decentral-* headers and the caller's fields)`,
    );
  }
  // The completion's own members (id, object, choices, ...) are its own and not checked. Where
  // `_decentral` names the caller's fields, its integration writes there and the whole top level
  // is the operator's answer: nothing in it is read as the caller's, and nothing in it refuses
  // the receipt (the operator could have any job's receipt refused by adding a member).
  if (namesCallerField(decentral)) return;
  // Otherwise a receipt field at its top level that is read only inside `_decentral`, or one of
  // the fields read there in another spelling, would be lost; a caller field there may be an
  // integration's, whose job would be judged without it (a 5xx as a 2xx, say): refused, as it
  // cannot be told from one the operator's answer added.
  for (const [name, field] of Object.entries(value)) {
    if (field === undefined || plainOnlyFields.has(name)) continue;
    if ((callerFields as readonly string[]).includes(name)) {
      if (field === null) continue;
      throw new FieldError(
        name,
        "is read inside _decentral in a completion carrying it (its top level is the operator's answer, which can add this member): move it there",
      );
    }
    if (unreadBesideDecentral.has(name)) {
      throw new FieldError(
        name,
        name === "created_at"
          ? "not read in a completion carrying _decentral: its time is the completion's created"
          : "is read inside _decentral in a completion carrying it: move it there",
      );
    }
    const meant = wireReceiptFields.find((known) => looseName(known) === looseName(name));
    if (meant !== undefined && meant !== name && !plainOnlyFields.has(meant)) {
      throw new FieldError(name, `unknown field; did you mean ${meant}?`);
    }
  }
}

/** What arrives, before any check: the wire fields, or a completion carrying `_decentral`. */
type Unchecked<T> = { [K in keyof T]?: unknown };
type WireInput = Unchecked<WireReceipt> & { _decentral?: unknown; created?: unknown };

export type ParsedReceipt =
  | { ok: true; receipt: Receipt }
  | { ok: false; field: string; reason: string };

class FieldError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

/** A transaction signature (base58 of 64 bytes) read from the wire, or null. */
export function signatureOrNull(text: string | null): string | null {
  return text !== null && isBase58OfLength(text, 64) ? text : null;
}

/**
 * Signatures of one receipt field kept at most: the receipt's own and as many more as the
 * store keeps with a job, the last of which marks that more were named than the verifier
 * follows (the job then fails `signatures.explained`): cut shorter, a step named past filler
 * would be lost before the store could mark it.
 */
const maxNamedSignatures = 1 + maxKeptSignatures;

/** Runs of base58 characters: what in a value could be a signature, whatever parts them. */
const base58Runs = /[1-9A-HJ-NP-Za-km-z]+/g;

/**
 * The signatures an operator's value names: one, or several. A header sent twice with different
 * values reaches every reader joined ("S1, S2": Node and fetch both join them), and a backend
 * may copy it as it read it. Every signature in it counts, each once, in order, whatever else
 * the value holds (a third line of junk, an empty one, another separator): junk beside a second
 * settlement must not hide it. Null when it names none.
 */
export function signaturesOrNull(text: string | null): string[] | null {
  if (text === null) return null;
  const found = (text.match(base58Runs) ?? []).filter((part) => isBase58OfLength(part, 64));
  return found.length === 0 ? null : [...new Set(found)].slice(0, maxNamedSignatures);
}

/**
 * A receipt's signature fields from the values named for them: the first signature of each is
 * the receipt's, any further one goes to `otherSignatures` (kept as a conflicting receipt of
 * the job, so a second lock or settlement is judged, not lost).
 */
export function signatureFields(
  escrow: readonly string[] | null,
  settlement: readonly string[] | null,
): Pick<Receipt, "escrowTx" | "settlementTx" | "otherSignatures"> {
  const fields: Pick<Receipt, "escrowTx" | "settlementTx" | "otherSignatures"> = {
    escrowTx: escrow?.[0] ?? null,
    settlementTx: settlement?.[0] ?? null,
  };
  const others: OtherSignatures = {};
  if (escrow && escrow.length > 1) others.escrowTx = escrow.slice(1);
  if (settlement && settlement.length > 1) others.settlementTx = settlement.slice(1);
  if (others.escrowTx || others.settlementTx) fields.otherSignatures = others;
  return fields;
}

/** A public key (base58 of 32 bytes) read from the wire, or null. */
export function addressOrNull(text: string | null): string | null {
  return text !== null && isBase58OfLength(text, 32) ? text : null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The escrow signature the caller names: one, or several joined by commas (a lock header the
 * operator sent twice, copied as read); anything else is refused by its field.
 */
function requiredSignatures(value: unknown, field: string): string[] {
  if (value === undefined || value === null) throw new FieldError(field, "is required");
  if (typeof value !== "string") throw new FieldError(field, "must be a base58 string");
  const parts = value.split(",").map((part) => part.trim());
  if (!parts.every((part) => isBase58OfLength(part, 64))) {
    throw new FieldError(
      field,
      "must be base58 of exactly 64 bytes (a transaction signature), or several joined by commas",
    );
  }
  return [...new Set(parts)].slice(0, maxNamedSignatures);
}

function optionalWorker(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" || !isBase58OfLength(value, 32)) {
    throw new FieldError(field, "must be base58 of exactly 32 bytes (a wallet address)");
  }
  return value;
}

function optionalCredits(value: unknown, field: string): bigint | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" && typeof value !== "number") {
    throw new FieldError(field, "must be a non-negative number of credits");
  }
  let units: bigint;
  try {
    units = creditsToUnits(value);
  } catch {
    throw new FieldError(field, "must be a non-negative number of credits with at most 4 decimals");
  }
  if (units > BigInt(Number.MAX_SAFE_INTEGER)) throw new FieldError(field, "is out of range");
  return units;
}

function optionalModel(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" || value.length === 0 || value.length > 200) {
    throw new FieldError(field, "must be a string of 1 to 200 characters");
  }
  // A model name has no control characters; PostgreSQL text cannot hold NUL at all, and a
  // receipt refused by the database would fail its whole batch instead of this one item.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new FieldError(field, "must not contain control characters");
  }
  // A key in it is cut: the model is stored, grouped by in reports and their CSV downloads.
  return withoutAnyKey(value);
}

/*
 * Fields the operator writes (the settlement signature, worker and credits it answers with, the
 * usage and model of its response, a completion's `created`) are read leniently: a malformed one
 * is recorded as unknown, as the proxy records it, and the receipt is kept, because a receipt
 * refused for what the audited party wrote would hide a job it charged for. Fields the caller
 * writes (job id, escrow signature it must name, the model asked for, ceiling, tags, key) stay
 * strict: a wrong one is the caller's to fix and is named in the answer.
 */

/** An operator's signatures (one, or several joined by commas), or null. */
function operatorSignatures(value: unknown): string[] | null {
  return typeof value === "string" ? signaturesOrNull(value) : null;
}

/** An operator's wallet address, or null. */
function operatorAddress(value: unknown): string | null {
  return typeof value === "string" ? addressOrNull(value) : null;
}

/** An operator's credit balance, or null when it is not one ingest would take. */
function operatorCredits(value: unknown): bigint | null {
  try {
    return optionalCredits(value, "credits_remaining");
  } catch {
    return null;
  }
}

/**
 * An operator's credit balance that was sent but is no credit amount (`999999.00001`), as sent;
 * null when none was sent or it was read. It fails `credits.header`, not skips it as absent.
 */
function unreadCredits(value: unknown): string | null {
  if (value === undefined || value === null || value === "") return null;
  return operatorCredits(value) === null ? unreadAmount(value) : null;
}

/** A completion's `created`, or null when it is not a date ingest would take. */
function operatorCreatedAt(value: unknown): number | null {
  try {
    return optionalCreatedAt(value, "created");
  } catch {
    return null;
  }
}

/**
 * The caller's `created_at` dates the job and says when its response arrived (the fetch
 * wrapper takes it as the headers come): the credits header's lines surely before the
 * response are those the chain dated up to its second. A receipt without it says neither.
 */
function callerTime(at: number | null): Pick<Receipt, "createdAt" | "respondedAt"> {
  return { createdAt: at, respondedAt: at };
}

/**
 * `created_at`: an ISO 8601 string, or seconds since the epoch (OpenAI's `created`), as a
 * number or as its digits (as an import's CSV cell gives them).
 */
function optionalCreatedAt(value: unknown, field: string): number | null {
  if (value === undefined || value === null) return null;
  let ms: number;
  if (typeof value === "number" && Number.isFinite(value)) {
    // A number's shortest text is the decimal it was written as (`1764460799.9996`).
    const digits = String(value);
    ms = /^\d+(\.\d+)?$/.test(digits) ? epochSecondsToMs(digits) : Math.floor(value * 1000);
  } else if (typeof value === "string" && /^\d+(\.\d+)?$/.test(value)) {
    ms = epochSecondsToMs(value);
  } else if (typeof value === "string") {
    const parsed = parseZonedDateTime(value);
    if (parsed === null) {
      throw new FieldError(
        field,
        "must be an existing ISO 8601 date-time with a zone (Z or +hh:mm), or epoch seconds",
      );
    }
    ms = parsed;
  } else throw new FieldError(field, "must be an ISO 8601 date-time or epoch seconds");
  if (!Number.isFinite(ms) || ms < minCreatedAt || ms >= maxCreatedAt) {
    const digits = typeof value === "number" ? String(value) : String(value).trim();
    // What the value most likely meant, said: the range alone did not tell a caller sending
    // JavaScript's milliseconds, or a date without its dashes, what to write instead.
    const hint = /^\d{13}$/.test(digits)
      ? ": this reads as epoch milliseconds; send epoch seconds (divide by 1000) or ISO 8601"
      : /^\d{8}$/.test(digits)
        ? `: a date without its dashes? write it ${digits.slice(0, 4)}-${digits.slice(4, 6)}-${digits.slice(6)}T00:00:00Z`
        : "";
    throw new FieldError(field, `must be a date between 2020 and 2100${hint}`);
  }
  // A receipt is written after its job ran: dated ahead, its money would be reported in a
  // period to come and left out of the one it moved in. A day covers any recorder's clock.
  if (ms > Date.now() + maxCreatedAtAheadMs) {
    throw new FieldError(field, "must not be more than a day ahead of now");
  }
  return ms;
}

function optionalTags(value: unknown, field: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw new FieldError(field, "must be an object of string values");
  const entries = Object.entries(value);
  if (entries.length > maxTags) throw new FieldError(field, `must have at most ${maxTags} tags`);
  const tags: Record<string, string> = {};
  for (const [name, tagValue] of entries) {
    const key = name.toLowerCase();
    // Said without the name: the error goes back in the answer, and the key with it.
    if (holdsAnyKey(key)) {
      throw new FieldError(
        field,
        "a tag name holds a Decentral API key (dcntrl_...): a receipt never stores one",
      );
    }
    if (!tagNamePattern.test(key)) {
      throw new FieldError(`${field}.${name}`, "tag names are letters, digits, _ . - (max 64)");
    }
    if (typeof tagValue !== "string" || tagValue.length > maxTagValueLength) {
      throw new FieldError(
        `${field}.${name}`,
        `must be a string of at most ${maxTagValueLength} characters`,
      );
    }
    // A label never costs a job its receipt (a client's tag may carry a tab, or Android's bidi
    // wrapping of an RTL name): stored as written, and shown inert wherever it is printed; a
    // Decentral key in it is cut (stored, every read token would see it).
    tags[key] = withoutAnyKey(tagValue);
  }
  return tags;
}

/** Refused in the model a caller names, as in token names. */
const callerTextRule =
  "must not contain control characters, line separators, bidirectional overrides or invisible characters (zero-width, format characters, spaces other than U+0020)";

/**
 * Text the caller wrote (the model it asked for, not the one the operator's response named):
 * refused when it holds what `hasUnprintable` finds, the one rule of caller text, so a
 * report or terminal never shows it as something else.
 */
function callerText(value: string | null, field: string): string | null {
  if (value !== null && hasUnprintable(value)) throw new FieldError(field, callerTextRule);
  return value;
}

function jobId(value: unknown, field: string): string {
  if (value === undefined || value === null) throw new FieldError(field, "is required");
  if (typeof value !== "string" || !jobIdPattern.test(value)) {
    throw new FieldError(field, jobIdRule);
  }
  return value;
}

/**
 * Parses one receipt: either a receipt object (`job_id`, `escrow_tx`, `settlement_tx`,
 * `worker`, `credits_remaining`, optional `model`, `usage`, `created_at`, `tags`) or a whole
 * chat-completion JSON whose `_decentral` member holds the Decentral fields (model, usage and
 * `created` then come from the completion). `job_id` and `escrow_tx` are required: every job
 * locks escrow before it runs. The settlement signature may be null (a streamed job learns it
 * later from the jobs API), as may the rest.
 */
function models(
  value: WireInput,
  caller: Pick<WireInput, CallerField>,
  prefix: string,
  wrapped: boolean,
): {
  model: string | null;
  responseModel: string | null;
} {
  const field = `${prefix}requested_model`;
  const requested = callerText(optionalModel(caller.requested_model, field), field);
  // The response's model is the operator's: kept cleaned (control characters out, cut to 200
  // characters) to compare, never refused.
  const responseModel = operatorModel(value.response_model);
  // A completion's `model` is the one its response named, which the operator writes: it is
  // kept to compare, and never prices the job (without `requested_model` the model is unknown).
  if (requested !== null || wrapped) {
    return { model: requested, responseModel: responseModel ?? operatorModel(value.model) };
  }
  // Otherwise `model` is the one the caller asked for, which prices the job: it must be exact.
  return { model: callerText(optionalModel(value.model, "model"), "model"), responseModel };
}

/** The request's `max_tokens`: it bounds what the job can cost. */
function optionalMaxTokens(value: unknown, field: string): number | null {
  if (value === undefined || value === null) return null;
  // As the proxy reads a request's ceiling (request-facts.ts): any exact positive integer.
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new FieldError(field, `must be an integer from 1 to ${Number.MAX_SAFE_INTEGER}`);
  }
  return value;
}

/** The request's `n`: one choice is none stored, as the proxy stores it. */
function optionalChoices(value: unknown, field: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > maxChoices) {
    throw new FieldError(field, `must be an integer from 1 to ${maxChoices}`);
  }
  return value > 1 ? value : null;
}

function optionalHttpStatus(value: unknown, field: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 100 || value > 599) {
    throw new FieldError(field, "must be an HTTP status, an integer from 100 to 599");
  }
  return value;
}

/** An HTTP method as a request line writes it: a token of letters, read upper-cased. */
function optionalMethod(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  const method = typeof value === "string" ? receiptMethodOf(value) : null;
  if (method === null) throw new FieldError(field, "must be an HTTP method, such as POST");
  return method;
}

/** A request's path: visible ASCII from a `/`, no query, at most `maxRequestPathLength`. */
function optionalPath(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" || /[?#]/.test(value) || receiptPathOf(value) !== value) {
    throw new FieldError(
      field,
      `must be a request path from "/", visible ASCII without a query, at most ${maxRequestPathLength} characters`,
    );
  }
  return value;
}

/** The most `answer_bytes` or `answer_tool_calls` a receipt names (the column's integer). */
export const maxAnswerCount = 2 ** 31 - 1;

/** A count of the answer the caller got (`answer_bytes`, `answer_tool_calls`). */
function optionalAnswerCount(value: unknown, field: string): number | null {
  if (value === undefined || value === null) return null;
  if (
    typeof value !== "number" ||
    !Number.isInteger(value) ||
    value < 0 ||
    value > maxAnswerCount
  ) {
    throw new FieldError(field, `must be an integer from 0 to ${maxAnswerCount}`);
  }
  return value;
}

function optionalBoolean(value: unknown, field: string): boolean | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "boolean") throw new FieldError(field, "must be true or false");
  return value;
}

/** How the caller's capture ended, when named: `complete` or `aborted` (never `open`). */
function optionalCaptureState(value: unknown): Pick<Receipt, "captureState"> {
  if (value === undefined || value === null) return {};
  if (value !== "complete" && value !== "aborted") {
    throw new FieldError("capture_state", 'must be "complete" or "aborted"');
  }
  return { captureState: value };
}

/** The proxy's key fingerprint: 16 lowercase hex digits of the key's SHA-256. */
function optionalFingerprint(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" || !/^[0-9a-f]{16}$/.test(value)) {
    throw new FieldError(
      field,
      "must be 16 lowercase hex digits (the key fingerprint reports show)",
    );
  }
  return value;
}

/**
 * The key's second 64 bits (`key_check`): 16 lowercase hex digits, and only beside the
 * fingerprint it checks (one alone ties the job to no key, and says nothing of which).
 */
function optionalKeyCheck(
  value: unknown,
  field: string,
  fingerprint: string | null,
): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" || !/^[0-9a-f]{16}$/.test(value)) {
    throw new FieldError(
      field,
      "must be 16 lowercase hex digits (digits 16 to 32 of the SHA-256 of the API key)",
    );
  }
  if (fingerprint === null) {
    throw new FieldError(field, "is read only beside key_fingerprint, the key it checks");
  }
  return value;
}

/** The caller's key fingerprint and key check. */
function keyFields(
  caller: Pick<WireInput, "key_fingerprint" | "key_check">,
  prefix: string,
): Pick<Receipt, "keyFingerprint" | "keyCheck"> {
  const keyFingerprint = optionalFingerprint(caller.key_fingerprint, `${prefix}key_fingerprint`);
  const keyCheck = optionalKeyCheck(caller.key_check, `${prefix}key_check`, keyFingerprint);
  return { keyFingerprint, keyCheck };
}

/** What a client reads of a header sent twice: every value, joined by ", ". */
function joined(given: readonly GivenValue[]): string {
  return given.map(({ value, text }) => (typeof value === "string" ? value : text)).join(", ");
}

/**
 * A copy of `value` in which each member its JSON text named twice with different values
 * (`JSON.parse` keeps the last, silently) reads as follows. An operator's member (`operator`)
 * reads as every value joined, as a header sent twice reaches a client: two signatures are the
 * receipt's and a conflicting one, two workers or balances are unknown. A member the caller
 * writes (`caller`) is refused by name: `{"http_status":502,"http_status":200}` must not pass
 * as a 2xx answer. Other members (a completion's own) are left as parsed.
 */
function withDuplicatesRead(
  value: Record<string, unknown>,
  prefix: string,
  operator: ReadonlySet<string>,
  caller: (name: string) => boolean,
): Record<string, unknown> {
  const twice = duplicateMembers(value);
  if (twice.size === 0) return value;
  const copy = { ...value };
  for (const [name, values] of twice) {
    if (operator.has(name)) copy[name] = joined(values);
    else if (caller(name)) {
      throw new FieldError(
        `${prefix}${name}`,
        "given more than once with different values; give it once",
      );
    }
  }
  return copy;
}

const noFields: ReadonlySet<string> = new Set();
const usageFields: ReadonlySet<string> = new Set([
  "prompt_tokens",
  "completion_tokens",
  "total_tokens",
  "reasoning_tokens",
  "rejected_prediction_tokens",
]);
/**
 * The operator's members of a plain receipt, beside `usage`'s, and the lock it names (two
 * escrow signatures are the receipt's and a conflicting one, as when joined by a comma).
 */
const plainOperatorFields: ReadonlySet<string> = new Set([
  "escrow_tx",
  "settlement_tx",
  "worker",
  "credits_remaining",
  "response_model",
  "usage",
]);
/** The operator's members of a completion carrying `_decentral`, and of `_decentral`. */
const completionOperatorFields: ReadonlySet<string> = new Set(["model", "created", "usage"]);
const decentralOperatorFields: ReadonlySet<string> = new Set([
  "escrow_tx",
  "settlement_tx",
  "worker",
  "credits_remaining",
]);

/** The receipt's members read with what their JSON text named twice (`withDuplicatesRead`). */
function duplicatesRead(value: Record<string, unknown>): Record<string, unknown> {
  const isWireField = (name: string) => Object.hasOwn(wireFieldSet, name);
  const wrapped = value._decentral !== undefined;
  const callerInside = isObject(value._decentral) && namesCallerField(value._decentral);
  const top = wrapped
    ? withDuplicatesRead(
        value,
        "",
        completionOperatorFields,
        // A caller field there is read nowhere or refused whatever it holds (`callerFields`),
        // and where `_decentral` names them the rest of the top level is the operator's too.
        (name) =>
          name === "_decentral" ||
          (!callerInside && name === "tags") ||
          (!callerInside &&
            isWireField(name) &&
            !(callerFields as readonly string[]).includes(name)),
      )
    : withDuplicatesRead(value, "", plainOperatorFields, isWireField);
  const read = { ...top };
  if (wrapped && isObject(top._decentral)) {
    read._decentral = withDuplicatesRead(
      top._decentral,
      "_decentral.",
      decentralOperatorFields,
      () => true,
    );
  }
  if (isObject(top.usage))
    read.usage = withDuplicatesRead(top.usage, "usage.", usageFields, () => false);
  if (isObject(top.tags) && !callerInside) {
    read.tags = withDuplicatesRead(top.tags, "tags.", noFields, () => true);
  }
  return read;
}

/**
 * A receipt's tags: in a completion carrying `_decentral`, its own when it holds them or names a
 * caller field (the top level then being the operator's answer alone), else the top level's.
 */
function tagsOf(wire: WireInput, wrapped: boolean): Pick<Receipt, "tags"> {
  const decentral = (wrapped ? wire._decentral : {}) as Record<string, unknown>;
  if (wrapped && (decentral.tags !== undefined || namesCallerField(decentral))) {
    return { tags: optionalTags(decentral.tags, "_decentral.tags") };
  }
  return { tags: optionalTags(wire.tags, "tags") };
}

/**
 * The answer a completion posted whole carries (see `postedAnswerFacts`), and the reasoning
 * tokens its usage names beside it, which lift what the answer may hold as they do behind the
 * proxy. Its rejected prediction tokens are not read: whether the request sent a prediction is
 * not known here, and 630 of them named beside `Hi.` lifted the bound to 640 tokens. Nothing
 * where it carries no answer: such a receipt keeps the usage's arithmetic alone.
 */
function postedAnswer(
  completion: WireInput,
  n: unknown,
): Pick<Receipt, "answerBytes" | "answerToolCalls" | "reasoningTokens"> {
  const answer = completion as Record<string, unknown>;
  const facts = postedAnswerFacts(answer, typeof n === "number" ? n : null);
  if (facts === null) return {};
  return {
    answerBytes: facts.answerBytes === null ? null : Math.min(facts.answerBytes, maxAnswerCount),
    answerToolCalls:
      facts.answerToolCalls === null ? null : Math.min(facts.answerToolCalls, maxAnswerCount),
    reasoningTokens: operatorUsage(answer.usage, false)?.reasoningTokens ?? null,
  };
}

export function parseReceiptInput(input: unknown): ParsedReceipt {
  try {
    if (!isObject(input)) throw new FieldError("receipt", "must be a JSON object");
    const value = duplicatesRead(input);
    const wire = value as WireInput;
    const decentral = wire._decentral;
    const wrapped = decentral !== undefined;
    if (wrapped && !isObject(decentral)) throw new FieldError("_decentral", "must be an object");
    refuseUnknownFields(value, wrapped);
    const fields = (wrapped ? decentral : wire) as Pick<WireInput, DecentralField>;
    const prefix = wrapped ? "_decentral." : "";
    // The caller's fields: inside `_decentral` in a completion carrying it (`callerFields`).
    const caller = fields as Pick<WireInput, CallerField>;
    // Usage is the operator's: anything but an object says nothing.
    const u = (isObject(wire.usage) ? wire.usage : {}) as Unchecked<
      NonNullable<WireReceipt["usage"]>
    >;
    const receipt: Receipt = {
      jobId: jobId(fields.job_id, `${prefix}job_id`),
      ...signatureFields(
        requiredSignatures(fields.escrow_tx, `${prefix}escrow_tx`),
        operatorSignatures(fields.settlement_tx),
      ),
      worker: operatorAddress(fields.worker),
      creditsRemainingUnits: operatorCredits(fields.credits_remaining),
      creditsRemainingUnread: unreadCredits(fields.credits_remaining),
      // `requested_model` names the model asked for (the job is priced by it); when given,
      // `model` is taken as the one the response named, as it always is in a completion.
      ...models(wire, caller, prefix, wrapped),
      ...keyFields(caller, prefix),
      maxTokens: optionalMaxTokens(caller.max_tokens, `${prefix}max_tokens`),
      choices: optionalChoices(caller.n, `${prefix}n`),
      httpStatus: optionalHttpStatus(caller.http_status, `${prefix}http_status`),
      requestMethod: optionalMethod(caller.request_method, `${prefix}request_method`),
      requestPath: optionalPath(caller.request_path, `${prefix}request_path`),
      creditVault: optionalWorker(caller.credit_vault, `${prefix}credit_vault`),
      promptTokens: operatorTokens(u.prompt_tokens),
      completionTokens: operatorTokens(u.completion_tokens),
      totalTokens: operatorTokens(u.total_tokens),
      // A plain receipt's sender counted the answer it got; a completion's top level is the
      // operator's answer, whose word on its own size would bound nothing: its answer is
      // counted here instead, as the proxy counts a JSON answer.
      ...(wrapped
        ? postedAnswer(wire, caller.n)
        : {
            reasoningTokens: operatorTokens(u.reasoning_tokens),
            rejectedPredictionTokens: operatorTokens(u.rejected_prediction_tokens),
            answerBytes: optionalAnswerCount(wire.answer_bytes, "answer_bytes"),
            answerToolCalls: optionalAnswerCount(wire.answer_tool_calls, "answer_tool_calls"),
            predictionSent: optionalBoolean(wire.prediction_sent, "prediction_sent"),
            stream: optionalBoolean(wire.stream, "stream"),
            usageAsked: optionalBoolean(wire.usage_asked, "usage_asked"),
          }),
      // A completion's `created` is the operator's; `created_at` is the caller's own clock.
      ...(wrapped
        ? { createdAt: operatorCreatedAt(wire.created), respondedAt: null }
        : callerTime(optionalCreatedAt(wire.created_at, "created_at"))),
      ...tagsOf(wire, wrapped),
      // A completion's top level is the operator's answer: how the caller's capture ended is
      // read from a plain receipt only.
      ...(wrapped ? {} : optionalCaptureState(wire.capture_state)),
    };
    return { ok: true, receipt };
  } catch (error) {
    if (error instanceof FieldError) return { ok: false, field: error.field, reason: error.reason };
    throw error;
  }
}
