import { AlreadyExistsError, Attribute, Change, type Client, type Entry, NoSuchObjectError } from 'ldapts';
import type { CentralConfig } from './config.js';
import { andFilter, equalityFilter, orFilter } from './filter.js';
import { coalesceWrites, connectLdap, type Environment, firstValue, searchPages } from './ldap.js';
import { CONTACT_ATTRIBUTES, type ContactAttributes, readContactAttributes, sipAddress } from './mapping.js';
import { hasParleySchema } from './schema.js';

/** The writes the sync makes in the central forest; narrow so tests can wrap it. */
export interface ContactWriter {
  /** Creates the contact; if it already exists (a resumed run), replaces its attributes. */
  addContact(dn: string, attrs: ContactAttributes): Promise<void>;
  /** Replaces the named attributes; if the contact vanished, creates it again. */
  updateContact(dn: string, attrs: ContactAttributes, changed: readonly string[]): Promise<void>;
  /** Deletes the contact; one already gone is fine. */
  deleteContact(dn: string): Promise<void>;
}

/** A contact as it is in the central forest. */
export interface CentralContact {
  dn: string;
  anchor?: string;
  attrs: ContactAttributes;
}

export class CentralNotPreparedError extends Error {
  override name = 'CentralNotPreparedError';
}

export interface CentralEntry {
  dn: string;
  sipAddress?: string;
  displayName: string;
  enabled: boolean;
  home?: string;
  sourceForest?: string;
  sourceAnchor?: string;
  entryUuid?: string;
  isContact: boolean;
}

function isBelow(dn: string, container: string): boolean {
  return dn
    .toLowerCase()
    .replace(/\s+/g, '')
    .endsWith(`,${container.toLowerCase().replace(/\s+/g, '')}`);
}

function toContact(e: Entry): CentralContact {
  return { dn: e.dn, anchor: firstValue(e, 'parleySourceAnchor'), attrs: readContactAttributes(e) };
}

export class CentralDirectory implements ContactWriter {
  private constructor(
    /**
     * One connection carries the reads and the writes; the sync keeps many writes in flight
     * on it (slapd works on several operations of a connection at once), and the requests
     * made in one turn of the event loop leave in one system call (coalesceWrites).
     */
    private readonly client: Client,
    readonly config: CentralConfig,
  ) {}

  static async connect(config: CentralConfig, env: Environment): Promise<CentralDirectory> {
    const client = await connectLdap(config, { env });
    coalesceWrites(client);
    return new CentralDirectory(client, config);
  }

  async close(): Promise<void> {
    await this.client.unbind().catch(() => undefined);
  }

  /** The sync needs the schema and the container that `parley directory prepare` creates. */
  async checkPrepared(): Promise<void> {
    if (!(await hasParleySchema(this.client))) {
      throw new CentralNotPreparedError(`the central forest ${this.config.url} has no parleyUser schema`);
    }
    try {
      await this.client.search(this.config.contactContainer, {
        scope: 'base',
        filter: '(objectClass=*)',
        attributes: ['1.1'],
      });
    } catch (err) {
      if (err instanceof NoSuchObjectError) {
        throw new CentralNotPreparedError(
          `the contact container ${this.config.contactContainer} does not exist`,
        );
      }
      throw err;
    }
  }

  /**
   * Which of these SIP addresses belong to central users (outside the contact container):
   * their parleySipAddress, or alias@sipDomain for users not SIP-enabled yet. A contact never
   * takes one of these. One search per hundred addresses, by alias and by parleySipAddress
   * (both indexed: `prepare` indexes the latter).
   */
  async centralUserAddressesFor(addresses: string[]): Promise<Map<string, string>> {
    const claimed = new Map<string, string>();
    const wanted = new Set(addresses);
    const domain = `@${this.config.sipDomain}`;
    const search = async (chunk: string[]) => {
      const terms = chunk.flatMap((sip) => {
        const t = [equalityFilter('parleySipAddress', sip)];
        if (sip.endsWith(domain))
          t.push(equalityFilter(this.config.aliasAttribute, sip.slice(0, -domain.length)));
        return t;
      });
      const pages = searchPages(this.client, this.config.baseDn, {
        // Contacts (they carry parleySourceForest) hold their addresses too: left out here.
        filter: andFilter(this.config.userFilter, '(!(parleySourceForest=*))', orFilter(...terms)),
        attributes: [this.config.aliasAttribute, 'parleySipAddress'],
        pageSize: this.config.pageSize,
      });
      for await (const page of pages) {
        for (const e of page) {
          if (isBelow(e.dn, this.config.contactContainer)) continue;
          const sip = firstValue(e, 'parleySipAddress')?.toLowerCase();
          if (sip && wanted.has(sip)) claimed.set(sip, e.dn);
          const alias = firstValue(e, this.config.aliasAttribute)?.toLowerCase();
          const own = alias ? sipAddress(alias, this.config.sipDomain) : undefined;
          if (own && wanted.has(own)) claimed.set(own, e.dn);
        }
      }
    };
    // The searches of one call go out together on the connection, not one round trip each.
    const chunks: string[][] = [];
    for (let i = 0; i < addresses.length; i += 100) chunks.push(addresses.slice(i, i + 100));
    await Promise.all(chunks.map(search));
    return claimed;
  }

  /** The contacts made for one forest, as they are now (a full sync repairs drift from these). */
  async *contacts(forest: string): AsyncGenerator<CentralContact[]> {
    const pages = searchPages(this.client, this.config.contactContainer, {
      filter: andFilter('(objectClass=parleyUser)', equalityFilter('parleySourceForest', forest)),
      attributes: [...CONTACT_ATTRIBUTES],
      pageSize: this.config.pageSize,
      scope: 'one',
    });
    for await (const page of pages) yield page.map(toContact);
  }

  /**
   * The contacts of these source anchors only, by anchor: one search per 250 anchors
   * (parleySourceAnchor is indexed), so a full sync compares a page of users at a time.
   */
  async contactsFor(forest: string, anchors: string[]): Promise<Map<string, CentralContact>> {
    const found = new Map<string, CentralContact>();
    for (let i = 0; i < anchors.length; i += 250) {
      const terms = anchors.slice(i, i + 250).map((a) => equalityFilter('parleySourceAnchor', a));
      const pages = searchPages(this.client, this.config.contactContainer, {
        filter: andFilter(
          '(objectClass=parleyUser)',
          equalityFilter('parleySourceForest', forest),
          orFilter(...terms),
        ),
        attributes: [...CONTACT_ATTRIBUTES],
        pageSize: this.config.pageSize,
        scope: 'one',
      });
      for await (const page of pages) {
        for (const c of page.map(toContact)) if (c.anchor) found.set(c.anchor, c);
      }
    }
    return found;
  }

  /** Every SIP-enabled object under the base: central users and contacts (for replication). */
  async *sipEnabled(): AsyncGenerator<CentralEntry[]> {
    const pages = searchPages(this.client, this.config.baseDn, {
      filter: andFilter('(objectClass=parleyUser)', '(parleySipAddress=*)'),
      attributes: [
        'parleySipAddress',
        'parleyEnabled',
        'parleyHome',
        'parleySourceForest',
        'parleySourceAnchor',
        'displayName',
        'cn',
        'entryUUID',
      ],
      pageSize: this.config.pageSize,
    });
    for await (const page of pages) {
      yield page.map((e) => {
        const isContact =
          isBelow(e.dn, this.config.contactContainer) && firstValue(e, 'parleySourceForest') !== undefined;
        return {
          dn: e.dn,
          sipAddress: firstValue(e, 'parleySipAddress')
            ?.toLowerCase()
            .replace(/^sips?:/, ''),
          displayName: firstValue(e, 'displayName') ?? firstValue(e, 'cn') ?? '',
          enabled: firstValue(e, 'parleyEnabled')?.toUpperCase() !== 'FALSE',
          home: firstValue(e, 'parleyHome'),
          sourceForest: isContact ? firstValue(e, 'parleySourceForest') : undefined,
          sourceAnchor: firstValue(e, 'parleySourceAnchor'),
          entryUuid: firstValue(e, 'entryUUID'),
          isContact,
        };
      });
    }
  }

  async addContact(dn: string, attrs: ContactAttributes): Promise<void> {
    const cn = /^cn=((?:\\.|[^,])+)/i.exec(dn)?.[1]?.replace(/\\(.)/g, '$1') ?? dn;
    const entry: Record<string, string[]> = {
      objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson', 'parleyUser'],
      cn: [cn],
    };
    for (const [k, v] of Object.entries(attrs)) if (v.length > 0) entry[k] = v;
    try {
      await this.client.add(dn, entry);
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      await this.replace(dn, attrs, CONTACT_ATTRIBUTES);
    }
  }

  async updateContact(dn: string, attrs: ContactAttributes, changed: readonly string[]): Promise<void> {
    try {
      await this.replace(dn, attrs, changed);
    } catch (err) {
      if (!(err instanceof NoSuchObjectError)) throw err;
      await this.addContact(dn, attrs);
    }
  }

  async deleteContact(dn: string): Promise<void> {
    try {
      await this.client.del(dn);
    } catch (err) {
      if (!(err instanceof NoSuchObjectError)) throw err;
    }
  }

  private async replace(dn: string, attrs: ContactAttributes, names: readonly string[]): Promise<void> {
    // A replace with no values deletes the attribute (RFC 4511 section 4.6), and is a no-op when absent.
    const changes = names.map(
      (type) =>
        new Change({
          operation: 'replace',
          modification: new Attribute({ type, values: attrs[type] ?? [] }),
        }),
    );
    if (changes.length > 0) await this.client.modify(dn, changes);
  }
}
