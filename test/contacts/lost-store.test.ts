import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportContactLists } from '../../src/contacts/export.js';
import { openDatabase } from '../../src/store/open.js';
import { seedContactLists } from '../../src/store/seed.js';
import { createStore } from '../../src/store/store.js';
import { runCli } from '../support/cli.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

const USERS = 4000;

/**
 * The store dies under a running import (its PostgreSQL stopped at once, as a crash would):
 * the command ends with the catalogued "store unavailable" (exit 5) and its JSON error, not
 * with an unhandled 'error' event.
 */
describe('contacts import when the store goes away', () => {
  let postgres: TestPostgres;
  let dir: string;
  let file: string;
  let targetUrl: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'parley-lost-store-'));
    postgres = await startTestPostgres();
    const sourceUrl = await postgres.createDatabase();
    const source = await openDatabase({ url: sourceUrl });
    await seedContactLists(source, USERS, 50);
    file = join(dir, 'all.xml');
    await exportContactLists(createStore(source), { scope: { kind: 'all' }, out: file });
    await source.close();
    // The target knows the users and has no lists yet: the import has a lot to write.
    targetUrl = await postgres.createDatabase();
    const target = await openDatabase({ url: targetUrl });
    await target.query(
      `INSERT INTO users (aor, display_name)
       SELECT 'user' || g || '@example.com', 'User ' || g FROM generate_series(0, $1::int - 1) AS g`,
      [USERS],
    );
    await target.close();
  }, 180_000);

  afterAll(async () => {
    await postgres?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('exits 5 with a JSON error that says the store was lost', async () => {
    const run = runCli(['contacts', 'import', file, '--database', targetUrl, '--json'], 120_000);
    // Wait until the command is connected and working, then take the database away.
    const watcher = new pg.Client({ connectionString: postgres.url });
    await watcher.connect();
    const deadline = Date.now() + 60_000;
    let busy = false;
    while (!busy && Date.now() < deadline) {
      const { rows } = await watcher.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state <> 'idle'",
        [new URL(targetUrl).pathname.slice(1)],
      );
      busy = rows[0].n > 0;
      if (!busy) await new Promise((r) => setTimeout(r, 20));
    }
    await watcher.end();
    expect(busy).toBe(true);
    await postgres.stop();

    const { code, output } = await run;
    expect(output).not.toMatch(/Unhandled 'error' event/);
    expect(code).toBe(5);
    const json = JSON.parse(output.slice(output.indexOf('{'), output.lastIndexOf('}') + 1));
    expect(json.error?.code ?? json.code).toBe('DATABASE_UNAVAILABLE');
    expect(JSON.stringify(json)).toMatch(/lost the connection/);
  }, 180_000);
});
