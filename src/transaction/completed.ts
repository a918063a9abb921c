import type { Flow } from '../transport/flow.js';

/** One Completed transaction: where its final response went and where its bytes are kept. */
class CompletedEntry {
  constructor(
    readonly flow: Flow,
    readonly slab: Buffer,
    readonly offset: number,
    readonly length: number,
    /** When Timer J fires (the wheel's clock, ms). */
    readonly expiresAt: number,
  ) {}
}

/** The bytes each slab holds: a few thousand responses, so slabs come and go a few a second. */
const DEFAULT_SLAB_BYTES = 1024 * 1024;

/**
 * The non-INVITE server transactions over UDP in the Completed state (RFC 3261 17.2.2): for
 * Timer J (32 s) each answers a retransmitted request with its final response again, and
 * nothing else. At 5,000 requests a second that is 300,000 responses held at once.
 *
 * The responses' bytes go into large shared buffers (slabs), written once, front to back,
 * and never reused; an entry keeps its slab, an offset and a length. Kept as a string or a
 * Buffer each, every response was an object of half a kilobyte that the garbage collector
 * copied out of the young generation and then compacted in the old one (a third of the
 * server's CPU per REGISTER over UDP): slabs are outside the heap and are never copied.
 * Timer J is the same for every entry, so entries expire in the order they came (the map's
 * insertion order) and a slab is released, with its last entry, as a whole.
 */
export class CompletedResponses {
  private readonly entries = new Map<string, CompletedEntry>();
  private slab?: Buffer;
  private used = 0;

  constructor(private readonly slabBytes = DEFAULT_SLAB_BYTES) {}

  get size(): number {
    return this.entries.size;
  }

  /** Keeps `wire`, the final response sent on `flow`, under the transaction's key until `expiresAt`. */
  add(key: string, flow: Flow, wire: Buffer, expiresAt: number): void {
    const length = wire.length;
    if (!this.slab || this.used + length > this.slab.length) {
      // A response larger than a slab gets one of its own.
      this.slab = Buffer.allocUnsafeSlow(Math.max(this.slabBytes, length));
      this.used = 0;
    }
    wire.copy(this.slab, this.used);
    // A key seen again (a new transaction under an old key) goes to the back: expiry order stays.
    this.entries.delete(key);
    this.entries.set(key, new CompletedEntry(flow, this.slab, this.used, length, expiresAt));
    this.used += length;
  }

  /** The flow and bytes of the response kept under `key` (a view into its slab), if any. */
  find(key: string): { flow: Flow; wire: Buffer } | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    return { flow: entry.flow, wire: entry.slab.subarray(entry.offset, entry.offset + entry.length) };
  }

  /** Forgets the entries expired by `now`; returns when the next one expires (undefined: none left). */
  expire(now: number): number | undefined {
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now) return entry.expiresAt;
      this.entries.delete(key);
    }
    // Nothing left: the current slab goes too, instead of waiting for the next response.
    this.slab = undefined;
    this.used = 0;
    return undefined;
  }

  clear(): void {
    this.entries.clear();
    this.slab = undefined;
    this.used = 0;
  }
}
