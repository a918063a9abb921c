/** Token-bucket parameters: `rate` tokens a second, at most `burst` saved up. */
export interface BucketSpec {
  rate: number;
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets by key (an address, a partner domain): each request takes a token; tokens
 * come back at the bucket's rate up to its burst. Buckets idle long enough to be full again
 * are forgotten, so a flood of distinct addresses costs memory only while it lasts.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Takes a token for `key`; false when its bucket is empty (the request is refused). */
  take(key: string, spec: BucketSpec): boolean {
    const now = this.now();
    this.sweep(now);
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { tokens: spec.burst, at: now };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(spec.burst, bucket.tokens + ((now - bucket.at) / 1000) * spec.rate);
      bucket.at = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 10_000) return;
    this.lastSweep = now;
    // A bucket untouched for a minute is full again at any rate worth configuring.
    for (const [key, b] of this.buckets) if (now - b.at > 60_000) this.buckets.delete(key);
  }
}
