import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
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
 * with an unhandled 'error' event, whichever of the import's two writers sees it first.
 * And a store lost while the command is still opening it (its migration check) is as
 * unavailable: that window is where an earlier version of this test once stopped the
 * server, and the command left with the raw "write EPIPE" and exit 1.
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
    // Wait until the write phase has committed a batch (two writers are then at work),
    // then take the database away.
    const watcher = new pg.Client({ connectionString: targetUrl });
    await watcher.connect();
    const deadline = Date.now() + 60_000;
    let writing = false;
    while (!writing && Date.now() < deadline) {
      const { rows } = await watcher.query('SELECT EXISTS (SELECT 1 FROM contacts) AS written');
      writing = rows[0].written === true;
      if (!writing) await new Promise((r) => setTimeout(r, 20));
    }
    await watcher.end();
    expect(writing).toBe(true);
    await postgres.stop();

    const { code, output } = await run;
    expect(output).not.toMatch(/Unhandled 'error' event/);
    expect(code).toBe(5);
    const json = JSON.parse(output.slice(output.indexOf('{'), output.lastIndexOf('}') + 1));
    expect(json.error?.code ?? json.code).toBe('DATABASE_UNAVAILABLE');
    expect(JSON.stringify(json)).toMatch(/lost the connection/);
  }, 180_000);

  it('exits 5 when the connection is lost while the store is being opened', async () => {
    // A socket where PostgreSQL's would be that accepts and drops each connection, as a
    // server dying during the command's first statements.
    const socketDir = mkdtempSync(join(dir, 'dropping-'));
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.once('data', () => socket.destroy());
    });
    await new Promise<void>((r) => server.listen(join(socketDir, '.s.PGSQL.5432'), r));
    try {
      const url = `postgresql://postgres@localhost/parley?host=${encodeURIComponent(socketDir)}`;
      const { code, output } = await runCli(
        ['contacts', 'import', file, '--database', url, '--json'],
        60_000,
      );
      expect(code).toBe(5);
      const json = JSON.parse(output.slice(output.indexOf('{'), output.lastIndexOf('}') + 1));
      expect(json.error?.code ?? json.code).toBe('DATABASE_UNAVAILABLE');
      expect(JSON.stringify(json)).toMatch(/lost the connection to the PostgreSQL database while opening it/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => server.close(r));
    }
  }, 60_000);
});
