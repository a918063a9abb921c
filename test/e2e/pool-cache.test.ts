import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from '../support/jssip.js';
import { type PoolFrontend, startPool, type TestPool } from '../support/pool.js';

const DOMAIN = 'example.com';

/** parley_pool_binding_lookups_total of one source on a front-end's /metrics. */
async function lookups(fe: PoolFrontend, source: 'cache' | 'store'): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${fe.httpPort}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('parley_pool_binding_lookups_total{') && l.includes(`source="${source}"`));
  if (!line) throw new Error(`no parley_pool_binding_lookups_total{source="${source}"} on ${fe.id}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function frontendOf(pool: TestPool, aor: string): Promise<string | undefined> {
  return (await pool.store.registrations.listBindings(aor))[0]?.serverId;
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends and reports the outcome: 'delivered' when the recipient got it, else the failure. */
async function attempt(from: TestClient, to: TestClient | string, text: string): Promise<string> {
  const aor = typeof to === 'string' ? to : to.aor;
  const arrived = typeof to === 'string' ? undefined : to.nextMessage(3_000).catch(() => undefined);
  try {
    // A MESSAGE routed to a flow that just went waits for its transaction's timeout: give up sooner.
    const late = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('no answer within 3 s')), 3_000),
    );
    await Promise.race([from.sendMessage(aor, text), late]);
  } catch (err) {
    return (err as Error).message;
  }
  const got = await arrived;
  return got?.body === text || typeof to === 'string' ? 'delivered' : 'lost';
}

describe('a pool front-end caches the bindings other front-ends hold (LISTEN/NOTIFY)', () => {
  let pool: TestPool;
  let fe1: PoolFrontend;
  let fe2: PoolFrontend;
  const clients: TestClient[] = [];
  const signIn = async (fe: PoolFrontend, user: string) => {
    const c = await TestClient.signIn(`ws://127.0.0.1:${fe.wsPort}`, user, DOMAIN, `${user}-secret`);
    clients.push(c);
    await until(
      `${user}'s binding in the pool's table`,
      async () => (await frontendOf(pool, c.aor)) === fe.id,
    );
    return c;
  };

  beforeAll(async () => {
    pool = await startPool({ frontends: 2, domain: DOMAIN });
    [fe1, fe2] = pool.frontends;
    for (const name of ['alice', 'bob', 'carol', 'dave']) await pool.addUser(name, `${name}-secret`);
  }, 240_000);

  afterAll(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    await pool?.stop();
  });

  it('routes MESSAGEs to a user on the other front-end without a query per message', async () => {
    const alice = await signIn(fe1, 'alice');
    const bob = await signIn(fe2, 'bob');
    const store0 = await lookups(fe1, 'store');
    const cache0 = await lookups(fe1, 'cache');
    for (let i = 0; i < 20; i++) expect(await attempt(alice, bob, `hello ${i}`)).toBe('delivered');
    // The first MESSAGE may ask the store; the next 19 are answered from memory.
    expect((await lookups(fe1, 'store')) - store0).toBeLessThanOrEqual(1);
    expect((await lookups(fe1, 'cache')) - cache0).toBeGreaterThanOrEqual(19);
    // And back the other way, through fe2's own cache.
    expect(await attempt(bob, alice, 'hello back')).toBe('delivered');
  }, 60_000);

  it('sees a sign-in and a sign-out on the other front-end at once', async () => {
    const alice = clients[0];
    // carol is offline: fe1 remembers she has no bindings anywhere (480, no query next time).
    expect(await attempt(alice, `carol@${DOMAIN}`, 'anyone?')).toMatch(/480/);
    const store0 = await lookups(fe1, 'store');
    expect(await attempt(alice, `carol@${DOMAIN}`, 'still nobody?')).toMatch(/480/);
    expect(await lookups(fe1, 'store')).toBe(store0);
    // She signs in on fe2: its announcement makes fe1 forget the empty answer.
    const carol = await signIn(fe2, 'carol');
    const signedInAt = Date.now();
    await until(
      'a MESSAGE to carol delivered',
      async () => (await attempt(alice, carol, 'found you')) === 'delivered',
    );
    expect(Date.now() - signedInAt).toBeLessThan(2_000);
    // She signs out: fe1 stops sending her messages (480, not a relay to a dead flow).
    await carol.stop();
    clients.splice(clients.indexOf(carol), 1);
    const signedOutAt = Date.now();
    await until('carol unreachable', async () =>
      /480/.test(await attempt(alice, `carol@${DOMAIN}`, 'gone?')),
    );
    // JsSIP may close its socket before its un-REGISTER is read: then the binding goes once
    // the connection grace (registrar.connectionGraceSeconds, 5 s) has passed.
    expect(Date.now() - signedOutAt).toBeLessThan(7_000);
  }, 60_000);

  it('starts over after losing its LISTEN connection, and caches again once it is back', async () => {
    const [alice, bob] = clients;
    expect(await attempt(alice, `dave@${DOMAIN}`, 'dave?')).toMatch(/480/);
    // PostgreSQL ends every LISTEN session (a restart or a network cut would): changes meanwhile are lost.
    const ended = await pool.store.db.query<{ n: number }>(
      "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    );
    expect(ended.rows[0].n).toBeGreaterThanOrEqual(2);
    const dave = await signIn(fe2, 'dave');
    await until(
      'a MESSAGE to dave delivered',
      async () => (await attempt(alice, dave, 'there you are')) === 'delivered',
    );
    // Back on the feed: lookups are answered from memory again.
    await until('fe1 caching again', async () => {
      const before = await lookups(fe1, 'store');
      for (let i = 0; i < 5; i++) if ((await attempt(alice, bob, `again ${i}`)) !== 'delivered') return false;
      return (await lookups(fe1, 'store')) - before <= 1;
    });
  }, 60_000);
});
