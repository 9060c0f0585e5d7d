import pg from "pg";

/**
 * One connection per store that LISTENs, for caches kept valid by PostgreSQL's NOTIFY (sent by
 * any process, delivered to every listener when the sending transaction commits).
 *
 * A cache may trust itself only while its channel is `listening`: from the moment LISTEN took
 * effect until the connection is lost. `lost` handlers run when it is (the cache must forget
 * everything: what changed meanwhile was never told); the next `listen` connects again, at
 * most once per `retryMs`.
 */
export interface PgListener {
  /** Starts listening on `channel` (connecting when needed); returns at once. */
  listen(channel: string, handlers: ChannelHandlers): void;
  /** True while LISTEN on `channel` is in effect. */
  listening(channel: string): boolean;
  /** Ends the connection; `listen` does nothing afterwards. */
  close(): Promise<void>;
}

export interface ChannelHandlers {
  notify(payload: string): void;
  lost(): void;
}

export function createPgListener(config: pg.ClientConfig, retryMs = 1000): PgListener {
  const channels = new Map<string, ChannelHandlers>();
  const live = new Set<string>();
  let client: pg.Client | null = null;
  /** The client being connected, so that `close` can end it without waiting for a timeout. */
  let pending: pg.Client | null = null;
  let connecting: Promise<void> | null = null;
  let lastAttempt = Number.NEGATIVE_INFINITY;
  let closed = false;

  const drop = (broken: pg.Client) => {
    if (client !== broken) return;
    client = null;
    live.clear();
    for (const handlers of channels.values()) handlers.lost();
    broken.end().catch(() => {});
  };

  async function connect() {
    const next = new pg.Client(config);
    next.on("error", () => drop(next));
    next.on("end", () => drop(next));
    next.on("notification", (message) => {
      if (message.payload !== undefined) channels.get(message.channel)?.notify(message.payload);
    });
    pending = next;
    try {
      await next.connect();
    } finally {
      pending = null;
    }
    if (closed) {
      await next.end();
      return;
    }
    client = next;
  }

  async function subscribe(channel: string) {
    if (!client) {
      connecting ??= connect().finally(() => {
        connecting = null;
      });
      await connecting;
    }
    const current = client;
    if (!current || closed) return;
    await current.query(`LISTEN ${current.escapeIdentifier(channel)}`);
    if (client === current) live.add(channel);
  }

  return {
    listen(channel, handlers) {
      if (closed) return;
      channels.set(channel, handlers);
      if (live.has(channel)) return;
      const now = performance.now();
      if (now - lastAttempt < retryMs) return;
      lastAttempt = now;
      // A server that cannot be reached now is tried again by a later call; meanwhile the
      // cache stays unused and every read goes to the database.
      subscribe(channel).catch(() => {});
    },
    listening: (channel) => live.has(channel),
    async close() {
      closed = true;
      live.clear();
      await pending?.end().catch(() => {});
      await connecting?.catch(() => {});
      const current = client;
      client = null;
      await current?.end().catch(() => {});
    },
  };
}
