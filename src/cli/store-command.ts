import type { Command } from '@oclif/core';
import type { ParleyConfig } from '../ops/config.js';
import { isConnectionLost } from '../store/sql.js';
import type { Store } from '../store/store.js';
import { setUserEnabled, type UserSummary } from '../users/admin.js';
import { CliError, toCommandError } from './errors.js';
import { domainScope, findStore, loadCliConfig, openCliStore, type StoreFlagValues } from './flags.js';

export interface StoreCommandOptions {
  /** Open a data folder that holds no store yet, creating it (`db restore`): default false. */
  create?: boolean;
  /**
   * The embedded store's buffer pool for this command (PostgreSQL syntax, e.g. `32MB`);
   * default PostgreSQL's 128MB. See OpenDatabaseOptions.sharedBuffers.
   */
  sharedBuffers?: string;
}

/** What a command that changed something adds to its --json result: the store it changed. */
export interface StoreNamed {
  /** The data folder, or the PostgreSQL URL without its password. */
  store: string;
}

/**
 * The frame of a store command: load the configuration, find the store (never creating
 * one), open it, run, close it whatever happens. Failures leave through the catalogue
 * (toCommandError), a connection lost while working included.
 */
export async function runWithStore<T>(
  command: Command,
  flags: StoreFlagValues,
  fn: (store: Store, config: ParleyConfig) => Promise<T>,
  opts: StoreCommandOptions = {},
): Promise<T> {
  return runWithPreparedStore(command, flags, async () => undefined, fn, opts);
}

/**
 * Like runWithStore, with a step before the store opens: prompts and input checks run
 * there, so an embedded data folder is not held open while a person types a password.
 */
export async function runWithPreparedStore<P, T>(
  _command: Command,
  flags: StoreFlagValues,
  prepare: (config: ParleyConfig) => Promise<P>,
  fn: (store: Store, config: ParleyConfig, prepared: P) => Promise<T>,
  opts: StoreCommandOptions = {},
): Promise<T> {
  let store: Store | undefined;
  let config: ParleyConfig | undefined;
  try {
    config = loadCliConfig(flags);
    if (!opts.create) findStore(config, flags);
    const prepared = await prepare(config);
    store = await openCliStore(config, { sharedBuffers: opts.sharedBuffers });
    return await fn(store, config, prepared);
  } catch (err) {
    // Commands that are not ParleyCommands (federation/) leave through the catalogue too.
    throw toCommandError(store && isConnectionLost(err) ? connectionLostError(err, config) : err);
  } finally {
    await store?.close().catch(() => undefined);
  }
}

/**
 * A command that changes the store: as runWithPreparedStore, then it names the store it
 * changed, on stderr for people and as `store` in the --json result, so an administrator
 * who ran it in the wrong folder sees so at once.
 */
export async function runChange<P, T extends object>(
  command: Command,
  flags: StoreFlagValues,
  prepare: (config: ParleyConfig) => Promise<P>,
  fn: (store: Store, config: ParleyConfig, prepared: P) => Promise<T>,
  opts: StoreCommandOptions = {},
): Promise<T & StoreNamed> {
  let where = '';
  const result = await runWithPreparedStore(
    command,
    flags,
    prepare,
    (store, config, prepared) => {
      const found = opts.create ? undefined : findStore(config, flags);
      where = found
        ? `${found.engine === 'embedded' ? 'embedded database in ' : ''}${found.location} (from ${found.foundBy})`
        : config.database.url
          ? 'PostgreSQL'
          : `embedded database in ${config.database.dataDir}`;
      return fn(store, config, prepared).then((r) => ({
        ...r,
        store: found?.location ?? config.database.dataDir,
      }));
    },
    opts,
  );
  if (!command.jsonEnabled()) command.logToStderr(`Store: ${where}`);
  return result;
}

/** No preparation step: for runChange callers with nothing to ask first. */
export const nothingToPrepare = async (): Promise<undefined> => undefined;

/**
 * The store went away while a command was working (its server killed or restarted): every
 * write of Parley's is a transaction, so what was committed stays and the rest was never
 * written; running the command again carries on from there.
 */
export function connectionLostError(err: unknown, config: ParleyConfig | undefined): CliError {
  const where = config?.database.url
    ? 'the PostgreSQL database'
    : `the database served from ${config?.database.dataDir ?? 'the data folder'}`;
  return new CliError(
    'DATABASE_UNAVAILABLE',
    `lost the connection to ${where} while working: ${(err as Error).message}`,
    'Check that the server or PostgreSQL is running again, then run the same command again: completed steps are kept, nothing half-written is.',
  );
}

/** `users enable` and `users disable`: one command body, the flag it sets being the difference. */
export async function runSetEnabled(
  command: Command,
  aor: string,
  flags: StoreFlagValues,
  enabled: boolean,
): Promise<UserSummary & { changed: boolean } & StoreNamed> {
  const user = await runChange(command, flags, nothingToPrepare, (store, config) =>
    setUserEnabled(store, { aor, domain: domainScope(config, flags), enabled }),
  );
  const word = enabled ? 'enabled' : 'disabled';
  command.log(
    user.changed
      ? `${word[0].toUpperCase()}${word.slice(1)} ${user.aor}.`
      : `${user.aor} was already ${word}.`,
  );
  return user;
}
