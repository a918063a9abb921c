import { Attribute, Change } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtureUsers } from '../../fixtures/ldap/generate.js';
import type { ContactWriter } from '../../src/directory/central.js';
import { DirectoryError, EXIT } from '../../src/directory/errors.js';
import { equalityFilter } from '../../src/directory/filter.js';
import { replicateFromCentral } from '../../src/directory/replicator.js';
import { prepareCentral } from '../../src/directory/schema.js';
import { runDirectorySync, SyncInterruptedError, type SyncOptions } from '../../src/directory/sync.js';
import type { Database } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import { createTestDatabase } from '../support/database.js';
import { countContacts, startTestForests, type TestForests, withClient } from './forests.js';

const PER_FOREST = 1500;
let forests: TestForests;
let db: Database;
let store: Store;

function countingWriter(counter: { writes: number }, onWrite?: () => void) {
  return (w: ContactWriter): ContactWriter => ({
    async addContact(dn, attrs) {
      counter.writes++;
      onWrite?.();
      await w.addContact(dn, attrs);
    },
    async updateContact(dn, attrs, changed) {
      counter.writes++;
      onWrite?.();
      await w.updateContact(dn, attrs, changed);
    },
    async deleteContact(dn) {
      counter.writes++;
      onWrite?.();
      await w.deleteContact(dn);
    },
  });
}

function sync(extra: Partial<SyncOptions> = {}, config = forests.config()) {
  return runDirectorySync({ store, config, env: forests.env, ...extra });
}

async function contactFor(alias: string): Promise<Record<string, string | string[]> | undefined> {
  return withClient(forests.central, async (c) => {
    const res = await c.search(`ou=parley-contacts,${forests.central.baseDn}`, {
      scope: 'one',
      filter: equalityFilter('parleySipAddress', `${alias}@example.com`),
      attributes: ['*'],
    });
    return res.searchEntries[0] as Record<string, string | string[]> | undefined;
  });
}

async function setAttr(dn: string, type: string, values: string[]) {
  await withClient(forests.north, (c) =>
    c.modify(dn, [new Change({ operation: 'replace', modification: new Attribute({ type, values }) })]),
  );
}

const northUsers = () =>
  fixtureUsers({
    baseDn: 'dc=north,dc=example',
    prefix: 'n',
    count: PER_FOREST,
    sharedAliases: ['shared.alpha', 'shared.central'],
    seed: 1,
  });
const southUsers = () =>
  fixtureUsers({
    baseDn: 'dc=south,dc=example',
    prefix: 's',
    count: PER_FOREST,
    sharedAliases: ['shared.alpha'],
    seed: 2,
  });

beforeAll(async () => {
  [forests, db] = await Promise.all([startTestForests({ perForest: PER_FOREST }), createTestDatabase()]);
  store = createStore(db);
  await store.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:pool1.example.com' });
});

afterAll(async () => {
  await forests?.stop();
  await db?.close();
});

describe('directory sync against three slapd forests', { timeout: 120_000 }, () => {
  it('prepare adds the schema and container to the central forest once', async () => {
    const config = forests.config();
    const first = await prepareCentral(config.central, { env: forests.env });
    expect(first).toMatchObject({ schema: 'added', container: 'added' });
    const again = await prepareCentral(config.central, { env: forests.env });
    expect(again).toMatchObject({ schema: 'present', container: 'present' });
  });

  it('the first sync creates one contact per enabled user and reports alias conflicts', async () => {
    const summary = await sync();
    const enabledNorth = northUsers().filter((u) => !u.disabled && u.uid !== 'shared.central').length;
    const enabledSouth = southUsers().filter((u) => !u.disabled && u.uid !== 'shared.alpha').length;
    expect(summary.errors).toEqual([]);
    expect(summary.added).toBe(enabledNorth + enabledSouth);
    expect(summary.exitCode).toBe(EXIT.ok);
    expect(summary.conflicts.map((c) => [c.forest, c.sipAddress, c.heldBy.split(':')[0]]).sort()).toEqual([
      ['north', 'shared.central@example.com', 'central'],
      ['south', 'shared.alpha@example.com', 'north'],
    ]);
    expect(await countContacts(forests.central)).toBe(enabledNorth + enabledSouth);
    const alpha = await contactFor('shared.alpha');
    expect(alpha?.parleySourceForest).toBe('north');
    expect(await contactFor('shared.central')).toBeUndefined();
    // Disabled at the source before ever being synced: no contact.
    expect(await contactFor(northUsers().find((u) => u.disabled)?.uid ?? '')).toBeUndefined();
  });

  it('a second run with no changes writes nothing', async () => {
    const counter = { writes: 0 };
    const summary = await sync({ wrapWriter: countingWriter(counter) });
    expect(counter.writes).toBe(0);
    expect(summary).toMatchObject({ added: 0, updated: 0, disabled: 0, deleted: 0, exitCode: EXIT.ok });
    const full = await sync({ full: true, wrapWriter: countingWriter(counter) });
    expect(counter.writes).toBe(0);
    expect(full.forests.map((f) => f.read)).toEqual([northUsers().length, southUsers().length]);
  });

  it('replicate fills the user store from the central forest and keeps local users', async () => {
    await store.users.createUser({ aor: 'n.user00000@example.com', source: 'local' });
    await withClient(forests.central, (c) =>
      c.modify(`uid=c.alice,ou=people,${forests.central.baseDn}`, [
        new Change({
          operation: 'add',
          modification: new Attribute({ type: 'objectClass', values: ['parleyUser'] }),
        }),
        new Change({
          operation: 'add',
          modification: new Attribute({ type: 'parleySipAddress', values: ['c.alice@example.com'] }),
        }),
        new Change({
          operation: 'add',
          modification: new Attribute({ type: 'parleyEnabled', values: ['TRUE'] }),
        }),
        new Change({
          operation: 'add',
          modification: new Attribute({ type: 'parleyHome', values: ['pool1'] }),
        }),
      ]),
    );
    const contacts = await countContacts(forests.central);
    const r = await replicateFromCentral({ store, config: forests.config(), env: forests.env });
    // Every contact plus c.alice, less the address a local user already has.
    expect(r.added).toBe(contacts + 1 - 1);
    const northCount = northUsers().filter((u) => !u.disabled && u.uid !== 'shared.central').length;
    expect(r.issues.map((i) => i.code)).toEqual(['local-user']);
    const bySource: Record<string, number> = {};
    for (const u of await store.users.listDirectoryStates())
      bySource[u.source] = (bySource[u.source] ?? 0) + 1;
    expect(bySource).toEqual({
      'ldap:central': 1,
      'ldap:north': northCount - 1,
      'ldap:south': southUsers().filter((u) => !u.disabled && u.uid !== 'shared.alpha').length,
      local: 1,
    });
    const again = await replicateFromCentral({ store, config: forests.config(), env: forests.env });
    expect(again).toMatchObject({ added: 0, updated: 0, disabled: 0, deleted: 0 });
  });

  it('add, rename, move, disable and delete in a forest each do the right thing', async () => {
    const base = 'ou=people,dc=north,dc=example';
    const live = northUsers().filter((u) => !u.disabled && u.uid.startsWith('n.'));
    const [renamed, moved, disabled, deleted, leaver] = live.slice(10, 15);
    const before = await contactFor(renamed.uid);
    const movedBefore = await contactFor(moved.uid);
    await withClient(forests.north, async (c) => {
      await c.add(`uid=n.newcomer,ou=sales,${base}`, {
        objectClass: 'inetOrgPerson',
        uid: 'n.newcomer',
        cn: 'New Comer',
        sn: 'Comer',
        displayName: 'New Comer',
      });
      // Rename: the RDN and the alias change; the entryUUID does not.
      await c.modifyDN(renamed.dn, `uid=n.renamed,ou=${renamed.ou},${base}`);
      await c.modify(`uid=n.renamed,ou=${renamed.ou},${base}`, [
        new Change({
          operation: 'replace',
          modification: new Attribute({ type: 'uid', values: ['n.renamed'] }),
        }),
      ]);
      const target = moved.ou === 'finance' ? 'sales' : 'finance';
      await c.modifyDN(moved.dn, `uid=${moved.uid},ou=${target},${base}`);
      await c.del(deleted.dn);
      // Out of scope: the forest's base is ou=people.
      await c.modifyDN(leaver.dn, `uid=${leaver.uid},ou=former,dc=north,dc=example`);
    });
    await setAttr(disabled.dn, 'employeeType', ['disabled']);

    const counter = { writes: 0 };
    const s = await sync({ forests: ['north'], wrapWriter: countingWriter(counter) });
    expect(s.errors).toEqual([]);
    expect(s).toMatchObject({ added: 1, updated: 1, disabled: 3, deleted: 0, exitCode: EXIT.ok });
    // The move changed nothing in the contact: no write for it.
    expect(counter.writes).toBe(5);
    expect(await contactFor('n.newcomer')).toMatchObject({ parleyEnabled: 'TRUE', parleyHome: 'pool1' });
    const after = await contactFor('n.renamed');
    expect(after?.dn).toBe(before?.dn);
    expect(await contactFor(renamed.uid)).toBeUndefined();
    expect((await contactFor(moved.uid))?.dn).toBe(movedBefore?.dn);
    for (const u of [disabled, deleted, leaver])
      expect((await contactFor(u.uid))?.parleyEnabled).toBe('FALSE');

    const [join] = await store.directoryJournal.joinsForAddress(`${moved.uid}@example.com`);
    expect(join.sourceDn).not.toBe(moved.dn);

    // Past the grace period the disabled contacts are deleted.
    const later = new Date(Date.now() + 31 * 86400_000);
    const s2 = await sync({ forests: ['north'], now: () => later });
    expect(s2).toMatchObject({ added: 0, updated: 0, disabled: 0, deleted: 3 });
    for (const u of [disabled, deleted, leaver]) expect(await contactFor(u.uid)).toBeUndefined();

    const r = await replicateFromCentral({ store, config: forests.config(), env: forests.env });
    expect(r.added).toBe(2);
    expect(r.disabled).toBe(4);
    const enabled = async (aor: string) => (await store.users.getUser(aor))?.enabled;
    expect(await enabled('n.renamed@example.com')).toBe(true);
    expect(await enabled(`${renamed.uid}@example.com`)).toBe(false);
    expect(await enabled(`${deleted.uid}@example.com`)).toBe(false);
  });

  it('a run killed half way resumes and finishes the work exactly once', async () => {
    const targets = southUsers()
      .filter((u) => !u.disabled && u.uid.startsWith('s.'))
      .slice(100, 160);
    await withClient(forests.south, async (c) => {
      for (const u of targets) {
        await c.modify(u.dn, [
          new Change({
            operation: 'replace',
            modification: new Attribute({ type: 'displayName', values: [`Renamed ${u.uid}`] }),
          }),
        ]);
      }
    });
    const abort = new AbortController();
    const counter = { writes: 0 };
    const killed = sync({
      forests: ['south'],
      signal: abort.signal,
      wrapWriter: countingWriter(counter, () => {
        if (counter.writes === 25) abort.abort();
      }),
    });
    await expect(killed).rejects.toBeInstanceOf(SyncInterruptedError);
    const killedRun = await store.directoryJournal.lastRun();
    expect(killedRun?.status).toBe('running');

    // Writes already in flight when the signal came finish and are recorded with the rest.
    const doneBefore = (await store.directoryJournal.opCounts(killedRun?.id ?? 0)).done ?? 0;
    expect(doneBefore).toBeGreaterThanOrEqual(25);
    expect(doneBefore).toBeLessThan(targets.length);
    const resumed = await sync({ forests: ['south'] });
    expect(resumed.resumedFrom).toBe(killedRun?.id);
    expect(resumed.updated).toBe(targets.length - doneBefore);
    const status = await store.directoryJournal.runStatus(killedRun?.id ?? 0);
    expect(status).toBe('interrupted');
    for (const u of targets.slice(0, 3))
      expect((await contactFor(u.uid))?.displayName).toBe(`Renamed ${u.uid}`);
    const last = await sync({ forests: ['south'] });
    expect(last).toMatchObject({ added: 0, updated: 0 });
  });

  it('the deletion threshold stops a mass delete unless allowed', async () => {
    const victims = southUsers()
      .filter((u) => !u.disabled && u.uid.startsWith('s.'))
      .slice(300, 340);
    await withClient(forests.south, async (c) => {
      for (const u of victims) await c.del(u.dn);
      await c.add('uid=s.fresh,ou=sales,ou=people,dc=south,dc=example', {
        objectClass: 'inetOrgPerson',
        uid: 's.fresh',
        cn: 'Fresh',
        sn: 'Fresh',
      });
    });
    const config = forests.config({ sync: { maxDeletes: 20 } });
    const refused = await sync({ forests: ['south'] }, config);
    expect(refused.exitCode).toBe(EXIT.refused);
    expect(refused.forests[0]).toMatchObject({
      status: 'refused',
      refusedRemovals: 40,
      added: 1,
      disabled: 0,
    });
    expect((await contactFor(victims[0].uid))?.parleyEnabled).toBe('TRUE');
    const allowed = await sync({ forests: ['south'], allowMassDelete: true }, config);
    expect(allowed).toMatchObject({ exitCode: EXIT.ok, disabled: 40, added: 0 });
    expect((await contactFor(victims[0].uid))?.parleyEnabled).toBe('FALSE');
  });

  it('one forest down fails that forest only', async () => {
    await setAttr(northUsers()[30].dn, 'displayName', ['Changed while south is down']);
    const s = await sync({}, forests.config({ southUrl: 'ldap://127.0.0.1:1' }));
    expect(s.exitCode).toBe(EXIT.partial);
    expect(s.forests.map((f) => [f.forest, f.status])).toEqual([
      ['north', 'ok'],
      ['south', 'failed'],
    ]);
    expect(s.updated).toBe(1);
  });

  it('a held lock refuses a second run with exit code 4', async () => {
    const journal = store.directoryJournal;
    expect(await journal.acquireLock('elsewhere:1', 120)).toEqual({ acquired: true });
    const err = await sync().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DirectoryError);
    expect((err as DirectoryError).exitCode).toBe(EXIT.locked);
    await journal.releaseLock('elsewhere:1');
  });

  it('--full repairs contacts changed or deleted by hand; --dry-run writes nothing', async () => {
    const [a, b] = northUsers()
      .filter((u) => !u.disabled && u.uid.startsWith('n.'))
      .slice(500, 502);
    const ca = await contactFor(a.uid);
    const cb = await contactFor(b.uid);
    await withClient(forests.central, async (c) => {
      await c.del(String(ca?.dn));
      await c.modify(String(cb?.dn), [
        new Change({
          operation: 'replace',
          modification: new Attribute({ type: 'displayName', values: ['Tampered'] }),
        }),
      ]);
    });
    const incremental = await sync({ forests: ['north'] });
    expect(incremental).toMatchObject({ added: 0, updated: 0 });
    const dry = await sync({ forests: ['north'], full: true, dryRun: true });
    expect(dry.planned.map((p) => [p.action, p.sipAddress]).sort()).toEqual(
      [
        ['add', `${a.uid}@example.com`],
        ['update', `${b.uid}@example.com`],
      ].sort(),
    );
    expect(await contactFor(a.uid)).toBeUndefined();
    const full = await sync({ forests: ['north'], full: true });
    expect(full).toMatchObject({ added: 1, updated: 1 });
    expect((await contactFor(b.uid))?.displayName).not.toBe('Tampered');
    expect(await contactFor(a.uid)).toBeDefined();
  });

  it('values with filter metacharacters are escaped, never interpreted', async () => {
    const odd = 'Star * (Paren) \\ Back';
    await setAttr(northUsers()[40].dn, 'displayName', [odd]);
    const hits = await withClient(forests.north, (c) =>
      c.search('dc=north,dc=example', { filter: equalityFilter('displayName', odd), attributes: ['uid'] }),
    );
    expect(hits.searchEntries.map((e) => e.uid)).toEqual([northUsers()[40].uid]);
    const star = await withClient(forests.north, (c) =>
      c.search('dc=north,dc=example', { filter: equalityFilter('uid', '*'), attributes: ['uid'] }),
    );
    expect(star.searchEntries).toEqual([]);
    const s = await sync({ forests: ['north'] });
    expect(s.updated).toBe(1);
    expect((await contactFor(northUsers()[40].uid))?.displayName).toBe(odd);
  });

  // Last: a fresh store makes the forest's contacts again (south's shared alias included).
  it('a whole-forest read killed half way resumes: nothing lost, nothing doubled', async () => {
    const fresh = async <T>(fn: (s: Store) => Promise<T>): Promise<T> => {
      const d = await createTestDatabase();
      try {
        return await fn(createStore(d));
      } finally {
        await d.close();
      }
    };
    const only = { config: forests.config(), env: forests.env, forests: ['south'] };
    // What a whole read of south writes into an empty store.
    const planned = await fresh((s) => runDirectorySync({ ...only, store: s, dryRun: true }));
    expect(planned.forests[0]).toMatchObject({ fullRead: true });
    const total = planned.added;
    expect(total).toBeGreaterThan(1000);

    await fresh(async (s) => {
      const abort = new AbortController();
      const counter = { writes: 0 };
      const killed = runDirectorySync({
        ...only,
        store: s,
        signal: abort.signal,
        // The signal comes with most of the forest still to write (read, queued or not read yet).
        wrapWriter: countingWriter(counter, () => {
          if (counter.writes === 300) abort.abort();
        }),
      });
      await expect(killed).rejects.toBeInstanceOf(SyncInterruptedError);
      const killedRun = await s.directoryJournal.lastRun();
      const doneBefore = (await s.directoryJournal.opCounts(killedRun?.id ?? 0)).done ?? 0;
      expect(doneBefore).toBeGreaterThanOrEqual(300);
      expect(doneBefore).toBeLessThan(total);
      expect(await s.directoryJournal.syncCookie('south')).toBeUndefined();

      const resumed = await runDirectorySync({ ...only, store: s });
      expect(resumed).toMatchObject({ resumedFrom: killedRun?.id, status: 'succeeded' });
      expect(resumed.forests[0]).toMatchObject({ fullRead: true, unchanged: doneBefore });
      expect(resumed.added).toBe(total - doneBefore);
      const last = await runDirectorySync({ ...only, store: s });
      expect(last).toMatchObject({ added: 0, updated: 0, disabled: 0, deleted: 0 });
      expect(last.forests[0]).toMatchObject({ fullRead: false });
    });
  });
});
