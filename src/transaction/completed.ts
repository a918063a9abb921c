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
/** Emptied slabs kept for reuse at most (an idle server gives the rest back). */
const MAX_SPARE_SLABS = 4;

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
 *
 * An emptied slab is used again rather than given back: a fresh one is memory the kernel
 * has to fault in page by page on the first write (the copy into new slabs was 7 us a
 * response under REGISTER over UDP at 5,000/s, 11% of the server's busy time). It rests for
 * one sweep first: a response found just before it expired may still be on its way out
 * (UDP sends leave at the end of the event-loop turn).
 */
export class CompletedResponses {
  private readonly entries = new Map<string, CompletedEntry>();
  private slab?: Buffer;
  private used = 0;
  /** Emptied slabs ready for reuse, and those emptied by the last sweep (reusable after the next). */
  private spare: Buffer[] = [];
  private resting: Buffer[] = [];

  constructor(private readonly slabBytes = DEFAULT_SLAB_BYTES) {}

  get size(): number {
    return this.entries.size;
  }

  /** Keeps `wire`, the final response sent on `flow`, under the transaction's key until `expiresAt`. */
  add(key: string, flow: Flow, wire: Buffer, expiresAt: number): void {
    const length = wire.length;
    if (!this.slab || this.used + length > this.slab.length) {
      // A response larger than a slab gets one of its own.
      this.slab =
        length <= this.slabBytes
          ? (this.spare.pop() ?? Buffer.allocUnsafeSlow(this.slabBytes))
          : Buffer.allocUnsafeSlow(length);
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
    for (const slab of this.resting) if (this.spare.length < MAX_SPARE_SLABS) this.spare.push(slab);
    this.resting = [];
    // The slab of the entries just forgotten: emptied once an entry of another slab follows.
    let emptied: Buffer | undefined;
    for (const [key, entry] of this.entries) {
      if (emptied && entry.slab !== emptied) this.rest(emptied);
      emptied = undefined;
      if (entry.expiresAt > now) return entry.expiresAt;
      this.entries.delete(key);
      emptied = entry.slab;
    }
    // Nothing left: the current slab goes too, instead of waiting for the next response.
    if (emptied) this.rest(emptied);
    this.slab = undefined;
    this.used = 0;
    return undefined;
  }

  private rest(slab: Buffer): void {
    if (slab.length === this.slabBytes) this.resting.push(slab);
  }

  clear(): void {
    this.entries.clear();
    this.spare = [];
    this.resting = [];
    this.slab = undefined;
    this.used = 0;
  }
}
