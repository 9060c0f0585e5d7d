/**
 * The pace of the cluster's finalized slot, learnt from the slots the verifier reads anyway.
 * A transaction at slot S is final once the finalized slot reaches S, so the pace tells when to
 * look again: on mainnet about 13 s after it landed, where a poll every 2 s looked six times.
 */
export interface SlotClock {
  /** Records the finalized slot read at time `t` (ms). */
  observe(slot: number, t: number): void;
  /**
   * Milliseconds per slot over the recent samples; null until two samples at least `minSpanMs`
   * apart show the slot moving forward (a stalled or rewinding node teaches nothing).
   */
  msPerSlot(): number | null;
  /** The newest finalized slot read, with its time. */
  latest(): { slot: number; t: number } | null;
  /** The finalized slot at time `t` by the pace, from the newest one read; null without a pace. */
  estimate(t: number): number | null;
}

export function createSlotClock(options: { windowMs?: number; minSpanMs?: number } = {}) {
  const windowMs = options.windowMs ?? 60_000;
  const minSpanMs = options.minSpanMs ?? 1_000;
  let samples: { slot: number; t: number }[] = [];
  const clock: SlotClock = {
    observe(slot, t) {
      const last = samples.at(-1);
      if (last && t < last.t) return;
      // A slot behind the one read before (a pool rotates to a lagging node, or the one before
      // was absurd): the pace starts again from this one rather than be stuck on the other.
      if (last && slot < last.slot) samples = [];
      samples.push({ slot, t });
      const newest = samples.length - 1;
      const keepFrom = samples.findIndex((s) => s.t >= t - windowMs);
      samples = samples.slice(Math.min(keepFrom, newest));
    },
    msPerSlot() {
      const last = samples.at(-1);
      const first = samples[0];
      if (!last || !first || last.t - first.t < minSpanMs || last.slot <= first.slot) return null;
      return (last.t - first.t) / (last.slot - first.slot);
    },
    latest: () => samples.at(-1) ?? null,
    estimate(t) {
      const last = samples.at(-1);
      const pace = clock.msPerSlot();
      if (!last || pace === null) return null;
      return last.slot + Math.max(0, Math.floor((t - last.t) / pace));
    },
  };
  return clock;
}
