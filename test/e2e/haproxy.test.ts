import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PoolStatus } from '../../src/ops/status.js';
import { PROXY_V2_SIGNATURE, parseProxyHeader } from '../../src/transport/proxy-protocol.js';
import { ensureDebianCommand } from '../support/debian.js';
import { type RunningHaproxy, renderHaproxyConfig, startHaproxy } from '../support/haproxy.js';
import { startPool, type TestPool } from '../support/pool.js';

/**
 * A stand-in for a front-end: a SIP-over-TCP port and a WebSocket port that read the
 * PROXY protocol header HAProxy sends (send-proxy-v2), greet each connection with the
 * server's name and the client the header named, and echo what follows; and an operations
 * port whose /health answers what the test sets.
 */
interface FakeFrontend {
  name: string;
  sipTcpPort: number;
  wsPort: number;
  healthPort: number;
  healthStatus: number;
  /** Health checks answered, and those that were not plain HTTP (a PROXY header would be). */
  healthChecks: number;
  healthClientErrors: number;
  close(): Promise<void>;
}

function listen(server: Server | ReturnType<typeof createHttpServer>): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

async function startFakeFrontend(name: string): Promise<FakeFrontend> {
  const sockets = new Set<Socket>();
  const greeter = (label: string) =>
    createTcpServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      let buffered = Buffer.alloc(0);
      let greeted = false;
      const greet = (client: string, rest: Buffer) => {
        greeted = true;
        clearTimeout(noHeader);
        socket.off('data', onData);
        socket.write(`${label} ${client}\n`);
        if (rest.length > 0) socket.write(rest);
        socket.pipe(socket);
      };
      const onData = (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        const header = parseProxyHeader(buffered);
        if (header.kind === 'incomplete') return;
        const v2 = buffered.subarray(0, PROXY_V2_SIGNATURE.length).equals(PROXY_V2_SIGNATURE);
        if (header.kind === 'header' && v2 && header.source) {
          greet(`${header.source.address}:${header.source.port}`, buffered.subarray(header.length));
        } else {
          greet(`no-proxy-v2-header(${header.kind})`, buffered);
        }
      };
      // HAProxy sends the header as it connects: a client waiting for its greeting must
      // not wait forever when there is none.
      const noHeader = setTimeout(() => {
        if (!greeted) greet('no-proxy-header', buffered);
      }, 1_000);
      socket.on('data', onData);
    });
  const sip = greeter(name);
  const ws = greeter(`${name}-ws`);
  const fe = { name, healthStatus: 200, healthChecks: 0, healthClientErrors: 0 } as FakeFrontend;
  const health = createHttpServer((_req, res) => {
    fe.healthChecks++;
    res.writeHead(fe.healthStatus, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ status: fe.healthStatus === 200 ? 'ok' : 'draining' }));
  });
  health.on('clientError', (_err, socket) => {
    fe.healthClientErrors++;
    socket.destroy();
  });
  fe.sipTcpPort = await listen(sip);
  fe.wsPort = await listen(ws);
  fe.healthPort = await listen(health);
  fe.close = async () => {
    for (const s of sockets) s.destroy();
    health.closeAllConnections();
    await Promise.all([sip, ws, health].map((s) => new Promise((r) => s.close(r))));
  };
  return fe;
}

/**
 * Opens a connection through the load balancer (from `localAddress`, 127.0.0.1 by default)
 * and reads the greeting: which front-end took it, and the client its PROXY header named.
 */
function connectThrough(
  port: number,
  localAddress?: string,
): Promise<{ socket: Socket; server: string; client: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    let buffered = '';
    socket.setEncoding('utf8');
    const onData = (d: string) => {
      buffered += d;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      socket.off('data', onData);
      const [server, client] = buffered.slice(0, nl).split(' ');
      resolve({ socket, server, client });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () =>
      reject(new Error(`connection closed before a greeting (got ${JSON.stringify(buffered)})`)),
    );
  });
}

function echo(socket: Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: string) => {
      got += d;
      if (got.includes(text)) {
        socket.off('data', onData);
        resolve(got);
      }
    };
    socket.on('data', onData);
    socket.write(text);
  });
}

describe('HAProxy in front of two front-ends (fixtures/haproxy/parley.cfg)', { timeout: 120_000 }, () => {
  let fe1: FakeFrontend;
  let fe2: FakeFrontend;
  let lb: RunningHaproxy;
  const open: Socket[] = [];

  beforeAll(async () => {
    fe1 = await startFakeFrontend('fe1');
    fe2 = await startFakeFrontend('fe2');
    lb = await startHaproxy({
      backends: [fe1, fe2].map((fe) => ({
        name: fe.name,
        host: '127.0.0.1',
        sipTcpPort: fe.sipTcpPort,
        wsPort: fe.wsPort,
        healthPort: fe.healthPort,
      })),
    });
    await lb.waitForServerStatus('fe1', 'UP');
    await lb.waitForServerStatus('fe2', 'UP');
  });

  afterAll(async () => {
    for (const s of open) s.destroy();
    await lb?.stop();
    await fe1?.close();
    await fe2?.close();
  });

  async function through(port: number, localAddress?: string) {
    const c = await connectThrough(port, localAddress);
    open.push(c.socket);
    return c;
  }

  it('the documented config is valid as it stands', () => {
    const haproxy = ensureDebianCommand('haproxy', 'haproxy', ['/usr/sbin']);
    const cfg = new URL('../../fixtures/haproxy/parley.cfg', import.meta.url).pathname;
    expect(() => execFileSync(haproxy, ['-c', '-q', '-f', cfg], { stdio: 'pipe' })).not.toThrow();
  });

  it('test configs keep the documented settings and replace only binds, servers and check timers', () => {
    const rendered = readFileSync(lb.configPath, 'utf8');
    expect(rendered).not.toMatch(/10\.0\.0\.1\d/);
    expect(rendered).toContain(
      `server fe1 127.0.0.1:${fe1.sipTcpPort} send-proxy-v2 check port ${fe1.healthPort}`,
    );
    expect(rendered).toContain(
      `server fe2 127.0.0.1:${fe2.wsPort} send-proxy-v2 check port ${fe2.healthPort}`,
    );
    expect(rendered).toContain('default-server inter 500ms fall 2 rise 1');
    for (const kept of [
      'balance leastconn',
      'option httpchk GET /health',
      'timeout client 1h',
      'option tcpka',
    ]) {
      expect(rendered).toContain(kept);
    }
    expect(() =>
      renderHaproxyConfig('global\n', { backends: [] }, { tcpPort: 1, wsPort: 2, statsPort: 3 }),
    ).toThrow(/no bind line in sip_tcp/);
  });

  it('spreads long-lived connections over the front-ends (leastconn), on both SIP ports', async () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 6; i++) {
      const { server } = await through(lb.tcpPort);
      counts[server] = (counts[server] ?? 0) + 1;
    }
    expect(counts).toEqual({ fe1: 3, fe2: 3 });
    const ws = await Promise.all([through(lb.wsPort), through(lb.wsPort)]);
    expect(ws.map((c) => c.server).sort()).toEqual(['fe1-ws', 'fe2-ws']);
    expect(await echo(ws[0].socket, 'ping\r\n')).toContain('ping');
  });

  it('takes a front-end whose /health answers 503 out of rotation, keeps its connections, and takes it back', async () => {
    const onFe2 = await through(lb.tcpPort).then(async (c) => (c.server === 'fe2' ? c : through(lb.tcpPort)));
    expect(onFe2.server).toBe('fe2');

    fe2.healthStatus = 503;
    await lb.waitForServerStatus('fe2', 'DOWN');
    for (let i = 0; i < 4; i++) expect((await through(lb.tcpPort)).server).toBe('fe1');
    expect((await through(lb.wsPort)).server).toBe('fe1-ws');
    // Draining is the front-end's job: HAProxy leaves the connections it already has alone.
    expect(await echo(onFe2.socket, 'still here\r\n')).toContain('still here');

    fe2.healthStatus = 200;
    await lb.waitForServerStatus('fe2', 'UP');
    // fe1 now holds many more connections: leastconn sends the next one to fe2.
    expect((await through(lb.tcpPort)).server).toBe('fe2');
    const states = await lb.serverStates();
    expect(states.find((s) => s.backend === 'parley_sip_tcp' && s.server === 'fe1')?.current).toBeGreaterThan(
      0,
    );
  });

  it('opens each connection with a PROXY v2 header naming the client; health checks stay plain HTTP', async () => {
    const tcp = await through(lb.tcpPort, '127.0.0.2');
    expect(tcp.client).toBe(`127.0.0.2:${tcp.socket.localPort}`);
    const ws = await through(lb.wsPort, '127.0.0.3');
    expect(ws.server).toMatch(/-ws$/);
    expect(ws.client).toBe(`127.0.0.3:${ws.socket.localPort}`);
    // What the client sends follows the header untouched.
    expect(await echo(tcp.socket, 'OPTIONS sip:x SIP/2.0\r\n')).toBe('OPTIONS sip:x SIP/2.0\r\n');
    // `check port` sends no header (only check-send-proxy would): /health parses as HTTP.
    expect(fe1.healthChecks).toBeGreaterThan(0);
    expect(fe1.healthClientErrors + fe2.healthClientErrors).toBe(0);
  });
});

/**
 * The planned-maintenance path with real front-ends (built CLI, `npm run build` first):
 * `parley server drain --wait` on one front-end of a pool behind HAProxy; the front-end
 * fails its health check, leaves HAProxy's rotation and the servers table, and exits.
 */
describe('draining a front-end of a pool behind HAProxy', { timeout: 180_000 }, () => {
  let pool: TestPool;

  beforeAll(async () => {
    pool = await startPool({ frontends: 2, domain: 'example.com', loadBalancer: true });
  });

  afterAll(async () => {
    await pool?.stop();
  });

  it('status shows both up; drain --wait returns when the front-end has left; status shows one', async () => {
    const before = await parley(['server', 'status', '--database', pool.url, '--json']);
    expect(before.code).toBe(0);
    const status = JSON.parse(before.stdout) as PoolStatus;
    expect(status.servers.map((s) => [s.id, s.live])).toEqual([
      ['pool1-fe1', 'up'],
      ['pool1-fe2', 'up'],
    ]);

    const drained = await parley([
      'server',
      'drain',
      '--server',
      'pool1-fe2',
      '--wait',
      '--timeout',
      '60',
      '--database',
      pool.url,
      '--json',
    ]);
    expect(drained.code, drained.stdout + drained.stderr).toBe(0);
    expect(JSON.parse(drained.stdout)).toMatchObject({ server: 'pool1-fe2', finished: true, state: 'gone' });
    expect(await pool.frontends[1].exited()).toEqual({ code: 0, signal: null });
    await pool.lb?.waitForServerStatus('pool1-fe2', 'DOWN');

    const after = JSON.parse(
      (await parley(['server', 'status', '--database', pool.url, '--json'])).stdout,
    ) as PoolStatus;
    expect(after.servers.map((s) => s.id)).toEqual(['pool1-fe1']);

    const unknown = await parley(['server', 'drain', '--server', 'pool1-fe9', '--database', pool.url]);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('known servers: pool1-fe1');
  });
});

function parley(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = new URL('../../bin/run.js', import.meta.url).pathname;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, PARLEY_CONFIG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
