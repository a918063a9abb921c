import { ResultCodeError } from 'ldapts';
import type { DirectoryJournalRepository, Join, OpAction } from '../store/directory-journal.js';
import type { Store } from '../store/store.js';
import { CentralDirectory, CentralNotPreparedError, type ContactWriter } from './central.js';
import type { DirectoryConfig, ForestConfig } from './config.js';
import { ContentSyncUnsupportedError } from './content-sync.js';
import { DirectoryError, EXIT } from './errors.js';
import { ForestReader, laterMark } from './forest.js';
import { currentHolder, holderIsDead } from './journal.js';
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

export interface ForestSummary {
  forest: string;
  status: 'ok' | 'failed' | 'refused';
  mode: 'incremental' | 'full';
  /** How changes were found: RFC 4533 content sync, or the modifyTimestamp/uSNChanged watermark. */
  tracking?: 'content-sync' | 'watermark';
  /** Whether every user in scope was read (first run, --full, or a fallback). */
  fullRead?: boolean;
  /** Why an incremental run read the whole forest instead (no cookie yet, cookie refused...). */
  fallback?: string;
  read: number;
  added: number;
  updated: number;
  disabled: number;
  deleted: number;
  unchanged: number;
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

/** What the read phase found in one forest. */
interface ForestRead {
  changed: SourceUser[];
  /** Anchors known to be in scope (a full read or a present phase); gone = joins not in it. */
  present?: Set<string>;
  /** Anchors reported gone (content sync's explicit deletes). */
  deleted: Set<string>;
  tracking: 'content-sync' | 'watermark';
  fullRead: boolean;
  /** Where the next run starts, stored once this run's writes are recorded. */
  next?: { cookie: Buffer } | { watermark: string };
  fallback?: string;
}

interface PlannedOp extends PlannedChange {
  attrs?: ContactAttributes;
  changed?: string[];
  /** Join state once the op is done (undefined: the join goes away). */
  join?: Join;
  removal: boolean;
}

export class SyncInterruptedError extends Error {
  override name = 'SyncInterruptedError';
}

/** Central writes in flight at once, and how many completed writes are recorded together. */
const WRITES_IN_FLIGHT = 32;
const FLUSH_BATCH = 250;
/** Connections to the central forest that carry the writes. */
const WRITE_CONNECTIONS = 4;
/** Anchors per batched join read. */
const JOIN_BATCH = 5000;

function emptyForestSummary(forest: string, mode: 'incremental' | 'full'): ForestSummary {
  return {
    forest,
    status: 'ok',
    mode,
    read: 0,
    added: 0,
    updated: 0,
    disabled: 0,
    deleted: 0,
    unchanged: 0,
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

/**
 * Who holds which SIP address: central users (in LDAP) and the sync's own contacts (the
 * joins). A run that reads a whole forest loads them all once; an incremental run looks up
 * only the addresses its changes touch, so its work does not grow with the forests. The
 * maps are the run's view: the diff updates `claims` as it hands addresses out.
 */
class AddressHolders {
  readonly central = new Map<string, string>();
  readonly claims = new Map<string, Claim>();
  private readonly known = new Set<string>();
  private complete = false;

  constructor(
    private readonly directory: CentralDirectory,
    private readonly journal: DirectoryJournalRepository,
  ) {}

  async loadAll(): Promise<void> {
    if (this.complete) return;
    const [central, claims] = await Promise.all([
      this.directory.centralUserAddresses(),
      this.journal.claims(),
    ]);
    for (const [sip, dn] of central) if (!this.known.has(sip)) this.central.set(sip, dn);
    for (const [sip, c] of claims) if (!this.known.has(sip)) this.claims.set(sip, c);
    this.complete = true;
  }

  async lookUp(addresses: Iterable<string>): Promise<void> {
    if (this.complete) return;
    const missing = [...new Set(addresses)].filter((a) => !this.known.has(a));
    for (const a of missing) this.known.add(a);
    for (let i = 0; i < missing.length; i += JOIN_BATCH) {
      const chunk = missing.slice(i, i + JOIN_BATCH);
      const [central, claims] = await Promise.all([
        this.directory.centralUserAddressesFor(chunk),
        this.journal.claimsFor(chunk),
      ]);
      for (const [sip, dn] of central) this.central.set(sip, dn);
      for (const [sip, c] of claims) this.claims.set(sip, c);
    }
  }
}

export class DirectorySync {
  private readonly holder = currentHolder();
  private readonly started = Date.now();
  private readonly summaries: ForestSummary[] = [];
  private readonly conflicts: SyncConflict[] = [];
  private readonly errors: SyncItemError[] = [];
  private readonly planned: PlannedChange[] = [];
  private heartbeat?: NodeJS.Timeout;
  private finished = false;
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
    const holder = currentHolder();
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
      const connections = opts.dryRun ? 1 : WRITE_CONNECTIONS;
      central = await CentralDirectory.connect(opts.config.central, opts.env, {
        writeConnections: connections,
      }).catch((err: unknown) => {
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
    const progress = (phase: SyncPhase, done: number, total?: number) =>
      onProgress?.({ forest: forest.name, phase, done, total });

    let read: ForestRead;
    let reader: ForestReader | undefined;
    try {
      reader = await ForestReader.connect(forest, this.opts.env);
      progress('read', 0);
      read = await this.read(forest, reader, summary, progress);
    } catch (err) {
      summary.status = 'failed';
      summary.message = `cannot read forest ${forest.name} (${forest.url}): ${describe(err)}`;
      return summary;
    } finally {
      await reader?.close();
    }
    summary.tracking = read.tracking;
    summary.fullRead = read.fullRead;
    summary.fallback = read.fallback;

    progress('diff', 0);
    const ops = await this.diff(forest, read, summary);
    progress('diff', ops.length, ops.length);

    const removals = ops.filter((o) => o.removal);
    // Counting the forest's contacts costs a pass over its joins: only when something goes.
    const managed = removals.length > 0 ? await this.journal.contactCount(forest.name) : 0;
    const policy = this.opts.config.sync;
    const overCount = removals.length > policy.maxDeletes;
    const overPercent =
      policy.maxDeletePercent !== undefined &&
      removals.length * 100 > policy.maxDeletePercent * Math.max(managed, 1);
    let toWrite = ops;
    if (removals.length > 0 && (overCount || overPercent) && !this.opts.allowMassDelete) {
      // A wrong base DN or filter looks exactly like everyone leaving: keep the contacts.
      summary.status = 'refused';
      summary.refusedRemovals = removals.length;
      summary.message = `refused to remove ${removals.length} of ${managed} contacts (limit ${policy.maxDeletes}${
        policy.maxDeletePercent !== undefined ? ` or ${policy.maxDeletePercent}%` : ''
      }); rerun with --allow-mass-delete if this is intended`;
      toWrite = ops.filter((o) => !o.removal);
    }

    const next = read.next && 'watermark' in read.next ? read.next.watermark : undefined;
    if (this.opts.dryRun) {
      for (const op of toWrite) if (op.action) this.planned.push(this.publicChange(op));
      this.count(summary, toWrite);
      summary.watermark = next;
      return summary;
    }

    const writeErrors = await this.write(forest, toWrite, summary, progress);
    // Failed items and refused removals are read again next run: a content-sync cookie
    // reports a change once, so it moves only when everything it reported is done.
    if (writeErrors === 0 && summary.status !== 'refused' && read.next) {
      if ('cookie' in read.next) await this.journal.setSyncCookie(forest.name, read.next.cookie);
      else await this.journal.setWatermark(forest.name, read.next.watermark);
      summary.watermark = next;
    }
    return summary;
  }

  /** The read phase: content sync where the forest offers it, else the watermark. */
  private async read(
    forest: ForestConfig,
    reader: ForestReader,
    summary: ForestSummary,
    progress: (phase: SyncPhase, done: number, total?: number) => void,
  ): Promise<ForestRead> {
    const tryContentSync =
      forest.changeTracking === 'content-sync' ||
      (forest.changeTracking === 'auto' && forest.type === 'openldap');
    if (tryContentSync) {
      const cookie = this.opts.full ? undefined : await this.journal.syncCookie(forest.name);
      let fallback = this.opts.full ? undefined : 'no content-sync cookie yet';
      if (cookie) {
        try {
          return await this.readChanges(reader, cookie, summary, progress);
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
      if (start) {
        const all = await this.readAll(reader, undefined, summary, progress);
        return { ...all, tracking: 'content-sync', fullRead: true, next: { cookie: start }, fallback };
      }
    }
    const since = this.opts.full ? undefined : await this.journal.watermark(forest.name);
    const all = await this.readAll(reader, since, summary, progress);
    return {
      ...all,
      // LDAP servers forget deleted entries: every anchor in scope is read to find them.
      present: since === undefined ? all.present : await reader.anchors(),
      tracking: 'watermark',
      fullRead: since === undefined,
      next: all.mark !== undefined && all.mark !== since ? { watermark: all.mark } : undefined,
    };
  }

  /** Paged read of the users in scope (changed since a watermark, or all of them). */
  private async readAll(
    reader: ForestReader,
    since: string | undefined,
    summary: ForestSummary,
    progress: (phase: SyncPhase, done: number, total?: number) => void,
  ): Promise<{ changed: SourceUser[]; present: Set<string>; deleted: Set<string>; mark?: string }> {
    const changed: SourceUser[] = [];
    let mark = since;
    for await (const page of reader.users(since)) {
      for (const u of page.users) {
        changed.push(u);
        mark = laterMark(mark, u.changeMark);
      }
      summary.read += page.users.length;
      progress('read', summary.read);
    }
    return { changed, present: new Set(changed.map((u) => u.anchor)), deleted: new Set(), mark };
  }

  /** RFC 4533 refreshOnly from the stored cookie: only what changed, deletes included. */
  private async readChanges(
    reader: ForestReader,
    cookie: Buffer,
    summary: ForestSummary,
    progress: (phase: SyncPhase, done: number, total?: number) => void,
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
      tracking: 'content-sync',
      fullRead: false,
      next: done.cookie ? { cookie: done.cookie } : { cookie },
    };
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
    const central = this.holders.central.get(sip);
    if (central) return `central:${central}`;
    const claim = this.holders.claims.get(sip);
    if (claim && !(claim.forest === forest && claim.anchor === anchor))
      return `${claim.forest}:${claim.sourceDn}`;
    return undefined;
  }

  /**
   * The joins the diff needs: with --full all of them; otherwise those of the users read,
   * of the users gone, and those waiting on something (conflicts, grace periods over).
   */
  private async joinsFor(forest: ForestConfig, read: ForestRead): Promise<Map<string, Join>> {
    if (this.opts.full) return this.journal.joins(forest.name);
    const wanted = read.changed.map((u) => u.anchor);
    if (read.present) {
      for (const a of await this.journal.joinAnchors(forest.name)) if (!read.present.has(a)) wanted.push(a);
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

  private async diff(forest: ForestConfig, read: ForestRead, summary: ForestSummary): Promise<PlannedOp[]> {
    const { central } = this.opts.config;
    const { changed } = read;
    const isPresent = (anchor: string) =>
      read.present ? read.present.has(anchor) : !read.deleted.has(anchor);
    const joins = await this.joinsFor(forest, read);
    if (read.fullRead) await this.holders.loadAll();
    else {
      const addresses = changed.flatMap((u) => (u.alias ? [sipAddress(u.alias, central.sipDomain)] : []));
      for (const j of joins.values()) addresses.push(j.sipAddress);
      await this.holders.lookUp(addresses);
    }
    // With --full the contacts themselves are the current state, so drift is repaired.
    let actual: Map<string, { dn: string; attrs: ContactAttributes }> | undefined;
    if (this.opts.full) {
      actual = new Map();
      for await (const page of this.central.contacts(forest.name)) {
        for (const c of page) if (c.anchor) actual.set(c.anchor, c);
      }
    }
    const ops: PlannedOp[] = [];
    const storeOnly: Join[] = [];
    const forget: string[] = [];
    const seen = new Set<string>();
    const now = this.now();

    const evaluate = (user: SourceUser & { alias: string }, j: Join | undefined): void => {
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
          this.holders.claims.delete(sip);
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
        this.holders.claims.set(sip, { forest: forest.name, anchor: user.anchor, sourceDn: user.dn });
        ops.push({ ...this.opBase(forest, user, dn, sip), action: 'add', attrs, join, removal: false });
        return;
      }
      if (j && j.sipAddress !== sip && this.holders.claims.get(j.sipAddress)?.anchor === user.anchor)
        this.holders.claims.delete(j.sipAddress);
      this.holders.claims.set(sip, { forest: forest.name, anchor: user.anchor, sourceDn: user.dn });
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
        removal: false,
      });
    };

    for (const user of [...changed].sort((a, b) => (a.dn < b.dn ? -1 : 1))) {
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
      evaluate(user as SourceUser & { alias: string }, joins.get(user.anchor));
    }

    for (const j of joins.values()) {
      if (seen.has(j.anchor)) continue;
      const present = isPresent(j.anchor);
      if (j.state === 'conflict') {
        // The holder of the address may be gone by now: try again with what was wanted.
        if (present) evaluate(userFromJoin(j), j);
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
        } else if (this.opts.full && !actual?.has(j.anchor)) {
          // Recorded but missing in the central forest (deleted by hand): re-create it.
          ops.push({
            ...this.opBase(forest, user, j.contactDn, j.sipAddress),
            action: 'add',
            attrs: j.attributes,
            join: j,
            removal: false,
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
            disabledAt: now,
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

    if (actual) {
      // Contacts of this forest that no join knows (the store was restored, say).
      for (const [anchor, c] of actual) {
        if (joins.has(anchor) || seen.has(anchor) || isPresent(anchor)) continue;
        const sip = c.attrs.parleySipAddress?.[0] ?? '';
        ops.push({
          forest: forest.name,
          anchor,
          contactDn: c.dn,
          sipAddress: sip,
          sourceDn: '',
          action: 'delete',
          removal: true,
        });
      }
    }

    if (!this.opts.dryRun) {
      await this.journal.saveJoins(storeOnly);
      await this.journal.deleteJoins(forest.name, forget);
    }
    return ops;
  }

  private opBase(forest: ForestConfig, user: SourceUser, dn: string, sip: string) {
    return { forest: forest.name, anchor: user.anchor, contactDn: dn, sipAddress: sip, sourceDn: user.dn };
  }

  private async write(
    forest: ForestConfig,
    ops: PlannedOp[],
    summary: ForestSummary,
    progress: (phase: SyncPhase, done: number, total?: number) => void,
  ): Promise<number> {
    let seq = await this.journal.lastOpSeq(this.runId);
    const journaled = ops.map((op) => ({ op, seq: ++seq }));
    for (let i = 0; i < journaled.length; i += 1000) {
      await this.journal.recordOps(
        this.runId,
        journaled.slice(i, i + 1000).map(({ op, seq: s }) => ({
          seq: s,
          forest: op.forest,
          anchor: op.anchor,
          action: op.action,
          contactDn: op.contactDn,
        })),
      );
    }
    progress('write', 0, ops.length);
    // Pipelined: WRITES_IN_FLIGHT operations at once over the central writer's connections.
    // Each completed write is recorded (joins + op status, one transaction per FLUSH_BATCH)
    // while the others go on; a resumed run redoes at most the unrecorded ones, idempotently.
    let failures = 0;
    let nextItem = 0;
    let written = 0;
    let fatal: { err: unknown } | undefined;
    let done: { op: PlannedOp; seq: number }[] = [];
    const record = async (batch: { op: PlannedOp; seq: number }[]) => {
      await this.flush(forest, batch);
      this.count(
        summary,
        batch.map((d) => d.op),
      );
      written += batch.length;
      progress('write', written, ops.length);
    };
    const worker = async () => {
      while (nextItem < journaled.length && !fatal && !this.opts.signal?.aborted) {
        const item = journaled[nextItem++];
        const { op } = item;
        try {
          if (op.action === 'add') await this.writer.addContact(op.contactDn, op.attrs ?? {});
          else if (op.action === 'delete') await this.writer.deleteContact(op.contactDn);
          else await this.writer.updateContact(op.contactDn, op.attrs ?? {}, op.changed ?? []);
          done.push(item);
        } catch (err) {
          // Only an LDAP answer about this entry is an item failure; anything else (the
          // connection is gone) stops the forest.
          if (!(err instanceof ResultCodeError)) {
            fatal ??= { err };
            return;
          }
          failures++;
          summary.errors++;
          written++;
          this.errors.push({
            forest: forest.name,
            anchor: op.anchor,
            dn: op.contactDn,
            action: op.action,
            code: 'ldap-write',
            message: describe(err),
          });
          await this.journal.markOps(this.runId, [item.seq], 'failed', describe(err));
        }
        if (done.length >= FLUSH_BATCH) {
          const batch = done;
          done = [];
          await record(batch);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(WRITES_IN_FLIGHT, journaled.length) }, worker));
    // Record exactly what was done, so a resumed run does only the rest.
    await record(done);
    if (fatal) throw fatal.err;
    if (this.opts.signal?.aborted) throw new SyncInterruptedError('directory sync interrupted');
    return failures;
  }

  private async flush(forest: ForestConfig, done: { op: PlannedOp; seq: number }[]): Promise<void> {
    if (done.length === 0) return;
    await this.opts.store.transaction(async ({ directoryJournal: journal }) => {
      await journal.saveJoins(
        done.flatMap((d) => (d.op.join && d.op.action !== 'delete' ? [d.op.join] : [])),
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
