import { LocalIdentity } from '../proxy/local.js';
import type { Flow } from '../transport/flow.js';
import type { Listening } from '../transport/layer.js';

/** The three sides of an edge: remote users, partners' edges, and the servers inside. */
export type EdgeSide = 'outside' | 'federation' | 'inside';

/**
 * The edge's addresses differ by side: outside and to partners it is its public name
 * (`advertise`) on the listener of that side; inside it is the address the inside servers
 * reach it at, on its inside listener. Via, Record-Route and Contact values follow the flow.
 */
export class EdgeIdentity extends LocalIdentity {
  private readonly insidePort: number;
  /** tcp, or tls in security: high (the inside listener is mutual TLS there). */
  private readonly insideTransport: string;
  private readonly federationPort?: number;

  constructor(
    domain: string,
    listening: Listening[],
    advertise: { host: string; port?: number } | undefined,
    serverId: string,
    private readonly sideOf: (flow: Flow) => EdgeSide,
  ) {
    super(domain, listening, advertise, serverId);
    const inside = listening.find((l) => l.name === 'internal');
    this.insidePort = inside?.port ?? 0;
    this.insideTransport = inside?.transport ?? 'tcp';
    this.federationPort = listening.find((l) => l.name === 'federation')?.port;
  }

  /** The public name the edge gives outside (warn-agent of its Warning headers). */
  get advertiseHost(): string | undefined {
    return this.advertise?.host;
  }

  override hostFor(flow: Flow): string {
    if (this.sideOf(flow) === 'inside' || !this.advertise) {
      const h = flow.localAddress || '127.0.0.1';
      return h.includes(':') ? `[${h}]` : h;
    }
    return this.advertise.host;
  }

  override portOn(flow: Flow): number {
    const side = this.sideOf(flow);
    if (side === 'inside') return this.insidePort;
    if (side === 'federation') return this.federationPort ?? flow.localPort;
    return super.portOn(flow);
  }

  /** The Path entry (RFC 3327) that brings requests for a remote user back to its connection. */
  pathTo(insideFlow: Flow, token: string): string {
    return `<sip:${token}@${this.hostFor(insideFlow)}:${this.insidePort};transport=${this.insideTransport};lr>`;
  }
}
