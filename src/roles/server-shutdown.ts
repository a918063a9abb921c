import type { OpsServer } from '../ops/http.js';
import type { ParleyMetrics } from '../ops/metrics.js';
import type { Flow } from '../transport/flow.js';
import type { TransportLayer } from '../transport/layer.js';
import { deferred, type RoleStore } from './lifecycle.js';
import type { ParleyServer } from './parley-server.js';
import type { ServerBase } from './server-base.js';
import type { SipStack } from './server-sip.js';
import type { ServerEntry } from './server-upkeep.js';

/**
 * A server's drain (a home server's or an edge's): set when it begins, done when its last
 * connection has closed (closeFlows, told by flowClosed) or at its timeout.
 */
export class Draining {
  active = false;
  private readonly done = deferred();
  /** While closeFlows waits for connections to go: looks whether they have. */
  private onClosed: (() => void) | undefined;

  get drained(): Promise<void> {
    return this.done.promise;
  }

  /** A connection closed (the transport's onFlowClosed). */
  flowClosed(): void {
    if (this.active) this.onClosed?.();
  }

  finish(): void {
    this.done.resolve();
  }

  /**
   * Closes every connection and waits until the last one has closed, or timeoutMs. With
   * `first`, the connections it picks are closed first, and the others once those have gone
   * and `settled` has resolved: an edge closes its remote users' connections, waits for the
   * notices of their going to be answered inside, then closes its connections inside (which
   * would otherwise be dialled again for the notices, and idle until their timeout).
   */
  async closeFlows(
    transport: Pick<TransportLayer, 'allFlows' | 'flow'>,
    timeoutMs: number,
    first?: { pick: (flow: Flow) => boolean; settled: () => Promise<void> },
  ): Promise<void> {
    const timer = setTimeout(() => this.finish(), timeoutMs);
    try {
      if (first) {
        await Promise.race([this.drained, this.closeAndWait(transport, first.pick).then(first.settled)]);
      }
      await Promise.race([this.drained, this.closeAndWait(transport, () => true)]);
      this.finish();
    } finally {
      clearTimeout(timer);
      this.onClosed = undefined;
    }
  }

  /**
   * Closes the connections `pick` chooses and waits for those to go. Only the connections
   * open now are waited for: the listeners are closed already, so no client can open
   * another, and one the server dials meanwhile (a NOTIFY to a watcher's contact, a request
   * relayed to another front-end) is its own, closed with the server. Waiting for those too
   * held a drain until its timeout.
   */
  private closeAndWait(
    transport: Pick<TransportLayer, 'allFlows' | 'flow'>,
    pick: (flow: Flow) => boolean,
  ): Promise<void> {
    const waiting = new Set<string>();
    for (const flow of [...transport.allFlows()]) {
      if (!pick(flow)) continue;
      waiting.add(flow.id);
      flow.close();
    }
    return new Promise((resolve) => {
      const look = () => {
        for (const id of waiting) {
          if (transport.flow(id)) return;
          waiting.delete(id);
        }
        this.onClosed = undefined;
        resolve();
      };
      this.onClosed = look;
      look();
    });
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
