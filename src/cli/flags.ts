import { Flags } from '@oclif/core';
import { ConfigError, type DeepPartial, loadConfig, type ParleyConfig } from '../ops/config.js';
import { DataFolderInUseError, openDatabase } from '../store/open.js';
import { createStore, type Store } from '../store/store.js';
import { CliError } from './errors.js';

/**
 * Flags every command that touches the store shares. Defaults come from parley.yaml
 * (src/ops/config.ts): flags win over the file, the file over built-in defaults
 * (domain parley.local, data folder ./.parley).
 */
export const storeFlags = {
  config: Flags.string({ char: 'c', summary: 'parley.yaml to read (default ./parley.yaml when present).' }),
  'data-dir': Flags.string({
    summary: 'Folder of the embedded database (default from parley.yaml, else ./.parley).',
  }),
  database: Flags.string({
    summary: 'PostgreSQL URL of a pool store; without it the embedded database in the data folder is used.',
    env: 'PARLEY_DATABASE_URL',
  }),
};

export const domainFlag = {
  domain: Flags.string({
    summary: 'SIP domain and digest realm (default from parley.yaml, else parley.local).',
  }),
};

export interface StoreFlagValues {
  config?: string;
  'data-dir'?: string;
  database?: string;
  domain?: string;
}

/** Loads parley.yaml with the flags on top; configuration problems become CONFIG_INVALID. */
export function loadCliConfig(flags: StoreFlagValues): ParleyConfig {
  const overrides: DeepPartial<ParleyConfig> = {};
  if (flags.domain) overrides.domain = flags.domain;
  if (flags['data-dir'] || flags.database) {
    overrides.database = {};
    if (flags['data-dir']) overrides.database.dataDir = flags['data-dir'];
    if (flags.database) overrides.database.url = flags.database;
  }
  try {
    return loadConfig({ configPath: flags.config, overrides });
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError('CONFIG_INVALID', err.message);
    throw err;
  }
}

/**
 * Opens the store the configuration names, migrated. On a data folder a running server
 * owns, this connects through the server's socket (see src/store/embedded.ts).
 */
export async function openCliStore(config: ParleyConfig, opts: { migrate?: boolean } = {}): Promise<Store> {
  try {
    const db = await openDatabase({
      dataDir: config.database.dataDir,
      url: config.database.url,
      migrate: opts.migrate ?? true,
      maxConnections: 2,
      // Two admin commands started together on a folder no server owns: the second waits its turn.
      waitForFolderMs: 30_000,
    });
    return createStore(db);
  } catch (err) {
    throw storeOpenError(err, config);
  }
}

export function storeOpenError(err: unknown, config: ParleyConfig): unknown {
  if (err instanceof DataFolderInUseError) return new CliError('DATA_FOLDER_IN_USE', err.message);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (
    code === 'ECONNREFUSED' ||
    code === 'ENOENT' ||
    code === 'ENOTFOUND' ||
    code === 'ETIMEDOUT' ||
    code === '3D000' ||
    code === '28P01' ||
    code === '28000'
  ) {
    const where = config.database.url
      ? 'the PostgreSQL database'
      : `the database served from ${config.database.dataDir}`;
    // Never echo the URL: it may carry a password.
    return new CliError('DATABASE_UNAVAILABLE', `cannot connect to ${where}: ${(err as Error).message}`);
  }
  return err;
}
