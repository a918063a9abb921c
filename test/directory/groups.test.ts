import { Attribute, Change } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { followArchivedGroups } from '../../src/archive/groups.js';
import { ArchiveWriter } from '../../src/archive/writer.js';
import { type DirectoryConfig, parseDirectoryConfig } from '../../src/directory/config.js';
import { normalizeDn, resolveMemberships } from '../../src/directory/groups.js';
import { replicateFromCentral } from '../../src/directory/replicator.js';
import { prepareCentral } from '../../src/directory/schema.js';
import { silentLogger } from '../../src/ops/log.js';
import { GROUPS_CHANNEL } from '../../src/store/groups.js';
import type { Database } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import { createTestDatabase } from '../support/database.js';
import { type SlapdInstance, startSlapd } from '../support/slapd.js';
import { centralSettings } from './forests.js';

const BASE = 'dc=central,dc=example';
const PEOPLE = ['ann', 'ben', 'cat', 'dan'];
const person = (uid: string) => `uid=${uid},ou=people,${BASE}`;

/** Sales holds ann and the nested EMEA-Sales (ben); Loop holds Sales (and Loop holds itself through it) and dan, who has no SIP address. */
function centralLdif(): string {
  const ous = ['people', 'groups'].map(
    (ou) => `dn: ou=${ou},${BASE}\nobjectClass: organizationalUnit\nou: ${ou}\n`,
  );
  const people = PEOPLE.map(
    (uid) => `dn: ${person(uid)}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\n`,
  );
  const groups = [
    `dn: cn=Sales,ou=groups,${BASE}\nobjectClass: groupOfNames\ncn: Sales\nmember: ${person('ann')}\nmember: CN=EMEA-Sales, OU=groups, ${BASE}\n`,
    `dn: cn=EMEA-Sales,ou=groups,${BASE}\nobjectClass: groupOfUniqueNames\ncn: EMEA-Sales\nuniqueMember: ${person('ben')}#'0101'B\n`,
    `dn: cn=Loop,ou=groups,${BASE}\nobjectClass: groupOfNames\ncn: Loop\nmember: cn=Sales,ou=groups,${BASE}\nmember: cn=Loop,ou=groups,${BASE}\nmember: ${person('dan')}\n`,
  ];
  return [...ous, ...people, ...groups].join('\n');
}

let central: SlapdInstance;
let db: Database;
let store: Store;
let config: DirectoryConfig;
let env: Record<string, string>;

beforeAll(async () => {
  [central, db] = await Promise.all([
    startSlapd({ baseDn: BASE, ldif: centralLdif() }),
    createTestDatabase(),
  ]);
  store = createStore(db);
  env = { CENTRAL_PW: central.adminPassword, CENTRAL_CONFIG_PW: central.configPassword };
  config = parseDirectoryConfig(
    {
      central: centralSettings(central),
      // replication reads only the central forest; the file needs one forest to sync.
      forests: [
        {
          name: 'north',
          url: central.url,
          bindDn: central.readerDn,
          bindPasswordEnv: 'CENTRAL_PW',
          baseDn: BASE,
        },
      ],
    },
    { file: 'test.yaml' },
  );
  await prepareCentral(config.central, { env });
  const client = await central.adminClient();
  try {
    for (const uid of ['ann', 'ben', 'cat'])
      await client.modify(person(uid), [
        new Change({
          operation: 'add',
          modification: new Attribute({ type: 'objectClass', values: ['parleyUser'] }),
        }),
        new Change({
          operation: 'add',
          modification: new Attribute({ type: 'parleySipAddress', values: [`${uid}@example.com`] }),
        }),
      ]);
  } finally {
    await client.unbind();
  }
}, 120_000);

afterAll(async () => {
  await central?.stop();
  await db?.close();
});

describe('group membership replicated from the central forest (slapd)', { timeout: 60_000 }, () => {
  it('nested groups expand, cycles end, members without SIP are left out', () => {
    const groups = [
      { name: 'a', dn: 'cn=a', members: ['cn=b', 'uid=x'] },
      { name: 'b', dn: 'cn=b', members: ['cn=a', 'uid=y', 'uid=nosip'] },
    ];
    const addresses = new Map([
      ['uid=x', 'x@example.com'],
      ['uid=y', 'y@example.com'],
    ]);
    const byGroup = (g: string) =>
      resolveMemberships(groups, addresses)
        .filter((m) => m.group === g)
        .map((m) => m.aor)
        .sort();
    expect(byGroup('a')).toEqual(['x@example.com', 'y@example.com']);
    expect(byGroup('b')).toEqual(['x@example.com', 'y@example.com']);
    expect(normalizeDn('CN=EMEA-Sales, OU=groups,dc=X')).toBe('cn=emea-sales,ou=groups,dc=x');
  });

  it('replicate writes memberships, follows changes and the archive scope follows it live', async () => {
    const notified: string[] = [];
    const unlisten = await db.listen(GROUPS_CHANNEL, (p) => notified.push(p));
    const first = await replicateFromCentral({ store, config, env });
    expect(first.added).toBe(3);
    expect(first.groups).toEqual({ read: 3, memberships: 5, added: 5, removed: 0 });
    expect(await store.groups.membersOf(['SALES'])).toEqual(['ann@example.com', 'ben@example.com']);
    expect(await store.groups.membersOf(['emea-sales'])).toEqual(['ben@example.com']);
    expect(await store.groups.membersOf(['loop'])).toEqual(['ann@example.com', 'ben@example.com']);
    expect(await store.groups.groupsOf('ben@example.com')).toEqual(['emea-sales', 'loop', 'sales']);
    expect(await store.groups.groupsOf('cat@example.com')).toEqual([]);

    const writer = new ArchiveWriter({
      enabled: true,
      users: ['cat@example.com'],
      groups: ['sales'],
      retentionDays: 0,
      onFailure: 'continue',
      batchSize: 10,
      flushMs: 10,
      repo: store.archive,
      serverId: 's',
      log: silentLogger(),
    });
    const stop = await followArchivedGroups({
      writer,
      repo: store.groups,
      feed: db,
      groups: ['sales'],
      log: silentLogger(),
    });
    try {
      expect(writer.wants('ann@example.com', 'x@other.org')).toBe(true);
      expect(writer.wants('x@other.org', 'ben@example.com')).toBe(true);
      expect(writer.wants('cat@example.com', 'x@other.org')).toBe(true);
      expect(writer.wants('dan@example.com', 'x@other.org')).toBe(false);

      // Unchanged directory: nothing written, nothing announced.
      const again = await replicateFromCentral({ store, config, env });
      expect(again.groups).toEqual({ read: 3, memberships: 5, added: 0, removed: 0 });
      expect(notified).toHaveLength(1);

      // ann leaves Sales (and so Loop); cat joins EMEA-Sales.
      const client = await central.adminClient();
      try {
        await client.modify(`cn=Sales,ou=groups,${BASE}`, [
          new Change({
            operation: 'delete',
            modification: new Attribute({ type: 'member', values: [person('ann')] }),
          }),
        ]);
        await client.modify(`cn=EMEA-Sales,ou=groups,${BASE}`, [
          new Change({
            operation: 'add',
            modification: new Attribute({ type: 'uniqueMember', values: [person('cat')] }),
          }),
        ]);
      } finally {
        await client.unbind();
      }
      const dry = await replicateFromCentral({ store, config, env, dryRun: true });
      expect(dry.groups).toEqual({ read: 3, memberships: 6, added: 0, removed: 0 });
      const changed = await replicateFromCentral({ store, config, env });
      expect(changed.groups).toEqual({ read: 3, memberships: 6, added: 3, removed: 2 });
      expect(notified).toHaveLength(2);
      expect(await store.groups.membersOf(['sales'])).toEqual(['ben@example.com', 'cat@example.com']);
      await expect.poll(() => writer.wants('ann@example.com', 'x@other.org')).toBe(false);
      expect(writer.wants('x@other.org', 'ben@example.com')).toBe(true);

      // A user deleted from the store takes its memberships along.
      await store.users.removeDirectoryUsers(['ben@example.com']);
      expect(await store.groups.membersOf(['sales'])).toEqual(['cat@example.com']);
    } finally {
      await stop();
      await unlisten();
    }
  });
});
