/**
 * A coarse timer wheel for transaction timers. At 20,000 transactions a second, a Node
 * timer each (created, then almost always cancelled) costs more than the work it guards;
 * here scheduling is an array push and cancelling a flag. Resolution is 50 ms, far finer
 * than any RFC 3261 timer on a reliable transport needs (Timer B/F/H are 32 s).
 */
export interface TimerHandle {
  readonly due: number;
  cancelled: boolean;
  fire: () => void;
}

export interface Clock {
  now(): number;
}

export class TimerWheel {
  private readonly buckets = new Map<number, TimerHandle[]>();
  private lastTick: number;
  private interval?: NodeJS.Timeout;

  /** Where a throwing timer callback is reported (the server logs it). */
  onError: (err: unknown) => void = () => undefined;

  constructor(
    private readonly clock: Clock = { now: () => Date.now() },
    private readonly resolutionMs = 50,
    autoRun = true,
  ) {
    this.lastTick = Math.floor(clock.now() / resolutionMs);
    if (autoRun) {
      this.interval = setInterval(() => this.advance(), resolutionMs);
      this.interval.unref();
    }
  }

  /** The wheel's clock (a fake one in tests). */
  now(): number {
    return this.clock.now();
  }

  schedule(delayMs: number, fire: () => void): TimerHandle {
    const due = this.clock.now() + delayMs;
    const handle: TimerHandle = { due, cancelled: false, fire };
    const tick = Math.max(Math.ceil(due / this.resolutionMs), this.lastTick + 1);
    let bucket = this.buckets.get(tick);
    if (!bucket) {
      bucket = [];
      this.buckets.set(tick, bucket);
    }
    bucket.push(handle);
    return handle;
  }

  /** Fires every timer due by now. Called by the interval, or by tests driving a fake clock. */
  advance(): void {
    const nowTick = Math.floor(this.clock.now() / this.resolutionMs);
    for (let tick = this.lastTick + 1; tick <= nowTick; tick++) {
      const bucket = this.buckets.get(tick);
      if (!bucket) continue;
      this.buckets.delete(tick);
      for (const handle of bucket) {
        if (handle.cancelled) continue;
        handle.cancelled = true;
        try {
          handle.fire();
        } catch (err) {
          // One failing timer must neither crash the server nor lose the rest of its bucket.
          this.onError(err);
        }
      }
    }
    this.lastTick = nowTick;
  }

  get pending(): number {
    let n = 0;
    for (const bucket of this.buckets.values()) for (const h of bucket) if (!h.cancelled) n++;
    return n;
  }

  stop(): void {
    if (this.interval) clearInterval(this.interval);
    this.buckets.clear();
  }
}

const NOTHING = (): void => undefined;

/**
 * Cancels a timer. The handle stays in its bucket until its tick comes round, so the callback
 * (and the transaction and messages it holds) is dropped now: at thousands of transactions a
 * second, 32 s of cancelled Timer Fs would otherwise keep every message alive.
 */
export function cancelTimer(handle: TimerHandle | undefined): void {
  if (!handle) return;
  handle.cancelled = true;
  handle.fire = NOTHING;
}
