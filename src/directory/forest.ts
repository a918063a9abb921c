import type { Client } from 'ldapts';
import type { ForestConfig } from './config.js';
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

/** Reads users from one secondary forest, always with paged searches (RFC 2696). */
export class ForestReader {
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
