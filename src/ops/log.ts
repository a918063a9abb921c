import { type DestinationStream, type Logger, pino } from 'pino';
import type { ParleyConfig } from './config.js';

export type { Logger } from 'pino';

/** Components name their child loggers from this list so log queries can rely on them. */
export type LogComponent =
  | 'transport'
  | 'transaction'
  | 'proxy'
  | 'registrar'
  | 'presence'
  | 'im'
  | 'director'
  | 'edge'
  | 'federation'
  | 'store'
  | 'directory'
  | 'migration'
  | 'ops'
  | (string & {});

/**
 * Secrets never reach a log line: digest credentials (Authorization, Proxy-Authorization
 * carry a response hash an attacker can brute-force offline), passwords and stored HA1s.
 * Paths cover the field at the top level and one or two objects deep (`req.headers.x`).
 */
export const REDACTED_FIELDS = [
  'authorization',
  'Authorization',
  'proxyAuthorization',
  'proxy-authorization',
  'Proxy-Authorization',
  'password',
  'ha1',
  'ha1Md5',
  'ha1Sha256',
  'ha1_md5',
  'ha1_sha256',
  'bindPassword',
] as const;

export const REDACT_PATHS: string[] = REDACTED_FIELDS.flatMap((field) => {
  const key = /^[A-Za-z_$][\w$]*$/.test(field) ? field : `["${field}"]`;
  const sep = key.startsWith('[') ? '' : '.';
  return [key, `*${sep}${key}`, `*.*${sep}${key}`];
});

export interface CreateLoggerOptions {
  /** Where lines go; defaults to stdout. Tests pass a stream to read lines back. */
  destination?: DestinationStream;
}

/** The server's root logger: JSON lines, with server id and role on every line. */
export function createLogger(
  cfg: Pick<ParleyConfig, 'log'> & Partial<Pick<ParleyConfig, 'serverId' | 'role'>>,
  opts: CreateLoggerOptions = {},
): Logger {
  const base: Record<string, string> = {};
  if (cfg.serverId) base.server = cfg.serverId;
  if (cfg.role) base.role = cfg.role;
  return pino(
    {
      level: cfg.log.level,
      base,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A child logger tagged with the component, e.g. `componentLogger(log, 'registrar')`. */
export function componentLogger(
  parent: Logger,
  component: LogComponent,
  bindings: Record<string, unknown> = {},
): Logger {
  return parent.child({ component, ...bindings });
}

/** A logger that drops everything, for library code used without a server (and in tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
