import { ownString } from '../sip/own-string.js';

/**
 * Which nonce counts (RFC 7616 3.4: nc) each nonce has been used with, so a request replayed
 * on the connection its nonce is bound to is refused (RFC 7616 5.3: "the server can detect
 * replays by tracking nonce-count values"). Kept in memory, not in the store: the nonce is
 * bound to a flow of this process (NonceManager), so no other front-end of a pool can
 * accept it and there is nothing to share; the hot path pays one Map lookup.
 *
 * Per nonce: the highest nc seen and a 32-bit window below it, so requests a client sends
 * in parallel with one nonce (JsSIP's MESSAGE and SUBSCRIBE) may complete out of order
 * without being refused. A client without qop (RFC 2069) sends no nc: its nonce is good
 * for one request (the caller passes nc 1).
 *
 * Bounded: past maxEntries the least recently used nonce is forgotten, and the watermark
 * remembers the newest issue time forgotten. A nonce issued at or before the watermark that
 * is not in the map may have been used, so it is refused too (the client gets a fresh
 * challenge with stale=true): replay protection never lapses, memory never grows.
 */
export class NonceCountWindow {
  private readonly seen = new Map<string, NonceUse>();
  private watermark = Number.NEGATIVE_INFINITY;

  constructor(private readonly maxEntries = 200_000) {}

  /** Records (nonce, nc); false when that pair was seen before or is too old to tell. */
  use(nonce: string, issuedAt: number, nc: number): boolean {
    const entry = this.seen.get(nonce);
    if (!entry) {
      if (issuedAt <= this.watermark) return false;
      // The nonce is a slice of the request's text: kept, it would keep the request alive.
      this.remember(ownString(nonce), { issuedAt, highest: nc, window: 1 });
      return true;
    }
    if (nc > entry.highest) {
      const shift = nc - entry.highest;
      entry.window = shift >= WINDOW_BITS ? 1 : ((entry.window << shift) | 1) >>> 0;
      entry.highest = nc;
    } else {
      const back = entry.highest - nc;
      if (back >= WINDOW_BITS) return false;
      const bit = (1 << back) >>> 0;
      if ((entry.window & bit) !== 0) return false;
      entry.window = (entry.window | bit) >>> 0;
    }
    // Most recently used last: Map iteration order is the LRU order (the key is set anew).
    this.seen.delete(nonce);
    this.seen.set(ownString(nonce), entry);
    return true;
  }

  get size(): number {
    return this.seen.size;
  }

  private remember(nonce: string, use: NonceUse): void {
    this.seen.set(nonce, use);
    while (this.seen.size > this.maxEntries) {
      const oldest = this.seen.entries().next().value;
      if (!oldest) break;
      this.seen.delete(oldest[0]);
      if (oldest[1].issuedAt > this.watermark) this.watermark = oldest[1].issuedAt;
    }
  }
}

const WINDOW_BITS = 32;

interface NonceUse {
  issuedAt: number;
  highest: number;
  /** Bit i set: nc = highest - i was used. */
  window: number;
}
