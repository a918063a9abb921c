import { copyTextField, copyTextValue, type Sql } from './sql.js';

/**
 * The stored contact list of a user (tables contact_groups, contacts, access_rules,
 * contact_list_versions). The SIP server's `parley-contacts` event package, presence
 * authorization, the import and export commands and wave migrations all read and write
 * lists through this repository; what a write computes (merge, replace, add a contact) is
 * src/contacts/lists.ts, which hands this repository a `decide` function per user.
 *
 * Every write runs in one transaction holding the users' contact_list_versions row locks,
 * so a client editing its list and an import of the same user serialize.
 */

/** Change feed channel: the payload is the aor (alice@example.com) whose list changed. */
export const CONTACT_LISTS_CHANNEL = 'parley_contact_lists';

export interface ContactGroup {
  name: string;
}

export interface Contact {
  /** Normalised SIP URI: sip:bob@example.com (lower-case). */
  uri: string;
  displayName: string;
  /** Whether the owner subscribes to this contact's presence. */
  subscribed: boolean;
  /** Names of groups of the same list, in list order. */
  groups: string[];
}

export type AccessAction = 'allow' | 'block';

/** One entry of a user's allow/block list: who may watch the user's presence. */
export interface AccessRule {
  /** 'sip:bob@example.com' or 'bob@example.com' (one address), 'example.com', '*.example.com', or '*'. */
  pattern: string;
  action: AccessAction;
}

export interface ContactList {
  /** Owner's SIP URI: sip:alice@example.com. */
  user: string;
  /** Monotonic version of the stored list; 0 when never written. */
  version: number;
  /** Ordered: the position in the array is the display position. */
  groups: ContactGroup[];
  /** Ordered: the position in the array is the display position. */
  contacts: Contact[];
  /** Sorted by pattern; order has no meaning for authorization. */
  accessRules: AccessRule[];
}

export interface ContactListOwner {
  id: number;
  /** alice@example.com, as users.aor. */
  aor: string;
}

/** Users whose lists an export page holds: everybody, one home's users, or one user. */
export interface ContactListFilter {
  home?: string;
  aor?: string;
}

export interface ContactListExportOptions {
  /** Order users by domain, then aor (an export grouped by host), instead of by aor. */
  byDomain?: boolean;
  /**
   * Also hand onBatch, per owner ('sip:alice@example.com'), the contacts of the owner's list
   * (as its URIs) that are users of this store subscribing to the owner in their own lists.
   */
  subscribers?: boolean;
  /**
   * Read the next batch while onBatch handles the current one (two batches in memory). On
   * PostgreSQL the server then works while this process writes; on PGlite, whose engine
   * runs in this process, it gains nothing and costs memory, so it is off by default.
   */
  readAhead?: boolean;
}

/** What a write decided for one user, from the stored (locked) list. */
export interface ContactListDecision<Report> {
  /**
   * The list to store; its version is stored when it differs from the current one. Read
   * only where needed: for its version when `version` is absent, for its rows when they
   * are rewritten and `rows` is absent (or the engine offers no COPY), so a caller may make
   * it a getter that builds the list on demand.
   */
  next: ContactList;
  /** next's version, when the caller has it without building next. */
  version?: number;
  /**
   * next's rows as contactListRows makes them, when the caller prepared them (an import's
   * parse workers do): written as they are instead of being made from next.
   */
  rows?: ContactListRows;
  /** Whether groups, contacts or rules differ: only then are the user's rows rewritten. */
  contentChanged: boolean;
  /** Handed back to the caller, in write order. */
  report: Report;
}

/**
 * A list's rows in COPY's text format (copyTextField), one text per table, each row without
 * its first field (user_id): "\t<name>\t<position>\n" for contact_groups, "\t<uri>\t<display
 * name>\t<t|f>\t<groups array>\t<position>\n" for contacts, "\t<pattern>\t<action>\n" for
 * access_rules. Pure and owner-free, so a parse worker makes them while the owner is still
 * unknown and a write only puts the owner's id in front of each row (withOwner).
 */
export interface ContactListRows {
  groups: string;
  contacts: string;
  rules: string;
}

/** The rows of a list in stored form (orderContactList): positions follow array order. */
export function contactListRows(list: ContactList): ContactListRows {
  // Joined, not appended to: += leaves a tree of a dozen pieces a row, which a parse worker
  // holds for its whole batch and its garbage collector then copies (half its CPU).
  return {
    groups: list.groups.map((g, position) => `\t${copyTextField(g.name)}\t${position}\n`).join(''),
    contacts: list.contacts
      .map(
        (c, position) =>
          `\t${copyTextField(c.uri)}\t${copyTextField(c.displayName)}\t${c.subscribed ? 't' : 'f'}\t${copyTextField(arrayLiteral(c.groups))}\t${position}\n`,
      )
      .join(''),
    rules: list.accessRules.map((r) => `\t${copyTextField(r.pattern)}\t${r.action}\n`).join(''),
  };
}

/**
 * The list whose rows contactListRows made: its inverse, for a write that must compare or
 * merge the list with a stored one when the caller kept only the rows (an import's spool).
 */
export function contactListFromRows(user: string, version: number, rows: ContactListRows): ContactList {
  return {
    user,
    version,
    groups: rowFields(rows.groups).map(([name]) => ({ name: copyTextValue(name) })),
    contacts: rowFields(rows.contacts).map(([uri, displayName, subscribed, groups]) => ({
      uri: copyTextValue(uri),
      displayName: copyTextValue(displayName),
      subscribed: subscribed === 't',
      groups: arrayValues(copyTextValue(groups)),
    })),
    accessRules: rowFields(rows.rules).map(([pattern, action]) => ({
      pattern: copyTextValue(pattern),
      action: action as AccessAction,
    })),
  };
}

/** The fields of each row of a contactListRows text, the missing user_id left out. */
function rowFields(rows: string): string[][] {
  if (rows === '') return [];
  return rows
    .slice(1, -1)
    .split('\n\t')
    .map((row) => row.split('\t'));
}

/** The elements of an array literal arrayLiteral made. */
function arrayValues(literal: string): string[] {
  if (literal === '{}') return [];
  if (!literal.includes('\\')) return literal.slice(2, -2).split('","');
  const values: string[] = [];
  let value = '';
  // Past the opening {": every element is quoted, with \" and \\ escaped.
  for (let i = 2; i < literal.length; i++) {
    const c = literal[i];
    if (c === '\\') value += literal[++i];
    else if (c === '"') {
      values.push(value);
      value = '';
      i += 2; // past '",' and onto the next element's opening quote ('"}' ends the loop)
    } else value += c;
  }
  return values;
}

/** rows (of contactListRows) with userId as each row's first field. */
function withOwner(rows: string, userId: string): string {
  // No field holds a raw newline (COPY's text format escapes it): each "\n\t" starts a row.
  return rows === '' ? '' : userId + rows.replaceAll('\n\t', `\n${userId}\t`);
}

const GROUP_COLUMNS = ['user_id', 'name', 'position'];
const CONTACT_COLUMNS = ['user_id', 'uri', 'display_name', 'subscribed', 'groups', 'position'];
const RULE_COLUMNS = ['user_id', 'pattern', 'action'];

export interface ContactListWrite<Report> {
  userId: number;
  /**
   * The owner's aor (alice@example.com) when the caller already holds it (an import looked
   * its owners up while validating): when every write of a batch carries one, the write
   * does not read users again.
   */
  aor?: string;
  decide: (current: ContactList) => ContactListDecision<Report>;
}

/**
 * A write named users that no longer exist (deleted since the caller looked them up). Nothing
 * of the batch was written; the caller can drop these users and write the others.
 */
export class ContactListOwnersMissingError extends Error {
  constructor(readonly userIds: number[]) {
    super(`no user with id ${userIds.join(', ')}`);
    this.name = 'ContactListOwnersMissingError';
  }
}

export interface ContactListWriteOptions {
  /** Send a change notification on CONTACT_LISTS_CHANNEL for every new version (default true). */
  notify?: boolean;
  /**
   * The write runs inside a longer transaction of the caller's (an import that writes a
   * whole file in one): it is a savepoint of it, so a write that fails undoes only its own
   * statements and the caller's transaction goes on (an error otherwise aborts all of it).
   * Such writes must not run concurrently on one transaction.
   */
  savepoint?: boolean;
}

/**
 * The stored form of a list: rules sorted by pattern (UTF-16 order, as the XML serializer
 * sorts them) and each contact's groups filtered to the list's groups, in list order, so
 * equal lists are equal bytes. Sorts in place and returns the list.
 */
export function orderContactList(list: ContactList): ContactList {
  list.accessRules.sort((a, b) => (a.pattern < b.pattern ? -1 : a.pattern > b.pattern ? 1 : 0));
  const rank = new Map(list.groups.map((g, i) => [g.name, i]));
  for (const contact of list.contacts) {
    // Groups read back or parsed are nearly always in order already: check before copying.
    let ordered = true;
    let last = -1;
    for (const group of contact.groups) {
      const at = rank.get(group);
      if (at === undefined || at <= last) {
        ordered = false;
        break;
      }
      last = at;
    }
    if (!ordered)
      contact.groups = contact.groups.filter((g) => rank.has(g)).sort((a, b) => rank.get(a)! - rank.get(b)!);
  }
  return list;
}

interface GroupRow {
  user_id: number | string;
  name: string;
}
interface RuleRow {
  user_id: number | string;
  pattern: string;
  action: AccessAction;
}

export class ContactListRepository {
  constructor(private readonly sql: Sql) {}

  /** Finds users by aor (alice@example.com), for callers holding addresses rather than ids. */
  async findOwners(aors: string[]): Promise<Map<string, ContactListOwner>> {
    const owners = new Map<string, ContactListOwner>();
    if (aors.length === 0) return owners;
    const { rows } = await this.sql.query<{ id: number | string; aor: string }>(
      'SELECT id, aor FROM users WHERE aor = ANY($1::text[])',
      [aors],
    );
    for (const row of rows) owners.set(row.aor, { id: Number(row.id), aor: row.aor });
    return owners;
  }

  async get(userId: number): Promise<ContactList> {
    const { rows } = await this.sql.query<{ id: number | string; aor: string }>(
      'SELECT id, aor FROM users WHERE id = $1',
      [userId],
    );
    if (rows.length === 0) throw new Error(`no user with id ${userId}`);
    const lists = await this.getMany([{ id: Number(rows[0].id), aor: rows[0].aor }]);
    return lists.get(userId)!;
  }

  /** Lists of several users in four queries (export pages and batch writes read with this). */
  async getMany(owners: ContactListOwner[]): Promise<Map<number, ContactList>> {
    return readLists(this.sql, owners);
  }

  /** The allow/block list presence authorization reads (RFC 5025 rules, src/presence/authorize.ts). */
  async accessRules(aor: string): Promise<AccessRule[]> {
    const { rows } = await this.sql.query<{ pattern: string; action: AccessAction }>(
      'SELECT r.pattern, r.action FROM access_rules r JOIN users u ON u.id = r.user_id WHERE u.aor = $1',
      [aor],
    );
    return rows;
  }

  /**
   * Streams the lists of every user the filter selects, in byte order of aor (the same on
   * PGlite and PostgreSQL whatever their collation), batchSize users at a time: one cursor
   * whose rows are whole lists, one row per user (EXPORT_LIST_COLUMNS), so a batch is one
   * FETCH. It all runs in one REPEATABLE READ, READ ONLY transaction, so the export is one
   * consistent snapshot of every list and the users are sorted once (a keyset page per query
   * would re-sort them for every page). onBatch is awaited before the batch after next is
   * read, so a slow writer holds memory to one batch, or two with readAhead. On PostgreSQL
   * nothing waits for the transaction; on the embedded store it holds PGlite's one session,
   * so a running standard server waits for the export, as it does for `db backup`. Call it
   * on the store, not inside a transaction (the isolation level must be the transaction's
   * first statement).
   */
  async exportLists(
    filter: ContactListFilter,
    batchSize: number,
    onBatch: (lists: ContactList[], subscribers: Map<string, Set<string>>) => Promise<void>,
    options: ContactListExportOptions = {},
  ): Promise<void> {
    await this.readExport(
      filter,
      batchSize,
      async (tx, rows) => ({
        lists: rows.map((r) => exportedList(r.aor, r.list)),
        subscribers: options.subscribers
          ? await readSubscribers(
              tx,
              rows.map((r) => ({ id: Number(r.id), aor: r.aor })),
            )
          : new Map<string, Set<string>>(),
      }),
      (batch) => onBatch(batch.lists, batch.subscribers),
      options,
    );
  }

  /**
   * exportLists' read as the engine gives it, each list left as its JSON text: the same
   * cursor, snapshot, order and FETCHes, nothing parsed or built. What the export costs the
   * store alone (the contacts benchmark's floor under the export).
   */
  async exportListTexts(
    filter: ContactListFilter,
    batchSize: number,
    onBatch: (rows: ExportedListRow[]) => Promise<void>,
    options: Pick<ContactListExportOptions, 'byDomain' | 'readAhead'> = {},
  ): Promise<void> {
    await this.readExport(filter, batchSize, async (_tx, rows) => rows, onBatch, options);
  }

  /** The export's cursor: decode turns a batch's rows into what onBatch is handed. */
  private async readExport<Batch>(
    filter: ContactListFilter,
    batchSize: number,
    decode: (tx: Sql, rows: ExportedListRow[]) => Promise<Batch>,
    onBatch: (batch: Batch) => Promise<void>,
    options: Pick<ContactListExportOptions, 'byDomain' | 'readAhead'>,
  ): Promise<void> {
    await this.sql.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      const params: unknown[] = [];
      const where: string[] = [];
      if (filter.home !== undefined) {
        params.push(filter.home);
        where.push(`u.home = $${params.length}`);
      }
      if (filter.aor !== undefined) {
        params.push(filter.aor);
        where.push(`u.aor = $${params.length}`);
      }
      // The list columns are evaluated after the sort, row by row as FETCH asks for them
      // (PostgreSQL postpones expensive output columns past a Sort), so the server sorts
      // users, not lists.
      await tx.query(
        `DECLARE parley_export_lists NO SCROLL CURSOR FOR
           SELECT u.id, u.aor, ${EXPORT_LIST_COLUMNS} AS list
             FROM users u ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
            ORDER BY ${options.byDomain ? `substring(u.aor from '[^@]*$') COLLATE "C", ` : ''}u.aor COLLATE "C"`,
        params,
      );
      const size = Math.max(1, Math.floor(batchSize));
      const fetch = `FETCH FORWARD ${size} FROM parley_export_lists`;
      const read = async () => {
        const { rows } = await tx.query<ExportedListRow>(fetch);
        if (rows.length === 0) return undefined;
        return { batch: await decode(tx, rows), last: rows.length < size };
      };
      // With readAhead the next batch is read while this one is written: on PostgreSQL the
      // server works on it while this process serializes. Two batches at most.
      let next: ReturnType<typeof read> | undefined = read();
      try {
        while (next) {
          const batch = await next;
          next = undefined;
          if (!batch) break;
          const more = !batch.last;
          if (more && options.readAhead) next = read();
          await onBatch(batch.batch);
          if (more && !next) next = read();
        }
      } finally {
        // Settled before the transaction ends, whatever happened to onBatch.
        await next?.catch(() => undefined);
      }
      await tx.query('CLOSE parley_export_lists');
    });
  }

  /**
   * The one write path: lock the users' version rows (in id order, so two batches never
   * deadlock), read their lists, let each write decide, and store only what changed, with
   * set-based statements (a dozen statements for a batch of a hundred users, which is what
   * makes a 100,000-user import take minutes, not hours). Every user whose version moves is
   * announced on CONTACT_LISTS_CHANNEL when the transaction commits.
   */
  async write<Report>(
    writes: ContactListWrite<Report>[],
    options: ContactListWriteOptions = {},
  ): Promise<Report[]> {
    if (writes.length === 0) return [];
    const ids = writes.map((w) => w.userId);
    if (new Set(ids).size !== ids.length) throw new Error('a batch writes each user once');
    if (options.savepoint) {
      return this.sql.transaction(async (tx) => {
        await tx.query('SAVEPOINT parley_contact_list_write');
        let reports: Report[];
        try {
          reports = await new ContactListRepository(tx).write(writes, { ...options, savepoint: false });
        } catch (err) {
          // Where the connection is lost this fails too: the caller gets the write's own error.
          await tx.query('ROLLBACK TO SAVEPOINT parley_contact_list_write').catch(() => undefined);
          throw err;
        }
        await tx.query('RELEASE SAVEPOINT parley_contact_list_write');
        return reports;
      });
    }
    return this.sql.transaction(async (tx) => {
      const sorted = [...ids].sort((a, b) => a - b).map(String);
      // Through users, so an id whose user was deleted inserts nothing instead of failing
      // the batch on the foreign key: it is reported as missing below.
      await tx.query(
        `INSERT INTO contact_list_versions (user_id)
         SELECT id FROM users WHERE id = ANY($1::bigint[]) ON CONFLICT (user_id) DO NOTHING`,
        [sorted],
      );
      const carried = writes.every((w) => w.aor !== undefined);
      // The batch's rows are a few index look-ups whatever the statistics say (its current
      // lists, the rows it deletes, the version rows it updates). A store that an import or
      // a sync is filling has the statistics of an empty contacts table until its next
      // ANALYZE (PGlite runs no autovacuum), with which the planner takes `user_id = ANY(250
      // ids)` for the whole table and scans all of it for every batch: the import's write
      // grew with the square of its size (20,000 x 50 on PGlite: 3.18 CPU-s for these reads,
      // against 4.68 for the contacts COPY).
      await tx.query('SET LOCAL enable_seqscan = off');
      // The lock reads the versions too: the lists' read below need not read them again.
      const locked = await tx.query<{
        user_id: number | string;
        aor: string | null;
        version: number | string;
      }>(
        carried
          ? `SELECT user_id, NULL AS aor, version FROM contact_list_versions
              WHERE user_id = ANY($1::bigint[]) ORDER BY user_id FOR UPDATE`
          : `SELECT v.user_id, u.aor, v.version FROM contact_list_versions v JOIN users u ON u.id = v.user_id
              WHERE v.user_id = ANY($1::bigint[]) ORDER BY v.user_id FOR UPDATE OF v`,
        [sorted],
      );
      const lockedIds = new Set(locked.rows.map((r) => Number(r.user_id)));
      const missing = ids.filter((id) => !lockedIds.has(id));
      if (missing.length > 0) throw new ContactListOwnersMissingError(missing);
      const owners = new Map<number, ContactListOwner>(
        carried
          ? writes.map((w) => [w.userId, { id: w.userId, aor: w.aor! }])
          : locked.rows.map((r) => [Number(r.user_id), { id: Number(r.user_id), aor: r.aor! }]),
      );
      // Every list of the batch is read, empty or not: a lock that also probed each user's
      // three tables for rows, to read only those lists, cost PGlite more than the four
      // set-based reads (0.54-0.59 against 0.49 CPU-s at 20,000 users, 3 December 16:38).
      const currentLists = await readLists(
        tx,
        [...owners.values()],
        new Map(locked.rows.map((r) => [Number(r.user_id), Number(r.version)])),
      );
      const reports: Report[] = [];
      const changed: ChangedList[] = [];
      const versions: { userId: number; version: number }[] = [];
      const notify: string[] = [];
      for (const write of writes) {
        const current = currentLists.get(write.userId)!;
        const decision = write.decide(current);
        reports.push(decision.report);
        if (decision.contentChanged) changed.push({ userId: write.userId, decision, previous: current });
        const version = decision.version ?? decision.next.version;
        if (version !== current.version) {
          versions.push({ userId: write.userId, version });
          notify.push(owners.get(write.userId)!.aor);
        }
      }
      if (changed.length > 0) await storeContents(tx, changed);
      if (versions.length > 0) {
        await tx.query(
          `UPDATE contact_list_versions v SET version = n.version, updated_at = now()
             FROM unnest($1::bigint[], $2::bigint[]) AS n(user_id, version) WHERE v.user_id = n.user_id`,
          [versions.map((v) => String(v.userId)), versions.map((v) => String(v.version))],
        );
      }
      // Through here: with it on, the planner hashed every version row of the store to update
      // a batch's 250 (a sequential scan for each batch, 20,000 rows each at 20,000 users).
      await tx.query('SET LOCAL enable_seqscan = DEFAULT');
      if (notify.length > 0 && (options.notify ?? true)) {
        await tx.query('SELECT pg_notify($1, aor) FROM unnest($2::text[]) AS aor', [
          CONTACT_LISTS_CHANNEL,
          notify,
        ]);
      }
      return reports;
    });
  }
}

function emptyList(owner: ContactListOwner, version: number): ContactList {
  return { user: `sip:${owner.aor}`, version, groups: [], contacts: [], accessRules: [] };
}

/** The lists of owners; their versions are read unless the caller has them (by user id). */
async function readLists(
  sql: Sql,
  owners: ContactListOwner[],
  knownVersions?: Map<number, number>,
): Promise<Map<number, ContactList>> {
  const lists = new Map<number, ContactList>();
  if (owners.length === 0) return lists;
  for (const owner of owners) lists.set(owner.id, emptyList(owner, knownVersions?.get(owner.id) ?? 0));
  const ids = owners.map((o) => String(o.id));
  const [versions, groups, contacts, rules] = [
    knownVersions
      ? { rows: [] }
      : await sql.query<{ user_id: number | string; version: number | string }>(
          'SELECT user_id, version FROM contact_list_versions WHERE user_id = ANY($1::bigint[])',
          [ids],
        ),
    await sql.query<GroupRow>(
      'SELECT user_id, name FROM contact_groups WHERE user_id = ANY($1::bigint[]) ORDER BY user_id, position, name COLLATE "C"',
      [ids],
    ),
    // One JSON text instead of rows: decoding 25,000 rows field by field costs several times more.
    await sql.query<{ j: string }>(
      `SELECT coalesce(json_agg(json_build_array(user_id, uri, display_name, subscribed, groups)
                                ORDER BY user_id, position, uri COLLATE "C"), '[]')::text AS j
         FROM contacts WHERE user_id = ANY($1::bigint[])`,
      [ids],
    ),
    await sql.query<RuleRow>(
      'SELECT user_id, pattern, action FROM access_rules WHERE user_id = ANY($1::bigint[])',
      [ids],
    ),
  ];
  for (const row of versions.rows) lists.get(Number(row.user_id))!.version = Number(row.version);
  for (const row of groups.rows) lists.get(Number(row.user_id))!.groups.push({ name: row.name });
  const contactRows = JSON.parse(contacts.rows[0].j) as [number, string, string, boolean, string[]][];
  for (const [userId, uri, displayName, subscribed, contactGroups] of contactRows) {
    lists.get(Number(userId))!.contacts.push({ uri, displayName, subscribed, groups: contactGroups });
  }
  for (const row of rules.rows)
    lists.get(Number(row.user_id))!.accessRules.push({ pattern: row.pattern, action: row.action });
  for (const list of lists.values()) orderContactList(list);
  return lists;
}

/**
 * One user's whole list as one JSON text, for the export's cursor over users u: [version,
 * group names, contacts as [uri, display name, subscribed, groups], rules as [pattern,
 * action]], each list in the order readLists reads it (null for none). Each is an index
 * lookup by user_id; one text per user, because decoding rows field by field costs the
 * command several times more, and one query per batch instead of four: on PostgreSQL a
 * batch's four set-based reads (25,000 contact rows sorted together, spilling to disk at
 * the default work_mem) cost the server about twice as much CPU.
 */
const EXPORT_LIST_COLUMNS = `json_build_array(
  (SELECT v.version FROM contact_list_versions v WHERE v.user_id = u.id),
  (SELECT json_agg(g.name ORDER BY g.position, g.name COLLATE "C") FROM contact_groups g WHERE g.user_id = u.id),
  (SELECT json_agg(json_build_array(c.uri, c.display_name, c.subscribed, c.groups) ORDER BY c.position, c.uri COLLATE "C")
     FROM contacts c WHERE c.user_id = u.id),
  (SELECT json_agg(json_build_array(r.pattern, r.action)) FROM access_rules r WHERE r.user_id = u.id))::text`;

/** A row of the export's cursor: a user and the whole list as EXPORT_LIST_COLUMNS' JSON text. */
export interface ExportedListRow {
  id: number | string;
  aor: string;
  list: string;
}

type ExportedListJson = [
  number | null,
  string[] | null,
  [string, string, boolean, string[]][] | null,
  [string, AccessAction][] | null,
];

function exportedList(aor: string, json: string): ContactList {
  const [version, groups, contacts, rules] = JSON.parse(json) as ExportedListJson;
  return orderContactList({
    user: `sip:${aor}`,
    version: version ?? 0,
    groups: groups ? groups.map((name) => ({ name })) : [],
    contacts: contacts
      ? contacts.map(([uri, displayName, subscribed, contactGroups]) => ({
          uri,
          displayName,
          subscribed,
          groups: contactGroups,
        }))
      : [],
    accessRules: rules ? rules.map(([pattern, action]) => ({ pattern, action })) : [],
  });
}

/**
 * For each owner, the contacts of its list that are users of this store whose own list
 * subscribes to the owner: the reverse edge of a subscription, found by index lookups
 * (users by aor, contacts by (user_id, uri)) rather than a scan.
 */
async function readSubscribers(sql: Sql, owners: ContactListOwner[]): Promise<Map<string, Set<string>>> {
  const result = new Map<string, Set<string>>();
  if (owners.length === 0) return result;
  const { rows } = await sql.query<{ owner: string; uri: string }>(
    `SELECT a.aor AS owner, c.uri
       FROM contacts c
       JOIN users a ON a.id = c.user_id
       JOIN users b ON b.aor = regexp_replace(c.uri, '^sips?:', '')
      WHERE c.user_id = ANY($1::bigint[])
        AND EXISTS (SELECT 1 FROM contacts back
                     WHERE back.user_id = b.id AND back.subscribed
                       AND back.uri IN ('sip:' || a.aor, 'sips:' || a.aor))`,
    [owners.map((o) => String(o.id))],
  );
  for (const row of rows) {
    const key = `sip:${row.owner}`;
    let set = result.get(key);
    if (!set) {
      set = new Set();
      result.set(key, set);
    }
    set.add(row.uri);
  }
  return result;
}

/** A user whose rows a write rewrites: what was decided, and the list it replaces. */
interface ChangedList {
  userId: number;
  decision: Pick<ContactListDecision<unknown>, 'next' | 'rows'>;
  previous: ContactList;
}

/**
 * Rewrites the three tables of the given lists; positions follow array order. Where the
 * engine offers COPY, each table's rows go in with one COPY, their text the rows the caller
 * prepared (an import's parse workers made them) or made here from the list; else with
 * INSERT ... SELECT FROM unnest(...). Tables are only cleared for users that had rows in
 * them.
 */
async function storeContents(tx: Sql, lists: ChangedList[]): Promise<void> {
  const clear = async (table: string, had: (l: ContactList) => boolean) => {
    const ids = lists.filter((l) => had(l.previous)).map((l) => String(l.userId));
    if (ids.length > 0) await tx.query(`DELETE FROM ${table} WHERE user_id = ANY($1::bigint[])`, [ids]);
  };
  await clear('contact_groups', (l) => l.groups.length > 0);
  await clear('contacts', (l) => l.contacts.length > 0);
  await clear('access_rules', (l) => l.accessRules.length > 0);
  if (tx.copyFrom) {
    // COPY where the engine offers it: a third less work than unnest for the same rows on
    // PGlite; on PostgreSQL no arrays for pg to build. contacts has no foreign key to users
    // (011_contacts_owned_by_store.sql): the users' version rows, locked above, keep the
    // owners until commit, and deleting a user deletes its contacts.
    let groups = '';
    let contacts = '';
    let rules = '';
    for (const { userId, decision } of lists) {
      const rows = decision.rows ?? contactListRows(decision.next);
      const id = String(userId);
      groups += withOwner(rows.groups, id);
      contacts += withOwner(rows.contacts, id);
      rules += withOwner(rows.rules, id);
    }
    if (groups !== '') await tx.copyFrom('contact_groups', GROUP_COLUMNS, groups);
    if (contacts !== '') await tx.copyFrom('contacts', CONTACT_COLUMNS, contacts);
    if (rules !== '') await tx.copyFrom('access_rules', RULE_COLUMNS, rules);
    return;
  }
  const groups = { ids: [] as string[], names: [] as string[], positions: [] as number[] };
  const rules = { ids: [] as string[], patterns: [] as string[], actions: [] as string[] };
  for (const { userId, decision } of lists) {
    const id = String(userId);
    const list = decision.next;
    list.groups.forEach((g, position) => {
      groups.ids.push(id);
      groups.names.push(g.name);
      groups.positions.push(position);
    });
    for (const r of list.accessRules) {
      rules.ids.push(id);
      rules.patterns.push(r.pattern);
      rules.actions.push(r.action);
    }
  }
  if (groups.ids.length > 0) {
    await tx.query(
      `INSERT INTO contact_groups (user_id, name, position)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[])`,
      [groups.ids, groups.names, groups.positions],
    );
  }
  await insertContacts(
    tx,
    lists.map((l) => ({ userId: l.userId, list: l.decision.next })),
  );
  if (rules.ids.length > 0) {
    await tx.query(
      `INSERT INTO access_rules (user_id, pattern, action)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])`,
      [rules.ids, rules.patterns, rules.actions],
    );
  }
}

/** The contacts of lists with INSERT ... SELECT FROM unnest(...): where the engine offers no COPY. */
async function insertContacts(tx: Sql, lists: { userId: number; list: ContactList }[]): Promise<void> {
  const contacts = {
    ids: [] as string[],
    uris: [] as string[],
    names: [] as string[],
    subscribed: [] as boolean[],
    groups: [] as string[],
    positions: [] as number[],
  };
  for (const { userId, list } of lists) {
    const id = String(userId);
    list.contacts.forEach((c, position) => {
      contacts.ids.push(id);
      contacts.uris.push(c.uri);
      contacts.names.push(c.displayName);
      contacts.subscribed.push(c.subscribed);
      contacts.groups.push(arrayLiteral(c.groups));
      contacts.positions.push(position);
    });
  }
  if (contacts.ids.length === 0) return;
  // A contact's groups travel as one array literal each: a text[][] parameter cannot be ragged.
  await tx.query(
    `INSERT INTO contacts (user_id, uri, display_name, subscribed, groups, position)
     SELECT c.user_id, c.uri, c.display_name, c.subscribed, c.groups::text[], c.position
       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::text[], $6::int[])
         AS c(user_id, uri, display_name, subscribed, groups, position)`,
    [contacts.ids, contacts.uris, contacts.names, contacts.subscribed, contacts.groups, contacts.positions],
  );
}

/** A PostgreSQL array literal of text: every element quoted, quotes and backslashes escaped. */
function arrayLiteral(values: string[]): string {
  // Group names rarely hold a quote or a backslash: then there is nothing to escape.
  if (values.length === 0) return '{}';
  if (!values.some((v) => v.includes('"') || v.includes('\\'))) return `{"${values.join('","')}"}`;
  return `{${values.map((v) => `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}
