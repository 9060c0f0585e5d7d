import pg from "pg";
import { afterAll, beforeAll, expect } from "vitest";
import { openPostgres, type PgStore } from "../../src/db/pg/client.js";
import { migratePostgres } from "../../src/db/pg/migrate.js";
import type { LedgerStore, LineRead } from "../../src/store/ledger.js";
import { openPgWriterConnection } from "../../src/store/pg/group-commit.js";
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
 * The hosts of a file's deadlock tests, opened on `database` (migrated) before its tests and
 * closed after them: the first finds deadlocks after 20 ms (the database's, set here), the
 * others after 10 s, so a cycle between them aborts the first host's writes, which a test sees.
 */
export function useDeadlockHosts<Name extends string>(
  database: { readonly url: string },
  names: readonly [Name, ...Name[]],
): Readonly<Record<Name, PgStore>> {
  const hosts = {} as Record<Name, PgStore>;
  beforeAll(async () => {
    await shortDeadlockTimeout(database.url);
    for (const [i, name] of names.entries()) {
      hosts[name] = openHost(database.url, i === 0 ? undefined : "10s");
    }
    await migratePostgres(hosts[names[0]].pool);
  });
  afterAll(async () => {
    await Promise.all(Object.values<PgStore>(hosts).map((host) => host.close()));
  });
  return hosts;
}

/**
 * A gate a held statement or unit waits at: `arrive` when it got there (`reached` resolves),
 * `open` to let it go on (`opened` resolves).
 */
export function gate(): {
  reached: Promise<void>;
  arrive: () => void;
  opened: Promise<void>;
  open: () => void;
} {
  let open!: () => void;
  let arrive!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  const reached = new Promise<void>((resolve) => {
    arrive = resolve;
  });
  return { reached, arrive, opened, open };
}

/**
 * A unit that stops the group's transaction until `open` is called; `reached` resolves when the
 * group's units before it have run.
 */
export function pause(): { unit: WriteUnit<null>; reached: Promise<void>; open: () => void } {
  const { reached, arrive, opened, open } = gate();
  const unit = {
    runSqlite: () => null,
    runPostgres: async () => {
      arrive();
      await opened;
      return null;
    },
  };
  return { unit, reached, open };
}

/**
 * Holds the first statement of this process matching `match`, once it answered, until `open`:
 * its transaction stays open between that statement and the next. `reached` resolves then;
 * `done` opens it and puts the client's query back.
 */
export function pauseAfter(match: RegExp): {
  reached: Promise<void>;
  open: () => void;
  done: () => void;
} {
  const { reached, arrive, opened, open } = gate();
  const query = pg.Client.prototype.query;
  let armed = true;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const result = (query as (...args: unknown[]) => unknown).apply(this, args);
    const [config] = args;
    const text = typeof config === "string" ? config : (config as { text?: string })?.text;
    if (!armed || typeof text !== "string" || !match.test(text)) return result;
    if (!(result instanceof Promise)) return result;
    armed = false;
    return result.then(async (value) => {
      arrive();
      await opened;
      return value;
    });
  } as typeof query;
  return {
    reached,
    open,
    done: () => {
      open();
      pg.Client.prototype.query = query;
    },
  };
}

/**
 * Lists `lines` in `vault`'s ledger as one page read at `now` (newest first, slots counting down
 * from `topSlot`), so a batch can then record them.
 */
export async function listLines(
  ledger: LedgerStore,
  vault: string,
  lines: readonly Pick<LineRead, "signature" | "blockTime">[],
  now: number,
  topSlot: number,
): Promise<void> {
  const seen = await ledger.cursor(vault, now);
  const page = [...lines].reverse().map((l, i) => ({
    signature: l.signature,
    slot: topSlot - i,
    blockTime: l.blockTime,
    err: null,
  }));
  await ledger.storePage(vault, seen, page, true, now, now);
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

/**
 * Runs `before`, a gate and `after` as one group on a receipt writer of `host`; while the group
 * waits at the gate (its `before` rows locked), starts `meanwhile` (another host's writes) and
 * opens the gate once `waiting` resolves (by default: once a backend waits on a lock). Expects
 * the group committed, then resolves with what `meanwhile` resolved with.
 */
export async function whileGroupHeld<T>(
  host: PgStore,
  before: readonly WriteUnit<unknown>[],
  after: readonly WriteUnit<unknown>[],
  meanwhile: () => Promise<T>,
  waiting: (pending: Promise<T>) => Promise<unknown> = () => backendsWaiting(host),
): Promise<T> {
  const { unit: paused, reached, open } = pause();
  const writer = openPgWriterConnection(host);
  try {
    const groupSettled = writer.together([...before, paused, ...after]).then(
      () => "committed",
      (error: unknown) => `failed: ${(error as Error).cause ?? error}`,
    );
    await reached;
    const pending = meanwhile();
    await waiting(pending);
    open();
    expect(await groupSettled).toBe("committed");
    return await pending;
  } finally {
    open();
    await writer.close();
  }
}
