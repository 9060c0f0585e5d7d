import { type SQL, sql } from "drizzle-orm";
import type { PgExecutor } from "./executor.js";

/**
 * The database server's clock in epoch ms (`clock_timestamp()`, not the transaction's start):
 * the one clock every host reads alike, for leases and for "due now" (see
 * `LockStore.sharedNow`).
 */
export const serverNowMs = (): SQL<number> =>
  sql<number>`(extract(epoch FROM clock_timestamp()) * 1000)::bigint`;

/** The server's clock now (`serverNowMs`), read on `executor`. */
export async function readServerNowMs(executor: PgExecutor): Promise<number> {
  const result = await executor.execute<{ now: string }>(sql`SELECT ${serverNowMs()}::text AS now`);
  return Number(result.rows[0]?.now);
}

/**
 * "Due now" for a job written by a host whose clock reads `now`: never later than the server's
 * now, which the verifiers' claims follow on every host. By the writer's clock alone, a host 3
 * minutes ahead made the job due 3 minutes late.
 */
export const dueNowMs = (now: number): SQL<number> =>
  sql<number>`least(${now}::bigint, ${serverNowMs()})`;

/**
 * A host clock within this of the server's (past half the round trip that read it) is taken to
 * agree with it: the reading is no better than that round trip, and a shift that small moves
 * no wait a user sees.
 */
const CLOCKS_AGREE_MS = 1_000;

/**
 * How far the server's clock is ahead of this host's (`Date.now`), in ms, read over one round
 * trip on `executor` (against the middle of it); 0 when the two agree (`CLOCKS_AGREE_MS`). A
 * time this host read, plus the shift, is that moment on the server's clock.
 */
export async function serverClockShiftMs(executor: PgExecutor): Promise<number> {
  const before = Date.now();
  const server = await readServerNowMs(executor);
  const after = Date.now();
  const shift = server - Math.round((before + after) / 2);
  return Math.abs(shift) <= CLOCKS_AGREE_MS + (after - before) / 2 ? 0 : shift;
}
