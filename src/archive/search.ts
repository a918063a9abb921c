import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { ArchivedMessageRecord, ArchiveRepository } from '../store/archive.js';

/** A failure of an archive command, carrying its catalogue code (src/cli/errors.ts). */
export class ArchiveCommandError extends Error {
  constructor(
    readonly code: 'INVALID_FLAG',
    message: string,
  ) {
    super(message);
    this.name = 'ArchiveCommandError';
  }
}

/**
 * A point in time as administrators write it: an ISO date or date-time (`2026-03-01`,
 * `2026-03-01T08:00:00Z`), or a span back from now (`30m`, `24h`, `7d`).
 */
export function parseTimeFlag(text: string, flag: string, now = Date.now()): Date {
  const span = /^(\d+)([mhdw])$/.exec(text.trim());
  if (span) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[span[2] as 'm' | 'h' | 'd' | 'w'];
    return new Date(now - Number(span[1]) * unit);
  }
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? new Date(text) : new Date(Number.NaN);
  if (Number.isNaN(at.getTime()))
    throw new ArchiveCommandError(
      'INVALID_FLAG',
      `${flag} "${text}" is not a time: give an ISO date (2026-03-01, 2026-03-01T08:00:00Z) or a span back from now (30m, 24h, 7d)`,
    );
  return at;
}

export interface ArchiveSearch {
  user: string;
  with?: string;
  since?: Date;
  until?: Date;
  text?: string;
  limit: number;
}

export interface ArchiveSearchResult {
  messages: Array<Omit<ArchivedMessageRecord, 'at'> & { at: string }>;
  /** More matched than --limit: narrow the search, or export. */
  truncated: boolean;
}

const shown = (r: ArchivedMessageRecord) => ({ ...r, at: r.at.toISOString() });

/** `parley archive search`: a user's messages, optionally with one other user, in a time range, holding words. */
export async function searchArchive(repo: ArchiveRepository, q: ArchiveSearch): Promise<ArchiveSearchResult> {
  const rows = await repo.search({
    user: q.user,
    with: q.with,
    since: q.since,
    until: q.until,
    words: q.text?.split(/\s+/).filter(Boolean),
    limit: q.limit + 1,
  });
  return { messages: rows.slice(0, q.limit).map(shown), truncated: rows.length > q.limit };
}

export function renderArchiveSearch(result: ArchiveSearchResult): string[] {
  const lines = result.messages.map(
    (m) => `${m.at}  ${m.sender} -> ${m.recipient}  [${m.result || '-'}]  ${m.body.replace(/\s+/g, ' ')}`,
  );
  lines.push(
    `${result.messages.length} message(s)${result.truncated ? ' (more match: narrow the search or raise --limit)' : ''}`,
  );
  return lines;
}

export type ArchiveExportFormat = 'jsonl' | 'xml';

function xmlEscape(text: string): string {
  return text.replace(
    /[<>&"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c] as string,
  );
}

/** XML 1.0 forbids most control characters even escaped: they are dropped from bodies. */
function xmlText(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  return xmlEscape(text.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/g, ''));
}

/**
 * `parley archive export`: every message in the range, oldest first, streamed a page at a
 * time (keyset on the id), as JSON lines or as one XML document.
 */
export async function exportArchive(
  repo: ArchiveRepository,
  opts: { since: Date; until?: Date; format: ArchiveExportFormat; out: Writable; pageSize?: number },
): Promise<{ messages: number }> {
  const write = async (text: string) => {
    if (!opts.out.write(text)) await once(opts.out, 'drain');
  };
  if (opts.format === 'xml') {
    await write(
      `<?xml version="1.0" encoding="UTF-8"?>\n<archive xmlns="urn:parley:archive:1" since="${opts.since.toISOString()}"${opts.until ? ` until="${opts.until.toISOString()}"` : ''}>\n`,
    );
  }
  let afterId: number | undefined;
  let count = 0;
  for (;;) {
    const page = await repo.search({
      since: opts.since,
      until: opts.until,
      afterId,
      limit: opts.pageSize ?? 1000,
    });
    if (page.length === 0) break;
    for (const r of page) {
      if (opts.format === 'jsonl') {
        await write(`${JSON.stringify(shown(r))}\n`);
      } else {
        await write(
          `  <message id="${r.id}" at="${r.at.toISOString()}" from="${xmlEscape(r.sender)}" to="${xmlEscape(r.recipient)}" content-type="${xmlEscape(r.contentType)}" size="${r.size}" result="${r.result}" server="${xmlEscape(r.serverId)}">${xmlText(r.body)}</message>\n`,
        );
      }
    }
    count += page.length;
    afterId = page[page.length - 1].id;
  }
  if (opts.format === 'xml') await write('</archive>\n');
  return { messages: count };
}
