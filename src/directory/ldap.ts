import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { AddRequest, Client, type Entry } from 'ldapts';
import type { BindConfig, PasswordSource } from './config.js';

/**
 * The small part of LDAP the directory code uses: bind with a password from a file or the
 * environment, paged searches (RFC 2696) and case-insensitive attribute access.
 */

export type Environment = Record<string, string | undefined>;

export class BindPasswordError extends Error {
  override name = 'BindPasswordError';
}

export function readBindPassword(source: PasswordSource, env: Environment): string {
  if ('env' in source) {
    const v = env[source.env];
    if (v === undefined || v === '')
      throw new BindPasswordError(`environment variable ${source.env} is not set`);
    return v;
  }
  let text: string;
  try {
    text = readFileSync(source.file, 'utf8');
  } catch (err) {
    throw new BindPasswordError(
      `cannot read bind password file ${source.file}: ${(err as NodeJS.ErrnoException).code}`,
    );
  }
  return text.replace(/\r?\n$/, '');
}

export interface ConnectOptions {
  env: Environment;
  timeoutMs?: number;
}

/**
 * ldapts builds its debug line for every request it sends (`Sending message: ` plus the
 * whole message as JSON) before its debug logger decides to drop it: at 100,000 contact
 * adds, CPU and garbage for nothing. Unless that logger is on (NODE_DEBUG=ldapts), messages
 * are given a toJSON naming only their id and type, so the line costs next to nothing.
 * The prototype is ldapts' Message base class (not exported), reached through AddRequest.
 */
function quietMessageLogging(): void {
  if (debuglog('ldapts').enabled) return;
  const base = Object.getPrototypeOf(AddRequest.prototype) as object | null;
  if (!base || Object.hasOwn(base, 'toJSON')) return;
  Object.defineProperty(base, 'toJSON', {
    value(this: { messageId?: number; constructor: { name: string } }) {
      return { messageId: this.messageId, type: this.constructor.name };
    },
    configurable: true,
    writable: true,
  });
}

quietMessageLogging();

export async function connectLdap(bind: BindConfig, opts: ConnectOptions): Promise<Client> {
  const password = readBindPassword(bind.password, opts.env);
  const client = new Client({
    url: bind.url,
    timeout: opts.timeoutMs ?? 60_000,
    connectTimeout: opts.timeoutMs ?? 10_000,
  });
  try {
    await client.bind(bind.bindDn, password);
  } catch (err) {
    await client.unbind().catch(() => undefined);
    throw err;
  }
  return client;
}

/**
 * Sends the requests a client makes in one turn of the event loop in one system call instead
 * of one each: the socket is corked at the first write of a turn and uncorked on the next
 * tick. The sync's pipelined writes come back to life together (a read from the server
 * carries several responses) and send their next requests together; on a busy machine one
 * write(2) per request was the CLI's largest single cost. ldapts keeps its socket in a
 * private field; without one (a future ldapts) the client is left as it is.
 */
export function coalesceWrites(client: Client): void {
  const socket = (client as unknown as { socket?: Socket }).socket;
  if (!socket || typeof socket.cork !== 'function') return;
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  const coalescing = (...args: unknown[]): boolean => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(() => {
        corked = false;
        socket.uncork();
      });
    }
    return write(...args);
  };
  socket.write = coalescing as Socket['write'];
}

export interface PagedSearch {
  filter: string;
  attributes: string[];
  pageSize: number;
  scope?: 'sub' | 'one' | 'base';
  explicitBufferAttributes?: string[];
}

/** Yields one page of entries at a time, so a forest of 100,000 users is never one array. */
export async function* searchPages(
  client: Client,
  base: string,
  search: PagedSearch,
): AsyncGenerator<Entry[]> {
  const pages = client.searchPaginated(base, {
    scope: search.scope ?? 'sub',
    filter: search.filter,
    attributes: search.attributes,
    paged: { pageSize: search.pageSize },
    explicitBufferAttributes: search.explicitBufferAttributes,
  });
  for await (const page of pages) yield page.searchEntries;
}

function lookup(entry: Entry, attribute: string): Entry[string] | undefined {
  if (attribute in entry) return entry[attribute];
  const lower = attribute.toLowerCase();
  for (const key of Object.keys(entry)) if (key.toLowerCase() === lower) return entry[key];
  return undefined;
}

export function values(entry: Entry, attribute: string): string[] {
  const v = lookup(entry, attribute);
  if (v === undefined) return [];
  const list = Array.isArray(v) ? v : [v];
  return list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x))).filter((x) => x !== '');
}

/**
 * One slice of an attribute that Active Directory returns in ranges: a group with more
 * members than the server's MaxValRange (1,500 by default) comes back with
 * `member;range=0-1499` and no `member` (MS-ADTS 3.1.1.3.1.3.3); the last slice's upper
 * bound is `*`. `next` is the attribute description to ask for the following slice.
 */
export function rangedSlice(
  entry: Entry,
  attribute: string,
): { values: string[]; low: number; next?: string } | undefined {
  const prefix = `${attribute.toLowerCase()};range=`;
  const key = Object.keys(entry).find((k) => k.toLowerCase().startsWith(prefix));
  if (key === undefined) return undefined;
  const range = /^(\d+)-(\d+|\*)$/.exec(key.slice(prefix.length));
  if (!range) return undefined;
  const slice = values(entry, key);
  const low = Number(range[1]);
  if (range[2] === '*') return { values: slice, low };
  return { values: slice, low, next: `${attribute};range=${Number(range[2]) + 1}-*` };
}

/**
 * Every value of a multi-valued attribute of `entry`, reading the rest of a ranged one
 * (Active Directory's large groups) with base searches of the entry, slice after slice.
 */
export async function allValues(client: Client, entry: Entry, attribute: string): Promise<string[]> {
  let slice = rangedSlice(entry, attribute);
  if (!slice) return values(entry, attribute);
  const out = [...slice.values];
  while (slice.next) {
    const { searchEntries } = await client.search(entry.dn, {
      scope: 'base',
      filter: '(objectClass=*)',
      attributes: [slice.next],
    });
    const following = searchEntries[0] ? rangedSlice(searchEntries[0], attribute) : undefined;
    // A slice that does not move forward would loop for ever: stop with what was read.
    if (!following || following.low <= slice.low) break;
    out.push(...following.values);
    slice = following;
  }
  return out;
}

/** values(entry, attribute)[0], without building the list: read once per attribute and user. */
export function firstValue(entry: Entry, attribute: string): string | undefined {
  const v = lookup(entry, attribute);
  if (v === undefined) return undefined;
  for (const x of Array.isArray(v) ? v : [v]) {
    const text = Buffer.isBuffer(x) ? x.toString('utf8') : String(x);
    if (text !== '') return text;
  }
  return undefined;
}

export function bufferValue(entry: Entry, attribute: string): Buffer | undefined {
  const v = lookup(entry, attribute);
  const first = Array.isArray(v) ? v[0] : v;
  if (first === undefined) return undefined;
  return Buffer.isBuffer(first) ? first : Buffer.from(String(first), 'binary');
}
