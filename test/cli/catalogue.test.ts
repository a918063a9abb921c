import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import UsersList from '../../commands/users/list.js';
import type { CertError } from '../../src/certs/openssl.js';
import { CLI_ERRORS, type CliErrorCode, fromCatalogued } from '../../src/cli/errors.js';
import { findStore, loadCliConfig } from '../../src/cli/flags.js';
import type { ClientPolicyError } from '../../src/clients/admin.js';
import type { ContactsErrorCode } from '../../src/contacts/errors.js';
import type { ExportScopeError } from '../../src/contacts/export.js';
import type { RestoreSourceError } from '../../src/contacts/restore.js';
import { DirectoryError, type DirectoryErrorCode, EXIT } from '../../src/directory/errors.js';
import type { FederationError } from '../../src/federation/policy.js';
import type { DnsPlanError } from '../../src/ops/dns.js';
import type { DrainErrorCode } from '../../src/ops/drain.js';
import type { InitError } from '../../src/ops/init.js';
import { formatPrettyLine } from '../../src/ops/log.js';
import type { SettingsFileError } from '../../src/reports/deployment-settings.js';
import type { StoreBackupErrorCode } from '../../src/store/backup.js';
import type { UserErrorCode } from '../../src/users/errors.js';
import { migratedDataFolder } from '../support/database.js';

/** Compiles only when every code of a domain error is a key of the catalogue. */
type Catalogued<T extends CliErrorCode> = T;
type DomainCodes = [
  Catalogued<UserErrorCode>,
  Catalogued<ContactsErrorCode>,
  Catalogued<DirectoryErrorCode>,
  Catalogued<DrainErrorCode>,
  Catalogued<StoreBackupErrorCode>,
  Catalogued<CertError['code']>,
  Catalogued<InitError['code']>,
  Catalogued<DnsPlanError['code']>,
  Catalogued<FederationError['code']>,
  Catalogued<ExportScopeError['code']>,
  Catalogued<RestoreSourceError['code']>,
  Catalogued<ClientPolicyError['code']>,
  Catalogued<SettingsFileError['code']>,
];

const work = mkdtempSync(join(tmpdir(), 'cli-catalogue-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the error catalogue', () => {
  it('holds every code domain errors carry (DomainCodes compiles only then)', () => {
    const some: DomainCodes[number][] = [
      'USER_EXISTS',
      'DIRECTORY_LOCKED',
      'CERT_EXISTS',
      'DNS_PLAN_INVALID',
    ];
    expect(some.every((code) => code in CLI_ERRORS)).toBe(true);
  });

  it('maps domain errors by code, keeping a suggestion they carry', () => {
    const e = fromCatalogued(new DirectoryError('DIRECTORY_LOCKED', 'held', EXIT.locked, ['wait for run 7']));
    expect(e).toMatchObject({ code: 'DIRECTORY_LOCKED', exit: 4, suggestions: ['Wait for run 7.'] });
    expect(fromCatalogued(new Error('a bug'))).toBeUndefined();
  });

  it('agrees with the exit statuses the directory code expects', () => {
    expect(CLI_ERRORS.DIRECTORY_CONFIG.exit).toBe(EXIT.config);
    expect(CLI_ERRORS.DIRECTORY_LOCKED.exit).toBe(EXIT.locked);
    expect(CLI_ERRORS.DIRECTORY_NOT_PREPARED.exit).toBe(EXIT.error);
  });

  it('describes a folder given as a file, and a missing path', () => {
    const eisdir = Object.assign(new Error('EISDIR: illegal operation on a directory, read'), {
      code: 'EISDIR',
      path: '/srv/export',
    });
    expect(fromCatalogued(eisdir)).toMatchObject({
      code: 'FILE_IS_FOLDER',
      message: '/srv/export is a folder, not a file',
    });
  });
});

describe('configuration for commands', () => {
  it('reports every mistake of a file at once', () => {
    const file = join(work, 'two.yaml');
    writeFileSync(file, 'domain: example.com\nlistne: 1\nlog:\n  level: loud\n');
    expect(() => loadCliConfig({ config: file })).toThrow(
      expect.objectContaining({
        code: 'CONFIG_INVALID',
        message: expect.stringMatching(/listne: unknown key[\s\S]*log\.level: "loud"/),
      }),
    );
  });

  it('calls a bad flag a bad flag, not a bad file', () => {
    expect(() =>
      loadCliConfig(
        { config: undefined, 'data-dir': '' },
        { cwd: work, overrides: { http: { host: 'x', port: 99999 } } as never },
      ),
    ).toThrow(expect.objectContaining({ code: 'INVALID_FLAG' }));
  });

  it("calls a value a flag's own parser refuses a bad flag, with what to do", async () => {
    const root = new URL('../..', import.meta.url).pathname;
    await expect(
      UsersList.run(['--limit', '0', '--data-dir', join(work, 'none')], root),
    ).rejects.toMatchObject({
      code: 'INVALID_FLAG',
      message: expect.stringContaining('Parsing --limit'),
      suggestions: [expect.stringContaining('--help')],
    });
  });

  it('takes domains from the file; --domain only picks among them', () => {
    const file = join(work, 'domains.yaml');
    writeFileSync(file, 'domains: [example.com]\n');
    const config = loadCliConfig({ config: file, domain: 'other.example' });
    expect(config.domains).toEqual(['example.com']);
    expect(loadCliConfig({ domain: 'lab.test' }, { cwd: work }).domains).toEqual(['lab.test']);
  });
});

describe('finding the store', () => {
  it('refuses to invent one, and finds an existing ./.parley', async () => {
    const empty = mkdtempSync(join(work, 'empty-'));
    const config = loadCliConfig({}, { cwd: empty, env: {} });
    expect(() => findStore(config, {}, { cwd: empty, env: {} })).toThrow(
      expect.objectContaining({ code: 'STORE_NOT_FOUND' }),
    );
    const named = loadCliConfig({ 'data-dir': join(empty, 'nothing') }, { cwd: empty, env: {} });
    expect(() => findStore(named, { 'data-dir': 'x' }, { cwd: empty, env: {} })).toThrow(
      expect.objectContaining({ code: 'STORE_NOT_CREATED' }),
    );
    migratedDataFolder(join(empty, '.parley'));
    expect(findStore(config, {}, { cwd: empty, env: {} })).toMatchObject({
      engine: 'embedded',
      location: join(empty, '.parley'),
      foundBy: './.parley',
    });
  }, 120_000);
});

describe('pretty log lines', () => {
  it('put time, level, component and message first, the rest as key=value', () => {
    const line = JSON.stringify({
      level: 'info',
      time: '2026-01-02T03:04:05.678Z',
      server: 's1',
      role: 'standard',
      component: 'registrar',
      msg: 'registered',
      aor: 'alice@example.com',
      contact: 'sip:alice@10.0.0.1:5060;transport=tcp',
      note: 'two words',
    });
    expect(formatPrettyLine(line)).toBe(
      '03:04:05.678 INFO  registrar: registered aor=alice@example.com contact="sip:alice@10.0.0.1:5060;transport=tcp" note="two words"\n',
    );
  });
});
