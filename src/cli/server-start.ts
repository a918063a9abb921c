import { relative, resolve } from 'node:path';
import { pino } from 'pino';
import {
  ConfigError,
  DEFAULT_CONFIG_FILE,
  type DeepPartial,
  type LogFormat,
  type LogLevel,
  type ParleyConfig,
  type ServerRole,
} from '../ops/config.js';
import { createLogger, type Logger } from '../ops/log.js';
import { readEmbeddedOwner } from '../store/embedded.js';
import { DataFolderInUseError, embeddedStoreExists } from '../store/open.js';
import { clusterTemplateCached } from '../store/pglite.js';
import { CliError } from './errors.js';
import { asCliConfigError, hostPortFlag, loadCliConfig } from './flags.js';

/** The flags of `parley server start` that shape its configuration. */
export interface ServerStartFlags {
  config?: string;
  role?: string;
  domain?: string;
  'server-id'?: string;
  home?: string;
  'data-dir'?: string;
  database?: string;
  udp?: string;
  tcp?: string;
  tls?: string;
  ws?: string;
  wss?: string;
  internal?: string;
  federation?: string;
  next?: string;
  http?: string;
  'log-level'?: string;
  'log-format'?: string;
  'semi-space-mb'?: number;
}

/**
 * The flag -> config path every command shares (loadCliConfig), with the server's own
 * flags on top: the role, identity, listeners and logs. A flag's --domain replaces the
 * file's domains here: a server is started for the domain it is told.
 */
export function loadServerConfig(flags: ServerStartFlags): ParleyConfig {
  const o: DeepPartial<ParleyConfig> = {};
  if (flags.role) o.role = flags.role as ServerRole;
  if (flags.domain) o.domain = flags.domain;
  if (flags['server-id']) o.serverId = flags['server-id'];
  if (flags.home) o.home = flags.home;
  // `none` turns a listener off, as in `parley init` (false: the key is set, to nothing).
  const listener = (value: string | undefined, flag: string) =>
    value?.toLowerCase() === 'none' ? (false as never) : hostPortFlag(value, flag);
  const listen = {
    udp: listener(flags.udp, '--udp'),
    tcp: listener(flags.tcp, '--tcp'),
    tls: listener(flags.tls, '--tls'),
    ws: listener(flags.ws, '--ws'),
    wss: listener(flags.wss, '--wss'),
    internal: listener(flags.internal, '--internal'),
    federation: listener(flags.federation, '--federation'),
  };
  if (Object.values(listen).some((v) => v !== undefined)) o.listen = listen;
  if (flags.next) o.edge = { next: flags.next };
  const http = hostPortFlag(flags.http, '--http');
  if (http) o.http = http;
  if (flags['log-level'] || flags['log-format']) {
    o.log = {};
    if (flags['log-level']) o.log.level = flags['log-level'] as LogLevel;
    if (flags['log-format']) o.log.format = flags['log-format'] as LogFormat;
  }
  if (flags['semi-space-mb'] !== undefined) o.server = { semiSpaceMb: flags['semi-space-mb'] };
  return loadCliConfig(
    { config: flags.config, 'data-dir': flags['data-dir'], database: flags.database },
    { overrides: o },
  );
}

/**
 * Checks before anything opens: a second server on a data folder another one serves
 * stops here, with the way out, rather than deep in the store.
 */
export function checkDataFolder(config: ParleyConfig): void {
  if (config.database.url) return;
  const owner = readEmbeddedOwner(resolve(config.database.dataDir));
  if (owner?.url) {
    throw new CliError(
      'SERVER_ALREADY_RUNNING',
      `another Parley server (process ${owner.pid}) already runs on the data folder ${config.database.dataDir}`,
    );
  }
}

/** The line a first start prints before PGlite makes a new cluster, or undefined. */
export function firstStartNotice(config: ParleyConfig): string | undefined {
  if (config.database.url || embeddedStoreExists(config.database.dataDir)) return undefined;
  const wait = clusterTemplateCached() ? 'a few seconds' : '10 to 20 seconds, once per machine';
  return `Creating the embedded database in ${config.database.dataDir} (first start; takes ${wait})...`;
}

/** A failure of startServer as the catalogue knows it. */
export function startFailure(err: unknown, config: ParleyConfig): unknown {
  if (err instanceof CliError) return err;
  if (err instanceof ConfigError) return asCliConfigError(err);
  if (err instanceof DataFolderInUseError) return new CliError('DATA_FOLDER_IN_USE', err.message);
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const message = err instanceof Error ? err.message : String(err);
  if (e?.code === 'EADDRINUSE' || /EADDRINUSE/.test(message)) {
    const where = e.port !== undefined ? `${e.address ?? '0.0.0.0'}:${e.port}` : message;
    return new CliError('ADDRESS_IN_USE', `cannot listen on ${where}: the address is in use`);
  }
  if (/already runs on the data folder/.test(message)) {
    return new CliError('SERVER_ALREADY_RUNNING', message);
  }
  return new CliError('START_FAILED', `could not start the ${config.role} server: ${message}`);
}

/**
 * The server's logger: with --json, stdout carries only the command's result, so log lines
 * go to stderr (as JSON).
 */
export function serverLogger(config: ParleyConfig, json: boolean): Logger | undefined {
  if (!json) return undefined;
  return createLogger(
    { ...config, log: { level: config.log.level, format: 'json' } },
    { destination: pino.destination({ dest: 2, sync: false }) },
  );
}

/** `-c FILE` when the configuration is not ./parley.yaml, so the hints printed run as shown. */
export function configHint(config: ParleyConfig, cwd = process.cwd()): string {
  if (!config.file || config.file === resolve(cwd, DEFAULT_CONFIG_FILE)) return '';
  const rel = relative(cwd, config.file);
  return ` -c ${rel && !rel.startsWith('..') ? rel : config.file}`;
}

/** What a person reads when the server is up (stderr, apart from the log lines). */
export function bannerLines(
  config: ParleyConfig,
  listening: string[],
  httpUrl: string,
  startedInMs: number,
): string[] {
  const c = configHint(config);
  const lines = [
    `Parley ${config.role} server for ${config.domains.join(', ')} is up (${(startedInMs / 1000).toFixed(1)} s)`,
    ...listening.map((l) => `  SIP   ${l}`),
    `  HTTP  ${httpUrl}/metrics  ${httpUrl}/health`,
    `  store ${config.database.url ? 'PostgreSQL' : config.database.dataDir}`,
  ];
  if (config.role === 'standard' || config.role === 'frontend') {
    lines.push(`Add a user (another terminal): parley users add alice@${config.domain}${c}`);
  }
  lines.push('Stop with Ctrl-C (SIGTERM): clients are told to come back, then the store is closed.');
  return lines;
}
