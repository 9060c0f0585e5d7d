import { type SQL, sql } from "drizzle-orm";

/**
 * The database server's clock in epoch ms (`clock_timestamp()`, not the transaction's start):
 * the one clock every host reads alike, for leases and for "due now" (see
 * `LockStore.sharedNow`).
 */
export const serverNowMs = (): SQL<number> =>
  sql<number>`(extract(epoch FROM clock_timestamp()) * 1000)::bigint`;

/**
 * "Due now" for a job written by a host whose clock reads `now`: never later than the server's
 * now, which the verifiers' claims follow on every host. By the writer's clock alone, a host 3
 * minutes ahead made the job due 3 minutes late.
 */
export const dueNowMs = (now: number): SQL<number> =>
  sql<number>`least(${now}::bigint, ${serverNowMs()})`;
