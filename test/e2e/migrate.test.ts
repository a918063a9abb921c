import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { replaceContactList } from '../../src/contacts/lists.js';
import { moveWave } from '../../src/migration/mover.js';
import { findWave, planWaves, type WavePlan } from '../../src/migration/plan.js';
import { computeUserHa1 } from '../../src/registrar/ha1.js';
import { createStore, type Store } from '../../src/store/store.js';
import { RoamingClient } from '../migration/roaming-client.js';
import { TestClient } from '../support/jssip.js';
import { startPool, type TestPool } from '../support/pool.js';
import { startTestServer, type TestServer } from '../support/server.js';

const DOMAIN = 'example.com';
const built = existsSync(join(import.meta.dirname, '../../dist/commands/server/start.js'));
/** The servers trust 127.0.0.1, where they connect to each other from; clients come from here. */
const CLIENTS = '127.0.0.2';

// JsSIP opens its WebSocket with the global constructor: from the clients' address.
(globalThis as unknown as { WebSocket: unknown }).WebSocket = class extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols, { localAddress: CLIENTS });
  }
};

/**
 * The mixed environment of a wave migration on loopback: a legacy standard server on its own
 * embedded store, a pool of two front-ends on PostgreSQL, and a director on the pool's store
 * that redirects every sign-in by placement. Clients sign in through the director; a wave
 * moves some of them while they and the users who stay keep working, and they come back on
 * the pool by themselves; a rollback brings them home again. The homes pass requests for
 * each other's users on (the legacy server to the director for the pool's users it does not
 * know, to the pool for users it placed there; the pool to the legacy server by placement),
 * trusting each other and the director as peers (docs/migration.md).
 */
describe.skipIf(!built)('wave migration with signed-in clients', () => {
  let pool: TestPool;
  let legacy: TestServer;
  let director: TestServer;
  let legacyStore: Store;
  let plan: WavePlan;
  const clients: RoamingClient[] = [];
  let jssip: TestClient | undefined;
  const client = (name: string) => {
    const c = new RoamingClient(name, DOMAIN, `${name}-secret`, director.tcpPort, CLIENTS);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    pool = await startPool({ frontends: 2, domain: DOMAIN, trustedPeers: ['127.0.0.1'] });
    director = await startTestServer({
      role: 'director',
      serverId: 'director1',
      database: { url: pool.url },
      trustedPeers: ['127.0.0.1'],
    });
    legacy = await startTestServer({
      home: 'legacy1',
      serverId: 'legacy1',
      trustedPeers: ['127.0.0.1'],
      homes: { director: `sip:127.0.0.1:${director.tcpPort};transport=tcp` },
    });
    legacyStore = createStore(legacy.server.db);
    // The pool's address is its first front-end here (HAProxy's, in production).
    const fe1 = pool.frontends[0];
    await pool.store.homes.upsertHome({
      name: 'pool1',
      kind: 'pool',
      address: `sip:127.0.0.1:${fe1.tcpPort};transport=tcp`,
    });
    await pool.store.homes.upsertHome({
      name: 'legacy1',
      kind: 'standard',
      address: `sip:127.0.0.1:${legacy.tcpPort};transport=tcp`,
    });
    // Legacy users live in the legacy store; the directory also gives the pool's store (which
    // the director reads) their accounts and placement, as replication does.
    for (const name of ['alice', 'bob', 'carol', 'erin']) {
      await legacy.addUser(name, `${name}-secret`);
      const aor = `${name}@${DOMAIN}`;
      const u = (await legacyStore.users.getUser(aor))!;
      await replaceContactList(legacyStore.contactLists, u.id, {
        user: `sip:${aor}`,
        version: 2,
        groups: [{ name: 'Team' }],
        contacts: ['alice', 'bob', 'carol', 'dave']
          .filter((n) => n !== name)
          .map((n) => ({ uri: `sip:${n}@${DOMAIN}`, displayName: n, subscribed: true, groups: ['Team'] })),
        accessRules: [{ pattern: DOMAIN, action: 'allow' }],
      });
      const p = await pool.store.users.createUser({ aor, displayName: name, home: 'legacy1' });
      await pool.store.users.setCredentials(p.id, DOMAIN, computeUserHa1(aor, `${name}-secret`));
    }
    await pool.addUser('dave', 'dave-secret');
    plan = (
      await planWaves({
        sources: [{ home: 'legacy1', store: legacyStore }],
        target: { home: 'pool1', store: pool.store },
        locations: { legacy1: legacy.dataDir, pool1: '$POOL_URL' },
        by: 'home',
        signOutRate: 5,
      })
    ).plan;
    // The administrator's edit: carol stays on the legacy server for now.
    plan.waves[0].users = plan.waves[0].users.filter((aor) => aor !== `carol@${DOMAIN}`);
  }, 180_000);

  afterAll(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    await jssip?.stop().catch(() => undefined);
    await director?.stop();
    await legacy?.stop();
    await pool?.stop();
  });

  it('moves a wave while its users chat; clients come back on the pool by themselves; rollback brings them home', async () => {
    const [alice, bob, carol, dave] = ['alice', 'bob', 'carol', 'dave'].map(client);
    for (const c of [alice, bob, carol, dave]) await c.signIn();
    expect([alice.homePort, bob.homePort, carol.homePort]).toEqual(Array(3).fill(legacy.tcpPort));
    expect(dave.homePort).toBe(pool.frontends[0].tcpPort);
    // A browser client (JsSIP over WebSocket) straight on the legacy server, watching carol.
    jssip = await TestClient.signIn(`ws://127.0.0.1:${legacy.wsPort}`, 'erin', DOMAIN, 'erin-secret');
    const erinWatchesCarol = jssip.watch(`carol@${DOMAIN}`);
    await erinWatchesCarol.until((n) => n.state.startsWith('active'), 10_000);

    // Before: legacy users chat among themselves, and with pool users across homes.
    expect(await alice.message(`carol@${DOMAIN}`, 'before')).toBe(200);
    await expect.poll(() => carol.requests('MESSAGE').length).toBe(1);
    expect(await alice.message(`dave@${DOMAIN}`, 'to the pool')).toBe(200);
    await expect.poll(() => dave.requests('MESSAGE').map((m) => m.body)).toContain('to the pool');
    expect(await dave.message(`carol@${DOMAIN}`, 'to legacy')).toBe(200);
    await expect.poll(() => carol.requests('MESSAGE').map((m) => m.body)).toContain('to legacy');

    // During: alice and carol keep chatting while the wave (alice, bob, erin) moves at 5 sign-outs/s.
    let chatting = true;
    const statuses: number[] = [];
    const chat = (async () => {
      while (chatting) {
        statuses.push(await carol.message(`bob@${DOMAIN}`, `during ${statuses.length}`).catch(() => 0));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const started = Date.now();
    const summary = await moveWave({
      plan,
      wave: findWave(plan, 'legacy1'),
      source: legacyStore,
      target: pool.store,
    });
    expect(summary).toMatchObject({ status: 'done', moved: 3, failed: 0, verify: { ok: true, matched: 3 } });

    // The clients notice the sign-out, ask the director again and register with the pool.
    const fe1 = pool.frontends[0].tcpPort;
    await expect
      .poll(() => [alice.homePort, bob.homePort], { timeout: 20_000, interval: 50 })
      .toEqual([fe1, fe1]);
    const backOnPool = Date.now() - started;
    // carol's messages reached bob on the legacy server, and reach him on the pool now.
    const sentBefore = statuses.length;
    await expect.poll(() => statuses.slice(sentBefore).includes(200), { timeout: 10_000 }).toBe(true);
    chatting = false;
    await chat;
    expect(carol.homePort).toBe(legacy.tcpPort);
    // Only 480 while bob's client was between homes (signed out, not registered again yet).
    expect(statuses.filter((s) => s !== 200 && s !== 480)).toEqual([]);
    const lastDelivered = `during ${statuses.lastIndexOf(200)}`;
    await expect.poll(() => bob.requests('MESSAGE').map((m) => m.body)).toContain(lastDelivered);

    // The JsSIP client's subscription ended with "deactivated" (RFC 6665: subscribe again).
    await erinWatchesCarol.until((n) => n.state.includes('deactivated'), 10_000);

    // After: moved users chat with pool users and with carol, who stayed; their lists came along.
    expect(await alice.message(`dave@${DOMAIN}`, 'after')).toBe(200);
    await expect.poll(() => dave.requests('MESSAGE').map((m) => m.body)).toContain('after');
    expect(await alice.message(`carol@${DOMAIN}`, 'from the pool')).toBe(200);
    await expect.poll(() => carol.requests('MESSAGE').map((m) => m.body)).toContain('from the pool');
    expect(await dave.message(`bob@${DOMAIN}`, 'welcome')).toBe(200);
    await expect.poll(() => bob.requests('MESSAGE').map((m) => m.body)).toContain('welcome');
    const aliceOnPool = (await pool.store.users.getUser(`alice@${DOMAIN}`))!;
    const list = await pool.store.contactLists.get(aliceOnPool.id);
    expect(list.contacts.map((c) => c.uri)).toEqual([
      `sip:bob@${DOMAIN}`,
      `sip:carol@${DOMAIN}`,
      `sip:dave@${DOMAIN}`,
    ]);
    // A subscription on the pool works for the moved user.
    const sub = await alice.subscribe(`dave@${DOMAIN}`, 'presence', 'application/pidf+xml');
    expect([200, 202]).toContain(sub.status);
    console.log(
      `wave of 3 at 5 sign-outs/s: every moved client registered on the pool ${backOnPool} ms after the run began`,
    );

    // Rollback: the pool signs them out, the director sends them home.
    const back = await moveWave({
      plan,
      wave: findWave(plan, 'legacy1'),
      source: legacyStore,
      target: pool.store,
      direction: 'back',
    });
    expect(back).toMatchObject({ status: 'rolled-back', moved: 3 });
    await expect
      .poll(() => [alice.homePort, bob.homePort], { timeout: 20_000, interval: 50 })
      .toEqual([legacy.tcpPort, legacy.tcpPort]);
    expect(await alice.message(`carol@${DOMAIN}`, 'home again')).toBe(200);
    await expect.poll(() => carol.requests('MESSAGE').map((m) => m.body)).toContain('home again');
    expect(await dave.message(`bob@${DOMAIN}`, 'see you on legacy')).toBe(200);
    await expect.poll(() => bob.requests('MESSAGE').map((m) => m.body)).toContain('see you on legacy');
  }, 120_000);
});
