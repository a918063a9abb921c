import { createReadStream } from 'node:fs';
import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IO_CHUNK } from '../store/io-chunk.js';
import type { AccessAction, ContactList } from './model.js';

/**
 * Where an import keeps the lists it validated until it knows the whole file is good: a
 * temporary file of one JSON line per user, in the order of the XML file. The XML is parsed
 * once (validation); the write phase reads these lines back, which costs a JSON.parse per
 * user instead of a second XML parse, and keeps memory flat at any file size (holding
 * 100,000 parsed lists in memory would take gigabytes).
 *
 * The file lives in a folder of its own made with mode 0700 (mkdtemp), since lists are
 * personal data, and is removed when the import ends, whatever the outcome.
 */
export interface SpooledList {
  userId: number;
  aor: string;
  line: number;
  column: number;
  list: ContactList;
}

/** A list as the spool keeps it: [version, groups, contacts, rules], arrays to keep it short. */
type ListRecord = [number, string[], [string, string, 0 | 1, string[]][], [string, AccessAction][]];

/** One line: [userId, aor, line, column, ...ListRecord]. */
type SpoolRecord = [number, string, number, number, ...ListRecord];

/**
 * A list's part of a spool line, as JSON. Pure, so parsing workers encode the lists they
 * parse and the spool only prefixes the owner (ListSpool.appendEncoded).
 */
export function encodeList(list: ContactList): string {
  const record: ListRecord = [
    list.version,
    list.groups.map((g) => g.name),
    list.contacts.map((c) => [c.uri, c.displayName, c.subscribed ? 1 : 0, c.groups]),
    list.accessRules.map((r) => [r.pattern, r.action]),
  ];
  return JSON.stringify(record);
}

/** The list encodeList encoded, owned by user (its URI). */
export function decodeList(user: string, encoded: string): ContactList {
  return listFromRecord(user, JSON.parse(encoded) as ListRecord);
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
    const path = join(dir, 'lists.jsonl');
    return new ListSpool(dir, path, await open(path, 'wx', 0o600));
  }

  async append(entry: SpooledList): Promise<void> {
    await this.appendEncoded(entry.userId, entry.aor, entry.line, entry.column, encodeList(entry.list));
  }

  /** As append, with the list already encoded by encodeList (by a parsing worker). */
  async appendEncoded(
    userId: number,
    aor: string,
    line: number,
    column: number,
    encodedList: string,
  ): Promise<void> {
    // A record is the owner's four fields followed by the encoded list's four.
    const text = `[${userId},${JSON.stringify(aor)},${line},${column},${encodedList.slice(1)}\n`;
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
        for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
          yield decode(text.slice(start, end));
          start = end + 1;
        }
        rest = text.slice(start);
      }
      if (rest !== '') yield decode(rest);
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

function decode(line: string): SpooledList {
  const [userId, aor, lineNo, column, ...list] = JSON.parse(line) as SpoolRecord;
  return { userId, aor, line: lineNo, column, list: listFromRecord(`sip:${aor}`, list) };
}

function listFromRecord(user: string, [version, groups, contacts, rules]: ListRecord): ContactList {
  return {
    user,
    version,
    groups: groups.map((name) => ({ name })),
    contacts: contacts.map(([uri, displayName, subscribed, memberOf]) => ({
      uri,
      displayName,
      subscribed: subscribed === 1,
      groups: memberOf,
    })),
    accessRules: rules.map(([pattern, action]) => ({ pattern, action })),
  };
}
