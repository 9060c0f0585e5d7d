import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Where a stream's deltas put a choice or a tool call, as its client pieces the answer together:
 * a client keeps choices and calls in arrays by `index` (a call with none by its id, as Gemini
 * sends them), and a call's name given again replaces the one before. The operator writes the
 * stream: each shape below lifted the bound of its usage (`usage.consistent`) by text or calls
 * the caller never got, and the padded job was verified.
 */
describe("a stream's choices and calls, placed as its client places them", () => {
  const h = useAdversaryHarness();

  const filler = "x".repeat(3000);
  const tools = [{ type: "function", function: { name: "get_weather", parameters: {} } }];
  const usage = (completion: number) => ({
    prompt_tokens: 12,
    completion_tokens: completion,
    total_tokens: 12 + completion,
  });
  const chunk = (choices: unknown[], extra: object = {}) =>
    `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices, ...extra })}\n\n`;
  const calls = (...deltas: object[]) => chunk([{ index: 0, delta: { tool_calls: deltas } }]);
  const stream = (chunks: (string | Buffer)[], completion: number) =>
    Buffer.concat(
      [...chunks, chunk([], { usage: usage(completion) }), "data: [DONE]\n\n"].map((c) =>
        typeof c === "string" ? Buffer.from(c) : c,
      ),
    );
  const request = {
    messages: [{ role: "user", content: "weather?" }],
    max_tokens: 8000,
    stream: true,
    stream_options: { include_usage: true },
  };

  /** Each stream answered for its claimed completion tokens; the verdicts, and the rows. */
  async function judge(
    answers: { chunks: (string | Buffer)[]; completion: number; tools?: boolean }[],
  ) {
    const c = await h.scenario();
    await c.pinKey(1);
    const jobIds: string[] = [];
    for (const a of answers) {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: a.completion, maxTokens: 8000 });
      const body = stream(a.chunks, a.completion);
      const asked = a.tools === false ? request : { ...request, tools };
      await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, asked, {
        contentType: "text/event-stream",
      });
      jobIds.push(plan.jobId);
    }
    const rows = await Promise.all(jobIds.map((id) => readJob(c.store, id)));
    return {
      verdicts: await c.verdicts(...jobIds),
      rows: rows.map((r) => ({ answerBytes: r?.answerBytes, answerToolCalls: r?.answerToolCalls })),
    };
  }

  const failed = { verdict: "discrepancy", failing: ["usage.consistent"] };
  const verified = { verdict: "verified", failing: [] };

  it("counts a call named by its index and then by its id alone as one call", async () => {
    const opened = { index: 0, id: "call_1", type: "function", function: { name: "get_weather" } };
    // The deltas by id name the call again, as some upstreams do in each delta.
    const pieces = Array.from({ length: 30 }, (_, i) => ({
      id: "call_1",
      function: {
        arguments: filler.slice(i * 100, i * 100 + 100),
        ...(i ? {} : { name: "get_weather" }),
      },
    }));
    // One call: its name (11 bytes), its arguments (3,000), 16 tokens for its format and 16
    // for special tokens: 3,043 at most. Two calls, each named once, made it 3,070.
    const byIndexThenId = [calls(opened), ...pieces.map((p) => calls(p))];
    // The other way round: named by its id first, then by index and id.
    const byIdThenIndex = [
      calls({ id: "call_1", type: "function", function: { name: "get_weather" } }),
      ...pieces.map((p) => calls({ ...p, index: 0 })),
    ];
    // Gemini's parallel calls, each whole under an id of its own and no index: two calls.
    const parallel = [
      calls({ id: "a", type: "function", function: { name: "get_weather", arguments: "{}" } }),
      calls({ id: "b", type: "function", function: { name: "get_weather", arguments: "{}" } }),
    ];
    expect(
      await judge([
        { chunks: byIndexThenId, completion: 3055 },
        { chunks: byIdThenIndex, completion: 3055 },
        { chunks: byIndexThenId, completion: 3043 },
        { chunks: parallel, completion: 26 + 32 + 16 },
      ]),
    ).toEqual({
      verdicts: [failed, failed, verified, verified],
      rows: [
        { answerBytes: 3011, answerToolCalls: 1 },
        { answerBytes: 3011, answerToolCalls: 1 },
        { answerBytes: 3011, answerToolCalls: 1 },
        { answerBytes: 26, answerToolCalls: 2 },
      ],
    });
  });

  it("counts a call's name given again in each delta once", async () => {
    // Node's SDK sets the name each delta gives; the caller got `get_weather` once.
    const repeated = Array.from({ length: 300 }, () =>
      calls({ index: 0, function: { name: "get_weather", arguments: "x" } }),
    );
    expect(await judge([{ chunks: repeated, completion: 3000 }])).toEqual({
      verdicts: [failed],
      rows: [{ answerBytes: 311, answerToolCalls: 1 }],
    });
  });

  it("reads a call as the type its deltas last gave it, and a call of no type a client runs as none", async () => {
    const opened = { index: 0, id: "a", type: "function", function: { name: "get_weather" } };
    const args = { index: 0, function: { arguments: filler } };
    // Named a function, then given a type no client runs (Node's SDK keeps the last type given,
    // and its tool runner skips the call): its 3,011 bytes and its allowance are none.
    const retyped = [calls(opened), calls(args), calls({ index: 0, type: "retrieval" })];
    // A falsy type given later is none: Node's SDK keeps the call a function's.
    const falsy = [calls(opened), calls(args), calls({ index: 0, type: 0 })];
    // A function call whose custom tool's input is padded: its client reads the function.
    const custom = { index: 0, custom: { name: "get_weather", input: filler } };
    const beside = [
      calls(opened),
      calls({ index: 0, function: { arguments: "{}" } }),
      calls(custom),
    ];
    expect(
      await judge([
        { chunks: retyped, completion: 3000 },
        { chunks: beside, completion: 3000 },
        { chunks: [calls(opened), calls(args)], completion: 3000 },
        { chunks: falsy, completion: 3000 },
      ]),
    ).toEqual({
      verdicts: [failed, failed, verified, verified],
      rows: [
        { answerBytes: 0, answerToolCalls: 0 },
        { answerBytes: 13, answerToolCalls: 1 },
        { answerBytes: 3011, answerToolCalls: 1 },
        { answerBytes: 3011, answerToolCalls: 1 },
      ],
    });
  });

  it("reads a stream longer than the proxy holds by its deltas' text, not by its JSON", async () => {
    const hi = chunk([{ index: 0, delta: { role: "assistant", content: "Hi." } }]);
    // 3,000 chunks of no text, some 330 KB of `data:` values: past the 64 KiB tail the proxy
    // keeps, the answer was bounded by every byte of them, JSON and all, and 7,000 tokens
    // claimed for `Hi.` were verified.
    const empty = Array.from({ length: 3000 }, () => chunk([{ index: 0, delta: { content: "" } }]));
    // An honest long answer: 3,000 deltas of one character.
    const words = Array.from({ length: 3000 }, () =>
      chunk([{ index: 0, delta: { content: "w" } }]),
    );
    expect(
      await judge([
        { chunks: [hi, ...empty], completion: 7000, tools: false },
        { chunks: words, completion: 3000, tools: false },
        { chunks: words, completion: 7000, tools: false },
      ]),
    ).toEqual({
      verdicts: [failed, verified, failed],
      rows: [
        { answerBytes: 3, answerToolCalls: 0 },
        { answerBytes: 3000, answerToolCalls: 0 },
        { answerBytes: 3000, answerToolCalls: 0 },
      ],
    });
  });

  it("counts no text after a chunk with no choices, nor in a line Python's SDK does not read", async () => {
    const hi = chunk([{ index: 0, delta: { role: "assistant", content: "Hi." } }]);
    const padding = chunk([{ index: 0, delta: { content: filler } }]);
    // Node's stream helper fails at a chunk whose `choices` is no array, and a loop reading
    // `chunk.choices[0]` throws there: the text after it only a guarded Python loop shows.
    const noChoices = `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b" })}\n\n`;
    expect(
      await judge([
        { chunks: [hi, noChoices, padding], completion: 3003, tools: false },
        // Python's SDK keeps a line's byte-order mark: `\uFEFFdata` is no field it reads.
        { chunks: [hi, `\uFEFF${padding}`], completion: 3003, tools: false },
        { chunks: [hi, padding], completion: 3003, tools: false },
      ]),
    ).toEqual({
      // The usage after the chunk with no choices is none its client read either: the charge
      // is bounded by the answer's three bytes.
      verdicts: [{ verdict: "discrepancy", failing: ["charge.matches_price"] }, failed, verified],
      rows: [
        { answerBytes: 3, answerToolCalls: 0 },
        { answerBytes: 3, answerToolCalls: 0 },
        { answerBytes: 3003, answerToolCalls: 0 },
      ],
    });
  });

  it("counts no text after a line or chunk Python's SDK fails at and Node's reads", async () => {
    const hi = chunk([{ index: 0, delta: { role: "assistant", content: "Hi." } }]);
    const padding = chunk([{ index: 0, delta: { content: filler } }]);
    // Python's SDK decodes each line strictly, a comment's too (`UnicodeDecodeError`), and
    // parses each chunk with `json`, which refuses deep nesting (`RecursionError`) and an
    // integer of more than 4,300 digits (`ValueError`); Node's reads on. The padding after
    // was one client's: a Python customer saw `Hi.` and an error, charged 3,003 tokens, verified.
    const notUtf8 = Buffer.from([0x3a, 0x20, 0xff, 0x0a]);
    const pad = (value: string) => chunk([], { pad: "P" }).replace('"P"', value);
    const undecided = { verdict: "discrepancy", failing: ["charge.matches_price"] };
    expect(
      await judge([
        { chunks: [hi, notUtf8, padding], completion: 3003, tools: false },
        {
          chunks: [hi, pad(`${"[".repeat(1200)}${"]".repeat(1200)}`), padding],
          completion: 3003,
          tools: false,
        },
        { chunks: [hi, pad("1".repeat(5000)), padding], completion: 3003, tools: false },
      ]),
    ).toEqual({
      // The usage after is none a Python client read: the charge is bounded by `Hi.`.
      verdicts: [undecided, undecided, undecided],
      rows: [
        { answerBytes: 3, answerToolCalls: 0 },
        { answerBytes: 3, answerToolCalls: 0 },
        { answerBytes: 3, answerToolCalls: 0 },
      ],
    });
  });

  it("counts no choice or call at an index that is no place in an array", async () => {
    const hi = { index: 0, delta: { role: "assistant", content: "Hi." } };
    const choiceBeside = [chunk([hi, { index: 0.5, delta: { content: filler } }])];
    const callBeside = (index: number | string) => [
      calls(
        { index: 0, id: "a", type: "function", function: { name: "get_weather", arguments: "{}" } },
        { index, id: "b", type: "function", function: { name: "get_weather", arguments: filler } },
      ),
    ];
    expect(
      await judge([
        { chunks: choiceBeside, completion: 3000, tools: false },
        { chunks: callBeside(0.5), completion: 3000 },
        { chunks: callBeside(-1), completion: 3000 },
        // Past the last index an array has (2^32 - 2), a key is a property beside its items too.
        { chunks: callBeside(2 ** 32 - 1), completion: 3000 },
        { chunks: callBeside(String(2 ** 32 - 1)), completion: 3000 },
      ]),
    ).toEqual({
      verdicts: [failed, failed, failed, failed, failed],
      rows: [
        { answerBytes: 3, answerToolCalls: 0 },
        { answerBytes: 13, answerToolCalls: 1 },
        { answerBytes: 13, answerToolCalls: 1 },
        { answerBytes: 13, answerToolCalls: 1 },
        { answerBytes: 13, answerToolCalls: 1 },
      ],
    });
  });
});
