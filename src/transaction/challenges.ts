/**
 * The challenges (401/407 to a request without credentials) sent over UDP, kept for Timer J
 * (RFC 3261 17.2.2: a retransmitted request gets the same response again) as the time each
 * was issued, not as the response: the TU derives the challenge's nonce and To tag from the
 * transaction key and that time (NonceManager.create's seed), so a retransmission, handed to
 * the TU again with the time kept here, is answered with the same bytes. Every call over UDP
 * starts with a challenge; kept as bytes (CompletedResponses) each cost 285 bytes of heap and
 * 482 of slab, 123 MiB at 5,000 MESSAGE calls a second. Here an entry is 24 bytes of typed
 * arrays (and 8 of index), outside what the garbage collector copies or scans.
 *
 * Entries are found by a 64-bit hash of the transaction key. Two keys with the same hash only
 * mean that a new request is taken for a retransmission: the TU runs again on that request and
 * challenges it with an older issue time (a nonce a few seconds older), nothing else.
 *
 * Timer J is the same for every entry, so they expire in arrival order: a ring, its head the
 * oldest, and an open-addressing index (linear probing, backward-shift deletion) from the hash
 * to the ring position.
 */
export class ChallengeMemory {
  private capacity: number;
  private hashHi!: Uint32Array;
  private hashLo!: Uint32Array;
  private issuedAt!: Float64Array;
  /** When Timer J fires (the wheel's clock); DEAD: replaced by a newer entry of the same key. */
  private expiresAt!: Float64Array;
  /** Hash slot -> ring position + 1 (0: empty). Twice the ring's capacity. */
  private index!: Int32Array;
  private head = 0;
  private count = 0;
  /** Entries in the index (the ring also holds dead ones). */
  private live = 0;

  constructor(
    private readonly initialCapacity = 4096,
    /** Past this many the oldest is forgotten (its retransmission gets a fresh challenge). */
    private readonly maxEntries = 1 << 21,
  ) {
    if (initialCapacity < 2 || (initialCapacity & (initialCapacity - 1)) !== 0)
      throw new Error('the initial capacity must be a power of two');
    this.capacity = initialCapacity;
    this.allocate(initialCapacity);
  }

  get size(): number {
    return this.live;
  }

  /** Remembers that the challenge to the transaction `key` was issued at `issuedAt`, until `expiresAt`. */
  add(key: string, issuedAt: number, expiresAt: number): void {
    const hi = hashHi(key);
    const lo = hashLo(key);
    const slot = this.findSlot(hi, lo);
    if (slot >= 0) {
      // A retransmission answered again: the old entry dies where it is, the new one goes to the back.
      const pos = this.index[slot] - 1;
      this.expiresAt[pos] = DEAD;
      this.unindex(slot);
    }
    if (this.count === this.capacity) {
      if (this.capacity >= this.maxEntries) this.dropHead();
      else this.grow();
    }
    const pos = (this.head + this.count) % this.capacity;
    this.hashHi[pos] = hi;
    this.hashLo[pos] = lo;
    this.issuedAt[pos] = issuedAt;
    this.expiresAt[pos] = expiresAt;
    this.count++;
    this.insertIndex(hi, pos);
  }

  /** When the challenge to `key` was issued, if one is remembered. */
  find(key: string): number | undefined {
    if (this.live === 0) return undefined;
    const slot = this.findSlot(hashHi(key), hashLo(key));
    return slot < 0 ? undefined : this.issuedAt[this.index[slot] - 1];
  }

  /** Forgets the entries expired by `now`; returns when the next one expires (undefined: none left). */
  expire(now: number): number | undefined {
    while (this.count > 0) {
      const expires = this.expiresAt[this.head];
      if (expires !== DEAD && expires > now) return expires;
      this.dropHead();
    }
    // Empty: an idle server gives back what a busy minute grew.
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
  }

  private dropHead(): void {
    const pos = this.head;
    if (this.expiresAt[pos] !== DEAD) {
      const slot = this.slotOfPosition(this.hashHi[pos], pos);
      if (slot >= 0) this.unindex(slot);
    }
    this.head = (this.head + 1) % this.capacity;
    this.count--;
  }

  private allocate(capacity: number): void {
    this.hashHi = new Uint32Array(capacity);
    this.hashLo = new Uint32Array(capacity);
    this.issuedAt = new Float64Array(capacity);
    this.expiresAt = new Float64Array(capacity);
    this.index = new Int32Array(capacity * 2);
  }

  /** Twice the room: the ring unrolled from its head, the index rebuilt. */
  private grow(): void {
    const old = {
      hashHi: this.hashHi,
      hashLo: this.hashLo,
      issuedAt: this.issuedAt,
      expiresAt: this.expiresAt,
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
      if (old.expiresAt[from] !== DEAD) this.insertIndex(old.hashHi[from], i);
    }
    this.head = 0;
  }

  private insertIndex(hi: number, pos: number): void {
    const mask = this.index.length - 1;
    let slot = hi & mask;
    while (this.index[slot] !== 0) slot = (slot + 1) & mask;
    this.index[slot] = pos + 1;
    this.live++;
  }

  private findSlot(hi: number, lo: number): number {
    const mask = this.index.length - 1;
    for (let slot = hi & mask; ; slot = (slot + 1) & mask) {
      const entry = this.index[slot];
      if (entry === 0) return -1;
      const pos = entry - 1;
      if (this.hashHi[pos] === hi && this.hashLo[pos] === lo) return slot;
    }
  }

  private slotOfPosition(hi: number, pos: number): number {
    const mask = this.index.length - 1;
    for (let slot = hi & mask; ; slot = (slot + 1) & mask) {
      const entry = this.index[slot];
      if (entry === 0) return -1;
      if (entry === pos + 1) return slot;
    }
  }

  /** Backward-shift deletion: the entries after the hole that would not be found past it move into it. */
  private unindex(slot: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let hole = slot;
    for (let next = (hole + 1) & mask; index[next] !== 0; next = (next + 1) & mask) {
      const home = this.hashHi[index[next] - 1] & mask;
      // The entry at `next` may fill the hole unless its home lies cyclically in (hole, next].
      const between = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (!between) {
        index[hole] = index[next];
        hole = next;
      }
    }
    index[hole] = 0;
    this.live--;
  }
}

const DEAD = -1;

/** FNV-1a over the key's UTF-16 code units, two ways (different offset bases): 64 bits together. */
function hashHi(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function hashLo(key: string): number {
  let h = 0x050c5d1f;
  for (let i = key.length - 1; i >= 0; i--) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h ^ (h >>> 15)) >>> 0;
}
