import pg from "pg";

/**
 * One connection per store that LISTENs, for caches kept valid by PostgreSQL's NOTIFY (sent by
 * any process, delivered to every listener when the sending transaction commits).
 *
 * A cache may trust itself only while its channel is `listening`: LISTEN took effect and the
 * connection answered a heartbeat lately. A connection that dies loudly is dropped at once; one
 * that goes silent (a network split, a NAT that forgets it: TCP notices only after hours) misses
 * a heartbeat and is dropped then. `lost` handlers run when it is (the cache must forget
 * everything: what changed meanwhile was never told); the next `listen` connects again, at most
 * once per `retryMs`.
 */
export interface PgListener {
  /** Starts listening on `channel` (connecting when needed); returns at once. */
  listen(channel: string, handlers: ChannelHandlers): void;
  /** True while LISTEN on `channel` is in effect and the connection answered lately. */
  listening(channel: string): boolean;
  /** Ends the connection (without waiting for a server that does not answer). */
  close(): Promise<void>;
}

export interface ChannelHandlers {
  notify(payload: string): void;
  lost(): void;
}

export interface ListenerTiming {
  /** Least time between two connection attempts, ms. */
  retryMs: number;
  /** Time between heartbeats, ms. */
  heartbeatMs: number;
  /** A heartbeat not answered within this drops the connection, ms. */
  deadlineMs: number;
}

const defaultTiming: ListenerTiming = { retryMs: 1000, heartbeatMs: 2000, deadlineMs: 2000 };

/** Ends a client at once: a LISTEN connection owes the server no goodbye. */
function destroy(client: pg.Client) {
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection
    ?.stream;
  client.end().catch(() => {});
  stream?.destroy();
}

export function createPgListener(
  config: pg.ClientConfig,
  timing: ListenerTiming = defaultTiming,
): PgListener {
  const channels = new Map<string, ChannelHandlers>();
  const live = new Set<string>();
  let client: pg.Client | null = null;
  /** The client being connected, so that `close` can end it without waiting for a timeout. */
  let pending: pg.Client | null = null;
  let connecting: Promise<void> | null = null;
  let lastAttempt = Number.NEGATIVE_INFINITY;
  /** When the connection last answered (LISTEN or a heartbeat). */
  let answeredAt = Number.NEGATIVE_INFINITY;
  let heartbeat: NodeJS.Timeout | undefined;
  let closed = false;

  const drop = (broken: pg.Client) => {
    if (client !== broken) return;
    client = null;
    clearInterval(heartbeat);
    live.clear();
    for (const handlers of channels.values()) handlers.lost();
    destroy(broken);
  };

  async function beat(current: pg.Client) {
    const late = setTimeout(() => drop(current), timing.deadlineMs);
    try {
      await current.query("SELECT 1");
      if (client === current) answeredAt = performance.now();
    } catch {
      drop(current);
    } finally {
      clearTimeout(late);
    }
  }

  async function connect() {
    const next = new pg.Client({ ...config, keepAlive: true });
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
      destroy(next);
      return;
    }
    client = next;
    heartbeat = setInterval(() => void beat(next), timing.heartbeatMs);
    heartbeat.unref();
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
    if (client !== current) return;
    answeredAt = performance.now();
    live.add(channel);
  }

  return {
    listen(channel, handlers) {
      if (closed) return;
      channels.set(channel, handlers);
      if (live.has(channel)) return;
      const now = performance.now();
      if (now - lastAttempt < timing.retryMs) return;
      lastAttempt = now;
      // A server that cannot be reached now is tried again by a later call; meanwhile the
      // cache stays unused and every read goes to the database.
      subscribe(channel).catch(() => {});
    },
    listening: (channel) =>
      live.has(channel) && performance.now() - answeredAt < timing.heartbeatMs + timing.deadlineMs,
    async close() {
      closed = true;
      live.clear();
      clearInterval(heartbeat);
      // Not awaited: a connection attempt cut short may never settle; it is ended either way.
      if (pending) destroy(pending);
      const current = client;
      client = null;
      if (current) destroy(current);
    },
  };
}
