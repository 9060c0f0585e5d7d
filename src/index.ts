/**
 * Library entry point: embed decentral-audit in another Node service, or use its parts
 * (transaction facts, profiles, checks) on their own. The CLI is `decentral-audit`.
 */
export { type AppDeps, createApp } from "./api/app.js";
export { type AuditClient, createAuditClient } from "./api/client.js";
export { parseTransaction } from "./chain/parse-transaction.js";
export { createRpcPool, type RpcPool, rpcPoolFromConfig } from "./chain/rpc-pool.js";
export type { TokenChange, TransactionFacts } from "./chain/transaction-facts.js";
export { type Config, ConfigError, loadConfig } from "./config.js";
export { openSqliteStore, type SqliteStore, type Store } from "./db/client.js";
export { migrateStore } from "./db/migrate.js";
export { type OpenStoreOptions, openStore } from "./db/open.js";
export type { PgStore } from "./db/pg/client.js";
export { AppError, type ErrorCode } from "./errors.js";
export { type Service, startService } from "./main.js";
export { formatUnits, parseUnits } from "./money.js";
export { createRecordingFetch } from "./recorder/fetch-wrapper.js";
export { type Receipt, recordReceipt } from "./recorder/receipts.js";
export { createVerifier, type Verifier } from "./verify/engine.js";
export { builtinProfiles, loadProfile, type Profile, parseProfile } from "./verify/profiles.js";
