import type { Client } from 'ldapts';
import { forestLdif } from '../../fixtures/ldap/generate.js';
import { type DirectoryConfig, parseDirectoryConfig } from '../../src/directory/config.js';
import { type SlapdInstance, startSlapd } from '../support/slapd.js';

/**
 * Three throwaway forests for directory tests: central (a few central users, one of them
 * holding an alias a north user also wants), north and south (generated users, some
 * disabled, one alias shared by both).
 */
export interface TestForests {
  central: SlapdInstance;
  north: SlapdInstance;
  south: SlapdInstance;
  env: Record<string, string>;
  config(overrides?: { sync?: Record<string, unknown>; southUrl?: string }): DirectoryConfig;
  stop(): Promise<void>;
}

export const CENTRAL_USERS = ['c.alice', 'c.bob', 'shared.central'];

function centralLdif(baseDn: string): string {
  const people = `dn: ou=people,${baseDn}\nobjectClass: organizationalUnit\nou: people\n`;
  const users = CENTRAL_USERS.map(
    (uid) =>
      `dn: uid=${uid},ou=people,${baseDn}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\ndisplayName: Central ${uid}\n`,
  );
  return [people, ...users].join('\n');
}

/**
 * The `central` section of a directory config for a test slapd: its admin binds, contacts
 * go under ou=parley-contacts, passwords come from the named environment variables.
 */
export function centralSettings(
  central: SlapdInstance,
  sipDomain = 'example.com',
  passwordEnv = { admin: 'CENTRAL_PW', config: 'CENTRAL_CONFIG_PW' },
) {
  return {
    url: central.url,
    bindDn: central.adminDn,
    bindPasswordEnv: passwordEnv.admin,
    baseDn: central.baseDn,
    contactContainer: `ou=parley-contacts,${central.baseDn}`,
    sipDomain,
    schemaAdmin: { bindDn: central.configDn, bindPasswordEnv: passwordEnv.config },
  };
}

export async function startTestForests(opts: {
  perForest: number;
  /** syncprov's session log on south (default 100,000): small, it overflows into a present phase. */
  southSessionlog?: number;
}): Promise<TestForests> {
  const [central, north, south] = await Promise.all([
    startSlapd({ baseDn: 'dc=central,dc=example', ldif: centralLdif('dc=central,dc=example') }),
    startSlapd({
      baseDn: 'dc=north,dc=example',
      ldif: forestLdif({
        baseDn: 'dc=north,dc=example',
        prefix: 'n',
        count: opts.perForest,
        sharedAliases: ['shared.alpha', 'shared.central'],
        seed: 1,
      }),
    }),
    startSlapd({
      baseDn: 'dc=south,dc=example',
      ldif: forestLdif({
        baseDn: 'dc=south,dc=example',
        prefix: 's',
        count: opts.perForest,
        sharedAliases: ['shared.alpha'],
        seed: 2,
      }),
      syncprov: { sessionlog: opts.southSessionlog },
    }),
  ]);
  const env = {
    CENTRAL_PW: central.adminPassword,
    CENTRAL_CONFIG_PW: central.configPassword,
    NORTH_PW: north.readerPassword,
    SOUTH_PW: south.readerPassword,
  };
  const forest = (s: SlapdInstance, name: string, url = s.url) => ({
    name,
    url,
    bindDn: s.readerDn,
    bindPasswordEnv: `${name.toUpperCase()}_PW`,
    baseDn: `ou=people,${s.baseDn}`,
    filter: '(objectClass=inetOrgPerson)',
    home: 'pool1',
    pageSize: 250,
    mapping: { alias: 'uid', disabled: { attribute: 'employeeType', values: ['disabled'] } },
  });
  return {
    central,
    north,
    south,
    env,
    config(overrides = {}) {
      return parseDirectoryConfig(
        {
          central: centralSettings(central),
          forests: [forest(north, 'north'), forest(south, 'south', overrides.southUrl)],
          sync: { deleteGracePeriod: '30d', maxDeletes: 100, ...overrides.sync },
        },
        { file: 'test.yaml' },
      );
    },
    async stop() {
      await Promise.all([central.stop(), north.stop(), south.stop()]);
    },
  };
}

export async function withClient<T>(s: SlapdInstance, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await s.adminClient();
  try {
    return await fn(c);
  } finally {
    await c.unbind();
  }
}

export async function countContacts(
  central: SlapdInstance,
  filter = '(objectClass=parleyUser)',
): Promise<number> {
  return withClient(central, async (c) => {
    let n = 0;
    for await (const page of c.searchPaginated(`ou=parley-contacts,${central.baseDn}`, {
      scope: 'one',
      filter,
      attributes: ['1.1'],
      paged: { pageSize: 1000 },
    })) {
      n += page.searchEntries.length;
    }
    return n;
  });
}
