import { ResultCodeError } from 'ldapts';
import type { ContactWriter } from './central.js';
import type { ContactAttributes } from './mapping.js';

/** One central write: what the pipeline needs of a planned operation. */
export interface WriteOp {
  action: 'add' | 'update' | 'disable' | 'delete';
  contactDn: string;
  attrs?: ContactAttributes;
  changed?: string[];
}

export interface PipelineHooks<T extends WriteOp> {
  /** Journals operations before they are sent (seq numbers are the pipeline's). */
  journal(items: { op: T; seq: number }[]): Promise<void>;
  /** Records completed writes (joins + op status), FLUSH_BATCH at a time. */
  record(items: { op: T; seq: number }[]): Promise<void>;
  /** An LDAP answer refused one write: an item error; the others go on. */
  failed(item: { op: T; seq: number }, err: ResultCodeError): Promise<void>;
  progress(written: number, submitted: number): void;
}

/**
 * Central writes in flight at once, and how many completed writes are recorded together.
 * The CLI stops answering the central forest while it runs a store statement (the embedded
 * store runs in its thread): a flush of 250 joins, a page's join and address look-ups or its
 * journal take 10-25 ms, and 32 adds in flight were 6 ms of the central slapd's work, so it
 * waited. 256 (about 50 ms of its work) keep it busy through them.
 */
const WRITES_IN_FLIGHT = 256;
const FLUSH_BATCH = 250;
/** Operations waiting to be sent past which submit() waits: memory stays bounded. */
const HIGH_WATER = 2000;

/**
 * Pipelined central writes for one forest, fed as the read goes: WRITES_IN_FLIGHT operations
 * at once over the writer's connections, completed writes recorded FLUSH_BATCH at a time
 * while the others go on. submit() returns once the backlog is under HIGH_WATER, so a
 * streamed read never holds more than a few pages of work; drain() waits for the rest.
 * A write that fails with an LDAP answer is an item error; anything else (the connection is
 * gone) stops the pipeline and is thrown by the next submit() or drain(). Once `signal`
 * aborts, no new write starts; those in flight finish and are recorded.
 */
export class WritePipeline<T extends WriteOp> {
  private queue: { op: T; seq: number }[] = [];
  private head = 0;
  private done: { op: T; seq: number }[] = [];
  private readonly workers = new Set<Promise<void>>();
  private waiters: (() => void)[] = [];
  private fatal?: { err: unknown };
  failures = 0;
  written = 0;
  submitted = 0;

  constructor(
    private readonly writer: ContactWriter,
    private seq: number,
    private readonly hooks: PipelineHooks<T>,
    private readonly signal?: AbortSignal,
  ) {}

  private get stopped(): boolean {
    return this.fatal !== undefined || this.signal?.aborted === true;
  }

  /** Journals and queues these writes; waits while the backlog is over HIGH_WATER. */
  async submit(ops: T[]): Promise<void> {
    if (this.stopped) return;
    const items = ops.map((op) => ({ op, seq: ++this.seq }));
    for (let i = 0; i < items.length; i += 1000) await this.hooks.journal(items.slice(i, i + 1000));
    this.queue.push(...items);
    this.submitted += items.length;
    while (this.workers.size < WRITES_IN_FLIGHT && this.head + this.workers.size < this.queue.length) {
      const w = this.work().finally(() => {
        this.workers.delete(w);
        this.wake();
      });
      this.workers.add(w);
    }
    while (this.queue.length - this.head > HIGH_WATER && !this.stopped)
      await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Whether a write failed for a reason other than its entry: the caller stops reading. */
  get failed(): boolean {
    return this.fatal !== undefined;
  }

  /** Waits for every queued write (or, once stopped, those in flight) and records them. */
  async drain(): Promise<void> {
    while (this.workers.size > 0) await Promise.all([...this.workers]);
    const rest = this.done;
    this.done = [];
    await this.flush(rest);
    if (this.fatal) throw this.fatal.err;
  }

  private wake(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
  }

  private async flush(batch: { op: T; seq: number }[]): Promise<void> {
    if (batch.length === 0) return;
    await this.hooks.record(batch);
    this.written += batch.length;
    this.hooks.progress(this.written, this.submitted);
  }

  private async work(): Promise<void> {
    while (this.head < this.queue.length && !this.stopped) {
      const item = this.queue[this.head++];
      if (this.head >= 4096 && this.head * 2 >= this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      if (this.queue.length - this.head <= HIGH_WATER) this.wake();
      const { op } = item;
      try {
        if (op.action === 'add') await this.writer.addContact(op.contactDn, op.attrs ?? {});
        else if (op.action === 'delete') await this.writer.deleteContact(op.contactDn);
        else await this.writer.updateContact(op.contactDn, op.attrs ?? {}, op.changed ?? []);
        this.done.push(item);
      } catch (err) {
        if (!(err instanceof ResultCodeError)) {
          this.fatal ??= { err };
          return;
        }
        this.failures++;
        this.written++;
        await this.hooks.failed(item, err);
      }
      if (this.done.length >= FLUSH_BATCH) {
        const batch = this.done;
        this.done = [];
        await this.flush(batch);
      }
    }
  }
}
