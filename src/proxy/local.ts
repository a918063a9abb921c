import { hostname } from 'node:os';
import { hostKey, hostReference } from '../sip/host.js';
import type { SipUri } from '../sip/uri.js';
import type { Flow, TransportName } from '../transport/flow.js';
import type { Listening } from '../transport/layer.js';
import { DIALOG_ROUTE_PARAM } from './record-route.js';

const VIA_TRANSPORT: Record<TransportName, string> = {
  udp: 'UDP',
  tcp: 'TCP',
  tls: 'TLS',
  ws: 'WS',
  wss: 'WSS',
};

/**
 * The loopback listener of a clustered server's worker (src/roles/cluster.ts): the other
 * workers relay requests for its endpoints there, so its flow routes name it.
 */
export const RELAY_LISTENER = 'relay';

/**
 * Who this server is on the wire: the addresses it puts in Via and Record-Route and the
 * ones it recognises as itself in Route headers and Request-URIs.
 */
export class LocalIdentity {
  private readonly ports = new Map<TransportName, number>();
  /** Every port we listen on (an edge has two TLS listeners). */
  private readonly allPorts = new Set<number>();
  private readonly hosts = new Set<string>(['127.0.0.1', '::1', 'localhost']);
  /** User part of our Record-Route URIs: marks them as ours even behind a load balancer. */
  readonly rrUser: string;
  /** The host other servers reach us at when nothing is advertised. */
  private routableHost = '127.0.0.1';
  /** A cluster worker's relay listener port: its flow routes go there. */
  private readonly relayPort?: number;

  constructor(
    readonly domain: string,
    listening: Listening[],
    protected readonly advertise?: { host: string; port?: number },
    serverId = 'parley',
  ) {
    for (const l of listening) {
      this.allPorts.add(l.port);
      if (l.name === RELAY_LISTENER) this.relayPort = l.port;
      // Named listeners (an edge's inside and federation sides) are chosen per flow by a subclass.
      if (!l.name || !this.ports.has(l.transport)) this.ports.set(l.transport, l.port);
      if (l.host !== '0.0.0.0' && l.host !== '::') {
        this.hosts.add(bare(l.host));
        if (l.transport === 'tcp' || l.transport === 'tls') this.routableHost = hostReference(bare(l.host));
      }
    }
    if (advertise) this.hosts.add(bare(advertise.host));
    this.hosts.add(hostname().toLowerCase());
    this.rrUser = `rr-${serverId.replace(/[^A-Za-z0-9.-]/g, '')}`;
  }

  portFor(transport: TransportName): number | undefined {
    return this.ports.get(transport);
  }

  /** The host a peer on this flow reaches us at. */
  hostFor(flow: Flow): string {
    if (this.advertise) return this.advertise.host;
    return hostReference(flow.localAddress || '127.0.0.1');
  }

  /** The port a peer on this flow reaches us at. */
  portOn(flow: Flow): number {
    return this.advertise?.port ?? this.ports.get(flow.transport) ?? flow.localPort;
  }

  /** sent-by for our Via on a request leaving over this flow. */
  via(flow: Flow, branch: string): string {
    return `SIP/2.0/${VIA_TRANSPORT[flow.transport]} ${this.hostFor(flow)}:${this.portOn(flow)};branch=${branch}`;
  }

  /**
   * A Record-Route URI reachable by the peer on this flow (RFC 3261 16.6 step 4; RFC 5658 for
   * two), carrying the dialog's signature (record-route.ts).
   */
  recordRoute(flow: Flow, signature: string): string {
    return `<sip:${this.rrUser}@${this.hostFor(flow)}:${this.portOn(flow)};transport=${flow.transport};lr;${DIALOG_ROUTE_PARAM}=${signature}>`;
  }

  /** A Route URI through this server that names one of its connections (a flow token). */
  flowRoute(token: string): string {
    if (this.relayPort !== undefined) return `<sip:${token}@127.0.0.1:${this.relayPort};transport=tcp;lr>`;
    const transport: TransportName = this.ports.has('tcp') ? 'tcp' : 'tls';
    const port = this.advertise?.port ?? this.ports.get(transport);
    const host = this.advertise?.host ?? this.routableHost;
    return `<sip:${token}@${host}:${port};transport=${transport};lr>`;
  }

  /** Contact for dialogs where this server is the UA (presence subscriptions). */
  contact(flow: Flow): string {
    return `<sip:presence@${this.hostFor(flow)}:${this.portOn(flow)};transport=${flow.transport}>`;
  }

  isOurHost(host: string): boolean {
    return this.hosts.has(bare(host));
  }

  /** Is this URI (a Route or Request-URI) addressed to this server itself? */
  isUs(uri: SipUri): boolean {
    if (uri.user === this.rrUser) return true;
    if (uri.user === 'presence' && this.isOurHost(uri.host)) return true;
    if (!this.isOurHost(uri.host)) return false;
    if (uri.port === undefined) return true;
    return this.allPorts.has(uri.port);
  }

  learnHost(host: string): void {
    this.hosts.add(bare(host));
  }
}

/** Hosts compare by hostKey: "[::1]", "::1" and "0:0:0:0:0:0:0:1" are one host. */
const bare = hostKey;
