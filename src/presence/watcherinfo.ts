import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { escapeXml } from './pidf.js';

/**
 * Watcher information (RFC 3857 event package "presence.winfo", RFC 3858 document format):
 * tells a presentity who watches it, so its client can approve pending watchers.
 */

export const WATCHERINFO_NS = 'urn:ietf:params:xml:ns:watcherinfo';
export const WATCHERINFO_CONTENT_TYPE = 'application/watcherinfo+xml';

/** RFC 3857 section 3.2.1 subscription states as a watcher sees them. */
export type WatcherStatus = 'pending' | 'active' | 'waiting' | 'terminated';
/** RFC 3857 section 3.2.2 events that moved a subscription to its status. */
export type WatcherEvent =
  | 'subscribe'
  | 'approved'
  | 'deactivated'
  | 'probation'
  | 'rejected'
  | 'timeout'
  | 'giveup'
  | 'noresource';

const STATUSES: ReadonlySet<string> = new Set(['pending', 'active', 'waiting', 'terminated']);
const EVENTS: ReadonlySet<string> = new Set([
  'subscribe',
  'approved',
  'deactivated',
  'probation',
  'rejected',
  'timeout',
  'giveup',
  'noresource',
]);

export interface WatcherEntry {
  /** Stable per subscription (RFC 3858 4.4): lets partial notifications update an entry. */
  id: string;
  uri: string;
  status: WatcherStatus;
  event: WatcherEvent;
  displayName?: string;
  /** Seconds until the subscription expires. */
  expiration?: number;
  /** Seconds the watcher has been subscribed. */
  durationSubscribed?: number;
}

export interface WatcherList {
  resource: string;
  package: string;
  watchers: WatcherEntry[];
}

export interface WatcherInfoDocument {
  /** Incremented for every notification of one subscription (RFC 3858 4.2). */
  version: number;
  state: 'full' | 'partial';
  lists: WatcherList[];
}

function nonNegativeInteger(value: number): string {
  return String(Math.max(0, Math.floor(value)));
}

export function buildWatcherInfo(doc: WatcherInfoDocument): string {
  const parts = [
    '<?xml version="1.0" encoding="UTF-8"?>\n',
    `<watcherinfo xmlns="${WATCHERINFO_NS}" version="${nonNegativeInteger(doc.version)}" state="${doc.state}">\n`,
  ];
  for (const list of doc.lists) {
    parts.push(` <watcher-list resource="${escapeXml(list.resource)}" package="${escapeXml(list.package)}">`);
    if (list.watchers.length > 0) parts.push('\n');
    for (const w of list.watchers) {
      let attrs = `id="${escapeXml(w.id)}" status="${w.status}" event="${w.event}"`;
      if (w.displayName !== undefined) attrs += ` display-name="${escapeXml(w.displayName)}"`;
      if (w.expiration !== undefined) attrs += ` expiration="${nonNegativeInteger(w.expiration)}"`;
      if (w.durationSubscribed !== undefined) {
        attrs += ` duration-subscribed="${nonNegativeInteger(w.durationSubscribed)}"`;
      }
      parts.push(`  <watcher ${attrs}>${escapeXml(w.uri)}</watcher>\n`);
    }
    parts.push(list.watchers.length > 0 ? ' </watcher-list>\n' : '</watcher-list>\n');
  }
  parts.push('</watcherinfo>\n');
  return parts.join('');
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  removeNSPrefix: true,
  processEntities: true,
  parseTagValue: false,
  parseAttributeValue: false,
  isArray: (name) => name === 'watcher-list' || name === 'watcher',
  maxNestedTags: 16,
});

type Node = Record<string, unknown>;

/**
 * Reads a watcherinfo document (for Parley's own tests and tools: servers only send them).
 * Prefixes are dropped rather than resolved: the format has a single namespace.
 */
export function parseWatcherInfo(
  xml: string,
): { ok: true; doc: WatcherInfoDocument } | { ok: false; reason: string } {
  if (xml.length > 1024 * 1024) return { ok: false, reason: 'document too large' };
  if (xml.toUpperCase().includes('<!DOCTYPE')) return { ok: false, reason: 'DOCTYPE is not allowed' };
  const valid = XMLValidator.validate(xml);
  if (valid !== true) return { ok: false, reason: `malformed XML: ${valid.err.msg}` };
  const root = (parser.parse(xml) as Node).watcherinfo as Node | undefined;
  if (!root) return { ok: false, reason: 'root element is not <watcherinfo>' };
  const version = Number(root['@version']);
  const state = root['@state'];
  if (!Number.isInteger(version) || version < 0) return { ok: false, reason: 'bad version' };
  if (state !== 'full' && state !== 'partial') return { ok: false, reason: 'bad state' };
  const lists: WatcherList[] = [];
  for (const list of (root['watcher-list'] ?? []) as Node[]) {
    const watchers: WatcherEntry[] = [];
    for (const w of (list.watcher ?? []) as (Node | string)[]) {
      const node: Node = typeof w === 'string' ? { '#text': w } : w;
      const status = String(node['@status']);
      const event = String(node['@event']);
      if (!STATUSES.has(status) || !EVENTS.has(event))
        return { ok: false, reason: 'bad watcher status or event' };
      const entry: WatcherEntry = {
        id: String(node['@id'] ?? ''),
        uri: String(node['#text'] ?? '').trim(),
        status: status as WatcherStatus,
        event: event as WatcherEvent,
      };
      if (node['@display-name'] !== undefined) entry.displayName = String(node['@display-name']);
      if (node['@expiration'] !== undefined) entry.expiration = Number(node['@expiration']);
      if (node['@duration-subscribed'] !== undefined)
        entry.durationSubscribed = Number(node['@duration-subscribed']);
      watchers.push(entry);
    }
    lists.push({
      resource: String(list['@resource'] ?? ''),
      package: String(list['@package'] ?? ''),
      watchers,
    });
  }
  return { ok: true, doc: { version, state, lists } };
}
