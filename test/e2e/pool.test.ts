import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replaceContactList } from '../../src/contacts/lists.js';
import { ContactListRepository } from '../../src/store/contact-lists.js';
import { createPostgresDatabase } from '../../src/store/postgres.js';
import type { Database } from '../../src/store/sql.js';
import { runCli } from '../support/cli.js';
import { type RunningHaproxy, startHaproxy } from '../support/haproxy.js';
import { pidf, TestClient, type Watch } from '../support/jssip.js';
import { startPool, type TestPool } from '../support/pool.js';
import { fresh, RawSipClient } from '../support/raw-sip.js';

const DOMAIN = 'example.com';

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Which front-end holds the user's registration (from the pool's shared table). */
async function frontendOf(db: Database, aor: string): Promise<string | undefined> {
  const { rows } = await db.query<{ server_id: string }>(
    'SELECT server_id FROM registrations WHERE aor = $1 AND expires_at > now() ORDER BY updated_at DESC',
    [aor],
  );
  return rows[0]?.server_id;
}

async function message(from: TestClient, to: TestClient, text: string): Promise<void> {
  const arrived = to.nextMessage(10_000);
  await from.sendMessage(to.aor, text);
  expect(await arrived).toEqual({ from: from.aor.split('@')[0], body: text });
}

describe('a pool of three front-ends behind HAProxy on one PostgreSQL', () => {
  let pool: TestPool;
  let lb: RunningHaproxy;
  let db: Database;
  const clients: TestClient[] = [];
  let alice: TestClient;
  let bob: TestClient;
  let carol: TestClient;

  beforeAll(async () => {
    // info: the front-ends' connection log names the clients HAProxy's PROXY header gave them.
    pool = await startPool({ frontends: 3, domain: DOMAIN, logLevel: 'info' });
    for (const name of ['alice', 'bob', 'carol']) await pool.addUser(name, `${name}-secret`);
    lb = await startHaproxy({
      backends: pool.frontends.map((f) => ({
        name: f.id,
        host: '127.0.0.1',
        sipTcpPort: f.tcpPort,
        wsPort: f.wsPort,
        healthPort: f.httpPort,
      })),
    });
    db = createPostgresDatabase(pool.url);
    const ws = `ws://127.0.0.1:${lb.wsPort}`;
    alice = await TestClient.signIn(ws, 'alice', DOMAIN, 'alice-secret');
    bob = await TestClient.signIn(ws, 'bob', DOMAIN, 'bob-secret');
    carol = await TestClient.signIn(ws, 'carol', DOMAIN, 'carol-secret');
    clients.push(alice, bob, carol);
  }, 240_000);

  afterAll(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    await db?.close();
    await lb?.stop();
    await pool?.stop();
  });

  it('spreads the users over the front-ends; they see each other and exchange messages', async () => {
    const placed = await eventually('three registrations', async () => {
      const ids = await Promise.all(['alice', 'bob', 'carol'].map((u) => frontendOf(db, `${u}@${DOMAIN}`)));
      return ids.every(Boolean) ? ids : undefined;
    });
    // Round robin: three clients on three different front-ends.
    expect(new Set(placed).size).toBe(3);

    const watch = bob.watch(`alice@${DOMAIN}`);
    await watch.until((n) => n.state.startsWith('active'), 10_000);
    expect((await alice.publish(pidf(`alice@${DOMAIN}`, 'open', 'away', 'at lunch'))).status).toBe(200);
    await watch.until((n) => n.body.includes('away') && n.body.includes('at lunch'), 10_000);

    await message(alice, bob, 'hello across the pool');
    await message(bob, carol, 'and on to carol');
    await message(carol, alice, 'full circle');
  }, 60_000);

  it('knows each client behind HAProxy by its own address (send-proxy-v2, limits.trustedProxies)', async () => {
    // SIP over TCP through HAProxy: the front-end takes the PROXY header off and answers the SIP.
    const client = await RawSipClient.open(lb.tcpPort, '127.0.0.1', '127.0.0.2');
    const branch = fresh('z9hG4bK');
    client.send(`REGISTER sip:${DOMAIN} SIP/2.0
Via: SIP/2.0/TCP 127.0.0.2:${client.localPort};branch=${branch};rport
Max-Forwards: 70
From: <sip:alice@${DOMAIN}>;tag=${fresh('t')}
To: <sip:alice@${DOMAIN}>
Call-ID: ${fresh('c')}
CSeq: 1 REGISTER
Contact: <sip:alice@127.0.0.2:${client.localPort};transport=tcp>
Content-Length: 0

`);
    const challenge = await client.response(5_000);
    expect(challenge.status).toBe(401);
    expect(challenge.header('via')).toContain(branch);
    client.close();

    // A client from 127.0.0.3 that never sends a message: the front-end that times it out
    // logs the client's address, not HAProxy's (which is 127.0.0.1).
    const silent = await RawSipClient.open(lb.tcpPort, '127.0.0.1', '127.0.0.3');
    const line = await eventually(
      'a header timeout logged for 127.0.0.3',
      async () =>
        pool.frontends
          .flatMap((fe) => fe.output().split('\n'))
          .find((l) => l.includes('limits.headerTimeoutMs') && l.includes('"127.0.0.3"')),
      20_000,
    );
    expect(line).not.toContain('"127.0.0.1"');
    await eventually('the silent client disconnected', async () => (silent.closed ? true : undefined), 5_000);
  }, 40_000);

  it('drains a front-end: its users reconnect elsewhere and keep talking', async () => {
    const aliceFe = (await frontendOf(db, `alice@${DOMAIN}`))!;
    const drain = await runCli([
      'server',
      'drain',
      '--server',
      aliceFe,
      '--database',
      pool.url,
      '--wait',
      '--timeout',
      '60',
    ]);
    expect(drain.code, drain.output).toBe(0);
    await lb.waitForServerStatus(aliceFe, 'DOWN', 15_000);
    const moved = await eventually('alice on another front-end', async () => {
      const fe = await frontendOf(db, `alice@${DOMAIN}`);
      return fe && fe !== aliceFe ? fe : undefined;
    });
    expect(pool.frontends.map((f) => f.id).filter((id) => id !== aliceFe)).toContain(moved);
    await message(bob, alice, 'still there after the drain?');
    await message(alice, carol, 'yes, on another front-end');
    const watch: Watch = carol.watch(`alice@${DOMAIN}`);
    expect((await alice.publish(pidf(`alice@${DOMAIN}`, 'open', 'busy', 'back at work'))).status).toBe(200);
    await watch.until((n) => n.body.includes('busy'), 15_000);
  }, 120_000);

  it('survives kill -9 of a front-end: clients re-register, stale registrations are cleaned up, nothing is lost', async () => {
    const lists = new ContactListRepository(db);
    const bobOwner = (await lists.findOwners([`bob@${DOMAIN}`])).get(`bob@${DOMAIN}`)!;
    await replaceContactList(lists, bobOwner.id, {
      user: `sip:bob@${DOMAIN}`,
      version: 0,
      groups: [{ name: 'Team' }],
      contacts: [{ uri: `sip:alice@${DOMAIN}`, displayName: 'Alice', subscribed: true, groups: ['Team'] }],
      accessRules: [],
    });
    const before = await lists.get(bobOwner.id);

    const bobFe = (await frontendOf(db, `bob@${DOMAIN}`))!;
    const victim = pool.frontends.find((f) => f.id === bobFe)!;
    // A second device of bob's, connected straight to that front-end: it cannot come back.
    const stranded = await TestClient.signIn(`ws://127.0.0.1:${victim.wsPort}`, 'bob', DOMAIN, 'bob-secret');
    await eventually('the stranded device registered', async () => {
      const { rows } = await db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM registrations WHERE aor = $1 AND server_id = $2',
        [`bob@${DOMAIN}`, bobFe],
      );
      return rows[0].n >= 2 ? true : undefined;
    });
    await victim.kill('SIGKILL');
    stranded.ua.stop();
    const moved = await eventually(
      'bob re-registered elsewhere',
      async () => {
        const { rows } = await db.query<{ server_id: string }>(
          'SELECT server_id FROM registrations WHERE aor = $1 AND server_id <> $2',
          [`bob@${DOMAIN}`, bobFe],
        );
        return rows[0]?.server_id;
      },
      40_000,
    );
    expect(pool.frontends.map((f) => f.id).filter((id) => id !== bobFe)).toContain(moved);
    // Whoever else was on the dead front-end reconnects too before the conversation goes on.
    await eventually(
      'everybody on a surviving front-end',
      async () => {
        const fes = await Promise.all(['alice', 'bob', 'carol'].map((u) => frontendOf(db, `${u}@${DOMAIN}`)));
        return fes.every((fe) => fe && fe !== bobFe) ? true : undefined;
      },
      40_000,
    );
    await message(alice, bob, 'are you back?');
    await message(bob, carol, 'back, through another front-end');

    // The survivors notice the silent front-end and drop what it held.
    await eventually(
      'the dead front-end swept',
      async () => {
        const { rows } = await db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM registrations WHERE server_id = $1',
          [bobFe],
        );
        return rows[0].n === 0 ? true : undefined;
      },
      60_000,
    );
    const { rows: users } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
    expect(users[0].n).toBe(3);
    const after = await lists.get(bobOwner.id);
    expect(after.contacts).toEqual(before.contacts);
  }, 150_000);
});
