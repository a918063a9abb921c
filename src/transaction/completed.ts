import type { Flow } from '../transport/flow.js';

/** What a Completed transaction answers a retransmission of its request with. */
export type CompletedAnswer =
  /** The challenge the TU issued at this time: it builds the same one again (NonceManager.create's seed). */
  | { readonly issuedAt: number }
  /** The final response's bytes (a view into a slab) and the flow it went out on. */
  | { readonly flow: Flow; readonly wire: Buffer };

/** A buffer responses are written into, front to back; released once no entry points into it. */
interface Slab {
  readonly buf: Buffer;
  used: number;
  /** Entries whose bytes are in it and not yet forgotten. */
  entries: number;
}

/** The bytes each slab holds: a few thousand responses, so slabs come and go a few a second. */
const DEFAULT_SLAB_BYTES = 1024 * 1024;
/** Emptied slabs kept for reuse at most (an idle server gives the rest back). */
const MAX_SPARE_SLABS = 4;
/** When Timer J fires, for an entry replaced by a newer one of the same key: it no longer counts. */
const DEAD = -1;

/**
 * The non-INVITE server transactions over UDP in the Completed state (RFC 3261 17.2.2): for
 * Timer J (32 s) each answers a retransmitted request with its final response again, and
 * nothing else. Every call over UDP leaves two (its challenge and its final response): at
 * 5,000 calls a second 320,000 held at once, and every new request over UDP is looked up here.
 *
 * Two kinds of entry. A challenge to a request without credentials is kept as the time it was
 * issued: the TU derives the challenge's nonce and To tag from the transaction key and that
 * time, so a retransmission, handed to the TU again with it, is answered with the same bytes.
 * Any other final response is kept as its bytes, written with the key's into large shared
 * buffers (slabs) outside the heap: as a string or a Buffer each, every response was an
 * object the garbage collector copied out of the young generation and compacted in the old
 * one (a third of the server's CPU per REGISTER over UDP once).
 *
 * Nothing here is an object per entry: typed arrays in a ring (Timer J is the same for every
 * entry, so they expire in arrival order: the head is the oldest), two arrays of references
 * (the flow and slab of a response), and an open-addressing index (linear probing,
 * backward-shift deletion) from a 64-bit hash of the key to the ring position. An index slot
 * holds the hash's high half beside the position, so a look-up that finds nothing (almost
 * every new request) reads one cache line; the challenges and the responses were a typed
 * index and a Map of 160,000 entries each, two look-ups of several cache and TLB misses for
 * every new request (3-5 us a REGISTER call over UDP in the profiles of 18:28 and 18:38).
 *
 * Two keys with the same hash: a response is given only to the key it was kept for (the key's
 * bytes are compared); a challenge time is given to either, so a new request may be taken for
 * a retransmission and challenged with an older issue time (a nonce a few seconds older).
 *
 * An emptied slab is used again rather than given back: a fresh one is memory the kernel has
 * to fault in page by page on the first write (7 us a response once). It rests for one sweep
 * first: a response found just before it expired may still be on its way out (UDP sends
 * leave at the end of the event-loop turn).
 */
export class CompletedTransactions {
  private capacity: number;
  private hashHi!: Uint32Array;
  private hashLo!: Uint32Array;
  /** A challenge's issue time; NaN for a response. */
  private issuedAt!: Float64Array;
  /** When Timer J fires (the wheel's clock); DEAD: replaced by a newer entry of the same key. */
  private expiresAt!: Float64Array;
  /** A response's key bytes start here in its slab, then its own bytes. */
  private offset!: Int32Array;
  private keyLength!: Int32Array;
  private length!: Int32Array;
  private flows!: Array<Flow | undefined>;
  private slabs!: Array<Slab | undefined>;
  /** Pairs: the hash's high half, and the ring position + 1 (0: empty). Twice the ring's capacity in pairs. */
  private index!: Int32Array;
  private head = 0;
  private count = 0;
  /** Entries in the index (the ring also holds dead ones). */
  private live = 0;
  private slab?: Slab;
  /** Emptied slabs ready for reuse, and those emptied since the last sweep (reusable after the next). */
  private spare: Buffer[] = [];
  private resting: Buffer[] = [];

  constructor(
    private readonly initialCapacity = 4096,
    /** Past this many the oldest is forgotten (its retransmission is handled as a new request). */
    private readonly maxEntries = 1 << 21,
    private readonly slabBytes = DEFAULT_SLAB_BYTES,
  ) {
    if (initialCapacity < 2 || (initialCapacity & (initialCapacity - 1)) !== 0)
      throw new Error('the initial capacity must be a power of two');
    this.capacity = initialCapacity;
    this.allocate(initialCapacity);
  }

  get size(): number {
    return this.live;
  }

  /** Keeps the challenge to the transaction `key`, issued at `issuedAt`, until `expiresAt`. */
  addChallenge(key: string, issuedAt: number, expiresAt: number): void {
    const pos = this.append(key, expiresAt);
    this.issuedAt[pos] = issuedAt;
  }

  /** Keeps `wire`, the final response to the transaction `key` sent on `flow`, until `expiresAt`. */
  addResponse(key: string, flow: Flow, wire: Buffer, expiresAt: number): void {
    const keyLength = Buffer.byteLength(key, 'utf8');
    const need = keyLength + wire.length;
    let slab = this.slab;
    if (!slab || slab.used + need > slab.buf.length) {
      if (slab && slab.entries === 0) this.rest(slab);
      // A response larger than a slab gets one of its own.
      const buf =
        need <= this.slabBytes
          ? (this.spare.pop() ?? Buffer.allocUnsafeSlow(this.slabBytes))
          : Buffer.allocUnsafeSlow(need);
      slab = { buf, used: 0, entries: 0 };
      this.slab = slab;
    }
    const offset = slab.used;
    slab.buf.write(key, offset, keyLength, 'utf8');
    wire.copy(slab.buf, offset + keyLength);
    slab.used += need;
    slab.entries++;
    const pos = this.append(key, expiresAt);
    this.issuedAt[pos] = Number.NaN;
    this.offset[pos] = offset;
    this.keyLength[pos] = keyLength;
    this.length[pos] = wire.length;
    this.flows[pos] = flow;
    this.slabs[pos] = slab;
  }

  /** What the Completed transaction `key` answers a retransmission with, if one is kept. */
  find(key: string): CompletedAnswer | undefined {
    if (this.live === 0) return undefined;
    const hi = hashKey(key);
    const slot = this.findSlot(hi, hashLow);
    if (slot < 0) return undefined;
    const pos = this.index[2 * slot + 1] - 1;
    const issuedAt = this.issuedAt[pos];
    if (!Number.isNaN(issuedAt)) return { issuedAt };
    const slab = this.slabs[pos] as Slab;
    const start = this.offset[pos];
    const body = start + this.keyLength[pos];
    // Another key with the same hash gets nothing: a response is only ever its own request's.
    if (slab.buf.toString('utf8', start, body) !== key) return undefined;
    return { flow: this.flows[pos] as Flow, wire: slab.buf.subarray(body, body + this.length[pos]) };
  }

  /** Forgets the entries expired by `now`; returns when the next one expires (undefined: none left). */
  expire(now: number): number | undefined {
    for (const buf of this.resting) if (this.spare.length < MAX_SPARE_SLABS) this.spare.push(buf);
    this.resting = [];
    while (this.count > 0) {
      const expires = this.expiresAt[this.head];
      if (expires !== DEAD && expires > now) return expires;
      this.dropHead();
    }
    // Empty: the current slab goes too, and an idle server gives back what a busy minute grew.
    if (this.slab) this.rest(this.slab);
    this.slab = undefined;
    if (this.capacity > this.initialCapacity) {
      this.capacity = this.initialCapacity;
      this.allocate(this.capacity);
    }
    this.head = 0;
    return undefined;
  }

  clear(): void {
    this.capacity = this.initialCapacity;
    this.allocate(this.capacity);
    this.head = 0;
    this.count = 0;
    this.live = 0;
    this.slab = undefined;
    this.spare = [];
    this.resting = [];
  }

  /** A new entry at the back of the ring, indexed under `key` (an older one of the same key dies). */
  private append(key: string, expiresAt: number): number {
    const hi = hashKey(key);
    const lo = hashLow;
    const slot = this.findSlot(hi, lo);
    if (slot >= 0) {
      // A retransmission answered again: the old entry dies where it is, the new one goes to the back.
      this.expiresAt[this.index[2 * slot + 1] - 1] = DEAD;
      this.unindex(slot);
    }
    if (this.count === this.capacity) {
      if (this.capacity >= this.maxEntries) this.dropHead();
      else this.grow();
    }
    const pos = (this.head + this.count) % this.capacity;
    this.hashHi[pos] = hi;
    this.hashLo[pos] = lo;
    this.expiresAt[pos] = expiresAt;
    this.flows[pos] = undefined;
    this.slabs[pos] = undefined;
    this.count++;
    this.insertIndex(hi, pos);
    return pos;
  }

  private dropHead(): void {
    const pos = this.head;
    if (this.expiresAt[pos] !== DEAD) {
      const slot = this.slotOfPosition(this.hashHi[pos], pos);
      if (slot >= 0) this.unindex(slot);
    }
    const slab = this.slabs[pos];
    if (slab !== undefined) {
      slab.entries--;
      if (slab.entries === 0 && slab !== this.slab) this.rest(slab);
      this.slabs[pos] = undefined;
      this.flows[pos] = undefined;
    }
    this.head = (this.head + 1) % this.capacity;
    this.count--;
  }

  private rest(slab: Slab): void {
    if (slab.buf.length === this.slabBytes) this.resting.push(slab.buf);
  }

  private allocate(capacity: number): void {
    this.hashHi = new Uint32Array(capacity);
    this.hashLo = new Uint32Array(capacity);
    this.issuedAt = new Float64Array(capacity);
    this.expiresAt = new Float64Array(capacity);
    this.offset = new Int32Array(capacity);
    this.keyLength = new Int32Array(capacity);
    this.length = new Int32Array(capacity);
    this.flows = new Array<Flow | undefined>(capacity).fill(undefined);
    this.slabs = new Array<Slab | undefined>(capacity).fill(undefined);
    this.index = new Int32Array(capacity * 4);
  }

  /** Twice the room: the ring unrolled from its head, the index rebuilt. */
  private grow(): void {
    const old = {
      hashHi: this.hashHi,
      hashLo: this.hashLo,
      issuedAt: this.issuedAt,
      expiresAt: this.expiresAt,
      offset: this.offset,
      keyLength: this.keyLength,
      length: this.length,
      flows: this.flows,
      slabs: this.slabs,
      capacity: this.capacity,
    };
    const count = this.count;
    this.capacity *= 2;
    this.allocate(this.capacity);
    this.live = 0;
    for (let i = 0; i < count; i++) {
      const from = (this.head + i) % old.capacity;
      this.hashHi[i] = old.hashHi[from];
      this.hashLo[i] = old.hashLo[from];
      this.issuedAt[i] = old.issuedAt[from];
      this.expiresAt[i] = old.expiresAt[from];
      this.offset[i] = old.offset[from];
      this.keyLength[i] = old.keyLength[from];
      this.length[i] = old.length[from];
      this.flows[i] = old.flows[from];
      this.slabs[i] = old.slabs[from];
      if (old.expiresAt[from] !== DEAD) this.insertIndex(old.hashHi[from], i);
    }
    this.head = 0;
  }

  private get mask(): number {
    return (this.index.length >> 1) - 1;
  }

  private insertIndex(hi: number, pos: number): void {
    const index = this.index;
    const mask = this.mask;
    let slot = hi & mask;
    while (index[2 * slot + 1] !== 0) slot = (slot + 1) & mask;
    index[2 * slot] = hi;
    index[2 * slot + 1] = pos + 1;
    this.live++;
  }

  private findSlot(hi: number, lo: number): number {
    const index = this.index;
    const mask = this.mask;
    // The index holds `hi` as a signed 32-bit value.
    const signedHi = hi | 0;
    for (let slot = hi & mask; ; slot = (slot + 1) & mask) {
      const entry = index[2 * slot + 1];
      if (entry === 0) return -1;
      if (index[2 * slot] === signedHi && this.hashLo[entry - 1] === lo) return slot;
    }
  }

  private slotOfPosition(hi: number, pos: number): number {
    const index = this.index;
    const mask = this.mask;
    for (let slot = hi & mask; ; slot = (slot + 1) & mask) {
      const entry = index[2 * slot + 1];
      if (entry === 0) return -1;
      if (entry === pos + 1) return slot;
    }
  }

  /** Backward-shift deletion: the entries after the hole that would not be found past it move into it. */
  private unindex(slot: number): void {
    const index = this.index;
    const mask = this.mask;
    let hole = slot;
    for (let next = (hole + 1) & mask; index[2 * next + 1] !== 0; next = (next + 1) & mask) {
      const home = index[2 * next] & mask;
      // The entry at `next` may fill the hole unless its home lies cyclically in (hole, next].
      const between = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (!between) {
        index[2 * hole] = index[2 * next];
        index[2 * hole + 1] = index[2 * next + 1];
        hole = next;
      }
    }
    index[2 * hole] = 0;
    index[2 * hole + 1] = 0;
    this.live--;
  }
}

/**
 * A 64-bit hash of the key, in one pass: FNV-1a over its UTF-16 code units, two ways
 * (different offset bases and primes), the low half left in `hashLow` (no object returned).
 */
let hashLow = 0;
function hashKey(key: string): number {
  let h = 0x811c9dc5;
  let l = 0x050c5d1f;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h = Math.imul(h ^ c, 0x01000193);
    l = Math.imul(l ^ c, 0x5bd1e995);
  }
  hashLow = (l ^ (l >>> 15)) >>> 0;
  return h >>> 0;
}
