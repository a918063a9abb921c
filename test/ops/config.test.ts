import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseAdvertise, parseHostPort, writeConfig } from '../../src/ops/config.js';
import { scratchDir } from '../support/scratch.js';

const fixtures = resolve(import.meta.dirname, '../../fixtures/config');
const pki = resolve(import.meta.dirname, '../../fixtures/pki');

function tempDir(): string {
  return scratchDir('parley-config-');
}

function catchConfigError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies defaults when there is no parley.yaml', () => {
    const cfg = loadConfig({ cwd: tempDir(), env: {} });
    expect(cfg.file).toBeUndefined();
    expect(cfg.domain).toBe('parley.local');
    expect(cfg.role).toBe('standard');
    expect(cfg.serverId).toBe(`${hostname()}-standard`);
    expect(cfg.home).toBe('parley.local');
    expect(cfg.listen).toEqual({
      udp: { host: '0.0.0.0', port: 5060 },
      tcp: { host: '0.0.0.0', port: 5060 },
      ws: { host: '0.0.0.0', port: 5066 },
    });
    expect(cfg.http).toEqual({ host: '127.0.0.1', port: 9060 });
    expect(cfg.highSecurity).toBe(false);
    expect(cfg.log.level).toBe('info');
    expect(cfg.registrar.minExpires).toBeLessThanOrEqual(cfg.registrar.defaultExpires);
    expect(cfg.registrar.defaultExpires).toBeLessThanOrEqual(cfg.registrar.maxExpires);
    expect(cfg.presence.allowSameDomain).toBe(true);
  });

  it('reads ./parley.yaml from cwd and resolves paths relative to the file', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'parley.yaml'), 'domain: Example.COM\ndatabase:\n  dataDir: store\n');
    const cfg = loadConfig({ cwd: dir, env: {} });
    expect(cfg.file).toBe(join(dir, 'parley.yaml'));
    expect(cfg.domain).toBe('example.com');
    expect(cfg.database.dataDir).toBe(join(dir, 'store'));
  });

  it('loads every sample role config', () => {
    const std = loadConfig({ configPath: join(fixtures, 'standard.yaml'), env: {} });
    expect(std.serverId).toBe('std-1');
    expect(std.database.dataDir).toBe(join(fixtures, 'data'));

    const fe = loadConfig({ configPath: join(fixtures, 'frontend.yaml'), env: {} });
    expect(fe.role).toBe('frontend');
    expect(fe.home).toBe('pool1');
    expect(fe.tls).toEqual({
      cert: join(pki, 'server.crt'),
      key: join(pki, 'server.key'),
      ca: join(pki, 'ca.crt'),
      requireClientCert: false,
    });
    expect(fe.listen.tls).toEqual({ host: '0.0.0.0', port: 5061 });

    const edge = loadConfig({ configPath: join(fixtures, 'edge.yaml'), env: {} });
    expect(edge.highSecurity).toBe(true);
    expect(edge.listen).toEqual({
      tls: { host: '0.0.0.0', port: 5061 },
      wss: { host: '0.0.0.0', port: 443 },
    });
    expect(edge.home).toBeUndefined();

    const dir = loadConfig({ configPath: join(fixtures, 'director.yaml'), env: {} });
    expect(dir.listen.tcp).toEqual({ host: '::1', port: 5060 });
  });

  it('uses PARLEY_CONFIG for the path, and PARLEY_DATABASE_URL for the database', () => {
    const cfg = loadConfig({
      cwd: tempDir(),
      env: {
        PARLEY_CONFIG: join(fixtures, 'standard.yaml'),
        PARLEY_DATABASE_URL: 'postgres://u:secret@h/db',
      },
    });
    expect(cfg.serverId).toBe('std-1');
    expect(cfg.database.url).toBe('postgres://u:secret@h/db');
  });

  it('lets flag overrides win over the file', () => {
    const cfg = loadConfig({
      configPath: join(fixtures, 'standard.yaml'),
      env: {},
      overrides: {
        domain: 'other.test',
        listen: { tcp: { host: '127.0.0.1', port: 0 } },
        log: { level: 'debug' },
      },
    });
    expect(cfg.domain).toBe('other.test');
    expect(cfg.listen.tcp).toEqual({ host: '127.0.0.1', port: 0 });
    // ws still comes from the file: layers merge key by key.
    expect(cfg.listen.ws).toEqual({ host: '127.0.0.1', port: 5066 });
    expect(cfg.log.level).toBe('debug');
  });

  it('keeps default listeners when flag overrides leave listen keys unset', () => {
    const cfg = loadConfig({
      cwd: tempDir(),
      env: {},
      overrides: { listen: { tcp: undefined, ws: undefined } },
    });
    expect(cfg.listen.tcp).toEqual({ host: '0.0.0.0', port: 5060 });
    expect(cfg.listen.ws).toEqual({ host: '0.0.0.0', port: 5066 });
  });

  it('names the file and key of a bad listen address', () => {
    const err = catchConfigError(() =>
      loadConfig({ configPath: join(fixtures, 'bad-listen.yaml'), env: {} }),
    );
    expect(err.key).toBe('listen.tcp');
    expect(err.file).toContain('bad-listen.yaml');
    expect(err.message).toMatch(/bad-listen\.yaml: listen\.tcp: "abc" is not host:port/);
  });

  it('reads server.semiSpaceMb: 64 unless set, 0 for V8 own size, at most 1024', () => {
    const dir = tempDir();
    for (const [yaml, mb] of [
      ['server:\n  semiSpaceMb: 0\n', 0],
      ['server:\n  semiSpaceMb: 32\n', 32],
      ['server:\n  semiSpaceMb: 1024\n', 1024],
    ] as const) {
      writeFileSync(join(dir, 'parley.yaml'), yaml);
      expect(loadConfig({ cwd: dir, env: {} }).server.semiSpaceMb).toBe(mb);
    }
    for (const bad of ['1025', '-1', '2.5', 'big']) {
      writeFileSync(join(dir, 'parley.yaml'), `server:\n  semiSpaceMb: ${bad}\n`);
      expect(catchConfigError(() => loadConfig({ cwd: dir, env: {} })).key).toBe('server.semiSpaceMb');
    }
  });

  it('runs one SIP process unless server.workers asks for more, for the standard role only', () => {
    expect(loadConfig({ cwd: tempDir(), env: {} }).server).toEqual({ workers: 1, semiSpaceMb: 64 });
    const dir = tempDir();
    writeFileSync(join(dir, 'parley.yaml'), 'server:\n  workers: 2\n');
    expect(loadConfig({ cwd: dir, env: {} }).server.workers).toBe(2);
    writeFileSync(join(dir, 'parley.yaml'), 'server:\n  workers: 0\n');
    expect(catchConfigError(() => loadConfig({ cwd: dir, env: {} })).key).toBe('server.workers');
    writeFileSync(join(dir, 'parley.yaml'), 'server:\n  workers: 65\n');
    expect(catchConfigError(() => loadConfig({ cwd: dir, env: {} })).key).toBe('server.workers');
    writeFileSync(join(dir, 'parley.yaml'), 'server:\n  workers: 2\n');
    const onPostgres = catchConfigError(() =>
      loadConfig({ cwd: dir, env: { PARLEY_DATABASE_URL: 'postgresql://db/parley' } }),
    );
    expect(onPostgres.key).toBe('server.workers');
    expect(onPostgres.message).toMatch(/pool of front-ends/);
    writeFileSync(join(dir, 'parley.yaml'), 'server:\n  threads: 2\n');
    expect(catchConfigError(() => loadConfig({ cwd: dir, env: {} })).key).toBe('server.threads');
    writeFileSync(
      join(dir, 'parley.yaml'),
      'role: frontend\ndatabase:\n  url: postgresql://db/parley\nserver:\n  workers: 2\n',
    );
    const err = catchConfigError(() => loadConfig({ cwd: dir, env: {} }));
    expect(err.key).toBe('server.workers');
    expect(err.message).toMatch(/standard role/);
  });

  it('reports each of several mistakes once', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'parley.yaml'), 'domain: example.com\nlistne: 1\nlog:\n  level: loud\n');
    const err = catchConfigError(() => loadConfig({ cwd: dir, env: {} }));
    expect(err.problems.map((p) => p.key)).toEqual(['listne', 'log.level']);
    expect(err.message.split('\n')).toHaveLength(2);
  });

  it('does not report the section a mistaken key leaves empty as one more mistake', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'parley.yaml'), 'domain: example.com\nlisten:\n  tls: 127.0.0.1:5061\n');
    const err = catchConfigError(() => loadConfig({ cwd: dir, env: {} }));
    // Without a certificate the TLS listener is the mistake; "no transport to listen on"
    // would only be what dropping it left.
    expect(err.problems.map((p) => p.key)).toEqual(['listen.tls']);
    expect(err.message).toMatch(/needs a certificate/);
    expect(err.message).not.toMatch(/no transport/);
  });

  it('reports YAML syntax errors with the line', () => {
    const err = catchConfigError(() =>
      loadConfig({ configPath: join(fixtures, 'bad-syntax.yaml'), env: {} }),
    );
    expect(err.file).toContain('bad-syntax.yaml');
    expect(err.key).toMatch(/^line \d+$/);
  });

  it('fails on an explicit missing file but not on a missing default file', () => {
    const dir = tempDir();
    const err = catchConfigError(() => loadConfig({ configPath: 'nope.yaml', cwd: dir, env: {} }));
    expect(err.message).toBe('nope.yaml: config file not found');
    const fromEnv = catchConfigError(() => loadConfig({ cwd: dir, env: { PARLEY_CONFIG: 'gone.yaml' } }));
    expect(fromEnv.message).toContain('PARLEY_CONFIG');
  });

  it.each([
    ['listne:\n  tcp: 1.2.3.4:5\n', 'listne', /unknown key/],
    ['role: boss\n', 'role', /"boss" is not one of standard, frontend, director, edge/],
    ['domain: "not a domain"\n', 'domain', /is not a DNS domain name/],
    ['listen:\n  tcp: 1.2.3.4:70000\n', 'listen.tcp', /port above 65535/],
    ['listen:\n  tcp: "::1:5060"\n', 'listen.tcp', /IPv6 address in brackets/],
    ['listen:\n  tls: 0.0.0.0:5061\n', 'listen.tls', /needs a certificate/],
    ['listen: {}\n', 'listen', /no transport/],
    ['highSecurity: true\nlisten:\n  tcp: 0.0.0.0:5060\n', 'listen.tcp', /TLS and WSS only/],
    ['tls:\n  key: x.key\n', 'tls.cert', /missing/],
    ['tls:\n  cert: missing.crt\n  key: missing.key\n', 'tls.cert', /does not exist/],
    ['database:\n  url: mysql://u:hunter2@h/db\n', 'database.url', /postgres/],
    ['role: frontend\n', 'database.url', /PostgreSQL/],
    ['registrar:\n  minExpires: 600\n  maxExpires: 60\n', 'registrar.minExpires', /greater than maxExpires/],
    ['registrar:\n  defaultExpires: 5\n', 'registrar.defaultExpires', /outside/],
    ['presence:\n  maxExpires: -1\n', 'presence.maxExpires', /whole number/],
    ['presence:\n  allowSameDomain: "yes"\n', 'presence.allowSameDomain', /true or false/],
    ['log:\n  level: loud\n', 'log.level', /not one of/],
    ['- a\n- b\n', '', /mapping/],
  ])('rejects %j at key %s', (yaml, key, problem) => {
    const dir = tempDir();
    writeFileSync(join(dir, 'parley.yaml'), yaml);
    const err = catchConfigError(() => loadConfig({ cwd: dir, env: {} }));
    expect(err.key).toBe(key);
    expect(err.file).toBe('parley.yaml');
    expect(err.message).toMatch(problem);
    expect(err.message).not.toContain('hunter2');
  });

  it('names the flags layer when an override is wrong', () => {
    const err = catchConfigError(() =>
      loadConfig({ cwd: tempDir(), env: {}, overrides: { log: { level: 'loud' as 'info' } } }),
    );
    expect(err.message).toBe('flags: log.level: "loud" is not one of fatal, error, warn, info, debug, trace');
  });

  it('defaults a high-security server to TLS only', () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'parley.yaml'),
      `highSecurity: true\ntls:\n  cert: ${join(pki, 'server.crt')}\n  key: ${join(pki, 'server.key')}\n`,
    );
    const cfg = loadConfig({ cwd: dir, env: {} });
    expect(cfg.listen).toEqual({ tls: { host: '0.0.0.0', port: 5061 } });
  });

  it('passes the directory section through raw and checks the federation section', () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'parley.yaml'),
      "directory:\n  forests:\n    - name: corp\nfederation:\n  dnsServers: ['127.0.0.1:5353', '::1']\n",
    );
    const cfg = loadConfig({ cwd: dir, env: {} });
    expect(cfg.directory).toEqual({ forests: [{ name: 'corp' }] });
    expect(cfg.federation.dnsServers).toEqual(['127.0.0.1:5353', '::1']);
    writeFileSync(join(dir, 'parley.yaml'), 'federation:\n  anything: 1\n');
    expect(() => loadConfig({ cwd: dir, env: {} })).toThrow(/federation\.anything: unknown key/);
    writeFileSync(join(dir, 'parley.yaml'), "federation:\n  dnsServers: ['dns.example']\n");
    expect(() => loadConfig({ cwd: dir, env: {} })).toThrow(/not a DNS server address/);
  });
});

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:5060', { host: '127.0.0.1', port: 5060 }],
    ['[::1]:5061', { host: '::1', port: 5061 }],
    ['edge.parley.test:443', { host: 'edge.parley.test', port: 443 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    [':5060', { host: '0.0.0.0', port: 5060 }],
    ['5066', { host: '0.0.0.0', port: 5066 }],
  ])('parses %s', (text, expected) => {
    expect(parseHostPort(text, 'listen.tcp')).toEqual(expected);
  });

  it.each(['abc', '1.2.3.4', '1.2.3.4:x', '[::1]', '[nothost]:5060', 'a b:5060', '1.2.3.4:99999'])(
    'rejects %s naming file and key',
    (text) => {
      const err = catchConfigError(() => parseHostPort(text, 'listen.ws', 'p.yaml'));
      expect(err.message.startsWith(`p.yaml: listen.ws: ${JSON.stringify(text)}`)).toBe(true);
    },
  );
});

describe('parseAdvertise', () => {
  it.each([
    ['sip.example.com', { host: 'sip.example.com', port: undefined }],
    ['sip.example.com:5070', { host: 'sip.example.com', port: 5070 }],
    ['192.0.2.7:5060', { host: '192.0.2.7', port: 5060 }],
    ['[2001:db8::1]', { host: '[2001:db8::1]', port: undefined }],
    ['[2001:db8::1]:5061', { host: '[2001:db8::1]', port: 5061 }],
  ])('reads %s as loadConfig accepts it', (text, expected) => {
    const dir = tempDir();
    writeFileSync(join(dir, 'parley.yaml'), `advertise: "${text}"\n`);
    expect(loadConfig({ cwd: dir, env: {} }).advertise).toBe(text);
    expect(parseAdvertise(text)).toEqual(expected);
  });

  it('is undefined without advertise', () => {
    expect(parseAdvertise(undefined)).toBeUndefined();
  });
});

describe('writeConfig', () => {
  it('writes a file that loads back to the same config', () => {
    const dir = tempDir();
    const path = join(dir, 'parley.yaml');
    writeConfig(path, {
      domain: 'corp.test',
      role: 'director',
      listen: { tcp: { host: '::', port: 5060 }, ws: { host: '127.0.0.1', port: 5066 } },
      database: { dataDir: './store' },
      http: { host: '127.0.0.1', port: 9999 },
    });
    const text = readFileSync(path, 'utf8');
    expect(text).toContain('tcp: "[::]:5060"');
    const cfg = loadConfig({ configPath: path, env: {} });
    expect(cfg.role).toBe('director');
    expect(cfg.listen.tcp).toEqual({ host: '::', port: 5060 });
    expect(cfg.http.port).toBe(9999);
    expect(cfg.database.dataDir).toBe(join(dir, 'store'));
  });

  it('makes a file holding a database password private to its owner', () => {
    const path = join(tempDir(), 'parley.yaml');
    writeConfig(path, { database: { dataDir: '.', url: 'postgres://u:pw@h/db' } });
    expect(statSync(path).mode & 0o077).toBe(0);
  });
});
