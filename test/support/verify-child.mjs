/**
 * A verifier in its own process, for crash tests: runs `runUntilSettled` over a file database
 * and reports each step on stdout as a JSON line, so the parent can SIGKILL it at a chosen event.
 * Plain JavaScript over the program's modules named in VERIFY_MODULES (their URLs by path under
 * src/, see `programModules`): the program compiled once for the run starts in a fraction of
 * the time the sources take to compile in every such process.
 */
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const modules = JSON.parse(env("VERIFY_MODULES"));
const { createRpcPool } = await import(modules["chain/rpc-pool"]);
const { openSqliteStore } = await import(modules["db/client"]);
const { migrateStore } = await import(modules["db/migrate"]);
const { createLogger } = await import(modules.log);
const { createVerifier } = await import(modules["verify/engine"]);
const { localnetProfile } = await import(modules["verify/profiles"]);
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const store = openSqliteStore(env("VERIFY_DB"));
migrateStore(store);
const pool = createRpcPool({
  endpoints: [{ url: env("VERIFY_RPC"), rateLimitPerSec: 500, concurrency: 8, timeoutMs: 5000 }],
});
const rpc = {
  getSignatureStatuses: async (signatures) => {
    emit({ event: "statuses", count: signatures.length });
    return pool.getSignatureStatuses(signatures);
  },
  getTransaction: async (signature) => {
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
