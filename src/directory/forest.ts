import type { Client } from 'ldapts';
import type { ForestConfig } from './config.js';
import { type ContentSyncResult, ContentSyncSession } from './content-sync.js';
import { andFilter, greaterOrEqualFilter } from './filter.js';
import { connectLdap, type Environment, searchPages } from './ldap.js';
import {
  anchorAttribute,
  changeMarkAttribute,
  readAnchor,
  readSourceUser,
  type SourceUser,
  sourceAttributes,
} from './mapping.js';

/** What one content-sync refresh reported, a batch at a time. */
export interface ChangeBatch {
  /** Users added or changed (renames and moves included: the anchor stays). */
  users: SourceUser[];
  skipped: number;
  /** Anchors gone from the content: deleted, or moved out of the base or filter. */
  deleted: string[];
  /** Anchors reported unchanged and still there (a present phase). */
  present: string[];
}

// An entryUUID no entry has: a refresh with it returns no entries, only the cookie.
const NO_ENTRY_FILTER = '(entryUUID=00000000-0000-0000-0000-000000000000)';

/**
 * Reads users from one secondary forest: full reads with paged searches (RFC 2696), changes
 * with content synchronization (RFC 4533) or a watermark.
 */
export class ForestReader {
  private session?: ContentSyncSession;

  private constructor(
    private readonly client: Client,
    readonly forest: ForestConfig,
  ) {}

  static async connect(forest: ForestConfig, env: Environment): Promise<ForestReader> {
    return new ForestReader(await connectLdap(forest, { env }), forest);
  }

  async close(): Promise<void> {
    await this.client.unbind().catch(() => undefined);
  }

  private contentSync(): ContentSyncSession {
    this.session ??= ContentSyncSession.attach(this.client);
    return this.session;
  }

  /**
   * The server's cookie for the content as it is now, without reading it: taken before a
   * full read, so the next run asks for everything changed since the read began.
   */
  async currentCookie(): Promise<Buffer | undefined> {
    const refresh = this.contentSync().refresh(this.forest.baseDn, {
      filter: NO_ENTRY_FILTER,
      attributes: ['1.1'],
    });
    while (true) {
      const next = await refresh.next();
      if (next.done) return next.value.cookie;
    }
  }

  /**
   * What changed since the cookie (RFC 4533 refreshOnly). Throws the server's refusal (a
   * ResultCodeError, e.g. e-syncRefreshRequired) for the caller to fall back to a full read.
   */
  async *changes(cookie: Buffer): AsyncGenerator<ChangeBatch, ContentSyncResult> {
    const refresh = this.contentSync().refresh(
      this.forest.baseDn,
      {
        filter: this.forest.filter,
        attributes: sourceAttributes(this.forest),
        binaryAttributes: this.binaryAttributes(),
      },
      cookie,
    );
    while (true) {
      const next = await refresh.next();
      if (next.done) return next.value;
      const batch: ChangeBatch = { users: [], skipped: 0, deleted: [], present: [] };
      for (const event of next.value) {
        if (event.kind === 'delete') batch.deleted.push(...event.entryUuids);
        else if (event.kind === 'present') batch.present.push(...event.entryUuids);
        else {
          const user = readSourceUser(event.entry, this.forest);
          if (user) batch.users.push(user);
          else batch.skipped++;
        }
      }
      yield batch;
    }
  }

  private binaryAttributes(): string[] | undefined {
    return this.forest.type === 'ad' ? ['objectGUID'] : undefined;
  }

  /**
   * Users in scope; with a watermark, only those changed since (modifyTimestamp or
   * uSNChanged >= watermark: inclusive, so a change in the watermark's own second is not
   * lost; re-reading an unchanged user costs no write).
   */
  async *users(since?: string): AsyncGenerator<{ users: SourceUser[]; skipped: number }> {
    const filter = since
      ? andFilter(this.forest.filter, greaterOrEqualFilter(changeMarkAttribute(this.forest), since))
      : this.forest.filter;
    for await (const page of searchPages(this.client, this.forest.baseDn, {
      filter,
      attributes: sourceAttributes(this.forest),
      pageSize: this.forest.pageSize,
      explicitBufferAttributes: this.binaryAttributes(),
    })) {
      const users: SourceUser[] = [];
      let skipped = 0;
      for (const entry of page) {
        const user = readSourceUser(entry, this.forest);
        if (user) users.push(user);
        else skipped++;
      }
      yield { users, skipped };
    }
  }

  /**
   * Every anchor in scope. LDAP servers forget deleted entries, so comparing this set with
   * the joins is how deletes, and moves out of the base or filter, are detected.
   */
  async anchors(): Promise<Set<string>> {
    const anchors = new Set<string>();
    for await (const page of searchPages(this.client, this.forest.baseDn, {
      filter: this.forest.filter,
      attributes: [anchorAttribute(this.forest)],
      pageSize: this.forest.pageSize,
      explicitBufferAttributes: this.binaryAttributes(),
    })) {
      for (const entry of page) {
        const anchor = readAnchor(entry, this.forest);
        if (anchor) anchors.add(anchor);
      }
    }
    return anchors;
  }
}

/** Greater of two watermarks: generalized time compares as text, uSNChanged as a number. */
export function laterMark(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) >= BigInt(b) ? a : b;
  return a >= b ? a : b;
}
