import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { pidf, TestClient } from '../support/jssip.js';
import { PresenceEndpoint } from '../support/presence-endpoint.js';
import { scratchDir } from '../support/scratch.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { injectionFile, runSipp, SIPP_SCENARIOS } from '../support/sipp.js';

/**
 * Issue 16: the per-user limits a deployment sets (presence.maxSubscriptionsPerUser,
 * maxSubscriptionsPerEndpoint, maxContactsPerUser) and RFC 6446 rate control (a watcher's
 * min-interval, the server's presence.minNotifyInterval floor), with real clients: SIPp,
 * JsSIP over WebSocket, and raw TCP endpoints written from the RFCs.
 */

const PASSWORD = 'secret';

async function health(t: TestServer): Promise<{ subscriptions: number }> {
  return (await fetch(`${t.server.httpUrl}/health`)).json() as Promise<{ subscriptions: number }>;
}

/** Success and failure counts of a SIPp run from its -trace_stat file. */
function sippCalls(dir: string, output: string): { successful: number; failed: number } {
  const file = readdirSync(dir).find((f) => f.endsWith('.csv'));
  if (!file) throw new Error(`SIPp wrote no statistics: ${output}`);
  const lines = readFileSync(join(dir, file), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const head = lines[0].split(';');
  const last = lines[lines.length - 1].split(';');
  return {
    successful: Number(last[head.indexOf('SuccessfulCall(C)')]),
    failed: Number(last[head.indexOf('FailedCall(C)')]),
  };
}

describe('presence subscription and contact-list limits', { timeout: 180_000 }, () => {
  let t: TestServer;
  const endpoints: PresenceEndpoint[] = [];
  const clients: TestClient[] = [];
  const PER_ENDPOINT = 3;
  const PER_USER = 5;

  beforeAll(async () => {
    t = await startTestServer({
      presence: {
        maxSubscriptionsPerEndpoint: PER_ENDPOINT,
        maxSubscriptionsPerUser: PER_USER,
        maxContactsPerUser: 2,
      },
    });
    for (const name of ['watcher', 'lister', ...Array.from({ length: 10 }, (_, i) => `p${i}`)])
      await t.addUser(name, PASSWORD);
  }, 120_000);

  afterAll(async () => {
    for (const e of endpoints) e.close();
    for (const c of clients) c.stop();
    await t?.stop();
  });

  it('refuses the subscription past the per-endpoint and per-user limits with 403 and a Warning', async () => {
    const desk = await PresenceEndpoint.open(t.tcpPort, 'watcher', t.domain, PASSWORD);
    const phone = await PresenceEndpoint.open(t.tcpPort, 'watcher', t.domain, PASSWORD);
    endpoints.push(desk, phone);
    expect((await desk.subscribe(`p0@${t.domain}`)).status).toBe(200);
    const firstDialog = desk.lastDialog;
    for (let i = 1; i < PER_ENDPOINT; i++)
      expect((await desk.subscribe(`p${i}@${t.domain}`)).status).toBe(200);
    const overEndpoint = await desk.subscribe(`p${PER_ENDPOINT}@${t.domain}`);
    expect(overEndpoint.status).toBe(403);
    expect(overEndpoint.header('warning')).toMatch(/^399 \S+ "at most 3 subscriptions per endpoint"$/);

    // The user's other endpoint may hold the rest of the user's allowance, then no more.
    for (let i = PER_ENDPOINT; i < PER_USER; i++)
      expect((await phone.subscribe(`p${i}@${t.domain}`)).status).toBe(200);
    const overUser = await phone.subscribe(`p${PER_USER}@${t.domain}`);
    expect(overUser.status).toBe(403);
    expect(overUser.header('warning')).toContain('at most 5 subscriptions per user');

    // A JsSIP client of the same user is refused too; its subscription ends on the 403.
    const browser = await TestClient.signIn(`ws://127.0.0.1:${t.wsPort}`, 'watcher', t.domain, PASSWORD);
    clients.push(browser);
    const watch = browser.watch(`p9@${t.domain}`);
    const code = await new Promise<number>((resolve) =>
      watch.subscriber.on('terminated', (c: number) => resolve(c)),
    );
    expect(code).toBe(watch.subscriber.C.SUBSCRIBE_NON_OK_RESPONSE);

    // Ending one subscription makes room for one more.
    expect(firstDialog?.toTag).toBeTruthy();
    if (!firstDialog) return;
    expect((await desk.unsubscribe(`p0@${t.domain}`, firstDialog)).status).toBe(200);
    const holder = await PresenceEndpoint.open(t.tcpPort, 'watcher', t.domain, PASSWORD);
    endpoints.push(holder);
    expect((await holder.subscribe(`p8@${t.domain}`)).status).toBe(200);
  });

  it('refuses a contact list with more contacts than maxContactsPerUser and keeps the stored one', async () => {
    const type = 'application/vnd.parley.contact-list+xml';
    const owner = await TestClient.signIn(`ws://127.0.0.1:${t.wsPort}`, 'lister', t.domain, PASSWORD);
    clients.push(owner);
    const list = (n: number) =>
      [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<contact-lists xmlns="urn:parley:contact-list:1" format-version="1">',
        `<user uri="sip:lister@${t.domain}" version="0"><contacts>`,
        ...Array.from({ length: n }, (_, i) => `<contact uri="sip:p${i}@${t.domain}" subscribed="true"/>`),
        '</contacts></user>',
        '</contact-lists>',
      ].join('\n');
    const ok = await owner.publish(list(2), { event: 'parley-contacts', contentType: type, expires: 0 });
    expect(ok.status).toBe(200);
    const over = await owner.publish(list(3), { event: 'parley-contacts', contentType: type, expires: 0 });
    expect(over.status).toBe(403);
    const mine = owner.watch(`lister@${t.domain}`, 'parley-contacts', type);
    const stored = await mine.until((n) => n.state.startsWith('active') && n.body.includes('<user'));
    expect(stored.body).toContain(`sip:p1@${t.domain}`);
    expect(stored.body).not.toContain(`sip:p2@${t.domain}`);
  });

  it('rejects an import of a list over presence.maxContactsPerUser with the line and the limit', async () => {
    const file = join(t.dataDir, 'too-many.xml');
    const config = join(t.dataDir, 'limits.yaml');
    writeFileSync(
      config,
      `domain: ${t.domain}\ndatabase:\n  dataDir: .\npresence:\n  maxContactsPerUser: 2\n`,
    );
    writeFileSync(
      file,
      [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<contact-lists xmlns="urn:parley:contact-list:1" format-version="1">',
        `<user uri="sip:lister@${t.domain}" version="0"><contacts>`,
        ...[0, 1, 2].map((i) => `<contact uri="sip:p${i}@${t.domain}" subscribed="true"/>`),
        '</contacts></user>',
        '</contact-lists>',
      ].join('\n'),
    );
    const cli = await runCli(['contacts', 'import', file, '--config', config, '--json']);
    expect(cli.code, cli.output).toBe(2);
    expect(cli.output).toContain('more than 2 contacts');
  }, 60_000);
});

describe('subscription limit with SIPp watchers in numbers', { timeout: 180_000 }, () => {
  let t: TestServer;
  const LIMIT = 100;

  beforeAll(async () => {
    t = await startTestServer({ presence: { maxSubscriptionsPerEndpoint: LIMIT } });
    await t.addUser('fan', PASSWORD);
    for (let i = 0; i <= LIMIT; i++) await t.addUser(`star${i}`, PASSWORD);
  }, 120_000);

  afterAll(async () => {
    await t?.stop();
  });

  it(`holds ${LIMIT} subscriptions of one SIPp endpoint and refuses the ${LIMIT + 1}th`, async () => {
    const rows = Array.from({ length: LIMIT + 1 }, (_, i) => ({
      user: 'fan',
      password: PASSWORD,
      domain: t.domain,
      extra: `star${i}`,
    }));
    const dir = scratchDir('parley-sipp-limit-');
    const run = await runSipp([
      `127.0.0.1:${t.tcpPort}`,
      ...['-sf', join(SIPP_SCENARIOS, 'subscribe-hold.xml'), '-inf', injectionFile(rows)],
      ...['-t', 't1', '-m', String(LIMIT + 1), '-r', '50', '-l', String(LIMIT + 10)],
      ...[
        '-timeout',
        '60s',
        '-recv_timeout',
        '10000',
        '-trace_stat',
        '-stf',
        join(dir, 'stat.csv'),
        '-fd',
        '1',
      ],
    ]);
    expect(sippCalls(dir, `${run.stdout.slice(-1500)}${run.stderr.slice(-1500)}`)).toEqual({
      successful: LIMIT,
      failed: 1,
    });
    // SIPp has exited: its connection closed, and the subscriptions made over it went with it
    // (presence-dead-watchers.test.ts), so they no longer hold the endpoint's allowance.
    await expect.poll(async () => (await health(t)).subscriptions, { timeout: 2_000 }).toBe(0);
  });
});

describe('RFC 6446 rate control under a flapping publisher', { timeout: 180_000 }, () => {
  let t: TestServer;
  const endpoints: PresenceEndpoint[] = [];
  const clients: TestClient[] = [];
  const FLOOR_S = 0.5;

  beforeAll(async () => {
    t = await startTestServer({ presence: { minNotifyInterval: FLOOR_S } });
    for (const name of ['flapper', 'calm', 'eager', 'browser']) await t.addUser(name, PASSWORD);
  }, 120_000);

  afterAll(async () => {
    for (const e of endpoints) e.close();
    for (const c of clients) c.stop();
    await t?.stop();
  });

  /** 20 state changes, one every 50 ms: a presentity flapping for a second. */
  async function flap(publisher: PresenceEndpoint, changes = 20): Promise<void> {
    const first = await publisher.publish(pidf(publisher.aor, 'open', undefined, 'change 0'));
    expect(first.status).toBe(200);
    let etag = first.header('sip-etag') ?? '';
    for (let i = 1; i <= changes; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const res = await publisher.publish(
        pidf(publisher.aor, i % 2 ? 'closed' : 'open', undefined, `change ${i}`),
        etag,
      );
      expect(res.status).toBe(200);
      etag = res.header('sip-etag') ?? etag;
    }
  }

  function gaps(times: number[]): number[] {
    return times.slice(1).map((at, i) => at - times[i]);
  }

  it("keeps a watcher's min-interval, then sends the latest state; echoes min-interval in Subscription-State", async () => {
    const flapper = await PresenceEndpoint.open(t.tcpPort, 'flapper', t.domain, PASSWORD);
    const calm = await PresenceEndpoint.open(t.tcpPort, 'calm', t.domain, PASSWORD);
    endpoints.push(flapper, calm);
    expect((await calm.subscribe(flapper.aor, 'presence;min-interval=1')).status).toBe(200);
    const initial = await calm.notify(flapper.aor, () => true);
    expect(initial.message.header('subscription-state')).toMatch(/^active;expires=\d+;min-interval=1$/);
    const started = Date.now();
    await flap(flapper);
    const last = await calm.notify(flapper.aor, (m) => m.body.includes('change 20'), 5_000);
    const received = calm.notifiesFrom(flapper.aor);
    // ~1 s of flapping plus the wait for the last interval: the initial NOTIFY and at most 3 more.
    expect(received.length).toBeLessThanOrEqual(4);
    expect(received.at(-1)).toBe(last);
    // Receive times carry this process's scheduling delays (the server runs in it too): a
    // NOTIFY read late shortens the next gap. The count above is the exact bound.
    for (const gap of gaps(received.map((n) => n.at))) expect(gap).toBeGreaterThanOrEqual(700);
    expect(last.at - started).toBeLessThan(4_000);
  });

  it('applies the server floor to a watcher that asks for nothing, and to one that asks for less', async () => {
    const flapper = await PresenceEndpoint.open(t.tcpPort, 'flapper', t.domain, PASSWORD);
    const eager = await PresenceEndpoint.open(t.tcpPort, 'eager', t.domain, PASSWORD);
    endpoints.push(flapper, eager);
    expect((await eager.subscribe(flapper.aor, 'presence;min-interval=0.1')).status).toBe(200);
    const initial = await eager.notify(flapper.aor, () => true);
    // The notifier may apply a longer interval than asked, and says which (RFC 6446).
    expect(initial.message.header('subscription-state')).toContain(';min-interval=0.5');
    const browser = await TestClient.signIn(`ws://127.0.0.1:${t.wsPort}`, 'browser', t.domain, PASSWORD);
    clients.push(browser);
    const watch = browser.watch(flapper.aor);
    await watch.until((n) => n.state.startsWith('active'));
    const before = watch.notifications.length;
    await flap(flapper);
    await watch.until((n) => n.body.includes('change 20'), 5_000);
    await eager.notify(flapper.aor, (m) => m.body.includes('change 20'), 5_000);
    // 21 changes in about 1.1 s, at most one NOTIFY per 0.5 s (plus the one held to the end).
    expect(watch.notifications.length - before).toBeLessThanOrEqual(5);
    const eagerGaps = gaps(eager.notifiesFrom(flapper.aor).map((n) => n.at));
    for (const gap of eagerGaps) expect(gap).toBeGreaterThanOrEqual(300);
    expect(eager.notifiesFrom(flapper.aor).length).toBeLessThanOrEqual(6);
  });

  it('refuses a min-interval that is not a number of seconds', async () => {
    const eager = await PresenceEndpoint.open(t.tcpPort, 'eager', t.domain, PASSWORD);
    endpoints.push(eager);
    expect((await eager.subscribe(`calm@${t.domain}`, 'presence;min-interval=soon')).status).toBe(400);
  });
});
