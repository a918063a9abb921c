import { type DestinationStream, type Logger, pino } from 'pino';
import { hostReference } from '../sip/host.js';
import type { SipMessage } from '../sip/message.js';
import type { Flow } from '../transport/flow.js';
import type { LogFormat, LogLevel, ParleyConfig } from './config.js';

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
  destination?: DestinationStream | NodeJS.WritableStream;
  /** Colours in pretty lines; default: stdout is a terminal. */
  colour?: boolean;
}

type LoggerConfig = { log: { level: LogLevel; format?: LogFormat } } & Partial<
  Pick<ParleyConfig, 'serverId' | 'role'>
>;

/**
 * The server's root logger, with server id and role on every line. `log.format` picks the
 * lines: `json` (one object a line, for collectors), `pretty` (time, level, component and
 * message, then the other fields as key=value, for people), `auto` pretty on a terminal and
 * JSON otherwise (a pipe, a file, journald).
 */
export function createLogger(cfg: LoggerConfig, opts: CreateLoggerOptions = {}): Logger {
  const base: Record<string, string> = {};
  if (cfg.serverId) base.server = cfg.serverId;
  if (cfg.role) base.role = cfg.role;
  const format = cfg.log.format ?? 'auto';
  const pretty =
    format === 'pretty' || (format === 'auto' && !opts.destination && process.stdout.isTTY === true);
  const out = opts.destination ?? (pretty ? process.stdout : pino.destination({ dest: 1, sync: false }));
  return pino(
    {
      level: cfg.log.level,
      base,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pretty
      ? prettyDestination(out as NodeJS.WritableStream, opts.colour ?? process.stdout.isTTY === true)
      : (out as DestinationStream),
  );
}

/** Fields every line has, shown in the line's head or not at all in pretty output. */
const HEAD_FIELDS = new Set(['time', 'level', 'msg', 'server', 'role', 'component', 'pid', 'hostname']);

const LEVEL_COLOURS: Record<string, string> = {
  fatal: '\x1b[41m',
  error: '\x1b[31m',
  warn: '\x1b[33m',
  info: '\x1b[32m',
  debug: '\x1b[36m',
  trace: '\x1b[90m',
};

/**
 * One JSON log line as a person reads it: `12:00:01.234 INFO  registrar: registered
 * aor=alice@example.com expires=3600`, an error's stack indented below. Lines that are not
 * JSON pass through.
 */
export function formatPrettyLine(line: string, colour = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const time = typeof o.time === 'string' ? o.time.slice(11, 23) : '';
  const level = String(o.level ?? '');
  const levelText = level.toUpperCase().padEnd(5);
  const head = colour ? `${LEVEL_COLOURS[level] ?? ''}${levelText}\x1b[0m` : levelText;
  const component = typeof o.component === 'string' ? `${o.component}: ` : '';
  const fields: string[] = [];
  let stack = '';
  for (const [k, v] of Object.entries(o)) {
    if (HEAD_FIELDS.has(k)) continue;
    if (k === 'err' && v && typeof v === 'object') {
      const e = v as { message?: unknown; stack?: unknown; code?: unknown };
      fields.push(`err=${JSON.stringify(String(e.message ?? ''))}`);
      // A system error (EADDRINUSE, ECONNREFUSED ...) says all in its message; a bug needs its stack.
      if (typeof e.stack === 'string' && typeof e.code !== 'string')
        stack = `\n    ${e.stack.split('\n').slice(1).join('\n    ').trim()}`;
      continue;
    }
    fields.push(`${k}=${typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)}`);
  }
  const rest = fields.length > 0 ? ` ${fields.join(' ')}` : '';
  return `${time} ${head} ${component}${String(o.msg ?? '')}${rest}${stack}\n`;
}

function prettyDestination(out: NodeJS.WritableStream, colour: boolean): DestinationStream {
  return {
    write(chunk: string) {
      for (const line of chunk.split('\n')) if (line) out.write(formatPrettyLine(line, colour));
    },
  };
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

/**
 * The debug line of one SIP message in or out (docs/logging.md): who, what and where, never
 * a credential or a body. Callers check `sipTraceEnabled` first, so at info and above a
 * message costs one level comparison.
 */
export function sipTraceFields(message: SipMessage, flow: Flow, dir: 'in' | 'out'): Record<string, unknown> {
  const fields: Record<string, unknown> = { event: 'sip', dir };
  if (message.isRequest) fields.method = message.method;
  else {
    fields.status = message.status;
    fields.method = message.cseq.method;
  }
  fields.callId = message.callId;
  fields.cseq = message.cseq.seq;
  fields.from = message.from.uri;
  fields.to = message.to.uri;
  if (message.isRequest) fields.uri = message.uri;
  fields.transport = flow.transport;
  fields.address = `${hostReference(flow.remoteAddress)}:${flow.remotePort}`;
  fields.bodyBytes = message.body.length;
  return fields;
}

/** Whether per-message debug lines are wanted: pino's numeric level, debug being 20. */
export function sipTraceEnabled(log: Logger): boolean {
  return log.levelVal <= 20;
}
