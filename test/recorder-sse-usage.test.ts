import http from "node:http";
import { eq } from "drizzle-orm";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { jobs } from "../src/db/schema.js";
import { type Asked, createSseFacts } from "../src/recorder/answer-facts.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import {
  createDataCount,
  createDoneWatch,
  pythonRefuses,
  sseChunks,
  sseEvents,
} from "../src/recorder/sse-tail.js";
import {
  address,
  capturedLogger,
  jobId,
  listen,
  serveApp,
  signature,
} from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

/** A chunk of a chat completion stream, as `data:` of one event. */
const chunk = (fields: Record<string, unknown>) =>
  JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    model: "qwen3-8b",
    ...fields,
  });
const text = (content: string) => chunk({ choices: [{ index: 0, delta: { content } }] });
const usage = (completionTokens: number) =>
  chunk({
    choices: [],
    usage: {
      prompt_tokens: 7,
      completion_tokens: completionTokens,
      total_tokens: 7 + completionTokens,
    },
  });
const event = (data: string) => `data: ${data}\n\n`;

/** The text of `longPadded`'s deltas. */
const longPaddedText = Array.from({ length: 500 }, (_, i) =>
  Buffer.byteLength(`w${i} `.repeat(8)),
).reduce((a, b) => a + b, 0);

/** More than the 64 KiB the proxy keeps, a comment line before each event. */
const longPadded =
  Array.from(
    { length: 500 },
    (_, i) => `: ${"-".repeat(120)}\n${event(text(`w${i} `.repeat(8)))}`,
  ).join("") +
  event(usage(100)) +
  event("[DONE]");

/**
 * Streams an operator could send, each with the usage its client reads (what the OpenAI SDK
 * hands on) and usage written where no client looks.
 */
const streams: Record<
  string,
  {
    body: string;
    clientReads: number | null;
    json?: boolean;
    /** The usage the receipt takes, where it is not what this client read. */
    recorded?: number | null;
    /** The answer's bytes every client read. */
    answerBytes?: number;
  }
> = {
  honest: { body: event(text("hi")) + event(usage(100)) + event("[DONE]"), clientReads: 100 },
  "usage after [DONE]": {
    body: event(text("hi")) + event(usage(100)) + event("[DONE]") + event(usage(1881)),
    clientReads: 100,
  },
  "usage split over two data lines": {
    // An SSE client joins the event's data lines with "\n", here where JSON allows a line break:
    // usage 100. Read line by line neither half parses, and the earlier chunk's usage would stand.
    body: `${event(usage(1881))}data: ${usage(100).replace(',"usage"', ',\ndata: "usage"')}\n\n${event("[DONE]")}`,
    clientReads: 100,
  },
  "[DONE] then more than the tail window": {
    body:
      event(usage(100)) + event("[DONE]") + event(text("x".repeat(70_000))) + event(usage(1881)),
    clientReads: 100,
  },
  "an error chunk before the usage": {
    // The SDK throws at an `error` chunk: its caller reads no usage.
    body:
      event(text("hi")) +
      event(JSON.stringify({ error: { message: "worker lost" } })) +
      event(usage(1881)) +
      event("[DONE]"),
    clientReads: null,
  },
  "an event never ended": {
    // No blank line ends the last event: a client never acts on it.
    body: `${event(text("hi"))}data: ${usage(1881)}\n`,
    clientReads: null,
  },
  "a byte-order mark before a later, smaller usage": {
    // Node's SDK decodes each line alone, dropping a byte-order mark at its start: the event
    // counts; Python's keeps the mark, and `\uFEFFdata` is no field: it read 1881. Two counts
    // told: the receipt takes none.
    body: `${event(usage(1881))}\uFEFF${event(usage(100))}${event("[DONE]")}`,
    clientReads: 100,
    recorded: null,
  },
  "a byte-order mark before [DONE]": {
    body: `${event(usage(100))}\uFEFF${event("[DONE]")}${event(usage(1881))}`,
    clientReads: 100,
  },
  "an empty event block between two usages": {
    // `event:` with no name and no data is no event for the SDK, so nothing stops it there.
    body: `${event(usage(1881))}event:\n\n${event(usage(100))}${event("[DONE]")}`,
    clientReads: 100,
  },
  "a thread event that is no JSON": {
    // The SDK parses every event and fails the stream at this one.
    body: `${event(usage(100))}event: thread.x\ndata: {nope\n\n${event(usage(1881))}${event("[DONE]")}`,
    clientReads: 100,
  },
  "a null chunk": {
    // Handed on as null: a caller reading chunk.usage throws there.
    body: `${event(usage(100))}${event("null")}${event(usage(1881))}${event("[DONE]")}`,
    clientReads: 100,
  },
  "a JSON answer to a stream asked for": {
    // The SDK parses the answer as events, since its request asked for a stream: it finds none.
    body: JSON.stringify({
      id: "chatcmpl-1",
      model: "qwen3-8b",
      choices: [],
      usage: { prompt_tokens: 7, completion_tokens: 1881, total_tokens: 1888 },
    }),
    clientReads: null,
    json: true,
  },
  "CRLF line ends": {
    body: `data: ${text("hi")}\r\n\r\ndata: ${usage(100)}\r\n\r\ndata: [DONE]\r\n\r\n`,
    clientReads: 100,
  },
  "a last usage in an event with a name": {
    // Node's SDK 6 reads it; Node's 4 hands it on wrapped, `{ event, data }`, and its caller
    // reads the usage before: the customers were told two counts, so the receipt takes none.
    body: `${event(text("hi"))}${event(usage(100))}event: x\ndata: ${usage(1881)}\n\n${event("[DONE]")}`,
    clientReads: 1881,
    recorded: null,
    answerBytes: 2,
  },
  "text in an event with a name": {
    // The text padding the answer is what Node's SDK 6 shows, never what Node's 4 does.
    body: `${event(text("hi"))}event: x\ndata: ${text("x".repeat(5000))}\n\n${event(usage(100))}${event("[DONE]")}`,
    clientReads: 100,
    answerBytes: 2,
  },
  "a long stream with comments between its events": {
    // Longer than the tail the proxy holds: read as it passed, its answer is its deltas' text
    // (it was every byte of its data values, JSON and all, four times more); the comments
    // count for nothing.
    body: longPadded,
    clientReads: 100,
    answerBytes: longPaddedText,
  },
  "a long honest stream": {
    // More than the 64 KiB the proxy keeps: the tail's first, cut event is left out.
    body:
      Array.from({ length: 800 }, (_, i) => event(text(`word ${i} `.repeat(12)))).join("") +
      event(usage(100)) +
      event("[DONE]"),
    clientReads: 100,
  },
};

let proxyUrl = "";
const store = createTestStore();
const ids = new Map<string, string>();
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const upstream = http.createServer(async (req, res) => {
    for await (const _ of req) {
      // drain the body
    }
    const name = decodeURIComponent(
      new URL(req.url ?? "/", "http://x").searchParams.get("s") ?? "",
    );
    const id = jobId();
    ids.set(name, id);
    res.writeHead(200, {
      "content-type": streams[name]!.json ? "application/json" : "text/event-stream",
      "x-decentral-job-id": id,
      "x-decentral-tx-signature": signature(),
      "x-decentral-worker": address(),
    });
    // In small writes, so [DONE] and events fall across chunk edges as on a network.
    const body = Buffer.from(streams[name]!.body);
    for (let at = 0; at < body.length; at += 7_001) {
      res.write(body.subarray(at, at + 7_001));
      await new Promise((resolve) => setImmediate(resolve));
    }
    res.end();
  });
  const up = await listen(upstream);
  const { log } = capturedLogger();
  const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${up.url}/v1` });
  const app = await serveApp({ store, log, proxy });
  proxyUrl = app.url;
  closers.push(
    () => app.close(),
    () => proxy.close(),
    () => up.close(),
  );
});
afterAll(async () => {
  for (const close of closers) await close();
});

describe("a streamed job's usage is what its client read", () => {
  for (const [name, stream] of Object.entries(streams)) {
    it(`${name}: ${stream.clientReads ?? "no usage"}`, async () => {
      const client = new OpenAI({
        apiKey: "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345",
        baseURL: `${proxyUrl}/v1`,
        defaultQuery: { s: name },
        maxRetries: 0,
      });
      let read: number | null = null;
      try {
        const completion = await client.chat.completions.create({
          model: "qwen3-8b",
          max_tokens: 2000,
          messages: [{ role: "user", content: "hi" }],
          stream: true,
          stream_options: { include_usage: true },
        });
        for await (const c of completion) read = c.usage?.completion_tokens ?? read;
      } catch {
        // The SDK fails the stream at an error chunk; what it read before stands.
      }
      expect(read).toBe(stream.clientReads);
      // A client that failed the stream left: the receipt is completed once the upstream ends.
      const row = await vi.waitUntil(() => {
        const job = store.db
          .select()
          .from(jobs)
          .where(eq(jobs.jobId, ids.get(name)!))
          .get();
        return job?.captureState === "open" ? undefined : job;
      });
      const recorded = "recorded" in stream ? stream.recorded : stream.clientReads;
      expect(row?.completionTokens ?? null).toBe(recorded);
      if (stream.answerBytes !== undefined) expect(row?.answerBytes).toBe(stream.answerBytes);
    });
  }
});

describe("sseEvents", () => {
  it("leaves out a tail's first event, whose start was cut, and reads the rest", () => {
    // The tail starts at an event's second data line: the client joined it to a first one.
    const tail = `data: {"usage":{"completion_tokens":5}}\n\n${event(usage(9))}`;
    expect(sseChunks(sseEvents(tail, true)).map((c) => c.data.usage)).toEqual([
      { prompt_tokens: 7, completion_tokens: 9, total_tokens: 16 },
    ]);
    // Read whole, the same text is two events.
    expect(sseEvents(tail, false)).toHaveLength(2);
  });

  it("joins data lines, keeps the event name and stops at [DONE]", () => {
    expect(
      sseEvents("event: x\ndata: a\ndata:b\n\n: comment\n\ndata: [DONE]\n\ndata: c\n\n", false),
    ).toEqual([{ event: "x", data: "a\nb" }]);
  });

  it("finds a [DONE] line cut by a chunk's edge, and no [DONE] a completion's text says", () => {
    const watch = createDoneWatch();
    expect(watch(Buffer.from(`${event(text("say [DONE] or data: [DONE]"))}data: [DO`))).toBe(false);
    expect(watch(Buffer.from("NE]\n\n"))).toBe(true);
    // A byte at a time: the line's start is bytes back, several chunks before.
    const bytes = createDoneWatch();
    const seen = [...Buffer.from(`${event(text("[DONE]"))}data: [DONE]\n\n`)].map((b) =>
      bytes(Buffer.from([b])),
    );
    expect(seen.indexOf(true)).toBe(Buffer.byteLength(`${event(text("[DONE]"))}data: [DONE]`) - 1);
    const first = createDoneWatch();
    expect(first(Buffer.from("data:[DONE]\n\n"))).toBe(true);
  });

  it("stops where Python's SDK fails: a blank line once an id was given, or after a retry", () => {
    const read = (stream: string) =>
      sseChunks(sseEvents(stream, false)).map(
        (c) => (c.data.usage as { completion_tokens: number } | undefined)?.completion_tokens,
      );
    // Python keeps the last id across events and hands an event with no data on at the next
    // blank line: its empty data is no JSON, and the stream fails there. Node's reads on.
    expect(read(`id: 1\n${event(usage(5))}\n${event(usage(1881))}`)).toEqual([5]);
    expect(read(`${event(usage(5))}id: 7\n\n${event(usage(1881))}`)).toEqual([5]);
    expect(read(`${event(usage(5))}retry: 3000\n\n${event(usage(1881))}`)).toEqual([5]);
    expect(read(`${event(usage(5))}retry:+1_000\r\n\r\n${event(usage(1881))}`)).toEqual([5]);
    // What Python passes over: no id (or an empty one, or one holding NUL), a retry no integer.
    expect(read(`${event(usage(5))}id:\n\n${event(usage(9))}`)).toEqual([5, 9]);
    expect(read(`${event(usage(5))}id: a\0b\n\n${event(usage(9))}`)).toEqual([5, 9]);
    expect(read(`${event(usage(5))}retry: soon\n\n${event(usage(9))}`)).toEqual([5, 9]);
    expect(read(`${event(usage(5))}\n\n: note\n\n${event(usage(9))}`)).toEqual([5, 9]);
  });

  it("leaves out the first line of a tail cut between a line's CR and its LF", () => {
    // The cut left "\n" of `event: thread.x\r\n`: no blank line, so no event starts there.
    const tail = `\ndata: ${usage(1881)}\n\n${event(usage(100))}`;
    expect(
      sseChunks(sseEvents(tail, true)).map(
        (c) => (c.data.usage as { completion_tokens: number }).completion_tokens,
      ),
    ).toEqual([100]);
  });
});

describe("a stream read as it passes", () => {
  const chat: Asked = { choices: 1, audio: false, tools: false, chat: true, shape: "choices" };
  /** `body` fed to the reader in pieces of `size` bytes. */
  const readIn = (body: Buffer, size = 16 * 1024) => {
    const read = createSseFacts([], chat);
    for (let at = 0; at < body.length; at += size) read.add(body.subarray(at, at + size));
    return read.facts();
  };

  it("stops at an event longer than it holds, keeping what came before: no usage made unknown", () => {
    // The usage and `Hi.` before it are what Node's client read (the event is never ended);
    // taken as unknown, the job's charge was bounded by the lock alone, partially verified.
    const body = Buffer.concat([
      Buffer.from(`${event(text("Hi."))}${event(usage(4000))}data: `),
      Buffer.alloc(9 * 1024 * 1024, "x"),
    ]);
    expect(readIn(body)).toMatchObject({ answerBytes: 3, usage: { completionTokens: 4000 } });
  });

  it("holds no comment or other field whole, and reads the events after it", () => {
    const long = (field: string) => `${field}${"y".repeat(3 * 1024 * 1024)}\n`;
    const body = Buffer.from(
      `${long(": ")}${long("x-pad: ")}${event(text("Hi."))}${long("event: ")}${event(usage(3))}${event(usage(5))}`,
    );
    // The named event's usage is one some clients read: the last every client read is 5.
    expect(readIn(body)).toMatchObject({ answerBytes: 3, usage: { completionTokens: 5 } });
  });

  it("stops where Python's SDK fails and Node's reads on: a line that is no UTF-8, a chunk its json refuses", () => {
    // Python's SDK decodes each line strictly (a comment's too) and parses each chunk with
    // `json`; Node's reads U+FFFD and parses with `JSON.parse`. Text after such a line or chunk
    // is one client's, and its usage too: counted, 3,000 bytes of it lifted the bound of `Hi.`.
    const hi = event(text("Hi."));
    const after = `${event(text("x".repeat(3000)))}${event(usage(3003))}${event("[DONE]")}`;
    const bytes = (...parts: (string | number[])[]) =>
      Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p))));
    const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
    for (const body of [
      bytes(hi, ": ", [0xff], "\n", after),
      // A character cut short at the line's end, an overlong `/`, a surrogate's bytes.
      bytes(hi, ": ", [0xe2, 0x82], "\n", after),
      bytes(hi, "data: ", [0xc0, 0xaf], "\n\n", after),
      bytes(hi, ": ", [0xed, 0xa0, 0x80], "\r\n", after),
      // Past the 256 bytes a comment line keeps.
      bytes(hi, `: ${"-".repeat(5000)}`, [0xff], "\n", after),
      bytes(hi, event(chunk({ choices: [], pad: "P" }).replace('"P"', deep(600))), after),
      // Past what a Python client on a deep stack, a debug build or the pure-Python scanner reads.
      bytes(hi, event(chunk({ choices: [], pad: "P" }).replace('"P"', deep(300))), after),
      bytes(hi, event(chunk({ choices: [], pad: "P" }).replace('"P"', "1".repeat(5000))), after),
    ]) {
      for (const size of [1, 2, 3, 7, body.length]) {
        expect(readIn(body, size)).toMatchObject({
          answerBytes: 3,
          usage: { completionTokens: null },
        });
      }
    }
    // Characters of two to four bytes cut by a chunk's edge, numbers Python reads: all read.
    const honest = bytes(
      event(text("é€😀".repeat(100))),
      event(chunk({ choices: [], pad: "P" }).replace('"P"', `${"1".repeat(5000)}.5`)),
      `: ${"€".repeat(400)}\n`,
      after,
    );
    for (const size of [1, 2, 3, 5, 7, honest.length]) {
      expect(readIn(honest, size)).toMatchObject({
        answerBytes: 900 + 3000,
        usage: { completionTokens: 3003 },
      });
    }
  });

  // Python's SDK cuts a stream's bytes into events after `\r\r` (or `\n\n`, `\r\n\r\n`) as they
  // come, and splits each into lines alone: bytes coming apart between `\r\r` and `\n` (the
  // operator pausing between two writes) make the LF a blank line of its own, where Node's SDK
  // and this reader take `\r\n` as one line end. Once an `id:` was given, Python's SDK hands on
  // an event of no data at that blank line, which is no JSON: its stream fails, Node's reads
  // on. Counted, 3,000 bytes after it and their usage were priced for the Python customer's
  // exception.
  it("stops at an LF after a line end and a blank line by CR once an id was given", () => {
    const hi = `id: 1\ndata: ${text("Hi.")}\r\r`;
    const after = `\n${event(text("x".repeat(3000)))}${event(usage(3003))}${event("[DONE]")}`;
    const body = Buffer.from(hi + after);
    for (const size of [1, 2, 3, 7, body.length]) {
      expect(readIn(body, size)).toMatchObject({
        answerBytes: 3,
        usage: { completionTokens: null },
      });
      const count = createDataCount();
      for (let i = 0; i < body.length; i += size) count.add(body.subarray(i, i + size));
      expect(count.bytes).toBe(Buffer.byteLength(text("Hi.")));
    }
    // No id, an empty one, or the blank line by CRLF or LF: one blank line to every client.
    for (const honest of [
      hi.replace("id: 1\n", "") + after,
      hi.replace("id: 1", "id:") + after,
      hi.replace("\r\r", "\r\n\r\n") + after.slice(1),
      hi.replace("\r\r", "\n\r\n") + after.slice(1),
    ]) {
      expect(readIn(Buffer.from(honest), 5)).toMatchObject({
        answerBytes: 3003,
        usage: { completionTokens: 3003 },
      });
    }
  });

  // The OpenAI SDKs before April 2024 (Python's before 1.16.2, over httpx 0.24 on; Node's before
  // 4.32.2) split a stream's lines where Python's `str.splitlines()` does: at VT, FF, FS, GS, RS,
  // NEL and U+2028/U+2029 too. A chunk with U+2028 in its text (valid JSON, and sent so by honest
  // upstreams) is cut in two and fails their stream; a comment holding one can start a line only
  // they read. Later SDKs read on. Read as those alone, `Hi.`, a U+2028, then 3,000 bytes and a
  // usage of 3,003 were priced, verified, for the older client's exception: the usage after such
  // a line is unknown, and what the later clients read bounds the charge.
  it("takes a usage after a line older SDKs split apart as unknown, bounded by the text read", () => {
    const hi = event(text("Hi."));
    const after = `${event(text("x".repeat(3000)))}${event(usage(3003))}${event("[DONE]")}`;
    const cases: [string, number][] = [
      // `a`, the character's bytes (three, three, two), `b`.
      [hi + event(text("a\u2028b")) + after, 3008],
      [hi + event(text("a\u2029b")) + after, 3008],
      [hi + event(text("a\u0085b")) + after, 3007],
      ...["\u000b", "\u000c", "\u001c", "\u001d", "\u001e", "\u2028"].map((c): [string, number] => [
        `${hi}: x${c}data: {}\n${after}`,
        3003,
      ]),
      [`${hi}: ${"-".repeat(5000)}\u2029\n${after}`, 3003],
    ];
    for (const [body, bytes] of cases) {
      const whole = Buffer.from(body);
      for (const size of [1, 2, 3, 7, whole.length]) {
        expect(readIn(whole, size)).toMatchObject({
          answerBytes: bytes,
          usage: { completionTokens: null },
        });
      }
    }
    // After the usage, or characters of like bytes (U+2027, U+00A5, U+20A8): the usage stands.
    for (const body of [
      `${hi}${after.replace(event("[DONE]"), event(text("a\u2028b")) + event("[DONE]"))}`,
      `${hi}${event(text("\u2027\u00a5\u20a8"))}${after}`,
    ]) {
      const whole = Buffer.from(body);
      for (const size of [1, 2, 3, 7, whole.length]) {
        expect(readIn(whole, size)).toMatchObject({ usage: { completionTokens: 3003 } });
      }
    }
  });

  it("reads a Responses stream's usage past such a line: its SDKs split at CR and LF alone", () => {
    const said = "a\u2028b";
    const response = {
      status: "completed",
      model: "qwen3-8b",
      output: [
        { type: "message", role: "assistant", content: [{ type: "output_text", text: said }] },
      ],
      usage: { input_tokens: 12, output_tokens: 3, total_tokens: 15 },
    };
    const body = Buffer.from(
      event(JSON.stringify({ type: "response.output_text.delta", delta: said })) +
        event(JSON.stringify({ type: "response.completed", response })),
    );
    const read = createSseFacts([], { ...chat, chat: false, shape: "output" });
    read.add(body);
    expect(read.facts()).toMatchObject({ answerBytes: 5, usage: { completionTokens: 3 } });
  });

  it("reads on past `choices` of another kind, which no client's loop throws on", () => {
    const body = Buffer.from(
      `${event(text("x".repeat(100)))}${event(chunk({ choices: "ab", usage: { prompt_tokens: 7, completion_tokens: 100, total_tokens: 107 } }))}${event(usage(3))}${event("[DONE]")}`,
    );
    expect(readIn(body, 7)).toMatchObject({ answerBytes: 100, usage: { completionTokens: 3 } });
  });
});

describe("createDataCount", () => {
  it("counts the values of data lines only, however the stream is cut into chunks", () => {
    const stream =
      `: ${"x".repeat(5000)}\nevent: message\nid: 7\ndata: {"a":1}\r\n\r\n` +
      `\uFEFFdata:ab\rdata\ndatum: zz\n:data: no\n\n`;
    const bytes = Buffer.from(stream);
    for (const size of [1, 2, 3, 7, bytes.length]) {
      const count = createDataCount();
      for (let i = 0; i < bytes.length; i += size) count.add(bytes.subarray(i, i + size));
      // Nothing: the comment, `event:`, `id:`, `datum:` and `:data:` lines are none, `{"a":1}`
      // is the data of an event with a name, which Node's SDK 4 hands on as no chunk, and
      // `ab`'s line opens with a byte-order mark, a field Python's SDK does not read.
      expect(count.bytes).toBe(0);
    }
  });

  it("counts nothing after where Python's SDK fails: a blank line once an id was given, or after a retry", () => {
    const long = "p".repeat(900);
    for (const [stream, expected] of [
      [`data: ab\n\nid: 1\n\ndata: ${long}\n\n`, 2],
      [`id: 1\ndata: ab\n\n\r\ndata: ${long}\n\n`, 2],
      [`data: ab\n\nretry: 1_000\n\ndata: ${long}\n\n`, 2],
      // A retry the event with data gave ends with it: the blank line after is none.
      [`data: ab\nretry: 1_000\n\n\ndata: cd\n\n`, 4],
      [`data: ab\n\nretry: ${"9".repeat(100)}\n\ndata: ${long}\n\n`, 2],
      [`data: ab\n\nevent: x\n\ndata: ${long}\n\n`, 2],
      // An id emptied again, one holding NUL, a retry no number: Python passes the line over.
      [`data: ab\n\nid: 1\nid\n\ndata: cd\n\n`, 4],
      [`data: ab\n\nid: 1\0\n\ndata: cd\n\n`, 4],
      [`data: ab\n\nretry: soon\n\ndata: cd\n\n`, 4],
    ] as const) {
      const bytes = Buffer.from(stream);
      for (const size of [1, 2, 5, bytes.length]) {
        const count = createDataCount();
        for (let i = 0; i < bytes.length; i += size) count.add(bytes.subarray(i, i + size));
        expect([stream, count.bytes]).toEqual([stream, expected]);
      }
    }
  });

  it("counts nothing after a line that is no UTF-8, which Python's SDK fails at", () => {
    const long = "p".repeat(900);
    for (const [parts, expected] of [
      [["data: ab\n\n: ", [0xff], `\n\ndata: ${long}\n\n`], 2],
      [["data: ab\n\nx-pad: ", [0xe2, 0x82], `\r\n\r\ndata: ${long}\n\n`], 2],
      [["data: ab", [0xc3], `\n\ndata: ${long}\n\n`], 0],
      [["data: ab\n\n: ", [0xe2, 0x82, 0xac], `\n\ndata: ${long}\n\n`], 902],
    ] as const) {
      const bytes = Buffer.concat(
        parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p))),
      );
      for (const size of [1, 2, 5, bytes.length]) {
        const count = createDataCount();
        for (let i = 0; i < bytes.length; i += size) count.add(bytes.subarray(i, i + size));
        expect([parts, size, count.bytes]).toEqual([parts, size, expected]);
      }
    }
  });

  it("counts no data of an event with a name, but a Responses API stream's own events", () => {
    const stream =
      `event: x\r\ndata: ${"p".repeat(900)}\r\n\r\ndata: abc\r\n\r\n` +
      `data: ${"q".repeat(700)}\nevent\n\n` +
      `event: response.output_text.delta\ndata: 12345\n\n` +
      `event:transcript.text.delta\ndata: 678\n\n` +
      `data: never ended\n`;
    const bytes = Buffer.from(stream);
    for (const size of [1, 2, 5, bytes.length]) {
      for (const [responses, expected] of [
        [false, 3],
        [true, 11],
      ] as const) {
        const count = createDataCount(responses);
        for (let i = 0; i < bytes.length; i += size) count.add(bytes.subarray(i, i + size));
        expect(count.bytes).toBe(expected);
      }
    }
  });
});

describe("pythonRefuses", () => {
  it("names JSON that Python's json fails on and JSON.parse reads: deep nesting, long integers", () => {
    const deep = (n: number) => `{"a":${"[".repeat(n - 1)}${"]".repeat(n - 1)}}`;
    expect(pythonRefuses(deep(256))).toBe(false);
    expect(pythonRefuses(deep(257))).toBe(true);
    expect(pythonRefuses(`{"a":${"1".repeat(4300)}}`)).toBe(false);
    expect(pythonRefuses(`{"a":${"1".repeat(4301)}}`)).toBe(true);
    expect(pythonRefuses(`{"a":-${"1".repeat(4301)}}`)).toBe(true);
    // A float Python reads, and digits or brackets inside a string.
    expect(pythonRefuses(`{"a":${"1".repeat(5000)}.5}`)).toBe(false);
    expect(pythonRefuses(`{"a":${"1".repeat(5000)}e2}`)).toBe(false);
    expect(pythonRefuses(`{"a":1e+${"1".repeat(5000)}}`)).toBe(false);
    expect(pythonRefuses(`{"a":"${"1".repeat(5000)}","b":"\\"${"[".repeat(600)}"}`)).toBe(false);
  });
});
