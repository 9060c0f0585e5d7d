import { describe, expect, it } from "vitest";
import { type Asked, jsonBodyFacts, scannedBodyFacts } from "../src/recorder/answer-facts.js";
import { createJsonAnswerScan, maxDepth, sliceBytes } from "../src/recorder/json-answer-scan.js";
import { flac, wav } from "./support/wav.js";

/**
 * An answer over 8 MiB is read as it passes, never held: what it gave its caller must be what
 * `JSON.parse` reads of the same bytes, so the bound of a long answer is the one a short answer
 * gets. Each body below is read both ways, fed in pieces cut at random places.
 */

/** A small deterministic generator, so a failing cut can be run again. */
function pieces(bytes: Buffer, seed: number): Buffer[] {
  let x = seed;
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const size = 1 + (x % 7 === 0 ? 1 + (x % 300) : x % 5);
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

function scanned(body: string | Buffer, asked: Asked, seed = 1) {
  const scan = createJsonAnswerScan(asked);
  for (const piece of pieces(Buffer.from(body), seed)) scan.add(piece);
  return scannedBodyFacts(scan, ["sk-secret"], asked);
}

const parsed = (body: string | Buffer, asked: Asked) =>
  jsonBodyFacts(Buffer.from(body).toString("utf8"), ["sk-secret"], asked);

const chat: Asked = { choices: 1, audio: false, tools: true, chat: true };
const usage = { prompt_tokens: 12, completion_tokens: 40, total_tokens: 52 };
const answer = (message: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion",
    model: "qwen3-8b",
    choices: [{ index: 0, finish_reason: "stop", message }],
    usage,
    ...extra,
  });

const bodies: [string, string, Asked?][] = [
  ["plain", answer({ role: "assistant", content: "Hi there, é and 😀." })],
  [
    "escapes",
    '{"model":"m\\u00e9","choices":[{"message":{"content":"a\\n\\"\\u00e9\\ud83d\\ude00\\ud800x\\/"}}]}',
  ],
  ["parts", answer({ content: [{ type: "text", text: "ab" }, { refusal: "no" }, "x", 5] })],
  [
    "thinking",
    answer({ content: [{ thinking: [{ text: "hmm" }, "s", { text: 3 }] }, { thinking: "t" }] }),
  ],
  ["reasoning", answer({ content: null, reasoning_content: "think", reasoning: "r", refusal: "" })],
  [
    "tools",
    answer({
      content: "",
      tool_calls: [
        { function: { name: "f", arguments: '{"a":1}' } },
        {},
        { custom: { name: "g", input: "i" } },
        { function: { arguments: "x" } },
        "s",
      ],
    }),
  ],
  [
    "parts by type",
    answer({
      content: [
        { type: "text", text: "ab", refusal: "abcd", thinking: "abcdef" },
        { type: "image_url", text: "x".repeat(700) },
        { refusal: "y".repeat(700) },
        { type: "thinking", text: "z".repeat(700), thinking: [{ type: "image", text: "w" }] },
        { type: 5, text: "v" },
      ],
    }),
  ],
  [
    "tool call types",
    answer({
      content: "",
      tool_calls: [
        {
          type: "function",
          function: { name: "f", arguments: "a" },
          custom: { name: "g", input: "bb" },
        },
        {
          type: "custom",
          function: { name: "f", arguments: "ccc" },
          custom: { name: "g", input: "d" },
        },
        { type: "retrieval", function: { name: "h", arguments: "e".repeat(700) } },
        { type: null, function: { name: "i", arguments: "ff" } },
      ],
    }),
  ],
  [
    "transcript without audio",
    answer({ content: "Hi.", audio: { transcript: "t".repeat(700) } }),
    { choices: 1, audio: true, tools: true, chat: true },
  ],
  [
    "transcript of no sound",
    answer({ content: "Hi.", audio: { data: "AAAA", transcript: "t".repeat(700) } }),
    { choices: 1, audio: true, audioFormat: "pcm16", tools: true, chat: true },
  ],
  [
    "refusal under two names",
    answer({ content: [{ type: "refusal", refusal: "r".repeat(700) }], refusal: "r".repeat(700) }),
  ],
  [
    "thinking under three names",
    answer({
      reasoning_content: "t".repeat(700),
      content: [
        { type: "thinking", thinking: [{ type: "text", text: "t".repeat(700) }] },
        { type: "text", text: "Hi." },
      ],
    }),
  ],
  ["function call", answer({ function_call: { name: "f", arguments: "{}" }, tool_calls: {} })],
  ["function unnamed", answer({ function_call: { name: "", arguments: "{}" } })],
  ["audio not asked", answer({ content: "a", audio: { data: "AAAA", transcript: "hi" } })],
  [
    "audio asked",
    answer({ content: "a", audio: { data: "AAAA", transcript: "hi" } }),
    { choices: 1, audio: true, tools: true, chat: true },
  ],
  [
    "audio pcm16",
    answer({ content: "a", audio: { data: "AAAA".repeat(4000), transcript: "hi" } }),
    { choices: 1, audio: true, audioFormat: "pcm16", tools: true, chat: true },
  ],
  [
    "audio wav",
    answer({
      content: "a",
      audio: { data: wav(Buffer.alloc(9600), { rate: 48_000 }).toString("base64"), transcript: "" },
    }),
    { choices: 1, audio: true, audioFormat: "wav", tools: true, chat: true },
  ],
  [
    "n=2 of 3",
    JSON.stringify({
      choices: ["a", "bb", "ccc"].map((content) => ({ message: { content } })),
      usage,
    }),
    { choices: 2, audio: false, tools: true, chat: true },
  ],
  [
    "legacy text",
    JSON.stringify({ choices: [{ text: "hello" }, { text: "x" }], usage }),
    { choices: 1, audio: false, tools: true },
  ],
  ...(["prompt ", `${"é".repeat(600)} `].map((prompt) => [
    `legacy echo of ${prompt.length} characters`,
    JSON.stringify({
      choices: [{ text: `${prompt}hello` }, { text: prompt.slice(0, 2) }, { text: "hello" }],
      usage,
    }),
    {
      choices: 3,
      audio: false,
      tools: true,
      chat: false,
      shape: "choices",
      echo: { prompts: [prompt, "hel"], choices: 2 },
    },
  ]) as [string, string, Asked][]),
  [
    "text beside message",
    JSON.stringify({ choices: [{ text: "hello", message: { content: "m" } }] }),
    { choices: 1, audio: false, tools: true },
  ],
  ["text in chat", JSON.stringify({ choices: [{ text: "hello" }] })],
  [
    "message array",
    JSON.stringify({ choices: [{ text: "hello", message: [] }] }),
    { choices: 1, audio: false, tools: true },
  ],
  [
    "message null",
    JSON.stringify({ choices: [{ text: "hello", message: null }] }),
    { choices: 1, audio: false, tools: true },
  ],
  ["choices object", JSON.stringify({ choices: { 0: { message: { content: "x" } } }, usage })],
  ["error object", answer({ content: "Hi." }, { error: { message: "no" } })],
  ["error empty string", answer({ content: "Hi." }, { error: "" })],
  ["error zero", answer({ content: "Hi." }, { error: 0 })],
  ["error one", answer({ content: "Hi." }, { error: 1e3 })],
  ["error false", answer({ content: "Hi." }, { error: false })],
  ["error null", answer({ content: "Hi." }, { error: null })],
  ["error array", answer({ content: "Hi." }, { error: [] })],
  ["model number", answer({ content: "Hi." }, { model: 5 })],
  ["model long", answer({ content: "Hi." }, { model: `m${"é\u0001".repeat(1500)}` })],
  ["model echoes key", answer({ content: "Hi." }, { model: "x-sk-secret-y" })],
  [
    "usage details",
    answer(
      { content: "Hi." },
      {
        usage: {
          ...usage,
          completion_tokens_details: { reasoning_tokens: 30, rejected_prediction_tokens: 2 },
        },
      },
    ),
  ],
  [
    "usage odd numbers",
    '{"choices":[],"usage":{"prompt_tokens":1e1,"completion_tokens":-0,"total_tokens":10.0}}',
  ],
  ["usage string", answer({ content: "Hi." }, { usage: "lots" })],
  ["usage array", answer({ content: "Hi." }, { usage: [1, 2] })],
  [
    "duplicate members",
    '{"choices":[{"message":{"content":"long long long"}}],"choices":[{"message":{"content":"s","content":"ab"}}],"usage":{"completion_tokens":9},"usage":{"completion_tokens":3,"completion_tokens":4}}',
  ],
  [
    "proto names",
    '{"__proto__":{"choices":1},"constructor":1,"choices":[{"message":{"constructor":"x","__proto__":"y","content":"c"}}],"usage":{"__proto__":{"completion_tokens":7},"completion_tokens":2}}',
  ],
  ["byte-order mark", `\ufeff${answer({ content: "Hi." })}`],
  ["spaces", ` \r\n\t${answer({ content: "Hi." })}\n `],
  ["top-level array", "[1,2]"],
  ["top-level number", "42"],
  ["top-level null", "null"],
  ["top-level string", '"x"'],
  ["empty", ""],
  ["trailing comma", '{"choices":[{"message":{"content":"x"}}],}'],
  ["trailing text", `${answer({ content: "Hi." })}x`],
  ["two values", `${answer({ content: "Hi." })} {}`],
  ["cut short", answer({ content: "Hi." }).slice(0, -3)],
  ["bad escape", '{"choices":[{"message":{"content":"\\x"}}]}'],
  ["raw control", '{"choices":[{"message":{"content":"a\u0001"}}]}'],
  ["leading zero", '{"a":01}'],
  ["bare minus", '{"a":-}'],
  ["bad literal", '{"a":tru}'],
  ["two marks", `\ufeff\ufeff{}`],
  ["mismatched", '{"a":[}'],
];

describe("a JSON answer read as it passes", () => {
  it.each(bodies)("reads %s as JSON.parse does", (_name, body, asked = chat) => {
    const expected = parsed(body, asked);
    for (const seed of [1, 2, 3]) expect(scanned(body, asked, seed)).toEqual(expected);
  });

  it("reads a part by its type, a tool call by its type, a transcript beside audio alone", () => {
    const byName = new Map(bodies.map(([name, body, asked]) => [name, { body, asked }]));
    const facts = (name: string) => {
      const { body, asked = chat } = byName.get(name)!;
      return parsed(body, asked);
    };
    // The text part's text alone: not its refusal or thinking, not another type's text, not an
    // untyped part's refusal, not thinking parts of another type.
    expect(facts("parts by type").answerBytes).toBe(2);
    // f + a, g + d, i + ff; the `retrieval` call is none: three calls.
    expect(facts("tool call types")).toMatchObject({ answerBytes: 7, answerToolCalls: 3 });
    expect(facts("transcript without audio").answerBytes).toBe(3);
    // Three bytes of pcm16 are one token of sound: no more of the transcript than that.
    expect(facts("transcript of no sound").answerBytes).toBe(3 + 1);
    // One refusal under the message's name and a part's; one reasoning under a third name.
    expect(facts("refusal under two names").answerBytes).toBe(700);
    expect(facts("thinking under three names").answerBytes).toBe(703);
  });

  it("counts an answer's audio by the seconds its format holds, 100 tokens a second", () => {
    const tokens = (data: string, audioFormat: string) =>
      scanned(answer({ content: "a", audio: { data, transcript: "hi" } }), {
        choices: 1,
        audio: true,
        audioFormat,
        tools: true,
        chat: true,
      }).answerBytes;
    const raw = "AAAA".repeat(4000);
    // 16,000 characters decode to 12,000 bytes; "hi", the longer of the text and the transcript, 2 more. pcm16: 16,000 bytes a
    // second at the least, so 75 tokens; mp3 at 8 kbit/s 1,200; opus and aac at 6 kbit/s 1,600;
    // flac, lossless, whose length only its operator-written STREAMINFO says, and a format not
    // known bound nothing.
    expect(
      ["pcm16", "mp3", "opus", "aac", "flac", "x"].map((format) => tokens(raw, format)),
    ).toEqual([77, 1202, 1602, 1602, null, null]);
    expect(
      tokens(
        flac(Buffer.alloc(30_000, 7), { rate: 24_000, samples: 24_000 }).toString("base64"),
        "flac",
      ),
    ).toBeNull();
    // A wav by its header: a second of 48 kHz 16-bit stereo is 100 tokens, of 24 kHz mono too;
    // no header, or one of a coded format (ADPCM), is read as pcm16.
    const second = (options: Parameters<typeof wav>[1]) =>
      wav(
        Buffer.alloc((options.rate * (options.channels ?? 1) * (options.bits ?? 16)) / 8),
        options,
      ).toString("base64");
    expect([
      tokens(second({ rate: 48_000, channels: 2 }), "wav"),
      tokens(second({ rate: 24_000 }), "wav"),
      tokens(second({ rate: 8_000, bits: 8 }), "wav"),
      tokens(Buffer.alloc(48_000).toString("base64"), "wav"),
      tokens(second({ rate: 24_000, coding: 2 }), "wav"),
      tokens(second({ rate: 4_000 }), "wav"),
    ]).toEqual([103, 103, 103, 302, 303, 53]);
  });

  it("counts a 9 MiB answer by the text of its choices, not by a member no client reads", () => {
    const padded = JSON.stringify({
      id: "chatcmpl-1",
      padding: "x".repeat(9 * 1024 * 1024),
      choices: [{ index: 0, message: { role: "assistant", content: "Hi." } }],
      usage: { prompt_tokens: 12, completion_tokens: 2000, total_tokens: 2012 },
    });
    const honest = answer({ content: "w ".repeat(4.5 * 1024 * 1024) });
    const scan = createJsonAnswerScan(chat);
    for (let at = 0; at < padded.length; at += 65536) {
      scan.add(Buffer.from(padded.slice(at, at + 65536)));
    }
    expect(scannedBodyFacts(scan, [], chat)).toMatchObject({
      answerBytes: 3,
      usage: { completionTokens: 2000 },
    });
    const whole = createJsonAnswerScan(chat);
    whole.add(Buffer.from(honest));
    expect(scannedBodyFacts(whole, [], chat)).toMatchObject({ answerBytes: 9 * 1024 * 1024 });
  });

  it("takes an answer nested deeper than any completion as unreadable", () => {
    const deep = `{"x":${"[".repeat(maxDepth)}${"]".repeat(maxDepth)},"choices":[]}`;
    expect(scanned(deep, chat)).toMatchObject({ answerBytes: 0, model: null });
    const fine = `{"x":${"[".repeat(100)}${"]".repeat(100)},"choices":[{"message":{"content":"ab"}}]}`;
    expect(scanned(fine, chat)).toEqual(parsed(fine, chat));
  });
});

describe("a JSON answer read in runs, cut anywhere", () => {
  /** The body read in two pieces cut at every byte, and in pieces of 1 to 9 bytes. */
  function everyCut(body: string, asked: Asked = chat) {
    const bytes = Buffer.from(body);
    const expected = parsed(body, asked);
    const cuttings: Buffer[][] = [];
    for (let at = 0; at <= bytes.length; at++) {
      cuttings.push([bytes.subarray(0, at), bytes.subarray(at)]);
    }
    for (let size = 1; size < 10; size++) {
      const cut: Buffer[] = [];
      for (let at = 0; at < bytes.length; at += size) cut.push(bytes.subarray(at, at + size));
      cuttings.push(cut);
    }
    let readable = true;
    try {
      JSON.parse(body);
    } catch {
      readable = false;
    }
    for (const cut of cuttings) {
      const scan = createJsonAnswerScan(asked);
      for (const piece of cut) scan.add(piece);
      expect(scan.result().kind !== "unreadable").toBe(readable);
      expect(scannedBodyFacts(scan, ["sk-secret"], asked)).toEqual(expected);
    }
  }

  it.each([
    ["number runs", '{"pad":[0,-1,12.5e+3,-0.25E-2,1e9,7],"usage":{"completion_tokens":1.5e1}}'],
    ["numbers in usage", '{"choices":[],"usage":{"prompt_tokens":120,"total_tokens":-3.25e2}}'],
    ["leading zero digit", '{"pad":[1,00],"choices":[]}'],
    ["minus then dot", '{"pad":[-.5],"choices":[]}'],
    ["dot then end", '{"pad":[1.],"choices":[]}'],
    ["exponent without digits", '{"pad":[1e+],"choices":[]}'],
    ["number then space", '{"usage":{"completion_tokens":12 },"choices":[]}'],
    ["number at the end", "1234"],
    [
      "escapes read",
      '{"model":"a\\n\\t\\u0041\\u00e9\\u20ac\\/","choices":[{"message":{"content":"\\"x\\\\"}}]}',
    ],
    [
      "escapes skipped",
      '{"pad":"\\n\\"\\u00e9\\u20AC\\\\","pad2":{"\\u0061":"\\b\\f\\r"},"choices":[]}',
    ],
    ["bad hex", '{"pad":"\\u00g0","choices":[]}'],
    ["bad escape skipped", '{"pad":"\\a","choices":[]}'],
    ["surrogate pair", '{"choices":[{"message":{"content":"\\ud83d\\ude00\\uD83D\\uDE00"}}]}'],
    ["lone high then text", '{"choices":[{"message":{"content":"\\ud83dx"}}]}'],
    ["high then high", '{"choices":[{"message":{"content":"\\ud83d\\ud83d\\ude00"}}]}'],
    ["high then escape", '{"choices":[{"message":{"content":"\\ud83d\\n"}}]}'],
    ["high at the end", '{"model":"m","choices":[{"message":{"content":"a\\udbff"}}]}'],
    ["lone low", '{"choices":[{"message":{"content":"\\udc00a\\ude00b"}}]}'],
    ["pair in a skipped string", '{"pad":"\\ud83d\\ude00\\ud83d","choices":[]}'],
    ["literals", '{"pad":[true,false,null],"error":false,"choices":[{"message":null}]}'],
    ["bad literal in a run", '{"pad":[true,fals],"choices":[]}'],
    ["keys of a skipped object", '{"pad":{"choices":[{"message":{"content":"x"}}]},"choices":[]}'],
    ["colon runs", '{"a" : 1,"b":"c","d":[],"e":{},"choices":[{"message":{"content":"yz"}}]}'],
    ["missing colon", '{"a" 1,"choices":[]}'],
    ["comma then space", '{"pad":[1, 2,\n"x"],"choices":[]}'],
    ["raw control in a skipped string", '{"pad":"a\u001fb","choices":[]}'],
  ])("reads %s as JSON.parse does", (_name, body) => {
    everyCut(body);
  });
});

describe("a JSON answer in large chunks", () => {
  const turn = () => new Promise((resolve) => setImmediate(resolve));
  const body = JSON.stringify({
    pad: Array.from({ length: 20000 }, (_, i) => (i % 3 === 0 ? -i * 1.25e-3 : i)),
    skipped: '\n\u00e9\ud83d\ude00"'.repeat(5000),
    choices: [{ message: { content: "é😀\n\u0001x\\".repeat(8000) } }],
    usage,
  });

  it("reads a chunk over a slice a slice a turn, so no request waits on all of it at once", async () => {
    const bytes = Buffer.from(body);
    expect(bytes.length).toBeGreaterThan(10 * sliceBytes);
    const scan = createJsonAnswerScan(chat);
    scan.add(bytes);
    // Nothing read yet: the event loop turns first.
    expect(scan.pending()).toBe(bytes.length);
    for (let slice = 1; slice <= 3; slice++) {
      await turn();
      expect(scan.pending()).toBe(bytes.length - slice * sliceBytes);
    }
    // A small chunk after it waits its turn: the answer is read in order.
    const tail = Buffer.from(" \n");
    scan.add(tail);
    expect(scan.pending()).toBe(bytes.length + tail.length - 3 * sliceBytes);
    while (scan.pending() > 0) await turn();
    expect(scannedBodyFacts(scan, ["sk-secret"], chat)).toEqual(parsed(body, chat));
  });

  it("reads what is left when the result is asked, cut at slices anywhere", async () => {
    const bytes = Buffer.from(body);
    for (const size of [sliceBytes + 1, 65536, 3 * sliceBytes - 7]) {
      const scan = createJsonAnswerScan(chat);
      for (let at = 0; at < bytes.length; at += size) {
        scan.add(bytes.subarray(at, at + size));
        if (at % (2 * size) === 0) await turn();
      }
      expect(scannedBodyFacts(scan, ["sk-secret"], chat)).toEqual(parsed(body, chat));
      expect(scan.pending()).toBe(0);
    }
  });

  it("stops reading an answer already unreadable", async () => {
    const scan = createJsonAnswerScan(chat);
    scan.add(Buffer.from(`{"a":01,"pad":"${"x".repeat(4 * sliceBytes)}"}`));
    await turn();
    expect(scan.pending()).toBe(0);
    expect(scan.result()).toEqual({ kind: "unreadable" });
  });
});

describe("a long number in a JSON answer", () => {
  it("reads a count written with many zeros as JSON.parse does", () => {
    // Read as NaN past 64 bytes, the count was unknown where JSON.parse read 2000.
    for (const zeros of [70, 1000]) {
      const body = `{"choices":[{"message":{"content":"Hi."}}],"usage":{"prompt_tokens":12,"completion_tokens":2000.${"0".repeat(zeros)},"total_tokens":2012}}`;
      expect(scanned(body, chat)).toEqual(parsed(body, chat));
      expect(scanned(body, chat)).toMatchObject({ usage: { completionTokens: 2000 } });
    }
  });

  const zeros = "0".repeat(70);
  it.each([
    // Truthy to JSON.parse: an error, whose usage prices no answer the caller got.
    [
      `{"error":0.${zeros}1,"choices":[{"message":{"content":"ab"}}],"usage":{"completion_tokens":40}}`,
    ],
    [
      `{"error":-0.${zeros},"choices":[{"message":{"content":"ab"}}],"usage":{"completion_tokens":40}}`,
    ],
    [`{"error":1${zeros}e-400,"choices":[],"usage":{"completion_tokens":40}}`],
    [`{"choices":[],"usage":{"completion_tokens":4${zeros}e-70,"prompt_tokens":12}}`],
  ])("reads a value written past 64 bytes as JSON.parse does: %s", (body) => {
    expect(scanned(body, chat)).toEqual(parsed(body, chat));
  });

  it("takes a value read written longer than a kilobyte for an unreadable answer, not as unknown", () => {
    // `error: 1` written with 2,000 zeros and `e-2000` is an error to JSON.parse; read as NaN it
    // was none, and the usage beside it believed. No server writes a count or an error so.
    const long = "0".repeat(2000);
    for (const body of [
      `{"error":1${long}e-2000,"choices":[{"message":{"content":"ab"}}],"usage":{"completion_tokens":40}}`,
      `{"choices":[{"message":{"content":"ab"}}],"usage":{"completion_tokens":40.${long}}}`,
    ]) {
      expect(scanned(body, chat)).toEqual(scanned('{"choices":', chat));
      expect(scanned(body, chat)).toMatchObject({ answerBytes: 0 });
    }
    // Padding inside a member of the operator's own, which nobody reads, may be as long as it likes.
    const padded = `{"pad":{"n":[1${long}]},"choices":[{"message":{"content":"ab"}}]}`;
    expect(scanned(padded, chat)).toEqual(parsed(padded, chat));
  });
});

describe("a JSON answer faster than it is read", () => {
  it("keeps at most the 8 MiB the proxy held waiting, read at once when the answer ends", () => {
    // What waits is read in one go at the end: 16 MiB of it held a loaded host ~200 ms.
    const body = Buffer.from(JSON.stringify({ pad: "x".repeat(12 * 1024 * 1024), choices: [] }));
    const scan = createJsonAnswerScan(chat);
    for (let at = 0; at < body.length; at += 65536) scan.add(body.subarray(at, at + 65536));
    expect(scan.pending()).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect(scan.result()).toMatchObject({ kind: "object", bytes: 0 });
    expect(scan.pending()).toBe(0);
  });
});

describe("what waits when a JSON answer faster than it is read ends", () => {
  const turn = () => new Promise((resolve) => setImmediate(resolve));
  it("is read a slice a turn before the result is asked, not all at once", async () => {
    // 8 MiB of numbers read at once held the event loop about a second on this host.
    const body = Buffer.from(
      `{"pad":[${"1,".repeat(1.5 * 1024 * 1024)}1],"choices":[{"message":{"content":"Hi."}}],"usage":{"completion_tokens":5}}`,
    );
    const scan = createJsonAnswerScan(chat);
    for (let at = 0; at < body.length; at += 65536) scan.add(body.subarray(at, at + 65536));
    const waiting = scan.pending();
    expect(waiting).toBeGreaterThan(2 * 1024 * 1024);
    let done = false;
    const drained = scan.drained().then(() => {
      done = true;
    });
    for (let slice = 1; slice <= 3; slice++) {
      await turn();
      expect(scan.pending()).toBe(waiting - slice * sliceBytes);
    }
    expect(done).toBe(false);
    await drained;
    expect(scan.pending()).toBe(0);
    expect(scannedBodyFacts(scan, [], chat)).toMatchObject({
      answerBytes: 3,
      usage: { completionTokens: 5 },
    });
    await createJsonAnswerScan(chat).drained();
  });
});

describe("calls in a JSON answer to a request that forbade parallel ones", () => {
  it("count one a choice, as the whole answer's reader counts them", () => {
    const call = (i: number) => ({ id: `c${i}`, type: "function", function: { name: "a" } });
    const body = JSON.stringify({
      choices: [0, 1].map((index) => ({
        index,
        message: { tool_calls: [call(1), call(2), call(3)] },
      })),
      usage: { completion_tokens: 5 },
    });
    const asked: Asked = { choices: 2, audio: false, tools: true, chat: true };
    const serial: Asked = { ...asked, parallelCalls: false };
    expect(scanned(body, asked).answerToolCalls).toBe(6);
    expect(jsonBodyFacts(body, [], asked).answerToolCalls).toBe(6);
    expect(scanned(body, serial).answerToolCalls).toBe(2);
    expect(jsonBodyFacts(body, [], serial).answerToolCalls).toBe(2);
  });
});

describe("a legacy completion read as it passes", () => {
  it("counts a choice's text alone, as the whole answer's reader does", () => {
    const body = JSON.stringify({
      choices: [{ index: 0, text: "Hi.", message: { content: "x".repeat(500) } }],
      usage: { completion_tokens: 5 },
    });
    const legacy: Asked = { choices: 1, audio: false, tools: false, chat: false, shape: "choices" };
    expect(scanned(body, legacy).answerBytes).toBe(3);
    expect(parsed(body, legacy).answerBytes).toBe(3);
  });
});

describe("a Responses API answer read as it passes", () => {
  /**
   * Read as it passes only for `choices`, a `/responses` answer over 8 MiB was unknown: padded
   * with 9 MiB of its own, `Hi.` was charged the lock, partially verified. Its `output` is read
   * as `jsonBodyFacts` reads it, byte for byte.
   */
  const responses: Asked = { choices: 1, audio: false, tools: true, shape: "output" };
  const offered = (toolKinds: string[] | null, parallelCalls = true): Asked => ({
    ...responses,
    toolKinds,
    parallelCalls,
  });
  const reply = (output: unknown, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      id: "resp_1",
      object: "response",
      model: "qwen3-8b",
      error: null,
      output,
      usage: {
        input_tokens: 12,
        output_tokens: 40,
        total_tokens: 52,
        output_tokens_details: { reasoning_tokens: 7 },
      },
      ...extra,
    });
  const message = (content: unknown) => ({ type: "message", role: "assistant", content });
  const calls = [
    { type: "function_call", name: "f", arguments: '{"a":1}', call_id: "c1" },
    { type: "function_call", name: "", arguments: "xyz" },
    { type: "custom_tool_call", name: "g", input: "diff", arguments: "longer one" },
    { type: "mcp_call", server_label: "srv", name: "h", arguments: "{}", output: "pad" },
    { type: "mcp_approval_request", server_label: "s", name: "", arguments: "ab" },
    { type: "web_search_call", action: { query: "q", queries: ["no"] }, queries: ["a", 1, "bc"] },
    { type: "web_search_call", action: { query: "q", queries: ["longer", 2, "é"], url: 3 } },
    { type: "web_search_call", action: { type: "open_page", url: "https://a.example/é" } },
    { type: "web_search_call", action: { type: "find", url: "u", pattern: "p😀", sources: "pad" } },
    { type: "computer_call", action: { type: "type", text: "typed", keys: ["ctrl", "c", null] } },
    { type: "code_interpreter_call", code: "print(1)", outputs: [{ logs: "pad" }] },
    { type: "local_shell_call", action: { command: ["ls", "-l", 3], commands: "x" } },
    { type: "shell_call", action: { commands: ["a", "bb"], query: 5 } },
    { type: "apply_patch_call", operation: { path: "p", diff: "+x", pad: "y" } },
    { type: "image_generation_call", result: "AAAA" },
    { type: "computer_call", action: ["x"], code: 5 },
    { type: "file_search_call", queries: "q", results: [{ text: "pad" }] },
    { type: "other_call", name: "x", arguments: "pad" },
  ];
  const bodies: [string, string, Asked?][] = [
    ["message", reply([message([{ type: "output_text", text: "Hi é😀", annotations: [] }])])],
    [
      "parts of every kind",
      reply([
        message([
          { type: "output_text", text: "ab" },
          { type: "refusal", refusal: "no", text: "pad" },
          { text: "same", refusal: "same text" },
          { type: "summary_text", text: "pad" },
          { type: null, text: "pad" },
          { type: "output_text", refusal: "pad" },
          "s",
          [{ type: "output_text", text: "pad" }],
        ]),
        message("a string"),
        message({ type: "output_text", text: "pad" }),
      ]),
    ],
    [
      "reasoning",
      reply([
        {
          type: "reasoning",
          summary: [
            { type: "summary_text", text: "sum" },
            { type: "output_text", text: "pad" },
          ],
          content: [{ type: "reasoning_text", text: "think" }, { text: "t" }],
          encrypted_content: "pad",
        },
        { summary: [{ type: "summary_text", text: "no type: pad" }] },
      ]),
    ],
    [
      "type after content",
      '{"output":[{"content":[{"text":"ab","type":"output_text"}],"type":"message"}]}',
    ],
    [
      "type named twice",
      '{"output":[{"type":"reasoning","content":[{"type":"output_text","text":"abc"}],"type":"message"}]}',
    ],
    ["calls", reply(calls)],
    ["calls offered none", reply(calls), offered([])],
    ["calls offered some", reply(calls), offered(["function", "web_search_preview", "mcp"])],
    ["calls in one group", reply(calls), offered(null, false)],
    ["calls not asked", reply(calls), { ...responses, tools: false }],
    ["items not objects", reply([1, "x", null, [message([{ type: "output_text", text: "a" }])]])],
    ["output object", reply({ 0: message([{ type: "output_text", text: "pad" }]) })],
    [
      "choices beside output",
      reply([message([{ type: "output_text", text: "Hi." }])], {
        choices: [{ message: { content: "pad".repeat(100) } }],
      }),
    ],
    ["error", reply([message([{ type: "output_text", text: "Hi." }])], { error: { code: "x" } })],
    ["usage of chat's names", reply([], { usage: { completion_tokens: 40, prompt_tokens: 1 } })],
    ["background queued", reply([], { status: "queued", usage: null })],
  ];

  it.each(bodies)("reads %s as JSON.parse does", (_name, body, asked = responses) => {
    const expected = parsed(body, asked);
    for (const seed of [1, 2, 3]) expect(scanned(body, asked, seed)).toEqual(expected);
  });

  it("reads an answer cut at every byte as JSON.parse does", () => {
    const body = reply([
      message([{ type: "output_text", text: "a\\u00e9" }, { refusal: "r" }]),
      { type: "reasoning", summary: [{ type: "summary_text", text: "s" }] },
      calls[2],
      calls[9],
    ]);
    const expected = parsed(body, responses);
    const bytes = Buffer.from(body);
    for (let at = 0; at <= bytes.length; at++) {
      const scan = createJsonAnswerScan(responses);
      scan.add(bytes.subarray(0, at));
      scan.add(bytes.subarray(at));
      expect(scannedBodyFacts(scan, [], responses)).toEqual(expected);
    }
  });

  it("counts a 9 MiB answer by its output, not by a member no client reads", () => {
    const padded = reply([message([{ type: "output_text", text: "Hi." }])], {
      padding: "x".repeat(9 * 1024 * 1024),
      usage: { input_tokens: 12, output_tokens: 2000, total_tokens: 2012 },
    });
    const scan = createJsonAnswerScan(responses);
    for (let at = 0; at < padded.length; at += 65536) {
      scan.add(Buffer.from(padded.slice(at, at + 65536)));
    }
    expect(scannedBodyFacts(scan, [], responses)).toMatchObject({
      answerBytes: 3,
      usage: { promptTokens: 12, completionTokens: 2000 },
    });
  });
});

describe("one text under two names, read as it passes and cut at every byte", () => {
  it("counts what JSON.parse's reader counts", () => {
    const body = JSON.stringify({
      model: "m",
      choices: [
        {
          index: 0,
          message: {
            content: [
              { type: "text", text: "abc", refusal: "abcd", thinking: [{ text: "ab" }] },
              { type: "refusal", refusal: "xyz1", text: "pad" },
              { text: "t" },
            ],
            refusal: "r",
            reasoning: "think",
            reasoning_content: "thin",
            function_call: { name: "f", arguments: "ab", input: "abc" },
            tool_calls: [
              {
                type: "function",
                function: { name: "g", arguments: "a" },
                custom: { name: "g", input: "abcd" },
              },
            ],
          },
        },
      ],
      usage: { completion_tokens: 3 },
    });
    const tools: Asked = { ...chat, tools: true };
    const expected = parsed(body, tools);
    // Content 3 + 1 (a text part's text alone) or the refusal, `r` or its part's 4 (one
    // refusal under two names); reasoning 5; function call 1 + 3 or the function tool call's
    // 1 + 1 (its custom tool is not read).
    expect(expected.answerBytes).toBe(4 + 5 + 4);
    const bytes = Buffer.from(body);
    for (let at = 0; at <= bytes.length; at++) {
      const scan = createJsonAnswerScan(tools);
      scan.add(bytes.subarray(0, at));
      scan.add(bytes.subarray(at));
      expect(scannedBodyFacts(scan, [], tools)).toEqual(expected);
    }
  });
});

/**
 * What Python's client refuses and `JSON.parse` reads: a byte that is no UTF-8 (`json.loads` of
 * the bytes raises) and an integer of more than 4,300 digits (`ValueError`), in a member no
 * client reads as much as anywhere. Held whole, such an answer is one of no bytes; read as it
 * passed (over 8 MiB), its text and usage were priced, verified, for a Python customer who got
 * an exception.
 */
describe("a JSON answer Python's client refuses, read as it passes", () => {
  const content = `Hi ${"\u00e9".repeat(50)} \u{1F600}.`;
  const body = (pad: string | Buffer) => {
    const [before, after] = answer({ role: "assistant", content }, { pad: "P" }).split('"P"') as [
      string,
      string,
    ];
    // In a member nothing reads (a number of over a kilobyte where a value is read is taken as
    // unreadable already: no server writes one).
    return Buffer.concat([
      Buffer.from(`${before}{"n":[`),
      Buffer.from(pad),
      Buffer.from(`]}${after}`),
    ]);
  };
  const digits = (n: number) => "7".repeat(n);
  const refused = [
    digits(4301),
    `-${digits(4301)}`,
    `[1,{"a":${digits(9000)}}]`,
    // Nested deeper than some Python clients' json reads (see `pythonMaxDepth`).
    `${"[".repeat(300)}${"]".repeat(300)}`,
    Buffer.concat([Buffer.from('"a'), Buffer.from([0xff]), Buffer.from('b"')]),
    Buffer.concat([Buffer.from('"a'), Buffer.from([0xe9, 0x41]), Buffer.from('b"')]),
    // A character cut short at a string's end: no UTF-8 either.
    Buffer.concat([Buffer.from('"a'), Buffer.from([0xf0, 0x9f, 0x98]), Buffer.from('"')]),
  ];
  const read = [
    digits(4300),
    `-${digits(4300)}`,
    `${digits(5000)}.5`,
    `${digits(5000)}e5`,
    `-${digits(5000)}E-5`,
    `"${digits(5000)}"`,
    `"\u00e9\u{1F600}${digits(10)}"`,
    `${"[".repeat(200)}${"]".repeat(200)}`,
  ];

  it("is unreadable where the whole answer's reader finds it so, cut anywhere", () => {
    for (const pad of refused) {
      const whole = jsonBodyFacts(body(pad), [], chat);
      expect(whole).toMatchObject({ answerBytes: 0, usage: { completionTokens: null } });
      for (const seed of [1, 2, 3]) expect(scanned(body(pad), chat, seed)).toEqual(whole);
    }
    for (const pad of read) {
      const whole = jsonBodyFacts(body(pad), [], chat);
      expect(whole).toMatchObject({ answerBytes: Buffer.byteLength(content) });
      for (const seed of [1, 2, 3]) expect(scanned(body(pad), chat, seed)).toEqual(whole);
    }
  });

  it("takes 9 MiB of text beside such an integer, fed as a socket gives it, as unreadable", () => {
    const long = Buffer.from(
      answer({ role: "assistant", content: "w".repeat(9 * 1024 * 1024) }, { pad: "P" }),
    );
    const at = long.indexOf('"P"');
    for (const [pad, unreadable] of [
      [digits(4301), true],
      [`${digits(4301)}.0`, false],
    ] as const) {
      const sent = Buffer.concat([
        long.subarray(0, at),
        Buffer.from(`[${pad}]`),
        long.subarray(at + 3),
      ]);
      const scan = createJsonAnswerScan(chat);
      for (let i = 0; i < sent.length; i += 65536) scan.add(sent.subarray(i, i + 65536));
      expect(scannedBodyFacts(scan, [], chat).answerBytes).toBe(unreadable ? 0 : 9 * 1024 * 1024);
    }
  });
});
