import type { Logger } from 'pino';
import type { UsageIncrement, UsageRepository } from '../store/usage.js';

export interface UsageRecorderOptions {
  repo: Pick<UsageRepository, 'add'>;
  home: string;
  serverId: string;
  /** Users signed in on this server now. */
  signedIn: () => number;
  log: Logger;
  now?: () => number;
  flushMs?: number;
}

const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * Counts this server's usage in memory (a few additions per message) and adds it to the
 * store's daily rollup once a minute and at shutdown: messages and bytes routed, the peak of
 * users signed in (sampled every second), and the users active each day, each sent once.
 */
export class UsageRecorder {
  private messages = 0;
  private bytes = 0;
  private peak = 0;
  private day: string;
  private readonly seenToday = new Set<string>();
  private fresh: string[] = [];
  private readonly now: () => number;
  private flushTimer: NodeJS.Timeout | undefined;
  private sampleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: UsageRecorderOptions) {
    this.now = opts.now ?? Date.now;
    this.day = utcDay(this.now());
  }

  start(): void {
    this.sampleTimer = setInterval(() => this.sample(), 1_000);
    this.sampleTimer.unref?.();
    this.flushTimer = setInterval(() => {
      this.flush().catch((err: unknown) => this.opts.log.warn({ err }, 'usage rollup not written'));
    }, this.opts.flushMs ?? 60_000);
    this.flushTimer.unref?.();
  }

  messageRouted(bytes: number): void {
    this.messages++;
    this.bytes += bytes;
  }

  userActive(aor: string): void {
    if (this.seenToday.has(aor)) return;
    this.seenToday.add(aor);
    this.fresh.push(aor);
  }

  sample(): void {
    const n = this.opts.signedIn();
    if (n > this.peak) this.peak = n;
  }

  /** Adds what was counted since the last flush to the rollup; a new UTC day starts fresh counts. */
  async flush(): Promise<void> {
    this.sample();
    const inc: UsageIncrement = {
      day: this.day,
      home: this.opts.home,
      serverId: this.opts.serverId,
      messages: this.messages,
      bytes: this.bytes,
      signedIn: this.peak,
      activeUsers: this.fresh,
    };
    this.messages = 0;
    this.bytes = 0;
    this.fresh = [];
    const today = utcDay(this.now());
    if (today !== this.day) {
      this.day = today;
      this.seenToday.clear();
      this.peak = this.opts.signedIn();
    }
    try {
      await this.opts.repo.add(inc);
    } catch (err) {
      // Counted again at the next flush (into the current day).
      this.messages += inc.messages;
      this.bytes += inc.bytes;
      this.fresh.push(...inc.activeUsers);
      throw err;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    clearInterval(this.sampleTimer);
    await this.flush();
  }
}
