import { afterEach, describe, expect, it } from 'vitest';
import { type HealthReport, HealthState, type OpsServer, startOpsServer } from '../../src/ops/http.js';
import { createMetrics } from '../../src/ops/metrics.js';

const servers: OpsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(
  health: () => HealthReport | Promise<HealthReport>,
  withMetrics = true,
): Promise<OpsServer> {
  const metrics = withMetrics ? createMetrics({ processMetrics: false }) : undefined;
  metrics?.messagesRouted.inc(5);
  const s = await startOpsServer({ host: '127.0.0.1', port: 0, metrics, health });
  servers.push(s);
  return s;
}

describe('startOpsServer', () => {
  it('serves Prometheus text on /metrics', async () => {
    const s = await start(() => ({ status: 'ok' }));
    expect(s.address.port).toBeGreaterThan(0);
    const res = await fetch(`${s.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(await res.text()).toContain('parley_messages_routed_total 5');
  });

  it('answers /health and /ready through the lifecycle', async () => {
    const state = new HealthState();
    const s = await start(() => state.report());
    const status = async (path: string) => (await fetch(`${s.url}${path}`)).status;

    expect(await status('/health')).toBe(503);
    expect(await status('/ready')).toBe(503);

    state.markReady();
    state.setCheck('store', true);
    expect(await status('/health')).toBe(200);
    expect(await status('/ready')).toBe(200);
    const body = (await (await fetch(`${s.url}/health`)).json()) as HealthReport;
    expect(body).toEqual({ status: 'ok', ready: true, checks: { store: { ok: true } } });

    state.setCheck('store', false, 'connection refused');
    expect(await status('/health')).toBe(503);
    expect(await status('/ready')).toBe(503);

    state.setCheck('store', true);
    state.startDraining();
    expect(await status('/health')).toBe(503);
    expect(await status('/ready')).toBe(200);
    const head = await fetch(`${s.url}/health`, { method: 'HEAD' });
    expect(head.status).toBe(503);
  });

  it('reports a throwing health callback as unhealthy', async () => {
    const s = await start(async () => {
      throw new Error('store closed');
    });
    const res = await fetch(`${s.url}/health`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      status: 'unhealthy',
      checks: { health: { ok: false, detail: 'store closed' } },
    });
  });

  it('refuses unknown paths and methods', async () => {
    const s = await start(() => ({ status: 'ok' }), false);
    expect((await fetch(`${s.url}/nope`)).status).toBe(404);
    expect((await fetch(`${s.url}/metrics`)).status).toBe(404);
    const post = await fetch(`${s.url}/health`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('fails to start on a port already in use', async () => {
    const a = await start(() => ({ status: 'ok' }));
    await expect(
      startOpsServer({ host: '127.0.0.1', port: a.address.port, health: () => ({ status: 'ok' }) }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});
