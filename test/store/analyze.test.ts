import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { analyzeStaleTables, staleTables } from '../../src/store/analyze.js';
import { serveEmbeddedDatabase } from '../../src/store/embedded.js';
import { migrate } from '../../src/store/migrate.js';
import { openDatabase } from '../../src/store/open.js';
import { createPgliteDatabase, type PgliteDatabase } from '../../src/store/pglite.js';
import type { Sql } from '../../src/store/sql.js';
import { createTestDatabase, migratedDataFolder, queryNumber } from '../support/database.js';
import { scratchDir } from '../support/scratch.js';

const USERS = 3_000;
const ADD_USERS = `INSERT INTO users (aor) SELECT 'user' || g || '@example.com' FROM generate_series(1, ${USERS}) AS g`;

/** The users table's row count as of its last ANALYZE (-1: never analysed). */
async function analysedUsers(db: Sql): Promise<number> {
  return queryNumber(db, "SELECT reltuples::int AS n FROM pg_class WHERE relname = 'users'");
}

describe('planner statistics of an embedded store', () => {
  it('finds the tables that changed much since their last ANALYZE and analyses just those', async () => {
    const db = await createTestDatabase();
    try {
      await analyzeStaleTables(db); // as the last pass left it
      expect(await staleTables(db)).toEqual([]);
      await db.query(ADD_USERS);
      expect(await staleTables(db)).toEqual(['public.users']);
      expect(await analyzeStaleTables(db)).toEqual(['public.users']);
      expect(await analysedUsers(db)).toBe(USERS);
      expect(await staleTables(db)).toEqual([]);
      // A few more rows in a table of that size are not worth another ANALYZE.
      await db.query("INSERT INTO users (aor) VALUES ('one.more@example.com')");
      expect(await staleTables(db)).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it('a command that filled the store leaves statistics behind when it closes it', async () => {
    const dataDir = migratedDataFolder(join(scratchDir('parley-analyze-'), 'store'));
    const db = await openDatabase({ dataDir });
    await db.query(ADD_USERS);
    expect(await analysedUsers(db)).toBeLessThan(USERS);
    await db.close();
    const again = await openDatabase({ dataDir });
    try {
      expect(await analysedUsers(again)).toBe(USERS);
    } finally {
      await again.close();
    }
  });

  it('a migration run that applied something ends with ANALYZE', async () => {
    const db = await createPgliteDatabase();
    try {
      await migrate(db, [
        {
          version: 1,
          name: 'filled',
          sql: 'CREATE TABLE filled AS SELECT g FROM generate_series(1, 500) AS g',
        },
      ]);
      expect(await queryNumber(db, "SELECT reltuples::int AS n FROM pg_class WHERE relname = 'filled'")).toBe(
        500,
      );
    } finally {
      await db.close();
    }
  });

  it('a running server analyses what admin commands wrote over its socket', async () => {
    const dataDir = migratedDataFolder(join(scratchDir('parley-analyze-'), 'store'));
    const db = (await openDatabase({ dataDir })) as PgliteDatabase;
    const served = await serveEmbeddedDatabase(db, dataDir, { analyzeEveryMs: 200 });
    try {
      const client = new pg.Client({ connectionString: served.url });
      await client.connect();
      await client.query(ADD_USERS);
      await client.end();
      await expect.poll(() => analysedUsers(db), { timeout: 10_000, interval: 100 }).toBe(USERS);
    } finally {
      await served.close();
      await db.close();
    }
  });
});
