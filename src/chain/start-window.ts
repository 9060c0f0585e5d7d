/**
 * At most `cap` request starts in any `intervalMs`, counted on the monotonic clock. p-queue's
 * own interval counts on the wall clock: a host clock set back (NTP, a VM restored) held every
 * request of the endpoint for as long as the step, an hour back stalling `serve`'s verifier and
 * the nightly run for an hour.
 */
export class StartWindow {
  /** Start times booked, oldest first; the newest may lie ahead. */
  private starts: number[] = [];

  constructor(
    private readonly cap: number,
    private readonly intervalMs: number,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Books the next start and returns how long to wait for it (ms). */
  reserve(): number {
    const now = this.clock();
    const expired = this.starts.findIndex((at) => at > now - this.intervalMs);
    this.starts = expired === -1 ? [] : this.starts.slice(expired);
    const at =
      this.starts.length < this.cap
        ? now
        : Math.max(now, (this.starts[this.starts.length - this.cap] as number) + this.intervalMs);
    this.starts.push(at);
    return at - now;
  }
}
