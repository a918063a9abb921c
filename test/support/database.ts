import { migrate } from '../../src/store/migrate.js';
import { createPgliteDatabase, type PgliteDatabase } from '../../src/store/pglite.js';

/**
 * A migrated, in-memory PGlite database for tests of code that needs a real store: the
 * same engine and schema as a standard server, without a data folder. Close it in afterAll.
 */
export async function createTestDatabase(): Promise<PgliteDatabase> {
  const db = await createPgliteDatabase();
  await migrate(db);
  return db;
}
