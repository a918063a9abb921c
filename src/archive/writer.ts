import type { Logger } from 'pino';
import type { ArchivingConfig } from '../ops/config.js';
import type { ArchiveRepository, NewArchivedMessage } from '../store/archive.js';

/** A routed message waiting for its final response before it is archived. */
export interface PendingMessage {
  sender: string;
  recipient: string;
  contentType: string;
  body: string;
  size: number;
}

export interface ArchiveWriterOptions extends ArchivingConfig {
  repo: Pick<ArchiveRepository, 'insertBatch' | 'purgeBefore'>;
  serverId: string;
  log: Logger;
  now?: () => number;
  onWritten?: (rows: number) => void;
  onWriteFailed?: () => void;
  onDropped?: (rows: number) => void;
}

/** A message whose transaction never got a final response is archived without one after this. */
const PENDING_LIMIT_MS = 64 * 500;
const RETRY_MS = 1_000;
const DAY_MS = 86_400_000;

/**
 * Writes the archive in batches: a MESSAGE's row waits for the final response the sender got
 * (its delivery result), then joins the batch, written as one statement when it holds
 * `batchSize` rows or `flushMs` after its first. One write is in flight at a time; rows
 * arriving meanwhile form the next batch, so the rate of statements falls as the message
 * rate rises.
 *
 * A failed write is kept and retried every second. With `onFailure: block` the server
 * refuses messages (500) until a write succeeds again, so nothing is delivered that the
 * archive would not hold for long; with `continue` messages flow, failures are counted
 * (parley_archive_failures_total: alert on it) and, past a backlog of 100 batches, the
 * oldest rows are dropped and counted.
 */
export class ArchiveWriter<Key = unknown> {
  private readonly users: Set<string>;
  private groupMembers = new Set<string>();
  private readonly pending = new Map<Key, PendingMessage & { at: number }>();
  private batch: NewArchivedMessage[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private failing = false;
  private purgeTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly opts: ArchiveWriterOptions) {
    this.users = new Set(opts.users);
    this.now = opts.now ?? Date.now;
  }

  /** Whether a message between these users is archived. */
  wants(sender: string, recipient: string): boolean {
    if (this.users.size === 0 && this.opts.groups.length === 0) return true;
    return (
      this.users.has(sender) ||
      this.users.has(recipient) ||
      this.groupMembers.has(sender) ||
      this.groupMembers.has(recipient)
    );
  }

  /** The members of `archiving.groups` now (followArchivedGroups keeps them current). */
  setGroupMembers(aors: Iterable<string>): void {
    this.groupMembers = new Set(aors);
  }

  /** False while `onFailure: block` holds messages back because the archive cannot be written. */
  get accepting(): boolean {
    return !(this.failing && this.opts.onFailure === 'block');
  }

  /** Rows not yet written (waiting for a final response, in the batch, or being retried). */
  get backlog(): number {
    return this.pending.size + this.batch.length;
  }

  /** A message is on its way: its row waits for `finished` (the final response). */
  begin(key: Key, message: PendingMessage): void {
    this.pending.set(key, { ...message, at: this.now() });
  }

  /** The sender got its final response: the row joins the batch. */
  finished(key: Key, status: number): void {
    const p = this.pending.get(key);
    if (!p) return;
    this.pending.delete(key);
    this.add(p, status);
  }

  private add(p: PendingMessage & { at: number }, result: number): void {
    this.batch.push({
      at: new Date(p.at),
      sender: p.sender,
      recipient: p.recipient,
      contentType: p.contentType,
      body: p.body,
      size: p.size,
      result,
      serverId: this.opts.serverId,
    });
    if (this.batch.length >= this.opts.batchSize) this.flushSoon(0);
    else this.flushSoon(this.opts.flushMs);
  }

  private flushSoon(ms: number): void {
    if (this.writing) return; // the write in flight schedules the next batch when it ends
    if (this.timer && ms > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms);
    this.timer.unref?.();
  }

  /** Writes what is batched now (and what arrives while it writes); resolves when done. */
  async flush(): Promise<void> {
    if (this.writing) await this.writing;
    this.expirePending();
    if (this.batch.length === 0) return;
    const rows = this.batch.splice(0, this.opts.batchSize);
    this.writing = this.write(rows);
    try {
      await this.writing;
    } finally {
      this.writing = undefined;
    }
    if (this.batch.length > 0 && !this.closed) this.flushSoon(this.failing ? RETRY_MS : 0);
  }

  private async write(rows: NewArchivedMessage[]): Promise<void> {
    try {
      await this.opts.repo.insertBatch(rows);
      if (this.failing) this.opts.log.warn('archive writable again');
      this.failing = false;
      this.opts.onWritten?.(rows.length);
    } catch (err) {
      if (!this.failing)
        this.opts.log.error(
          { err, onFailure: this.opts.onFailure },
          this.opts.onFailure === 'block'
            ? 'archive cannot be written: refusing messages until it can'
            : 'archive cannot be written: messages are delivered unarchived until it can',
        );
      this.failing = true;
      this.opts.onWriteFailed?.();
      // Keep the rows for the retry, oldest first; without blocking, bound what is kept.
      this.batch.unshift(...rows);
      const cap = this.opts.batchSize * 100;
      if (this.batch.length > cap) {
        const dropped = this.batch.length - cap;
        this.batch.splice(0, dropped);
        this.opts.onDropped?.(dropped);
      }
    }
  }

  private expirePending(): void {
    const limit = this.now() - PENDING_LIMIT_MS;
    for (const [key, p] of this.pending) {
      if (p.at > limit) break; // insertion order: the rest are younger
      this.pending.delete(key);
      this.add(p, 0);
    }
  }

  /** Deletes messages past retention now, then once a day. */
  startPurge(): void {
    if (this.opts.retentionDays <= 0) return;
    const purge = () => {
      this.purgeExpired().catch((err: unknown) => this.opts.log.warn({ err }, 'archive purge failed'));
    };
    purge();
    this.purgeTimer = setInterval(purge, DAY_MS);
    this.purgeTimer.unref?.();
  }

  async purgeExpired(): Promise<number> {
    const cutoff = new Date(this.now() - this.opts.retentionDays * DAY_MS);
    const removed = await this.opts.repo.purgeBefore(cutoff);
    if (removed > 0)
      this.opts.log.info({ removed, before: cutoff.toISOString() }, 'archive purged past retention');
    return removed;
  }

  /** Writes what is left (pending messages without a final response included). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.purgeTimer);
    for (const [key, p] of this.pending) {
      this.pending.delete(key);
      this.add(p, 0);
    }
    clearTimeout(this.timer);
    while (this.batch.length > 0 && !this.failing) await this.flush();
    if (this.batch.length > 0) {
      this.opts.log.error(
        { rows: this.batch.length },
        'archive rows lost at shutdown: the archive could not be written',
      );
    }
  }
}
