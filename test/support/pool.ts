import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { computeUserHa1 } from '../../src/registrar/ha1.js';
import { openDatabase } from '../../src/store/open.js';
import type { Database } from '../../src/store/sql.js';
import { createStore, type Store } from '../../src/store/store.js';
import { processGone, serverProcessOf } from './cli.js';
import { freeLoopbackPorts, type RunningHaproxy, startHaproxy } from './haproxy.js';
import { startTestPostgres, type TestPostgres } from './postgres.js';

const root = new URL('../../', import.meta.url).pathname;
const bin = join(root, 'bin', 'run.js');
const builtStart = join(root, 'dist', 'commands', 'server', 'start.js');

/** One front-end: a `parley server start --role frontend` child process of the built CLI. */
export interface PoolFrontend {
  /** Its serverId: the id of its row in the servers table. */
  id: string;
  readonly process: ChildProcess;
  tcpPort: number;
  wsPort: number;
  httpPort: number;
  healthUrl: string;
  /** Sends a signal (SIGKILL: a crash; SIGTERM: a clean stop; SIGUSR2: drain) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Resolves when the process exits (by itself, e.g. after a drain). */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Starts it again, same id and ports, once it has exited; waits for its /health. */
  restart(): Promise<void>;
  /** What it printed (stdout and stderr, last 256 KiB): for failure messages. */
  output(): string;
}

export interface PoolOptions {
  frontends: number;
  domain: string;
  /** Pool (home) name; default pool1. */
  home?: string;
  /** Put HAProxy (fixtures/haproxy/parley.cfg) in front of the front-ends. */
  loadBalancer?: boolean;
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** The front-ends' trustedPeers (other homes and directors of a mixed environment, docs/migration.md). */
  trustedPeers?: string[];
}

export interface TestPool {
  /** PostgreSQL URL of the pool's store. */
  url: string;
  domain: string;
  home: string;
  frontends: PoolFrontend[];
  /** The load balancer, when asked for. */
  lb?: RunningHaproxy;
  /** A store connection of the test's own (the servers table, registrations ...). */
  store: Store;
  /** Creates name@domain with both HA1s, living in the pool. */
  addUser(name: string, password: string): Promise<void>;
  stop(): Promise<void>;
}

/** Children of every pool not yet stopped: killed if the test process exits without stop(). */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/**
 * A pool for end-to-end tests: a throwaway PostgreSQL, migrated, with a home row for the
 * pool, and `frontends` front-ends of the built CLI (`npm run build` first) on free
 * loopback ports, trusting 127.0.0.1 as their load balancer (limits.trustedProxies), each
 * answering /health before this resolves. Call stop() in afterAll;
 * if starting fails half-way, what was started is stopped before the error is thrown.
 */
export async function startPool(opts: PoolOptions): Promise<TestPool> {
  if (!existsSync(builtStart)) throw new Error('the CLI is not built: run `npm run build` first');
  installExitHook();
  const home = opts.home ?? 'pool1';
  const domain = opts.domain;
  const frontends: PoolFrontend[] = [];
  let pg: TestPostgres | undefined;
  let db: Database | undefined;
  let lb: RunningHaproxy | undefined;
  const workDir = mkdtempSync(join(tmpdir(), 'parley-pool-'));
  // The front-ends' ./parley.yaml: HAProxy (fixtures/haproxy/parley.cfg, send-proxy-v2)
  // connects from 127.0.0.1, as docs/pool.md says to configure it. Test clients on
  // 127.0.0.1 may still connect straight to a front-end: the PROXY header is optional.
  const peers = opts.trustedPeers ? `trustedPeers: [${opts.trustedPeers.join(', ')}]\n` : '';
  writeFileSync(join(workDir, 'parley.yaml'), `limits:\n  trustedProxies: [127.0.0.1]\n${peers}`);
  const stop = async () => {
    await Promise.all(frontends.map((fe) => fe.kill('SIGTERM')));
    await lb?.stop();
    await db?.close().catch(() => undefined);
    await pg?.stop();
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    pg = await startTestPostgres();
    const url = await pg.createDatabase();
    db = await openDatabase({ url });
    const store = createStore(db);
    await store.homes.upsertHome({
      name: home,
      kind: 'pool',
      address: `sip:${home}.${domain};transport=tcp`,
    });

    const ports = await freeLoopbackPorts(3 * opts.frontends);
    for (let i = 0; i < opts.frontends; i++) {
      frontends.push(
        startFrontend({
          id: `${home}-fe${i + 1}`,
          url,
          domain,
          home,
          tcpPort: ports[3 * i],
          wsPort: ports[3 * i + 1],
          httpPort: ports[3 * i + 2],
          logLevel: opts.logLevel ?? 'warn',
          cwd: workDir,
        }),
      );
    }
    await Promise.all(frontends.map((fe) => waitForHealth(fe)));
    if (opts.loadBalancer) {
      lb = await startHaproxy({
        backends: frontends.map((fe) => ({
          name: fe.id,
          host: '127.0.0.1',
          sipTcpPort: fe.tcpPort,
          wsPort: fe.wsPort,
          healthPort: fe.httpPort,
        })),
      });
      for (const fe of frontends) await lb.waitForServerStatus(fe.id, 'UP');
    }
    return {
      url,
      domain,
      home,
      frontends,
      lb,
      store,
      async addUser(name, password) {
        const aor = `${name}@${domain}`;
        const user = await store.users.createUser({ aor, displayName: name, home });
        await store.users.setCredentials(user.id, domain, computeUserHa1(aor, password));
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

interface FrontendSpec {
  id: string;
  url: string;
  domain: string;
  home: string;
  tcpPort: number;
  wsPort: number;
  httpPort: number;
  logLevel: string;
  cwd: string;
}

const OUTPUT_LIMIT = 256 * 1024;

function startFrontend(spec: FrontendSpec): PoolFrontend {
  let output = '';
  let child: ChildProcess;
  let exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  const append = (d: Buffer | string) => {
    output += d;
    if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
  };
  const spawnIt = () => {
    child = spawn(
      process.execPath,
      [
        bin,
        'server',
        'start',
        '--role',
        'frontend',
        '--server-id',
        spec.id,
        '--home',
        spec.home,
        '--database',
        spec.url,
        '--domain',
        spec.domain,
        '--tcp',
        `127.0.0.1:${spec.tcpPort}`,
        '--ws',
        `127.0.0.1:${spec.wsPort}`,
        '--http',
        `127.0.0.1:${spec.httpPort}`,
        '--log-level',
        spec.logLevel,
      ],
      // No parley.yaml of the checkout or the environment may leak into the pool's settings.
      {
        cwd: spec.cwd,
        env: { ...process.env, PARLEY_CONFIG: '', PARLEY_DATABASE_URL: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    live.add(child);
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    const current = child;
    exit = new Promise((resolve) => {
      current.once('exit', (code, signal) => {
        live.delete(current);
        resolve({ code, signal });
      });
    });
  };
  spawnIt();
  const running = () => child.exitCode === null && child.signalCode === null;
  const fe: PoolFrontend = {
    id: spec.id,
    get process() {
      return child;
    },
    tcpPort: spec.tcpPort,
    wsPort: spec.wsPort,
    httpPort: spec.httpPort,
    healthUrl: `http://127.0.0.1:${spec.httpPort}/health`,
    async kill(signal = 'SIGTERM') {
      if (!running()) return;
      // The server runs under its launcher (server.semiSpaceMb): after a SIGKILL of the
      // launcher it ends within a quarter of a second; wait for it too, ports and all.
      const server = serverProcessOf(child.pid ?? 0);
      child.kill(signal);
      // A clean stop that hangs must not hang the suite.
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exit;
      clearTimeout(killer);
      while (!processGone(server)) await new Promise((r) => setTimeout(r, 50));
    },
    exited: () => exit,
    async restart() {
      if (running()) throw new Error(`${spec.id} is still running: kill it first`);
      spawnIt();
      await waitForHealth(fe);
    },
    output: () => output,
  };
  return fe;
}

/** Polls GET /health until 200; fails early, with the process's output, if it exits. */
async function waitForHealth(fe: PoolFrontend, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const child = fe.process;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${fe.id} exited (${child.exitCode ?? child.signalCode}) while starting:\n${fe.output()}`,
      );
    }
    try {
      const res = await fetch(fe.healthUrl, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) return;
      last = `HTTP ${res.status} ${await res.text()}`;
    } catch (err) {
      last = String((err as Error).message);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${fe.id}: /health not 200 within ${timeoutMs} ms (last: ${last}):\n${fe.output()}`);
}
