import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attribute, Change, Client } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { parseDirectoryConfig } from '../../src/directory/config.js';
import { normalizeDn } from '../../src/directory/groups.js';
import { prepareCentral } from '../../src/directory/schema.js';
import { readDirectoryPlacements } from '../../src/migration/cli.js';
import { MigrationError } from '../../src/migration/errors.js';
import { firstGroup, groupLabel } from '../../src/migration/groups.js';
import { planWaves } from '../../src/migration/plan.js';
import { openDatabase } from '../../src/store/open.js';
import { createStore, type Store } from '../../src/store/store.js';
import { centralSettings } from '../directory/forests.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, migratedDataFolder } from '../support/database.js';
import { type SlapdInstance, startSlapd } from '../support/slapd.js';

const built = existsSync(join(import.meta.dirname, '../../dist/commands/migrate/plan.js'));
const BASE = 'dc=central,dc=example';
const DOMAIN = 'example.com';
const person = (uid: string) =>
  `dn: uid=${uid},ou=people,${BASE}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\n`;

/**
 * `parley migrate plan --by group` against a throwaway central forest (OpenLDAP): groups of
 * names and of unique names, members written with other case and spacing, a uniqueMember
 * with its optional UID, names with characters that mean something in DNs and filters.
 */
describe('plan by LDAP group (central forest)', () => {
  let central: SlapdInstance;
  let legacy: Store;
  let pool: Store;
  let directory: Record<string, unknown>;
  const env = { CENTRAL_PW: 'admin-secret', CENTRAL_CONFIG_PW: 'config-secret' };

  beforeAll(async () => {
    const ldif = [
      `dn: ou=people,${BASE}\nobjectClass: organizationalUnit\nou: people\n`,
      `dn: ou=groups,${BASE}\nobjectClass: organizationalUnit\nou: groups\n`,
      ...['ann', 'ben', 'cat', 'dan', 'fay', 'gus'].map(person),
      // ben is in Sales and in Engineering: he moves once, with Engineering (first by name).
      `dn: cn=Sales\\, EMEA,ou=groups,${BASE}\nobjectClass: groupOfNames\ncn: Sales, EMEA\nmember: uid=ann,ou=people,${BASE}\nmember: UID=Ben, OU=People, DC=Central, DC=Example\n`,
      `dn: cn=Engineering,ou=groups,${BASE}\nobjectClass: groupOfNames\ncn: Engineering\nmember: uid=ben,ou=people,${BASE}\nmember: uid=fay,ou=people,${BASE}\n`,
      `dn: cn=R&D (north)*,ou=groups,${BASE}\nobjectClass: groupOfUniqueNames\ncn: R&D (north)*\nuniqueMember: uid=cat,ou=people,${BASE}#'0101'B\nuniqueMember: uid=gus,ou=people,${BASE}\n`,
      // A group of nobody the legacy server has (a placeholder member, as groupOfNames requires one).
      `dn: cn=Empty,ou=groups,${BASE}\nobjectClass: groupOfNames\ncn: Empty\nmember: cn=nobody,${BASE}\n`,
    ].join('\n');
    central = await startSlapd({ baseDn: BASE, ldif });
    directory = {
      central: centralSettings(central, DOMAIN),
      forests: [
        {
          name: 'north',
          url: central.url,
          bindDn: central.adminDn,
          bindPasswordEnv: 'CENTRAL_PW',
          baseDn: `ou=people,${BASE}`,
        },
      ],
    };
    await prepareCentral(parseDirectoryConfig(directory).central, { env });
    // SIP-enable every person but gus (in a group, but not a Parley user).
    const admin = await central.adminClient();
    try {
      for (const uid of ['ann', 'ben', 'cat', 'dan', 'fay']) {
        await admin.modify(`uid=${uid},ou=people,${BASE}`, [
          new Change({
            operation: 'add',
            modification: new Attribute({ type: 'objectClass', values: ['parleyUser'] }),
          }),
          new Change({
            operation: 'add',
            modification: new Attribute({ type: 'parleySipAddress', values: [`sip:${uid}@${DOMAIN}`] }),
          }),
        ]);
      }
    } finally {
      await admin.unbind();
    }
    legacy = createStore(await createTestDatabase());
    pool = createStore(await createTestDatabase());
    await pool.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:127.0.0.1:5999;transport=tcp' });
    // eve is on the legacy server but not in the directory.
    for (const name of ['ann', 'ben', 'cat', 'dan', 'eve'])
      await legacy.users.createUser({ aor: `${name}@${DOMAIN}`, displayName: name, home: null });
  }, 120_000);

  afterAll(async () => {
    await legacy?.close();
    await pool?.close();
    await central?.stop();
  });

  it('reads direct membership of groupOfNames and groupOfUniqueNames for every SIP-enabled user', async () => {
    const placements = await readDirectoryPlacements(directory, 'test.yaml', env, 'group');
    const labels = (aor: string) => (placements.get(aor)?.groups ?? []).map(groupLabel).sort();
    expect([...placements.keys()].sort()).toEqual(
      ['ann', 'ben', 'cat', 'dan', 'fay'].map((n) => `${n}@${DOMAIN}`),
    );
    expect(labels(`ann@${DOMAIN}`)).toEqual(['Sales, EMEA']);
    expect(labels(`ben@${DOMAIN}`)).toEqual(['Engineering', 'Sales, EMEA']);
    expect(labels(`cat@${DOMAIN}`)).toEqual(['R&D (north)*']);
    expect(labels(`dan@${DOMAIN}`)).toEqual([]);
    expect(placements.get(`ann@${DOMAIN}`)?.dn).toMatch(/^uid=ann,ou=people,/i);
  });

  it('plans a wave per group, each user once (first group by name), users in no group in a wave of their own', async () => {
    const placements = await readDirectoryPlacements(directory, 'test.yaml', env, 'group');
    const { plan, refused } = await planWaves({
      sources: [{ home: 'legacy1', store: legacy }],
      target: { home: 'pool1', store: pool },
      locations: { legacy1: '/srv/legacy1', pool1: '$PARLEY_DATABASE_URL' },
      by: 'group',
      directory: placements,
    });
    const waves = Object.fromEntries(plan.waves.map((w) => [w.name, [...w.users].sort()]));
    expect(waves).toEqual({
      'legacy1-sales-emea': [`ann@${DOMAIN}`],
      'legacy1-engineering': [`ben@${DOMAIN}`],
      'legacy1-r-d-north': [`cat@${DOMAIN}`],
      'legacy1-no-group': [`dan@${DOMAIN}`],
    });
    expect(refused.map((r) => [r.aor, r.reason])).toEqual([[`eve@${DOMAIN}`, 'not-in-directory']]);
    // --wave-size splits a group's wave like any other.
    const split = await planWaves({
      sources: [{ home: 'legacy1', store: legacy }],
      target: { home: 'pool1', store: pool },
      locations: { legacy1: '/srv/legacy1', pool1: '$PARLEY_DATABASE_URL' },
      by: 'group',
      directory: new Map([...placements].map(([aor, p]) => [aor, { ...p, groups: [] }])),
      waveSize: 2,
    });
    expect(split.plan.waves.map((w) => [w.name, w.users.length])).toEqual([
      ['legacy1-no-group-1', 2],
      ['legacy1-no-group-2', 2],
    ]);
  });

  it('refuses --by group without a directory section', async () => {
    await expect(readDirectoryPlacements(undefined, 'parley.yaml', env, 'group')).rejects.toThrow(
      /--by group needs the directory/,
    );
    await expect(readDirectoryPlacements(undefined, 'parley.yaml', env, 'group')).rejects.toBeInstanceOf(
      MigrationError,
    );
  });

  it('compares DNs as directories do and picks the first group by name', () => {
    expect(normalizeDn('UID=Ben, OU=People,DC=x')).toBe(normalizeDn('uid=ben,ou=people,dc=x'));
    expect(normalizeDn("uid=cat,dc=x#'0101'B")).toBe('uid=cat,dc=x');
    expect(normalizeDn('cn=Sales\\, EMEA,dc=x')).toBe('cn=sales\\, emea,dc=x');
    expect(groupLabel('cn=Sales\\, EMEA,ou=groups,dc=x')).toBe('Sales, EMEA');
    expect(groupLabel('cn=A\\2cB,dc=x')).toBe('A,B');
    expect(firstGroup(['cn=sales,dc=x', 'cn=Engineering,dc=x', 'cn=beta,ou=z,dc=x'])).toBe(
      'cn=beta,ou=z,dc=x',
    );
    expect(firstGroup([])).toBeUndefined();
  });

  it.skipIf(!built)(
    'parley migrate plan --by group --config reads the groups through the built CLI',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'mg-groups-cli-'));
      try {
        const legacyDb = await openDatabase({ dataDir: migratedDataFolder(join(dir, 'legacy1')) });
        const legacyStore = createStore(legacyDb);
        for (const name of ['ann', 'ben', 'cat', 'dan', 'eve'])
          await legacyStore.users.createUser({ aor: `${name}@${DOMAIN}`, displayName: name, home: null });
        await legacyStore.close();
        const poolStore = createStore(
          await openDatabase({ dataDir: migratedDataFolder(join(dir, 'pool1')) }),
        );
        await poolStore.homes.upsertHome({
          name: 'pool1',
          kind: 'pool',
          address: 'sip:127.0.0.1:5999;transport=tcp',
        });
        await poolStore.close();
        writeFileSync(join(dir, 'parley.yaml'), YAML.stringify({ directory }));
        const run = await runCli(
          [
            'migrate',
            'plan',
            '--from',
            'legacy1=legacy1',
            '--to',
            'pool1=pool1',
            '--by',
            'group',
            '--config',
            'parley.yaml',
            '--out',
            'plan.yaml',
            '--json',
          ],
          { cwd: dir, env: { ...env, PARLEY_DATABASE_URL: undefined, CI: '1' }, timeoutMs: 120_000 },
        );
        expect(run.code, run.output).toBe(0);
        const out = JSON.parse(run.stdout);
        expect(out.waves.map((w: { name: string; users: number }) => [w.name, w.users]).sort()).toEqual([
          ['legacy1-engineering', 1],
          ['legacy1-no-group', 1],
          ['legacy1-r-d-north', 1],
          ['legacy1-sales-emea', 1],
        ]);
        expect(out.refused).toMatchObject([{ aor: `eve@${DOMAIN}`, reason: 'not-in-directory' }]);
        expect(readFileSync(join(dir, 'plan.yaml'), 'utf8')).toContain('--by group');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );

  it('takes memberOf where the server keeps it (memberof overlay), without counting a group twice', async () => {
    const config = await configClient(central);
    try {
      await config.add('cn=module{1},cn=config', {
        objectClass: 'olcModuleList',
        cn: 'module{1}',
        olcModulePath: '/usr/lib/ldap',
        olcModuleLoad: 'memberof',
      });
      await config.add('olcOverlay=memberof,olcDatabase={1}mdb,cn=config', {
        objectClass: ['olcOverlayConfig', 'olcMemberOf'],
        olcOverlay: 'memberof',
      });
    } finally {
      await config.unbind();
    }
    const admin = await central.adminClient();
    try {
      await admin.add(`cn=Ops,ou=groups,${BASE}`, {
        objectClass: 'groupOfNames',
        cn: 'Ops',
        member: `uid=dan,ou=people,${BASE}`,
      });
      const { searchEntries } = await admin.search(`uid=dan,ou=people,${BASE}`, {
        scope: 'base',
        attributes: ['memberOf'],
      });
      expect(String(searchEntries[0].memberOf)).toMatch(/^cn=Ops,ou=groups,/i);
    } finally {
      await admin.unbind();
    }
    const placements = await readDirectoryPlacements(directory, 'test.yaml', env, 'group');
    expect(placements.get(`dan@${DOMAIN}`)?.groups?.map(groupLabel)).toEqual(['Ops']);
  });
});

async function configClient(s: SlapdInstance) {
  const client = new Client({ url: s.url });
  await client.bind(s.configDn, s.configPassword);
  return client;
}
