import type { Logger } from 'pino';
import type { EdgeRefusal } from '../ops/metrics.js';

/**
 * Logs the edge's refusals (address, domain, reason) without a line per request in a
 * flood: the first refusal of a reason and address in a window is logged at once, the
 * rest are summed and logged once when the window closes.
 */
export class RefusalLog {
  private readonly seen = new Map<string, number>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly log: Logger,
    private readonly windowMs = 10_000,
  ) {}

  report(reason: EdgeRefusal, address: string, domain: string | undefined, detail: string): void {
    const key = `${reason}|${address}|${domain ?? ''}`;
    const n = this.seen.get(key);
    if (n === undefined) {
      this.seen.set(key, 0);
      this.log.warn({ reason, address, domain, detail }, 'edge refused a request');
      this.timer ??= setTimeout(() => this.flush(), this.windowMs).unref();
      return;
    }
    if (this.seen.size < 10_000) this.seen.set(key, n + 1);
  }

  private flush(): void {
    this.timer = undefined;
    for (const [key, count] of this.seen) {
      if (count === 0) continue;
      const [reason, address, domain] = key.split('|');
      this.log.warn(
        { reason, address, domain: domain || undefined, count, windowMs: this.windowMs },
        `edge refused ${count} more request(s)`,
      );
    }
    this.seen.clear();
  }
}
