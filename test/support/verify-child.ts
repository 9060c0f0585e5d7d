/**
 * A verifier in its own process, for crash tests: runs `runUntilSettled` over a file database
 * and reports each step on stdout as a JSON line, so the parent can SIGKILL it at a chosen event.
 */
import { createRpcPool } from "../../src/chain/rpc-pool.js";
import { openSqliteStore } from "../../src/db/client.js";
import { migrateStore } from "../../src/db/migrate.js";
import { createLogger } from "../../src/log.js";
import { createVerifier } from "../../src/verify/engine.js";
import { localnetProfile } from "../../src/verify/profiles.js";

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const emit = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`);

const store = openSqliteStore(env("VERIFY_DB"));
migrateStore(store);
const pool = createRpcPool({
  endpoints: [{ url: env("VERIFY_RPC"), rateLimitPerSec: 500, concurrency: 8, timeoutMs: 5000 }],
});
const rpc = {
  getSignatureStatuses: async (signatures: string[]) => {
    emit({ event: "statuses", count: signatures.length });
    return pool.getSignatureStatuses(signatures);
  },
  getTransaction: async (signature: string) => {
    emit({ event: "fetch", signature });
    return pool.getTransaction(signature);
  },
  getSlot: () => pool.getSlot(),
};
const verifier = createVerifier({
  store,
  rpc,
  profile: localnetProfile,
  log: createLogger({ level: "silent" }),
  owner: env("VERIFY_OWNER"),
  options: {
    pollIntervalMs: 20,
    leaseMs: Number(env("VERIFY_LEASE_MS")),
    claimBatchSize: Number(env("VERIFY_CLAIM_BATCH")),
    fetchConcurrency: 1,
  },
});
emit({ event: "ready" });
const summary = await verifier.runUntilSettled(
  {},
  { timeoutMs: 30_000, onProgress: (p) => emit({ event: "progress", ...p }) },
);
emit({ event: "done", summary });
await pool.close();
store.close();
