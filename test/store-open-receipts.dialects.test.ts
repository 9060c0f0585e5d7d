import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { ownerName, thisHost } from "../src/host-identity.js";
import { createOpenReceiptSweep } from "../src/recorder/open-receipts.js";
import { createOpenReceiptStore } from "../src/store/open-receipts.js";
import { createReceiptsStore, type Receipt } from "../src/store/receipts.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { address, capturedLogger, jobId, signature } from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/** An open capture as the proxy writes it before a stream's first byte. */
function openCapture(receiptWriter?: string): Receipt {
  return {
    jobId: jobId(),
    escrowTx: signature(),
    settlementTx: null,
    worker: address(),
    creditsRemainingUnits: null,
    model: "m",
    promptTokens: null,
    completionTokens: null,
    totalTokens: null,
    stream: true,
    httpStatus: 200,
    latencyMs: null,
    ttfbMs: null,
    captureState: "open",
    ...(receiptWriter === undefined ? {} : { receiptWriter }),
  };
}

/** The owner name of a process of this host that has exited. */
function deadWriter(): string {
  const { pid } = spawnSync(process.execPath, ["-e", ""]);
  return `${thisHost()}/${pid}/proxy`;
}

describe.each(dialects)("open captures of dead proxies on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  async function record(store: Store, receipts: Receipt[], now = 1) {
    await createReceiptsStore(store).record(receipts, "proxy", { now });
  }

  it("names the writer while open, clears it on completion", async () => {
    const store = await stores.open();
    const writer = ownerName("proxy");
    const r = openCapture(writer);
    await record(store, [r]);
    expect((await readJob(store, r.jobId))?.receiptWriter).toBe(writer);
    expect(await createOpenReceiptStore(store).writers()).toEqual([writer]);
    await record(store, [{ ...r, totalTokens: 3, latencyMs: 9, captureState: "complete" }], 2);
    expect(await readJob(store, r.jobId)).toMatchObject({
      captureState: "complete",
      receiptWriter: null,
    });
    expect(await createOpenReceiptStore(store).writers()).toEqual([]);
  });

  it("aborts the open captures of a dead process of this host, and only those", async () => {
    const store = await stores.open();
    const dead = deadWriter();
    const killed = [openCapture(dead), openCapture(dead)];
    const live = openCapture(ownerName("proxy"));
    const elsewhere = openCapture("another-host/123/proxy");
    const unnamed = openCapture();
    const finished = openCapture(dead);
    await record(store, [...killed, live, elsewhere, unnamed, finished]);
    await record(store, [{ ...finished, latencyMs: 50, captureState: "complete" }], 2);
    expect((await createOpenReceiptStore(store).writers()).sort()).toEqual(
      [dead, live.receiptWriter, elsewhere.receiptWriter].sort(),
    );

    const { log, lines } = capturedLogger();
    const sweep = createOpenReceiptSweep({ store, log, now: () => 7 });
    sweep.start();
    await sweep.stop();

    for (const r of killed) {
      expect(await readJob(store, r.jobId)).toMatchObject({
        captureState: "aborted",
        receiptWriter: null,
        latencyMs: null,
        totalTokens: null,
        updatedAt: 7,
      });
    }
    // A live writer streams on; another host's, or a capture that names none, cannot be judged.
    for (const r of [live, elsewhere, unnamed]) {
      expect((await readJob(store, r.jobId))?.captureState).toBe("open");
    }
    expect(await readJob(store, finished.jobId)).toMatchObject({
      captureState: "complete",
      latencyMs: 50,
    });
    const logged = lines.map((l) => JSON.parse(l)).find((l) => l.receipts !== undefined);
    expect(logged).toMatchObject({
      msg: "open receipts of dead processes aborted",
      receipts: 2,
      writers: [dead],
    });
    // Nothing left to end: a second sweep writes nothing.
    expect(await createOpenReceiptStore(store).abort([dead], 8)).toBe(0);
  });
});
