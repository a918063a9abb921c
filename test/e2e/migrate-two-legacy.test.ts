import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { replaceContactList } from '../../src/contacts/lists.js';
import { computeUserHa1 } from '../../src/registrar/ha1.js';
import { createStore, type Store } from '../../src/store/store.js';
import { RoamingClient } from '../migration/roaming-client.js';
import { runCli } from '../support/cli.js';
import { startPool, type TestPool } from '../support/pool.js';
import { startTestServer, type TestServer } from '../support/server.js';

const DOMAIN = 'example.com';
const built =
  existsSync(join(import.meta.dirname, '../../dist/commands/server/start.js')) &&
  existsSync(join(import.meta.dirname, '../../dist/commands/migrate/run.js'));
/** The servers trust 127.0.0.1, where they connect to each other from; clients come from here. */
const CLIENTS = '127.0.0.2';

/**
 * The setup: TWO legacy standard servers, each on its own embedded store, a pool of
 * two front-ends on PostgreSQL and a director on the pool's store. One plan (the built CLI,
 * `--from` twice, `--by home`) takes users of both legacy servers into the pool, a wave per
 * source; both waves run while the servers are up; afterwards users of both legacy servers
 * (those the administrator kept back) and of the pool, moved or native, exchange MESSAGEs.
 */
describe.skipIf(!built)('wave migration from two legacy servers into one pool', () => {
  let pool: TestPool;
  let director: TestServer;
  const legacy: TestServer[] = [];
  const legacyStores: Store[] = [];
  const clients: RoamingClient[] = [];
  let dir: string;
  const cli = (args: string[]) =>
    runCli(args, {
      cwd: dir,
      env: { POOL_URL: pool.url, PARLEY_DATABASE_URL: undefined, CI: '1' },
      timeoutMs: 60_000,
    });
  const client = (name: string) => {
    const c = new RoamingClient(name, DOMAIN, `${name}-secret`, director.tcpPort, CLIENTS);
    clients.push(c);
    return c;
  };
  /** Who lives on which legacy server; carol and gina stay behind. */
  const USERS: Record<string, string[]> = { legacy1: ['alice', 'bob', 'carol'], legacy2: ['frank', 'gina'] };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mg-two-legacy-'));
    pool = await startPool({ frontends: 2, domain: DOMAIN, trustedPeers: ['127.0.0.1'] });
    director = await startTestServer({
      role: 'director',
      serverId: 'director1',
      database: { url: pool.url },
      trustedPeers: ['127.0.0.1'],
    });
    for (const home of ['legacy1', 'legacy2']) {
      const server = await startTestServer({
        home,
        serverId: home,
        trustedPeers: ['127.0.0.1'],
        homes: { director: `sip:127.0.0.1:${director.tcpPort};transport=tcp` },
      });
      legacy.push(server);
      legacyStores.push(createStore(server.server.db));
      await pool.store.homes.upsertHome({
        name: home,
        kind: 'standard',
        address: `sip:127.0.0.1:${server.tcpPort};transport=tcp`,
      });
    }
    await pool.store.homes.upsertHome({
      name: 'pool1',
      kind: 'pool',
      address: `sip:127.0.0.1:${pool.frontends[0].tcpPort};transport=tcp`,
    });
    for (const [i, home] of ['legacy1', 'legacy2'].entries()) {
      for (const name of USERS[home]) {
        await legacy[i].addUser(name, `${name}-secret`);
        const aor = `${name}@${DOMAIN}`;
        const u = (await legacyStores[i].users.getUser(aor))!;
        await replaceContactList(legacyStores[i].contactLists, u.id, {
          user: `sip:${aor}`,
          version: 1,
          groups: [{ name: 'Friends' }],
          contacts: ['alice', 'frank', 'dave']
            .filter((n) => n !== name)
            .map((n) => ({
              uri: `sip:${n}@${DOMAIN}`,
              displayName: n,
              subscribed: true,
              groups: ['Friends'],
            })),
          accessRules: [],
        });
        // Directory replication gives the pool's store (the director's) every legacy user.
        const p = await pool.store.users.createUser({ aor, displayName: name, home });
        await pool.store.users.setCredentials(p.id, DOMAIN, computeUserHa1(aor, `${name}-secret`));
      }
    }
    await pool.addUser('dave', 'dave-secret');
  }, 180_000);

  afterAll(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    await director?.stop();
    for (const s of legacy) await s.stop();
    await pool?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('plans both legacy servers in one plan, runs a wave per source, and everyone still talks', async () => {
    const [alice, bob, carol, frank, gina, dave] = ['alice', 'bob', 'carol', 'frank', 'gina', 'dave'].map(
      client,
    );
    for (const c of [alice, bob, carol, frank, gina, dave]) await c.signIn();
    const [l1, l2] = legacy.map((s) => s.tcpPort);
    const fe1 = pool.frontends[0].tcpPort;
    expect([alice.homePort, bob.homePort, carol.homePort, frank.homePort, gina.homePort]).toEqual([
      l1,
      l1,
      l1,
      l2,
      l2,
    ]);
    expect(dave.homePort).toBe(fe1);
    // Before: legacy1 and legacy2 users reach each other (through the director) and the pool.
    expect(await alice.message(`frank@${DOMAIN}`, 'l1 to l2 before')).toBe(200);
    await expect.poll(() => frank.requests('MESSAGE').map((m) => m.body)).toContain('l1 to l2 before');
    expect(await gina.message(`dave@${DOMAIN}`, 'l2 to pool before')).toBe(200);
    await expect.poll(() => dave.requests('MESSAGE').map((m) => m.body)).toContain('l2 to pool before');

    const planned = await cli([
      'migrate',
      'plan',
      '--from',
      `legacy1=${legacy[0].dataDir}`,
      '--from',
      `legacy2=${legacy[1].dataDir}`,
      '--to',
      'pool1=$POOL_URL',
      '--by',
      'home',
      '--out',
      'plan.yaml',
      '--json',
    ]);
    expect(planned.code, planned.output).toBe(0);
    expect(JSON.parse(planned.stdout).waves).toEqual([
      { name: 'legacy1', from: 'legacy1', users: 3 },
      { name: 'legacy2', from: 'legacy2', users: 2 },
    ]);
    // The administrator's edit: carol and gina stay on their legacy servers for now.
    const plan = YAML.parse(readFileSync(join(dir, 'plan.yaml'), 'utf8'));
    for (const wave of plan.waves)
      wave.users = wave.users.filter((aor: string) => ![`carol@${DOMAIN}`, `gina@${DOMAIN}`].includes(aor));
    writeFileSync(join(dir, 'plan.yaml'), YAML.stringify(plan));
    expect(plan.stores).toMatchObject({ pool1: '$POOL_URL' });

    for (const [wave, moved] of [
      ['legacy1', 2],
      ['legacy2', 1],
    ] as const) {
      const run = await cli([
        'migrate',
        'run',
        'plan.yaml',
        '--wave',
        wave,
        '--yes',
        '--rate',
        '50',
        '--json',
      ]);
      expect(run.code, run.output).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({
        status: 'done',
        moved,
        failed: 0,
        verify: { ok: true },
      });
    }
    const status = await cli(['migrate', 'status', 'plan.yaml', '--json']);
    expect(
      JSON.parse(status.stdout).waves.map((w: { name: string; state: string }) => [w.name, w.state]),
    ).toEqual([
      ['legacy1', 'done'],
      ['legacy2', 'done'],
    ]);
    expect(await pool.store.users.countUsers({ home: 'pool1' })).toBe(4);
    expect(await legacyStores[0].users.countUsers({ home: 'pool1' })).toBe(2);
    expect(await legacyStores[1].users.countUsers({ home: 'pool1' })).toBe(1);

    // The moved clients come back on the pool by themselves; carol and gina stay home.
    await expect
      .poll(() => [alice.homePort, bob.homePort, frank.homePort], { timeout: 20_000, interval: 50 })
      .toEqual([fe1, fe1, fe1]);
    expect([carol.homePort, gina.homePort]).toEqual([l1, l2]);
    const frankOnPool = (await pool.store.users.getUser(`frank@${DOMAIN}`))!;
    expect((await pool.store.contactLists.get(frankOnPool.id)).contacts.map((c) => c.uri)).toEqual([
      `sip:alice@${DOMAIN}`,
      `sip:dave@${DOMAIN}`,
    ]);

    // After: every pair of homes, both ways: legacy1 (carol), legacy2 (gina), the pool
    // (alice and bob from legacy1, frank from legacy2, dave native).
    const pairs: [RoamingClient, RoamingClient][] = [
      [carol, gina],
      [gina, carol],
      [carol, frank],
      [frank, carol],
      [gina, alice],
      [alice, gina],
      [dave, carol],
      [gina, dave],
      [frank, bob],
      [dave, frank],
    ];
    for (const [from, to] of pairs) {
      const body = `after: ${from.user} to ${to.user}`;
      expect(await from.message(to.aor, body), body).toBe(200);
      await expect.poll(() => to.requests('MESSAGE').map((m) => m.body)).toContain(body);
    }
  }, 180_000);
});
