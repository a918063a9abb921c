import type { OpsServer } from '../ops/http.js';
import type { ParleyMetrics } from '../ops/metrics.js';
import type { TransportLayer } from '../transport/layer.js';
import { deferred, type RoleStore } from './lifecycle.js';
import type { ParleyServer } from './parley-server.js';
import type { ServerBase } from './server-base.js';
import type { SipStack } from './server-sip.js';
import type { ServerEntry } from './server-upkeep.js';

/**
 * A server's drain (a home server's or an edge's): set when it begins, done when its last
 * connection closed (the transport's onFlowClosed calls flowClosed) or at its timeout.
 */
export class Draining {
  active = false;
  private readonly done = deferred();

  get drained(): Promise<void> {
    return this.done.promise;
  }

  /** A connection closed and so many are left. */
  flowClosed(remaining: number): void {
    if (this.active && remaining === 0) this.done.resolve();
  }

  finish(): void {
    this.done.resolve();
  }

  /** Closes every connection and waits until the last one has closed, or timeoutMs. */
  async closeFlows(
    transport: Pick<TransportLayer, 'allFlows' | 'flowCount'>,
    timeoutMs: number,
  ): Promise<void> {
    for (const flow of [...transport.allFlows()]) flow.close();
    if (transport.flowCount === 0) this.finish();
    const timer = setTimeout(() => this.finish(), timeoutMs);
    await this.drained;
    clearTimeout(timer);
  }
}

/** What a running home server stops, in order, when it drains or closes. */
export interface RunningServer {
  base: ServerBase;
  store: RoleStore;
  sip: SipStack;
  metrics: ParleyMetrics;
  ops: OpsServer;
  entry: ServerEntry;
  draining: Draining;
  stopSweep: () => void;
}

/** The running server as `server start` and the tests hold it: its drain and its close. */
export function runningServer(r: RunningServer): ParleyServer {
  const { base, sip, draining } = r;
  const { config, log } = base;
  const { presence, transport, mirror } = sip;
  let closed = false;
  return {
    config,
    listening: sip.listening,
    httpUrl: r.ops.url,
    metrics: r.metrics,
    db: base.db,
    drained: draining.drained,
    async drain(timeoutMs = 30_000) {
      if (draining.active) return draining.drained;
      draining.active = true;
      // The logger names the server already (createLogger's base).
      log.info('draining: no new connections, endpoints asked to move');
      await r.entry.servers.setState(config.serverId, 'draining').catch(() => undefined);
      // The load balancer sees /health turn 503 and stops sending new connections here.
      transport.stopAccepting();
      // RFC 6665 4.1.3 "deactivated": watchers subscribe again at once, through another front-end.
      await presence.shutdown();
      // Its users' watchers see them offline at once, until they sign in elsewhere.
      await presence
        .dropOwnPublications()
        .catch((err: unknown) => log.warn({ err }, 'could not remove the presence published here'));
      await mirror?.stop();
      // Closing a client's connection makes it reconnect (through the load balancer) and register again.
      await draining.closeFlows(transport, timeoutMs);
    },
    async close() {
      if (closed) return;
      closed = true;
      r.stopSweep();
      r.entry.stopHeartbeat();
      await presence.shutdown();
      await presence
        .dropOwnPublications()
        .catch((err: unknown) => log.warn({ err }, 'could not remove the presence published here'));
      await mirror?.stop().catch((err: unknown) => log.warn({ err }, 'could not remove registrations'));
      await r.entry.servers.remove(config.serverId).catch(() => undefined);
      // Give the final NOTIFYs a moment to leave before the connections close.
      await new Promise((resolve) => setTimeout(resolve, 100));
      sip.core.stop();
      sip.transactions.stop();
      sip.timers.stop();
      await transport.stop();
      await r.ops.close();
      await r.store.close();
    },
  };
}
