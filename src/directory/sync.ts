import { ResultCodeError } from 'ldapts';
import type { DirectoryJournalRepository, Join, OpAction } from '../store/directory-journal.js';
import { holderIsDead, lockHolder } from '../store/holder.js';
import type { Store } from '../store/store.js';
import {
  type CentralContact,
  CentralDirectory,
  CentralNotPreparedError,
  type ContactWriter,
} from './central.js';
import type { DirectoryConfig, ForestConfig } from './config.js';
import { ContentSyncUnsupportedError } from './content-sync.js';
import { noUserCounts, type UserCounts } from './counts.js';
import { DirectoryError, EXIT } from './errors.js';
import { ForestReader, laterMark } from './forest.js';
import { BindPasswordError, type Environment } from './ldap.js';
import {
  type ContactAttributes,
  changedAttributes,
  contactAttributes,
  contactDn,
  hashAttributes,
  type SourceUser,
  sipAddress,
} from './mapping.js';
import { WritePipeline } from './write-pipeline.js';

/**
 * The identity-integration job: secondary forests -> contacts in the central forest.
 *
 * Per forest: read, diff, write. Read: with content synchronization (RFC 4533, OpenLDAP's
 * syncprov) only what changed since the forest's cookie, deletes and moves out of scope
 * included; without it, users changed since the watermark plus every anchor in scope (to
 * see deletes); the whole forest, paged, on the first run, with --full, or when the server
 * refuses the cookie. Diff: against the joins of the users concerned (or against the
 * central contacts themselves with --full). Write: journaled, idempotent LDAP operations.
 * A killed run leaves its cookie or watermark where it was, so the next run reads the same
 * changes again and its idempotent writes finish the job; joins make done work cost nothing.
 */

export type SyncPhase = 'read' | 'diff' | 'write';

export interface SyncProgress {
  forest: string;
  phase: SyncPhase;
  done: number;
  total?: number;
  /** While a whole forest is read: the writes already made (they go on as the read goes). */
  written?: number;
}

export interface SyncConflict {
  forest: string;
  anchor: string;
  sourceDn: string;
  sipAddress: string;
  /** 'central:<dn>' or '<forest>:<dn>' */
  heldBy: string;
}

export interface SyncItemError {
  forest: string;
  anchor?: string;
  dn?: string;
  action?: OpAction;
  code: string;
  message: string;
}

export interface PlannedChange {
  forest: string;
  action: OpAction;
  anchor: string;
  contactDn: string;
  sipAddress: string;
  sourceDn: string;
  attributes?: string[];
}

export interface ForestSummary extends UserCounts {
  forest: string;
  status: 'ok' | 'failed' | 'refused';
  mode: 'incremental' | 'full';
  /** How changes were found: RFC 4533 content sync, or the modifyTimestamp/uSNChanged watermark. */
  tracking?: 'content-sync' | 'watermark';
  /** Whether every user in scope was read (first run, --full, or a fallback). */
  fullRead?: boolean;
  /** Why an incremental run read the whole forest instead (no cookie yet, cookie refused...). */
  fallback?: string;
  conflicts: number;
  errors: number;
  /** Removals planned but refused by the deletion threshold. */
  refusedRemovals: number;
  watermark?: string;
  message?: string;
}

export interface SyncSummary {
  runId: number;
  status: 'succeeded' | 'partial' | 'refused' | 'failed';
  exitCode: number;
  dryRun: boolean;
  mode: 'incremental' | 'full';
  resumedFrom?: number;
  added: number;
  updated: number;
  disabled: number;
  deleted: number;
  conflicts: SyncConflict[];
  errors: SyncItemError[];
  durationMs: number;
  forests: ForestSummary[];
  /** With --dry-run: what would be written. */
  planned: PlannedChange[];
}

export interface SyncOptions {
  store: Store;
  config: DirectoryConfig;
  env: Environment;
  forests?: string[];
  full?: boolean;
  dryRun?: boolean;
  allowMassDelete?: boolean;
  now?: () => Date;
  /** Stops between writes; the run is left as a killed process would leave it. */
  signal?: AbortSignal;
  onProgress?: (p: SyncProgress) => void;
  /** Lets a test or a caller wrap the central writes (e.g. to count them). */
  wrapWriter?: (writer: ContactWriter) => ContactWriter;
}

/** What an incremental read found in one forest: proportional to the change. */
interface ForestRead {
  changed: SourceUser[];
  /** Anchors known to be in scope (a present phase, the watermark's anchors); gone = joins not in it. */
  present?: Set<string>;
  /** Anchors reported gone (content sync's explicit deletes). */
  deleted: Set<string>;
  /** Where the next run starts, stored once this run's writes are recorded. */
  next?: { cookie: Buffer } | { watermark: string };
}

/** How a forest is read this run: its changes, or all of it (streamed by syncAll). */
type ReadPlan =
  | { kind: 'changes'; tracking: 'content-sync' | 'watermark'; read: ForestRead; fallback?: undefined }
  | {
      kind: 'all';
      tracking: 'content-sync' | 'watermark';
      /** Content sync: the cookie taken before the read, so changes made during it are seen next run. */
      cookie?: Buffer;
      /** Why an incremental run reads the whole forest. */
      fallback?: string;
    };

/** What diffing some users (or joins) plans: LDAP writes, and join changes with no write. */
interface DiffChunk {
  ops: PlannedOp[];
  storeOnly: Join[];
  forget: string[];
}

function newChunk(): DiffChunk {
  return { ops: [], storeOnly: [], forget: [] };
}

type Progress = (phase: SyncPhase, done: number, total?: number, written?: number) => void;

/** The forest's server failed during the read: that forest fails, the others go on. */
class ForestReadFailure extends Error {
  override name = 'ForestReadFailure';
  constructor(override readonly cause: unknown) {
    super(describe(cause));
  }
}

interface PlannedOp extends PlannedChange {
  attrs?: ContactAttributes;
  changed?: string[];
  /** Join state once the op is done (undefined: the join goes away). */
  join?: Join;
  /** The user had no join when diffed: the join is inserted, not upserted (Store addJoins). */
  fresh?: boolean;
  removal: boolean;
}

export class SyncInterruptedError extends Error {
  override name = 'SyncInterruptedError';
}

/** Anchors per batched join read. */
const JOIN_BATCH = 5000;
/** SQLSTATE of a duplicate key. */
const UNIQUE_VIOLATION = '23505';

function emptyForestSummary(forest: string, mode: 'incremental' | 'full'): ForestSummary {
  return {
    forest,
    status: 'ok',
    mode,
    ...noUserCounts(),
    conflicts: 0,
    errors: 0,
    refusedRemovals: 0,
  };
}

function describe(err: unknown): string {
  if (err instanceof ResultCodeError) return `${err.name} (LDAP result ${err.code}): ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

function userFromJoin(j: Join): SourceUser & { alias: string } {
  const a = j.attributes;
  return {
    forest: j.forest,
    anchor: j.anchor,
    dn: j.sourceDn,
    alias: j.sipAddress.split('@')[0],
    displayName: a.displayName?.[0] ?? '',
    givenName: a.givenName?.[0],
    surname: a.sn?.[0],
    mail: a.mail?.[0],
    disabled: a.parleyEnabled?.[0] === 'FALSE',
  };
}

type Claim = { forest: string; anchor: string; sourceDn: string };

/** The key of one source user in the holders' bookkeeping. */
function userKey(forest: string, anchor: string): string {
  return `${forest}\u0000${anchor}`;
}

/**
 * Who holds which SIP address: central users (in LDAP) and the sync's own contacts (the
 * joins). Only the addresses a run touches are looked up: an incremental run's changes all
 * at once, a whole-forest read page by page (`fresh` drops the previous page's answers), so
 * neither keeps every address of the forests. What the run itself hands out or releases is
 * an overlay on those answers until the store has recorded it (the write and its join),
 * then dropped at the next fresh look-up, which reads the store after that record.
 */
class AddressHolders {
  private readonly central = new Map<string, string>();
  private readonly stored = new Map<string, Claim>();
  private readonly known = new Set<string>();
  /** The run's hand-outs (a claim) and releases (none), by the user whose write makes them. */
  private readonly changes = new Map<string, { claim?: Claim; by: string }>();
  /** Users whose writes the store has recorded since the last fresh look-up. */
  private readonly recorded = new Set<string>();

  constructor(
    private readonly directory: CentralDirectory,
    private readonly journal: DirectoryJournalRepository,
  ) {}

  /** The central user (its DN) holding the address, if any. */
  centralHolder(sip: string): string | undefined {
    return this.central.get(sip);
  }

  /** The source user holding the address, if any. */
  claim(sip: string): Claim | undefined {
    const change = this.changes.get(sip);
    return change ? change.claim : this.stored.get(sip);
  }

  take(sip: string, claim: Claim): void {
    this.changes.set(sip, { claim, by: userKey(claim.forest, claim.anchor) });
  }

  release(sip: string, forest: string, anchor: string): void {
    this.changes.set(sip, { by: userKey(forest, anchor) });
  }

  /** These users' writes (or failures) are recorded: the store tells their claims from now on. */
  settled(forest: string, anchors: Iterable<string>): void {
    for (const a of anchors) this.recorded.add(userKey(forest, a));
  }

  /**
   * Looks up who holds these addresses. `joins` are joins the caller has read: the address of
   * one that is not a conflict is held by that join (an address has one holder), so the store
   * is asked only about the others, mostly addresses nobody holds yet (an index probe that
   * finds nothing). At 1,000,000 joins, asking about the addresses of 1,000 changed users
   * spread over the table read a table page each.
   */
  async lookUp(
    addresses: Iterable<string>,
    joins: Iterable<Join>,
    opts: { fresh?: boolean } = {},
  ): Promise<void> {
    if (opts.fresh) {
      this.central.clear();
      this.stored.clear();
      this.known.clear();
      for (const [sip, change] of this.changes) if (this.recorded.has(change.by)) this.changes.delete(sip);
      this.recorded.clear();
    }
    const missing = [...new Set(addresses)].filter((a) => !this.known.has(a));
    for (const a of missing) this.known.add(a);
    const held = new Set<string>();
    for (const j of joins) {
      if (j.state === 'conflict' || !this.known.has(j.sipAddress) || this.stored.has(j.sipAddress)) continue;
      this.stored.set(j.sipAddress, { forest: j.forest, anchor: j.anchor, sourceDn: j.sourceDn });
      held.add(j.sipAddress);
    }
    for (let i = 0; i < missing.length; i += JOIN_BATCH) {
      const chunk = missing.slice(i, i + JOIN_BATCH);
      const [central, claims] = await Promise.all([
        this.directory.centralUserAddressesFor(chunk),
        this.journal.claimsFor(chunk.filter((a) => !held.has(a))),
      ]);
      for (const [sip, dn] of central) this.central.set(sip, dn);
      for (const [sip, c] of claims) this.stored.set(sip, c);
    }
  }
}

export class DirectorySync {
  private readonly holder = lockHolder();
  private readonly started = Date.now();
  private readonly summaries: ForestSummary[] = [];
  private readonly conflicts: SyncConflict[] = [];
  private readonly errors: SyncItemError[] = [];
  private readonly planned: PlannedChange[] = [];
  private heartbeat?: NodeJS.Timeout;
  private finished = false;
  /** The run's last op sequence number: each forest's pipeline goes on from it. */
  private lastSeq = 0;
  private writer: ContactWriter;

  private constructor(
    private readonly opts: SyncOptions,
    private readonly central: CentralDirectory,
    private readonly runId: number,
    private readonly resumedFrom: number | undefined,
    private readonly holders: AddressHolders,
  ) {
    this.writer = opts.wrapWriter ? opts.wrapWriter(central) : central;
  }

  private get journal() {
    return this.opts.store.directoryJournal;
  }

  get mode(): 'incremental' | 'full' {
    return this.opts.full ? 'full' : 'incremental';
  }

  /** Takes the lock, opens the run and checks the central forest. */
  static async begin(opts: SyncOptions): Promise<DirectorySync> {
    const names = opts.config.forests.map((f) => f.name);
    for (const f of opts.forests ?? []) {
      if (!names.includes(f)) {
        throw new DirectoryError(
          'DIRECTORY_UNKNOWN_FOREST',
          `no forest named '${f}' in the configuration`,
          EXIT.config,
          [`configured forests: ${names.join(', ')}`],
        );
      }
    }
    const journal = opts.store.directoryJournal;
    const holder = lockHolder();
    const lock = await journal.acquireLock(holder, opts.config.sync.lockStaleSeconds, holderIsDead);
    if (!lock.acquired) {
      const h = lock.heldBy;
      throw new DirectoryError(
        'DIRECTORY_LOCKED',
        `another directory sync is running (${h.holder}${h.runId ? `, run ${h.runId}` : ''}, since ${h.acquiredAt.toISOString()})`,
        EXIT.locked,
        [
          `wait for it to finish; a lock whose holder stops renewing it is taken over after ${opts.config.sync.lockStaleSeconds}s`,
        ],
      );
    }
    let central: CentralDirectory | undefined;
    try {
      central = await CentralDirectory.connect(opts.config.central, opts.env).catch((err: unknown) => {
        if (err instanceof BindPasswordError)
          throw new DirectoryError('DIRECTORY_PASSWORD', err.message, EXIT.config);
        throw new DirectoryError(
          'DIRECTORY_CENTRAL_UNREACHABLE',
          `cannot bind to the central forest ${opts.config.central.url}: ${describe(err)}`,
          EXIT.error,
          ['check directory.central.url, bindDn and the bind password source'],
        );
      });
      await central.checkPrepared().catch((err: unknown) => {
        if (err instanceof CentralNotPreparedError) {
          throw new DirectoryError('DIRECTORY_NOT_PREPARED', err.message, EXIT.error, [
            `run: parley directory prepare --central ${opts.config.central.url}`,
          ]);
        }
        throw err;
      });
      const run = await journal.startRun({
        mode: opts.full ? 'full' : 'incremental',
        dryRun: !!opts.dryRun,
        holder,
      });
      await journal.heartbeat(holder, run.runId);
      const sync = new DirectorySync(
        opts,
        central,
        run.runId,
        run.resumedFrom,
        new AddressHolders(central, journal),
      );
      const every = Math.max(1, Math.floor(opts.config.sync.lockStaleSeconds / 4)) * 1000;
      sync.heartbeat = setInterval(() => void journal.heartbeat(holder).catch(() => undefined), every);
      sync.heartbeat.unref();
      return sync;
    } catch (err) {
      await central?.close();
      await journal.releaseLock(holder);
      throw err;
    }
  }

  forestsToSync(): ForestConfig[] {
    const only = this.opts.forests;
    return this.opts.config.forests.filter((f) => !only || only.length === 0 || only.includes(f.name));
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /** One forest: read, diff, write. A forest that cannot be read fails alone. */
  async syncForest(forest: ForestConfig, onProgress = this.opts.onProgress): Promise<ForestSummary> {
    const summary = emptyForestSummary(forest.name, this.mode);
    this.summaries.push(summary);
    const progress: Progress = (phase, done, total, written) =>
      onProgress?.({ forest: forest.name, phase, done, total, written });

    let reader: ForestReader | undefined;
    try {
      let plan: ReadPlan;
      try {
        reader = await ForestReader.connect(forest, this.opts.env);
        progress('read', 0);
        plan = await this.read(forest, reader, summary, progress);
      } catch (err) {
        throw new ForestReadFailure(err);
      }
      summary.tracking = plan.tracking;
      summary.fullRead = plan.kind === 'all';
      summary.fallback = plan.fallback;
      if (plan.kind === 'all') await this.syncAll(forest, reader, plan, summary, progress);
      else await this.syncChanges(forest, plan.read, summary, progress);
    } catch (err) {
      if (!(err instanceof ForestReadFailure)) throw err;
      summary.status = 'failed';
      summary.message = `cannot read forest ${forest.name} (${forest.url}): ${describe(err.cause)}`;
    } finally {
      await reader?.close();
    }
    return summary;
  }

  /**
   * The read phase: content sync where the forest offers it, else the watermark. What an
   * incremental read finds (proportional to the change) is returned whole; a read of the
   * whole forest is left to syncAll, which streams it.
   */
  private async read(
    forest: ForestConfig,
    reader: ForestReader,
    summary: ForestSummary,
    progress: Progress,
  ): Promise<ReadPlan> {
    const tryContentSync =
      forest.changeTracking === 'content-sync' ||
      (forest.changeTracking === 'auto' && forest.type === 'openldap');
    if (tryContentSync) {
      const cookie = this.opts.full ? undefined : await this.journal.syncCookie(forest.name);
      let fallback = this.opts.full ? undefined : 'no content-sync cookie yet';
      if (cookie) {
        try {
          return {
            kind: 'changes',
            tracking: 'content-sync',
            read: await this.readChanges(reader, cookie, summary, progress),
          };
        } catch (err) {
          if (!(err instanceof ResultCodeError)) throw err;
          // RFC 4533 section 3.3: e-syncRefreshRequired (or a server that cannot use the
          // cookie any more) means the client must start again from the full content.
          fallback = `the server refused the content-sync cookie: ${describe(err)}`;
        }
      }
      let start: Buffer | undefined;
      try {
        start = await reader.currentCookie();
      } catch (err) {
        const unsupported = err instanceof ResultCodeError || err instanceof ContentSyncUnsupportedError;
        if (!unsupported || forest.changeTracking === 'content-sync') throw err;
      }
      if (start) return { kind: 'all', tracking: 'content-sync', cookie: start, fallback };
    }
    const since = this.opts.full ? undefined : await this.journal.watermark(forest.name);
    if (since === undefined) return { kind: 'all', tracking: 'watermark' };
    const changed: SourceUser[] = [];
    let mark: string | undefined = since;
    for await (const page of reader.users(since)) {
      for (const u of page.users) {
        changed.push(u);
        mark = laterMark(mark, u.changeMark);
      }
      summary.read += page.users.length;
      progress('read', summary.read);
    }
    return {
      kind: 'changes',
      tracking: 'watermark',
      read: {
        changed,
        // LDAP servers forget deleted entries: every anchor in scope is read to find them.
        present: await reader.anchors(),
        deleted: new Set(),
        next: mark !== undefined && mark !== since ? { watermark: mark } : undefined,
      },
    };
  }

  /** RFC 4533 refreshOnly from the stored cookie: only what changed, deletes included. */
  private async readChanges(
    reader: ForestReader,
    cookie: Buffer,
    summary: ForestSummary,
    progress: Progress,
  ): Promise<ForestRead> {
    const changed = new Map<string, SourceUser>();
    const deleted = new Set<string>();
    const present = new Set<string>();
    const changes = reader.changes(cookie);
    let result = await changes.next();
    while (!result.done) {
      const batch = result.value;
      for (const u of batch.users) changed.set(u.anchor, u);
      for (const a of batch.deleted) deleted.add(a);
      for (const a of batch.present) present.add(a);
      summary.read += batch.users.length;
      progress('read', summary.read);
      result = await changes.next();
    }
    const done = result.value;
    // An entry reported changed exists, whatever an earlier delete said (moved out and back).
    for (const a of changed.keys()) deleted.delete(a);
    const users = [...changed.values()];
    if (!done.refreshDeletes) {
      // Present phase (RFC 4533 section 3.3.1): whatever was neither reported present nor
      // changed is gone. OpenLDAP answers this way when its session log does not reach back
      // to the cookie.
      for (const u of users) present.add(u.anchor);
    }
    return {
      changed: users,
      present: done.refreshDeletes ? undefined : present,
      deleted,
      next: done.cookie ? { cookie: done.cookie } : { cookie },
    };
  }

  /** An incremental run: the changes are few, so they are diffed together, then written. */
  private async syncChanges(
    forest: ForestConfig,
    read: ForestRead,
    summary: ForestSummary,
    progress: Progress,
  ): Promise<void> {
    progress('diff', 0);
    const joins = await this.joinsFor(forest, read);
    await this.holders.lookUp(this.addressesOf(read.changed, joins.values()), joins.values());
    const chunk = newChunk();
    const seen = new Set<string>();
    this.diffUsers(forest, summary, read.changed, joins, seen, chunk);
    const isPresent = (anchor: string) =>
      read.present ? read.present.has(anchor) : !read.deleted.has(anchor);
    this.diffUnseen(
      forest,
      summary,
      [...joins.values()].filter((j) => !seen.has(j.anchor)),
      isPresent,
      chunk,
    );
    await this.saveChunk(forest, chunk);
    progress('diff', chunk.ops.length, chunk.ops.length);

    const removals = chunk.ops.filter((o) => o.removal).length;
    const allowed = await this.removalsAllowed(forest, removals, summary);
    const toWrite = allowed ? chunk.ops : chunk.ops.filter((o) => !o.removal);
    if (this.opts.dryRun) {
      this.plan(summary, toWrite);
      this.advance(forest, read.next, 0, summary);
      return;
    }
    const pipeline = await this.pipeline(forest, summary, (written, submitted) =>
      progress('write', written, submitted),
    );
    progress('write', 0, toWrite.length);
    await pipeline.submit(toWrite);
    await this.endWrites(pipeline);
    await this.advance(forest, read.next, pipeline.failures, summary);
  }

  /**
   * A read of the whole forest (first run, --full, a refused cookie, or the watermark's first
   * run), streamed: each page is diffed against its own joins (and, with --full, its own
   * contacts) and its writes go into the pipeline while the next page is read, so memory is
   * bounded by the pages in flight, not by the forest. What the stream cannot decide alone
   * waits for its end: the users gone (joins of anchors not read) and every removal, which
   * the deletion threshold must see all together before one is made.
   */
  private async syncAll(
    forest: ForestConfig,
    reader: ForestReader,
    plan: Extract<ReadPlan, { kind: 'all' }>,
    summary: ForestSummary,
    progress: Progress,
  ): Promise<void> {
    // The percentage limit is of the contacts there were before this run's adds.
    const managedBefore =
      this.opts.config.sync.maxDeletePercent === undefined
        ? undefined
        : await this.journal.contactCount(forest.name);
    // Every anchor read: the joins not among them are gone. Strings only, a few MiB per 100,000.
    const seen = new Set<string>();
    const held: PlannedOp[] = [];
    let streaming = true;
    const pipeline = this.opts.dryRun
      ? undefined
      : await this.pipeline(forest, summary, (written, submitted) => {
          if (streaming) progress('read', summary.read, undefined, written);
          else progress('write', written, submitted);
        });
    const stopped = () => pipeline?.failed === true || this.opts.signal?.aborted === true;
    let mark: string | undefined;
    try {
      const pages = reader.users();
      while (!stopped()) {
        let page: IteratorResult<{ users: SourceUser[]; skipped: number }>;
        try {
          page = await pages.next();
        } catch (err) {
          throw new ForestReadFailure(err);
        }
        if (page.done) break;
        const { users } = page.value;
        summary.read += users.length;
        progress('read', summary.read, undefined, pipeline?.written);
        for (const u of users) mark = laterMark(mark, u.changeMark);
        const anchors = users.map((u) => u.anchor);
        const joins = await this.journal.joinsFor(forest.name, anchors);
        const actual = this.opts.full ? await this.central.contactsFor(forest.name, anchors) : undefined;
        await this.holders.lookUp(this.addressesOf(users, joins.values()), joins.values(), { fresh: true });
        const chunk = newChunk();
        this.diffUsers(forest, summary, users, joins, seen, chunk, actual);
        await this.saveChunk(forest, chunk);
        if (!this.opts.dryRun) {
          // What needs no write is in the store now (saved, or the same as before).
          const writing = new Set(chunk.ops.map((o) => o.anchor));
          this.holders.settled(
            forest.name,
            anchors.filter((a) => !writing.has(a)),
          );
        }
        const now = chunk.ops.filter((o) => !o.removal);
        held.push(...chunk.ops.filter((o) => o.removal));
        if (pipeline) await pipeline.submit(now);
        else this.plan(summary, now);
      }
      streaming = false;
      if (!stopped()) {
        progress('diff', 0);
        if (this.opts.full) {
          // Contacts of this forest that no join knows (the store was restored, say).
          for await (const contacts of this.central.contacts(forest.name)) {
            const unread = contacts.filter((c) => c.anchor && !seen.has(c.anchor));
            const joined = await this.journal.joinsFor(
              forest.name,
              unread.map((c) => c.anchor as string),
            );
            for (const c of unread) {
              if (!c.anchor || joined.has(c.anchor)) continue;
              held.push({
                forest: forest.name,
                anchor: c.anchor,
                contactDn: c.dn,
                sipAddress: c.attrs.parleySipAddress?.[0] ?? '',
                sourceDn: '',
                action: 'delete',
                removal: true,
              });
            }
          }
        }
        // Gone from the forest: deleted, or moved out of the base or filter.
        const gone: string[] = [];
        for await (const anchors of this.journal.joinAnchors(forest.name))
          for (const a of anchors) if (!seen.has(a)) gone.push(a);
        const goneChunks = async (each: (chunk: DiffChunk) => Promise<void>) => {
          for (let i = 0; i < gone.length; i += JOIN_BATCH) {
            const joins = await this.journal.joinsFor(forest.name, gone.slice(i, i + JOIN_BATCH));
            const chunk = newChunk();
            this.diffUnseen(forest, summary, joins.values(), () => false, chunk);
            await each(chunk);
          }
        };
        // At most gone.length removals among the gone: count them only when that could matter.
        let removals = held.length + gone.length;
        if (gone.length > 0 && (await this.overLimit(forest, removals, managedBefore))) {
          removals = held.length;
          await goneChunks(async (chunk) => {
            removals += chunk.ops.length;
          });
        }
        const allowed = await this.removalsAllowed(forest, removals, summary, managedBefore);
        progress('diff', removals, removals);
        const writeRemovals = async (ops: PlannedOp[]) => {
          if (!allowed) return;
          if (pipeline) await pipeline.submit(ops);
          else this.plan(summary, ops);
        };
        await goneChunks(async (chunk) => {
          await this.saveChunk(forest, chunk);
          await writeRemovals(chunk.ops);
        });
        await writeRemovals(held);
      }
    } catch (err) {
      // What was written is recorded before the forest fails, so the next run does not redo it.
      await pipeline?.drain().catch(() => undefined);
      throw err;
    }
    const next = plan.cookie ? { cookie: plan.cookie } : mark !== undefined ? { watermark: mark } : undefined;
    if (!pipeline) {
      this.advance(forest, next, 0, summary);
      return;
    }
    progress('write', pipeline.written, pipeline.submitted);
    await this.endWrites(pipeline);
    await this.advance(forest, next, pipeline.failures, summary);
  }

  /**
   * Whether this many removals would pass the deletion threshold's limits. `managed` is the
   * forest's contacts before the run wrote anything (a streamed read counts them first, as
   * its adds are recorded while it reads); otherwise they are counted now.
   */
  private async overLimit(forest: ForestConfig, removals: number, managed?: number): Promise<boolean> {
    if (removals === 0) return false;
    const policy = this.opts.config.sync;
    if (removals > policy.maxDeletes) return true;
    if (policy.maxDeletePercent === undefined) return false;
    // Counting the forest's contacts costs a pass over its joins: only when something goes.
    const count = managed ?? (await this.journal.contactCount(forest.name));
    return removals * 100 > policy.maxDeletePercent * Math.max(count, 1);
  }

  /**
   * The deletion threshold: a wrong base DN or filter looks exactly like everyone leaving, so
   * removals past the limits are refused (the forest's other changes are made) unless
   * --allow-mass-delete.
   */
  private async removalsAllowed(
    forest: ForestConfig,
    removals: number,
    summary: ForestSummary,
    managedBefore?: number,
  ): Promise<boolean> {
    if (this.opts.allowMassDelete || !(await this.overLimit(forest, removals, managedBefore))) return true;
    const policy = this.opts.config.sync;
    const managed = managedBefore ?? (await this.journal.contactCount(forest.name));
    summary.status = 'refused';
    summary.refusedRemovals = removals;
    summary.message = `refused to remove ${removals} of ${managed} contacts (limit ${policy.maxDeletes}${
      policy.maxDeletePercent !== undefined ? ` or ${policy.maxDeletePercent}%` : ''
    }); rerun with --allow-mass-delete if this is intended`;
    return false;
  }

  /**
   * Moves the forest's cookie or watermark once its writes are recorded. Failed items and
   * refused removals are read again next run: a content-sync cookie reports a change once,
   * so it moves only when everything it reported is done.
   */
  private async advance(
    forest: ForestConfig,
    next: ForestRead['next'],
    writeErrors: number,
    summary: ForestSummary,
  ): Promise<void> {
    const mark = next && 'watermark' in next ? next.watermark : undefined;
    if (this.opts.dryRun) {
      summary.watermark = mark;
      return;
    }
    if (writeErrors === 0 && summary.status !== 'refused' && next) {
      if ('cookie' in next) await this.journal.setSyncCookie(forest.name, next.cookie);
      else await this.journal.setWatermark(forest.name, next.watermark);
      summary.watermark = mark;
    }
  }

  private plan(summary: ForestSummary, ops: PlannedOp[]): void {
    for (const op of ops) if (op.action) this.planned.push(this.publicChange(op));
    this.count(summary, ops);
  }

  private publicChange(op: PlannedOp): PlannedChange {
    return {
      forest: op.forest,
      action: op.action,
      anchor: op.anchor,
      contactDn: op.contactDn,
      sipAddress: op.sipAddress,
      sourceDn: op.sourceDn,
      attributes: op.changed,
    };
  }

  private count(summary: ForestSummary, ops: PlannedOp[]): void {
    for (const op of ops) {
      if (op.action === 'add') summary.added++;
      else if (op.action === 'update') summary.updated++;
      else if (op.action === 'disable') summary.disabled++;
      else if (op.action === 'delete') summary.deleted++;
    }
  }

  private graceExpired(j: Join): boolean {
    if (!j.disabledAt) return false;
    return this.now().getTime() - j.disabledAt.getTime() >= this.opts.config.sync.deleteGraceSeconds * 1000;
  }

  private conflict(
    forest: ForestConfig,
    user: SourceUser,
    sip: string,
    heldBy: string,
    summary: ForestSummary,
  ): void {
    summary.conflicts++;
    this.conflicts.push({
      forest: forest.name,
      anchor: user.anchor,
      sourceDn: user.dn,
      sipAddress: sip,
      heldBy,
    });
  }

  /** Who else holds this address, if anyone: a central user first, then another source user. */
  private holderOf(sip: string, forest: string, anchor: string): string | undefined {
    const central = this.holders.centralHolder(sip);
    if (central) return `central:${central}`;
    const claim = this.holders.claim(sip);
    if (claim && !(claim.forest === forest && claim.anchor === anchor))
      return `${claim.forest}:${claim.sourceDn}`;
    return undefined;
  }

  /**
   * The joins an incremental run needs: those of the users read, of the users gone, and
   * those waiting on something (conflicts, grace periods over).
   */
  private async joinsFor(forest: ForestConfig, read: ForestRead): Promise<Map<string, Join>> {
    const wanted = read.changed.map((u) => u.anchor);
    if (read.present) {
      for await (const anchors of this.journal.joinAnchors(forest.name))
        for (const a of anchors) if (!read.present.has(a)) wanted.push(a);
    } else {
      wanted.push(...read.deleted);
    }
    const joins = new Map<string, Join>();
    for (let i = 0; i < wanted.length; i += JOIN_BATCH) {
      for (const [a, j] of await this.journal.joinsFor(forest.name, wanted.slice(i, i + JOIN_BATCH)))
        joins.set(a, j);
    }
    const graceStart = new Date(this.now().getTime() - this.opts.config.sync.deleteGraceSeconds * 1000);
    for (const j of await this.journal.waitingJoins(forest.name, graceStart))
      if (!joins.has(j.anchor)) joins.set(j.anchor, j);
    return joins;
  }

  /** The addresses a diff of these users and joins may hand out, release or find taken. */
  private addressesOf(users: SourceUser[], joins: Iterable<Join>): string[] {
    const addresses = users.flatMap((u) =>
      u.alias ? [sipAddress(u.alias, this.opts.config.central.sipDomain)] : [],
    );
    for (const j of joins) addresses.push(j.sipAddress);
    return addresses;
  }

  /**
   * Diffs users read from the forest against their joins (or, with --full, against their
   * contacts as they are in the central forest, so drift is repaired). Sorted by DN, so the
   * first claimant of an address is the same from run to run.
   */
  private diffUsers(
    forest: ForestConfig,
    summary: ForestSummary,
    users: SourceUser[],
    joins: Map<string, Join>,
    seen: Set<string>,
    chunk: DiffChunk,
    actual?: Map<string, CentralContact>,
  ): void {
    for (const user of [...users].sort((a, b) => (a.dn < b.dn ? -1 : 1))) {
      seen.add(user.anchor);
      if (!user.alias) {
        summary.errors++;
        this.errors.push({
          forest: forest.name,
          anchor: user.anchor,
          dn: user.dn,
          code: 'invalid-alias',
          message: user.aliasProblem ?? 'no alias',
        });
        continue;
      }
      this.evaluate(
        forest,
        summary,
        user as SourceUser & { alias: string },
        joins.get(user.anchor),
        chunk,
        actual,
      );
    }
  }

  /** One user against its join (or contact): the op, the join to record, or a conflict. */
  private evaluate(
    forest: ForestConfig,
    summary: ForestSummary,
    user: SourceUser & { alias: string },
    j: Join | undefined,
    chunk: DiffChunk,
    actual?: Map<string, CentralContact>,
  ): void {
    const { central } = this.opts.config;
    const { ops, storeOnly, forget } = chunk;
    const sip = sipAddress(user.alias, central.sipDomain);
    const enabled = !user.disabled;
    const attrs = contactAttributes(user, { sipDomain: central.sipDomain, home: forest.home, enabled });
    const dn =
      j?.contactDn ??
      actual?.get(user.anchor)?.dn ??
      contactDn(forest.name, user.anchor, central.contactContainer);
    const hasContact = actual ? actual.has(user.anchor) : j !== undefined && j.state !== 'conflict';
    const current = actual ? actual.get(user.anchor)?.attrs : hasContact ? j?.attributes : undefined;
    const heldBy = this.holderOf(sip, forest.name, user.anchor);
    if (heldBy) {
      this.conflict(forest, user, sip, heldBy, summary);
      if (hasContact && j && j.sipAddress === sip && heldBy.startsWith('central:')) {
        // The person now exists in the central forest: the contact would shadow them.
        ops.push({ ...this.opBase(forest, user, dn, sip), action: 'delete', removal: true });
        this.holders.release(sip, forest.name, user.anchor);
      } else if (
        !hasContact &&
        !(j?.state === 'conflict' && j.attributesHash === hashAttributes(attrs) && j.sourceDn === user.dn)
      ) {
        storeOnly.push({
          forest: forest.name,
          anchor: user.anchor,
          sourceDn: user.dn,
          contactDn: dn,
          sipAddress: sip,
          state: 'conflict',
          attributes: attrs,
          attributesHash: hashAttributes(attrs),
        });
      }
      // With a contact under another address, the contact stays as it is: reported, not overwritten.
      return;
    }
    const now = this.now();
    const disabledAt = enabled ? undefined : j?.state === 'disabled' && j.disabledAt ? j.disabledAt : now;
    const join: Join = {
      forest: forest.name,
      anchor: user.anchor,
      sourceDn: user.dn,
      contactDn: dn,
      sipAddress: sip,
      state: enabled ? 'active' : 'disabled',
      attributes: attrs,
      attributesHash: hashAttributes(attrs),
      disabledAt,
      disabledReason: enabled ? undefined : 'source-disabled',
    };
    if (!hasContact) {
      // A user disabled at the source before ever being synced gets no contact.
      if (!enabled) {
        if (j) forget.push(j.anchor);
        return;
      }
      this.holders.take(sip, { forest: forest.name, anchor: user.anchor, sourceDn: user.dn });
      ops.push({
        ...this.opBase(forest, user, dn, sip),
        action: 'add',
        attrs,
        join,
        fresh: j === undefined,
        removal: false,
      });
      return;
    }
    if (j && j.sipAddress !== sip && this.holders.claim(j.sipAddress)?.anchor === user.anchor)
      this.holders.release(j.sipAddress, forest.name, user.anchor);
    this.holders.take(sip, { forest: forest.name, anchor: user.anchor, sourceDn: user.dn });
    if (!enabled && j?.state === 'disabled' && this.graceExpired(j)) {
      ops.push({ ...this.opBase(forest, user, dn, sip), action: 'delete', removal: true });
      return;
    }
    const diff = changedAttributes(current ?? {}, attrs);
    if (diff.length === 0) {
      summary.unchanged++;
      if (
        !j ||
        j.sourceDn !== user.dn ||
        j.attributesHash !== join.attributesHash ||
        j.state !== join.state
      ) {
        storeOnly.push(join);
      }
      return;
    }
    const disabling = !enabled && current?.parleyEnabled?.[0] !== 'FALSE';
    ops.push({
      ...this.opBase(forest, user, dn, sip),
      action: disabling ? 'disable' : 'update',
      attrs,
      changed: diff,
      join,
      fresh: j === undefined,
      removal: false,
    });
  }

  /**
   * Joins whose user was not read this run: still there (a conflict to retry, a grace period
   * over), or gone from the forest (the contact is disabled, then deleted).
   */
  private diffUnseen(
    forest: ForestConfig,
    summary: ForestSummary,
    joins: Iterable<Join>,
    isPresent: (anchor: string) => boolean,
    chunk: DiffChunk,
  ): void {
    const { ops, storeOnly, forget } = chunk;
    for (const j of joins) {
      const present = isPresent(j.anchor);
      if (j.state === 'conflict') {
        // The holder of the address may be gone by now: try again with what was wanted.
        if (present) this.evaluate(forest, summary, userFromJoin(j), j, chunk);
        else forget.push(j.anchor);
        continue;
      }
      const user = userFromJoin(j);
      if (present) {
        if (j.state === 'disabled' && this.graceExpired(j)) {
          ops.push({
            ...this.opBase(forest, user, j.contactDn, j.sipAddress),
            action: 'delete',
            removal: true,
          });
        }
        continue;
      }
      // Gone from the forest (deleted, or moved out of the base or filter).
      if (j.state === 'active' && this.opts.config.sync.deleteGraceSeconds > 0) {
        const attrs = { ...j.attributes, parleyEnabled: ['FALSE'] };
        ops.push({
          ...this.opBase(forest, user, j.contactDn, j.sipAddress),
          action: 'disable',
          attrs,
          changed: ['parleyEnabled'],
          join: {
            ...j,
            state: 'disabled',
            attributes: attrs,
            attributesHash: hashAttributes(attrs),
            disabledAt: this.now(),
            disabledReason: 'source-gone',
          },
          removal: true,
        });
      } else if (j.state === 'active' || this.graceExpired(j)) {
        ops.push({
          ...this.opBase(forest, user, j.contactDn, j.sipAddress),
          action: 'delete',
          removal: true,
        });
      } else if (j.disabledReason !== 'source-gone') {
        storeOnly.push({ ...j, disabledReason: 'source-gone' });
      }
    }
  }

  /** Join changes that need no LDAP write (conflicts, unchanged users' new DNs), at once. */
  private async saveChunk(forest: ForestConfig, chunk: DiffChunk): Promise<void> {
    if (this.opts.dryRun) return;
    await this.journal.saveJoins(chunk.storeOnly);
    await this.journal.deleteJoins(forest.name, chunk.forget);
  }

  private opBase(forest: ForestConfig, user: SourceUser, dn: string, sip: string) {
    return { forest: forest.name, anchor: user.anchor, contactDn: dn, sipAddress: sip, sourceDn: user.dn };
  }

  /** The forest's write pipeline: journaled, pipelined, recorded as it goes. */
  private async pipeline(
    forest: ForestConfig,
    summary: ForestSummary,
    progress: (written: number, submitted: number) => void,
  ): Promise<WritePipeline<PlannedOp>> {
    return new WritePipeline<PlannedOp>(
      this.writer,
      this.lastSeq,
      {
        journal: (items) => {
          this.lastSeq = items[items.length - 1]?.seq ?? this.lastSeq;
          return this.journal.recordOps(
            this.runId,
            items.map(({ op, seq: s }) => ({
              seq: s,
              forest: op.forest,
              anchor: op.anchor,
              action: op.action,
              contactDn: op.contactDn,
            })),
          );
        },
        record: async (items) => {
          await this.flush(forest, items);
          this.holders.settled(
            forest.name,
            items.map((d) => d.op.anchor),
          );
          this.count(
            summary,
            items.map((d) => d.op),
          );
        },
        failed: async (item, err) => {
          summary.errors++;
          this.errors.push({
            forest: forest.name,
            anchor: item.op.anchor,
            dn: item.op.contactDn,
            action: item.op.action,
            code: 'ldap-write',
            message: describe(err),
          });
          await this.journal.markOps(this.runId, [item.seq], 'failed', describe(err));
          this.holders.settled(forest.name, [item.op.anchor]);
        },
        progress,
      },
      this.opts.signal,
    );
  }

  /** Waits for the forest's writes; a signal ends the run as a killed process would leave it. */
  private async endWrites(pipeline: WritePipeline<PlannedOp>): Promise<void> {
    await pipeline.drain();
    if (this.opts.signal?.aborted) throw new SyncInterruptedError('directory sync interrupted');
  }

  /**
   * Records completed writes: joins and op status, in one store transaction. The joins of
   * users that had none are inserted (addJoins); should one be there after all, the batch
   * is recorded again with upserts only.
   */
  private async flush(forest: ForestConfig, done: { op: PlannedOp; seq: number }[]): Promise<void> {
    if (done.length === 0) return;
    try {
      await this.record(forest, done, true);
    } catch (err) {
      if ((err as { code?: unknown }).code !== UNIQUE_VIOLATION) throw err;
      await this.record(forest, done, false);
    }
  }

  private async record(
    forest: ForestConfig,
    done: { op: PlannedOp; seq: number }[],
    insertFresh: boolean,
  ): Promise<void> {
    await this.opts.store.transaction(async ({ directoryJournal: journal }) => {
      const kept = done.filter((d) => d.op.join && d.op.action !== 'delete');
      const fresh = insertFresh ? kept.filter((d) => d.op.fresh) : [];
      await journal.addJoins(fresh.map((d) => d.op.join as Join));
      await journal.saveJoins(
        (insertFresh ? kept.filter((d) => !d.op.fresh) : kept).map((d) => d.op.join as Join),
      );
      await journal.deleteJoins(
        forest.name,
        done.filter((d) => d.op.action === 'delete').map((d) => d.op.anchor),
      );
      await journal.markOps(
        this.runId,
        done.map((d) => d.seq),
        'done',
      );
    });
  }

  /** Closes the run: summary, exit code, journal, lock. */
  async finish(): Promise<SyncSummary> {
    this.finished = true;
    clearInterval(this.heartbeat);
    const forests = this.summaries;
    const failed = forests.filter((f) => f.status === 'failed').length;
    const refused = forests.some((f) => f.status === 'refused');
    const status: SyncSummary['status'] =
      forests.length > 0 && failed === forests.length
        ? 'failed'
        : refused
          ? 'refused'
          : failed > 0 || this.errors.length > 0
            ? 'partial'
            : 'succeeded';
    const exitCode = { failed: EXIT.error, refused: EXIT.refused, partial: EXIT.partial, succeeded: EXIT.ok }[
      status
    ];
    const total = (k: 'added' | 'updated' | 'disabled' | 'deleted') => forests.reduce((n, f) => n + f[k], 0);
    const summary: SyncSummary = {
      runId: this.runId,
      status,
      exitCode,
      dryRun: !!this.opts.dryRun,
      mode: this.mode,
      resumedFrom: this.resumedFrom,
      added: total('added'),
      updated: total('updated'),
      disabled: total('disabled'),
      deleted: total('deleted'),
      conflicts: this.conflicts,
      errors: [
        ...forests
          .filter((f) => f.status === 'failed')
          .map((f) => ({ forest: f.forest, code: 'forest-failed', message: f.message ?? 'failed' })),
        ...this.errors,
      ],
      durationMs: Date.now() - this.started,
      forests,
      planned: this.planned,
    };
    try {
      await this.journal.finishRun(this.runId, status, { ...summary, planned: summary.planned.length });
    } finally {
      await this.central.close();
      await this.journal.releaseLock(this.holder);
    }
    return summary;
  }

  /**
   * Stops without closing the run, as a killed process would: the run stays 'running' and
   * the next sync marks it interrupted and redoes its work.
   */
  async abandon(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.heartbeat);
    await this.central.close();
    await this.journal.releaseLock(this.holder);
  }
}

/** The whole job, forest after forest. */
export async function runDirectorySync(opts: SyncOptions): Promise<SyncSummary> {
  const sync = await DirectorySync.begin(opts);
  try {
    for (const forest of sync.forestsToSync()) await sync.syncForest(forest);
  } catch (err) {
    await sync.abandon();
    throw err;
  }
  return sync.finish();
}
