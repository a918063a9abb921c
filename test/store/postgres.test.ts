import { expect, it } from 'vitest';
import { ArchiveRepository } from '../../src/store/archive.js';
import { loadMigrations, migrate } from '../../src/store/migrate.js';
import { createPostgresDatabase, type PostgresDatabase } from '../../src/store/postgres.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { defineStoreContract } from './contract.js';

let server: TestPostgres | undefined;
const started = () => (server ? Promise.resolve(server) : startTestPostgres().then((s) => (server = s)));

defineStoreContract('postgres', {
  create: async () => createPostgresDatabase(await (await started()).createDatabase(), { prepare: true }),
  teardown: async () => {
    await server?.stop();
    server = undefined;
  },
});

it('postgres: listeners survive a dropped LISTEN connection', async () => {
  const pgs = await startTestPostgres();
  const db = createPostgresDatabase(await pgs.createDatabase());
  try {
    await migrate(db);
    const got: string[] = [];
    await db.listen('parley_reconnect', (p) => got.push(p));
    (db as PostgresDatabase).dropListenConnection();
    // Notifications sent while the connection is down are lost by design; keep sending until one arrives.
    await expect
      .poll(
        async () => {
          await db.notify('parley_reconnect', 'back');
          return got.includes('back');
        },
        { timeout: 10_000, interval: 100 },
      )
      .toBe(true);
  } finally {
    await db.close();
    await pgs.stop();
  }
});

it('postgres: a listener hears when the LISTEN connection is lost and when it is back', async () => {
  const pgs = await startTestPostgres();
  const db = createPostgresDatabase(await pgs.createDatabase());
  try {
    const events: string[] = [];
    await db.listen('parley_gap', () => {}, {
      lost: () => events.push('lost'),
      resumed: () => events.push('resumed'),
    });
    expect(events).toEqual([]);
    (db as PostgresDatabase).dropListenConnection();
    expect(events).toEqual(['lost']);
    await expect.poll(() => events, { timeout: 10_000, interval: 50 }).toEqual(['lost', 'resumed']);
    // Once resumed, LISTEN is in place again: a notification sent now arrives.
    const got: string[] = [];
    await db.listen('parley_gap', (p) => got.push(p));
    await db.notify('parley_gap', 'after');
    await expect.poll(() => got, { timeout: 5_000, interval: 20 }).toEqual(['after']);
  } finally {
    await db.close();
    await pgs.stop();
  }
});

it('postgres: two front-ends migrating a fresh database at once apply each migration once', async () => {
  const pgs = await startTestPostgres();
  const url = await pgs.createDatabase();
  const one = createPostgresDatabase(url);
  const two = createPostgresDatabase(url);
  try {
    const [a, b] = await Promise.all([migrate(one), migrate(two)]);
    const versions = [...a.applied, ...b.applied].map((m) => m.version).sort((x, y) => x - y);
    expect(versions).toEqual(loadMigrations().map((m) => m.version));
    expect(a.current).toBe(b.current);
  } finally {
    await one.close();
    await two.close();
    await pgs.stop();
  }
});

it('postgres: archive batches over COPY FROM STDIN (copy: true, as servers open it) keep every byte', async () => {
  const pgs = await startTestPostgres();
  const db = createPostgresDatabase(await pgs.createDatabase(), { prepare: true, copy: true });
  try {
    await migrate(db);
    const repo = new ArchiveRepository(db);
    const body = 'tab\there\nline\\N é';
    const row = (n: number) => ({
      at: new Date(Date.UTC(2030, 0, 1, 0, n)),
      sender: 'a@example.com',
      recipient: 'b@example.com',
      contentType: 'text/plain',
      body: `${body} ${n}`,
      size: 0,
      result: 200,
      serverId: 'fe1',
    });
    await repo.insertBatch(Array.from({ length: 1000 }, (_, n) => row(n)));
    const rows = await repo.search({ limit: 2000 });
    expect(rows).toHaveLength(1000);
    expect(rows[999]).toMatchObject({ ...row(999), id: expect.any(Number) });
  } finally {
    await db.close();
    await pgs.stop();
  }
});
