import { isAbsolute, resolve } from 'node:path';
import { openDatabase } from '../store/open.js';
import { createStore, type Store } from '../store/store.js';
import { MigrationError } from './errors.js';

/**
 * Where a home's store is, as a plan names it: a data folder (a standard server's embedded
 * store; reached through the server's socket when it runs), a postgresql:// URL (a pool),
 * or `$NAME`, an environment variable holding either, so a plan file carries no password.
 */
export type StoreLocation = string;

export interface ResolvedLocation {
  dataDir?: string;
  url?: string;
}

const URL_SCHEME = /^postgres(ql)?:\/\//i;

/** Turns a plan's location into openDatabase's options; relative folders are taken from baseDir. */
export function resolveLocation(
  home: string,
  location: StoreLocation,
  env: Record<string, string | undefined>,
  baseDir: string,
): ResolvedLocation {
  let value = location.trim();
  if (value.startsWith('$')) {
    const name = value.slice(1).replace(/^\{(.*)\}$/, '$1');
    const fromEnv = env[name];
    if (!fromEnv) {
      throw new MigrationError(
        'MIGRATION_STORE_MISSING',
        `the store of home ${home} is $${name}, which is not set in the environment`,
      );
    }
    value = fromEnv.trim();
  }
  if (value === '')
    throw new MigrationError('MIGRATION_STORE_MISSING', `home ${home} has an empty store location`);
  if (URL_SCHEME.test(value)) return { url: value };
  return { dataDir: isAbsolute(value) ? value : resolve(baseDir, value) };
}

/** A store of a home, opened (and migrated: the journal's tables must exist) for a migration. */
export interface HomeStore {
  home: string;
  store: Store;
  /** For messages: the folder, or "PostgreSQL" (a URL may carry a password). */
  describe: string;
}

export async function openHomeStore(home: string, where: ResolvedLocation): Promise<HomeStore> {
  const db = await openDatabase({
    ...where,
    maxConnections: 4,
    // A folder another admin command holds briefly: wait for it rather than fail.
    waitForFolderMs: 30_000,
  });
  return { home, store: createStore(db), describe: where.url ? `PostgreSQL (home ${home})` : where.dataDir! };
}

/** Opens several homes' stores; closes what was opened if one fails. */
export async function openHomeStores(homes: Map<string, ResolvedLocation>): Promise<Map<string, HomeStore>> {
  const opened = new Map<string, HomeStore>();
  try {
    for (const [home, where] of homes) opened.set(home, await openHomeStore(home, where));
    return opened;
  } catch (err) {
    await closeHomeStores(opened);
    throw err;
  }
}

export async function closeHomeStores(stores: Map<string, HomeStore>): Promise<void> {
  for (const s of stores.values()) await s.store.close().catch(() => undefined);
}
