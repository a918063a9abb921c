import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import ServerDrain from '../../commands/server/drain.js';
import ServerStatus from '../../commands/server/status.js';
import { renderClientsReport } from '../../src/clients/admin.js';
import { DrainError, drainServer, SERVERS_CHANNEL } from '../../src/ops/drain.js';
import {
  collectPoolStatus,
  fetchHealth,
  liveState,
  NO_SERVERS,
  renderPoolStatus,
} from '../../src/ops/status.js';
import { renderSessions } from '../../src/reports/sessions.js';
import { openDatabase } from '../../src/store/open.js';
import { createStore, type Store } from '../../src/store/store.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

/** A stand-in for a server's operations endpoint: answers GET /health with what the test sets. */
interface FakeHealth {
  url: string;
  status: number;
  body: unknown;
  close(): Promise<void>;
}

async function startFakeHealth(status = 200, body: unknown = {}): Promise<FakeHealth> {
  const fake = { status, body } as FakeHealth;
  const server: Server = createServer((req, res) => {
    if (req.url !== '/health') {
      res.writeHead(404).end();
      return;
    }
    const text = typeof fake.body === 'string' ? fake.body : JSON.stringify(fake.body);
    res.writeHead(fake.status, { 'Content-Type': 'application/json' }).end(text);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return fake;
}

/** A port nothing listens on: bind, read the port, close. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/health`;
}

const root = new URL('../../', import.meta.url).pathname;

describe('server status and drain against PostgreSQL', { timeout: 120_000 }, () => {
  let pg: TestPostgres;
  let url: string;
  let store: Store;
  const fakes: FakeHealth[] = [];

  beforeAll(async () => {
    pg = await startTestPostgres();
    url = await pg.createDatabase();
    store = createStore(await openDatabase({ url }));
  });

  afterAll(async () => {
    await store?.close();
    for (const f of fakes) await f.close();
    await pg?.stop();
  });

  beforeEach(async () => {
    await store.db.query('DELETE FROM registrations');
    await store.db.query('DELETE FROM servers');
    await store.homes.upsertHome({
      name: 'pool1',
      kind: 'pool',
      address: 'sip:pool1.example.com;transport=tcp',
    });
  });

  async function fake(status: number, body: unknown): Promise<FakeHealth> {
    const f = await startFakeHealth(status, body);
    fakes.push(f);
    return f;
  }

  async function registerFrontend(id: string, healthUrl: string | null) {
    await store.servers.register({
      id,
      role: 'frontend',
      home: 'pool1',
      address: `127.0.0.1:${5060 + fakes.length}`,
      healthUrl,
    });
  }

  it('lists servers with live health and sums the pool', async () => {
    const fe1 = await fake(200, {
      status: 'ok',
      flows: 3,
      registeredEndpoints: 3,
      signedInUsers: 2,
      subscriptions: 4,
    });
    const fe2 = await fake(503, {
      status: 'draining',
      flows: 1,
      registeredEndpoints: 1,
      signedInUsers: 1,
      subscriptions: 0,
    });
    await registerFrontend('pool1-fe1', fe1.url);
    await registerFrontend('pool1-fe2', fe2.url);
    await registerFrontend('pool1-fe3', await deadUrl());
    await store.servers.register({ id: 'dir1', role: 'director', address: '127.0.0.1:5070' });
    const expiresAt = new Date(Date.now() + 600_000);
    for (const [aor, contact, serverId] of [
      ['alice@example.com', 'sip:a1@10.0.0.1', 'pool1-fe1'],
      ['alice@example.com', 'sip:a2@10.0.0.2', 'pool1-fe2'],
      ['bob@example.com', 'sip:b1@10.0.0.3', 'pool1-fe1'],
    ]) {
      await store.registrations.upsertBinding({
        aor,
        contact,
        callId: contact,
        cseq: 1,
        expiresAt,
        serverId,
        flowId: 'f',
      });
    }

    const status = await collectPoolStatus(store, { healthTimeoutMs: 1000 });
    const byId = Object.fromEntries(status.servers.map((s) => [s.id, s]));
    expect(Object.keys(byId)).toEqual(['dir1', 'pool1-fe1', 'pool1-fe2', 'pool1-fe3']);
    expect(byId['pool1-fe1']).toMatchObject({
      role: 'frontend',
      home: 'pool1',
      state: 'up',
      live: 'up',
      heartbeatStale: false,
      health: { reachable: true, httpStatus: 200, status: 'ok', registeredEndpoints: 3 },
    });
    expect(byId['pool1-fe1'].heartbeatAgeSeconds).toBeLessThanOrEqual(HEARTBEAT_TOLERANCE);
    expect(byId['pool1-fe2']).toMatchObject({
      live: 'draining',
      health: { reachable: true, httpStatus: 503 },
    });
    expect(byId['pool1-fe3']).toMatchObject({ state: 'up', live: 'down', health: { reachable: false } });
    expect(byId['pool1-fe3'].health.error).toBeTruthy();
    // No health URL: the fresh heartbeat is all there is to go by.
    expect(byId.dir1).toMatchObject({ live: 'up', health: { reachable: false } });
    expect(status.totals).toEqual({
      servers: 4,
      up: 2,
      draining: 1,
      unhealthy: 0,
      down: 1,
      live: { flows: 4, connectedEndpoints: 4, signedInUsers: 3, subscriptions: 4, activeUsers: null },
      store: { registeredEndpoints: 3, registeredUsers: 2 },
    });

    const text = renderPoolStatus(status).join('\n');
    expect(text).toMatch(/pool1-fe3 .* down/);
    expect(text).toContain('pool1-fe3: health check failed');
    expect(text).toMatch(/^TOTAL +4 server\(s\) +2 up, 1 draining, 1 down +3 +4 +4$/m);
    expect(text).toContain("each server's /health");

    const frontends = await collectPoolStatus(store, { role: 'frontend', home: 'pool1' });
    expect(frontends.servers.map((s) => s.id)).toEqual(['pool1-fe1', 'pool1-fe2', 'pool1-fe3']);
    expect(frontends.filter).toEqual({ role: 'frontend', home: 'pool1' });
  });

  it('shows a stale heartbeat as down and a marked-down server as down', async () => {
    await store.servers.register({ id: 'std1', role: 'standard', address: '127.0.0.1:5080' });
    await store.servers.register({ id: 'std2', role: 'standard', address: '127.0.0.1:5081' });
    await store.db.query("UPDATE servers SET heartbeat_at = now() - interval '1 minute' WHERE id = 'std1'");
    await store.servers.markDown('std2');
    const status = await collectPoolStatus(store);
    expect(status.servers.map((s) => [s.id, s.live, s.heartbeatStale])).toEqual([
      ['std1', 'down', true],
      ['std2', 'down', false],
    ]);
    expect(status.servers[0].heartbeatAgeSeconds).toBeGreaterThanOrEqual(59);
  });

  it('reads health bodies defensively', async () => {
    const notJson = await fake(200, 'hello');
    expect(await fetchHealth(notJson.url, 1000)).toMatchObject({ reachable: false, httpStatus: 200 });
    const unhealthy = await fake(503, { status: 'unhealthy', flows: 'many' });
    const h = await fetchHealth(unhealthy.url, 1000);
    expect(h).toEqual({ reachable: true, httpStatus: 503, status: 'unhealthy' });
    expect(liveState('up', false, true, h)).toBe('unhealthy');
    expect(await fetchHealth(await deadUrl(), 1000)).toMatchObject({ reachable: false });
  });

  it('drains: marks the row, notifies the server on the channel, returns without waiting', async () => {
    await registerFrontend('pool1-fe1', null);
    await registerFrontend('pool1-fe2', null);
    const payloads: string[] = [];
    const listener = await openDatabase({ url, migrate: false });
    try {
      const heard = new Promise<void>((resolve) => {
        void listener.listen(SERVERS_CHANNEL, (p) => {
          payloads.push(p);
          resolve();
        });
      });
      // Let LISTEN take effect before the notification is sent.
      await new Promise((r) => setTimeout(r, 200));
      const result = await drainServer(store, 'pool1-fe2');
      expect(result).toMatchObject({
        server: 'pool1-fe2',
        role: 'frontend',
        previousState: 'up',
        state: 'draining',
        waited: false,
        finished: false,
      });
      await heard;
      expect(payloads).toEqual(['pool1-fe2']);
    } finally {
      await listener.close();
    }
    expect((await store.servers.get('pool1-fe2'))?.state).toBe('draining');
    expect((await store.servers.get('pool1-fe1'))?.state).toBe('up');
  });

  it('waits until the server leaves, as a draining server does on exit', async () => {
    await registerFrontend('pool1-fe1', null);
    // Stands in for the server: on its notification it finishes and removes its row.
    const member = await openDatabase({ url, migrate: false });
    const memberStore = createStore(member);
    try {
      await member.listen(SERVERS_CHANNEL, (id) => {
        setTimeout(() => void memberStore.servers.remove(id), 300);
      });
      await new Promise((r) => setTimeout(r, 200));
      const progress: string[] = [];
      const result = await drainServer(store, 'pool1-fe1', {
        wait: true,
        pollMs: 100,
        timeoutMs: 30_000,
        onProgress: (p) => progress.push(String(p.state)),
      });
      expect(result).toMatchObject({ state: 'gone', finished: true, waited: true });
      expect(progress.every((s) => s === 'draining')).toBe(true);
    } finally {
      await memberStore.close();
    }
  });

  it('waits for a server marked down, and times out on one that never leaves', async () => {
    await registerFrontend('pool1-fe1', null);
    await registerFrontend('pool1-fe2', null);
    setTimeout(() => void store.servers.markDown('pool1-fe1'), 300);
    const down = await drainServer(store, 'pool1-fe1', { wait: true, pollMs: 100, timeoutMs: 30_000 });
    expect(down).toMatchObject({ state: 'down', finished: true });

    const stuck = drainServer(store, 'pool1-fe2', { wait: true, pollMs: 50, timeoutMs: 300 });
    await expect(stuck).rejects.toBeInstanceOf(DrainError);
    await expect(stuck).rejects.toMatchObject({ code: 'DRAIN_TIMEOUT' });
    expect((await store.servers.get('pool1-fe2'))?.state).toBe('draining');
  });

  it('leaves a down server alone and names the known ids for an unknown one', async () => {
    await registerFrontend('pool1-fe1', null);
    await registerFrontend('pool1-fe2', null);
    await store.servers.markDown('pool1-fe2');
    expect(await drainServer(store, 'pool1-fe2', { wait: true })).toMatchObject({
      previousState: 'down',
      state: 'down',
      finished: true,
    });
    expect((await store.servers.get('pool1-fe2'))?.state).toBe('down');
    const unknown = drainServer(store, 'pool1-fe9');
    await expect(unknown).rejects.toMatchObject({ code: 'SERVER_NOT_FOUND' });
    await expect(unknown).rejects.toThrow('known servers: pool1-fe1, pool1-fe2');
  });

  describe('the commands', () => {
    beforeEach(() => {
      vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
      vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      return () => vi.restoreAllMocks();
    });

    it('server status --json returns the typed result', async () => {
      const fe1 = await fake(200, {
        status: 'ok',
        flows: 1,
        registeredEndpoints: 1,
        signedInUsers: 1,
        subscriptions: 0,
      });
      await registerFrontend('pool1-fe1', fe1.url);
      const result = await ServerStatus.run(['--database', url, '--json'], root);
      expect(result.servers).toHaveLength(1);
      expect(result.servers[0]).toMatchObject({ id: 'pool1-fe1', live: 'up' });
      expect(result.totals.live.connectedEndpoints).toBe(1);
    });

    it('server drain sets draining, and fails with exit 3 on an unknown id', async () => {
      await registerFrontend('pool1-fe1', null);
      const result = await ServerDrain.run(['--database', url, '--server', 'pool1-fe1', '--json'], root);
      expect(result).toMatchObject({ server: 'pool1-fe1', state: 'draining' });
      // A person's run throws oclif's error carrying the catalogue's exit status and code.
      await expect(ServerDrain.run(['--database', url, '--server', 'nope'], root)).rejects.toMatchObject({
        oclif: { exit: 3 },
        code: 'SERVER_NOT_FOUND',
        message: expect.stringContaining('known servers: pool1-fe1'),
      });
    });
  });
});

/** Seconds of heartbeat age allowed for rows registered a moment ago on a loaded machine. */
const HEARTBEAT_TOLERANCE = 5;

describe('a store no server has registered in', () => {
  it('is said so by status, sessions and clients report, not shown as zero servers', () => {
    const none = NO_SERVERS.join('\n');
    expect(renderSessions({ users: [], servers: [] }).join('\n')).toContain(none);
    expect(renderClientsReport({ clients: [], servers: [] }).join('\n')).toContain(none);
    const one = [{ id: 'fe1', reachable: true, users: 0, endpoints: 0 }];
    expect(renderSessions({ users: [], servers: one }).join('\n')).not.toContain(NO_SERVERS[0]);
    expect(renderClientsReport({ clients: [], servers: one }).join('\n')).not.toContain(NO_SERVERS[0]);
  });
});
