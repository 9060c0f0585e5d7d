import { afterAll, beforeAll } from "vitest";

/** What a file's start hook starts and its end hook closes: a local world, a harness. */
export interface Closable {
  close(): Promise<unknown>;
}

/**
 * The life of one thing a file or describe block starts in its start hook (a local world, an
 * adversary harness): `start` (the start hook) starts it and fills `value` in with its members,
 * `close` (the end hook) closes it. A start hook that timed out (a loaded runner) left the world
 * starting: it listened later, its RPC and simulator servers never closed, and a later file of
 * the worker failed its servers' check; an end hook that closed what the start hook had assigned
 * found nothing yet, or failed on the undefined value with an error naming no start. `close`
 * waits for that start and closes what it started; a start that failed is its hook's to report.
 * `value` holds the started object's own members (a plain object's, as a world's and a
 * harness's are), so a file can hand it out before its start hook has run.
 */
export function startedLife<T extends Closable>(start: () => Promise<T>) {
  const value = {} as T;
  let starting: Promise<T> | undefined;
  return {
    value,
    async start() {
      starting = start();
      Object.assign(value, await starting);
    },
    async close() {
      const started = await starting?.catch(() => undefined);
      await started?.close();
    },
  };
}

/**
 * One started thing for the enclosing file or describe block: started before its tests
 * (`startTimeoutMs`: its start hook's timeout, the run's unless given), closed after them.
 * Read its members inside tests and hooks (they are filled in once started). Hooks the block
 * registers after this one run after its start and, at the end, before its close (vitest runs
 * end hooks in the reverse of their order): an RPC pool made over a world closes first.
 */
export function useStarted<T extends Closable>(
  start: () => Promise<T>,
  startTimeoutMs?: number,
): T {
  const life = startedLife(start);
  beforeAll(life.start, startTimeoutMs);
  afterAll(life.close);
  return life.value;
}
