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

/** How long a shift read is used again while this host's clock has not stepped. */
const SHIFT_KEPT_MS = 10_000;

/** The last shift read: its value, when (monotonic), and the wall clock's lead on that clock. */
let lastShift: { shift: number; at: number; wallLead: number } | null = null;

/**
 * How far the server's clock is ahead of this host's (`Date.now`), in ms: 0 when the two agree
 * (`CLOCKS_AGREE_MS`). A time this host read, plus the shift, is that moment on the server's
 * clock. Read over one round trip on `executor` (against the middle of it), and used again for
 * `SHIFT_KEPT_MS` unless this host's wall clock stepped meanwhile (it moved against the
 * monotonic one) or a newer reading came (`noteServerNowMs`): a receipt writer asks once per
 * receipt it writes, and a round trip each time was a sixth statement beside the five of a
 * proxied job's receipt in its group.
 */
export async function serverClockShiftMs(executor: PgExecutor): Promise<number> {
  const at = performance.now();
  const wallLead = Date.now() - at;
  if (
    lastShift !== null &&
    at - lastShift.at < SHIFT_KEPT_MS &&
    Math.abs(wallLead - lastShift.wallLead) <= CLOCKS_AGREE_MS / 2
  ) {
    return lastShift.shift;
  }
  const before = Date.now();
  const server = await readServerNowMs(executor);
  return noteServerNowMs(server, before, Date.now());
}

/**
 * Takes `server` (`serverNowMs`, read by a statement sent at `before` and answered at `after` on
 * this host's clock) as the shift `serverClockShiftMs` uses next, and returns it. A receipt
 * group reads the server's clock in the statement that opens it: a step of the server's clock
 * is seen by the next group, not up to `SHIFT_KEPT_MS` later (a step ahead dated those
 * receipts behind it, and their jobs API wait ended early by the step).
 */
export function noteServerNowMs(server: number, before: number, after: number): number {
  const measured = server - Math.round((before + after) / 2);
  const shift = Math.abs(measured) <= CLOCKS_AGREE_MS + (after - before) / 2 ? 0 : measured;
  const at = performance.now();
  lastShift = { shift, at, wallLead: Date.now() - at };
  return shift;
}
