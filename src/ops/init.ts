import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { embeddedStoreExists } from '../store/open.js';
import {
  ConfigError,
  DEFAULT_DATA_DIR,
  DEFAULT_DOMAIN,
  DEFAULT_HTTP,
  type DeepPartial,
  formatHostPort,
  type HostPort,
  loadConfig,
  type ParleyConfig,
  parseHostPort,
  SERVER_ROLES,
  type ServerRole,
  writeConfig,
} from './config.js';

/**
 * `parley init`: asks the questions a first deployment needs and writes parley.yaml.
 * Every answer has a flag; without a prompter (no TTY, or --yes) defaults apply and a
 * missing required answer fails naming its flag. The written file is validated by
 * loading it before it replaces anything.
 */
export interface InitAnswers {
  domain: string;
  role: ServerRole;
  /** Pool name for a frontend (the home it serves); others default to the domain or none. */
  home?: string;
  highSecurity: boolean;
  /** host:port, or 'none' / '' for no listener. */
  udp: string;
  tcp: string;
  tls: string;
  ws: string;
  wss: string;
  /** Operations endpoint (/metrics, /health), host:port. */
  http: string;
  /** Data folder; the default is `./.parley` beside the written file. */
  dataDir: string;
  /** PostgreSQL URL; '' for the embedded store. */
  databaseUrl: string;
  tlsCert: string;
  tlsKey: string;
  tlsCa: string;
}

/** The flag that sets each answer, for error messages. */
export const INIT_FLAGS: Record<keyof InitAnswers, string> = {
  domain: '--domain',
  role: '--role',
  home: '--home',
  highSecurity: '--high-security',
  udp: '--udp',
  tcp: '--tcp',
  tls: '--tls',
  ws: '--ws',
  wss: '--wss',
  http: '--http',
  dataDir: '--data-dir',
  databaseUrl: '--database',
  tlsCert: '--tls-cert',
  tlsKey: '--tls-key',
  tlsCa: '--tls-ca',
};

/** The subset of @inquirer/prompts init uses, injected so tests answer without a terminal. */
export interface InitPrompter {
  input(q: {
    message: string;
    default?: string;
    validate?: (value: string) => boolean | string;
  }): Promise<string>;
  select<T extends string>(q: {
    message: string;
    choices: Array<{ name: string; value: T }>;
    default?: T;
  }): Promise<T>;
  confirm(q: { message: string; default?: boolean }): Promise<boolean>;
}

export interface InitOptions {
  /** File to write (relative to cwd). */
  path: string;
  given?: Partial<InitAnswers>;
  force?: boolean;
  /** Absent: never prompt. */
  prompter?: InitPrompter;
  cwd?: string;
}

export interface InitResult {
  path: string;
  answers: InitAnswers;
  config: ParleyConfig;
}

/** A failure of init; the code is a key of the CLI catalogue (src/cli/errors.ts). */
export class InitError extends Error {
  constructor(
    message: string,
    readonly code: 'CONFIG_EXISTS' | 'MISSING_ANSWER' | 'CONFIG_INVALID' | 'DATA_FOLDER_TAKEN',
    readonly suggestion: string,
  ) {
    super(message);
    this.name = 'InitError';
  }
}

const NONE = 'none';

export async function runInit(opts: InitOptions): Promise<InitResult> {
  const cwd = opts.cwd ?? process.cwd();
  const path = resolve(cwd, opts.path);
  if (existsSync(path) && !opts.force) {
    throw new InitError(
      `${opts.path} already exists`,
      'CONFIG_EXISTS',
      'pass --force to overwrite it, or --config to write elsewhere',
    );
  }
  const answers = await collectAnswers(opts.given ?? {}, cwd, opts.prompter);

  // Answers are relative to where init runs; the default data folder sits beside the file.
  const fixPath = (p: string) => pathFromConfig(p, cwd, dirname(path));
  const dataDirGiven = opts.given?.dataDir !== undefined || answers.dataDir !== DEFAULT_DATA_DIR;
  const cfg = toConfig(answers, fixPath, dataDirGiven ? fixPath(answers.dataDir) : DEFAULT_DATA_DIR);
  if (!answers.databaseUrl)
    checkDataFolderFree(resolve(dirname(path), cfg.database?.dataDir ?? DEFAULT_DATA_DIR), path);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.init-${process.pid}`);
  writeConfig(tmp, cfg);
  let config: ParleyConfig;
  try {
    config = loadConfig({ configPath: tmp, env: {} });
  } catch (err) {
    rmSync(tmp, { force: true });
    if (err instanceof ConfigError) {
      const flag = flagForKey(err.key);
      throw new InitError(
        `${opts.path}: ${err.key ? `${err.key}: ` : ''}${err.problem}`,
        'CONFIG_INVALID',
        flag ? `check the value given for ${flag}` : 'check the answers given',
      );
    }
    throw err;
  }
  renameSync(tmp, path);
  config.file = path;
  return { path, answers, config };
}

async function collectAnswers(
  given: Partial<InitAnswers>,
  cwd: string,
  prompter?: InitPrompter,
): Promise<InitAnswers> {
  const ask = new Asker(given, prompter);

  const domain = await ask.text('domain', 'SIP domain (also the digest realm)', DEFAULT_DOMAIN, (v) =>
    validHost(v) ? true : 'enter a DNS domain such as example.com',
  );
  const role = await ask.choice('role', 'Server role', SERVER_ROLES, 'standard', {
    standard: 'standard: all-in-one home server on the embedded store',
    frontend: 'frontend: member of a pool on shared PostgreSQL',
    director: "director: redirects sign-ins to users' homes",
    edge: 'edge: TLS access proxy for remote users and federation',
  });
  let home: string | undefined = given.home;
  if (role === 'frontend')
    home = await ask.text('home', 'Pool name (the home this front-end serves)', 'pool1');

  const highSecurity = await ask.yesNo('highSecurity', 'High-security mode (TLS/WSS only)?', role === 'edge');
  const secureOnly = highSecurity || role === 'edge';
  const listenCheck = (key: string) => (v: string) => validListen(v, key);
  const udp = await ask.text(
    'udp',
    'UDP listen address (host:port, or none)',
    secureOnly ? NONE : '0.0.0.0:5060',
    listenCheck('udp'),
  );
  const tcp = await ask.text(
    'tcp',
    'TCP listen address (host:port, or none)',
    secureOnly ? NONE : '0.0.0.0:5060',
    listenCheck('tcp'),
  );
  const tls = await ask.text(
    'tls',
    'TLS listen address (host:port, or none)',
    secureOnly ? '0.0.0.0:5061' : NONE,
    listenCheck('tls'),
  );
  const ws = await ask.text(
    'ws',
    'WebSocket listen address (host:port, or none)',
    secureOnly ? NONE : '0.0.0.0:5066',
    listenCheck('ws'),
  );
  const wss = await ask.text(
    'wss',
    'Secure WebSocket listen address (host:port, or none)',
    NONE,
    listenCheck('wss'),
  );

  const urlCheck = (v: string) => v === '' || /^postgres(?:ql)?:\/\//.test(v) || 'enter a postgres:// URL';
  let databaseUrl: string;
  if (role === 'frontend') {
    databaseUrl = await ask.text('databaseUrl', 'PostgreSQL URL shared by the pool', undefined, (v) =>
      v !== '' && urlCheck(v) === true ? true : 'a frontend needs a postgres:// URL',
    );
  } else if (role === 'standard') {
    databaseUrl = given.databaseUrl ?? '';
  } else {
    databaseUrl = await ask.text(
      'databaseUrl',
      'PostgreSQL URL (empty for the embedded store)',
      '',
      urlCheck,
    );
  }
  const http = await ask.text(
    'http',
    'Metrics and health address (host:port; keep it on 127.0.0.1 unless a monitor elsewhere reads it)',
    formatHostPort(DEFAULT_HTTP),
    (v) => (isNone(v) ? 'the operations endpoint cannot be turned off' : validListen(v, 'http')),
  );
  const dataDir =
    databaseUrl === ''
      ? await ask.text(
          'dataDir',
          'Data folder for the embedded store (beside parley.yaml by default)',
          DEFAULT_DATA_DIR,
        )
      : (given.dataDir ?? DEFAULT_DATA_DIR);

  const needsTls = !isNone(tls) || !isNone(wss);
  let tlsCert = given.tlsCert ?? '';
  let tlsKey = given.tlsKey ?? '';
  let tlsCa = given.tlsCa ?? '';
  if (needsTls) {
    const fileCheck = (v: string) => v === '' || existsSync(resolve(cwd, v)) || `${v} does not exist`;
    tlsCert = await ask.text(
      'tlsCert',
      'TLS certificate file (PEM; `parley certs issue` makes one)',
      undefined,
      fileCheck,
    );
    tlsKey = await ask.text('tlsKey', 'TLS private key file (PEM)', undefined, fileCheck);
    tlsCa = await ask.text('tlsCa', 'CA certificate file to verify peers (empty for none)', '', fileCheck);
  }
  return {
    domain,
    role,
    home,
    highSecurity,
    udp,
    tcp,
    tls,
    ws,
    wss,
    http,
    dataDir,
    databaseUrl,
    tlsCert,
    tlsKey,
    tlsCa,
  };
}

/** Takes an answer from the flags, else from the prompter, else its default, else fails naming the flag. */
class Asker {
  constructor(
    private readonly given: Partial<InitAnswers>,
    private readonly prompter?: InitPrompter,
  ) {}

  async text(
    key: keyof InitAnswers,
    message: string,
    fallback: string | undefined,
    validate?: (v: string) => true | string,
  ): Promise<string> {
    const value = this.given[key];
    if (value !== undefined) {
      const text = String(value).trim();
      const ok = validate ? validate(text) : true;
      if (ok !== true)
        throw new InitError(`${INIT_FLAGS[key]} ${JSON.stringify(text)}: ${ok}`, 'CONFIG_INVALID', ok);
      return text;
    }
    if (this.prompter) {
      const answer = await this.prompter.input({
        message,
        default: fallback,
        validate: (v) =>
          v.trim() === '' && fallback === undefined
            ? 'an answer is required'
            : validate
              ? validate(v.trim())
              : true,
      });
      return answer.trim() === '' && fallback !== undefined ? fallback : answer.trim();
    }
    if (fallback === undefined) throw missing(key, message);
    return fallback;
  }

  async choice<T extends string>(
    key: keyof InitAnswers,
    message: string,
    values: readonly T[],
    fallback: T,
    names: Record<T, string>,
  ): Promise<T> {
    const value = this.given[key];
    if (value !== undefined) {
      if (!values.includes(value as T)) {
        throw new InitError(
          `${INIT_FLAGS[key]} ${JSON.stringify(value)} is not one of ${values.join(', ')}`,
          'CONFIG_INVALID',
          `use one of ${values.join(', ')}`,
        );
      }
      return value as T;
    }
    if (this.prompter) {
      return this.prompter.select({
        message,
        choices: values.map((v) => ({ name: names[v], value: v })),
        default: fallback,
      });
    }
    return fallback;
  }

  async yesNo(key: keyof InitAnswers, message: string, fallback: boolean): Promise<boolean> {
    const value = this.given[key];
    if (typeof value === 'boolean') return value;
    if (this.prompter) return this.prompter.confirm({ message, default: fallback });
    return fallback;
  }
}

function missing(key: keyof InitAnswers, what: string): InitError {
  return new InitError(
    `${INIT_FLAGS[key]} is required without a terminal: ${what.replace(/ \(.*\)$/, '')}`,
    'MISSING_ANSWER',
    `pass ${INIT_FLAGS[key]}, or run parley init in a terminal to be asked`,
  );
}

function isNone(v: string): boolean {
  return v === '' || v.toLowerCase() === NONE;
}

function validListen(v: string, key: string): true | string {
  if (isNone(v)) return true;
  try {
    parseHostPort(v, key);
    return true;
  } catch (err) {
    return (err as ConfigError).problem;
  }
}

function validHost(v: string): boolean {
  return /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(v);
}

/**
 * Answers name files relative to where init runs; parley.yaml resolves them relative to
 * itself (docs/config.md), so rewrite them to stay correct from any working directory.
 */
function pathFromConfig(p: string, cwd: string, configDir: string): string {
  if (isAbsolute(p)) return p;
  const rel = relative(configDir, resolve(cwd, p));
  if (rel === '') return '.';
  return rel.startsWith('..') ? resolve(cwd, p) : `./${rel}`;
}

/**
 * A data folder that already holds a store belongs to a deployment: init points a new file
 * at it only when it replaces the file that already used it (--force on the same path).
 */
function checkDataFolderFree(dataDir: string, path: string): void {
  if (!embeddedStoreExists(dataDir)) return;
  if (existsSync(path)) {
    try {
      if (loadConfig({ configPath: path, env: {} }).database.dataDir === dataDir) return;
    } catch {
      // An unreadable old file proves nothing about the folder: refuse below.
    }
  }
  throw new InitError(
    `the data folder ${dataDir} already holds a Parley store`,
    'DATA_FOLDER_TAKEN',
    `choose another --data-dir (a relative one is kept beside ${basename(path)}), or use that deployment's own parley.yaml`,
  );
}

function toConfig(
  a: InitAnswers,
  fixPath: (p: string) => string,
  dataDir: string,
): DeepPartial<ParleyConfig> {
  const listen: Record<string, HostPort> = {};
  for (const t of ['udp', 'tcp', 'tls', 'ws', 'wss'] as const) {
    if (!isNone(a[t])) listen[t] = parseHostPort(a[t], `listen.${t}`);
  }
  const cfg: DeepPartial<ParleyConfig> = { domains: [a.domain.toLowerCase()], role: a.role };
  if (a.home) cfg.home = a.home;
  if (a.highSecurity) cfg.highSecurity = true;
  cfg.listen = listen;
  cfg.http = parseHostPort(a.http, 'http');
  if (a.tlsCert || a.tlsKey) {
    cfg.tls = { cert: fixPath(a.tlsCert), key: fixPath(a.tlsKey), requireClientCert: false };
    if (a.tlsCa) cfg.tls.ca = fixPath(a.tlsCa);
  }
  cfg.database = a.databaseUrl ? { dataDir, url: a.databaseUrl } : { dataDir };
  return cfg;
}

function flagForKey(key: string): string | undefined {
  const byKey: Record<string, keyof InitAnswers> = {
    domain: 'domain',
    role: 'role',
    home: 'home',
    highSecurity: 'highSecurity',
    'listen.udp': 'udp',
    'listen.tcp': 'tcp',
    'listen.tls': 'tls',
    'listen.ws': 'ws',
    'listen.wss': 'wss',
    http: 'http',
    listen: 'tcp',
    'database.dataDir': 'dataDir',
    'database.url': 'databaseUrl',
    'tls.cert': 'tlsCert',
    'tls.key': 'tlsKey',
    'tls.ca': 'tlsCa',
  };
  const answer = byKey[key];
  return answer ? INIT_FLAGS[answer] : undefined;
}
