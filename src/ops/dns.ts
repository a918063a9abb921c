/**
 * The DNS records a Parley deployment publishes, so clients find the edge (remote access)
 * and the director (internal sign-in), and partners find the federation edge
 * (RFC 3263 4.2 / RFC 2782 SRV lookup, service names of the Lync/OCS family that clients
 * of this field already look up).
 */

export interface DnsPlanOptions {
  domain: string;
  /** Edge FQDN reached from the internet; default sip.DOMAIN. */
  edgeFqdn?: string;
  /** Director (or pool) FQDN reached inside the network; default director.DOMAIN. */
  directorFqdn?: string;
  /** Port of the edge's access (client) service: 443 gets through most firewalls. */
  edgeAccessPort?: number;
  /** Port of the edge's federation service (mutual TLS), default 5061. */
  federationPort?: number;
  /** Port of the director's TLS service, default 5061. */
  directorPort?: number;
  /** Also publish _sip._tcp for clients on plain TCP (not in high-security mode). */
  tcp?: boolean;
  tcpPort?: number;
  /** Addresses to put in A/AAAA records; without them, the advice says what to fill in. */
  edgeAddress?: string;
  directorAddress?: string;
  ttl?: number;
}

export interface SrvRecordPlan {
  name: string;
  ttl: number;
  type: 'SRV';
  priority: number;
  weight: number;
  port: number;
  target: string;
  purpose: string;
}

export interface HostRecordPlan {
  name: string;
  ttl: number;
  type: 'A' | 'AAAA' | 'CNAME';
  /** Missing when the address is not known: publish it yourself. */
  value?: string;
  purpose: string;
}

export interface DnsPlan {
  domain: string;
  srv: SrvRecordPlan[];
  hosts: HostRecordPlan[];
  /** Things DNS alone does not do that the records depend on. */
  notes: string[];
}

const FQDN_RE =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

/** A value the plan cannot use; `code` is the CLI catalogue's (src/cli/errors.ts). */
export class DnsPlanError extends Error {
  readonly code = 'DNS_PLAN_INVALID';

  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
    this.name = 'DnsPlanError';
  }
}

export function planDnsRecords(opts: DnsPlanOptions): DnsPlan {
  const domain = fqdn(opts.domain, 'domain');
  const edge = fqdn(opts.edgeFqdn ?? `sip.${domain}`, 'edgeFqdn');
  const director = fqdn(opts.directorFqdn ?? `director.${domain}`, 'directorFqdn');
  const ttl = opts.ttl ?? 3600;
  const edgeAccessPort = port(opts.edgeAccessPort ?? 443, 'edgeAccessPort');
  const federationPort = port(opts.federationPort ?? 5061, 'federationPort');
  const directorPort = port(opts.directorPort ?? 5061, 'directorPort');

  const srv: SrvRecordPlan[] = [
    {
      name: `_sip._tls.${domain}`,
      ttl,
      type: 'SRV',
      priority: 0,
      weight: 0,
      port: edgeAccessPort,
      target: edge,
      purpose: 'remote clients sign in through the edge over TLS',
    },
    {
      name: `_sipinternaltls._tcp.${domain}`,
      ttl,
      type: 'SRV',
      priority: 0,
      weight: 0,
      port: directorPort,
      target: director,
      purpose: 'internal clients sign in through the director over TLS',
    },
    {
      name: `_sipfederationtls._tcp.${domain}`,
      ttl,
      type: 'SRV',
      priority: 0,
      weight: 0,
      port: federationPort,
      target: edge,
      purpose: "federated partners' edges connect here over mutual TLS",
    },
  ];
  if (opts.tcp) {
    srv.push({
      name: `_sip._tcp.${domain}`,
      ttl,
      type: 'SRV',
      priority: 0,
      weight: 0,
      port: port(opts.tcpPort ?? 5060, 'tcpPort'),
      target: director,
      purpose: 'internal clients on plain TCP (not allowed in high-security mode)',
    });
  }

  const hosts: HostRecordPlan[] = [
    hostRecord(edge, opts.edgeAddress, ttl, 'public address of the edge (external DNS)', 'edgeAddress'),
    hostRecord(
      director,
      opts.directorAddress,
      ttl,
      'internal address of the director (internal DNS)',
      'directorAddress',
    ),
  ];

  const notes = [
    `The edge certificate must name ${edge} (subject or SAN); partners pinned to it check this name.`,
    `The director certificate must name ${director}.`,
    `Publish _sip._tls and _sipfederationtls._tcp in external DNS and _sipinternaltls._tcp in internal DNS; an SRV target must be an A/AAAA name, not a CNAME (RFC 2782).`,
  ];
  if (edgeAccessPort === 443)
    notes.push(
      'Clients reach the edge on 443; make sure nothing else (a web server) holds 443 on that address.',
    );
  return { domain, srv, hosts, notes };
}

function hostRecord(
  name: string,
  address: string | undefined,
  ttl: number,
  purpose: string,
  field: string,
): HostRecordPlan {
  if (address === undefined) return { name, ttl, type: 'A', purpose };
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) return { name, ttl, type: 'A', value: address, purpose };
  if (address.includes(':')) return { name, ttl, type: 'AAAA', value: address, purpose };
  throw new DnsPlanError(`${field}: ${JSON.stringify(address)} is not an IPv4 or IPv6 address`, field);
}

function fqdn(name: string, field: string): string {
  const n = name.trim().toLowerCase().replace(/\.$/, '');
  if (!FQDN_RE.test(n))
    throw new DnsPlanError(`${field}: ${JSON.stringify(name)} is not a fully qualified domain name`, field);
  return n;
}

function port(p: number, field: string): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535)
    throw new DnsPlanError(`${field}: ${p} is not a port (1-65535)`, field);
  return p;
}

/** BIND zone-file lines (absolute names, trailing dots), one record a line. */
export function renderZoneFile(plan: DnsPlan): string {
  const lines = [`; Parley records for ${plan.domain}`];
  for (const r of plan.srv) {
    lines.push(`; ${r.purpose}`);
    lines.push(`${r.name}.\t${r.ttl}\tIN\tSRV\t${r.priority} ${r.weight} ${r.port} ${r.target}.`);
  }
  for (const h of plan.hosts) {
    lines.push(`; ${h.purpose}`);
    const line = `${h.name}.\t${h.ttl}\tIN\t${h.type}\t${h.value ?? '<address>'}`;
    lines.push(h.value === undefined ? `; ${line}   (fill in the address)` : line);
  }
  for (const note of plan.notes) lines.push(`; NOTE: ${note}`);
  return `${lines.join('\n')}\n`;
}
