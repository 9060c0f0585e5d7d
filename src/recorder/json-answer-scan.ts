import {
  audioDataTokens,
  builtInCalls,
  echoedAsideOfHead,
  echoedPrompt,
  offeredKind,
} from "./request-facts.js";
import { createUtf8Line, pythonMaxDepth, pythonMaxDigits } from "./sse-tail.js";

/**
 * Reads a JSON chat or text completion, or a Responses API answer, as its bytes pass, without
 * holding them: what an answer too long to hold (over the proxy's 8 MiB) gave its caller.
 * Counted as `createGeneratedCount` in proxy.ts counts a parsed answer (the text of the choices
 * asked for, or of the `output` items, tool and function calls that name what they call), with
 * the top-level `model`, `usage` and `error` kept, so an
 * operator that pads an answer with a member of its own gains nothing by its length: the bytes
 * of a member no client reads are not counted. Memory stays bounded: only the members that
 * count are followed, a string keeps at most `maxKeptText` bytes of its text, the `usage` value
 * at most `maxUsageValues` values, and nesting deeper than `maxDepth` makes the body unreadable.
 * A member named twice counts by its last value, as `JSON.parse` reads it. What Python's client
 * refuses and `JSON.parse` reads is unreadable too, as `jsonBodyFacts` takes an answer held whole:
 * a byte that is no UTF-8 (`json.loads` of the bytes raises) and an integer of more digits than
 * `pythonMaxDigits` (`ValueError`), in a member nothing reads as much as in one that counts.
 */

/** What the caller asked that decides which text of an answer counts (see proxy.ts `Asked`). */
export interface ScanAsked {
  choices: number;
  audio: boolean;
  /** The format the audio was asked in (see proxy.ts `Asked`). */
  audioFormat?: string;
  /** The prompts a legacy completion's choices echo (see proxy.ts `Asked`). */
  echo?: { prompts: (string | null)[]; choices: number };
  /** Whether the request offered tools: calls count only then (see proxy.ts `Asked`). */
  tools: boolean;
  /** False when the request forbade parallel calls: one call a choice (see proxy.ts `Asked`). */
  parallelCalls?: boolean;
  /** The kinds of tool offered: a Responses call item counts only then (proxy.ts `Asked`). */
  toolKinds?: string[] | null;
  chat?: boolean;
  /**
   * Where the endpoint puts its answer (proxy.ts `AnswerShape`): with `chat` false, `choices`
   * is a legacy completion's, whose client reads a choice's `text` alone.
   */
  shape?: "choices" | "output" | "none";
}

/** What a whole JSON answer gave its caller. */
export type ScannedAnswer =
  /** No JSON text (`JSON.parse` would throw), or one nested deeper than any answer is. */
  | { kind: "unreadable" }
  /** JSON that is no object or array (a client gets no completion from it). */
  | { kind: "scalar" }
  | {
      kind: "object";
      /** Whether the value of the top-level `model` is a string, and its text if so. */
      model: string | null;
      /** The top-level `usage` value; undefined when absent or too large to keep. */
      usage: unknown;
      /** Whether the top-level `error` is truthy (as `if (parsed.error)`). */
      error: boolean;
      /** Whether the answer opened with a UTF-8 byte-order mark (which a JSON reader drops). */
      bom: boolean;
      /** Null where it holds audio of a format that bounds nothing (see `audioDataTokens`). */
      bytes: number | null;
      toolCalls: number;
    };

/** Deeper nesting is no answer: some Python clients' json refuses it (see `pythonMaxDepth`). */
export const maxDepth = pythonMaxDepth;
/** Bytes of a string's text kept (a model's name); its length is counted whole. */
const maxKeptText = 1024;
/** Values of `usage` kept; a larger one is read as absent. */
const maxUsageValues = 1000;
/**
 * Bytes read in one turn of the event loop: a larger chunk (the 8 MiB the proxy held, a socket's
 * 64 KiB) is read a slice a turn, so no request waits on it long (issue 13: under 1 ms a turn;
 * 16 KiB of the costliest shape, small objects, took 0.4 ms of CPU on a loaded host).
 */
export const sliceBytes = 16 * 1024;
/**
 * Bytes waiting to be read at most: past it, the excess is read at once, as it comes (a chunk's
 * worth each time). What waits when the answer ends (an upstream faster than a slice a turn
 * leaves up to this much) is read a slice a turn too, before its result is asked (`drained`).
 */
const maxQueued = 8 * 1024 * 1024;

type Role =
  | "skip"
  | "root"
  | "choices"
  | "choice"
  | "message"
  | "content"
  | "parts"
  | "part"
  | "thinking"
  | "thinkingParts"
  | "thinkingPart"
  | "audio"
  | "call"
  | "tools"
  | "tool"
  | "usage"
  // A Responses API answer: its `output` items, their parts, and what a built-in tool was asked.
  | "outputs"
  | "item"
  | "itemParts"
  | "itemPart"
  | "action"
  | "operation"
  | "strings"
  | "string";

/** A value read whole. Strings carry their UTF-8 length; containers their role's summary. */
interface Value {
  type: "string" | "number" | "true" | "false" | "null" | "object" | "array";
  bytes: number;
  text: string | null;
  summary: Summary | null;
  /** For the `usage` role: the value as `JSON.parse` makes it. */
  built?: unknown;
}

interface Summary {
  bytes: number;
  /** Calls that name what they call, or (a tool call, a function call) whether it names one. */
  calls: number;
  /**
   * A Responses item's parts: the text of those of each type a client reads as text, in
   * `partTypes`' order (an item's `type`, which decides which counts, may come after them),
   * then of its refusal parts.
   */
  kinds?: number[];
  /** Of `calls`, the Responses function and custom tool calls: one group of calls. */
  grouped?: number;
  /** A chat message's content parts: the text of its refusal parts, not in `bytes`. */
  refusal?: number;
  /** A chat message's content parts: the text of its thinking parts, not in `bytes`. */
  thinking?: number;
  /** A chat message's audio: the text of its transcript, not in `bytes`. */
  transcript?: number;
}

/** The part types read as text, by the item holding them (see proxy.ts `partsBytes`). */
const partTypes = ["output_text", "summary_text", "reasoning_text"];

interface Frame {
  kind: "object" | "array";
  role: Role;
  /** Object: the member being read; null for one whose name matters to nothing here. */
  key: string | null;
  /** Object: the last value of each member whose role is not skip. */
  members: Map<string, Value> | null;
  /** Array: elements read so far. */
  count: number;
  /** Array: the summary summed over its elements. */
  sum: Summary;
  /** `usage`: the value being built. */
  built?: Record<string, unknown> | unknown[];
}

const roleOfMember: Partial<Record<Role, Record<string, Role>>> = {
  root: { choices: "choices", output: "outputs", model: "skip", usage: "usage", error: "skip" },
  choice: { message: "message", text: "skip" },
  message: {
    refusal: "skip",
    reasoning_content: "skip",
    reasoning: "skip",
    content: "content",
    audio: "audio",
    function_call: "call",
    tool_calls: "tools",
  },
  part: { type: "skip", text: "skip", refusal: "skip", thinking: "thinking" },
  thinkingPart: { type: "skip", text: "skip" },
  audio: { data: "skip", transcript: "skip" },
  call: { name: "skip", arguments: "skip", input: "skip" },
  tool: { type: "skip", function: "call", custom: "call" },
  item: {
    type: "skip",
    content: "itemParts",
    summary: "itemParts",
    name: "skip",
    arguments: "skip",
    input: "skip",
    server_label: "skip",
    code: "skip",
    queries: "strings",
    action: "action",
    operation: "operation",
  },
  itemPart: { type: "skip", text: "skip", refusal: "skip" },
  action: {
    query: "skip",
    queries: "strings",
    url: "skip",
    pattern: "skip",
    text: "skip",
    keys: "strings",
    command: "strings",
    commands: "strings",
  },
  operation: { path: "skip", diff: "skip" },
};

/** The role of member `key` of an object of `role`; null for a member nothing reads. */
function memberRole(role: Role, key: string): Role | null {
  const members = roleOfMember[role];
  return members !== undefined && Object.hasOwn(members, key) ? (members[key] as Role) : null;
}

/** The role an object or array takes at a member or element of `role`, by its kind. */
function containerRole(role: Role, kind: "object" | "array"): Role {
  switch (role) {
    case "root":
    case "choice":
    case "message":
    case "part":
    case "thinkingPart":
    case "audio":
    case "call":
    case "tool":
    case "item":
    case "itemPart":
    case "action":
    case "operation":
    case "usage":
      return kind === "object" ? role : role === "usage" ? role : "skip";
    case "choices":
    case "parts":
    case "tools":
    case "thinkingParts":
    case "outputs":
    case "itemParts":
    case "strings":
      return kind === "array" ? role : "skip";
    case "content":
      return kind === "array" ? "parts" : "skip";
    case "thinking":
      return kind === "array" ? "thinkingParts" : "skip";
    default:
      return "skip";
  }
}

const space = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const digit = (c: number) => c >= 0x30 && c <= 0x39;
const hexValue = (c: number) =>
  c >= 0x30 && c <= 0x39
    ? c - 0x30
    : c >= 0x61 && c <= 0x66
      ? c - 87
      : c >= 0x41 && c <= 0x46
        ? c - 55
        : -1;
/** The character each one-letter escape stands for (`\\n` is 0x0a); 0 for none. */
const escaped = new Uint8Array(128);
for (const [letter, code] of [
  ['"', 0x22],
  ["\\", 0x5c],
  ["/", 0x2f],
  ["b", 0x08],
  ["f", 0x0c],
  ["n", 0x0a],
  ["r", 0x0d],
  ["t", 0x09],
] as const)
  escaped[letter.charCodeAt(0)] = code;
/** Bytes that end a run of plain string bytes: a quote, a backslash, a control byte. */
const stringStop = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) stringStop[c] = 1;
stringStop[0x22] = 1;
stringStop[0x5c] = 1;

/** The value of four hex digits at `at`; -1 when one is no hex digit. */
const hex4 = (chunk: Buffer, at: number): number => {
  const a = hexValue(chunk[at] as number);
  const b = hexValue(chunk[at + 1] as number);
  const c = hexValue(chunk[at + 2] as number);
  const d = hexValue(chunk[at + 3] as number);
  return a < 0 || b < 0 || c < 0 || d < 0 ? -1 : (a << 12) | (b << 8) | (c << 4) | d;
};

const utf8Length = (code: number) => (code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4);

enum State {
  Value,
  FirstElementOrEnd,
  FirstKeyOrEnd,
  Key,
  Colon,
  AfterValue,
  String,
  Escape,
  Unicode,
  Number,
  Literal,
  End,
  Error,
}

/** Number states: after -, 0, int digits, ., fraction digits, e, e sign, exponent digits. */
enum Num {
  Minus,
  Zero,
  Int,
  Dot,
  Frac,
  E,
  ESign,
  Exp,
}

export interface JsonAnswerScan {
  /**
   * The next bytes of the answer: read at once up to `sliceBytes`, past it a slice a turn of the
   * event loop (in order; the chunk is not to be changed meanwhile).
   */
  add(chunk: Buffer): void;
  /** Bytes added and not read yet. */
  pending(): number;
  /** Resolves once every byte added is read, a slice a turn (at once when none waits). */
  drained(): Promise<void>;
  /** What the whole answer gave its caller; call once every byte was added (reads the rest). */
  result(): ScannedAnswer;
}

export function createJsonAnswerScan(asked: ScanAsked): JsonAnswerScan {
  // A client reads its endpoint's member alone: `choices`, or a Responses answer's `output`.
  const shape = asked.shape ?? "choices";
  const stack: Frame[] = [];
  let state: State = State.Value;
  let root: Value | null = null;
  let started = false;
  let bomBytes = 0;
  // The string being read.
  let stringIsKey = false;
  let stringBytes = 0;
  const kept: number[] = [];
  let keptFull = false;
  /** Bytes of the string's text kept: none for a string nothing reads (its length is unused). */
  let keepLimit = maxKeptText;
  let unicode = 0;
  let unicodeDigits = 0;
  let highSurrogate = -1;
  // The number or literal being read.
  let num: Num = Num.Minus;
  let numberText = "";
  /** Bytes of the number read so far; its text is kept only for a value read (not skipped). */
  let numberLength = 0;
  let numberSkipped = false;
  /** Whether the number being read opened with a minus, which is no digit of it. */
  let numberSigned = false;
  /** Whether every byte read so far is UTF-8, a character cut between two chunks carried. */
  const utf8 = createUtf8Line();
  let literal = "";
  let literalAt = 0;
  let usageValues = 0;
  // Whether a counted audio's format bounds nothing: the answer's size is then unknown.
  let unbounded = false;
  let rootMembers: Map<string, Value> | null = null;
  /** The byte just read ended a number and is to be read again. */
  let again = false;

  const fail = () => {
    state = State.Error;
  };

  const keep = (byte: number) => {
    if (kept.length < keepLimit) kept.push(byte);
    else keptFull = true;
  };
  /** A character written by an escape: its UTF-8 bytes (never a lone surrogate here). */
  const keepCode = (code: number) => {
    stringBytes += utf8Length(code);
    if (kept.length >= keepLimit) {
      keptFull = true;
      return;
    }
    if (code < 0x80) keep(code);
    else if (code < 0x800) {
      keep(0xc0 | (code >> 6));
      keep(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      keep(0xe0 | (code >> 12));
      keep(0x80 | ((code >> 6) & 0x3f));
      keep(0x80 | (code & 0x3f));
    } else {
      keep(0xf0 | (code >> 18));
      keep(0x80 | ((code >> 12) & 0x3f));
      keep(0x80 | ((code >> 6) & 0x3f));
      keep(0x80 | (code & 0x3f));
    }
  };
  /** The code a `\\u` escape wrote, its four hex digits read; surrogates paired as JSON.parse. */
  const unicodeRead = (code: number) => {
    if (code >= 0xdc00 && code <= 0xdfff && highSurrogate >= 0) {
      const pair = 0x10000 + ((highSurrogate - 0xd800) << 10) + (code - 0xdc00);
      highSurrogate = -1;
      keepCode(pair);
      return;
    }
    pendingSurrogate();
    if (code >= 0xd800 && code <= 0xdbff) highSurrogate = code;
    else if (code >= 0xdc00 && code <= 0xdfff) keepCode(0xfffd);
    else keepCode(code);
  };
  const pendingSurrogate = () => {
    // A lone high surrogate: JSON.parse keeps it, UTF-8 writes it as U+FFFD (3 bytes).
    if (highSurrogate >= 0) keepCode(0xfffd);
    highSurrogate = -1;
  };

  /** The role of a value about to start, from the container it is in. */
  const roleHere = (): Role => {
    const top = stack[stack.length - 1];
    if (top === undefined) return "root";
    if (top.role === "skip") return "skip";
    if (top.role === "usage") return "usage";
    if (top.kind === "array") {
      if (top.role === "choices") return top.count < asked.choices ? "choice" : "skip";
      if (top.role === "parts") return "part";
      if (top.role === "thinkingParts") return "thinkingPart";
      if (top.role === "tools") return "tool";
      if (top.role === "outputs") return "item";
      if (top.role === "itemParts") return "itemPart";
      if (top.role === "strings") return "string";
      return "skip";
    }
    if (top.key === null) return "skip";
    if (top.role === "root" && top.key === "choices" && shape !== "choices") return "skip";
    if (top.role === "root" && top.key === "output" && shape !== "output") return "skip";
    const role = memberRole(top.role, top.key);
    if (role === null) return "skip";
    if (top.role === "message" && top.key === "audio" && !asked.audio) return "skip";
    return role;
  };

  /** A value was read whole: hand it to the container it is in. */
  const finished = (value: Value) => {
    const top = stack[stack.length - 1];
    if (top === undefined) {
      root = value;
      state = State.End;
      return;
    }
    state = State.AfterValue;
    if (top.role === "skip") return;
    if (top.role === "usage") {
      if (++usageValues > maxUsageValues) return;
      const built = builtOf(value);
      if (Array.isArray(top.built)) top.built.push(built);
      else if (top.built !== undefined && top.key !== null) top.built[top.key] = built;
      return;
    }
    if (top.kind === "array") {
      const role = roleHere();
      top.count++;
      if (role === "skip") return;
      const s = summaryOf(role, value);
      top.sum.bytes += s.bytes;
      // A tool call counts once by its place; a content part holds no calls.
      top.sum.calls += top.role === "tools" ? (s.calls > 0 ? 1 : 0) : s.calls;
      if (s.grouped !== undefined) top.sum.grouped = (top.sum.grouped ?? 0) + s.grouped;
      if (s.refusal !== undefined) top.sum.refusal = (top.sum.refusal ?? 0) + s.refusal;
      if (s.thinking !== undefined) top.sum.thinking = (top.sum.thinking ?? 0) + s.thinking;
      if (s.kinds !== undefined) {
        top.sum.kinds ??= [0, 0, 0, 0];
        const sum = top.sum.kinds;
        for (const [i, n] of s.kinds.entries()) sum[i] = (sum[i] ?? 0) + n;
      }
      return;
    }
    if (top.key !== null && top.members !== null && memberRole(top.role, top.key) !== null) {
      // The last value of a member named twice is the one read, as JSON.parse reads it.
      top.members.set(top.key, value);
    }
  };

  const builtOf = (value: Value): unknown => {
    if (value.type === "string") return value.text ?? "";
    if (value.type === "number") return Number(value.text);
    if (value.type === "true") return true;
    if (value.type === "false") return false;
    if (value.type === "null") return null;
    return value.built;
  };

  /** What a value read in `role` adds: the UTF-8 bytes of a counted string, a call's name. */
  const summaryOf = (role: Role, value: Value | undefined): Summary => {
    if (value === undefined) return { bytes: 0, calls: 0 };
    if (value.type === "string") {
      if (role === "thinking" || role === "content" || role === "string") {
        return { bytes: value.bytes, calls: 0 };
      }
      return { bytes: 0, calls: 0 };
    }
    return value.summary ?? { bytes: 0, calls: 0 };
  };
  const stringBytesOf = (value: Value | undefined) => (value?.type === "string" ? value.bytes : 0);
  /** The text of a part read as text: a `text` part's or an untyped one's (proxy.ts `textPartBytes`). */
  const textOfPart = (m: Map<string, Value>) => {
    const type = m.get("type");
    const text = type === undefined || (type.type === "string" && type.text === "text");
    return text ? stringBytesOf(m.get("text")) : 0;
  };
  /** The strings of an array (see proxy.ts `stringsBytes`); 0 for anything else. */
  const stringsOf = (value: Value | undefined) =>
    value?.type === "array" ? (value.summary?.bytes ?? 0) : 0;
  /** The text of an item's parts of one type (see proxy.ts `partsBytes`). */
  // Text or refusal parts, the longer (proxy.ts `partsBytes`): refusals are the last kind.
  const partsOf = (value: Value | undefined, type: string) => {
    const kinds = value?.type === "array" ? value.summary?.kinds : undefined;
    return Math.max(kinds?.[partTypes.indexOf(type)] ?? 0, kinds?.[partTypes.length] ?? 0);
  };

  /** A Responses API output item, as proxy.ts `addOutput` reads it. */
  const itemSummary = (m: Map<string, Value>): Summary => {
    const str = (name: string) => stringBytesOf(m.get(name));
    const typeValue = m.get("type");
    const type = typeValue?.type === "string" ? typeValue.text : null;
    if (type === "message") return { bytes: partsOf(m.get("content"), "output_text"), calls: 0 };
    if (type === "reasoning") {
      const summary = partsOf(m.get("summary"), "summary_text");
      return { bytes: summary + partsOf(m.get("content"), "reasoning_text"), calls: 0 };
    }
    if (type === null) return { bytes: 0, calls: 0 };
    const name = m.get("name");
    const named = name?.type === "string" && name.bytes > 0;
    const call = str("name") + Math.max(str("arguments"), str("input"));
    const offered = offeredKind(type, asked.toolKinds);
    if (type === "function_call" || type === "custom_tool_call") {
      const calls = named && offered ? 1 : 0;
      return { bytes: call, calls, grouped: calls };
    }
    if (type === "mcp_call" || type === "mcp_approval_request") {
      return { bytes: str("server_label") + call, calls: named && offered ? 1 : 0 };
    }
    // A built-in call of a tool not offered is none the model made: nothing of it counts.
    if (!builtInCalls.has(type) || !offered) return { bytes: 0, calls: 0 };
    const inner = (member: string) => {
      const value = m.get(member);
      return value?.type === "object" ? (value.summary?.bytes ?? 0) : 0;
    };
    return {
      bytes: str("code") + inner("action") + stringsOf(m.get("queries")) + inner("operation"),
      calls: 1,
    };
  };

  /** The summary of an object or array of `frame`'s role, once it is read whole. */
  const close = (frame: Frame): Summary | null => {
    const m = frame.members;
    if (frame.kind === "array") return frame.sum;
    if (m === null) return null;
    const str = (name: string) => stringBytesOf(m.get(name));
    switch (frame.role) {
      case "thinkingPart":
        return { bytes: textOfPart(m), calls: 0 };
      case "audio": {
        const tokens = audioDataTokens(str("data"), asked.audioFormat, m.get("data")?.text ?? "");
        // Audio of a format that bounds nothing: nor does the answer (see `audioDataTokens`).
        if (tokens === null) unbounded = true;
        // No more of a transcript than its audio can speak (see proxy.ts `answerOf`).
        return {
          bytes: tokens ?? 0,
          calls: 0,
          transcript: Math.min(str("transcript"), tokens ?? 0),
        };
      }
      case "part": {
        // A refusal part is the choice's refusal (see proxy.ts `answerOf`).
        const type = m.get("type");
        if (type?.type === "string" && type.text === "refusal") {
          return { bytes: 0, calls: 0, refusal: str("refusal") };
        }
        // Text or thinking, as its type says (see proxy.ts `textPartBytes`).
        if (type?.type === "string" && type.text === "thinking") {
          return { bytes: 0, calls: 0, thinking: summaryOf("thinking", m.get("thinking")).bytes };
        }
        return { bytes: textOfPart(m), calls: 0 };
      }
      case "call": {
        const name = m.get("name");
        return {
          // Arguments (a function's) or input (a custom tool's): one text, the longer counts.
          bytes: str("name") + Math.max(str("arguments"), str("input")),
          calls: name?.type === "string" && name.bytes > 0 ? 1 : 0,
        };
      }
      case "tool": {
        // A call is read as its type says (see proxy.ts `callRead`); of no type, the longer.
        const type = m.get("type");
        const read =
          type === undefined || type.type === "null"
            ? "either"
            : type.type === "string" && (type.text === "function" || type.text === "custom")
              ? type.text
              : null;
        const none = { bytes: 0, calls: 0 };
        const f =
          read === "function" || read === "either" ? summaryOf("call", m.get("function")) : none;
        const c =
          read === "custom" || read === "either" ? summaryOf("call", m.get("custom")) : none;
        return { bytes: Math.max(f.bytes, c.bytes), calls: f.calls + c.calls > 0 ? 1 : 0 };
      }
      case "itemPart": {
        // Of its type alone (see proxy.ts `partsBytes`): a part of none is text no SDK shows.
        const type = m.get("type");
        const text = str("text");
        const name = type?.type === "string" ? type.text : null;
        if (name === "refusal") return { bytes: 0, calls: 0, kinds: [0, 0, 0, str("refusal")] };
        return { bytes: 0, calls: 0, kinds: partTypes.map((t) => (t === name ? text : 0)) };
      }
      case "action": {
        // As `actionBytes` in answer-facts.ts.
        const search = Math.max(str("query"), stringsOf(m.get("queries")));
        const page = str("url") + str("pattern");
        const typed = str("text") + stringsOf(m.get("keys"));
        const shell = stringsOf(m.get("command")) + stringsOf(m.get("commands"));
        return { bytes: search + page + typed + shell, calls: 0 };
      }
      case "operation":
        return { bytes: str("path") + str("diff"), calls: 0 };
      case "item":
        return itemSummary(m);
      case "message": {
        const audio = asked.audio ? summaryOf("audio", m.get("audio")) : { bytes: 0, calls: 0 };
        const call = summaryOf("call", m.get("function_call"));
        const tools = m.get("tool_calls");
        const content = summaryOf("content", m.get("content"));
        const toolSum =
          tools?.type === "array" ? summaryOf("tools", tools) : { bytes: 0, calls: 0 };
        return {
          bytes:
            // One text under three names (see proxy.ts `reasoningOf`): read once.
            Math.max(str("reasoning_content"), str("reasoning"), content.thinking ?? 0) +
            // A refusal, an answer or its audio's transcript (proxy.ts `answerOf`): the longest.
            Math.max(str("refusal"), content.refusal ?? 0, content.bytes, audio.transcript ?? 0) +
            audio.bytes +
            // One call under its legacy and its tool name (proxy.ts `legacyCallOf`): the longer.
            Math.max(call.bytes, toolSum.bytes),
          calls: toolSum.calls > 0 ? toolSum.calls : call.calls > 0 ? 1 : 0,
        };
      }
      case "choice": {
        // A legacy completion's client reads its `text` alone (see proxy.ts `legacyCompletion`).
        if (asked.chat === false && asked.shape === "choices")
          return {
            bytes: echoedAsideOfHead(
              str("text"),
              m.get("text")?.text ?? "",
              str("text") > maxKeptText,
              // This choice's place: its array's count is raised once it is read.
              echoedPrompt(asked, stack[stack.length - 1]?.count ?? 0),
            ),
            calls: 0,
          };
        const message = m.get("message");
        // A chat client reads the message alone; `text` is a legacy completion's answer.
        const chat = asked.chat === true || message?.type === "object" || message?.type === "array";
        const s = summaryOf("message", message);
        const calls = asked.parallelCalls === false ? Math.min(s.calls, 1) : s.calls;
        return { bytes: (chat ? 0 : str("text")) + s.bytes, calls };
      }
      default:
        return null;
    }
  };

  const open = (kind: "object" | "array") => {
    if (stack.length >= maxDepth) return fail();
    const role = containerRole(roleHere(), kind);
    const frame: Frame = {
      kind,
      role,
      key: null,
      members: kind === "object" && role !== "skip" && role !== "usage" ? new Map() : null,
      count: 0,
      sum: { bytes: 0, calls: 0 },
    };
    if (role === "usage") {
      if (++usageValues > maxUsageValues) frame.role = "skip";
      else frame.built = kind === "array" ? [] : Object.create(null);
    }
    stack.push(frame);
    state = kind === "object" ? State.FirstKeyOrEnd : State.FirstElementOrEnd;
  };

  const shut = (kind: "object" | "array") => {
    const frame = stack.pop();
    if (frame === undefined || frame.kind !== kind) return fail();
    if (frame.role === "root") rootMembers = frame.members;
    const built = frame.built;
    const value: Value = {
      type: kind,
      bytes: 0,
      text: null,
      summary: close(frame),
      built: built !== undefined && !Array.isArray(built) ? { ...built } : built,
    };
    // `usage` frames past the budget were read as skip: the whole usage is then unknown.
    finished(value);
  };

  /** Inside a value nothing reads: its members and elements are checked as JSON only. */
  const skipping = () => stack.length > 0 && (stack[stack.length - 1] as Frame).role === "skip";

  const endString = () => {
    pendingSurrogate();
    if (skipping()) {
      // A member of a value nothing reads: its name is never looked up.
      if (stringIsKey) (stack[stack.length - 1] as Frame).key = null;
      state = stringIsKey ? State.Colon : State.AfterValue;
      return;
    }
    const text = Buffer.from(kept).toString("utf8");
    if (stringIsKey) {
      const top = stack[stack.length - 1] as Frame;
      // A name longer than kept matches none looked for.
      top.key = keptFull ? null : text;
      state = State.Colon;
      return;
    }
    finished({
      type: "string",
      bytes: stringBytes,
      text: keptFull ? `${text}\u2026` : text,
      summary: null,
    });
  };

  const startString = (isKey: boolean) => {
    stringIsKey = isKey;
    stringBytes = 0;
    // The kept text is copied out at the string's end: its array is reused.
    kept.length = 0;
    keepLimit = skipping() ? 0 : maxKeptText;
    keptFull = false;
    highSurrogate = -1;
    state = State.String;
  };

  const endNumber = (): boolean => {
    if (num !== Num.Zero && num !== Num.Int && num !== Num.Frac && num !== Num.Exp) {
      fail();
      return false;
    }
    // An integer (no fraction, no exponent: a float Python reads at any length) past the digits
    // Python's `int()` takes: its client's `json.loads` raises, wherever the number stands.
    if (num === Num.Int && numberLength - (numberSigned ? 1 : 0) > pythonMaxDigits) {
      fail();
      return false;
    }
    if (numberSkipped) state = State.AfterValue;
    else if (numberLength > maxKeptText) {
      // Its text is kept as a string's is: `2000.0…0` (zeros past 64 bytes) is 2000 as JSON.parse
      // reads it. A value read (usage, an error) written longer than that is no server's: the
      // answer is unreadable, an answer of no bytes, rather than one whose usage or error is
      // unknown (`error: 1` and a kilobyte of zeros then `e-1000` is an error to JSON.parse).
      fail();
      return false;
    } else finished({ type: "number", bytes: 0, text: numberText, summary: null });
    return true;
  };

  /** A byte where a value may start; false when it is none. */
  const startValue = (c: number): boolean => {
    if (c === 0x7b) open("object");
    else if (c === 0x5b) open("array");
    else if (c === 0x22) startString(false);
    else if (c === 0x2d || digit(c)) {
      state = State.Number;
      num = c === 0x2d ? Num.Minus : c === 0x30 ? Num.Zero : Num.Int;
      numberSkipped = skipping();
      numberSigned = c === 0x2d;
      numberText = numberSkipped ? "" : String.fromCharCode(c);
      numberLength = 1;
    } else if (c === 0x74 || c === 0x66 || c === 0x6e) {
      literal = c === 0x74 ? "true" : c === 0x66 ? "false" : "null";
      literalAt = 1;
      state = State.Literal;
    } else return false;
    return true;
  };

  const step = (c: number): void => {
    switch (state) {
      case State.Value:
        if (space(c)) return;
        if (!startValue(c)) fail();
        return;
      case State.FirstElementOrEnd:
        if (space(c)) return;
        if (c === 0x5d) {
          shut("array");
          return;
        }
        if (!startValue(c)) fail();
        return;
      case State.FirstKeyOrEnd:
        if (space(c)) return;
        if (c === 0x7d) {
          shut("object");
          return;
        }
        if (c === 0x22) {
          startString(true);
          return;
        }
        fail();
        return;
      case State.Key:
        if (space(c)) return;
        if (c === 0x22) {
          startString(true);
          return;
        }
        fail();
        return;
      case State.Colon:
        if (space(c)) return;
        if (c === 0x3a) {
          state = State.Value;
          return;
        }
        fail();
        return;
      case State.AfterValue: {
        if (space(c)) return;
        const top = stack[stack.length - 1] as Frame;
        if (c === 0x2c) {
          state = top.kind === "object" ? State.Key : State.Value;
          return;
        }
        if (c === 0x7d && top.kind === "object") {
          shut("object");
          return;
        }
        if (c === 0x5d && top.kind === "array") {
          shut("array");
          return;
        }
        fail();
        return;
      }
      case State.String:
        if (c === 0x22) {
          endString();
          return;
        }
        if (c === 0x5c) {
          state = State.Escape;
          return;
        }
        if (c < 0x20) {
          fail();
          return;
        }
        pendingSurrogate();
        stringBytes++;
        keep(c);
        return;
      case State.Escape: {
        if (c === 0x75) {
          state = State.Unicode;
          unicode = 0;
          unicodeDigits = 0;
          return;
        }
        const code = escaped[c] ?? 0;
        if (code === 0) {
          fail();
          return;
        }
        pendingSurrogate();
        keepCode(code);
        state = State.String;
        return;
      }
      case State.Unicode: {
        const h = hexValue(c);
        if (h < 0) {
          fail();
          return;
        }
        unicode = unicode * 16 + h;
        if (++unicodeDigits < 4) return;
        state = State.String;
        unicodeRead(unicode);
        return;
      }
      case State.Number: {
        let next: Num | -1 = -1;
        if (digit(c)) {
          if (num === Num.Minus) next = c === 0x30 ? Num.Zero : Num.Int;
          else if (num === Num.Int || num === Num.Frac || num === Num.Exp) next = num;
          else if (num === Num.Dot) next = Num.Frac;
          else if (num === Num.E || num === Num.ESign) next = Num.Exp;
        } else if (c === 0x2e && (num === Num.Zero || num === Num.Int)) next = Num.Dot;
        else if (
          (c === 0x65 || c === 0x45) &&
          (num === Num.Zero || num === Num.Int || num === Num.Frac)
        )
          next = Num.E;
        else if ((c === 0x2b || c === 0x2d) && num === Num.E) next = Num.ESign;
        if (next !== -1) {
          num = next;
          if (++numberLength <= maxKeptText && !numberSkipped) numberText += String.fromCharCode(c);
          return;
        }
        // The byte after a number is read again, in the state its end left.
        endNumber();
        again = true;
        return;
      }
      case State.Literal:
        if (c !== literal.charCodeAt(literalAt)) {
          fail();
          return;
        }
        if (++literalAt < literal.length) return;
        if (skipping()) state = State.AfterValue;
        else finished({ type: literal as Value["type"], bytes: 0, text: null, summary: null });
        return;
      case State.End:
        if (!space(c)) fail();
        return;
      case State.Error:
        return;
    }
  };

  /**
   * Reads string bytes from `at` in a run: plain bytes up to the next quote, backslash or control
   * byte, and escapes whole within the chunk (one cut across chunks is read byte by byte by
   * `step`). Returns where the run stopped: the chunk's end, or a byte for `step`.
   */
  const readString = (chunk: Buffer, at: number): number => {
    const length = chunk.length;
    let i = at;
    while (i < length) {
      let j = i;
      while (j < length && stringStop[chunk[j] as number] === 0) j++;
      if (j > i) {
        stringBytes += j - i;
        const room = keepLimit - kept.length;
        if (room > 0)
          for (let k = i, end = Math.min(j, i + room); k < end; k++) kept.push(chunk[k] as number);
        if (j - i > room) keptFull = true;
        i = j;
      }
      if (i === length || chunk[i] !== 0x5c || highSurrogate >= 0) return i;
      // An escape: read here when all of it is in this chunk.
      if (i + 1 >= length) return i;
      const letter = chunk[i + 1] as number;
      if (letter !== 0x75) {
        const code = escaped[letter] ?? 0;
        if (code === 0) return i;
        keepCode(code);
        i += 2;
        continue;
      }
      if (i + 5 >= length) return i;
      const code = hex4(chunk, i + 2);
      if (code < 0) return i;
      unicodeRead(code);
      i += 6;
      if (highSurrogate >= 0) {
        // A high surrogate pairs with a low one written right after it.
        if (i + 5 >= length || chunk[i] !== 0x5c || chunk[i + 1] !== 0x75) return i;
        const low = hex4(chunk, i + 2);
        if (low < 0xdc00 || low > 0xdfff) return i;
        unicodeRead(low);
        i += 6;
      }
    }
    return i;
  };

  /** Reads number bytes from `at`; at the first byte that cannot go on it, the number ends. */
  const readNumber = (chunk: Buffer, at: number): number => {
    const length = chunk.length;
    let n = num;
    let i = at;
    for (; i < length; i++) {
      const c = chunk[i] as number;
      if (c >= 0x30 && c <= 0x39) {
        if (n === Num.Minus) n = c === 0x30 ? Num.Zero : Num.Int;
        else if (n === Num.Dot) n = Num.Frac;
        else if (n === Num.E || n === Num.ESign) n = Num.Exp;
        else if (n === Num.Zero) break;
      } else if (c === 0x2e) {
        if (n === Num.Zero || n === Num.Int) n = Num.Dot;
        else break;
      } else if (c === 0x65 || c === 0x45) {
        if (n === Num.Zero || n === Num.Int || n === Num.Frac) n = Num.E;
        else break;
      } else if (c === 0x2b || c === 0x2d) {
        if (n === Num.E) n = Num.ESign;
        else break;
      } else break;
    }
    num = n;
    if (!numberSkipped && numberLength < maxKeptText && i > at) {
      numberText += chunk.toString("latin1", at, Math.min(i, at + maxKeptText - numberLength));
    }
    numberLength += i - at;
    // The byte after a number is read in the state its end left.
    if (i < length) endNumber();
    return i;
  };

  /** Chunks added, read a slice a turn; `queued` counts their bytes not read yet. */
  const queue: Buffer[] = [];
  let queued = 0;
  let pumping = false;
  const readQueued = (budget: number) => {
    let left = budget;
    while (queue.length > 0 && left > 0 && state !== State.Error) {
      const head = queue[0] as Buffer;
      if (head.length <= left) {
        queue.shift();
        queued -= head.length;
        left -= head.length;
        read(head);
      } else {
        queue[0] = head.subarray(left);
        queued -= left;
        read(head.subarray(0, left));
        left = 0;
      }
    }
    if (state === State.Error) {
      // Unreadable already: the rest cannot change that.
      queue.length = 0;
      queued = 0;
    }
  };
  /** Waiting for every byte added to be read. */
  const drainWaiters: (() => void)[] = [];
  const pump = () => {
    readQueued(sliceBytes);
    if (queued > 0) setImmediate(pump);
    else {
      pumping = false;
      for (const resolve of drainWaiters.splice(0)) resolve();
    }
  };

  const read = (chunk: Buffer) => {
    utf8.add(chunk);
    if (utf8.failed) return fail();
    let i = 0;
    if (!started) {
      // A client's JSON reader drops a UTF-8 byte-order mark before the text.
      const bom = [0xef, 0xbb, 0xbf];
      while (bomBytes < 3 && i < chunk.length && chunk[i] === bom[bomBytes]) {
        i++;
        bomBytes++;
      }
      if (bomBytes === 3 || i < chunk.length) {
        if (bomBytes > 0 && bomBytes < 3) fail();
        started = true;
      }
    }
    const length = chunk.length;
    while (i < length && state !== State.Error) {
      if (state === State.String && highSurrogate < 0) {
        i = readString(chunk, i);
        if (i === length) break;
      } else if (state === State.Number) {
        i = readNumber(chunk, i);
        if (i === length) break;
      } else if (state === State.AfterValue) {
        // Between the elements of a long array: the comma and the next value's start.
        const c = chunk[i] as number;
        if (c === 0x2c) {
          state = (stack[stack.length - 1] as Frame).kind === "object" ? State.Key : State.Value;
          i++;
          if (i === length) break;
          if (state === State.Value && startValue(chunk[i] as number)) i++;
          continue;
        }
      } else if (state === State.Colon) {
        // After a member's name: the colon and its value's start.
        if (chunk[i] === 0x3a) {
          state = State.Value;
          i++;
          if (i === length) break;
          if (startValue(chunk[i] as number)) i++;
          continue;
        }
      } else if (state === State.Literal) {
        // The rest of `true`, `false` or `null`, as far as this chunk holds it.
        while (i < length && literalAt < literal.length) {
          if (chunk[i] !== literal.charCodeAt(literalAt)) {
            fail();
            return;
          }
          literalAt++;
          i++;
        }
        if (literalAt < literal.length) break;
        if (skipping()) state = State.AfterValue;
        else finished({ type: literal as Value["type"], bytes: 0, text: null, summary: null });
        continue;
      }
      again = false;
      step(chunk[i] as number);
      if (!again) i++;
    }
  };

  return {
    add(chunk) {
      if (queued === 0 && chunk.length <= sliceBytes) {
        read(chunk);
        return;
      }
      if (state === State.Error || chunk.length === 0) return;
      queue.push(chunk);
      queued += chunk.length;
      // Reading slower than the answer comes: the excess is read now, as it came.
      if (queued > maxQueued) readQueued(queued - maxQueued);
      if (queued > 0 && !pumping) {
        pumping = true;
        setImmediate(pump);
      }
    },
    pending: () => queued,
    drained() {
      if (queued === 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        drainWaiters.push(resolve);
      });
    },
    result() {
      readQueued(queued);
      if (state === State.Number) endNumber();
      if (state !== State.End || root === null || !utf8.valid) return { kind: "unreadable" };
      const value = root as Value;
      if (value.type === "array") {
        return {
          kind: "object",
          model: null,
          usage: undefined,
          error: false,
          bom: bomBytes === 3,
          bytes: 0,
          toolCalls: 0,
        };
      }
      if (value.type !== "object") return { kind: "scalar" };
      const m = rootMembers ?? new Map<string, Value>();
      const answer = m.get(shape === "output" ? "output" : "choices");
      const sum =
        shape !== "none" && answer?.type === "array"
          ? (answer.summary ?? { bytes: 0, calls: 0 })
          : null;
      // Under parallel_tool_calls false a Responses answer's function and custom tool calls are
      // one group, and each call of the API's own tools one of its own (proxy.ts `toolCalls`).
      const grouped = sum?.grouped ?? 0;
      const calls =
        asked.parallelCalls === false && grouped > 0
          ? (sum?.calls ?? 0) - grouped + 1
          : (sum?.calls ?? 0);
      const model = m.get("model");
      const usage = m.get("usage");
      const error = m.get("error");
      return {
        kind: "object",
        model: model?.type === "string" ? model.text : null,
        bom: bomBytes === 3,
        usage: usage === undefined || usageValues > maxUsageValues ? undefined : builtOf(usage),
        error:
          error !== undefined &&
          (error.type === "object" ||
            error.type === "array" ||
            error.type === "true" ||
            (error.type === "string" && error.bytes > 0) ||
            (error.type === "number" &&
              Number(error.text) !== 0 &&
              !Number.isNaN(Number(error.text)))),
        bytes: unbounded ? null : (sum?.bytes ?? 0),
        toolCalls: asked.tools ? calls : 0,
      };
    },
  };
}
