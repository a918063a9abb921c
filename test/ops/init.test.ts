import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import Init from '../../commands/init.js';
import { loadConfig } from '../../src/ops/config.js';
import { InitError, type InitPrompter, runInit } from '../../src/ops/init.js';
import { scratchDir } from '../support/scratch.js';

const root = resolve(import.meta.dirname, '../..');
const pki = join(root, 'fixtures/pki');

function tempDir(): string {
  return scratchDir('parley-init-');
}

async function initError(p: Promise<unknown>): Promise<InitError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(InitError);
    return err as InitError;
  }
  throw new Error('expected an InitError');
}

/** Answers prompts from a script keyed by message start; records what was asked. */
function scriptedPrompter(answers: Record<string, string | boolean>): InitPrompter & { asked: string[] } {
  const asked: string[] = [];
  const answer = (message: string) => {
    asked.push(message);
    const key = Object.keys(answers).find((k) => message.startsWith(k));
    return key === undefined ? undefined : answers[key];
  };
  return {
    asked,
    async input(q) {
      const a = answer(q.message);
      const value = a === undefined ? (q.default ?? '') : String(a);
      const ok = q.validate ? q.validate(value) : true;
      if (ok !== true) throw new Error(`invalid answer to ${q.message}: ${ok}`);
      return value;
    },
    async select(q) {
      const a = answer(q.message);
      return (a === undefined ? q.default : a) as never;
    },
    async confirm(q) {
      const a = answer(q.message);
      return a === undefined ? (q.default ?? false) : Boolean(a);
    },
  };
}

describe('runInit', () => {
  it('writes a loadable default config without prompting', async () => {
    const dir = tempDir();
    const result = await runInit({ path: 'parley.yaml', cwd: dir });
    expect(result.path).toBe(join(dir, 'parley.yaml'));
    const cfg = loadConfig({ cwd: dir, env: {} });
    expect(cfg.domain).toBe('parley.local');
    expect(cfg.role).toBe('standard');
    expect(cfg.listen).toEqual({
      udp: { host: '0.0.0.0', port: 5060 },
      tcp: { host: '0.0.0.0', port: 5060 },
      ws: { host: '0.0.0.0', port: 5066 },
    });
    expect(cfg.database.dataDir).toBe(join(dir, '.parley'));
    expect(result.config).toEqual(cfg);
  });

  it('uses flag answers, and writes file paths relative to the config file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'edge.crt'), readFileSync(join(pki, 'server.crt')));
    writeFileSync(join(dir, 'edge.key'), readFileSync(join(pki, 'server.key')));
    const given = {
      domain: 'corp.test',
      role: 'edge' as const,
      tlsCert: 'edge.crt',
      tlsKey: 'edge.key',
      tlsCa: join(pki, 'ca.crt'),
      wss: '0.0.0.0:443',
    };
    await runInit({ path: 'parley.yaml', cwd: dir, given });
    mkdirSync(join(dir, 'etc'));
    await runInit({ path: 'etc/parley.yaml', cwd: dir, given });
    expect(readFileSync(join(dir, 'etc/parley.yaml'), 'utf8')).toContain(`cert: ${join(dir, 'edge.crt')}`);
    const text = readFileSync(join(dir, 'parley.yaml'), 'utf8');
    expect(text).toContain('cert: ./edge.crt');
    const cfg = loadConfig({ cwd: dir, env: {} });
    expect(cfg.role).toBe('edge');
    expect(cfg.highSecurity).toBe(true);
    expect(cfg.listen).toEqual({ tls: { host: '0.0.0.0', port: 5061 }, wss: { host: '0.0.0.0', port: 443 } });
    expect(cfg.tls).toEqual({
      cert: join(dir, 'edge.crt'),
      key: join(dir, 'edge.key'),
      ca: join(pki, 'ca.crt'),
      requireClientCert: false,
    });
  });

  it('fails naming the flag of a missing required answer', async () => {
    const dir = tempDir();
    const noUrl = await initError(runInit({ path: 'parley.yaml', cwd: dir, given: { role: 'frontend' } }));
    expect(noUrl.code).toBe('MISSING_ANSWER');
    expect(noUrl.message).toMatch(/^--database is required/);
    const noCert = await initError(
      runInit({ path: 'parley.yaml', cwd: dir, given: { tls: '0.0.0.0:5061' } }),
    );
    expect(noCert.message).toMatch(/^--tls-cert is required/);
  });

  it('rejects bad flag values naming the flag, and writes nothing', async () => {
    const dir = tempDir();
    const bad = await initError(runInit({ path: 'parley.yaml', cwd: dir, given: { tcp: 'abc' } }));
    expect(bad.message).toMatch(/^--tcp "abc": .*host:port/);
    const badRole = await initError(
      runInit({ path: 'parley.yaml', cwd: dir, given: { role: 'boss' as 'edge' } }),
    );
    expect(badRole.message).toMatch(/^--role "boss"/);
    const missingFile = await initError(
      runInit({
        path: 'parley.yaml',
        cwd: dir,
        given: { tls: '0.0.0.0:5061', tlsCert: 'nope.crt', tlsKey: 'nope.key' },
      }),
    );
    expect(missingFile.code).toBe('CONFIG_INVALID');
    expect(missingFile.message).toBe('--tls-cert "nope.crt": nope.crt does not exist');
    const highSecWithTcp = await initError(
      runInit({
        path: 'parley.yaml',
        cwd: dir,
        given: {
          highSecurity: true,
          tcp: '0.0.0.0:5060',
          tlsCert: join(pki, 'server.crt'),
          tlsKey: join(pki, 'server.key'),
        },
      }),
    );
    expect(highSecWithTcp.message).toMatch(
      /^parley\.yaml: listen\.tcp: highSecurity accepts TLS and WSS only/,
    );
    expect(highSecWithTcp.suggestion).toContain('--tcp');
    expect(() => readFileSync(join(dir, 'parley.yaml'))).toThrow();
  });

  it('refuses to overwrite an existing file unless forced', async () => {
    const dir = tempDir();
    await runInit({ path: 'parley.yaml', cwd: dir });
    const exists = await initError(runInit({ path: 'parley.yaml', cwd: dir, given: { domain: 'b.test' } }));
    expect(exists.code).toBe('CONFIG_EXISTS');
    await runInit({ path: 'parley.yaml', cwd: dir, given: { domain: 'b.test' }, force: true });
    expect(loadConfig({ cwd: dir, env: {} }).domain).toBe('b.test');
  });

  it('asks the questions not answered by flags', async () => {
    const dir = tempDir();
    const prompter = scriptedPrompter({
      'SIP domain': 'ask.test',
      'Server role': 'frontend',
      'Pool name': 'pool7',
      'PostgreSQL URL': 'postgres://parley:pw@db.ask.test/parley',
      'TLS listen': '127.0.0.1:5061',
      'TLS certificate': join(pki, 'server.crt'),
      'TLS private key': join(pki, 'server.key'),
    });
    const result = await runInit({ path: 'parley.yaml', cwd: dir, prompter, given: { ws: 'none' } });
    expect(prompter.asked.some((m) => m.startsWith('WebSocket'))).toBe(false);
    expect(prompter.asked.some((m) => m.startsWith('Data folder'))).toBe(false);
    expect(result.config).toMatchObject({
      domain: 'ask.test',
      role: 'frontend',
      home: 'pool7',
      listen: { tcp: { host: '0.0.0.0', port: 5060 }, tls: { host: '127.0.0.1', port: 5061 } },
      database: { url: 'postgres://parley:pw@db.ask.test/parley' },
    });
    expect(result.config.listen.ws).toBeUndefined();
  });
});

describe('parley init (oclif)', () => {
  it('--yes writes a loadable file and returns a JSON result without the password', async () => {
    const dir = tempDir();
    const path = join(dir, 'parley.yaml');
    const result = await Init.run(
      [
        '--yes',
        '--json',
        '--config',
        path,
        '--domain',
        'cli.test',
        '--udp',
        'none',
        '--tcp',
        '127.0.0.1:0',
        '--ws',
        'none',
        '--role',
        'director',
        '--database',
        'postgres://u:secret@db/p',
      ],
      root,
    );
    expect(result).toMatchObject({
      path,
      domain: 'cli.test',
      role: 'director',
      listen: { tcp: '127.0.0.1:0' },
    });
    expect(result.database.url).toBe('postgres://u:***@db/p');
    expect(loadConfig({ configPath: path, env: {} }).listen).toEqual({ tcp: { host: '127.0.0.1', port: 0 } });
  });
});
