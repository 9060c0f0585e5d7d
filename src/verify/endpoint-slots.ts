/**
 * Each RPC endpoint's finalized slot as the verifier read it over time: where a drop counts its
 * window from on each endpoint. A signature's first miss is stored with one slot, the one the
 * endpoint asked then answered; an answer far too low (a lie, or a node restored from an old
 * snapshot that caught up a poll later) made every later slot look a window past it, and a
 * settlement landing seconds later was called "never landed". Counted on each endpoint's own
 * slots, from one read at or after the first miss, a drop needs every endpoint to have moved the
 * window: no single endpoint's answer, low or high, shortens it.
 */
export interface EndpointSlotBook {
  /** Records each endpoint's finalized slot, read at time `t` (ms) or later. */
  note(slots: ReadonlyMap<string, number>, t: number): void;
  /**
   * The endpoints of `now` that have not moved `window` slots since the first read of theirs at
   * or after `since` (ms): `moved` is how far they have, null when none was read since then.
   */
  behind(
    now: ReadonlyMap<string, number>,
    since: number,
    window: number,
  ): { endpoint: string; moved: number | null }[];
}

/**
 * A book keeping each endpoint's reads for `keepMs` (at most `maxReads` each): a first miss
 * older than that is counted from the oldest read kept, later than it, so the window only grows.
 */
export function createEndpointSlotBook(options: {
  keepMs: number;
  maxReads?: number;
}): EndpointSlotBook {
  const maxReads = options.maxReads ?? 1024;
  const reads = new Map<string, { t: number; slot: number }[]>();
  return {
    note(slots, t) {
      for (const [endpoint, slot] of slots) {
        const list = reads.get(endpoint) ?? [];
        // Kept in time order: a read stamped before the last one (a clock stepped back) is
        // left out, never a start earlier than a read already kept.
        if (list.length > 0 && t < list.at(-1)!.t) continue;
        list.push({ t, slot });
        const keepFrom = list.findIndex((r) => r.t >= t - options.keepMs);
        const drop = Math.max(keepFrom, list.length - maxReads);
        if (drop > 0) list.splice(0, drop);
        reads.set(endpoint, list);
      }
    },
    behind(now, since, window) {
      const out: { endpoint: string; moved: number | null }[] = [];
      for (const [endpoint, slot] of now) {
        const start = reads.get(endpoint)?.find((r) => r.t >= since);
        if (start === undefined) out.push({ endpoint, moved: null });
        else if (slot - start.slot <= window) out.push({ endpoint, moved: slot - start.slot });
      }
      return out;
    },
  };
}
