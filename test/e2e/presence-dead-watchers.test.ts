import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDebianCommand } from '../support/debian.js';
import { pidf } from '../support/jssip.js';
import { PresenceEndpoint, type SubscriptionDialog } from '../support/presence-endpoint.js';
import { scratchDir } from '../support/scratch.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';
import { injectionFile, SIPP_SCENARIOS } from '../support/sipp.js';

/**
 * Issue 16: a watcher whose connection died stops being counted and notified at once (its
 * subscriptions go with the connection, as its bindings do, after the same grace for a
 * refresh over a new connection), so dead watchers neither hold their user's allowance nor
 * cost the fan-out; and the presence of users who never signed in, or whose endpoints are all
 * gone, is "closed" under load, never a stale "open". Raw TCP endpoints (written from the
 * RFCs) and SIPp killed with SIGKILL.
 */

const PASSWORD = 'secret';
const GRACE_S = 2;
const NOTIFIES = 'parley_presence_notifications_sent_total';

async function subscriptions(t: TestServer): Promise<number> {
  return ((await (await fetch(`${t.server.httpUrl}/health`)).json()) as { subscriptions: number })
    .subscriptions;
}

/** An in-dialog refresh (RFC 6665 4.1.2.1) of a subscription, from whichever connection `ep` has. */
function refresh(ep: PresenceEndpoint, target: string, dialog: SubscriptionDialog) {
  return ep.request('SUBSCRIBE', `sip:${target}`, {
    to: target,
    dialog,
    headers: ['Event: presence', 'Accept: application/pidf+xml', 'Expires: 600'],
  });
}

const basic = (body: string) => /<basic>(\w+)<\/basic>/.exec(body)?.[1];

/** A SIPp running until it ends or is killed (its NOTIFYs answered by the scenario). */
function startSipp(args: string[]): ChildProcess {
  const dir = scratchDir('parley-dead-watchers-');
  const out = openSync(join(dir, 'sipp.out'), 'w');
  return spawn(ensureDebianCommand('sipp', 'sip-tester'), [...args, '-nostdin'], {
    cwd: dir,
    stdio: ['ignore', out, out],
  });
}

/**
 * One describe block's server with the endpoints and SIPp it opens, all closed by stop():
 * a standard server with the grace above, `presence` settings, and these users.
 */
function serverWith(
  users: string[],
  presence: { maxSubscriptionsPerUser?: number; maxSubscriptionsPerEndpoint?: number } = {},
) {
  const f = {
    t: undefined as unknown as TestServer,
    endpoints: [] as PresenceEndpoint[],
    sipps: [] as ChildProcess[],
    async open(user: string): Promise<PresenceEndpoint> {
      const ep = await PresenceEndpoint.open(f.t.tcpPort, user, f.t.domain, PASSWORD);
      f.endpoints.push(ep);
      return ep;
    },
  };
  beforeAll(async () => {
    f.t = await startTestServer({ presence, registrar: { connectionGraceSeconds: GRACE_S } });
    for (const name of users) await f.t.addUser(name, PASSWORD);
  }, 120_000);
  afterAll(async () => {
    for (const child of f.sipps) if (child.exitCode === null) child.kill('SIGKILL');
    for (const e of f.endpoints) e.close();
    await f.t?.stop();
  });
  return f;
}

describe('dead watchers', { timeout: 180_000 }, () => {
  const PER_USER = 3;
  const f = serverWith(['watcher', 'roamer', 'late', 'star', ...[0, 1, 2, 3].map((i) => `p${i}`)], {
    maxSubscriptionsPerUser: PER_USER,
    maxSubscriptionsPerEndpoint: PER_USER,
  });
  const open = (user: string) => f.open(user);

  it("frees the user's allowance and stops notifying once the watcher's connection dies", async () => {
    const dead = await open('watcher');
    for (let i = 0; i < PER_USER; i++) expect((await dead.subscribe(`p${i}@${f.t.domain}`)).status).toBe(200);
    expect((await dead.subscribe(`p3@${f.t.domain}`)).status).toBe(403);
    expect(await subscriptions(f.t)).toBe(PER_USER);

    dead.close();
    // Not after the grace: at once, as the server sees the connection close.
    await expect.poll(() => subscriptions(f.t), { timeout: 1_500, interval: 50 }).toBe(0);

    const again = await open('watcher');
    for (let i = 0; i < PER_USER; i++)
      expect((await again.subscribe(`p${i}@${f.t.domain}`)).status).toBe(200);
    expect((await again.subscribe(`p3@${f.t.domain}`)).status).toBe(403);

    // A change of p0 is one NOTIFY: to the live watcher, none tried towards the dead one.
    const p0 = await open('p0');
    const before = await readMetric(f.t.server.httpUrl, NOTIFIES);
    expect((await p0.publish(pidf(p0.aor, 'open', undefined, 'p0 here'))).status).toBe(200);
    await again.notify(p0.aor, (m) => m.body.includes('p0 here'));
    await new Promise((r) => setTimeout(r, 300));
    expect((await readMetric(f.t.server.httpUrl, NOTIFIES)) - before).toBe(1);
  });

  it('keeps a dialog refreshed over a new connection within the grace; 481 after it', async () => {
    const first = await open('roamer');
    expect((await first.subscribe(`star@${f.t.domain}`)).status).toBe(200);
    const kept = first.lastDialog;
    if (!kept) throw new Error('no dialog');
    first.close();
    await expect.poll(() => subscriptions(f.t), { timeout: 1_500, interval: 50 }).toBe(PER_USER);

    // The client reconnects and refreshes its subscription: the same dialog, notified again.
    const second = await open('roamer');
    expect((await refresh(second, `star@${f.t.domain}`, kept)).status).toBe(200);
    const n = await second.notify(`star@${f.t.domain}`, () => true);
    expect(n.message.header('call-id')).toBe(kept.callId);
    expect(await subscriptions(f.t)).toBe(PER_USER + 1);

    // A watcher that comes back after the grace finds its dialog gone (RFC 6665: subscribe anew).
    const third = await open('late');
    expect((await third.subscribe(`star@${f.t.domain}`)).status).toBe(200);
    const lost = third.lastDialog;
    if (!lost) throw new Error('no dialog');
    third.close();
    await new Promise((r) => setTimeout(r, GRACE_S * 1000 + 700));
    const back = await open('late');
    expect((await refresh(back, `star@${f.t.domain}`, lost)).status).toBe(481);
  });
});

describe('a SIPp watching in numbers, killed', { timeout: 180_000 }, () => {
  const f = serverWith(['fan', 'star', 'steady']);

  it('ends its subscriptions at once: no NOTIFY goes to them after', async () => {
    const WATCHERS = 300;
    const steady = await f.open('steady');
    expect((await steady.subscribe(`star@${f.t.domain}`)).status).toBe(200);
    const rows = Array.from({ length: WATCHERS }, () => ({
      user: 'fan',
      password: PASSWORD,
      domain: f.t.domain,
      extra: 'star',
    }));
    const sipp = startSipp([
      `127.0.0.1:${f.t.tcpPort}`,
      ...['-sf', join(SIPP_SCENARIOS, 'watch-until-quiet.xml'), '-inf', injectionFile(rows)],
      ...['-t', 't1', '-m', String(WATCHERS), '-r', '300', '-l', String(WATCHERS + 10), '-aa'],
    ]);
    f.sipps.push(sipp);
    await expect.poll(() => subscriptions(f.t), { timeout: 30_000, interval: 200 }).toBe(1 + WATCHERS);
    const star = await f.open('star');
    const first = await star.publish(pidf(star.aor, 'open', undefined, 'with fans'));
    expect(first.status).toBe(200);

    sipp.kill('SIGKILL');
    await expect.poll(() => subscriptions(f.t), { timeout: 2_000, interval: 50 }).toBe(1);
    const before = await readMetric(f.t.server.httpUrl, NOTIFIES);
    const changed = await star.publish(
      pidf(star.aor, 'closed', undefined, 'fans gone'),
      first.header('sip-etag'),
    );
    expect(changed.status).toBe(200);
    await steady.notify(star.aor, (m) => m.body.includes('fans gone'));
    await new Promise((r) => setTimeout(r, 500));
    // The live watcher only: none of the 300 dead.
    expect((await readMetric(f.t.server.httpUrl, NOTIFIES)) - before).toBe(1);
  });
});

describe('presence of users not signed in, under load', { timeout: 180_000 }, () => {
  const FANS = 400;
  const f = serverWith(['busy', 'fan', 'probe', 'ghost', 'gone', 'left']);
  const open = (user: string) => f.open(user);

  it('shows them closed while a busy presentity fans out to hundreds of watchers', async () => {
    // Two users sign in over TCP and publish "open"; a third never signs in.
    const gone = await open('gone');
    const left = await open('left');
    for (const ep of [gone, left]) {
      expect(await ep.register()).toBe(200);
      expect((await ep.publish(pidf(ep.aor, 'open', undefined, `${ep.user} here`))).status).toBe(200);
    }
    const probe = await open('probe');
    for (const user of ['ghost', 'gone', 'left'])
      expect((await probe.subscribe(`${user}@${f.t.domain}`)).status).toBe(200);
    const ghostFirst = await probe.notify(`ghost@${f.t.domain}`, () => true);
    expect(basic(ghostFirst.message.body)).toBe('closed');
    await probe.notify(`gone@${f.t.domain}`, (m) => basic(m.body) === 'open');
    await probe.notify(`left@${f.t.domain}`, (m) => basic(m.body) === 'open');

    // The load: FANS watchers of busy (SIPp), and busy changing its state back to back.
    const sipp = startSipp([
      `127.0.0.1:${f.t.tcpPort}`,
      ...[
        '-sf',
        join(SIPP_SCENARIOS, 'watch-until-quiet.xml'),
        '-inf',
        injectionFile(
          Array.from({ length: FANS }, () => ({
            user: 'fan',
            password: PASSWORD,
            domain: f.t.domain,
            extra: 'busy',
          })),
        ),
      ],
      ...['-t', 't1', '-m', String(FANS), '-r', '400', '-l', String(FANS + 10), '-aa'],
    ]);
    f.sipps.push(sipp);
    await expect
      .poll(() => subscriptions(f.t), { timeout: 30_000, interval: 200 })
      .toBeGreaterThanOrEqual(FANS + 3);
    const busy = await open('busy');
    let flapping = true;
    const sentBefore = await readMetric(f.t.server.httpUrl, NOTIFIES);
    const flap = (async () => {
      const first = await busy.publish(pidf(busy.aor, 'open', undefined, 'busy 0'));
      let etag = first.header('sip-etag') ?? '';
      for (let i = 1; flapping; i++) {
        const res = await busy.publish(
          pidf(busy.aor, i % 2 ? 'closed' : 'open', undefined, `busy ${i}`),
          etag,
        );
        etag = res.header('sip-etag') ?? etag;
      }
    })();

    // Under that load: gone's client dies (its connection drops), left unregisters.
    await new Promise((r) => setTimeout(r, 500));
    gone.close();
    const unregistered = await left.request('REGISTER', `sip:${f.t.domain}`, { headers: ['Expires: 0'] });
    expect(unregistered.status).toBe(200);
    const leftClosed = await probe.notify(`left@${f.t.domain}`, (m) => basic(m.body) === 'closed', 10_000);
    const goneClosed = await probe.notify(
      `gone@${f.t.domain}`,
      (m) => basic(m.body) === 'closed',
      (GRACE_S + 8) * 1000,
    );
    expect(leftClosed.message.body).not.toContain('left here');
    expect(goneClosed.message.body).not.toContain('gone here');

    // A watcher arriving now sees all three closed in its first NOTIFY: nothing stale.
    const newcomer = await open('probe');
    for (const user of ['ghost', 'gone', 'left']) {
      expect((await newcomer.subscribe(`${user}@${f.t.domain}`)).status).toBe(200);
      const first = await newcomer.notify(`${user}@${f.t.domain}`, () => true);
      expect(basic(first.message.body), user).toBe('closed');
    }
    flapping = false;
    await flap;
    // The load was real: the fan-out went on throughout.
    expect((await readMetric(f.t.server.httpUrl, NOTIFIES)) - sentBefore).toBeGreaterThan(10 * FANS);
    // And ghost never changed: its only NOTIFY to probe is the first, closed.
    expect(probe.notifiesFrom(`ghost@${f.t.domain}`).map((n) => basic(n.message.body))).toEqual(['closed']);
  });
});
