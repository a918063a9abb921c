import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ArchiveCommandError,
  exportArchive,
  parseTimeFlag,
  searchArchive,
} from '../../src/archive/search.js';
import { ArchiveWriter } from '../../src/archive/writer.js';
import { silentLogger } from '../../src/ops/log.js';
import { ArchiveRepository, type NewArchivedMessage } from '../../src/store/archive.js';
import type { PgliteDatabase } from '../../src/store/pglite.js';
import { createTestDatabase } from '../support/database.js';

const config = {
  enabled: true,
  users: [],
  groups: [],
  retentionDays: 365,
  onFailure: 'continue' as const,
  batchSize: 3,
  flushMs: 10,
};
const message = (n: number) => ({
  sender: 'a@x',
  recipient: 'b@x',
  contentType: 'text/plain',
  body: `m${n}`,
  size: 2,
});

describe('ArchiveWriter', () => {
  it('writes a row per message once its final response is known, in batches', async () => {
    const batches: NewArchivedMessage[][] = [];
    const w = new ArchiveWriter<number>({
      ...config,
      repo: { insertBatch: async (rows) => void batches.push([...rows]), purgeBefore: async () => 0 },
      serverId: 's1',
      log: silentLogger(),
    });
    for (let i = 0; i < 7; i++) w.begin(i, message(i));
    expect(w.backlog).toBe(7);
    for (let i = 0; i < 7; i++) w.finished(i, i === 6 ? 480 : 200);
    await w.close();
    expect(batches.map((b) => b.length)).toEqual([3, 3, 1]);
    expect(batches.flat().map((r) => r.body)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
    expect(batches[2][0]).toMatchObject({ result: 480, serverId: 's1', sender: 'a@x' });
  });

  it('only archives the listed users when there are some', () => {
    const w = new ArchiveWriter({
      ...config,
      users: ['a@x'],
      repo: {} as never,
      serverId: 's',
      log: silentLogger(),
    });
    expect(w.wants('a@x', 'b@x')).toBe(true);
    expect(w.wants('b@x', 'a@x')).toBe(true);
    expect(w.wants('b@x', 'c@x')).toBe(false);
  });

  it('block: stops accepting while writes fail, keeps the rows and writes them once it can', async () => {
    let broken = true;
    const written: NewArchivedMessage[] = [];
    const failures: number[] = [];
    const w = new ArchiveWriter<number>({
      ...config,
      onFailure: 'block',
      repo: {
        insertBatch: async (rows) => {
          if (broken) throw new Error('archive is read-only');
          written.push(...rows);
        },
        purgeBefore: async () => 0,
      },
      serverId: 's',
      log: silentLogger(),
      onWriteFailed: () => failures.push(1),
    });
    w.begin(1, message(1));
    w.finished(1, 200);
    expect(w.accepting).toBe(true);
    await w.flush();
    expect(w.accepting).toBe(false);
    expect(failures.length).toBe(1);
    broken = false;
    await expect.poll(() => w.accepting, { timeout: 3000 }).toBe(true);
    expect(written.map((r) => r.body)).toEqual(['m1']);
    await w.close();
  });

  it('continue: keeps accepting, and drops the oldest rows past its backlog bound', async () => {
    let dropped = 0;
    const w = new ArchiveWriter<number>({
      ...config,
      batchSize: 1,
      repo: {
        insertBatch: async () => {
          throw new Error('down');
        },
        purgeBefore: async () => 0,
      },
      serverId: 's',
      log: silentLogger(),
      onDropped: (n) => {
        dropped += n;
      },
    });
    for (let i = 0; i < 150; i++) {
      w.begin(i, message(i));
      w.finished(i, 200);
      await w.flush();
    }
    expect(w.accepting).toBe(true);
    expect(dropped).toBe(50);
    expect(w.backlog).toBe(100);
  });
});

describe('archive on a store', () => {
  let db: PgliteDatabase;
  let repo: ArchiveRepository;
  beforeAll(async () => {
    db = await createTestDatabase();
    repo = new ArchiveRepository(db);
  });
  afterAll(async () => {
    await db?.close();
  });
  beforeEach(async () => {
    await db.exec('TRUNCATE archive');
  });

  it('purges messages past retention, once at start and then daily', async () => {
    const day = 86_400_000;
    const now = Date.parse('2030-06-01T00:00:00Z');
    const row = (daysAgo: number, body: string): NewArchivedMessage => ({
      at: new Date(now - daysAgo * day),
      sender: 'a@x',
      recipient: 'b@x',
      contentType: 'text/plain',
      body,
      size: body.length,
      result: 200,
      serverId: 's',
    });
    await repo.insertBatch([row(400, 'old'), row(366, 'just old'), row(364, 'kept'), row(0, 'new')]);
    const w = new ArchiveWriter({
      ...config,
      retentionDays: 365,
      repo,
      serverId: 's',
      log: silentLogger(),
      now: () => now,
    });
    expect(await w.purgeExpired()).toBe(2);
    expect((await repo.search({ limit: 10 })).map((r) => r.body)).toEqual(['kept', 'new']);
  });

  it('searches and exports what real batches wrote', async () => {
    const at = new Date('2030-01-01T10:00:00Z');
    const row = (sender: string, recipient: string, body: string, minutes: number): NewArchivedMessage => ({
      at: new Date(at.getTime() + minutes * 60_000),
      sender,
      recipient,
      contentType: 'text/plain',
      body,
      size: Buffer.byteLength(body),
      result: 200,
      serverId: 's',
    });
    await repo.insertBatch([
      row('alice@x', 'bob@x', 'Quarterly report <draft> & "notes"', 0),
      row('bob@x', 'alice@x', 'got the report', 1),
      row('carol@x', 'alice@x', 'lunch?', 2),
      row('carol@x', 'dave@x', '100% done_', 3),
    ]);
    const found = await searchArchive(repo, { user: 'alice@x', with: 'bob@x', text: 'REPORT', limit: 1 });
    expect(found.messages.map((m) => m.body)).toEqual(['Quarterly report <draft> & "notes"']);
    expect(found.truncated).toBe(true);
    expect((await searchArchive(repo, { user: 'alice@x', limit: 10 })).messages).toHaveLength(3);
    expect(
      (
        await searchArchive(repo, { user: 'carol@x', since: new Date(at.getTime() + 150_000), limit: 10 })
      ).messages.map((m) => m.body),
    ).toEqual(['100% done_']);
    // LIKE wildcards in the words are taken literally.
    expect((await searchArchive(repo, { user: 'carol@x', text: '%', limit: 10 })).messages).toHaveLength(1);
    expect((await searchArchive(repo, { user: 'carol@x', text: '_', limit: 10 })).messages).toHaveLength(1);

    const collect = async (format: 'jsonl' | 'xml') => {
      const out = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (c: Buffer) => chunks.push(c));
      const r = await exportArchive(repo, { since: at, format, out, pageSize: 3 });
      return { ...r, text: Buffer.concat(chunks).toString() };
    };
    const jsonl = await collect('jsonl');
    expect(jsonl.messages).toBe(4);
    const lines = jsonl.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({
      sender: 'alice@x',
      recipient: 'bob@x',
      at: '2030-01-01T10:00:00.000Z',
      result: 200,
    });
    const xml = await collect('xml');
    expect(xml.text).toContain('<archive xmlns="urn:parley:archive:1" since="2030-01-01T10:00:00.000Z">');
    expect(xml.text).toContain('>Quarterly report &lt;draft&gt; &amp; &quot;notes&quot;</message>');
    expect(xml.text.match(/<message /g)).toHaveLength(4);
  });

  it('reads times as dates or spans back from now', () => {
    const now = Date.parse('2030-01-10T00:00:00Z');
    expect(parseTimeFlag('7d', '--since', now).toISOString()).toBe('2030-01-03T00:00:00.000Z');
    expect(parseTimeFlag('2030-01-01', '--since').toISOString()).toBe('2030-01-01T00:00:00.000Z');
    expect(() => parseTimeFlag('yesterday', '--since')).toThrow(ArchiveCommandError);
  });
});
