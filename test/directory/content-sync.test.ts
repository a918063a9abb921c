import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attribute, Change } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { fixtureUsers } from '../../fixtures/ldap/generate.js';
import type { ContactWriter } from '../../src/directory/central.js';
import { EXIT } from '../../src/directory/errors.js';
import { equalityFilter } from '../../src/directory/filter.js';
import { prepareCentral } from '../../src/directory/schema.js';
import { runDirectorySync, type SyncOptions } from '../../src/directory/sync.js';
import { openDatabase } from '../../src/store/open.js';
import type { Database } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import { spawnCli } from '../support/cli.js';
import { createTestDatabase, migratedDataFolder } from '../support/database.js';
import { startTestForests, type TestForests, withClient } from './forests.js';

/**
 * The change-tracking path against real slapd forests with the syncprov overlay: north keeps
 * a large session log (deletes arrive explicitly), south a tiny one (a present phase).
 */
const PER_FOREST = 1500;
let forests: TestForests;
let db: Database;
let store: Store;

const users = (name: 'north' | 'south') =>
  fixtureUsers({
    baseDn: `dc=${name},dc=example`,
    prefix: name[0],
    count: PER_FOREST,
    sharedAliases: name === 'north' ? ['shared.alpha', 'shared.central'] : ['shared.alpha'],
    seed: name === 'north' ? 1 : 2,
  }).filter((u) => !u.disabled && u.uid.startsWith(`${name[0]}.`));

function countingWriter(counter: { writes: number }, onWrite?: () => Promise<void>) {
  return (w: ContactWriter): ContactWriter => ({
    async addContact(dn, attrs) {
      counter.writes++;
      await onWrite?.();
      await w.addContact(dn, attrs);
    },
    async updateContact(dn, attrs, changed) {
      counter.writes++;
      await onWrite?.();
      await w.updateContact(dn, attrs, changed);
    },
    async deleteContact(dn) {
      counter.writes++;
      await onWrite?.();
      await w.deleteContact(dn);
    },
  });
}

function sync(extra: Partial<SyncOptions> = {}) {
  return runDirectorySync({ store, config: forests.config(), env: forests.env, ...extra });
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

const replace = (type: string, values: string[]) =>
  new Change({ operation: 'replace', modification: new Attribute({ type, values }) });

beforeAll(async () => {
  [forests, db] = await Promise.all([
    startTestForests({ perForest: PER_FOREST, southSessionlog: 4 }),
    createTestDatabase(),
  ]);
  store = createStore(db);
  await prepareCentral(forests.config().central, { env: forests.env });
});

afterAll(async () => {
  await forests?.stop();
  await db?.close();
});

describe('content synchronization (RFC 4533) against slapd with syncprov', { timeout: 120_000 }, () => {
  it('the first run reads every user and keeps a cookie; the next reads nothing', async () => {
    const first = await sync();
    expect(first.exitCode).toBe(EXIT.ok);
    for (const f of first.forests) {
      expect(f).toMatchObject({
        tracking: 'content-sync',
        fullRead: true,
        fallback: 'no content-sync cookie yet',
      });
      expect(f.read).toBeGreaterThan(PER_FOREST);
      expect(await store.directoryJournal.syncCookie(f.forest)).toBeDefined();
    }
    const counter = { writes: 0 };
    const second = await sync({ wrapWriter: countingWriter(counter) });
    expect(second.forests.map((f) => [f.tracking, f.fullRead, f.read])).toEqual([
      ['content-sync', false, 0],
      ['content-sync', false, 0],
    ]);
    expect(counter.writes).toBe(0);
  });

  it('adds, modifies, deletes, renames and moves arrive as changes only, deletes explicitly', async () => {
    const base = 'ou=people,dc=north,dc=example';
    const [modified, deleted, renamed, moved, leaver] = users('north').slice(20, 25);
    const renamedBefore = await contactFor(renamed.uid);
    const movedBefore = await contactFor(moved.uid);
    const target = moved.ou === 'sales' ? 'finance' : 'sales';
    await withClient(forests.north, async (c) => {
      await c.add(`uid=n.cs-new,ou=sales,${base}`, {
        objectClass: 'inetOrgPerson',
        uid: 'n.cs-new',
        cn: 'Cs New',
        sn: 'New',
        displayName: 'Cs New',
      });
      await c.modify(modified.dn, [replace('displayName', ['Modified Once'])]);
      await c.del(deleted.dn);
      // modrdn: a new RDN and alias; the entryUUID, and so the contact, stay.
      await c.modifyDN(renamed.dn, `uid=n.cs-renamed,ou=${renamed.ou},${base}`);
      await c.modify(`uid=n.cs-renamed,ou=${renamed.ou},${base}`, [replace('uid', ['n.cs-renamed'])]);
      await c.modifyDN(moved.dn, `uid=${moved.uid},ou=${target},${base}`);
      await c.modifyDN(leaver.dn, `uid=${leaver.uid},ou=former,dc=north,dc=example`);
    });

    const counter = { writes: 0 };
    const s = await sync({ forests: ['north'], wrapWriter: countingWriter(counter) });
    expect(s.errors).toEqual([]);
    expect(s.forests[0]).toMatchObject({ tracking: 'content-sync', fullRead: false, read: 4 });
    expect(s).toMatchObject({ added: 1, updated: 2, disabled: 2, deleted: 0 });
    // The move within the base changes nothing in the contact: no write for it.
    expect(counter.writes).toBe(5);
    expect((await contactFor('n.cs-new'))?.parleyEnabled).toBe('TRUE');
    expect((await contactFor(modified.uid))?.displayName).toBe('Modified Once');
    expect((await contactFor('n.cs-renamed'))?.dn).toBe(renamedBefore?.dn);
    expect(await contactFor(renamed.uid)).toBeUndefined();
    expect((await contactFor(moved.uid))?.dn).toBe(movedBefore?.dn);
    const [join] = await store.directoryJournal.joinsForAddress(`${moved.uid}@example.com`);
    expect(join.sourceDn).toBe(`uid=${moved.uid},ou=${target},${base}`);
    for (const u of [deleted, leaver]) expect((await contactFor(u.uid))?.parleyEnabled).toBe('FALSE');

    const again = await sync({ forests: ['north'] });
    expect(again.forests[0]).toMatchObject({ read: 0, added: 0, updated: 0, disabled: 0 });
  });

  it('an incremental run finds the holders of the addresses it touches: central users, other forests', async () => {
    const [toCentral, toNorth] = users('south').slice(700, 702);
    const northHeld = users('north')[700].uid;
    await withClient(forests.south, async (c) => {
      for (const [u, uid] of [
        [toCentral, 'c.bob'],
        [toNorth, northHeld],
      ] as const) {
        const dn = `uid=${uid},ou=${u.ou},ou=people,dc=south,dc=example`;
        await c.modifyDN(u.dn, `uid=${uid}`);
        await c.modify(dn, [replace('uid', [uid])]);
      }
    });
    const s = await sync({ forests: ['south'] });
    // The two new ones, and shared.alpha's, retried on every run.
    expect(s.forests[0]).toMatchObject({ fullRead: false, read: 2, conflicts: 3 });
    expect(s.conflicts.map((c) => [c.sipAddress, c.heldBy.split(':')[0]]).sort()).toEqual(
      [
        ['c.bob@example.com', 'central'],
        [`${northHeld}@example.com`, 'north'],
        ['shared.alpha@example.com', 'north'],
      ].sort(),
    );
    expect((await contactFor('c.bob'))?.parleySourceForest).toBeUndefined();
    expect((await contactFor(northHeld))?.parleySourceForest).toBe('north');
    // The contacts keep their old addresses until the conflict is resolved.
    expect((await contactFor(toCentral.uid))?.parleySourceForest).toBe('south');
  });

  it('past the session log, a present phase still finds every delete', async () => {
    const victims = users('south').slice(40, 48);
    const changed = users('south').slice(60, 62);
    await withClient(forests.south, async (c) => {
      for (const u of victims) await c.del(u.dn);
      for (const u of changed) await c.modify(u.dn, [replace('displayName', [`Present ${u.uid}`])]);
    });
    const s = await sync({ forests: ['south'] });
    expect(s.errors).toEqual([]);
    // Only the changed entries are read; the present phase lists anchors, not entries.
    expect(s.forests[0]).toMatchObject({ tracking: 'content-sync', fullRead: false, read: 2 });
    expect(s).toMatchObject({ added: 0, updated: 2, disabled: victims.length });
    for (const u of victims) expect((await contactFor(u.uid))?.parleyEnabled).toBe('FALSE');
    expect((await contactFor(changed[0].uid))?.displayName).toBe(`Present ${changed[0].uid}`);
  });

  it('a change made while a run writes is picked up by the next run', async () => {
    const [first, during] = [users('north').slice(100, 130), users('north')[200]];
    await withClient(forests.north, async (c) => {
      for (const u of first) await c.modify(u.dn, [replace('displayName', [`Batch ${u.uid}`])]);
    });
    const counter = { writes: 0 };
    const s = await sync({
      forests: ['north'],
      wrapWriter: countingWriter(counter, async () => {
        if (counter.writes !== 1) return;
        await withClient(forests.north, (c) =>
          c.modify(during.dn, [replace('displayName', ['Changed During'])]),
        );
      }),
    });
    expect(s.updated).toBe(first.length);
    const next = await sync({ forests: ['north'] });
    expect(next.forests[0]).toMatchObject({ fullRead: false, read: 1, updated: 1 });
    expect((await contactFor(during.uid))?.displayName).toBe('Changed During');
  });

  it('a cookie the server refuses falls back to a full reconcile that misses nothing', async () => {
    const [gone, changed] = users('north').slice(300, 302);
    await withClient(forests.north, async (c) => {
      await c.del(gone.dn);
      await c.modify(changed.dn, [replace('displayName', ['After A Refusal'])]);
    });
    // A cookie from the future: slapd answers "consumer state is newer than provider".
    await store.directoryJournal.setSyncCookie(
      'north',
      Buffer.from('rid=000,csn=20991231235959.000000Z#000000#000#000000'),
    );
    const s = await sync({ forests: ['north'] });
    expect(s.errors).toEqual([]);
    expect(s.forests[0].fullRead).toBe(true);
    expect(s.forests[0].fallback).toMatch(/refused the content-sync cookie/);
    expect(s).toMatchObject({ updated: 1, disabled: 1, added: 0 });
    expect((await contactFor(gone.uid))?.parleyEnabled).toBe('FALSE');
    const next = await sync({ forests: ['north'] });
    expect(next.forests[0]).toMatchObject({ fullRead: false, read: 0 });
  });

  it('a lost cookie means a full reconcile, and incremental runs after it', async () => {
    const changed = users('south')[500];
    await withClient(forests.south, (c) => c.modify(changed.dn, [replace('displayName', ['After A Loss'])]));
    await db.query(`DELETE FROM directory_sync_cookies WHERE forest = 'south'`);
    const counter = { writes: 0 };
    const s = await sync({ forests: ['south'], wrapWriter: countingWriter(counter) });
    expect(s.forests[0]).toMatchObject({
      fullRead: true,
      fallback: 'no content-sync cookie yet',
      updated: 1,
    });
    expect(counter.writes).toBe(1);
    const next = await sync({ forests: ['south'] });
    expect(next.forests[0]).toMatchObject({ fullRead: false, read: 0 });
  });

  it('the deletion threshold holds the cookie, so the refused deletes come back with --allow-mass-delete', async () => {
    const victims = users('north').slice(400, 412);
    await withClient(forests.north, async (c) => {
      for (const u of victims) await c.del(u.dn);
    });
    const config = forests.config({ sync: { maxDeletes: 5 } });
    const refused = await runDirectorySync({ store, config, env: forests.env, forests: ['north'] });
    expect(refused.forests[0]).toMatchObject({ status: 'refused', refusedRemovals: victims.length });
    const allowed = await runDirectorySync({
      store,
      config,
      env: forests.env,
      forests: ['north'],
      allowMassDelete: true,
    });
    expect(allowed.forests[0]).toMatchObject({ status: 'ok', fullRead: false, disabled: victims.length });
  });
});

describe('kill -9 in the middle of a run', { timeout: 180_000 }, () => {
  let dir: string;
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the next run resumes: nothing lost, nothing doubled', async () => {
    dir = mkdtempSync(join(tmpdir(), 'parley-sync-kill-'));
    const dataDir = join(dir, 'data');
    migratedDataFolder(dataDir);
    const c = forests.config();
    const configFile = join(dir, 'parley.yaml');
    writeFileSync(
      configFile,
      stringify({
        domain: 'example.com',
        database: { dataDir },
        directory: {
          central: {
            url: c.central.url,
            bindDn: c.central.bindDn,
            bindPasswordEnv: 'CENTRAL_PW',
            baseDn: c.central.baseDn,
            contactContainer: c.central.contactContainer,
            sipDomain: 'example.com',
          },
          forests: c.forests.map((f) => ({
            name: f.name,
            url: f.url,
            bindDn: f.bindDn,
            bindPasswordEnv: `${f.name.toUpperCase()}_PW`,
            baseDn: f.baseDn,
            mapping: { disabled: { attribute: 'employeeType', values: ['disabled'] } },
          })),
          sync: { maxDeletes: 5000 },
        },
      }),
    );
    const run = (onStart?: (pid: number) => Promise<void>) =>
      new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>((resolve) => {
        const child = spawnCli(['directory', 'sync', '--config', configFile, '--forest', 'north', '--json'], {
          env: forests.env,
        });
        let stdout = '';
        child.stdout?.on('data', (d: Buffer) => {
          stdout += d.toString();
        });
        child.on('close', (code, signal) => resolve({ code, signal, stdout }));
        void onStart?.(child.pid ?? 0);
      });
    // This store has no joins yet: its first run reads north in full and settles.
    const bootstrap = await run();
    expect(bootstrap.code).toBe(0);

    // North's users that the tests above leave alone (they change 20-24 and 100-411).
    const targets = users('north').filter((_, i) => i < 20 || (i >= 25 && i < 100) || i >= 412);
    await withClient(forests.north, async (cl) => {
      for (const u of targets) await cl.modify(u.dn, [replace('displayName', [`Killed ${u.uid}`])]);
    });
    const watcher = await forests.central.adminClient();
    const written = async () => {
      const r = await watcher.search(c.central.contactContainer, {
        scope: 'one',
        filter: '(displayName=Killed *)',
        attributes: ['1.1'],
      });
      return r.searchEntries.length;
    };
    let watching = true;
    const killed = await run(async (pid) => {
      // Killed once more than a record batch (250) and the writes in flight (256) show in the
      // central forest: some of the killed run's writes are recorded.
      while (watching && (await written()) < 520) await new Promise((r) => setTimeout(r, 2));
      if (watching) process.kill(pid, 'SIGKILL');
    }).finally(() => {
      watching = false;
    });
    expect(killed.signal).toBe('SIGKILL');
    const atKill = await written();
    expect(atKill).toBeGreaterThanOrEqual(520);
    expect(atKill).toBeLessThan(targets.length);

    const resumed = await run();
    expect(resumed.code).toBe(0);
    const summary = JSON.parse(resumed.stdout) as { resumedFrom?: number; updated: number; status: string };
    expect(summary.resumedFrom).toBeGreaterThan(0);
    expect(summary.status).toBe('succeeded');
    // Writes the killed run made and recorded are not made again; at most the ones made in
    // LDAP but not yet recorded (one record batch, and the writes in flight) are.
    const check = await openDatabase({ dataDir });
    try {
      const ops = await createStore(check).directoryJournal.opCounts(summary.resumedFrom ?? 0);
      const doneBefore = ops.done ?? 0;
      expect(doneBefore + summary.updated).toBeGreaterThanOrEqual(targets.length);
      expect(doneBefore + summary.updated).toBeLessThanOrEqual(targets.length + 250 + 256);
      expect(summary.updated).toBeLessThan(targets.length);
    } finally {
      await check.close();
    }
    expect(await written()).toBe(targets.length);
    await watcher.unbind();
    const last = await run();
    expect(JSON.parse(last.stdout)).toMatchObject({ updated: 0, added: 0, status: 'succeeded' });
  });
});
