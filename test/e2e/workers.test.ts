import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeHa1 } from '../../src/registrar/digest.js';
import { openDatabase } from '../../src/store/open.js';
import { seedUsers } from '../../src/store/seed.js';
import type { Database } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import { runCli, serverProcessOf } from '../support/cli.js';
import { pidf, TestClient } from '../support/jssip.js';
import { freePort } from '../support/ports.js';
import { readMetric } from '../support/server.js';
import { injectionFile, runSipp, SIPP_SCENARIOS, type SippUser, startSippUas } from '../support/sipp.js';

const DOMAIN = 'example.com';
const root = new URL('../../', import.meta.url).pathname;

interface Clustered {
  child: ChildProcess;
  dataDir: string;
  ws: string;
  tcpPort: number;
  udpPort: number;
  httpUrl: string;
  output: () => string;
}

/**
 * The built CLI with server.workers: 2, on ephemeral loopback ports; resolves once its banner
 * is out. `extraConfig` is appended to its parley.yaml; `prepare` gets the data folder first.
 */
async function startClustered(
  extraConfig = '',
  prepare?: (dataDir: string) => Promise<void>,
): Promise<Clustered> {
  const dataDir = mkdtempSync(join(tmpdir(), 'parley-workers-'));
  const config = join(dataDir, 'parley.yaml');
  writeFileSync(config, `server:\n  workers: 2\nlisten:\n  udp: 127.0.0.1:0\n${extraConfig}`);
  await prepare?.(join(dataDir, 'data'));
  const child = spawn(
    process.execPath,
    [
      join(root, 'bin', 'run.js'),
      'server',
      'start',
      '--config',
      config,
      '--domain',
      DOMAIN,
      '--data-dir',
      join(dataDir, 'data'),
      '--tcp',
      '127.0.0.1:0',
      '--ws',
      '127.0.0.1:0',
      '--http',
      '127.0.0.1:0',
      '--log-level',
      process.env.WORKERS_LOG ?? 'warn',
    ],
    { cwd: dataDir, env: { ...process.env, PARLEY_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const deadline = Date.now() + 120_000;
  while (!/HTTP\s+http:\/\/\S+\/metrics/.test(out)) {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}):\n${out}`);
    if (Date.now() > deadline) throw new Error(`the server did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const port = (t: string) => Number(new RegExp(`SIP\\s+${t}://[^\\s]+:(\\d+)`).exec(out)?.[1]);
  return {
    child,
    dataDir,
    ws: `ws://127.0.0.1:${port('ws')}`,
    tcpPort: port('tcp'),
    udpPort: port('udp'),
    httpUrl: /HTTP\s+(http:\/\/\S+)\/metrics/.exec(out)?.[1] ?? '',
    output: () => out,
  };
}

async function attempt(from: TestClient, to: TestClient | string, text: string): Promise<string> {
  const aor = typeof to === 'string' ? to : to.aor;
  const arrived = typeof to === 'string' ? undefined : to.nextMessage(5_000).catch(() => undefined);
  try {
    await from.sendMessage(aor, text);
  } catch (err) {
    return (err as Error).message;
  }
  if (typeof to === 'string') return 'delivered';
  return (await arrived)?.body === text ? 'delivered' : 'lost';
}

interface WorkerHealth {
  worker: number;
  pid: number;
  status: string;
  registeredEndpoints: number;
  otherWorkersEndpoints: number;
}

async function perWorker(httpUrl: string): Promise<WorkerHealth[]> {
  const health = (await (await fetch(`${httpUrl}/health`)).json()) as { perWorker?: WorkerHealth[] };
  return health.perWorker ?? [];
}

/** Each worker knows every other worker's endpoints, and no more (WorkerBindings). */
async function workersAgree(httpUrl: string): Promise<boolean> {
  const each = await perWorker(httpUrl);
  const total = each.reduce((n, w) => n + w.registeredEndpoints, 0);
  return (
    each.length === 2 &&
    each.every((w) => w.status === 'ok' && w.otherWorkersEndpoints === total - w.registeredEndpoints)
  );
}

/**
 * The loopback connection over which the workers share their bindings: the established one
 * whose far end is a worker's bindings listener (its listening port that is none of its relay,
 * operations or SIP ports), as the ports of its local end.
 */
function bindingsLink(pids: number[], sipPorts: number[]): { sport: number; dport: number } | undefined {
  const lines = (args: string[]) =>
    execFileSync('ss', ['-tnpH', ...args], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
  const listeners = new Set<number>();
  for (const pid of pids) {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const own = (env.find((e) => e.startsWith('PARLEY_CLUSTER_PORTS=')) ?? '')
      .slice(21)
      .split(',')
      .map(Number);
    for (const l of lines(['state', 'listening']))
      if (l.includes(`pid=${pid},`)) {
        const port = portOf(l.trim().split(/\s+/)[2]);
        if (!own.includes(port) && !sipPorts.includes(port)) listeners.add(port);
      }
  }
  for (const l of lines(['state', 'established'])) {
    const [, , local, peer] = l.trim().split(/\s+/);
    if (listeners.has(portOf(peer)) && pids.some((pid) => l.includes(`pid=${pid},`)))
      return { sport: portOf(local), dport: portOf(peer) };
  }
  return undefined;
}

describe('a standard server with two worker processes (server.workers: 2)', () => {
  let s: Clustered;
  let db: Database;
  let store: Store;
  const clients: TestClient[] = [];
  /** The worker each signed-in user's endpoint went to. */
  const placed = new Map<string, number>();

  /** Signs a user in and finds the worker whose endpoint count went up. */
  const signInPlaced = async (name: string): Promise<TestClient> => {
    const before = new Map((await perWorker(s.httpUrl)).map((w) => [w.worker, w.registeredEndpoints]));
    const client = await TestClient.signIn(s.ws, name, DOMAIN, `${name}-secret`);
    clients.push(client);
    await expect
      .poll(
        async () =>
          (await perWorker(s.httpUrl)).find((w) => w.registeredEndpoints > (before.get(w.worker) ?? 0))
            ?.worker,
        { timeout: 5_000 },
      )
      .toBeDefined();
    const after = await perWorker(s.httpUrl);
    placed.set(
      client.aor,
      after.find((w) => w.registeredEndpoints > (before.get(w.worker) ?? 0))?.worker ?? 0,
    );
    return client;
  };

  beforeAll(async () => {
    s = await startClustered();
    // An admin's connection to the store the main process serves (as `parley users` makes).
    db = await openDatabase({ dataDir: join(s.dataDir, 'data') });
    store = createStore(db);
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin']) {
      const aor = `${name}@${DOMAIN}`;
      const user = await store.users.createUser({ aor, displayName: name });
      await store.users.setCredentials(user.id, DOMAIN, {
        ha1Md5: computeHa1(name, DOMAIN, `${name}-secret`, 'MD5'),
        ha1Sha256: computeHa1(name, DOMAIN, `${name}-secret`, 'SHA-256'),
      });
    }
  }, 180_000);

  afterAll(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    await db?.close();
    if (s && s.child.exitCode === null) {
      s.child.kill('SIGINT');
      await new Promise((r) => s.child.once('exit', r));
    }
    if (s) rmSync(s.dataDir, { recursive: true, force: true });
  });

  it('hands connections to both workers; users on different workers exchange messages and presence', async () => {
    const alice = await signInPlaced('alice');
    const bob = await signInPlaced('bob');
    // Round robin: the two connections went to different workers.
    expect(new Set([placed.get(alice.aor), placed.get(bob.aor)]).size).toBe(2);
    // Each worker learns of the other's endpoint over IPC; the store holds no binding (as one
    // process's does not).
    await expect.poll(() => workersAgree(s.httpUrl), { timeout: 5_000 }).toBe(true);
    expect(await store.registrations.listBindings(bob.aor)).toEqual([]);

    expect(await attempt(alice, bob, 'across the workers')).toBe('delivered');
    expect(await attempt(bob, alice, 'and back')).toBe('delivered');

    const watch = bob.watch(alice.aor);
    await watch.until((n) => n.state.startsWith('active'), 10_000);
    expect((await alice.publish(pidf(alice.aor, 'open', 'away', 'in a meeting'))).status).toBe(200);
    await watch.until((n) => n.body.includes('in a meeting'), 10_000);
  }, 60_000);

  it('answers /metrics and /health for all workers together', async () => {
    expect(await readMetric(s.httpUrl, 'parley_registered_endpoints')).toBe(2);
    expect(
      await readMetric(s.httpUrl, 'parley_sip_requests_received_total', { method: 'REGISTER' }),
    ).toBeGreaterThanOrEqual(4);
    const health = (await (await fetch(`${s.httpUrl}/health`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', workers: 2, registeredEndpoints: 2, signedInUsers: 2 });
    expect((await perWorker(s.httpUrl)).map((w) => [w.registeredEndpoints, w.otherWorkersEndpoints])).toEqual(
      [
        [1, 1],
        [1, 1],
      ],
    );
  });

  it('reports both workers to `parley server status` and `parley server sessions`', async () => {
    const dataDir = join(s.dataDir, 'data');
    const status = await runCli(['server', 'status', '--data-dir', dataDir, '--json']);
    expect(status.code, status.output).toBe(0);
    const { servers, totals } = JSON.parse(status.stdout) as {
      servers: Array<{ id: string; live: string; health: { registeredEndpoints?: number } }>;
      totals: { live: { connectedEndpoints: number; signedInUsers: number } };
    };
    expect(
      servers.map((x) => [x.id.replace(/^.*-(w\d)$/, '$1'), x.live, x.health.registeredEndpoints]),
    ).toEqual([
      ['w1', 'up', 1],
      ['w2', 'up', 1],
    ]);
    expect(totals.live).toMatchObject({ connectedEndpoints: 2, signedInUsers: 2 });
    // Each user's endpoint is found on the worker that holds it (bob's watch of alice, held
    // on bob's worker, makes a second entry for alice there, with no endpoint).
    for (const name of ['alice', 'bob']) {
      const one = await runCli([
        'server',
        'sessions',
        '--data-dir',
        dataDir,
        '--user',
        `${name}@${DOMAIN}`,
        '--json',
      ]);
      expect(one.code, one.output).toBe(0);
      const { users } = JSON.parse(one.stdout) as {
        users: Array<{ aor: string; server: string; endpoints: unknown[] }>;
      };
      expect(
        users
          .filter((u) => u.endpoints.length > 0)
          .map((u) => [u.aor, u.server.endsWith(`-w${placed.get(`${name}@${DOMAIN}`)}`), u.endpoints.length]),
      ).toEqual([[`${name}@${DOMAIN}`, true, 1]]);
    }
  });

  it('answers over UDP', async () => {
    const sock = createSocket('udp4');
    try {
      const answer = new Promise<string>((resolve) => sock.once('message', (m) => resolve(m.toString())));
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      const { port } = sock.address();
      const request = [
        `OPTIONS sip:${DOMAIN} SIP/2.0`,
        `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK-workers-1`,
        'Max-Forwards: 70',
        `From: <sip:ping@${DOMAIN}>;tag=1`,
        `To: <sip:${DOMAIN}>`,
        'Call-ID: workers-udp-1',
        'CSeq: 1 OPTIONS',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
      sock.send(request, s.udpPort, '127.0.0.1');
      expect(await answer).toMatch(/^SIP\/2\.0 200 /);
    } finally {
      sock.close();
    }
  });

  it('signs a disabled user out on whichever worker holds them', async () => {
    const carol = await signInPlaced('carol');
    const alice = clients[0];
    expect(await attempt(alice, carol, 'hi carol')).toBe('delivered');
    const cli = await runCli([
      'users',
      'disable',
      'carol',
      '--domain',
      DOMAIN,
      '--data-dir',
      join(s.dataDir, 'data'),
      '--json',
    ]);
    expect(cli.code, cli.output).toBe(0);
    const carolsWorker = placed.get(carol.aor);
    await expect
      .poll(
        async () => (await perWorker(s.httpUrl)).find((w) => w.worker === carolsWorker)?.registeredEndpoints,
        {
          timeout: 10_000,
        },
      )
      .toBe(1);
    // The other worker forgets her too: no route to a binding that is gone.
    await expect.poll(() => workersAgree(s.httpUrl), { timeout: 5_000 }).toBe(true);
    expect(await attempt(alice, `carol@${DOMAIN}`, 'gone?')).toMatch(/4\d\d/);
  }, 60_000);

  it('counts a user signed in on both workers once, and removes the user from both', async () => {
    const health = async () => (await (await fetch(`${s.httpUrl}/health`)).json()) as Record<string, number>;
    const before = await health();
    // Connections go to the workers in turn: erin signs in until she is on both.
    const erins: TestClient[] = [];
    const on = new Set<number>();
    for (let i = 0; i < 4 && on.size < 2; i++) {
      erins.push(await signInPlaced('erin'));
      on.add(placed.get(`erin@${DOMAIN}`) ?? 0);
    }
    expect(on.size).toBe(2);
    await expect.poll(() => workersAgree(s.httpUrl), { timeout: 5_000 }).toBe(true);
    const now = await health();
    expect(now.registeredEndpoints - before.registeredEndpoints).toBe(erins.length);
    // One user, as one process counts her.
    expect(now.signedInUsers - before.signedInUsers).toBe(1);
    expect(await readMetric(s.httpUrl, 'parley_signed_in_users')).toBe(before.signedInUsers + 1);
    const cli = await runCli([
      'users',
      'remove',
      'erin',
      '--domain',
      DOMAIN,
      '--data-dir',
      join(s.dataDir, 'data'),
      '--yes',
      '--json',
    ]);
    expect(cli.code, cli.output).toBe(0);
    await expect
      .poll(async () => (await health()).registeredEndpoints, { timeout: 10_000 })
      .toBe(before.registeredEndpoints);
    await expect.poll(() => workersAgree(s.httpUrl), { timeout: 5_000 }).toBe(true);
    expect((await health()).signedInUsers).toBe(before.signedInUsers);
  }, 60_000);

  it("starts a worker that died again; the other forgets the dead one's endpoints", async () => {
    const pid = serverProcessOf(s.child.pid ?? 0);
    const children = () =>
      readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(children()).toHaveLength(2);
    // Kill bob's worker: alice's (the other) must drop bob's binding there, and bob's client
    // reconnects and registers again (through alice's worker while its own is down).
    const bobs = (await perWorker(s.httpUrl)).find((w) => w.worker === placed.get(`bob@${DOMAIN}`));
    expect(bobs?.pid).toBeGreaterThan(0);
    process.kill(bobs?.pid ?? 0, 'SIGKILL');
    await expect
      .poll(
        async () => {
          const now = children();
          const health = (await (await fetch(`${s.httpUrl}/health`)).json()) as Record<string, unknown>;
          return (
            now.length === 2 &&
            !now.includes(bobs?.pid ?? 0) &&
            health.status === 'ok' &&
            health.workers === 2
          );
        },
        { timeout: 30_000, interval: 250 },
      )
      .toBe(true);
    // The restarted worker got the other's endpoints as a snapshot; the other holds none of
    // the dead worker's (it would count them).
    await expect.poll(() => workersAgree(s.httpUrl), { timeout: 10_000, interval: 250 }).toBe(true);
    // Both workers serve: two new connections, one on each, talk to each other.
    const one = await signInPlaced('alice');
    const two = await signInPlaced('bob');
    await expect.poll(() => workersAgree(s.httpUrl), { timeout: 5_000 }).toBe(true);
    expect(await attempt(one, two, 'after the restart')).toBe('delivered');
    expect(await attempt(two, one, 'and back after the restart')).toBe('delivered');
  }, 60_000);

  it('makes the link between the workers again when it drops; bindings flow over it again', async () => {
    const [one, two] = clients.slice(-2);
    const pids = (await perWorker(s.httpUrl)).map((w) => w.pid);
    const link = bindingsLink(pids, [s.tcpPort, Number(new URL(s.ws).port), s.udpPort]);
    expect(link).toBeDefined();
    const drops = () => s.output().split("link to another worker's bindings dropped").length;
    const before = drops();
    // The kernel resets the link (ss -K), both workers living on.
    execFileSync('ss', ['-K', 'sport', '=', `:${link?.sport}`, 'and', 'dport', '=', `:${link?.dport}`]);
    await expect.poll(drops, { timeout: 5_000 }).toBeGreaterThan(before);
    // A user who signs in now is known to the other worker too, and reachable from it.
    const dave = await signInPlaced('dave');
    await expect.poll(() => workersAgree(s.httpUrl), { timeout: 10_000 }).toBe(true);
    const across = [one, two].find((c) => placed.get(c.aor) !== placed.get(dave.aor));
    expect(across).toBeDefined();
    if (!across) return;
    expect(await attempt(across, dave, 'over the link made again')).toBe('delivered');
    expect(await attempt(dave, across, 'and back')).toBe('delivered');
  }, 60_000);

  it('stops cleanly on SIGINT: workers first, then the store', async () => {
    s.child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => s.child.once('exit', (c) => r(c)));
    expect(code, s.output()).toBe(0);
    expect(s.output()).toContain('Stopped.');
  }, 60_000);
});

describe('SIPp against two worker processes', () => {
  const USERS = 20_000;
  let s: Clustered;
  const user = (name: string, extra?: string): SippUser => ({
    user: name,
    password: 'secret',
    domain: DOMAIN,
    extra,
  });
  /** SIPp processes at once, each one TCP connection (node:cluster deals them to the workers). */
  const lanes = (scenario: string, files: string[], calls: number, rate: number, recvTimeoutMs = 5_000) =>
    Promise.all(
      files.map((inf) =>
        runSipp(
          [
            `127.0.0.1:${s.tcpPort}`,
            ...['-sf', join(SIPP_SCENARIOS, scenario), '-inf', inf, '-t', 't1', '-i', '127.0.0.1'],
            ...[
              '-m',
              String(calls),
              '-r',
              String(rate),
              '-l',
              '5000',
              '-recv_timeout',
              String(recvTimeoutMs),
            ],
            ...['-timeout', '60s', '-timeout_error'],
          ],
          90_000,
        ),
      ),
    );

  beforeAll(async () => {
    // A closed connection's bindings go 1 s after it (5 s by default).
    s = await startClustered('registrar:\n  connectionGraceSeconds: 1\n', async (dataDir) => {
      const db = await openDatabase({ dataDir });
      try {
        const names = ['alice', 'bob', ...Array.from({ length: USERS }, (_, i) => `user${i}`)];
        await seedUsers(
          db,
          names.map((n) => ({
            aor: `${n}@${DOMAIN}`,
            displayName: n,
            ha1Md5: computeHa1(n, DOMAIN, 'secret', 'MD5'),
            ha1Sha256: computeHa1(n, DOMAIN, 'secret', 'SHA-256'),
          })),
          DOMAIN,
        );
      } finally {
        await db.close();
      }
    });
  }, 180_000);

  afterAll(async () => {
    if (s && s.child.exitCode === null) {
      s.child.kill('SIGINT');
      await new Promise((r) => s.child.once('exit', r));
    }
    if (s) rmSync(s.dataDir, { recursive: true, force: true });
  });

  it('delivers MESSAGE from connections on both workers while thousands of users sign out', async () => {
    const uasPort = await freePort();
    const uas = startSippUas(join(SIPP_SCENARIOS, 'uas-message.xml'), uasPort);
    try {
      // Two connections of 10,000 users each sign in, then close: a second later every one of
      // those users signs out, on both workers.
      const half = USERS / 2;
      const signIns = await lanes(
        'register-auth.xml',
        [0, 1].map((lane) =>
          injectionFile(Array.from({ length: half }, (_, i) => user(`user${i * 2 + lane}`))),
        ),
        half,
        2_500,
        // The sign-ins only set the scene: on a CI machine busy with the other test files
        // (the run of 16:21 on 3 December), 507 of 10,000 first REGISTERs waited over 5 s
        // for their 401. The MESSAGEs below keep SIPp's 5 s.
        30_000,
      );
      for (const r of signIns) expect(r.code, r.stdout + r.stderr).toBe(0);
      await new Promise((r) => setTimeout(r, 1_500));
      // bob signs in (at a SIPp UAS) meanwhile: no worker knows where he is yet.
      const [bob] = await lanes(
        'register-contact.xml',
        [injectionFile([user('bob', `127.0.0.1:${uasPort}`)])],
        1,
        1,
      );
      expect(bob.code, bob.stdout + bob.stderr).toBe(0);
      // alice on two connections (one per worker): every MESSAGE answered within SIPp's 5 s.
      const sent = await lanes(
        'uac-message.xml',
        [0, 1].map(() => injectionFile([user('alice', 'bob')])),
        250,
        50,
      );
      for (const r of sent) expect(r.code, r.stdout + r.stderr).toBe(0);
    } finally {
      uas.stop();
    }
  }, 180_000);
});
