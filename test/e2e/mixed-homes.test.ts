import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { replaceContactList } from '../../src/contacts/lists.js';
import { moveWave } from '../../src/migration/mover.js';
import type { WavePlan } from '../../src/migration/plan.js';
import { computeUserHa1 } from '../../src/registrar/ha1.js';
import { openDatabase } from '../../src/store/open.js';
import type { Database } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import { RoamingClient } from '../migration/roaming-client.js';
import { pidf, TestClient, type Watch } from '../support/jssip.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { fresh, RawSipClient } from '../support/raw-sip.js';
import { startTestServer, type TestServer } from '../support/server.js';

const DOMAIN = 'example.com';
/** Servers trust 127.0.0.1, where they connect to each other from; clients come from here. */
const CLIENTS = '127.0.0.2';

// JsSIP opens its WebSocket with the global constructor: from the clients' address.
(globalThis as unknown as { WebSocket: unknown }).WebSocket = class extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols, { localAddress: CLIENTS });
  }
};

/**
 * The mixed environment of a wave migration (docs/migration.md): a legacy standard server on
 * its own embedded store, a pool front-end and a director on PostgreSQL. Each home serves its
 * own users and forwards requests for the others' to their home (legacy -> director for the
 * pool's users it never heard of; pool -> legacy by placement), asserting the sender
 * (P-Asserted-Identity) to peers that trust each other (trustedPeers). IM and presence cross
 * homes before, during and after a wave moves users; a stranger's forged identity is refused.
 */
describe('homes of a mixed environment talk to each other', { timeout: 120_000 }, () => {
  let pg: TestPostgres;
  let poolDb: Database;
  let poolStore: Store;
  let fe1: TestServer;
  let director: TestServer;
  let legacy: TestServer;
  let legacyStore: Store;
  const roaming: RoamingClient[] = [];
  const browsers: TestClient[] = [];
  const client = (name: string) => {
    const c = new RoamingClient(name, DOMAIN, `${name}-secret`, director.tcpPort, CLIENTS);
    roaming.push(c);
    return c;
  };
  const browser = async (server: TestServer, name: string) => {
    const c = await TestClient.signIn(`ws://127.0.0.1:${server.wsPort}`, name, DOMAIN, `${name}-secret`);
    browsers.push(c);
    return c;
  };
  const aor = (name: string) => `${name}@${DOMAIN}`;
  const health = async (server: TestServer) =>
    (await (await fetch(`${server.server.httpUrl}/health`)).json()) as { subscriptions: number };

  beforeAll(async () => {
    pg = await startTestPostgres();
    const url = await pg.createDatabase();
    poolDb = await openDatabase({ url });
    poolStore = createStore(poolDb);
    await poolStore.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:pool1.example.com' });
    fe1 = await startTestServer({
      role: 'frontend',
      serverId: 'pool1-fe1',
      home: 'pool1',
      database: { url },
      trustedPeers: ['127.0.0.1'],
    });
    director = await startTestServer({
      role: 'director',
      serverId: 'director1',
      database: { url },
      trustedPeers: ['127.0.0.1'],
    });
    legacy = await startTestServer({
      home: 'legacy1',
      serverId: 'legacy1',
      trustedPeers: ['127.0.0.1'],
      homes: { director: `sip:127.0.0.1:${director.tcpPort};transport=tcp` },
    });
    legacyStore = createStore(legacy.server.db);
    await poolStore.homes.upsertHome({
      name: 'pool1',
      kind: 'pool',
      address: `sip:127.0.0.1:${fe1.tcpPort};transport=tcp`,
    });
    await poolStore.homes.upsertHome({
      name: 'legacy1',
      kind: 'standard',
      address: `sip:127.0.0.1:${legacy.tcpPort};transport=tcp`,
    });
    // Legacy users live in the legacy store; replication gives the pool's store their
    // accounts and placement too. The pool's users are unknown to the legacy store.
    for (const name of ['alice', 'bob', 'carol', 'erin']) {
      await legacy.addUser(name, `${name}-secret`);
      const u = await poolStore.users.createUser({ aor: aor(name), displayName: name, home: 'legacy1' });
      await poolStore.users.setCredentials(u.id, DOMAIN, computeUserHa1(aor(name), `${name}-secret`));
    }
    for (const name of ['dave', 'frank']) {
      const u = await poolStore.users.createUser({ aor: aor(name), displayName: name, home: 'pool1' });
      await poolStore.users.setCredentials(u.id, DOMAIN, computeUserHa1(aor(name), `${name}-secret`));
    }
    // frank blocks carol: his home decides, for a watcher another home vouches for.
    const frank = (await poolStore.users.getUser(aor('frank')))!;
    await replaceContactList(poolStore.contactLists, frank.id, {
      user: `sip:${aor('frank')}`,
      version: 1,
      groups: [],
      contacts: [],
      accessRules: [{ pattern: aor('carol'), action: 'block' }],
    });
  }, 180_000);

  afterAll(async () => {
    for (const c of roaming) await c.stop().catch(() => undefined);
    for (const b of browsers) await b.stop().catch(() => undefined);
    await legacy?.stop();
    await director?.stop();
    await fe1?.stop();
    await poolDb?.close();
    await pg?.stop();
  });

  it('IM and presence cross homes before, during and after a wave; forged identities are refused', async () => {
    const [alice, bob, carol, dave] = ['alice', 'bob', 'carol', 'dave'].map(client);
    for (const c of [alice, bob, carol, dave]) await c.signIn();
    expect([alice.homePort, bob.homePort, carol.homePort, dave.homePort]).toEqual([
      legacy.tcpPort,
      legacy.tcpPort,
      legacy.tcpPort,
      fe1.tcpPort,
    ]);
    const erin = await browser(legacy, 'erin');
    const frank = await browser(fe1, 'frank');

    // IM, legacy -> pool (through the director: the legacy store does not know dave) and back
    // (pool -> legacy by placement), delivered with the identity the sender's home checked.
    expect(await carol.message(aor('dave'), 'hello pool')).toBe(200);
    await expect.poll(() => dave.requests('MESSAGE').map((m) => m.body)).toContain('hello pool');
    const got = dave.requests('MESSAGE').find((m) => m.body === 'hello pool')!;
    expect(got.header('p-asserted-identity')).toBe(`<sip:${aor('carol')}>`);
    expect(await dave.message(aor('carol'), 'hello legacy')).toBe(200);
    await expect.poll(() => carol.requests('MESSAGE').map((m) => m.body)).toContain('hello legacy');
    const fromFrank = erin.nextMessage();
    await frank.sendMessage(aor('erin'), 'browser to browser');
    expect(await fromFrank).toEqual({ from: 'frank', body: 'browser to browser' });
    const fromErin = frank.nextMessage();
    await erin.sendMessage(aor('frank'), 'and back');
    expect(await fromErin).toEqual({ from: 'erin', body: 'and back' });

    // Presence both ways: each presentity's home answers, NOTIFYs come back along the
    // Record-Route of the watcher's home to the watcher's own connection.
    expect((await frank.publish(pidf(aor('frank'), 'open', undefined, 'frank on the pool'))).status).toBe(
      200,
    );
    expect((await erin.publish(pidf(aor('erin'), 'open', undefined, 'erin on legacy'))).status).toBe(200);
    const erinWatchesFrank = erin.watch(aor('frank'));
    await erinWatchesFrank.until((n) => n.body.includes('frank on the pool'), 10_000);
    const frankWatchesErin = frank.watch(aor('erin'));
    await frankWatchesErin.until((n) => n.body.includes('erin on legacy'), 10_000);
    expect((await erin.publish(pidf(aor('erin'), 'open', 'busy', 'erin busy'))).status).toBe(200);
    await frankWatchesErin.until((n) => n.body.includes('erin busy'), 10_000);
    // The subscriptions live with the presentities' homes, not the watchers'.
    expect((await health(fe1)).subscriptions).toBe(1);
    expect((await health(legacy)).subscriptions).toBe(1);
    // The pool authorizes carol, whom the legacy server vouches for, by frank's rules: blocked
    // politely (she sees him offline).
    const blocked = await carol.subscribe(aor('frank'), 'presence', 'application/pidf+xml');
    expect(blocked.status).toBe(200);
    await expect
      .poll(() => carol.requests('NOTIFY').filter((n) => n.header('from')?.includes('frank')))
      .toHaveLength(1);
    const politely = carol.requests('NOTIFY').find((n) => n.header('from')?.includes('frank'))!;
    expect(politely.body).toContain('<basic>closed</basic>');
    expect(politely.body).not.toContain('frank on the pool');

    // alice publishes on the legacy server; a watcher on each home.
    expect(await alice.publish(pidf(aor('alice'), 'open', undefined, 'alice on legacy'))).toBe(200);
    const erinWatchesAlice = erin.watch(aor('alice'));
    await erinWatchesAlice.until((n) => n.body.includes('alice on legacy'), 10_000);
    const frankWatchesAlice = frank.watch(aor('alice'));
    await frankWatchesAlice.until((n) => n.body.includes('alice on legacy'), 10_000);
    // alice watches frank through her home.
    expect((await alice.subscribe(aor('frank'), 'presence', 'application/pidf+xml')).status).toBe(200);
    await expect
      .poll(() => alice.requests('NOTIFY').some((n) => n.body.includes('frank on the pool')))
      .toBe(true);

    // A stranger's asserted identity is removed, whichever home it is sent to: challenged,
    // never delivered.
    for (const port of [legacy.tcpPort, fe1.tcpPort]) {
      const stranger = await RawSipClient.open(port, '127.0.0.1', CLIENTS);
      stranger.send(
        [
          `MESSAGE sip:${aor('dave')} SIP/2.0`,
          `Via: SIP/2.0/TCP ${CLIENTS}:${stranger.localPort};branch=z9hG4bK${fresh('s')}`,
          `From: <sip:${aor('alice')}>;tag=${fresh('f')}`,
          `To: <sip:${aor('dave')}>`,
          `Call-ID: ${fresh('forged')}`,
          'CSeq: 1 MESSAGE',
          `P-Asserted-Identity: <sip:${aor('alice')}>`,
          'Max-Forwards: 70',
          'Content-Type: text/plain',
          'Content-Length: 6',
          '',
          'forged',
        ].join('\r\n'),
      );
      expect((await stranger.response()).status).toBe(407);
      stranger.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(dave.requests('MESSAGE').some((m) => m.body === 'forged')).toBe(false);

    // During: alice and bob move to the pool at 5 sign-outs/s while carol keeps writing to bob.
    const plan: WavePlan = {
      version: 1,
      target: 'pool1',
      stores: { legacy1: legacy.dataDir, pool1: '$POOL_URL' },
      signOutRate: 5,
      waves: [{ name: 'legacy1-1', from: 'legacy1', users: [aor('alice'), aor('bob')] }],
    };
    let chatting = true;
    const statuses: number[] = [];
    const chat = (async () => {
      for (let i = 0; chatting; i++) {
        statuses.push(await carol.message(aor('bob'), `during ${i}`).catch(() => 0));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const placedButHere: number[] = [];
    const summary = await moveWave({
      plan,
      wave: plan.waves[0],
      source: legacyStore,
      target: poolStore,
      // Placed in the pool's store, not signed out of the legacy server yet: the pool sends
      // dave's message to bob where bob's client still is.
      afterStep: async (step) => {
        if (step === 'place') placedButHere.push(await dave.message(aor('bob'), 'placed, not moved'));
      },
    });
    expect(placedButHere).toEqual([200]);
    expect(bob.requests('MESSAGE').map((m) => m.body)).toContain('placed, not moved');
    expect(summary).toMatchObject({ status: 'done', moved: 2, failed: 0 });
    await expect
      .poll(() => [alice.homePort, bob.homePort], { timeout: 20_000, interval: 50 })
      .toEqual([fe1.tcpPort, fe1.tcpPort]);
    // Once bob is on the pool, carol's next messages reach him there.
    const sentBefore = statuses.length;
    await expect.poll(() => statuses.slice(sentBefore).includes(200), { timeout: 10_000 }).toBe(true);
    chatting = false;
    await chat;
    // Only 480 while bob's client was between homes (signed out, not yet registered again).
    expect(statuses.filter((s) => s !== 200 && s !== 480)).toEqual([]);
    console.log(`carol -> bob during the wave: ${statuses.join(' ')}`);
    const lastDelivered = `during ${statuses.lastIndexOf(200)}`;
    await expect.poll(() => bob.requests('MESSAGE').map((m) => m.body)).toContain(lastDelivered);

    // After: the moved presentity's watchers on both homes were told "deactivated"; they
    // subscribe again and reach alice's new home, by the new placement in either store.
    await erinWatchesAlice.until((n) => n.state.includes('deactivated'), 10_000);
    await frankWatchesAlice.until((n) => n.state.includes('deactivated'), 10_000);
    expect(await alice.publish(pidf(aor('alice'), 'open', undefined, 'alice on the pool'))).toBe(200);
    const again: Watch[] = [erin.watch(aor('alice')), frank.watch(aor('alice'))];
    for (const w of again) await w.until((n) => n.body.includes('alice on the pool'), 10_000);
    // alice's own watch of frank, held by the pool and routed through the legacy server she
    // left, ends at the first NOTIFY that cannot reach her there (480); she watches again
    // from her new home.
    expect((await frank.publish(pidf(aor('frank'), 'open', undefined, 'frank again'))).status).toBe(200);
    await expect.poll(async () => (await health(fe1)).subscriptions).toBe(4);
    expect((await alice.subscribe(aor('frank'), 'presence', 'application/pidf+xml')).status).toBe(200);
    await expect.poll(() => alice.requests('NOTIFY').some((n) => n.body.includes('frank again'))).toBe(true);
    // The pool now holds the watches of frank (erin's, carol's, alice's) and of alice (erin's,
    // frank's); the legacy server only frank's watch of erin, who stayed.
    expect((await health(fe1)).subscriptions).toBe(5);
    expect((await health(legacy)).subscriptions).toBe(1);

    // Moved users and those who stayed keep chatting across homes.
    expect(await alice.message(aor('carol'), 'from the pool')).toBe(200);
    await expect.poll(() => carol.requests('MESSAGE').map((m) => m.body)).toContain('from the pool');
    expect(await carol.message(aor('alice'), 'from legacy')).toBe(200);
    await expect.poll(() => alice.requests('MESSAGE').map((m) => m.body)).toContain('from legacy');
    const toErin = erin.nextMessage();
    expect(await bob.message(aor('erin'), 'bob from the pool')).toBe(200);
    expect(await toErin).toEqual({ from: 'bob', body: 'bob from the pool' });
  });
});
