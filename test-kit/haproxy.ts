import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDebianCommand } from './debian.js';

/** One front-end behind the load balancer. */
export interface HaproxyBackend {
  name: string;
  host: string;
  sipTcpPort: number;
  /** Omitted: the server is left out of the WebSocket backend. */
  wsPort?: number;
  /** Port of its operations endpoint (GET /health). */
  healthPort: number;
}

export interface HaproxyOptions {
  backends: HaproxyBackend[];
  /** Check timers for tests: a failing front-end leaves rotation within about a second. */
  inter?: string;
  fall?: number;
  rise?: number;
}

/** HAProxy's view of one server of a backend (its stats CSV: UP, DOWN, MAINT, "DOWN 1/2" ...). */
export interface HaproxyServerState {
  backend: string;
  server: string;
  status: string;
  /** Connections currently open to the server. */
  current: number;
  /** Connections it has had since start. */
  total: number;
}

export interface RunningHaproxy {
  tcpPort: number;
  wsPort: number;
  /** http://127.0.0.1:PORT/stats (HTML; append ;csv for CSV). */
  statsUrl: string;
  configPath: string;
  serverStates(): Promise<HaproxyServerState[]>;
  /** Polls the stats until the server (in every backend holding it) has the status, e.g. 'UP' or 'DOWN'. */
  waitForServerStatus(server: string, status: string, timeoutMs?: number): Promise<void>;
  /** What HAProxy printed (its log goes to stdout): for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/** The documented configuration, found above this file whether it runs from source or from dist/. */
const TEMPLATE = findFixture('fixtures/haproxy/parley.cfg');

function findFixture(relative: string): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, relative);
    if (existsSync(candidate)) return candidate;
    dir = join(dir, '..');
  }
  throw new Error(`${relative} not found above ${import.meta.dirname}`);
}
const TCP_BACKEND = 'parley_sip_tcp';
const WS_BACKEND = 'parley_sip_ws';
const TCP_FRONTEND = 'sip_tcp';
const WS_FRONTEND = 'sip_ws';
const STATS = 'stats';

/** Distinct free loopback TCP ports: all held open together, then released. */
export async function freeLoopbackPorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export interface RenderPorts {
  tcpPort: number;
  wsPort: number;
  statsPort: number;
}

/**
 * Rewrites the documented config (fixtures/haproxy/parley.cfg) for a test: loopback
 * `bind`s on the given ports, one `server` line per backend in `backends` (the fixture's
 * first server line of the section with its name, address and check port replaced, its
 * other options such as send-proxy-v2 kept), short check timers, a small maxconn.
 * Everything else (modes, timeouts, checks) stays as documented, so the tests exercise
 * the config people copy.
 */
export function renderHaproxyConfig(template: string, opts: HaproxyOptions, ports: RenderPorts): string {
  const binds: Record<string, number> = {
    [TCP_FRONTEND]: ports.tcpPort,
    [WS_FRONTEND]: ports.wsPort,
    [STATS]: ports.statsPort,
  };
  const serverTargets: Record<string, Array<{ backend: HaproxyBackend; port: number }>> = {
    [TCP_BACKEND]: opts.backends.map((b) => ({ backend: b, port: b.sipTcpPort })),
    [WS_BACKEND]: opts.backends.flatMap((b) =>
      b.wsPort === undefined ? [] : [{ backend: b, port: b.wsPort }],
    ),
  };
  const seen = new Set<string>();
  const out: string[] = [];
  let section = '';
  for (const line of template.split('\n')) {
    const trimmed = line.trim();
    const indent = line.slice(0, line.length - line.trimStart().length);
    const header = /^(global|defaults|frontend|backend|listen)\b\s*(\S*)/.exec(line);
    if (header) {
      section = header[2] || header[1];
      out.push(line);
      continue;
    }
    if (section === 'global' && trimmed.startsWith('maxconn ')) {
      out.push(`${indent}maxconn 2000`);
    } else if (section === 'defaults' && trimmed.startsWith('default-server ')) {
      out.push(
        `${indent}default-server inter ${opts.inter ?? '500ms'} fall ${opts.fall ?? 2} rise ${opts.rise ?? 1}`,
      );
    } else if (trimmed.startsWith('bind ') && section in binds) {
      out.push(`${indent}bind 127.0.0.1:${binds[section]}`);
      seen.add(`bind ${section}`);
    } else if (trimmed.startsWith('server ') && section in serverTargets) {
      // The first server line of a backend stands for all of them.
      if (!seen.has(`servers ${section}`)) {
        const options = serverOptions(trimmed, section);
        for (const { backend, port } of serverTargets[section]) {
          const checked = options.replace(/\bcheck port \d+/, `check port ${backend.healthPort}`);
          out.push(`${indent}server ${backend.name} ${backend.host}:${port} ${checked}`);
        }
        seen.add(`servers ${section}`);
      }
    } else {
      out.push(line);
    }
  }
  for (const need of [
    `bind ${TCP_FRONTEND}`,
    `bind ${WS_FRONTEND}`,
    `bind ${STATS}`,
    `servers ${TCP_BACKEND}`,
    `servers ${WS_BACKEND}`,
  ]) {
    if (!seen.has(need)) throw new Error(`fixtures/haproxy/parley.cfg: no ${need.replace(' ', ' line in ')}`);
  }
  return out.join('\n');
}

/** What follows a fixture server line's name and address; it must check the operations port. */
function serverOptions(line: string, section: string): string {
  const options = /^server\s+\S+\s+\S+\s+(.*)$/.exec(line)?.[1] ?? '';
  if (!/\bcheck port \d+/.test(options)) {
    throw new Error(`fixtures/haproxy/parley.cfg: the server lines of ${section} need \`check port\``);
  }
  return options;
}

/**
 * Starts HAProxy (Debian `haproxy`) in the foreground (-db) on free loopback ports with
 * the documented config rewritten for the given backends, and waits until it accepts
 * connections. Stop it in afterAll.
 */
export async function startHaproxy(opts: HaproxyOptions): Promise<RunningHaproxy> {
  const haproxy = ensureDebianCommand('haproxy', 'haproxy', ['/usr/sbin']);
  const template = readFileSync(TEMPLATE, 'utf8');
  const dir = mkdtempSync(join(tmpdir(), 'parley-haproxy-'));
  const configPath = join(dir, 'haproxy.cfg');
  // A port picked free may be taken before HAProxy binds it: try again with new ones.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const [tcpPort, wsPort, statsPort] = await freeLoopbackPorts(3);
    writeFileSync(configPath, renderHaproxyConfig(template, opts, { tcpPort, wsPort, statsPort }));
    try {
      const child = spawn(haproxy, ['-db', '-f', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout?.on('data', (d) => {
        output += d;
      });
      child.stderr?.on('data', (d) => {
        output += d;
      });
      // HAProxy binds every listener before it serves any: the stats port answering means all are bound.
      await waitForListening(child, [statsPort], () => output);
      return running(child, dir, configPath, { tcpPort, wsPort, statsPort }, () => output);
    } catch (err) {
      lastError = err;
      if (!/cannot bind|Address already in use/i.test(String((err as Error).message))) break;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError;
}

function running(
  child: ChildProcess,
  dir: string,
  configPath: string,
  ports: RenderPorts,
  output: () => string,
): RunningHaproxy {
  const statsUrl = `http://127.0.0.1:${ports.statsPort}/stats`;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const serverStates = async (): Promise<HaproxyServerState[]> => {
    const res = await fetch(`${statsUrl};csv`, { signal: AbortSignal.timeout(5_000) });
    return parseStatsCsv(await res.text());
  };
  let stopped = false;
  return {
    tcpPort: ports.tcpPort,
    wsPort: ports.wsPort,
    statsUrl,
    configPath,
    serverStates,
    async waitForServerStatus(server, status, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      let last: HaproxyServerState[] = [];
      while (Date.now() < deadline) {
        last = (await serverStates()).filter((s) => s.server === server);
        if (last.length > 0 && last.every((s) => s.status === status)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(
        `HAProxy: ${server} did not become ${status} within ${timeoutMs} ms (now ${JSON.stringify(last)})`,
      );
    },
    output,
    async stop() {
      if (stopped) return;
      stopped = true;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Server rows of HAProxy's stats CSV (header "# pxname,svname,qcur,...,status,..."). */
export function parseStatsCsv(csv: string): HaproxyServerState[] {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const header = lines[0]?.replace(/^#\s*/, '').split(',') ?? [];
  const col = (name: string) => header.indexOf(name);
  const [px, sv, status, scur, stot] = ['pxname', 'svname', 'status', 'scur', 'stot'].map(col);
  return lines
    .slice(1)
    .map((l) => l.split(','))
    .filter((f) => f[sv] !== 'FRONTEND' && f[sv] !== 'BACKEND')
    .map((f) => ({
      backend: f[px],
      server: f[sv],
      status: f[status],
      current: Number(f[scur]) || 0,
      total: Number(f[stot]) || 0,
    }));
}

async function waitForListening(child: ChildProcess, ports: number[], output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (const port of ports) {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`haproxy exited (${child.exitCode ?? child.signalCode}): ${output()}`);
      }
      if (await accepts(port)) break;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`haproxy did not listen on 127.0.0.1:${port} within 15 s: ${output()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
