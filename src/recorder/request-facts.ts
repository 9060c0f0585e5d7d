/**
 * What a chat request asks, read the same way by the proxy and the fetch wrapper: the model
 * that prices the job and the completion-token ceiling that bounds it. The response never
 * fills these in: the operator writes the response. No dependency beyond the platform (and
 * printable-text and without-key, which have none), since the fetch wrapper is imported alone
 * by backends.
 */

import { fitText } from "../printable-text.js";
import { withoutAnyKey } from "./without-key.js";

/** The longest model name a receipt holds, as ingest counts it (UTF-16 code units). */
export const maxModelLength = 200;

/** The most tokens a receipt may claim (far beyond any model's context). */
export const maxTokenCount = 100_000_000;

/** Largest body the fetch wrapper reads for these facts: the proxy's default forwarding limit. */
export const maxRequestFactsBytes = 10 * 1024 * 1024;

export interface RequestFacts {
  /** The model asked for; null when the body names none or is not a JSON object. */
  model: string | null;
  /** The completion-token ceiling asked for; null when the request set none. */
  maxTokens: number | null;
  /**
   * Whether the request asked for a stream: `stream: true`, or a value vLLM and SGLang read as
   * true (`"true"`, 1), which an SDK reads as a stream too; null when the body was not read.
   */
  stream: boolean | null;
  /**
   * Whether `stream` is neither a boolean nor null (`"true"`, `1`): OpenAI refuses it, vLLM and
   * SGLang read `"true"` as true, and an SDK reads a truthy one as a stream. One they read as
   * false (`"false"`) may be answered either way: the answer is read as the kind it is.
   */
  streamUnsure?: boolean;
  /**
   * The choices asked for (`n`, 1 when the request names none or no count the API takes; for
   * each of a legacy completion's prompts, at most `maxChoices` in all): a choice beyond them is
   * no answer the caller asked for or reads.
   */
  choices: number;
  /** Whether the request asked for audio (`modalities` naming it, or `audio` options). */
  audio: boolean;
  /** The format its audio was asked in (`audio.format`: `pcm16`, `wav`, `mp3`...), if named. */
  audioFormat?: string;
  /**
   * The prompts a legacy completion asked to `echo`, as text (null: token ids), `choices` (its
   * `n`) answering each in turn: each choice's `text` repeats its prompt before what the model
   * wrote, none of it output tokens. Absent without `echo`.
   */
  echo?: { prompts: (string | null)[]; choices: number };
  /**
   * Whether the request offered the model tools to call (`tools`, the older `functions`, or a
   * stored prompt, which may carry tools): a model offered none calls none, so a call in the
   * answer earns no allowance of its own.
   */
  tools: boolean;
  /**
   * The kinds (`type`) of the tools a Responses API request offered, read to know which call
   * items its answer may hold (`function` for chat's `functions`); null when any tool may have
   * been offered (a stored prompt's, or a body not read). Empty when the request offers none.
   */
  toolKinds: string[] | null;
  /**
   * Whether a choice may hold more than one call: false when the request set
   * `parallel_tool_calls: false`, the model then calling one tool at a time, so a choice's
   * further calls earn no allowance of their own.
   */
  parallelCalls: boolean;
  /**
   * Whether a Responses API request asked to run in the background (`background: true`): its
   * answer is then a queued response, the output fetched later, so this one holds none of it.
   */
  background: boolean;
  /**
   * Whether a streamed request asked for its usage (`stream_options.include_usage: true`):
   * an OpenAI-compatible stream then sends it in its last chunk before `[DONE]`. A Responses
   * API stream always sends it, in its last event's response.
   */
  usageAsked: boolean;
  /**
   * Whether the request sent a `prediction` (predicted outputs, not null): only such a request
   * has rejected prediction tokens. Null when the body was not read.
   */
  prediction: boolean | null;
}

/** The API's most choices per request: `n` above it is refused. */
export const maxChoices = 128;

/**
 * A body not read (no JSON object to the proxy, or too large for the fetch wrapper) may have
 * asked for any number of choices and for audio: an answer's every choice and its audio count,
 * as an honest answer to what it asked must not be read as holding less than it does.
 */
export const noRequestFacts: RequestFacts = {
  model: null,
  maxTokens: null,
  stream: null,
  choices: maxChoices,
  audio: true,
  tools: true,
  toolKinds: null,
  parallelCalls: true,
  background: false,
  usageAsked: false,
  prediction: null,
};

/**
 * A request's ceiling: `max_completion_tokens` ahead of the older `max_tokens`, the order the
 * API honours them in, as a positive integer, written as a number or as the digits of one (an
 * API validating with coercion takes `"4000"` as 4000). Anything else sets no ceiling, as the
 * API would refuse it or ignore it. No upper bound but the exact integers: the lock follows
 * the ceiling however large, and read as none it would be judged against the default.
 * A Responses API request (`shape` "output") sets its ceiling as `max_output_tokens`, which
 * its API honours ahead of the others: read as none, an answer of 1,000 output tokens to a
 * request capped at 100 was charged and verified, and one capped at 5,000 was judged against
 * the default of 2,000 and failed.
 */
export function ceilingOf(
  body: Record<string, unknown>,
  shape: AnswerShape = "choices",
): number | null {
  const chat = body.max_completion_tokens ?? body.max_tokens;
  const max = shape === "output" ? (body.max_output_tokens ?? chat) : chat;
  const value = typeof max === "string" && /^\s*\d{1,16}\s*$/.test(max) ? Number(max) : max;
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 1 ? value : null;
}

/**
 * The prompts of a legacy completion: `prompt` as an array of texts or of token id lists is as
 * many prompts, each answered with `n` choices (an array of token ids is one prompt). Read as one,
 * an honest answer to two prompts was bounded by the first's text alone and failed its usage.
 */
function promptsOf(body: Record<string, unknown>): unknown[] {
  const prompt = body.prompt;
  if (body.messages !== undefined || !Array.isArray(prompt) || prompt.length === 0) return [prompt];
  return prompt.every((p) => typeof p === "string" || Array.isArray(p)) ? prompt : [prompt];
}

/** `n` read as the ceiling is: a positive integer, as a number or as its digits. */
function choicesOf(n: unknown): number {
  const value = typeof n === "string" && /^\s*\d{1,3}\s*$/.test(n) ? Number(n) : n;
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 1
    ? Math.min(value, maxChoices)
    : 1;
}

/**
 * A Responses API request naming a stored prompt (`prompt: {id: "pmpt_..."}`): the prompt is kept
 * by the API, tools and all, so the body need offer none for its model to call them. Only an
 * object naming an id: a legacy completion's `prompt` is its text (a string or an array).
 */
function storedPrompt(prompt: unknown): boolean {
  if (typeof prompt !== "object" || prompt === null || Array.isArray(prompt)) return false;
  const id = (prompt as Record<string, unknown>).id;
  return typeof id === "string" && id.trim().length > 0;
}

/** A `tool_choice` (or `function_call`) that forbids every call: `"none"`. */
function choosesNone(choice: unknown): boolean {
  if (typeof choice === "string") return choice.trim().toLowerCase() === "none";
  return (
    typeof choice === "object" &&
    choice !== null &&
    (choice as Record<string, unknown>).type === "none"
  );
}

/**
 * Whether the request lets its model call a tool: tools offered (`tools` or a stored prompt)
 * without `tool_choice: "none"`, or `functions` without `function_call: "none"`. A model told
 * to call none calls none, so calls an answer holds then earn no format's allowance (120 calls
 * of `a()` lifted the bound by 1,920 tokens).
 */
function offersTools(body: Record<string, unknown>): boolean {
  const tools = (Array.isArray(body.tools) && body.tools.length > 0) || storedPrompt(body.prompt);
  const functions = Array.isArray(body.functions) && body.functions.length > 0;
  return (
    (tools && !choosesNone(body.tool_choice)) || (functions && !choosesNone(body.function_call))
  );
}

/**
 * The kinds of tools a request lets its model call (see `RequestFacts.toolKinds`): none when it
 * lets it call no tool, any (null) under a stored prompt, else the `type` of each tool offered.
 */
function toolKindsOf(body: Record<string, unknown>): string[] | null {
  if (!offersTools(body)) return [];
  if (storedPrompt(body.prompt) && !choosesNone(body.tool_choice)) return null;
  const kinds = new Set<string>();
  if (Array.isArray(body.tools) && !choosesNone(body.tool_choice)) {
    for (const tool of body.tools) {
      const type =
        typeof tool === "object" && tool !== null ? (tool as { type?: unknown }).type : null;
      if (typeof type === "string") kinds.add(type);
    }
  }
  const functions = Array.isArray(body.functions) && body.functions.length > 0;
  if (functions && !choosesNone(body.function_call)) kinds.add("function");
  return [...kinds];
}

/** The longest request path a receipt keeps (`jobs.request_path`). */
export const maxRequestPathLength = 200;

/**
 * A request path as a receipt keeps it (`jobs.request_path`): visible ASCII from a `/`, its query
 * left out (it may carry the caller's key), at most `maxRequestPathLength`. Null for anything
 * else: the receipt goes without it.
 */
export function receiptPathOf(path: string): string | null {
  const query = path.search(/[?#]/);
  // A Decentral key a client joined into its base URL is never stored (the caller's own
  // credentials are cut before this, by who calls it).
  const bare = withoutAnyKey(query < 0 ? path : path.slice(0, query));
  return /^\/[\x21-\x7e]*$/.test(bare) && bare.length <= maxRequestPathLength ? bare : null;
}

/** An HTTP method as a receipt keeps it: letters alone, upper-cased; null for anything else. */
export function receiptMethodOf(method: string): string | null {
  return /^[A-Za-z]{1,16}$/.test(method) ? method.toUpperCase() : null;
}

/** A request path (its query left out) that asks for a chat completion. */
export const chatPath = /\/chat\/completions\/?$/i;
/**
 * A request path asking for a completion, chat or legacy: its answer's text is its `choices`.
 * Another endpoint's (embeddings: numbers, read slowest) holds no choices.
 */
export const completionPath = /\/completions\/?$/i;
/** A request path asking the Responses API, whose answer is its `output` items. */
export const responsesPath = /\/responses\/?$/i;

/**
 * Where the answer of the endpoint a path asks is, as its client reads it: a completion's
 * `choices`, a Responses API answer's `output`, or nowhere an answer's text is read (embeddings,
 * say). A client reads its own endpoint's member alone: `choices` in an answer to a Responses or
 * embeddings request is padding nobody reads, and counted, lifted the bound of its usage by the
 * bytes the operator added (2,000 completion tokens charged for `Hi.`, the job verified).
 */
export type AnswerShape = "choices" | "output" | "none";

export function answerShapeOf(path: string): AnswerShape {
  if (completionPath.test(path)) return "choices";
  return responsesPath.test(path) ? "output" : "none";
}

/**
 * The facts of a parsed request body, sent to the endpoint whose answer has `shape` (see
 * `answerShapeOf`; a completion's when not known).
 */
/**
 * A flag as a validator with coercion reads it true (pydantic's lax mode, vLLM's and SGLang's):
 * `true`, 1, or a string `1`, `t`, `y`, `yes`, `on`, `true` in any case.
 */
function laxTrue(value: unknown): boolean {
  if (value === true || value === 1) return true;
  return typeof value === "string" && /^(?:1|t|y|yes|on|true)$/i.test(value);
}

/** `audioFormat` of a request's `audio` options, where they name a format. */
function audioFormatOf(audio: unknown): { audioFormat?: string } {
  const format =
    typeof audio === "object" && audio !== null ? (audio as { format?: unknown }).format : null;
  return typeof format === "string" ? { audioFormat: format } : {};
}

/** `echo` of a request: with `echo` (as an upstream validating with coercion reads it). */
function echoOf(body: Record<string, unknown>): Pick<RequestFacts, "echo"> {
  if (!laxTrue(body.echo)) return {};
  const prompts = promptsOf(body).map((p) => (typeof p === "string" ? p : null));
  return { echo: { prompts, choices: choicesOf(body.n) } };
}

/** The prompt the choice at `index` echoes, where it is text. */
export function echoedPrompt(asked: Pick<RequestFacts, "echo">, index: number): string | undefined {
  const echo = asked.echo;
  return echo === undefined
    ? undefined
    : (echo.prompts[Math.floor(index / echo.choices)] ?? undefined);
}

/** A legacy completion choice's `text` read so far, piece by piece (a stream's deltas). */
export interface EchoedText {
  /** The prompt it echoes (see `echoedPrompt`). */
  prompt: string | undefined;
  bytes: number;
  /** The characters of the prompt its text has opened with so far. */
  matched: number;
  /** False once a character of its text differs from the prompt's at its place. */
  opens: boolean;
}

export const noEchoedText = (prompt: string | undefined): EchoedText => ({
  prompt,
  bytes: 0,
  matched: 0,
  opens: true,
});

/** `read` with the next piece of its choice's `text` (see `echoedAside`). */
export function readEchoed(read: EchoedText, text: unknown): void {
  if (typeof text !== "string") return;
  read.bytes += Buffer.byteLength(text, "utf8");
  const prompt = read.prompt;
  if (prompt === undefined || !read.opens || read.matched >= prompt.length) return;
  const n = Math.min(text.length, prompt.length - read.matched);
  read.opens = prompt.startsWith(text.slice(0, n), read.matched);
  read.matched += n;
}

/**
 * The bytes of a legacy completion choice's `text` the model wrote: with `echo`, the text
 * repeats the prompt before them, and counted, a prompt of 3,000 bytes lifted the bound of the
 * usage of `Hi.` by 3,000 tokens, verified. The prompt is set aside only where the text opens
 * with it: an upstream that does not echo (vLLM asked `return_token_ids` too, a server without
 * `echo`) answers what the model wrote alone, and that less the prompt failed an honest charge.
 */
export function echoedAside(read: EchoedText): number {
  const prompt = read.prompt;
  const echoed = prompt !== undefined && read.opens && read.matched >= prompt.length;
  return echoed ? read.bytes - Buffer.byteLength(prompt, "utf8") : read.bytes;
}

export function echoedAsideOfHead(
  bytes: number,
  head: string,
  cut: boolean,
  prompt: string | undefined,
): number {
  if (prompt === undefined) return bytes;
  const promptBytes = Buffer.byteLength(prompt, "utf8");
  if (bytes < promptBytes) return bytes;
  // Cut: the mark of the cut, and a character cut short (read as U+FFFD), are not the text's.
  const start = cut ? head.slice(0, -1).replace(/\uFFFD+$/, "") : head;
  const opens = start.startsWith(prompt) || (cut && start !== "" && prompt.startsWith(start));
  return opens ? bytes - promptBytes : bytes;
}

/**
 * The most audio tokens a second of an answer's audio stands for: no audio model emits 100
 * tokens a second of its audio (OpenAI's about 20).
 */
export const audioTokensPerSecond = 100;

/**
 * The fewest bytes a second of audio takes in each format the API names, where a format has a
 * floor: raw `pcm16` is 16-bit samples at 8 kHz at the least, the lowest rate audio is sampled at
 * (OpenAI's is 24 kHz); `mp3` at its lowest bitrate, 8 kbit/s (MPEG-2.5 Layer III); `opus` at
 * 6 kbit/s, the least libopus codes at; `aac` at 6 kbit/s, the least of its extended profile
 * (xHE-AAC). `flac` has none: lossless, it codes silence in a few bytes a second, and the
 * seconds its STREAMINFO block gives are the operator's to write. A `wav` is as its header says
 * (see `wavBytesPerSecond`).
 */
const leastBytesPerSecond: Readonly<Record<string, number>> = {
  pcm16: 16_000,
  mp3: 1_000,
  opus: 750,
  aac: 750,
};

/** The lowest rate audio is sampled at (see `leastBytesPerSecond`). */
const leastSampleRate = 8_000;

/** Base64 characters of an answer's audio kept to read a `wav` header (48 bytes). */
export const audioHeadChars = 64;

/**
 * The bytes a second of a `wav` answer's audio, from the start of its base64 `data`: a canonical
 * header (`RIFF`, `WAVE`, its `fmt ` chunk first) of integer or float samples at 8 kHz or more
 * gives its sample rate times its channels times its sample bytes; any other (no header, a header
 * of a coded format, a rate under 8 kHz) is read as raw `pcm16`, the least a header can say of
 * samples (8-bit samples at 8 kHz, half of it, only where the header says so).
 */
function wavBytesPerSecond(head: string): number {
  const b = Buffer.from(head.slice(0, audioHeadChars), "base64");
  const pcm16 = leastBytesPerSecond.pcm16 as number;
  if (b.length < 36 || b.toString("latin1", 0, 4) !== "RIFF") return pcm16;
  if (b.toString("latin1", 8, 16) !== "WAVEfmt " || b.readUInt32LE(16) < 16) return pcm16;
  const coding = b.readUInt16LE(20);
  const channels = b.readUInt16LE(22);
  const rate = b.readUInt32LE(24);
  const bits = b.readUInt16LE(34);
  const samples = coding === 1 || coding === 3 || coding === 0xfffe;
  if (!samples || channels < 1 || rate < leastSampleRate || bits < 8 || bits % 8 !== 0) {
    return pcm16;
  }
  return (rate * channels * bits) / 8;
}

/**
 * The most audio tokens an answer's audio `data` can stand for: its base64 characters decode to
 * three bytes in four, and a format with a floor of bytes a second (`leastBytesPerSecond`, a
 * `wav` by its header, `head` the start of its data) holds at most `audioTokensPerSecond` tokens
 * a second of them. A format not named or of no known floor bounds nothing: null, the answer's
 * size unknown, as an unknown codec may hold a second in fewer bytes than any floor here, and a
 * token a byte verified 48,000 tokens for 48,000 bytes of a format nobody can measure. So does
 * `flac`: lossless, it holds a second of silence in a few bytes, and the only other word on its
 * length is its STREAMINFO block, which the operator writes (claiming 2^36 samples, 48,000 bytes
 * of it verified 48,000 tokens).
 * Counted as characters, 1 MiB of audio data lifted the bound of the usage by 1.4 million
 * tokens; counted as bytes, a second of `wav` (48,000 bytes, some 20 tokens) verified 48,000.
 */
export function audioDataTokens(
  base64Chars: number,
  format: string | undefined,
  head = "",
): number | null {
  const bytes = Math.floor((base64Chars * 3) / 4);
  if (bytes === 0) return 0;
  const seconds = (perSecond: number) => Math.ceil((bytes * audioTokensPerSecond) / perSecond);
  if (format === "wav") return seconds(wavBytesPerSecond(head));
  const least =
    format !== undefined && Object.hasOwn(leastBytesPerSecond, format)
      ? leastBytesPerSecond[format]
      : undefined;
  return least === undefined ? null : seconds(least);
}

export function requestFactsOf(parsed: unknown, shape: AnswerShape = "choices"): RequestFacts {
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return noRequestFacts;
  }
  const body = parsed as Record<string, unknown>;
  const unsure =
    body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean";
  // A stream as the upstream that streamed it read the flag: a validator with coercion reads
  // `"true"` as true, and a stream it sends is then one it was asked for.
  const streamed = body.stream === true || (unsure && laxTrue(body.stream));
  return {
    // Already sent (the job is made and charged): a name ingest would refuse (a control
    // character, which PostgreSQL cannot even hold, or beyond 200 characters) is kept fit to
    // store rather than costing the receipt. Cleaned, it names no priced model.
    model: typeof body.model === "string" ? fitText(body.model, maxModelLength) : null,
    maxTokens: ceilingOf(body, shape),
    stream: streamed,
    streamUnsure: unsure,
    choices: Math.min(choicesOf(body.n) * promptsOf(body).length, maxChoices),
    audio:
      (Array.isArray(body.modalities) && body.modalities.includes("audio")) ||
      (typeof body.audio === "object" && body.audio !== null),
    ...audioFormatOf(body.audio),
    ...echoOf(body),
    tools: offersTools(body),
    toolKinds: toolKindsOf(body),
    parallelCalls: body.parallel_tool_calls !== false,
    background: body.background === true,
    // A Responses API stream always ends with its response, usage and all.
    // `include_usage: "true"` is asked as well: an upstream validating with coercion (vLLM)
    // reads it as true and sends the usage, so a stream without it had it withheld (read as
    // not asked, its charge was bounded by the lock alone); a strict one refuses the request.
    usageAsked:
      (streamed && shape === "output") ||
      (streamed &&
        typeof body.stream_options === "object" &&
        body.stream_options !== null &&
        laxTrue((body.stream_options as Record<string, unknown>).include_usage)),
    prediction: body.prediction !== undefined && body.prediction !== null,
  };
}

/**
 * The facts of a request body, whatever content type it was sent with (`curl -d` says
 * form-urlencoded, `fetch` with a string says text/plain): the upstream may read it as JSON
 * anyway. A body that is not a JSON object gives no facts; one that does not start like one is
 * not decoded or parsed at all, so an upload costs nothing here. Callers bound its size.
 */
export function requestFactsOfText(text: string, shape: AnswerShape = "choices"): RequestFacts {
  // A byte-order mark before the JSON: Python's json.loads of the bytes and Node's TextDecoder
  // drop it, so an upstream reads the body as JSON all the same.
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (i < text.length && isJsonSpace(text.charCodeAt(i))) i++;
  return text.charCodeAt(i) === openBrace ? parsed(text.slice(i), shape) : noRequestFacts;
}

/** `requestFactsOfText` of a byte body (UTF-8), checked before it is decoded. */
export function requestFactsOfBytes(
  bytes: Uint8Array,
  shape: AnswerShape = "choices",
): RequestFacts {
  let i = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  while (i < bytes.length && isJsonSpace(bytes[i] as number)) i++;
  // The decoder drops the byte-order mark.
  return bytes[i] === openBrace ? parsed(utf8.decode(bytes), shape) : noRequestFacts;
}

const openBrace = 0x7b;
const utf8 = new TextDecoder();

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function parsed(text: string, shape: AnswerShape): RequestFacts {
  try {
    return requestFactsOf(JSON.parse(text), shape);
  } catch {
    return noRequestFacts;
  }
}

/** Calls of the Responses API's own tools (no name: the tool is the item's type). */
export const builtInCalls = new Set([
  "web_search_call",
  "file_search_call",
  "code_interpreter_call",
  "computer_call",
  "local_shell_call",
  "shell_call",
  "apply_patch_call",
  "image_generation_call",
]);

/**
 * Whether a Responses API call item is of a tool the request offered (`toolKinds`; absent or
 * null: any). A model calls only a tool it was offered: a `web_search_call` where none was, or a
 * `function_call` where only web search was, earned 16 tokens apiece, each item a group of its
 * own, so 120 empty ones lifted the bound of `Hi.` by 1,920 tokens, verified.
 */
export function offeredKind(itemType: string, kinds: string[] | null | undefined): boolean {
  if (kinds === null || kinds === undefined) return true;
  const kind = itemType.replace(/_call$/, "");
  // An MCP server's call waiting for the caller's approval is of the `mcp` tool as its call is.
  const tool = kind === "custom_tool" ? "custom" : kind === "mcp_approval_request" ? "mcp" : kind;
  // Dated and preview names of a tool (`web_search_preview`, `computer_use_preview`).
  return kinds.some((k) => k === tool || k.startsWith(`${tool}_`));
}
