import type { Command } from '@oclif/core';
import type { ParleyConfig } from '../ops/config.js';
import { isConnectionLost } from '../store/sql.js';
import type { Store } from '../store/store.js';
import { setUserEnabled, type UserSummary } from '../users/admin.js';
import { CliError, fromCatalogued } from './errors.js';
import { loadCliConfig, openCliStore, type StoreFlagValues } from './flags.js';

/**
 * The frame of a store command: load the configuration, open the store, run, close it
 * whatever happens, and turn catalogued failures (CliError) into oclif errors carrying
 * their code, exit status and suggestion.
 */
export async function runWithStore<T>(
  command: Command,
  flags: StoreFlagValues,
  fn: (store: Store, config: ParleyConfig) => Promise<T>,
): Promise<T> {
  return runWithPreparedStore(
    command,
    flags,
    async () => undefined,
    (store, config) => fn(store, config),
  );
}

/**
 * Like runWithStore, with a step before the store opens: prompts and input checks run
 * there, so an embedded data folder is not held open while a person types a password.
 */
export async function runWithPreparedStore<P, T>(
  command: Command,
  flags: StoreFlagValues,
  prepare: (config: ParleyConfig) => Promise<P>,
  fn: (store: Store, config: ParleyConfig, prepared: P) => Promise<T>,
): Promise<T> {
  let store: Store | undefined;
  let config: ParleyConfig | undefined;
  try {
    config = loadCliConfig(flags);
    const prepared = await prepare(config);
    store = await openCliStore(config);
    return await fn(store, config, prepared);
  } catch (err) {
    if (err instanceof CliError) failCommand(command, err);
    const catalogued = fromCatalogued(err);
    if (catalogued) failCommand(command, catalogued);
    if (store && isConnectionLost(err)) failCommand(command, connectionLostError(err, config));
    throw err;
  } finally {
    await store?.close().catch(() => undefined);
  }
}

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

/**
 * command.error() for a catalogued failure. oclif takes the exit status of a --json run
 * from `exitCode` on the error (Command.catch) but of a human run from `oclif.exit`: set both.
 */
export function failCommand(command: Command, err: CliError): never {
  try {
    command.error(err.message, err.toErrorOptions());
  } catch (thrown) {
    (thrown as { exitCode?: number }).exitCode = err.exit;
    throw thrown;
  }
}

/** `users enable` and `users disable`: one command body, the flag it sets being the difference. */
export async function runSetEnabled(
  command: Command,
  aor: string,
  flags: StoreFlagValues,
  enabled: boolean,
): Promise<UserSummary & { changed: boolean }> {
  const user = await runWithStore(command, flags, (store, config) =>
    setUserEnabled(store, { aor, domain: config.domain, enabled }),
  );
  const word = enabled ? 'enabled' : 'disabled';
  command.log(
    user.changed
      ? `${word[0].toUpperCase()}${word.slice(1)} ${user.aor}.`
      : `${user.aor} was already ${word}.`,
  );
  return user;
}
