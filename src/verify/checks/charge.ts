import { jobStatusWord } from "../../store/jobs-api-rules.js";
import { type Profile, priceUnits } from "../profiles.js";
import type { CheckInput, CheckResult, ReceiptForChecks } from "./check-input.js";
import { type CheckList, fail, pass, skip } from "./check-list.js";
import { specialTokenSlack, toolCallTokenSlack } from "./usage.js";

/** What the job was charged for: the model asked for and its price for the usage. */

/** Decentral's documented endpoints that run no job (PROTOCOL.md): they are free to call. */
const freeEndpoint = /\/v1\/(?:models|jobs|account|webhooks)(?:\/|$)/i;

/** A request that asked for no completion, as its receipt tells it. */
export interface NoCompletion {
  requestMethod: string | null;
  requestPath: string | null;
  /** "a GET to /v1/models", for a check's reason. */
  described: string;
}

/**
 * The request when it asked for no completion, else null: another method than POST, or a POST
 * to one of Decentral's free endpoints (`/v1/webhooks`). Decentral runs a job for a POST to a
 * completion endpoint (`/v1/chat/completions`); the proxy records any answer naming a job, so an
 * operator answering a free `GET /v1/models` with a job's headers and a lock would otherwise be
 * bounded by nothing (no body: no model, no max_tokens).
 */
export function askedNoCompletion(
  job: Pick<ReceiptForChecks, "requestMethod" | "requestPath">,
): NoCompletion | null {
  const method = job.requestMethod ?? null;
  const path = job.requestPath ?? null;
  const notPost = method !== null && method.toUpperCase() !== "POST";
  if (!notPost && (path === null || !freeEndpoint.test(path))) return null;
  const described = `${method === null ? "request" : `${method.toUpperCase()}`}${path === null ? "" : ` to ${path}`}`;
  return { requestMethod: method, requestPath: path, described: `a ${described}` };
}

/**
 * `charge.matches_price`: the charge against the requested model's price. Usage above the
 * request's `max_tokens` (each of its `n` choices up to it), or a charge above the price at
 * `max_tokens` (the default when the request set none), fails whatever else is known; usage or
 * a price that is unknown leaves the charge unproven, bounded by that maximum.
 */
export function priceChecks(input: CheckInput, charge: bigint, list: CheckList): void {
  const { job, profile } = input;
  const name = "charge.matches_price";
  const asked = askedNoCompletion(job);
  if (asked !== null) {
    const { described, ...request } = asked;
    const expected = { chargeAtMost: "0", ...request };
    const actual = { charge: charge.toString() };
    list.add(
      charge === 0n
        ? pass(name, expected, actual)
        : fail(
            name,
            `the request was ${described}, which asks for no completion: nothing may be charged for it`,
            expected,
            actual,
          ),
    );
    return;
  }
  if (job.model === null) {
    list.gap(name, "model_unknown", "the receipt does not name the model asked for");
    return;
  }
  const ceilingTokens = job.maxTokens ?? profile.defaultMaxTokens;
  // The lock is the price at max_tokens whatever `n` asked (PROTOCOL.md): the most the job can
  // cost. The usage is bounded per choice, so n choices may use n times max_tokens.
  const ceiling = priceUnits(profile, job.model, ceilingTokens);
  const choices = job.choices ?? 1;
  const usageCeiling = ceilingTokens * choices;
  const tokens = job.completionTokens;
  if (tokens !== null && tokens > usageCeiling) {
    list.add(
      fail(
        name,
        `the recorded usage (${tokens} completion tokens) exceeds the request's max_tokens (${ceilingTokens}${job.maxTokens === null ? ", the profile's default" : ""}${choices > 1 ? ` for each of ${choices} choices` : ""})`,
        { completionTokensAtMost: usageCeiling },
        { completionTokens: tokens, charge: charge.toString() },
      ),
    );
    return;
  }
  if (ceiling !== null && charge > ceiling) {
    list.add(
      fail(
        name,
        `the charge exceeds the price of ${job.model} at ${ceilingTokens} completion tokens, the most this request could cost`,
        { chargeAtMost: ceiling.toString(), maxTokens: ceilingTokens },
        { charge: charge.toString() },
      ),
    );
    return;
  }
  if (tokens === null) {
    const most = answerBound(job, profile);
    const price = most === null ? null : priceUnits(profile, job.model, most);
    if (most !== null && price !== null && charge > price) {
      list.add(
        fail(
          name,
          `the answer sent no usage, and holds ${job.answerBytes} bytes${job.answerToolCalls ? ` and ${job.answerToolCalls} tool calls` : ""}: at most ${most} completion tokens, whose price the charge exceeds`,
          { completionTokensAtMost: most, chargeAtMost: price.toString() },
          { charge: charge.toString() },
        ),
      );
      return;
    }
    // The jobs API's answer is the operator's word on the job, as the answer's own usage is:
    // a charge that is not the price of the usage it names there is the operator's own
    // figures disagreeing (a stream read without its usage, charged twice its price within
    // the lock, passed as unproven). One that agrees stays unproven: nothing the recorder read
    // bounds it.
    const named =
      jobStatusWord(job.apiStatus) === "settled" ? (job.apiCompletionTokens ?? null) : null;
    const namedPrice = named === null ? null : usagePrice(profile, job, named);
    if (namedPrice !== null && charge !== namedPrice) {
      list.add(
        fail(
          name,
          `the answer sent no usage, and the jobs API names ${named} completion tokens, whose price the charge differs from`,
          { model: job.model, completionTokens: named, charge: namedPrice.toString() },
          { charge: charge.toString() },
        ),
      );
      return;
    }
    list.gap(
      name,
      "usage_unknown",
      named === null
        ? "usage was not recorded: the charge is bounded by the lock only"
        : `usage was not recorded: the charge is the price of the ${named} completion tokens the jobs API names, bounded by the lock only`,
    );
    return;
  }
  const priced = priceUnits(profile, job.model, tokens);
  const expectedCharge = usagePrice(profile, job, tokens);
  if (expectedCharge === null) {
    list.gap(
      name,
      "price_unknown",
      `the profile has no price for model ${JSON.stringify(job.model)} at ${tokens} completion tokens`,
    );
    return;
  }
  const expected = {
    model: job.model,
    completionTokens: tokens,
    charge: expectedCharge.toString(),
    ...(expectedCharge !== priced ? { pricedAtMaxTokens: ceilingTokens } : {}),
  };
  const actual = { charge: charge.toString() };
  list.add(
    charge === expectedCharge
      ? pass(name, expected, actual)
      : fail(
          name,
          "the charge differs from the requested model's price for the recorded usage",
          expected,
          actual,
        ),
  );
}

/**
 * The price of `tokens` completion tokens of the job's model, as the job may be charged for them:
 * usage of `n` choices beyond max_tokens costs no more than the price at it (the protocol's lock,
 * which ignores `n`). Null where the profile has no price.
 */
export function usagePrice(
  profile: Profile,
  job: Pick<ReceiptForChecks, "model" | "maxTokens" | "choices">,
  tokens: number,
): bigint | null {
  const priced = priceUnits(profile, job.model, tokens);
  if (priced === null || (job.choices ?? 1) <= 1) return priced;
  const ceiling = priceUnits(profile, job.model, job.maxTokens ?? profile.defaultMaxTokens);
  return ceiling !== null && priced > ceiling ? ceiling : priced;
}

/**
 * The most completion tokens an answer read whole can hold when it sent no usage, by
 * `usage.consistent`'s bound (a byte per token, 16 per tool call, 16 special tokens), or null
 * where nothing bounds it. Only a 2xx answer whose receipt counted it (`answer_bytes`: the
 * proxy's, the fetch wrapper's, a posted completion's) counts whose usage the API always sends: a
 * non-streamed JSON answer (every OpenAI-compatible API sends `usage` in it), or a stream that
 * owed it (asked with `stream_options.include_usage`, or of the other kind) and ended whole.
 * Its absence there is the operator's doing; a stream not asked for it sends none, and hidden
 * reasoning tokens may lie beyond its bytes, unless the profile prices its model with
 * `hiddenTokens: false`. The price counts completion tokens alone, so the prompt needs no bound.
 */
function answerBound(job: ReceiptForChecks, profile: Profile): number | null {
  const bytes = job.answerBytes ?? null;
  // A receipt that does not say which kind of answer it counted (`stream` null: a completion
  // posted whole, which may be a stream its integration pieced together, of choices it does not
  // say were asked) is not bounded: its counting is the integration's.
  if (bytes === null || job.stream === null || job.stream === undefined) return null;
  const whole = job.captureState === "complete";
  const usageSent =
    job.stream === false || (job.stream === true && whole && job.usageAsked === true);
  // A whole stream of a model the profile says bills no hidden tokens (`hiddenTokens: false`)
  // holds every token it was charged for, whether or not it was asked for its usage: the reason
  // not to bound a stream that was not (reasoning tokens charged and never sent) is not there.
  const nothingHidden =
    whole &&
    job.model !== null &&
    Object.hasOwn(profile.pricing, job.model) &&
    profile.pricing[job.model]!.hiddenTokens === false;
  if (!usageSent && !nothingHidden) return null;
  if (job.httpStatus === null || job.httpStatus < 200 || job.httpStatus > 299) return null;
  return bytes + (job.answerToolCalls ?? 0) * toolCallTokenSlack + specialTokenSlack;
}

/** `charge.model`: the model that answered is the one asked for (the job is priced by it). */
export function answeredModel(job: ReceiptForChecks): CheckResult {
  const responseModel = job.responseModel ?? null;
  return job.model === null || responseModel === null
    ? skip("charge.model", "the receipt does not record both the requested and the answered model")
    : responseModel === job.model
      ? pass("charge.model", job.model, responseModel)
      : fail(
          "charge.model",
          `the caller asked for ${job.model} but the response names ${responseModel}`,
          job.model,
          responseModel,
        );
}
