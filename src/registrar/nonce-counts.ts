import { ownString } from '../sip/own-string.js';

/**
 * Which nonce counts (RFC 7616 3.4: nc) each nonce has been used with, so a request replayed
 * on the connection its nonce is bound to is refused (RFC 7616 5.3: "the server can detect
 * replays by tracking nonce-count values"). Kept in memory, not in the store: the nonce is
 * bound to a flow of this process (NonceManager), so no other front-end of a pool can
 * accept it and there is nothing to share; the hot path pays one or two Map lookups.
 *
 * Per nonce: the highest nc seen and a 32-bit window below it, so requests a client sends
 * in parallel with one nonce (JsSIP's MESSAGE and SUBSCRIBE) may complete out of order
 * without being refused. A client without qop (RFC 2069) sends no nc: its nonce is good
 * for one request (the caller passes nc 1).
 *
 * Bounded, in two generations of at most maxEntries / 2 nonces each: new nonces go into
 * `recent`; a nonce of `older` used again moves to `recent`; when `recent` is full it
 * becomes `older` and the old `older` is dropped whole, its newest issue time becoming the
 * watermark. A nonce issued at or before the watermark that is in neither map may have been
 * used, so it is refused too (the client gets a fresh challenge with stale=true): replay
 * protection never lapses, memory never grows. Dropping a generation whole costs nothing per
 * nonce; evicting the oldest entry of one full Map per new nonce (as before) made V8 walk
 * the deleted slots at the Map's front each time (tens of microseconds a REGISTER once
 * 200,000 nonces had been used: bench/README.md).
 */
export class NonceCountWindow {
  private recent = new Map<string, NonceUse>();
  private older = new Map<string, NonceUse>();
  /** The newest issue time in each generation (-Infinity: none yet). */
  private recentNewest = Number.NEGATIVE_INFINITY;
  private olderNewest = Number.NEGATIVE_INFINITY;
  private watermark = Number.NEGATIVE_INFINITY;
  private readonly generationSize: number;

  constructor(maxEntries = 200_000) {
    this.generationSize = Math.max(1, Math.floor(maxEntries / 2));
  }

  /** Records (nonce, nc); false when that pair was seen before or is too old to tell. */
  use(nonce: string, issuedAt: number, nc: number): boolean {
    let entry = this.recent.get(nonce);
    const fromOlder = entry === undefined;
    if (fromOlder) entry = this.older.get(nonce);
    if (!entry) {
      if (issuedAt <= this.watermark) return false;
      // The nonce is a slice of the request's text: kept, it would keep the request alive.
      this.keep(ownString(nonce), { issuedAt, highest: nc, window: 1 });
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
    if (fromOlder) {
      // Used again: it stays with the recent ones instead of going with its generation.
      this.older.delete(nonce);
      this.keep(ownString(nonce), entry);
    }
    return true;
  }

  get size(): number {
    return this.recent.size + this.older.size;
  }

  private keep(nonce: string, use: NonceUse): void {
    if (this.recent.size >= this.generationSize) {
      if (this.olderNewest > this.watermark) this.watermark = this.olderNewest;
      this.older = this.recent;
      this.olderNewest = this.recentNewest;
      this.recent = new Map();
      this.recentNewest = Number.NEGATIVE_INFINITY;
    }
    this.recent.set(nonce, use);
    if (use.issuedAt > this.recentNewest) this.recentNewest = use.issuedAt;
  }
}

const WINDOW_BITS = 32;

interface NonceUse {
  issuedAt: number;
  highest: number;
  /** Bit i set: nc = highest - i was used. */
  window: number;
}
