import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostPort } from './config.js';
import type { ParleyMetrics } from './metrics.js';

/**
 * `ok`: take new traffic. `draining`: finishing what it has, send nothing new (the load
 * balancer takes it out of rotation). `unhealthy`: a dependency (store, listener) failed.
 */
export type HealthStatus = 'ok' | 'draining' | 'unhealthy';

export interface HealthReport {
  status: HealthStatus;
  /** Startup finished (store open, listeners bound). Missing means true. */
  ready?: boolean;
  checks?: Record<string, { ok: boolean; detail?: string }>;
  [extra: string]: unknown;
}

export interface OpsServerOptions extends HostPort {
  metrics?: ParleyMetrics;
  health: () => HealthReport | Promise<HealthReport>;
  /** More GET paths (`/sessions`): each answers with a status and a JSON body. */
  routes?: Record<string, (req: IncomingMessage) => Promise<{ status: number; body: unknown }>>;
}

export interface OpsServer {
  address: HostPort;
  /** http://host:port (IPv6 hosts in brackets). */
  url: string;
  close(): Promise<void>;
}

/**
 * The operations endpoint: GET /metrics (Prometheus text), GET /health (the load
 * balancer's check: 200 only when ready and `ok`, 503 when starting, draining or
 * unhealthy), GET /ready (200 once startup finished, even while draining, so a supervisor
 * does not restart a server that is shutting down gracefully). Bodies are JSON reports.
 */
export async function startOpsServer(opts: OpsServerOptions): Promise<OpsServer> {
  const server = createServer((req, res) => {
    handle(req, res, opts).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { status: 'unhealthy', error: errorText(err) });
      else res.destroy();
    });
  });
  // Scrapers and health checkers use short-lived requests; don't let idle keep-alive
  // sockets hold close() open.
  server.keepAliveTimeout = 1000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const info = server.address() as AddressInfo;
  const address = { host: info.address, port: info.port };
  const shownHost = info.family === 'IPv6' ? `[${info.address}]` : info.address;
  return {
    address,
    url: `http://${shownHost}:${info.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: OpsServerOptions): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    sendJson(res, 405, { error: 'method not allowed' });
    return;
  }
  switch (path) {
    case '/metrics': {
      if (!opts.metrics) {
        sendJson(res, 404, { error: 'metrics are not enabled on this server' });
        return;
      }
      const body = await opts.metrics.render();
      res.writeHead(200, { 'Content-Type': opts.metrics.contentType, 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    case '/health': {
      const report = await safeHealth(opts);
      const healthy = report.status === 'ok' && report.ready !== false;
      sendJson(res, healthy ? 200 : 503, report, req.method === 'HEAD');
      return;
    }
    case '/ready': {
      const report = await safeHealth(opts);
      const ready = report.ready !== false && report.status !== 'unhealthy';
      sendJson(res, ready ? 200 : 503, report, req.method === 'HEAD');
      return;
    }
    default: {
      const route = opts.routes && Object.hasOwn(opts.routes, path) ? opts.routes[path] : undefined;
      if (route) {
        const { status, body } = await route(req);
        sendJson(res, status, body, req.method === 'HEAD');
        return;
      }
      sendJson(res, 404, {
        error: 'not found',
        paths: ['/metrics', '/health', '/ready', ...Object.keys(opts.routes ?? {})],
      });
    }
  }
}

async function safeHealth(opts: OpsServerOptions): Promise<HealthReport> {
  try {
    return await opts.health();
  } catch (err) {
    return { status: 'unhealthy', checks: { health: { ok: false, detail: errorText(err) } } };
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headOnly = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(headOnly ? undefined : text);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The health a server reports, changed by its lifecycle: starting (not ready), ready,
 * draining on shutdown; components set named checks (store, listeners).
 */
export class HealthState {
  private ready = false;
  private draining = false;
  private readonly checks = new Map<string, { ok: boolean; detail?: string }>();

  markReady(): void {
    this.ready = true;
  }

  startDraining(): void {
    this.draining = true;
  }

  setCheck(name: string, ok: boolean, detail?: string): void {
    this.checks.set(name, detail === undefined ? { ok } : { ok, detail });
  }

  report(): HealthReport {
    const checks = Object.fromEntries(this.checks);
    const failing = [...this.checks.values()].some((c) => !c.ok);
    const status: HealthStatus = failing ? 'unhealthy' : this.draining ? 'draining' : 'ok';
    return { status, ready: this.ready, checks };
  }
}
