import { relative, resolve } from 'node:path';
import { Args, Flags } from '@oclif/core';
import {
  ConfigError,
  DEFAULT_CONFIG_FILE,
  DEFAULT_DATA_DIR,
  type DeepPartial,
  LOG_FORMATS,
  LOG_LEVELS,
  loadConfig,
  type ParleyConfig,
  parseHostPort,
  redactDatabaseUrl,
} from '../ops/config.js';
import { DataFolderInUseError, embeddedStoreExists, openDatabase } from '../store/open.js';
import { isConnectionLost } from '../store/sql.js';
import { createStore, type Store } from '../store/store.js';
import type { DomainScope } from '../users/admin.js';
import { CliError } from './errors.js';

/**
 * Flags every command that touches the store shares. The store is found the way an
 * administrator expects (findStore below): --config, PARLEY_CONFIG, ./parley.yaml, then an
 * existing ./.parley; flags win over the file.
 */
export const storeFlags = {
  config: Flags.string({
    char: 'c',
    summary: 'parley.yaml of the deployment (default $PARLEY_CONFIG, else ./parley.yaml).',
  }),
  'data-dir': Flags.string({
    summary: 'Folder of the embedded database (default from parley.yaml, else an existing ./.parley).',
  }),
  database: Flags.string({
    summary: 'PostgreSQL URL of a pool store; without it the embedded database in the data folder is used.',
    env: 'PARLEY_DATABASE_URL',
  }),
};

export const domainFlag = {
  domain: Flags.string({
    summary: "Domain of a bare user name (default the first of the deployment's domains).",
  }),
};

/** The user a `users` command acts on: its one argument. */
export const userArgs = {
  aor: Args.string({ required: true, description: 'User address (alice or alice@DOMAIN).' }),
};

/** `--force` of the user commands that write: a user in a domain the deployment does not serve. */
export const forceDomainFlag = {
  force: Flags.boolean({
    summary: 'Accept an address in a domain this deployment does not serve (it cannot sign in).',
  }),
};

/**
 * Listen flags `parley init` and `parley server start` share (host:port; `none` turns a
 * listener off in init).
 */
export const listenFlags = {
  udp: Flags.string({ summary: 'SIP over UDP listen address host:port, or none.' }),
  tcp: Flags.string({ summary: 'SIP over TCP listen address host:port, or none.' }),
  tls: Flags.string({ summary: 'SIP over TLS listen address host:port, or none (needs a certificate).' }),
  ws: Flags.string({ summary: 'SIP over WebSocket listen address host:port, or none.' }),
  wss: Flags.string({
    summary: 'SIP over secure WebSocket listen address host:port, or none (needs a certificate).',
  }),
  http: Flags.string({ summary: 'Metrics and health listen address host:port.' }),
};

export const logFlags = {
  'log-level': Flags.string({ summary: 'Log level.', options: [...LOG_LEVELS] }),
  'log-format': Flags.string({
    summary: 'Log lines: pretty on a terminal and json otherwise (auto), or forced.',
    options: [...LOG_FORMATS],
  }),
};

export interface StoreFlagValues {
  config?: string;
  'data-dir'?: string;
  database?: string;
  domain?: string;
  force?: boolean;
}

export interface CliConfigOptions {
  /** Flag values beyond the store flags (server start: role, listen addresses, logs ...). */
  overrides?: DeepPartial<ParleyConfig>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * Loads parley.yaml with the flags on top. --domain replaces the domain only when there is
 * no file: with one, it picks among the deployment's domains (domainScope). Problems in the
 * file are CONFIG_INVALID (every one of them), in a flag INVALID_FLAG, a named file that is
 * missing CONFIG_NOT_FOUND.
 */
export function loadCliConfig(flags: StoreFlagValues, opts: CliConfigOptions = {}): ParleyConfig {
  const env = opts.env ?? process.env;
  const overrides: DeepPartial<ParleyConfig> = { ...opts.overrides };
  if (flags['data-dir'] || flags.database) {
    overrides.database = { ...overrides.database };
    if (flags['data-dir']) overrides.database.dataDir = flags['data-dir'];
    if (flags.database) overrides.database.url = flags.database;
  }
  const load = (o: DeepPartial<ParleyConfig>) => {
    try {
      return loadConfig({ configPath: flags.config, overrides: o, env, cwd: opts.cwd });
    } catch (err) {
      throw asCliConfigError(err);
    }
  };
  const config = load(overrides);
  if (flags.domain && !config.file) return load({ ...overrides, domain: flags.domain });
  return config;
}

export function asCliConfigError(err: unknown): unknown {
  if (!(err instanceof ConfigError)) return err;
  if (err.problem.startsWith('config file not found')) return new CliError('CONFIG_NOT_FOUND', err.message);
  if (err.problems.every((p) => p.file === 'flags')) return new CliError('INVALID_FLAG', err.message);
  return new CliError('CONFIG_INVALID', err.message);
}

/** Parses a host:port flag, naming the flag when it is wrong. */
export function hostPortFlag(value: string | undefined, flag: string) {
  if (value === undefined) return undefined;
  try {
    return parseHostPort(value, flag, 'flags');
  } catch (err) {
    throw asCliConfigError(err);
  }
}

/** The domains a user command works in: the deployment's, --domain for bare names, --force. */
export function domainScope(config: ParleyConfig, flags: StoreFlagValues): DomainScope {
  return {
    domains: config.domains,
    defaultDomain: flags.domain?.toLowerCase(),
    force: flags.force,
  };
}

/** Where a command's store is and how it was found, for the line naming it. */
export interface StoreLocation {
  engine: 'embedded' | 'postgres';
  /** Absolute data folder, or the URL without its password. */
  location: string;
  /** What pointed at it: `--data-dir`, `--database`, `PARLEY_DATABASE_URL`, the config file, `./.parley`. */
  foundBy: string;
}

/**
 * Finds the store of the deployment a command runs for, never inventing one (only `server
 * start`, `init` and `db migrate` create stores): a PostgreSQL URL, or a data folder named by
 * --data-dir or a config file, or an existing ./.parley. A data folder that holds no store
 * yet is STORE_NOT_CREATED; no deployment at all is STORE_NOT_FOUND, with the ways to
 * point at one.
 */
export function findStore(
  config: ParleyConfig,
  flags: StoreFlagValues,
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): StoreLocation {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const location = describeStore(config);
  if (config.database.url) {
    const foundBy = flags.database
      ? flags.database === env.PARLEY_DATABASE_URL
        ? 'PARLEY_DATABASE_URL'
        : '--database'
      : config.file
        ? shownPath(config.file, cwd)
        : 'PARLEY_DATABASE_URL';
    return { engine: 'postgres', location, foundBy };
  }
  let dataDir = config.database.dataDir;
  let foundBy: string;
  if (flags['data-dir']) foundBy = '--data-dir';
  else if (config.file) foundBy = shownPath(config.file, cwd);
  else if (embeddedStoreExists(resolve(cwd, DEFAULT_DATA_DIR))) {
    foundBy = DEFAULT_DATA_DIR;
    dataDir = resolve(cwd, DEFAULT_DATA_DIR);
  } else {
    throw new CliError(
      'STORE_NOT_FOUND',
      `no Parley deployment here: ${cwd} has no ${DEFAULT_CONFIG_FILE} and no ${DEFAULT_DATA_DIR} data folder, and PARLEY_CONFIG is not set`,
    );
  }
  if (!embeddedStoreExists(dataDir)) {
    throw new CliError(
      'STORE_NOT_CREATED',
      `the data folder ${dataDir} (from ${foundBy}) holds no Parley store yet`,
    );
  }
  return { engine: 'embedded', location: dataDir, foundBy };
}

/** The store a configuration names, fit for output (a URL's password hidden). */
export function describeStore(config: ParleyConfig): string {
  return config.database.url ? redactDatabaseUrl(config.database.url) : config.database.dataDir;
}

function shownPath(file: string, cwd: string): string {
  const rel = relative(cwd, file);
  return rel && !rel.startsWith('..') ? `./${rel}` : file;
}

/**
 * Opens the store the configuration names, migrated. On a data folder a running server
 * owns, this connects through the server's socket (see src/store/embedded.ts).
 */
export async function openCliStore(
  config: ParleyConfig,
  opts: { migrate?: boolean; sharedBuffers?: string } = {},
): Promise<Store> {
  try {
    const db = await openDatabase({
      dataDir: config.database.dataDir,
      url: config.database.url,
      migrate: opts.migrate ?? true,
      sharedBuffers: opts.sharedBuffers,
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
  const where = config.database.url
    ? 'the PostgreSQL database'
    : `the database served from ${config.database.dataDir}`;
  if (
    code === 'ECONNREFUSED' ||
    code === 'ENOENT' ||
    code === 'ENOTFOUND' ||
    code === 'ETIMEDOUT' ||
    code === '3D000' ||
    code === '28P01' ||
    code === '28000'
  ) {
    // Never echo the URL: it may carry a password.
    return new CliError('DATABASE_UNAVAILABLE', `cannot connect to ${where}: ${(err as Error).message}`);
  }
  // Connected, then lost while the store was being opened (its migration check): the
  // database went away as under a running command, and is as unavailable.
  if (isConnectionLost(err)) {
    return new CliError(
      'DATABASE_UNAVAILABLE',
      `lost the connection to ${where} while opening it: ${(err as Error).message}`,
    );
  }
  return err;
}
