import { ensureStoreTemplate, removeStaleStoreTemplates } from './database.js';

/**
 * Runs once before the test files start in parallel. ensureStoreTemplate makes the migrated
 * store template (see database.ts) and, on a fresh machine, the cached empty PGlite cluster
 * it starts from: otherwise each file would run initdb (10-20 s) at the same time. At the
 * end, templates of other migration sets that no run uses any more go (database.ts).
 */
export default async function setup(): Promise<() => void> {
  await ensureStoreTemplate();
  return () => {
    removeStaleStoreTemplates();
  };
}
