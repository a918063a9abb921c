import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replaceContactList } from '../../src/contacts/lists.js';
import { openDatabase } from '../../src/store/open.js';
import { createStore, type Store } from '../../src/store/store.js';
import { runCli, spawnCli } from '../support/cli.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { startTestServer, type TestServer } from '../support/server.js';

const built = existsSync(join(import.meta.dirname, '../../dist/commands/migrate/run.js'));

/**
 * `parley migrate` end to end through the built CLI: a running legacy standard server (its
 * store reached through its socket) and a pool's PostgreSQL; a run killed with SIGKILL in the
 * middle of a wave, then finished by the next run.
 */
describe.skipIf(!built)('parley migrate (built CLI)', () => {
  let legacy: TestServer;
  let legacyStore: Store;
  let pg: TestPostgres;
  let pool: Store;
  let url: string;
  let dir: string;
  const env = () => ({ POOL_URL: url, PARLEY_DATABASE_URL: undefined, CI: '1' });
  const cli = (args: string[], timeoutMs = 60_000) => runCli(args, { cwd: dir, env: env(), timeoutMs });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mig-cli-'));
    legacy = await startTestServer({ home: 'legacy1', serverId: 'legacy1' });
    legacyStore = createStore(legacy.server.db);
    for (let i = 0; i < 60; i++) {
      const name = `user${String(i).padStart(2, '0')}`;
      await legacy.addUser(name, `${name}-secret`);
      const u = (await legacyStore.users.getUser(`${name}@example.com`))!;
      await replaceContactList(legacyStore.contactLists, u.id, {
        user: `sip:${u.aor}`,
        version: 1,
        groups: [{ name: 'Team' }],
        contacts: Array.from({ length: 5 }, (_, c) => ({
          uri: `sip:c${c}-${name}@example.org`,
          displayName: `C${c}`,
          subscribed: true,
          groups: ['Team'],
        })),
        accessRules: [{ pattern: 'example.com', action: 'allow' }],
      });
    }
    pg = await startTestPostgres();
    url = await pg.createDatabase();
    pool = createStore(await openDatabase({ url }));
    await pool.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:127.0.0.1:5999;transport=tcp' });
  }, 120_000);

  afterAll(async () => {
    await pool?.close();
    await legacy?.stop();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('plans, refuses to move without confirmation, dry-runs, survives kill -9 mid wave, verifies, catches tampering, rolls back', async () => {
    const plan = await cli([
      'migrate',
      'plan',
      '--from',
      `legacy1=${legacy.dataDir}`,
      '--to',
      'pool1=$POOL_URL',
      '--by',
      'size',
      '--wave-size',
      '40',
      '--out',
      'plan.yaml',
      '--json',
    ]);
    expect(plan.code, plan.output).toBe(0);
    expect(JSON.parse(plan.stdout).waves).toEqual([
      { name: 'legacy1-1', from: 'legacy1', users: 40 },
      { name: 'legacy1-2', from: 'legacy1', users: 20 },
    ]);
    const text = readFileSync(join(dir, 'plan.yaml'), 'utf8');
    expect(text).toContain('pool1: $POOL_URL');
    expect(text).not.toContain('postgresql://');

    const unconfirmed = await cli(['migrate', 'run', 'plan.yaml', '--wave', 'legacy1-1']);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain('--yes');

    const dry = await cli(['migrate', 'run', 'plan.yaml', '--wave', 'legacy1-1', '--dry-run', '--json']);
    expect(dry.code, dry.output).toBe(0);
    const drySummary = JSON.parse(dry.stdout);
    expect(drySummary).toMatchObject({ status: 'dry-run', moved: 40 });
    expect(drySummary.successes[0]).toMatchObject({ action: 'would-move', contacts: 5, groups: 1, rules: 1 });
    expect(await pool.users.countUsers()).toBe(0);

    // 40 sign-outs at 10 a second: four seconds to kill it in.
    const child = spawnCli(
      ['migrate', 'run', 'plan.yaml', '--wave', 'legacy1-1', '--yes', '--rate', '10', '--json'],
      {
        cwd: dir,
        env: env(),
      },
    );
    let output = '';
    child.stdout?.on('data', (d) => {
      output += d;
    });
    child.stderr?.on('data', (d) => {
      output += d;
    });
    const exited = new Promise((r) => child.once('exit', r));
    await expect
      .poll(async () => (await pool.migrationJournal.countByState('legacy1-1')).moved ?? 0, {
        timeout: 30_000,
        interval: 50,
      })
      .toBeGreaterThanOrEqual(5);
    child.kill('SIGKILL');
    await exited;
    const interrupted = await pool.migrationJournal.countByState('legacy1-1');
    expect(interrupted.moved, output).toBeLessThan(40);
    expect((await pool.migrationJournal.getWave('legacy1-1'))?.state).toBe('running');
    const mid = await cli(['migrate', 'status', 'plan.yaml', '--json']);
    expect(
      JSON.parse(mid.stdout).waves.map((w: { name: string; state: string }) => [w.name, w.state]),
    ).toEqual([
      ['legacy1-1', 'running'],
      ['legacy1-2', 'planned'],
    ]);

    // The next run takes over the dead run's lock and finishes the wave.
    const resumed = await cli([
      'migrate',
      'run',
      'plan.yaml',
      '--wave',
      'legacy1-1',
      '--yes',
      '--rate',
      '200',
      '--json',
      '--report',
      'wave1.csv',
    ]);
    expect(resumed.code, resumed.output).toBe(0);
    const summary = JSON.parse(resumed.stdout);
    expect(summary).toMatchObject({
      status: 'done',
      resumed: true,
      failed: 0,
      verify: { ok: true, matched: 40 },
    });
    expect(summary.moved + summary.alreadyDone).toBe(40);
    const csv = readFileSync(join(dir, 'wave1.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('aor,from,to,action,state,contacts,groups,rules,realms,checksum,error');
    expect(csv).toHaveLength(41);
    // Nobody lost or doubled; everyone placed in the pool on both sides.
    expect(await pool.users.countUsers()).toBe(40);
    const contacts = await pool.db.query<{ n: number }>('SELECT count(*)::int AS n FROM contacts');
    expect(contacts.rows[0].n).toBe(200);
    expect(await pool.users.countUsers({ home: 'pool1' })).toBe(40);
    expect(await legacyStore.users.countUsers({ home: 'pool1' })).toBe(40);
    const again = await cli(['migrate', 'run', 'plan.yaml', '--wave', 'legacy1-1', '--yes', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ status: 'nothing-to-do', moved: 0 });

    const verified = await cli(['migrate', 'verify', 'plan.yaml', '--wave', 'legacy1-1', '--json']);
    expect(verified.code, verified.output).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, matched: 40, state: 'done' });

    const u = (await pool.users.getUser('user07@example.com'))!;
    await pool.db.query('UPDATE contacts SET display_name = $2 WHERE user_id = $1 AND position = 2', [
      u.id,
      'tampered',
    ]);
    const caught = await cli(['migrate', 'verify', 'plan.yaml', '--wave', 'legacy1-1']);
    expect(caught.code).toBe(1);
    expect(caught.stdout).toContain('user07@example.com: contact list differs');
    expect(caught.stderr).toContain('MIGRATION_VERIFY_FAILED');
    expect((await pool.migrationJournal.getWave('legacy1-1'))?.state).toBe('moved');

    const back = await cli([
      'migrate',
      'rollback',
      'plan.yaml',
      '--wave',
      'legacy1-1',
      '--yes',
      '--rate',
      '500',
      '--json',
    ]);
    expect(back.code, back.output).toBe(0);
    expect(JSON.parse(back.stdout)).toMatchObject({ status: 'rolled-back', moved: 40, verify: { ok: true } });
    expect(await legacyStore.users.countUsers({ home: 'pool1' })).toBe(0);
    expect(await pool.users.countUsers({ home: 'legacy1' })).toBe(40);
    const status = await cli(['migrate', 'status', 'plan.yaml', '--wave', 'legacy1-1', '--users', '--json']);
    const wave = JSON.parse(status.stdout).waves[0];
    expect(wave).toMatchObject({ state: 'rolled-back', byState: { returned: 40 } });
    expect(wave.userStates).toHaveLength(40);
  }, 180_000);
});
