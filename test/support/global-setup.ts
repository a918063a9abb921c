import { createPgliteDatabase } from '../../src/store/pglite.js';

/**
 * Makes the cached empty PGlite cluster once, before the test files start in parallel: on a
 * fresh machine each of them would otherwise run initdb (10-20 s) at the same time.
 */
export default async function setup(): Promise<void> {
  const db = await createPgliteDatabase();
  await db.close();
}
