import { expect, it } from 'vitest';
import { migrate } from '../../src/store/migrate.js';
import { createPostgresDatabase, type PostgresDatabase } from '../../src/store/postgres.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { defineStoreContract } from './contract.js';

let server: TestPostgres | undefined;
const started = () => (server ? Promise.resolve(server) : startTestPostgres().then((s) => (server = s)));

defineStoreContract('postgres', {
  create: async () => createPostgresDatabase(await (await started()).createDatabase()),
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
