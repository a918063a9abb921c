import type { ParleyConfig } from '../ops/config.js';
import type { FederationEntry } from '../store/federation.js';
import type { Store } from '../store/store.js';
import {
  type EffectivePolicy,
  FederationError,
  FederationPolicy,
  normalizeFederationDomain,
} from './policy.js';
import { type ProbeResult, probeFederationPartner } from './probe.js';

/** What `parley federation allow|block add` did, for the person and for --json. */
export interface PartnerChange {
  domain: string;
  action: 'allow' | 'block';
  edge: string | null;
  note: string;
  /** What the domain was before: a script tells "added" from "changed" from "unchanged". */
  previous: 'allow' | 'block' | null;
  changed: boolean;
}

export interface PartnerListing {
  action: 'allow' | 'block';
  partners: Array<{ domain: string; edge: string | null; note: string; updatedAt: string }>;
}

function own(domain: string, ownDomain: string): void {
  if (domain === ownDomain.toLowerCase())
    throw new FederationError('INVALID_ARGUMENT', `${domain} is this deployment's own domain, not a partner`);
}

/** Allows a partner domain (optionally pinned to its edge FQDN), or blocks one. */
export async function putPartner(
  store: Store,
  opts: { domain: string; action: 'allow' | 'block'; edge?: string; note?: string; ownDomain: string },
): Promise<PartnerChange> {
  const domain = normalizeFederationDomain(opts.domain);
  own(domain, opts.ownDomain);
  const edgeFqdn = opts.edge === undefined ? undefined : normalizeFederationDomain(opts.edge, 'edge FQDN');
  if (edgeFqdn && opts.action === 'block')
    throw new FederationError('INVALID_ARGUMENT', '--edge applies to allowed partners, not to blocked ones');
  let result: { entry: FederationEntry; previous?: FederationEntry };
  try {
    result = await store.federation.put({ domain, action: opts.action, edgeFqdn, note: opts.note });
  } catch (err) {
    if (err instanceof Error && /clearinghouse/.test(err.message))
      throw new FederationError('FEDERATION_CONFLICT', err.message);
    throw err;
  }
  const prev = result.previous;
  return {
    domain,
    action: opts.action,
    edge: result.entry.edgeFqdn ?? null,
    note: result.entry.note,
    previous: prev && prev.action !== 'clearinghouse' ? prev.action : null,
    changed:
      !prev ||
      prev.action !== opts.action ||
      (prev.edgeFqdn ?? null) !== (edgeFqdn ?? null) ||
      prev.note !== (opts.note ?? ''),
  };
}

/** Takes a domain off the allow or block list: federation with it is closed again. */
export async function removePartner(
  store: Store,
  opts: { domain: string; action: 'allow' | 'block' },
): Promise<{ domain: string; action: 'allow' | 'block' }> {
  const domain = normalizeFederationDomain(opts.domain);
  if (!(await store.federation.remove(domain, opts.action))) {
    const list = opts.action === 'allow' ? 'allow list' : 'block list';
    throw new FederationError('FEDERATION_NOT_LISTED', `${domain} is not on the ${list}`);
  }
  return { domain, action: opts.action };
}

export async function listPartners(store: Store, action: 'allow' | 'block'): Promise<PartnerListing> {
  const entries = await store.federation.list(action);
  return {
    action,
    partners: entries.map((e) => ({
      domain: e.domain,
      edge: e.edgeFqdn ?? null,
      note: e.note,
      updatedAt: e.updatedAt.toISOString(),
    })),
  };
}

export async function setClearinghouse(
  store: Store,
  fqdn: string,
): Promise<{ clearinghouse: string; replaced: string | null }> {
  const name = normalizeFederationDomain(fqdn, 'clearinghouse FQDN');
  try {
    const { previous } = await store.federation.setClearinghouse(name);
    return { clearinghouse: name, replaced: previous ?? null };
  } catch (err) {
    if (err instanceof Error && /list: remove it/.test(err.message))
      throw new FederationError('FEDERATION_CONFLICT', err.message);
    throw err;
  }
}

export async function clearClearinghouse(store: Store): Promise<{ cleared: string | null }> {
  return { cleared: (await store.federation.clearClearinghouse()) ?? null };
}

/** The policy every edge of this store enforces, as `parley federation show` prints it. */
export async function showPolicy(
  store: Store,
  ownDomain: string,
): Promise<EffectivePolicy & { domain: string }> {
  const policy = new FederationPolicy(await store.federation.list(), [ownDomain.toLowerCase()]);
  return { domain: ownDomain, ...policy.describe() };
}

/** `parley federation test DOMAIN`: the policy from the store, the certificates from the configuration. */
export async function testPartner(
  store: Store,
  config: ParleyConfig,
  opts: { domain: string; dnsServers?: string[]; timeoutMs?: number },
): Promise<ProbeResult> {
  const domain = normalizeFederationDomain(opts.domain);
  if (!config.tls)
    throw new FederationError(
      'INVALID_ARGUMENT',
      "federation runs over mutual TLS: set tls.cert and tls.key (this deployment's edge certificate) and tls.ca in parley.yaml",
    );
  const policy = new FederationPolicy(await store.federation.list(), [config.domain.toLowerCase()]);
  return probeFederationPartner({
    domain,
    ourDomain: config.domain,
    policy,
    tls: config.tls,
    dnsServers:
      opts.dnsServers && opts.dnsServers.length > 0 ? opts.dnsServers : config.federation.dnsServers,
    timeoutMs: opts.timeoutMs,
  });
}
