import { isUtf8 } from "node:buffer";
import type { JsonAnswerScan } from "./json-answer-scan.js";
import { operatorModel, operatorUsage, type OperatorUsage as Usage } from "./operator-values.js";
import {
  type AnswerShape,
  audioDataTokens,
  audioHeadChars,
  builtInCalls,
  type EchoedText,
  echoedAside,
  echoedPrompt,
  noEchoedText,
  noRequestFacts,
  offeredKind,
  type RequestFacts,
  readEchoed,
} from "./request-facts.js";
import {
  createChunkReader,
  createSseReader,
  pythonRefuses,
  sseChunks,
  sseEvents,
} from "./sse-tail.js";
import { withoutKeys } from "./without-key.js";

/**
 * What a completion's answer holds as its client reads it: the model it names, its usage and
 * the bytes and tool calls of its generated text, which bound the completion tokens its usage
 * may name (`usage.consistent`). The proxy reads it of the answers it passes, the fetch wrapper
 * of the ones its backend gets. Platform only, as the fetch wrapper is.
 */
export const unknownUsage: Usage = {
  promptTokens: null,
  completionTokens: null,
  totalTokens: null,
  reasoningTokens: null,
  rejectedPredictionTokens: null,
};

/** What the recorder learns from a response body: the model it names, usage, answer size. */
export interface BodyFacts {
  model: string | null;
  usage: Usage;
  /** See `jobs.answer_bytes`; null when the body was not read as the caller read it. */
  answerBytes: number | null;
  /** See `jobs.answer_tool_calls`; null when not counted. */
  answerToolCalls: number | null;
}

export const unknownBody: BodyFacts = {
  model: null,
  usage: unknownUsage,
  answerBytes: null,
  answerToolCalls: null,
};

/** UTF-8 bytes of a string; 0 for anything else. */
export const utf8Bytes = (value: unknown) =>
  typeof value === "string" ? Buffer.byteLength(value, "utf8") : 0;

export const asRecord = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};

/**
 * The text of a content part's thinking: Mistral's reasoning models (Magistral, and others asked
 * with `reasoning_effort`) answer with a `thinking` part whose text parts hold the reasoning
 * their completion tokens count and no `reasoning_tokens` names; a string is taken as well.
 */
function thinkingBytes(thinking: unknown): number {
  if (!Array.isArray(thinking)) return utf8Bytes(thinking);
  let bytes = 0;
  for (const part of thinking) bytes += textPartBytes(asRecord(part));
  return bytes;
}

/**
 * The text of a content part a client reads as text: a `text` part's, or an untyped part's
 * `text`. A part of another type (an image's, say) is shown as no text, whatever it carries:
 * counted, 700 bytes of `text` in an `image_url` part lifted the bound of `Hi.`'s usage by as
 * many tokens.
 */
const textPartBytes = (part: Record<string, unknown>) =>
  part.type === undefined || part.type === "text" ? utf8Bytes(part.text) : 0;

/**
 * How a client reads a chat tool call, by its `type` (the last one a stream named, as Node's
 * SDK keeps it): a function's call its `function`, a custom tool's its `custom`; with no type,
 * either (the longer counts). A call of another type is none it runs (Node's tool runner skips
 * it): counted, its text and its format's allowance lifted the bound of the usage.
 */
type CallRead = "function" | "custom" | "either" | null;
const callRead = (type: unknown): CallRead =>
  type === undefined || type === null
    ? "either"
    : type === "function" || type === "custom"
      ? type
      : null;

/**
 * What the caller asked that decides which of an answer's text it gets; `chat`: it asked the
 * chat completions endpoint, whose clients read a choice's message alone, never its `text`.
 */
export type Asked = Pick<RequestFacts, "choices" | "audio" | "tools"> &
  Partial<Pick<RequestFacts, "audioFormat" | "echo" | "parallelCalls" | "toolKinds">> & {
    chat?: boolean;
    /** Where the endpoint asked puts its answer (see `answerShapeOf`); absent: `choices`. */
    shape?: AnswerShape;
    /** The charset the answer's content type names (`answerCharset`); absent or null: none. */
    charset?: string | null;
  };

/**
 * The `charset` parameter of a content type as httpx reads it (lower case, quotes dropped), or
 * null for none. An httpx before 0.28 decodes a JSON answer naming one with that charset
 * (`Response.json()` parses `text`), and the OpenAI Python SDK accepts httpx from 0.23; an SDK
 * that read a stream by its lines (`iter_lines()`, before its byte decoder) decoded its lines so.
 */
export function answerCharset(contentType: string | undefined): string | null {
  const named = /;\s*charset\s*=\s*("[^"]*"|'[^']*'|[^;]*)/i.exec(contentType ?? "");
  if (named === null) return null;
  const name = (named[1] as string)
    .trim()
    .replace(/^["']|["']$/g, "")
    .trim()
    .toLowerCase();
  // `charset=` names none: httpx finds no codec of that name and reads UTF-8, as Node's does.
  return name === "" ? null : name;
}

/** Python's names of UTF-8, written as `codecs.lookup` reads a name (`-` and spaces as `_`). */
const utf8Charsets = new Set(["utf_8", "utf8", "u8", "utf", "utf8_ucs2", "utf8_ucs4", "cp65001"]);
/** Python's names of UTF-8 that drop a byte-order mark: `json.loads` of the text reads it. */
const utf8SigCharsets = new Set(["utf_8_sig", "utf8_sig"]);
/**
 * Python's names of charsets that decode every byte and ASCII as ASCII: a UTF-8 answer decoded
 * with one is the same JSON, its strings no shorter (each byte past ASCII one character or
 * U+FFFD), so what its reader counts bounds what that client read.
 */
const asciiCharsets = new Set([
  "ascii",
  "us_ascii",
  "646",
  "latin_1",
  "latin1",
  "iso_8859_1",
  "iso8859_1",
  "8859",
  "cp819",
  "l1",
  "latin",
  "iso_ir_100",
  "cp1252",
  "windows_1252",
]);

/**
 * Whether a Python client that decodes an answer by the charset its content type names
 * (`answerCharset`) fails to read it, where Node's reads it as UTF-8 whatever it names: under a
 * charset that is no UTF-8 and no ASCII one (`utf-16`: the bytes decode to no JSON, or fail
 * whole), or, for a JSON answer, opening with a byte-order mark (decoded as named, the mark is
 * kept, and `json.loads` raises on it: "Unexpected UTF-8 BOM"). Read as Node's client read it,
 * `Hi.` and 3,000 tokens under `charset=utf-16` were verified for a Python customer's exception.
 * A name Python does not know is read as UTF-8 by httpx, but taken here as failing: no honest
 * upstream names one.
 */
export function charsetFails(charset: string | null | undefined, bom: boolean): boolean {
  if (charset === null || charset === undefined) return false;
  const name = charset.replace(/[-\s]/g, "_");
  if (utf8SigCharsets.has(name)) return false;
  if (bom) return true;
  return !utf8Charsets.has(name) && !asciiCharsets.has(name);
}

/** Whether the request asked a legacy completion (`/completions`, not `/chat/completions`). */
export const legacyCompletion = (asked: { chat?: boolean; shape?: AnswerShape }) =>
  asked.chat === false && asked.shape === "choices";

/**
 * The text of a Responses API item's parts (`content`, a reasoning item's `summary`) of the
 * type a client reads as text (`output_text`, `summary_text`, `reasoning_text`; a `refusal`
 * part's refusal). A part of another type, or of none, is shown by no SDK (`output_text` joins
 * the `output_text` parts alone, in Node's SDK and Python's): counted, 1,000 bytes of it beside
 * `Hi.` lifted the bound of its usage by as many tokens, verified.
 */
function partsBytes(parts: unknown, textType: string): number {
  if (!Array.isArray(parts)) return 0;
  let bytes = 0;
  // A model refuses or answers: the text of refusal parts beside text parts, the same text
  // under both, doubled the bound; the longer of the two counts.
  let refusal = 0;
  for (const part of parts) {
    const p = asRecord(part);
    if (p.type === textType) bytes += utf8Bytes(p.text);
    else if (p.type === "refusal") refusal += utf8Bytes(p.refusal);
  }
  return Math.max(bytes, refusal);
}

/** Strings of an array (a file search's queries, a shell call's command); 0 for anything else. */
function stringsBytes(values: unknown): number {
  if (!Array.isArray(values)) return 0;
  let bytes = 0;
  for (const value of values) bytes += utf8Bytes(value);
  return bytes;
}

/**
 * What the model wrote in a built-in call's `action`: a web search's query (`query`, or the
 * `queries` that replace it, the longer: a client shows one or the other), the page it opened and
 * the pattern it looked for there, the text a computer call typed and the keys it pressed, a shell
 * call's command.
 */
function actionBytes(value: unknown): number {
  const action = asRecord(value);
  const search = Math.max(utf8Bytes(action.query), stringsBytes(action.queries));
  const page = utf8Bytes(action.url) + utf8Bytes(action.pattern);
  const typed = utf8Bytes(action.text) + stringsBytes(action.keys);
  return search + page + typed + stringsBytes(action.command) + stringsBytes(action.commands);
}

/** The last index a JavaScript array has (2^32 - 2): a larger key is a property beside its items. */
const LAST_ARRAY_INDEX = 2 ** 32 - 2;

/**
 * The place in an array a streamed delta's `index` names, or null for none. A client pieces the
 * answer together in an array by index (Node's SDK: `choices[index]`, `tool_calls[index]`): a
 * whole number from 0 is its item, and so are its digits as a string (`"1"` is item 1's key),
 * which counted at the delta's place in its chunk instead put text its client read in one choice
 * into another, under the other's name (a content beside a refusal counted twice). At `0.5`,
 * `-1` or `"01"` a choice or call is a property beside the array's items, in no completion it
 * reads, and counted, 1,000 bytes of it lifted the bound of `Hi.`'s usage by 1,000 tokens,
 * verified. So is a place past an array's last (`LAST_ARRAY_INDEX`): a call at 4294967295 is in
 * no `tool_calls` its client reads.
 */
function arrayPlace(index: unknown): number | null {
  const place =
    typeof index === "string" && String(Number(index)) === index ? Number(index) : index;
  return Number.isInteger(place) && (place as number) >= 0 && (place as number) <= LAST_ARRAY_INDEX
    ? (place as number)
    : null;
}

/** Whether a streamed call's `index` names a place a client reads: none (known by its id), or one. */
const callIndexRead = (index: unknown): boolean =>
  index === undefined || index === null || arrayPlace(index) !== null;

/**
 * Counts the text a model generated in an answer's choices, as JSON messages or as a stream's
 * deltas: each choice's content (a string or text parts), refusal, reasoning text, audio when
 * the caller asked for audio, legacy `text` (of a choice with no message, outside chat), and the
 * names and arguments of its tool and function calls. Every output token decodes to at least one byte, so usage naming more
 * completion tokens than this (with the reasoning tokens the answer does not show) claims
 * output the caller never got. Only the choices asked for count (`n`, by default one): a client
 * reads `choices[0]`, and text in a choice nobody asked for is no answer it got.
 */
export function createGeneratedCount(asked: Asked) {
  let bytes = 0;
  // Each call once, by its choice and its place (a stream sends one call over many deltas),
  // and only a call that names what it calls: an empty `{}` is no call the caller got, and
  // would earn its format's allowance for nothing.
  const calls = new Set<string>();
  // The group each call belongs to (a chat choice, or a Responses answer's own calls): one
  // call a group when the request forbade parallel calls. The API's own tools run on its side,
  // one after another, so each is a group of its own.
  const groups = new Set<string>();
  const counted = (key: string, group: string) => {
    calls.add(key);
    groups.add(group);
  };
  // A call's text: its name, and its arguments (a function's) or its input (a custom tool's),
  // the one its client reads; both, the same text twice, lifted the bound of the usage.
  const callParts = (value: unknown): [number, number, number] => {
    const f = asRecord(value);
    return [utf8Bytes(f.name), utf8Bytes(f.arguments), utf8Bytes(f.input)];
  };
  const partsOfCall = ([name, args, input]: readonly number[]) =>
    (name ?? 0) + Math.max(args ?? 0, input ?? 0);
  const callBytes = (value: unknown): number => partsOfCall(callParts(value));
  const namesCall = (value: unknown): boolean => {
    const name = asRecord(value).name;
    return typeof name === "string" && name.length > 0;
  };
  const call = (value: unknown): boolean => {
    bytes += callBytes(value);
    return namesCall(value);
  };
  // A chat tool call is a function's or a custom tool's, as its `type` says, and its client
  // reads that one: the text of a call under both, counted twice, lifted the bound of the usage
  // by a copy its client never read. Each call's is the longer of the two, over its deltas.
  // Per call: the name, arguments and input of its function, then of its custom tool, over its
  // deltas (a stream sends a call's arguments over many, summed).
  // A stream's call by its index, or by its id when it has none: Gemini's OpenAI-compatible
  // stream sends each parallel call whole in a chunk of its own, with its own id and no index.
  // A call at an index already named is the same call to its client, whatever its id says.
  const callTextOf = new Map<string, number[]>();
  // A choice's legacy `function_call` and its `tool_calls` are one call's two names: a request
  // offers `functions` or `tools`, its model answers under the one name, and its client reads
  // that one. The same call under both, counted twice, lifted the bound by a copy and a second
  // call's allowance: each choice counts the longer of the two, and its function call as a call
  // only where it has no tool call.
  const legacyCallOf = new Map<string, string>();
  // A streamed choice carrying a legacy `function_call` (by its `delta:` key): Node's stream
  // helper (`finalChatCompletion()`) ends it with the function call alone, its `tool_calls`
  // dropped, so they are text and calls not every customer got; counted, the longer of the two
  // let an operator pad the tool calls beside a short function call.
  const functionAlone = new Set<string>();
  // Each chat tool call (by `${field}:${key}`, as its text in `callTextOf`): its choice's index,
  // whether its function and its custom tool name what they call (over a stream's deltas), and
  // the type it was last given (see `callRead`). Counted once its deltas are all read.
  const toolCallOf = new Map<
    string,
    { choice: string; key: string; asFunction: boolean; asCustom: boolean; type: unknown }
  >();
  // Whether a tool call names what it calls, read as its type says.
  const namesByType = (call: { asFunction: boolean; asCustom: boolean; type: unknown }) => {
    const read = callRead(call.type);
    return (
      ((read === "function" || read === "either") && call.asFunction) ||
      ((read === "custom" || read === "either") && call.asCustom)
    );
  };
  const choiceOfCall = new Map<string, string>();
  const addCall = (key: string, asFunction: unknown, asCustom: unknown, choice: string) => {
    choiceOfCall.set(key, choice);
    const said = callTextOf.get(key) ?? [0, 0, 0, 0, 0, 0];
    const parts = [...callParts(asFunction), ...callParts(asCustom)];
    // A name given again in a later delta replaces the one before (Node's SDK sets it, never
    // appends): counted as often as it was sent, 1,000 deltas naming `get_weather` lifted the
    // bound by 11,000 tokens for one name its client read once. The longest one counts.
    for (const [i, n] of parts.entries()) {
      said[i] = i % 3 === 0 ? Math.max(said[i] ?? 0, n) : (said[i] ?? 0) + n;
    }
    callTextOf.set(key, said);
  };
  // A streamed call's key: by its index, or by its id when it has none (see above). A call its
  // deltas name by index and then by id alone (or by id and then by index) is one call to its
  // client: keyed apart, it earned two calls' allowance and its name counted twice. An id seen
  // with one index does not join a call at another index: that is another call to a client
  // that pieces the calls together by index.
  const streamCallKeys = new Map<string, string>();
  const indexedCalls = new Set<string>();
  const streamCallKey = (choice: number, t: Record<string, unknown>, place: number): string => {
    const id = typeof t.id === "string" && t.id.length > 0 ? `${choice}:id:${t.id}` : null;
    const byId = id === null ? undefined : streamCallKeys.get(id);
    if (t.index === undefined || t.index === null) {
      if (id === null) return `${choice}:${place}`;
      const key = byId ?? id;
      streamCallKeys.set(id, key);
      return key;
    }
    const at = `${choice}:${t.index}`;
    const key =
      streamCallKeys.get(at) ?? (byId !== undefined && !indexedCalls.has(byId) ? byId : at);
    streamCallKeys.set(at, key);
    if (id !== null && byId === undefined) streamCallKeys.set(id, key);
    indexedCalls.add(key);
    return key;
  };
  // Each choice's reasoning text under its two names (`reasoning_content`, `reasoning`): vLLM
  // writes the same text under both since it renamed the field, and a client reads one of them.
  // Counted twice, an honest answer's reasoning lifted the bound of its usage by its length
  // again (6,000 completion tokens verified for 3,000 bytes of reasoning and `Hi.`). Its content
  // parts of type `thinking` (Mistral's) are a third name: the longest of the three counts.
  const reasoningOf = new Map<string, [number, number, number]>();
  // Each choice's refusal and content: a model refuses or answers (OpenAI writes `content` null,
  // or Azure "", beside a refusal), and a client shows the refusal when there is one. The same
  // text under both, counted twice, lifted the bound of the usage by a copy (a stream's deltas
  // alternating the two names as well): each choice counts the longer of the two, over its
  // deltas. So with its audio's transcript: OpenAI answers audio with `content` null, the text
  // it speaks the transcript, and the same text under both, counted twice, lifted the bound by
  // a copy its client read once; the longest counts. A message's `refusal` and its content
  // parts of type `refusal` are one refusal under two names likewise (the first two).
  const answerOf = new Map<string, [number, number, number, number]>();
  const twoNamesBytes = () => {
    let sum = 0;
    for (const said of reasoningOf.values()) sum += Math.max(...said);
    for (const [at, [refusal, refusalParts, content, transcript]] of answerOf) {
      // A transcript is the text of the audio beside it, no more of it than that audio can
      // speak (its tokens' bound, far above speech's 15 to 20 bytes a second): a transcript of
      // no audio, or of a few bytes of it, is none a client plays, and counted whole, 700 bytes
      // of it beside `Hi.` lifted the bound by as many tokens.
      const audio = audioOf.get(at);
      const spoken =
        audio === undefined ? 0 : audioDataTokens(audio.chars, asked.audioFormat, audio.head);
      sum += Math.max(refusal, refusalParts, content, Math.min(transcript, spoken ?? 0));
    }
    // Per choice, the text of its legacy function call and of its tool calls.
    const callsOf = new Map<string, [number, number]>();
    for (const [key, said] of callTextOf) {
      const choice = choiceOfCall.get(key) ?? key;
      const both = callsOf.get(choice) ?? [0, 0];
      const read = callRead(toolCallOf.get(key)?.type);
      const asFunction =
        read === "function" || read === "either" ? partsOfCall(said.slice(0, 3)) : 0;
      const asCustom = read === "custom" || read === "either" ? partsOfCall(said.slice(3)) : 0;
      both[legacyCallOf.get(choice) === key ? 0 : 1] += Math.max(asFunction, asCustom);
      callsOf.set(choice, both);
    }
    for (const [choice, [legacy, tools]] of callsOf) {
      sum += functionAlone.has(choice) ? legacy : Math.max(legacy, tools);
    }
    return sum;
  };
  // Each choice's audio data (base64, over a stream's deltas): its characters and the start a
  // `wav` header is read from (see `audioDataTokens`).
  const audioOf = new Map<string, { chars: number; head: string }>();
  const addAudio = (key: string, data: unknown) => {
    const audio = audioOf.get(key) ?? { chars: 0, head: "" };
    if (typeof data === "string") {
      audio.chars += utf8Bytes(data);
      if (audio.head.length < audioHeadChars) audio.head += data.slice(0, audioHeadChars);
    }
    audioOf.set(key, audio);
  };
  // Null where the audio's format bounds nothing (see `audioDataTokens`): nor does the answer.
  const audioTokens = () => {
    let sum: number | null = 0;
    for (const { chars, head } of audioOf.values()) {
      const tokens = audioDataTokens(chars, asked.audioFormat, head);
      sum = sum === null || tokens === null ? null : sum + tokens;
    }
    return sum;
  };
  // Each legacy completion choice's `text` (over a stream's chunks), the prompt it echoes
  // aside: see `echoedAside`.
  const legacyText = new Map<number, EchoedText>();
  const legacyBytes = () => {
    let sum = 0;
    for (const text of legacyText.values()) sum += echoedAside(text);
    return sum;
  };
  const add = (choices: unknown, field: "message" | "delta") => {
    if (!Array.isArray(choices) || (asked.shape ?? "choices") !== "choices") return;
    for (const [position, item] of choices.entries()) {
      const choice = asRecord(item);
      // A stream's chunk carries the choice it continues by `index`; a message, by its place.
      const index =
        field === "delta" && choice.index !== undefined && choice.index !== null
          ? arrayPlace(choice.index)
          : position;
      if (index === null || index >= asked.choices) continue;
      // A legacy completion's client (a request to `/completions` that is no chat's) reads its
      // `text` alone: a message beside it is no answer it got, and counted, it lifted the bound
      // of the usage by the bytes the operator put there.
      if (legacyCompletion(asked)) {
        const read = legacyText.get(index) ?? noEchoedText(echoedPrompt(asked, index));
        readEchoed(read, choice.text);
        legacyText.set(index, read);
        continue;
      }
      const message = asRecord(choice[field]);
      // A legacy completion's answer is its `text`; a chat client reads the message (or delta)
      // alone, so `text` beside one, or in any answer to a chat request, is no answer it got.
      const chat = asked.chat || (typeof choice[field] === "object" && choice[field] !== null);
      bytes += chat ? 0 : utf8Bytes(choice.text);
      const at = `${field}:${index}`;
      const said = reasoningOf.get(at) ?? [0, 0, 0];
      said[0] += utf8Bytes(message.reasoning_content);
      said[1] += utf8Bytes(message.reasoning);
      reasoningOf.set(at, said);
      const content = message.content;
      const answer = answerOf.get(at) ?? [0, 0, 0, 0];
      answer[0] += utf8Bytes(message.refusal);
      if (Array.isArray(content)) {
        for (const part of content) {
          const p = asRecord(part);
          // A part is text, thinking or a refusal, as its type says (`textPartBytes`): the text
          // of another kind in the same part is none its client reads (counted, the longest of
          // the three lifted the bound by what was never shown). A refusal part is the choice's
          // refusal (content is text parts or one refusal part).
          if (p.type === "refusal") answer[1] += utf8Bytes(p.refusal);
          else if (p.type === "thinking") said[2] += thinkingBytes(p.thinking);
          else answer[2] += textPartBytes(p);
        }
      } else answer[2] += utf8Bytes(content);
      if (asked.audio) {
        const audio = asRecord(message.audio);
        addAudio(at, audio.data);
        answer[3] += utf8Bytes(audio.transcript);
      }
      answerOf.set(at, answer);
      // A delta of text alone (nearly every one of a stream) names no call: its empty call
      // texts would change no sum, so none is kept for it.
      if (message.function_call !== undefined && message.function_call !== null) {
        if (field === "delta") functionAlone.add(at);
        legacyCallOf.set(at, `${at}:function`);
        addCall(`${at}:function`, message.function_call, null, at);
        if (namesCall(message.function_call)) counted(`${index}:function`, `${index}`);
      }
      const tools = Array.isArray(message.tool_calls) ? message.tool_calls : [];
      for (const [place, tool] of tools.entries()) {
        const t = asRecord(tool);
        if (field === "delta" && !callIndexRead(t.index)) continue;
        const key = field === "message" ? `${index}:${place}` : streamCallKey(index, t, place);
        addCall(`${field}:${key}`, t.function, t.custom, at);
        const known = toolCallOf.get(`${field}:${key}`) ?? {
          choice: `${index}`,
          key,
          asFunction: false,
          asCustom: false,
          type: undefined,
        };
        known.asFunction ||= namesCall(t.function);
        known.asCustom ||= namesCall(t.custom);
        // A delta naming no type leaves the one named before (Node's SDK sets one given, and
        // keeps its own for a falsy one: `0`, `""`).
        if (field === "message" || t.type) {
          known.type = t.type;
        }
        toolCallOf.set(`${field}:${key}`, known);
      }
    }
  };
  // Of `bytes`, those of the output's message and reasoning text (see `textBytes`).
  let text = 0;
  /**
   * A Responses API answer's `output` items, as its client reads them: a message's text and
   * refusal parts, a reasoning item's summary and text, a call's name and arguments (or input),
   * and what the API's own tools were asked (the query, the code, the command). An image is the
   * image model's, no completion token; an encrypted reasoning is the reasoning tokens' own.
   */
  const addOutput = (output: unknown) => {
    if (!Array.isArray(output) || asked.shape !== "output") return;
    for (const [place, value] of output.entries()) {
      const item = asRecord(value);
      const type = item.type;
      const before = bytes;
      if (type === "message") bytes += partsBytes(item.content, "output_text");
      else if (type === "reasoning") {
        bytes += partsBytes(item.summary, "summary_text");
        bytes += partsBytes(item.content, "reasoning_text");
      }
      if (type === "message" || type === "reasoning") text += bytes - before;
      else if (type === "function_call" || type === "custom_tool_call") {
        if (call(item) && offeredKind(type, asked.toolKinds)) counted(`output:${place}`, "output");
      } else if (type === "mcp_call" || type === "mcp_approval_request") {
        // The model names the server as well as its tool: an approval request is all it wrote.
        bytes += utf8Bytes(item.server_label);
        if (call(item) && offeredKind(type, asked.toolKinds)) {
          counted(`output:${place}`, `output:${place}`);
        }
      } else if (
        typeof type === "string" &&
        builtInCalls.has(type) &&
        offeredKind(type, asked.toolKinds)
      ) {
        // What the model wrote to call one of the API's own tools, where it was offered one (a
        // call of a tool it was not offered is none it made: its fields count nothing).
        bytes += utf8Bytes(item.code) + stringsBytes(item.queries) + actionBytes(item.action);
        // An apply_patch call's operation: the file it names and the diff the model wrote.
        const operation = asRecord(item.operation);
        bytes += utf8Bytes(operation.path) + utf8Bytes(operation.diff);
        counted(`output:${place}`, `output:${place}`);
      }
    }
  };
  return {
    add,
    addOutput,
    /** Null where the answer holds audio whose format bounds nothing (`audioDataTokens`). */
    get bytes(): number | null {
      const audio = audioTokens();
      return audio === null ? null : bytes + twoNamesBytes() + legacyBytes() + audio;
    },
    /**
     * The bytes of the Responses output's message and reasoning text: what a stream shows as
     * its text deltas (the rest, calls and the API's own tools, it shows in its items).
     */
    get textBytes() {
      return text;
    },
    // A call to a request that offered no tools is none its model was asked to make: its
    // text counts, but no format's allowance (16 tokens a call lifted the bound of the usage
    // by as many calls as the operator added).
    get toolCalls() {
      if (!asked.tools) return 0;
      // The tool calls of each choice that name what they call, as their types say.
      const toolCallsOf = new Map<string, Set<string>>();
      for (const call of toolCallOf.values()) {
        if (!namesByType(call)) continue;
        toolCallsOf.set(call.choice, (toolCallsOf.get(call.choice) ?? new Set()).add(call.key));
      }
      const chosen = new Set([...groups, ...toolCallsOf.keys()]);
      if (asked.parallelCalls === false) return chosen.size;
      let count = calls.size;
      for (const [choice, keys] of toolCallsOf) {
        count += keys.size;
        if (functionAlone.has(`delta:${choice}`)) count -= keys.size;
        else if (calls.has(`${choice}:function`)) count--;
      }
      return count;
    },
  };
}

/**
 * Whether the request asked an endpoint whose answer is a completion its SDK parses as JSON, or
 * as events when it asked to stream: chat, a legacy completion, a Responses API answer. Another
 * endpoint's body may be no JSON by design (audio, say).
 */
export const completionAsked = (asked: Pick<Asked, "chat" | "shape">) =>
  asked.chat === true || asked.shape === "output" || legacyCompletion(asked);

/**
 * A 2xx body a completion's client cannot read as JSON (no JSON, or no object) holds no
 * completion: its SDK fails to parse it, so the caller got no text at all, and its charge is
 * bounded as an answer of no bytes (`charge.matches_price`), not by the lock. Only chat's was:
 * an HTML page answered to `/responses` or `/completions` was charged the lock, partially
 * verified. Another endpoint's body may be no JSON by design: nothing is known of it.
 */
export const unreadableBody = (asked: Asked): BodyFacts =>
  completionAsked(asked) ? { ...unknownBody, answerBytes: 0, answerToolCalls: 0 } : unknownBody;

/**
 * Whether the request asked for audio in a format whose bytes bound no count of tokens (see
 * `audioDataTokens`): an answer's audio then bounds nothing.
 */
export const unboundedAudio = (asked: Asked) =>
  asked.audio && audioDataTokens(4, asked.audioFormat) === null;

/**
 * Whether a legacy completion asked to `echo` a prompt given as token ids: its choices' text
 * opens with that prompt's text, whose bytes the request does not tell (a token decodes to one
 * byte or many, a special one to none), so no part of the text can be set aside as the prompt's,
 * and counted whole, its echo was charged as output: 3,000 tokens verified for an echo of 3,600
 * bytes and `Hi.`.
 */
const echoesTokenIds = (asked: Asked) =>
  legacyCompletion(asked) && asked.echo?.prompts.includes(null) === true;

/**
 * The usage of an answer whose size is `bytes`, or unknown where that size bounds nothing: audio
 * of a format of no known floor (`bytes` null), or the echo of token ids (`echoesTokenIds`).
 * Kept, its charge was verified on the operator's word (48,000 completion tokens for 48,000
 * bytes of audio in a format nobody can measure); unknown, it is bounded by what the answer
 * holds, as an answer's that sent none, and the job is at best partially verified
 * (`usage_unknown`).
 */
export function boundedUsage(bytes: number | null, usage: Usage | null, asked: Asked): Usage {
  return bytes === null || echoesTokenIds(asked) ? unknownUsage : (usage ?? unknownUsage);
}

/**
 * Model, usage and answer size of a whole JSON response body, given as its bytes where they are
 * known: bytes that are no UTF-8 fail Python's client (`json.loads` of the body's bytes raises),
 * where Node's reads U+FFFD in their place and goes on. Read as Node's, the text and usage
 * after such a byte were priced, verified, for a Python customer who got an exception.
 */
export function jsonBodyFacts(
  body: string | Buffer,
  credentials: string[],
  asked: Asked,
  /**
   * The body as its bytes decode, before a client's JSON reader (fetch's `json()`) drops a
   * UTF-8 byte-order mark before the text; false for what fetch's `text()` gave, which is what
   * `json()` parses, the marks it drops already dropped.
   */
  bomKept = true,
): BodyFacts {
  if (typeof body !== "string" && !isUtf8(body)) return unreadableBody(asked);
  const decoded = typeof body === "string" ? body : body.toString("utf8");
  if (charsetFails(asked.charset, bomKept && decoded.charCodeAt(0) === 0xfeff)) {
    return unreadableBody(asked);
  }
  const text = bomKept && decoded.charCodeAt(0) === 0xfeff ? decoded.slice(1) : decoded;
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return unreadableBody(asked);
  }
  // JSON that Python's `json` refuses, JSON.parse reads: a Python client's read fails, as a
  // Node client's fails at JSON.parse's refusal. Read as Node's, an answer nested too deep for
  // Python priced its whole text, verified, for a customer who got an exception.
  if (pythonRefuses(text)) return unreadableBody(asked);
  if (typeof parsed !== "object" || parsed === null) return unreadableBody(asked);
  const generated = createGeneratedCount(asked);
  generated.add(parsed.choices, "message");
  generated.addOutput(parsed.output);
  // An `error` is no completion, whatever the status line said (a stream's error event ends
  // what its client reads likewise): usage it names prices no answer the caller got. Its
  // answer is still measured: what it holds bounds the charge of an answer without usage,
  // which an `error` beside it must not lift to the lock.
  const bytes = generated.bytes;
  if (parsed.error) {
    return { ...unknownBody, answerBytes: bytes, answerToolCalls: generated.toolCalls };
  }
  return {
    model: operatorModel(
      typeof parsed.model === "string" ? withoutKeys(parsed.model, credentials) : null,
    ),
    usage: boundedUsage(bytes, operatorUsage(parsed.usage, asked.shape === "output"), asked),
    answerBytes: bytes,
    answerToolCalls: generated.toolCalls,
  };
}

/**
 * The size of the answer in a chat completion a backend posts whole (`POST /jobs` with
 * `_decentral`, as an SDK's `model_dump()` gives it): what `jsonBodyFacts` counts of a JSON
 * answer to a chat request, the request itself unknown. So the reading is a chat client's (a
 * choice's `text` is none), of the choices the request asked (`n`, else one, a request's
 * default: a second choice the client never shows lifted the bound by its bytes), tools taken
 * as offered, and audio in the format of the lowest floor known (`opus`, 6 kbit/s: any format
 * but `flac` holds a second in more bytes), where the proxy would take a format no request
 * named as no bound at all: a few bytes of audio data beside `Hi.` lifted the bound whole.
 * Null when it carries no `choices` array: an integration may leave the text out, and a bound
 * of nothing would fail every honest job it posts.
 */
export function postedAnswerFacts(
  completion: Record<string, unknown>,
  choices: number | null,
): Pick<BodyFacts, "answerBytes" | "answerToolCalls"> | null {
  if (!Array.isArray(completion.choices)) return null;
  const generated = createGeneratedCount({
    ...noRequestFacts,
    choices: choices ?? 1,
    chat: true,
    shape: "choices",
    audioFormat: "opus",
  });
  generated.add(completion.choices, "message");
  return { answerBytes: generated.bytes, answerToolCalls: generated.toolCalls };
}

/**
 * Model, usage and answer size of a JSON answer too long to hold, read as it passed (see
 * json-answer-scan.ts): what `jsonBodyFacts` reads of the same bytes, but the padding of a
 * member no client reads counts for nothing, and its usage bounds the charge as any answer's.
 */
export function scannedBodyFacts(
  scan: JsonAnswerScan,
  credentials: string[],
  asked: Asked,
): BodyFacts {
  const read = scan.result();
  if (read.kind !== "object" || charsetFails(asked.charset, read.bom)) return unreadableBody(asked);
  if (read.error) {
    return { ...unknownBody, answerBytes: read.bytes, answerToolCalls: read.toolCalls };
  }
  return {
    model: operatorModel(read.model === null ? null : withoutKeys(read.model, credentials)),
    usage: boundedUsage(read.bytes, operatorUsage(read.usage, asked.shape === "output"), asked),
    answerBytes: read.bytes,
    answerToolCalls: read.toolCalls,
  };
}

/**
 * The most of one event's data a stream's reader holds, a JSON answer's most (8 MiB): what
 * follows is not read, which only lowers the bound (see `createSseReader`).
 */
const maxEventBytes = 8 * 1024 * 1024;

/** The events of a Responses API stream that end it with its response, usage and all. */
const finalResponseEvents = new Set(["response.completed", "response.incomplete"]);

/**
 * The events of a Responses API stream whose `delta` is text its client shows as it comes: the
 * output's text and refusal, and the reasoning's summary and text.
 */
const textDeltaEvents = new Set([
  "response.output_text.delta",
  "response.refusal.delta",
  "response.reasoning_summary_text.delta",
  "response.reasoning_text.delta",
]);

/**
 * Model, usage and answer size of an SSE stream as its client reads it, read as its bytes pass
 * (see sse-tail.ts): only the line being read and one event's data are held, so a stream of any
 * length is read (up to an event longer than 8 MiB). A stream's chunks carry its text in their deltas, pieced together as its
 * client does (`createGeneratedCount`), and its usage rides on its last chunks: the last one
 * naming a usage is its client's (see `streamUsage`). A Responses API stream: see
 * `responsesFacts`. A stream longer than its last 64 KiB was bounded by every byte of its
 * `data:` values, JSON and all: an operator padding a long stream with empty deltas (about 250
 * bytes each) could claim some 60 times the tokens it sent, verified.
 */
export function createSseFacts(credentials: string[], asked: Asked) {
  const responses = asked.shape === "output";
  const readChunk = createChunkReader(!responses, responses);
  const generated = createGeneratedCount(asked);
  // A stream some Python clients decode as a charset that is no UTF-8 nor ASCII: no events.
  const undecoded = charsetFails(asked.charset, false);
  let stopped = undecoded;
  let model: string | null = null;
  // The last chunk naming a usage: its value, and whether every client reads its chunk.
  let usage: { value: unknown; everyClient: boolean } | null = null;
  // A Responses API stream's text deltas, and the response it ended with.
  let deltaText = 0;
  let last: Record<string, unknown> | null = null;
  const reader = createSseReader((e) => {
    if (stopped) return;
    const chunk = readChunk(e);
    if (chunk === "end") {
      stopped = true;
      return;
    }
    if (chunk === null) return;
    const { data, everyClient } = chunk;
    if (responses) {
      const type = data.type;
      if (type === "error" || type === "response.failed") {
        stopped = true;
        return;
      }
      // An event some SDKs do not read (see `readByEveryClient`) shows no text to every
      // customer, and a response in it is not every customer's.
      if (typeof type !== "string" || !everyClient) return;
      if (textDeltaEvents.has(type)) deltaText += utf8Bytes(data.delta);
      else if (finalResponseEvents.has(type)) last = asRecord(data.response);
      return;
    }
    // A usage read after a line some SDKs split apart (`oldSplit`) is no usage every client
    // read: the SDKs before April 2024 failed the stream at a chunk holding U+2028 in its text,
    // or read a chunk the others took for a comment. Its count is unknown, the charge bounded
    // by the most a client read (as for an answer its clients decode apart), which is what the
    // later SDKs read. (A Responses stream, above, is read by SDKs that split at CR and LF alone.)
    if (Object.hasOwn(data, "usage") && data.usage !== null) {
      usage = { value: data.usage, everyClient: everyClient && !reader.oldSplit };
    }
    // Text in a chunk some SDKs do not read as one is no answer every customer got.
    if (!everyClient) return;
    if (typeof data.model === "string") model = data.model;
    generated.add(data.choices, "delta");
  }, maxEventBytes);
  return {
    add(chunk: Buffer) {
      if (!stopped) reader.add(chunk);
    },
    /** Whether nothing more of the stream is read: its `[DONE]`, or a chunk that ends it. */
    get done() {
      return stopped || reader.done;
    },
    facts(): BodyFacts {
      if (undecoded) return unreadableBody(asked);
      const named =
        model === null ? null : operatorModel(withoutKeys(model as string, credentials));
      if (responses) return responsesFacts(last, deltaText, credentials, asked);
      const bytes = generated.bytes;
      return {
        model: named,
        usage: boundedUsage(bytes, streamUsage(usage), asked),
        answerBytes: bytes,
        answerToolCalls: generated.toolCalls,
      };
    },
  };
}

/**
 * Model, usage and answer size of a whole SSE stream (see `createSseFacts`), best given as its
 * bytes: a line that is no UTF-8 ends what Python's SDK reads, and decoded text holds U+FFFD in
 * its place.
 */
export function sseFacts(text: string | Buffer, credentials: string[], asked: Asked): BodyFacts {
  const read = createSseFacts(credentials, asked);
  read.add(typeof text === "string" ? Buffer.from(text, "utf8") : text);
  return read.facts();
}

/**
 * A completion of the other kind than its request asked for, as its client reads it (whole, not
 * broken off): an SDK reads the kind it asked for, whatever the content type says. The OpenAI
 * SDKs parse a stream they asked for as events from any body; for a request without `stream`,
 * Node's hands a body not typed JSON over as text and Python's parses it only if it is JSON.
 * - events to a request without `stream`: no JSON, so no completion, an answer of no bytes; a
 *   JSON body typed as events is measured (Python reads it) but its usage is taken as unknown
 *   (Node's client got none), and one too long to hold is bounded by its bytes;
 * - a body not typed as events to a request with `stream`: read as events; one holding none gave
 *   its client no chunk at all, an answer of no bytes.
 * `usageOwed`: whether the charge is bounded by what the client read (`jobs.usage_asked`), as for
 * a JSON answer: true but for events read as a stream that did not ask for its usage.
 */
export function otherKindFacts(
  body: string,
  cut: boolean,
  totalBytes: number,
  credentials: string[],
  asked: Asked & Pick<RequestFacts, "stream" | "usageAsked">,
): { facts: BodyFacts; usageOwed: boolean } {
  const none: BodyFacts = { ...unknownBody, answerBytes: 0, answerToolCalls: 0 };
  if (asked.stream === true) {
    const chunks = sseChunks(sseEvents(body, false), false, asked.shape === "output");
    if (!chunks.some((c) => c.everyClient)) return { facts: none, usageOwed: true };
    return { facts: sseFacts(body, credentials, asked), usageOwed: asked.usageAsked };
  }
  if (cut) return { facts: { ...none, answerBytes: totalBytes }, usageOwed: true };
  return {
    facts: { ...jsonBodyFacts(body, credentials, asked), usage: unknownUsage },
    usageOwed: true,
  };
}

/**
 * The usage a stream's client ends with: the last chunk's that names one. A later `usage` with
 * other numbers replaces an earlier one, as in the SDKs' stream helpers (Node's
 * `finalChatCompletion()`, Python's `get_final_completion()`) and in a loop keeping `chunk.usage`,
 * so a count its client ended without never prices the job; one that is no usage (`"x"`, a
 * number) leaves it unknown. A later `usage: null` is none: every chunk of an OpenAI stream but
 * its usage chunk names `usage: null`, and its client reads the usage where it is set (the API's
 * own advice), so an honest upstream that sends one more chunk after it (as OpenAI's sends all
 * the others) told its client the count all the same: read as unknown, its job was left
 * partially verified. Its numbers are bounded by the answer's bytes either way. A last usage in
 * a chunk some SDKs do not read (an event with a name, `readByEveryClient`) is one customer's
 * count and not another's: unknown.
 */
function streamUsage(last: { value: unknown; everyClient: boolean } | null): Usage | null {
  if (last === null) return null;
  return last.everyClient ? operatorUsage(last.value, false) : unknownUsage;
}

/**
 * Model, usage and answer size of a Responses API stream as its client reads it (see
 * `createSseFacts`): each event's JSON names its kind in `type`; the text comes as the `delta` of
 * text events, and the stream ends with the response whole (`response.completed`, or
 * `response.incomplete` at the request's ceiling), its usage and output inside. The answer is
 * that output, read as a JSON answer's, but its message and reasoning text count no more than
 * the text deltas showed: text only in the last event, or in events a client does not show
 * (another kind, or after one that fails the stream), earns no tokens. `response.failed` or an
 * `error` event ends it with no usage.
 */
function responsesFacts(
  last: Record<string, unknown> | null,
  deltaText: number,
  credentials: string[],
  asked: Asked,
): BodyFacts {
  const model =
    last !== null && typeof last.model === "string"
      ? operatorModel(withoutKeys(last.model, credentials))
      : null;
  // Without the response whole, what the client was shown is the text deltas alone.
  if (last === null) {
    return { model, usage: unknownUsage, answerBytes: deltaText, answerToolCalls: 0 };
  }
  const usage = operatorUsage(last.usage, true);
  const generated = createGeneratedCount(asked);
  generated.addOutput(last.output);
  const text = Math.min(deltaText, generated.textBytes);
  const bytes = generated.bytes;
  return {
    model,
    usage: usage ?? unknownUsage,
    answerBytes: bytes === null ? null : bytes - generated.textBytes + text,
    answerToolCalls: generated.toolCalls,
  };
}
