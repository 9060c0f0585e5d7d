import { describe, expect, it } from "vitest";
import { answerCharset, charsetFails } from "../src/recorder/answer-facts.js";
import {
  discrepancy,
  partiallyVerified,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { chatCompletionJson, chatStreamEvents, jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * The OpenAI Python SDK accepts httpx from 0.23, whose `Response.json()` (before 0.28) decodes an
 * answer naming a charset with that charset and parses the text; an SDK that read a stream by its
 * lines decoded them so too. Node's fetch reads UTF-8 whatever the content type names. Under
 * `charset=utf-16` such a Python client's read fails ("UTF-16 stream does not start with BOM"),
 * and under `charset=utf-8` a byte-order mark is kept and `json.loads` raises on it ("Unexpected
 * UTF-8 BOM"); read as Node's client read them, 3,000 bytes and their 3,000 tokens were priced,
 * verified, for the Python customer's exception (checked against httpx 0.23.3).
 */
describe("an answer read as the charset its content type names", () => {
  const h = useAdversaryHarness();
  const text = "x".repeat(3000);
  const json = chatCompletionJson(text, 3000);
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  const request = { messages: [{ role: "user", content: "hi" }], max_tokens: 8000 };
  const streamed = { ...request, stream: true, stream_options: { include_usage: true } };

  it("is no answer to a Python client that cannot decode it, and read as UTF-8 where it can", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const cases: [string, Buffer, Record<string, unknown>][] = [
      ["application/json; charset=utf-16", Buffer.from(json), request],
      ["application/json; charset=UTF-8", Buffer.concat([bom, Buffer.from(json)]), request],
      ['application/json; charset="cp037"', Buffer.from(json), request],
      ["text/event-stream; charset=utf-16", Buffer.from(chatStreamEvents(text, 3000)), streamed],
      // Read alike by every client: no charset, a UTF-8 or ASCII one, a mark without a charset.
      ["application/json", Buffer.concat([bom, Buffer.from(json)]), request],
      ["application/json; charset=utf-8", Buffer.from(json), request],
      ["application/json;charset=ISO-8859-1", Buffer.from(json), request],
      ["text/event-stream; charset=utf-8", Buffer.from(chatStreamEvents(text, 3000)), streamed],
    ];
    const ids: string[] = [];
    for (const [contentType, body, asked] of cases) {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 8000 });
      await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, asked, {
        contentType,
      });
      ids.push(plan.jobId);
    }
    const failed = discrepancy("charge.matches_price");
    expect(await c.verdicts(...ids)).toEqual([
      failed,
      failed,
      failed,
      failed,
      verified,
      verified,
      verified,
      verified,
    ]);
    const rows = await Promise.all(ids.map((id) => readJob(c.store, id)));
    expect(rows.map((r) => [r?.answerBytes, r?.completionTokens])).toEqual([
      [0, null],
      [0, null],
      [0, null],
      [0, null],
      [3000, 3000],
      [3000, 3000],
      [3000, 3000],
      [3000, 3000],
    ]);
  });

  // httpx takes a name Python does not know (an empty one too) as none and reads UTF-8;
  // `utf-8-sig` decodes UTF-8 and drops a byte-order mark, so `json.loads` reads the text.
  it("reads an empty charset as none, and a mark under utf-8-sig as UTF-8", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const cases: [string, Buffer][] = [
      ["application/json; charset=", Buffer.from(json)],
      ['application/json; charset=""', Buffer.from(json)],
      ["application/json; charset=utf-8-sig", Buffer.concat([bom, Buffer.from(json)])],
    ];
    const ids: string[] = [];
    for (const [contentType, body] of cases) {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 8000 });
      await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, request, {
        contentType,
      });
      ids.push(plan.jobId);
    }
    expect(await c.verdicts(...ids)).toEqual([verified, verified, verified]);
    const rows = await Promise.all(ids.map((id) => readJob(c.store, id)));
    expect(rows.map((r) => [r?.answerBytes, r?.completionTokens])).toEqual([
      [3000, 3000],
      [3000, 3000],
      [3000, 3000],
    ]);
  });

  // Not typed as events and past the 8 MiB held, such a body is counted by its data as it
  // passes: the charset was not looked at, and 9 MiB of data under `charset=utf-16` bounded a
  // charge its Python customer got an exception for, `partially_verified`.
  it("is no answer past 8 MiB, not typed as events, to a stream request", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const chunk = { choices: [{ index: 0, delta: { content: "w".repeat(9 * 1024 * 1024) } }] };
    const body = `data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`;
    const ids: string[] = [];
    for (const contentType of ["application/json; charset=utf-16", "application/json"]) {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 8000 });
      await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, streamed, {
        contentType,
      });
      ids.push(plan.jobId);
    }
    // Read as events without the charset, its usage (none) is unknown: bounded by its bytes.
    expect(await c.verdicts(...ids)).toEqual([
      discrepancy("charge.matches_price"),
      partiallyVerified,
    ]);
    const rows = await Promise.all(ids.map((id) => readJob(c.store, id)));
    expect(rows[0]?.answerBytes).toBe(0);
    expect(rows[1]?.answerBytes).toBeGreaterThan(9 * 1024 * 1024);
  });

  it("reads the charset as httpx does", () => {
    expect(answerCharset("application/json")).toBeNull();
    expect(answerCharset('application/json; CHARSET = "UTF-16"')).toBe("utf-16");
    expect(answerCharset("application/json;charset=utf-8;x=1")).toBe("utf-8");
    expect(charsetFails(null, true)).toBe(false);
    expect(charsetFails("utf-8", false)).toBe(false);
    expect(charsetFails("utf-8", true)).toBe(true);
    expect(charsetFails("us-ascii", false)).toBe(false);
    expect(charsetFails("utf-16le", false)).toBe(true);
    expect(answerCharset("application/json; charset=")).toBeNull();
    expect(answerCharset('application/json; charset=" "')).toBeNull();
    expect(charsetFails("utf-8-sig", true)).toBe(false);
  });
});
