import pg from "pg";

/** A statement as node-postgres sent it: its text and its values. */
export interface SentStatement {
  text: string;
  values: unknown[];
}

/**
 * Runs `run` and returns every statement node-postgres sent meanwhile, from any client of this
 * process, in order: to replay or explain exactly what a store module sends.
 */
export async function statementsSentBy(run: () => Promise<unknown>): Promise<SentStatement[]> {
  const sent: SentStatement[] = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const [config, values] = args;
    const text = typeof config === "string" ? config : (config as { text: string }).text;
    sent.push({ text, values: Array.isArray(values) ? values : [] });
    return (query as (...args: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    await run();
  } finally {
    pg.Client.prototype.query = query;
  }
  return sent;
}
