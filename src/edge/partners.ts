import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { FederationPolicy, type InboundDecision } from '../federation/policy.js';
import { resolveFederationEdge, type SrvResolver } from '../federation/srv.js';
import type { FederationEntry } from '../store/federation.js';

/** The resolver calls the edge makes: SRV for partners' edges, A for their host names. */
export interface EdgeResolver extends SrvResolver {
  resolve4(host: string): Promise<string[]>;
}

/** A partner edge (or the clearinghouse) to open a mutual-TLS connection to. */
export interface PartnerTarget {
  /** The name its certificate must carry (checked by the TLS handshake, RFC 5922 7.2). */
  host: string;
  port: number;
  via: 'pinned edge' | 'SRV' | 'clearinghouse';
}

export type OutboundDecision =
  | { ok: true; targets: PartnerTarget[] }
  | { ok: false; refusal: 'not_allowed' | 'blocked' | 'own_domain'; warning: string }
  | { ok: false; refusal: 'no_route'; warning: string };

export interface PartnerDirectoryOptions {
  ownDomain: string;
  /** The policy rows as the store holds them now. */
  load(): Promise<FederationEntry[]>;
  dnsServers: readonly string[];
  resolver?: EdgeResolver;
  log: Logger;
  /** How long SRV answers are kept (ms). */
  cacheMs?: number;
}

/** Port of a pinned edge or clearinghouse that publishes no `_sips._tcp` SRV record (RFC 3261 26.2.1). */
const FEDERATION_PORT = 5061;

/**
 * What the edge knows of the federation: the policy (reloaded when the store announces a
 * change), partners' edges found by DNS SRV, and the addresses of the names those records
 * give, each lookup cached for a minute (every request to a partner needs them).
 */
export class PartnerDirectory {
  private current: FederationPolicy;
  private readonly resolver: EdgeResolver;
  private readonly srvCache = new Map<string, { at: number; targets: string[]; ports: number[] }>();
  private readonly addressCache = new Map<string, { at: number; address: string }>();
  /** Ports of pinned edges and the clearinghouse from their `_sips._tcp` records. */
  private readonly portCache = new Map<string, { at: number; port: number }>();
  private reloading?: Promise<void>;
  private reloadAgain = false;

  constructor(private readonly opts: PartnerDirectoryOptions) {
    this.current = new FederationPolicy([], [opts.ownDomain]);
    if (opts.resolver) this.resolver = opts.resolver;
    else {
      const r = new Resolver({ timeout: 2_000, tries: 2 });
      if (opts.dnsServers.length > 0) r.setServers([...opts.dnsServers]);
      this.resolver = r;
    }
  }

  get policy(): FederationPolicy {
    return this.current;
  }

  /** Reads the policy again; calls that arrive during a reload make one more afterwards. */
  reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.reloadAgain = false;
        try {
          this.current = new FederationPolicy(await this.opts.load(), [this.opts.ownDomain]);
          // A changed list may change who an SRV target must be: ask DNS afresh.
          this.srvCache.clear();
        } catch (err) {
          this.opts.log.error({ err }, 'federation policy could not be read; the previous one stays');
        }
      } while (this.reloadAgain);
    })().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  /** May a request from `domain` come from a peer whose certificate names `peerNames`? */
  async inbound(domain: string, peerNames: readonly string[]): Promise<InboundDecision> {
    const policy = this.current;
    const first = policy.inbound(domain, peerNames);
    // Only an allowed partner that is not pinned needs its SRV targets (a DNS round trip).
    if (first.ok || first.refusal !== 'certificate') return first;
    const srv = await this.srv(domain).catch(() => ({ targets: [] as string[] }));
    return policy.inbound(domain, peerNames, srv.targets);
  }

  /** Where a request for a user of `domain` goes, in the order to try. */
  async outbound(domain: string): Promise<OutboundDecision> {
    const route = this.current.outbound(domain);
    if (route.kind === 'refused') {
      return {
        ok: false,
        refusal: route.refusal as 'not_allowed' | 'blocked' | 'own_domain',
        warning: route.warning,
      };
    }
    if (route.edgeFqdn) return { ok: true, targets: [await this.named(route.edgeFqdn, 'pinned edge')] };
    let srv: { targets: string[]; ports: number[] };
    try {
      srv = await this.srv(domain);
    } catch (err) {
      return {
        ok: false,
        refusal: 'no_route',
        warning: `DNS lookup for ${domain} failed: ${(err as Error).message}`,
      };
    }
    if (srv.targets.length > 0) {
      return {
        ok: true,
        targets: srv.targets.map((host, i) => ({ host, port: srv.ports[i], via: 'SRV' as const })),
      };
    }
    if (route.fallback) return { ok: true, targets: [await this.named(route.fallback, 'clearinghouse')] };
    return {
      ok: false,
      refusal: 'no_route',
      warning: `${domain} publishes no _sipfederationtls._tcp SRV record`,
    };
  }

  /** An address to connect to for a host name: its A record from our DNS servers, else the name itself (system resolver). */
  async address(host: string): Promise<string> {
    if (isIP(host) !== 0 || this.opts.dnsServers.length === 0) return host;
    const key = host.toLowerCase();
    const cached = this.addressCache.get(key);
    if (cached && performance.now() - cached.at < (this.opts.cacheMs ?? 60_000)) return cached.address;
    let address = host;
    try {
      [address = host] = await this.resolver.resolve4(host);
    } catch {
      // No A record from our DNS servers: the system resolver gets the name.
    }
    // Every request to a partner asks: without the cache each one waited for a DNS answer.
    this.addressCache.set(key, { at: performance.now(), address });
    return address;
  }

  /** A pinned edge or the clearinghouse: its `_sips._tcp` SRV record if it has one (RFC 3263 4.2), else port 5061. */
  private async named(fqdn: string, via: PartnerTarget['via']): Promise<PartnerTarget> {
    const cached = this.portCache.get(fqdn);
    if (cached && performance.now() - cached.at < (this.opts.cacheMs ?? 60_000))
      return { host: fqdn, port: cached.port, via };
    let port = FEDERATION_PORT;
    try {
      const records = await this.resolver.resolveSrv(`_sips._tcp.${fqdn}`);
      const hit = records.find((r) => r.name.replace(/\.$/, '').toLowerCase() === fqdn);
      if (hit) port = hit.port;
    } catch {
      // No record: the default port.
    }
    this.portCache.set(fqdn, { at: performance.now(), port });
    return { host: fqdn, port, via };
  }

  private async srv(domain: string): Promise<{ targets: string[]; ports: number[] }> {
    const key = domain.toLowerCase();
    const cached = this.srvCache.get(key);
    if (cached && performance.now() - cached.at < (this.opts.cacheMs ?? 60_000)) return cached;
    const records = await resolveFederationEdge(key, this.resolver);
    const entry = {
      at: performance.now(),
      targets: records.map((r) => r.host.toLowerCase()),
      ports: records.map((r) => r.port),
    };
    this.srvCache.set(key, entry);
    return entry;
  }
}
