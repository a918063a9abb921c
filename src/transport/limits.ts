import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import type { Logger } from 'pino';

/** Bounds on the connections peers may open to us (dialled connections are never refused). */
export interface ConnectionLimits {
  /** Accepted connections from one address at once; trusted proxies are exempt. */
  maxConnectionsPerAddress: number;
  /** Accepted connections in all; undefined: the descriptor soft limit less DESCRIPTOR_HEADROOM. */
  maxConnections?: number;
  /** A connection must complete a message within this of connecting, or of starting one. */
  headerTimeoutMs: number;
  /** A connection nobody has authenticated or registered on is closed after this long without a message. */
  idleTimeoutMs: number;
  /** Addresses or CIDR blocks of load balancers: exempt from the per-address limit, PROXY protocol believed. */
  trustedProxies: readonly string[];
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = {
  maxConnectionsPerAddress: 100,
  headerTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  trustedProxies: [],
};

/**
 * Descriptors kept free below the process limit for what is not a SIP connection: the
 * operations server (/health, /metrics), the database, logs, connections we dial.
 */
export const DESCRIPTOR_HEADROOM = 256;
/** Global limit when the descriptor limit cannot be read (not Linux). */
const FALLBACK_MAX_CONNECTIONS = 10_000;

/** The process's soft limit on open files (RLIMIT_NOFILE), where the system tells (Linux). */
export function descriptorSoftLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m || m[1] === 'unlimited') return undefined;
    return Number(m[1]);
  } catch {
    return undefined;
  }
}

/** The global limit to enforce: the configured one, never closer than the headroom to the descriptor limit. */
export function effectiveMaxConnections(
  configured: number | undefined,
  softLimit: number | undefined,
): number {
  const ceiling = softLimit === undefined ? undefined : Math.max(1, softLimit - DESCRIPTOR_HEADROOM);
  if (configured === undefined) return ceiling ?? FALLBACK_MAX_CONNECTIONS;
  return ceiling === undefined ? configured : Math.min(configured, ceiling);
}

export type ConnectionRefusal =
  | 'per_address'
  | 'global'
  | 'untrusted_proxy'
  | 'bad_proxy_header'
  | 'peer_certificate';
export type ConnectionTimeout = 'header_timeout' | 'idle_timeout';

/** A counted connection; `release` is idempotent so every close path may call it. */
export interface ConnectionLease {
  release(): void;
}

/**
 * Counts accepted connections per address and in all. Admission and release are one Map
 * operation each, so a flood of opens or closes costs the same per connection at any size.
 */
export class ConnectionLimiter {
  private readonly perAddress = new Map<string, number>();
  private readonly trusted = new BlockList();
  private total = 0;

  constructor(
    readonly maxPerAddress: number,
    readonly maxTotal: number,
    trustedProxies: readonly string[] = [],
  ) {
    for (const entry of trustedProxies) addToBlockList(this.trusted, entry);
  }

  get count(): number {
    return this.total;
  }

  addressCount(address: string): number {
    return this.perAddress.get(address) ?? 0;
  }

  isTrusted(address: string): boolean {
    const family = isIP(address);
    if (family === 0) return false;
    return this.trusted.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }

  /** A connection from `address`: a lease, or why it is refused. */
  admit(address: string): ConnectionLease | ConnectionRefusal {
    if (this.total >= this.maxTotal) return 'global';
    const trusted = this.isTrusted(address);
    if (!trusted && this.addressCount(address) >= this.maxPerAddress) return 'per_address';
    this.total++;
    const counted = trusted ? undefined : this.countAddress(address);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        counted?.release();
      },
    };
  }

  /**
   * The real client behind a trusted proxy (PROXY protocol): counted against its own
   * per-address limit, not again against the global one (its proxy connection already is).
   */
  admitBehindProxy(address: string): ConnectionLease | ConnectionRefusal {
    if (this.isTrusted(address)) return { release() {} };
    if (this.addressCount(address) >= this.maxPerAddress) return 'per_address';
    return this.countAddress(address);
  }

  private countAddress(address: string): ConnectionLease {
    this.perAddress.set(address, this.addressCount(address) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const n = (this.perAddress.get(address) ?? 1) - 1;
        if (n <= 0) this.perAddress.delete(address);
        else this.perAddress.set(address, n);
      },
    };
  }
}

/** Parses a trusted-proxy entry: an address or a CIDR block. Throws on anything else. */
export function addToBlockList(list: BlockList, entry: string): void {
  const [address, prefixText, extra] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined)
    throw new Error(`${JSON.stringify(entry)} is not an address or CIDR block`);
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (prefixText === undefined) {
    list.addAddress(address, type);
    return;
  }
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > (family === 6 ? 128 : 32)) {
    throw new Error(`${JSON.stringify(entry)} has a bad prefix length`);
  }
  list.addSubnet(address, prefix, type);
}

type Reason = ConnectionRefusal | ConnectionTimeout;

/**
 * Logs refused and timed-out connections without a line per connection in a flood: the
 * first of a quiet period is logged at once, the rest are summed by reason and address
 * and logged once per window.
 */
export class ConnectionEventLog {
  private windowOpen = false;
  private readonly pending = new Map<Reason, Map<string, number>>();
  private pendingAddresses = 0;

  constructor(
    private readonly log: Logger,
    private readonly windowMs = 10_000,
    /** Distinct addresses remembered per window; more are summed under "other". */
    private readonly maxAddresses = 1000,
  ) {}

  report(reason: Reason, address: string): void {
    if (!this.windowOpen) {
      this.windowOpen = true;
      this.write(reason, { address, reason }, messageFor(reason));
      setTimeout(() => this.flush(), this.windowMs).unref();
      return;
    }
    let byAddress = this.pending.get(reason);
    if (!byAddress) {
      byAddress = new Map();
      this.pending.set(reason, byAddress);
    }
    const known = byAddress.has(address);
    const key = known || this.pendingAddresses < this.maxAddresses ? address : 'other';
    if (!known && key === address) this.pendingAddresses++;
    byAddress.set(key, (byAddress.get(key) ?? 0) + 1);
  }

  private flush(): void {
    if (this.pending.size === 0) {
      this.windowOpen = false;
      return;
    }
    for (const [reason, byAddress] of this.pending) {
      let count = 0;
      for (const n of byAddress.values()) count += n;
      const top = [...byAddress].sort((a, b) => b[1] - a[1]).slice(0, 10);
      this.write(
        reason,
        { reason, count, addresses: byAddress.size, top: Object.fromEntries(top), windowMs: this.windowMs },
        `${messageFor(reason)} (${count} more in ${this.windowMs / 1000} s)`,
      );
    }
    this.pending.clear();
    this.pendingAddresses = 0;
    setTimeout(() => this.flush(), this.windowMs).unref();
  }

  private write(reason: Reason, fields: Record<string, unknown>, message: string): void {
    // Refusals say the server is being pushed; timeouts are routine (scanners, dead peers).
    if (reason === 'header_timeout' || reason === 'idle_timeout') this.log.info(fields, message);
    else this.log.warn(fields, message);
  }
}

function messageFor(reason: Reason): string {
  switch (reason) {
    case 'per_address':
      return 'connection refused: too many connections from the address';
    case 'global':
      return 'connection refused: connection limit reached';
    case 'untrusted_proxy':
      return 'connection refused: PROXY header from an address not in limits.trustedProxies';
    case 'bad_proxy_header':
      return 'connection refused: malformed PROXY header';
    case 'peer_certificate':
      return 'connection refused: a server peer (trustedPeers) presented no certificate valid for tls.ca';
    case 'header_timeout':
      return 'connection closed: no complete message within limits.headerTimeoutMs';
    case 'idle_timeout':
      return 'connection closed: idle and not registered within limits.idleTimeoutMs';
  }
}

/**
 * Keeps an insertion-ordered Map at `limit` entries or fewer by forgetting its oldest eighth once
 * it is over. Forgetting one at a time is dear: a Map keeps its deleted slots at the front until
 * it is rebuilt, so finding the oldest again walks past every one deleted before it (tens of
 * microseconds at 100,000 entries), a cost anyone could make the server pay per made-up name.
 * An eighth at a time walks them once per limit / 8 insertions.
 */
export function forgetOldest<K, V>(map: Map<K, V>, limit: number): void {
  let excess = map.size - limit;
  if (excess <= 0) return;
  excess += Math.floor(limit / 8);
  for (const key of map.keys()) {
    if (excess-- <= 0) break;
    map.delete(key);
  }
}
