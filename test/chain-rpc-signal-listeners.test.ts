import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, expect, it } from "vitest";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";

// `serve` on a quorum of three endpoints (RPC_CONCURRENCY 4 each) printed
// "MaxListenersExceededWarning: Possible EventTarget memory leak detected. 11 abort listeners
// added to [AbortSignal]" on stderr: every call in flight listens on its caller's signal (twice),
// and a ledger round or escrow scan sharing one signal over more than five calls tripped Node's
// default limit of 10. Those listeners are the normal case, not a leak.

let server: Server | undefined;
let pool: RpcPool | undefined;
afterEach(async () => {
  await pool?.close();
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
});

it("many calls in flight on one caller's signal raise no MaxListenersExceededWarning", async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () =>
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", id: 1, result: 4242 }));
      }, 50),
    );
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  pool = createRpcPool({
    endpoints: [{ url, rateLimitPerSec: 1000, concurrency: 16, timeoutMs: 2000 }],
  });
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on("warning", onWarning);
  try {
    const round = new AbortController(); // as a ledger round makes one, limit untouched
    const slots = await Promise.all(
      Array.from({ length: 12 }, () => pool!.getSlot("finalized", { signal: round.signal })),
    );
    expect(slots).toEqual(Array(12).fill(4242));
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off("warning", onWarning);
  }
  expect(warnings.filter((w) => w.includes("MaxListeners"))).toEqual([]);
});
