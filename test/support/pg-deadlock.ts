import pg from "pg";
import { openPostgres, type PgStore } from "../../src/db/pg/client.js";
import type { WriteUnit } from "../../src/store/write-unit.js";

/**
 * Helpers for forcing lock orders between writers of one PostgreSQL database: hosts whose
 * connections find deadlocks after `deadlockTimeout`, a group unit that stops mid-transaction,
 * and a wait until backends block on a lock.
 */

/** Makes every new connection to the database find deadlocks after 20 ms unless told otherwise. */
export async function shortDeadlockTimeout(url: string): Promise<void> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    const name = (await admin.query<{ d: string }>("SELECT current_database() AS d")).rows[0]?.d;
    await admin.query(`ALTER DATABASE "${name}" SET deadlock_timeout = '20ms'`);
  } finally {
    await admin.end();
  }
}

/** A host's store; `deadlockTimeout` overrides the database's for its connections. */
export function openHost(url: string, deadlockTimeout?: string): PgStore {
  const host = openPostgres(url, { poolSize: 2, statementTimeoutMs: 30_000 });
  // The pool's clients start with the options of its config (libpq's `options`).
  if (deadlockTimeout !== undefined) {
    (host.pool.options as { options?: string }).options = `-c deadlock_timeout=${deadlockTimeout}`;
  }
  return host;
}

/**
 * A unit that stops the group's transaction until `open` is called; `reached` resolves when the
 * group's units before it have run.
 */
export function pause(): { unit: WriteUnit<null>; reached: Promise<void>; open: () => void } {
  let open!: () => void;
  let arrive!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const reached = new Promise<void>((resolve) => {
    arrive = resolve;
  });
  const unit = {
    runSqlite: () => null,
    runPostgres: async () => {
      arrive();
      await gate;
      return null;
    },
  };
  return { unit, reached, open };
}

/** Resolves once at least `n` backends of the database wait on a lock. */
export async function backendsWaiting(store: PgStore, n = 1): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await store.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (Number(rows[0]?.n) >= n) return;
    if (Date.now() > deadline) throw new Error(`fewer than ${n} backends came to wait on a lock`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
