/**
 * The transaction layer's tables: a Map from transaction key to transaction that never
 * becomes nearly empty. V8 shrinks a Map's hash table when a delete leaves it under a
 * quarter full, and compacts it when inserts reach deleted slots; both are calls into the
 * runtime that allocate a new table. Over TCP a REGISTER challenge is answered inside the
 * call that created its transaction, so the server table went from one entry to none, and
 * shrank, for nearly every request: 1.5 us a delete in the REGISTER profiles
 * (`forgetServer`, 2-3% of the server's CPU). Sixteen anchor entries, under keys no
 * transaction has (they start with NUL; a transaction's key is a Via branch or "2543|..."),
 * stay for good: the table keeps 32 slots, never shrinks and is compacted once every 16
 * inserts (get, set, get and delete on an otherwise empty table: 150-400 ns with one
 * anchor, 66 ns with sixteen).
 */
export class TransactionTable<T extends object> {
  private readonly map = new Map<string, T | undefined>();

  constructor() {
    for (let i = 0; i < ANCHORS; i++) this.map.set(`\u0000${i}`, undefined);
  }

  get(key: string): T | undefined {
    return this.map.get(key);
  }

  set(key: string, value: T): void {
    if (isAnchor(key)) throw new Error('a transaction key never starts with NUL');
    this.map.set(key, value);
  }

  delete(key: string): void {
    if (!isAnchor(key)) this.map.delete(key);
  }

  /** The transactions, without the anchors. */
  get size(): number {
    return this.map.size - ANCHORS;
  }

  /**
   * The transactions in the order they were added (oldest first), without the anchors.
   * Ending the one just returned (deleting it) while iterating is safe.
   */
  *oldestFirst(): IterableIterator<T> {
    for (const value of this.map.values()) if (value !== undefined) yield value;
  }

  /** A copy of the transactions, safe to end one by one. */
  list(): T[] {
    const out: T[] = [];
    for (const value of this.map.values()) if (value !== undefined) out.push(value);
    return out;
  }
}

const ANCHORS = 16;

function isAnchor(key: string): boolean {
  return key.charCodeAt(0) === 0;
}
