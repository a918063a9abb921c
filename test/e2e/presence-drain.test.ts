import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { ensureDebianCommand } from '../support/debian.js';
import { startPool, type TestPool } from '../support/pool.js';
import { PresenceEndpoint } from '../support/presence-endpoint.js';
import { scratchDir } from '../support/scratch.js';
import { injectionFile, SIPP_SCENARIOS } from '../support/sipp.js';

/**
 * Issue 16: a drain of a front-end holding 1,000 watched users. The users (SIPp, one
 * connection, REGISTER then PUBLISH) live on front-end 2; their 1,000 watchers (SIPp, one
 * connection) on front-end 1. `parley server drain` of front-end 2 must bring every watcher
 * a NOTIFY within seconds, showing its user offline: the drained front-end removes what its
 * endpoints published in one write, and front-end 1 fans the changes out, rather than the
 * watchers seeing stale "open" presence until the publications expire.
 */

const DOMAIN = 'example.com';
const PASSWORD = 'secret';
const USERS = 1000;

/** The watch loop's NOTIFY count from SIPp's -trace_counts file (first NOTIFY receive column). */
function loopNotifies(dir: string): number {
  const file = readdirSync(dir).find((f) => f.endsWith('_counts.csv'));
  if (!file) return 0;
  const lines = readFileSync(join(dir, file), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  if (lines.length < 2) return 0;
  const head = lines[0].split(';').map((h) => h.trim());
  const i = head.findIndex((h) => /^\d+_NOTIFY_Recv$/.test(h));
  return Number(lines[lines.length - 1].split(';')[i]) || 0;
}

/** A SIPp running in its own folder (where it writes its trace files) until it ends or is killed. */
function startSipp(dir: string, args: string[]): ChildProcess {
  const out = openSync(join(dir, 'sipp.out'), 'w');
  return spawn(ensureDebianCommand('sipp', 'sip-tester'), [...args, '-nostdin', '-trace_err'], {
    cwd: dir,
    stdio: ['ignore', out, out],
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('draining a front-end with 1,000 watched users', { timeout: 300_000 }, () => {
  let pool: TestPool;
  const sipps: ChildProcess[] = [];

  beforeAll(async () => {
    pool = await startPool({ frontends: 2, domain: DOMAIN });
    const names = [
      ...Array.from({ length: USERS }, (_, i) => `star${i}`),
      ...Array.from({ length: USERS }, (_, i) => `fan${i}`),
      'probe',
    ];
    for (let i = 0; i < names.length; i += 50)
      await Promise.all(names.slice(i, i + 50).map((n) => pool.addUser(n, PASSWORD)));
  }, 240_000);

  afterAll(async () => {
    for (const child of sipps) if (child.exitCode === null) child.kill('SIGKILL');
    await pool?.stop();
  });

  it('every watcher gets its NOTIFY, showing its user offline, within seconds', async () => {
    const [fe1, fe2] = pool.frontends;
    // The watched users sign in on front-end 2 and publish "open".
    const stars = Array.from({ length: USERS }, (_, i) => ({
      user: `star${i}`,
      password: PASSWORD,
      domain: DOMAIN,
    }));
    sipps.push(
      startSipp(scratchDir('parley-drain-users-'), [
        `127.0.0.1:${fe2.tcpPort}`,
        ...['-sf', join(SIPP_SCENARIOS, 'register-publish-hold.xml'), '-inf', injectionFile(stars)],
        ...['-t', 't1', '-m', String(USERS), '-r', '200', '-l', String(USERS + 10)],
        ...['-recv_timeout', '20000'],
      ]),
    );
    await until(
      'every watched user published',
      async () => {
        const n = await Promise.all(
          stars.map(async (s) => (await pool.store.publications.listForAor(`${s.user}@${DOMAIN}`)).length),
        );
        return n.every((x) => x === 1) ? true : undefined;
      },
      90_000,
    );

    // Their watchers, on front-end 1: one each, plus a raw endpoint that reads the bodies.
    const fans = Array.from({ length: USERS }, (_, i) => ({
      user: `fan${i}`,
      password: PASSWORD,
      domain: DOMAIN,
      extra: `star${i}`,
    }));
    const dir = scratchDir('parley-drain-watchers-');
    sipps.push(
      startSipp(dir, [
        `127.0.0.1:${fe1.tcpPort}`,
        ...['-sf', join(SIPP_SCENARIOS, 'watch-until-quiet.xml'), '-inf', injectionFile(fans)],
        ...['-t', 't1', '-m', String(USERS), '-r', '200', '-l', String(USERS + 10), '-aa'],
        ...['-trace_counts', '-fd', '1', '-timeout', '200s'],
      ]),
    );
    const probe = await PresenceEndpoint.open(fe1.tcpPort, 'probe', DOMAIN, PASSWORD);
    expect((await probe.subscribe(`star7@${DOMAIN}`)).status).toBe(200);
    await probe.notify(`star7@${DOMAIN}`, (m) => m.body.includes('<basic>open</basic>'));
    await until(
      'every watcher got its first NOTIFY',
      async () => (countsIn(dir) >= USERS ? true : undefined),
      90_000,
    );

    const started = Date.now();
    const drain = await runCli(['server', 'drain', '--server', fe2.id, '--database', pool.url]);
    expect(drain.code, drain.output).toBe(0);
    await until(
      'a NOTIFY for every watcher',
      async () => (countsIn(dir) >= 2 * USERS ? true : undefined),
      30_000,
    );
    const seconds = (Date.now() - started) / 1000;
    // "Within seconds": SIPp's counts file itself is written once a second.
    expect(seconds).toBeLessThan(15);
    const offline = await probe.notify(`star7@${DOMAIN}`, (m) => !m.body.includes('<basic>open</basic>'));
    expect(offline.message.body).toContain('<basic>closed</basic>');
    expect(countsIn(dir)).toBe(2 * USERS);
    probe.close();
  });

  function countsIn(dir: string): number {
    return loopNotifies(dir);
  }
});
