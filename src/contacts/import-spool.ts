import { createReadStream } from 'node:fs';
import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { contactListFromRows } from '../store/contact-lists.js';
import { IO_CHUNK } from '../store/io-chunk.js';
import type { PreparedList } from './lists.js';
import type { ContactList } from './model.js';

/**
 * Where an import keeps the lists it validated until it knows the whole file is good: a
 * temporary file of one record per user, in the order of the XML file. The XML is parsed
 * once (validation); the write phase reads these records back instead of parsing it again,
 * and memory stays flat at any file size (holding 100,000 parsed lists in memory would take
 * gigabytes).
 *
 * A record is a list in the form the store writes it, prepared by the parse workers
 * (prepareList: its sizes and its rows in COPY's text format), with its owner: a JSON header
 * [userId, aor, line, column, version, groups, contacts, rules, and the lengths of the
 * group, contact and rule rows], a tab, the rows as they are, and RECORD_END. The write
 * phase parses the header and hands the rows of a user whose stored list is empty (a first
 * import) to COPY as they are; it builds the list from its rows only where the stored one
 * has to be compared or merged with it. No record holds RECORD_END but at its end: XML
 * forbids the character and neither JSON nor COPY's text format leaves it raw.
 *
 * The file lives in a folder of its own made with mode 0700 (mkdtemp), since lists are
 * personal data, and is removed when the import ends, whatever the outcome.
 */
export interface SpooledList {
  userId: number;
  aor: string;
  line: number;
  column: number;
  /** The list (in stored form), built from its rows on first use. */
  readonly list: ContactList;
  prepared: PreparedList;
}

/** A prepared list's header: [version, groups, contacts, rules, and its rows' lengths (group, contact, rule)]. */
type PreparedHeader = [number, number, number, number, number, number, number];

/** A record's header: [userId, aor, line, column, ...PreparedHeader]. */
type SpoolHeader = [number, string, number, number, ...PreparedHeader];

/** Ends a record: the ASCII record separator, which no XML 1.0 document holds. */
const RECORD_END = '\x1e';

/**
 * A list's prepared form (prepareList) for the spool: its header as JSON, a tab and its rows.
 * Pure, so parsing workers encode the lists they parse and the spool only prefixes the
 * owner (ListSpool.appendEncoded).
 */
export function encodePrepared(p: PreparedList): string {
  const { groups, contacts, rules } = p.rows;
  const header: PreparedHeader = [
    p.version,
    p.groups,
    p.contacts,
    p.rules,
    groups.length,
    contacts.length,
    rules.length,
  ];
  return `${JSON.stringify(header)}\t${groups}${contacts}${rules}`;
}

/** The list encodePrepared encoded, owned by user (its URI), in stored form. */
export function decodePreparedList(user: string, encoded: string): ContactList {
  return decodePrepared(encoded).list(user);
}

function decodePrepared(encoded: string): ReturnType<typeof preparedFrom> {
  const tab = encoded.indexOf('\t');
  return preparedFrom(JSON.parse(encoded.slice(0, tab)) as PreparedHeader, encoded, tab + 1);
}

/** The prepared list of header whose rows start at `at` in text, and a builder of its list. */
function preparedFrom(
  [version, groups, contacts, rules, groupsLength, contactsLength, rulesLength]: PreparedHeader,
  text: string,
  at: number,
): { prepared: PreparedList; list: (user: string) => ContactList } {
  const contactsAt = at + groupsLength;
  const rulesAt = contactsAt + contactsLength;
  const prepared: PreparedList = {
    version,
    groups,
    contacts,
    rules,
    rows: {
      groups: text.slice(at, contactsAt),
      contacts: text.slice(contactsAt, rulesAt),
      rules: text.slice(rulesAt, rulesAt + rulesLength),
    },
  };
  return { prepared, list: (user) => contactListFromRows(user, version, prepared.rows) };
}

export class ListSpool {
  private pending: string[] = [];
  private pendingChars = 0;
  private closed = false;
  count = 0;

  private constructor(
    private readonly dir: string,
    readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  /** Creates the spool in a new private folder under parent (default: the system's temp folder). */
  static async create(parent: string = tmpdir()): Promise<ListSpool> {
    const dir = await mkdtemp(join(parent, 'parley-import-'));
    const path = join(dir, 'lists.spool');
    return new ListSpool(dir, path, await open(path, 'wx', 0o600));
  }

  /** Appends a list with its owner, the list as encodePrepared encoded it (a parsing worker did). */
  async appendEncoded(
    userId: number,
    aor: string,
    line: number,
    column: number,
    encodedPrepared: string,
  ): Promise<void> {
    const text = `[${userId},${JSON.stringify(aor)},${line},${column},${encodedPrepared.slice(1)}${RECORD_END}`;
    this.pending.push(text);
    this.pendingChars += text.length;
    this.count++;
    if (this.pendingChars >= IO_CHUNK) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const text = this.pending.join('');
    this.pending = [];
    this.pendingChars = 0;
    await this.handle.write(text);
  }

  /** Flushes and closes the writer; entries() can then read the spool back. */
  async finish(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await this.handle.close();
  }

  /** The spooled lists in the order they were appended (call after finish()). */
  async *entries(): AsyncGenerator<SpooledList> {
    const source = createReadStream(this.path, { encoding: 'utf8', highWaterMark: IO_CHUNK });
    let rest = '';
    try {
      for await (const chunk of source as AsyncIterable<string>) {
        const text = rest + chunk;
        let start = 0;
        for (let end = text.indexOf(RECORD_END); end !== -1; end = text.indexOf(RECORD_END, start)) {
          yield decode(text.slice(start, end));
          start = end + 1;
        }
        rest = text.slice(start);
      }
      if (rest !== '') throw new Error(`the import's spool ${this.path} ends in a cut record`);
    } finally {
      source.destroy();
    }
  }

  /** Removes the spool and its folder. */
  async remove(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.handle.close().catch(() => undefined);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

function decode(record: string): SpooledList {
  const tab = record.indexOf('\t');
  const [userId, aor, line, column, ...header] = JSON.parse(record.slice(0, tab)) as SpoolHeader;
  return spooledList(userId, aor, line, column, preparedFrom(header, record, tab + 1));
}

/**
 * A validated list with its owner, as the write takes it, from the encoding a parse worker
 * made (encodePrepared): what an import writing while it validates hands its writer
 * without a spool in between.
 */
export function validatedList(
  userId: number,
  aor: string,
  line: number,
  column: number,
  encodedPrepared: string,
): SpooledList {
  return spooledList(userId, aor, line, column, decodePrepared(encodedPrepared));
}

function spooledList(
  userId: number,
  aor: string,
  line: number,
  column: number,
  { prepared, list }: ReturnType<typeof preparedFrom>,
): SpooledList {
  let built: ContactList | undefined;
  return {
    userId,
    aor,
    line,
    column,
    get list() {
      built ??= list(`sip:${aor}`);
      return built;
    },
    prepared,
  };
}
