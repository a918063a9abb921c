import { promises as dnsPromises } from 'node:dns';

/** The part of node:dns/promises this module uses, so tests inject a fake resolver. */
export interface SrvResolver {
  resolveSrv(name: string): Promise<Array<{ name: string; port: number; priority: number; weight: number }>>;
}

export interface SrvTarget {
  host: string;
  port: number;
  priority: number;
  weight: number;
}

/** DNS answers that mean "no such record" rather than "DNS is broken". */
const NO_RECORD_CODES = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN', 'ENONAME']);

/**
 * Finds a federated partner's edges: SRV `_sipfederationtls._tcp.DOMAIN`, in the order to
 * try them (RFC 2782). An empty list means the partner publishes no federation edge (or
 * says so with the "." target); DNS failures other than "no record" are thrown, so a
 * temporary outage is not mistaken for a partner without federation.
 */
export async function resolveFederationEdge(
  domain: string,
  resolver: SrvResolver = dnsPromises,
  random: () => number = Math.random,
): Promise<SrvTarget[]> {
  const name = `_sipfederationtls._tcp.${domain.toLowerCase().replace(/\.$/, '')}`;
  let records: Awaited<ReturnType<SrvResolver['resolveSrv']>>;
  try {
    records = await resolver.resolveSrv(name);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code && NO_RECORD_CODES.has(code)) return [];
    throw err;
  }
  return orderSrvTargets(
    records.map((r) => ({
      host: r.name.replace(/\.$/, ''),
      port: r.port,
      priority: r.priority,
      weight: r.weight,
    })),
    random,
  );
}

/**
 * RFC 2782 "Usage rules": lowest priority first; within a priority, pick by weighted
 * random selection (weight-0 records placed first so they are chosen only rarely when
 * others have weight), repeating until the priority's records are exhausted. A single
 * record with target "." means the service is decidedly not available.
 */
export function orderSrvTargets(records: SrvTarget[], random: () => number = Math.random): SrvTarget[] {
  if (records.length === 1 && (records[0].host === '' || records[0].host === '.')) return [];
  const byPriority = new Map<number, SrvTarget[]>();
  for (const r of records) {
    if (r.host === '' || r.host === '.') continue;
    const group = byPriority.get(r.priority) ?? [];
    group.push(r);
    byPriority.set(r.priority, group);
  }
  const ordered: SrvTarget[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = byPriority.get(priority)!;
    // Weight-0 entries first, as the RFC's selection procedure requires.
    const pending = [...group.filter((r) => r.weight === 0), ...group.filter((r) => r.weight > 0)];
    while (pending.length > 0) {
      const total = pending.reduce((sum, r) => sum + r.weight, 0);
      const pick = total === 0 ? 0 : random() * total;
      let running = 0;
      let index = pending.length - 1;
      for (let i = 0; i < pending.length; i++) {
        running += pending[i].weight;
        // RFC 2782: the first record whose running sum is >= the random number; only a
        // random 0 selects a weight-0 record at the front.
        if (running >= pick) {
          index = i;
          break;
        }
      }
      ordered.push(pending.splice(index, 1)[0]);
    }
  }
  return ordered;
}
