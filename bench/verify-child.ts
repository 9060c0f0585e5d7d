/**
 * A verifier in a process of its own, as each `serve` runs one: `runUntilSettled` over every job
 * of DATABASE_URL with an RPC pool of its own at RPC_RATE_LIMIT requests/s. Prints one JSON line
 * when it starts verifying and one when every job is final, with the wall-clock times, so the
 * parent measures the work alone (no process start-up) across several of them.
 */
import { createRpcPool } from "../src/chain/rpc-pool.js";
import { openStore } from "../src/db/open.js";
import { createLogger } from "../src/log.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const store = await openStore({
  DATABASE_URL: env("DATABASE_URL"),
  DATABASE_POOL_SIZE: 4,
  DATABASE_STATEMENT_TIMEOUT_MS: 30_000,
  DATABASE_SSLMODE: undefined,
  DATABASE_SSL_ROOT_CERT: undefined,
});
const rateLimitPerSec = Number(env("RPC_RATE_LIMIT"));
const rpc = createRpcPool({
  endpoints: [{ url: env("RPC_URL"), rateLimitPerSec, concurrency: 8, timeoutMs: 15_000 }],
  statusBatchSize: 256,
});
const verifier = createVerifier({
  store,
  rpc,
  profile: localnetProfile,
  log: createLogger({ level: "silent" }),
  // The verifier's own claim size, as `serve` runs it.
  options: { pollIntervalMs: 250, fetchConcurrency: 8 },
});
const startedAt = Date.now();
process.stdout.write(`${JSON.stringify({ event: "started", at: startedAt })}\n`);
const summary = await verifier.runUntilSettled(
  { from: 0, to: Date.now() + 3_600_000 },
  { timeoutMs: 10 * 60_000 },
);
process.stdout.write(
  `${JSON.stringify({ event: "done", at: Date.now(), status: summary.status, verified: summary.byVerdict.verified })}\n`,
);
await verifier.stop();
await rpc.close();
await store.close();
