import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { ingestReceiptsVia } from "../src/recorder/ingest.js";
import { maxAnswerCount } from "../src/recorder/receipt-input.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { wireReceipt } from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * What a plain receipt's sender counted of the answer (`answer_bytes`, `answer_tool_calls`,
 * `prediction_sent`) and the usage's hidden tokens are stored on either database as sent, up to
 * the largest count a receipt may name: `usage.consistent` reads them as it reads the proxy's.
 */

const log = createLogger({ level: "silent" });

describe.each(dialects)("the answer's facts of an ingested receipt on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("are stored as sent, the largest count included, and refused by name past it", async () => {
    const store = await stores.open();
    const writer = createReceiptWriter(store, { log });
    try {
      const sent = wireReceipt({
        answer_bytes: maxAnswerCount,
        answer_tool_calls: 3,
        prediction_sent: false,
        usage: {
          prompt_tokens: 12,
          completion_tokens: 640,
          total_tokens: 652,
          reasoning_tokens: 600,
          rejected_prediction_tokens: 0,
        },
      });
      const beyond = wireReceipt({ answer_bytes: maxAnswerCount + 1 });
      const results = await ingestReceiptsVia(writer, [sent, beyond], "ingest");
      expect(results.map((r) => r.status)).toEqual(["created", "rejected"]);
      expect(results[1]).toMatchObject({ field: "answer_bytes" });
      expect(await readJob(store, sent.job_id as string)).toMatchObject({
        answerBytes: maxAnswerCount,
        answerToolCalls: 3,
        predictionSent: false,
        completionTokens: 640,
        reasoningTokens: 600,
        rejectedPredictionTokens: 0,
      });
    } finally {
      await writer.close();
    }
  });
});
