import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { replaceContactList } from '../../src/contacts/lists.js';
import { MigrationError } from '../../src/migration/errors.js';
import { MigrationInterruptedError, moveWave, type WaveMoveOptions } from '../../src/migration/mover.js';
import { findWave, parsePlan, planWaves, serializePlan, type WavePlan } from '../../src/migration/plan.js';
import { verifyWave } from '../../src/migration/verify.js';
import type { ContactList } from '../../src/store/contact-lists.js';
import { PLACEMENT_CHANNEL } from '../../src/store/homes.js';
import { createStore, type Store } from '../../src/store/store.js';
import { createTestDatabase } from '../support/database.js';

const DOMAIN = 'example.com';

function list(aor: string, n: number): ContactList {
  return {
    user: `sip:${aor}`,
    version: 3,
    groups: [{ name: 'Team' }, { name: 'Friends' }],
    contacts: Array.from({ length: n }, (_, i) => ({
      uri: `sip:c${i}-${aor}`,
      displayName: `Contact ${i}`,
      subscribed: i % 2 === 0,
      groups: i % 3 === 0 ? ['Team', 'Friends'] : ['Team'],
    })),
    accessRules: [
      { pattern: 'example.com', action: 'allow' },
      { pattern: 'sip:mallory@example.com', action: 'block' },
    ],
  };
}

async function addUser(store: Store, name: string, home: string | null, contacts = 3): Promise<void> {
  const aor = `${name}@${DOMAIN}`;
  const user = await store.users.createUser({ aor, displayName: name, home });
  await store.users.setCredentials(user.id, DOMAIN, { ha1Md5: `md5-${name}`, ha1Sha256: `sha-${name}` });
  await replaceContactList(store.contactLists, user.id, list(aor, contacts));
}

describe('wave migration (two stores)', () => {
  let legacy: Store;
  let pool: Store;
  const names = Array.from({ length: 12 }, (_, i) => `u${String(i).padStart(2, '0')}`);

  beforeEach(async () => {
    legacy = createStore(await createTestDatabase());
    pool = createStore(await createTestDatabase());
    await legacy.homes.upsertHome({
      name: 'legacy1',
      kind: 'standard',
      address: 'sip:127.0.0.1:5070;transport=tcp',
    });
    await pool.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:127.0.0.1:5080;transport=tcp' });
    // A standard server's own users often have no home recorded.
    for (const [i, n] of names.entries()) await addUser(legacy, n, i % 2 === 0 ? 'legacy1' : null);
  });
  afterEach(async () => {
    await Promise.all([legacy.close(), pool.close()]);
  });

  async function plan(extra: Partial<Parameters<typeof planWaves>[0]> = {}): Promise<WavePlan> {
    const result = await planWaves({
      sources: [{ home: 'legacy1', store: legacy }],
      target: { home: 'pool1', store: pool },
      locations: { legacy1: '/srv/legacy1', pool1: '$PARLEY_DATABASE_URL' },
      by: 'home',
      ...extra,
    });
    return result.plan;
  }

  function opts(p: WavePlan, wave: string, extra: Partial<WaveMoveOptions> = {}): WaveMoveOptions {
    return { plan: p, wave: findWave(p, wave), source: legacy, target: pool, signOutRate: 10_000, ...extra };
  }

  it('plans by home, size, domain and OU; refuses duplicates and users past capacity', async () => {
    const byHome = await plan();
    expect(byHome.waves.map((w) => [w.name, w.from, w.users.length])).toEqual([['legacy1', 'legacy1', 12]]);
    const bySize = await plan({ by: 'size', waveSize: 5 });
    expect(bySize.waves.map((w) => w.users.length)).toEqual([5, 5, 2]);
    expect(bySize.waves.map((w) => w.name)).toEqual(['legacy1-1', 'legacy1-2', 'legacy1-3']);
    const directory = new Map(
      names.map((n, i) => [
        `${n}@${DOMAIN}`,
        { dn: `uid=${n},ou=${i < 4 ? 'Sales' : 'R&D'},dc=example,dc=com` },
      ]),
    );
    const byOu = await plan({ by: 'ou', directory });
    expect(byOu.waves.map((w) => [w.name, w.users.length])).toEqual([
      ['legacy1-sales', 4],
      ['legacy1-r-d', 8],
    ]);
    // The same address on two legacy servers: planned once, refused the second time. Only
    // this test has a second legacy store (opening one is seconds of PGlite).
    const legacy2 = createStore(await createTestDatabase());
    onTestFinished(() => legacy2.close());
    await legacy2.homes.upsertHome({
      name: 'legacy2',
      kind: 'standard',
      address: 'sip:127.0.0.1:5071;transport=tcp',
    });
    await addUser(legacy2, 'u00', 'legacy2');
    await addUser(legacy2, 'zed', null);
    const both = await planWaves({
      sources: [
        { home: 'legacy1', store: legacy },
        { home: 'legacy2', store: legacy2 },
      ],
      target: { home: 'pool1', store: pool },
      locations: { legacy1: '/a', legacy2: '/b', pool1: '$URL' },
      by: 'home',
      capacity: 12,
    });
    expect(both.plan.waves.map((w) => [w.name, w.users.length])).toEqual([['legacy1', 12]]);
    expect(both.refused.map((r) => [r.aor, r.reason])).toEqual([
      ['u00@example.com', 'duplicate'],
      ['zed@example.com', 'over-capacity'],
    ]);
    // What the administrator edits is checked again when read.
    const text = serializePlan(byHome);
    expect(parsePlan(text)).toEqual(byHome);
    const twice = text.replace('- u01@example.com', '- u00@example.com');
    expect(() => parsePlan(twice, 'p.yaml')).toThrow(/p.yaml: wave legacy1 lists u00@example.com twice/);
    await expect(plan({ target: { home: 'nope', store: pool } } as never)).rejects.toThrow(MigrationError);
  });

  it('moves a wave: accounts, secrets and lists copied, placement switched on both sides, verified; a second run does nothing', async () => {
    const p = await plan({ by: 'size', waveSize: 8 });
    const placements: string[] = [];
    const stop = await legacy.db.listen(PLACEMENT_CHANNEL, (aor) => placements.push(aor));
    const first = await moveWave(opts(p, 'legacy1-1'));
    expect(first).toMatchObject({ status: 'done', exitCode: 0, moved: 8, failed: 0, resumed: false });
    expect(first.verify).toMatchObject({ ok: true, matched: 8 });
    const moved = findWave(p, 'legacy1-1').users;
    for (const aor of moved) {
      expect((await pool.homes.getPlacement(aor))?.name).toBe('pool1');
      expect((await legacy.homes.getPlacement(aor))?.name).toBe('pool1');
    }
    const alice = (await pool.users.getUser(moved[0]))!;
    expect(await pool.users.getCredentials(moved[0], DOMAIN)).toMatchObject({
      ha1Md5: 'md5-u00',
      enabled: true,
    });
    const copied = await pool.contactLists.get(alice.id);
    expect(copied.contacts).toHaveLength(3);
    expect(copied.version).toBe(3);
    expect(copied.accessRules).toEqual(list(moved[0], 3).accessRules.reverse().reverse());
    // The second wave's users stay.
    expect((await legacy.homes.getPlacement('u08@example.com'))?.name).toBe('legacy1');
    await expect.poll(() => placements.length).toBe(8);
    await stop();
    expect(await pool.migrationJournal.getWave('legacy1-1')).toMatchObject({ state: 'done', users: 8 });

    const again = await moveWave(opts(p, 'legacy1-1'));
    expect(again).toMatchObject({ status: 'nothing-to-do', moved: 0, alreadyDone: 8 });
  });

  it('a dry run reports per user and writes nothing', async () => {
    const p = await plan();
    const dry = await moveWave(opts(p, 'legacy1', { dryRun: true }));
    expect(dry).toMatchObject({ status: 'dry-run', moved: 12 });
    expect(dry.successes[0]).toMatchObject({
      aor: 'u00@example.com',
      action: 'would-move',
      contacts: 3,
      groups: 2,
      rules: 2,
      realms: [DOMAIN],
    });
    expect(await pool.migrationJournal.getWave('legacy1')).toBeUndefined();
    expect(await pool.users.getUser('u00@example.com')).toBeUndefined();
  });

  it('resumes after an interruption at every step: nobody lost, doubled or placed in both homes', async () => {
    const p = await plan();
    const wave = 'legacy1';
    // Attempts die after their first or second step in turn, so every step boundary sees a
    // crash (dying at the first step again and again could stop a run before its journal entry forever).
    let steps = 0;
    for (let attempt = 1; attempt < 100; attempt++) {
      let result: Awaited<ReturnType<typeof moveWave>> | undefined;
      let n = 0;
      try {
        result = await moveWave(
          opts(p, wave, {
            batchSize: 5,
            signOutRate: 40,
            afterStep: () => {
              if (++n === 1 + (attempt % 2)) throw new MigrationInterruptedError('crash');
            },
          }),
        );
      } catch (err) {
        if (!(err instanceof MigrationInterruptedError)) throw err;
      }
      if (result) {
        steps = attempt;
        break;
      }
    }
    expect(steps).toBeGreaterThan(5);
    const users = await pool.migrationJournal.waveUsers(wave);
    expect(users.map((u) => u.state)).toEqual(Array(12).fill('moved'));
    const verify = await verifyWave({
      wave,
      aors: users.map((u) => u.aor),
      source: { home: 'legacy1', store: legacy },
      target: { home: 'pool1', store: pool },
      expectedHome: 'pool1',
    });
    expect(verify).toMatchObject({ ok: true, matched: 12, counts: { source: 12, target: 12 } });
    expect(await pool.users.countUsers()).toBe(12);
    const { rows } = await pool.db.query<{ n: number }>('SELECT count(*)::int AS n FROM contacts');
    expect(rows[0].n).toBe(36);
    expect(await pool.migrationJournal.getWave(wave)).toMatchObject({ state: 'done' });
  });

  it('copies again what a user changed in the old home while the wave ran', async () => {
    const p = await plan();
    let edited = false;
    const summary = await moveWave(
      opts(p, 'legacy1', {
        afterStep: async (step) => {
          if (step !== 'place' || edited) return;
          edited = true;
          const u = (await legacy.users.getUser('u05@example.com'))!;
          await replaceContactList(legacy.contactLists, u.id, list('u05@example.com', 7));
        },
      }),
    );
    expect(summary.status).toBe('done');
    const u = (await pool.users.getUser('u05@example.com'))!;
    expect((await pool.contactLists.get(u.id)).contacts).toHaveLength(7);
  });

  it('paces sign-outs at the configured rate', async () => {
    const p = await plan();
    const summary = await moveWave(opts(p, 'legacy1', { signOutRate: 20 }));
    // 12 users at 20 a second: the last slice is due 0.55 s after the first.
    expect(summary.timings.signOutMs).toBeGreaterThanOrEqual(500);
    expect(summary.timings.signOutMs).toBeLessThan(3000);
  });

  it('verify catches a tampered contact list; rollback moves the wave back with edits made in the pool', async () => {
    const p = await plan();
    await moveWave(opts(p, 'legacy1'));
    const u = (await pool.users.getUser('u03@example.com'))!;
    await pool.db.query("UPDATE contacts SET display_name = 'tampered' WHERE user_id = $1 AND position = 0", [
      u.id,
    ]);
    const aors = findWave(p, 'legacy1').users;
    const check = await verifyWave({
      wave: 'legacy1',
      aors,
      source: { home: 'legacy1', store: legacy },
      target: { home: 'pool1', store: pool },
      expectedHome: 'pool1',
    });
    expect(check.ok).toBe(false);
    expect(check.mismatches).toEqual([
      { aor: 'u03@example.com', problems: ['contact list differs: contacts (3 vs 3)'] },
    ]);

    // A user edits its list on the pool; the rollback takes the edit home.
    const u4 = (await pool.users.getUser('u04@example.com'))!;
    await replaceContactList(pool.contactLists, u4.id, list('u04@example.com', 9));
    const back = await moveWave(opts(p, 'legacy1', { direction: 'back' }));
    expect(back).toMatchObject({ status: 'rolled-back', moved: 12, exitCode: 0 });
    for (const aor of aors) {
      expect((await legacy.homes.getPlacement(aor))?.name).toBe('legacy1');
      expect((await pool.homes.getPlacement(aor))?.name).toBe('legacy1');
    }
    const l4 = (await legacy.users.getUser('u04@example.com'))!;
    expect((await legacy.contactLists.get(l4.id)).contacts).toHaveLength(9);
    expect(await pool.migrationJournal.getWave('legacy1')).toMatchObject({ state: 'rolled-back' });
    // And it can move again.
    const again = await moveWave(opts(p, 'legacy1'));
    expect(again).toMatchObject({ status: 'done', moved: 12 });
  });

  it('refuses a second run while another holds the lock, and a rollback of a wave never run', async () => {
    const p = await plan();
    await pool.migrationJournal.acquireLock('elsewhere:1', 'other', 60);
    await expect(moveWave(opts(p, 'legacy1'))).rejects.toMatchObject({ code: 'MIGRATION_LOCKED' });
    await pool.migrationJournal.releaseLock('elsewhere:1');
    await expect(moveWave(opts(p, 'legacy1', { direction: 'back' }))).rejects.toMatchObject({
      code: 'MIGRATION_WAVE_STATE',
    });
  });
});
