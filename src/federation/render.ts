import type { PartnerListing } from './admin.js';
import type { EffectivePolicy } from './policy.js';
import type { ProbeResult } from './probe.js';

/** Table lines for `parley federation allow|block list`. */
export function renderPartners(listing: PartnerListing): string[] {
  if (listing.partners.length === 0)
    return [
      listing.action === 'allow' ? 'No partner is allowed: federation is closed.' : 'No domain is blocked.',
    ];
  const width = Math.max(6, ...listing.partners.map((p) => p.domain.length));
  const edgeWidth = Math.max(4, ...listing.partners.map((p) => (p.edge ?? 'SRV').length));
  const lines = [
    `${'DOMAIN'.padEnd(width)}  ${listing.action === 'allow' ? `${'EDGE'.padEnd(edgeWidth)}  ` : ''}NOTE`,
  ];
  for (const p of listing.partners) {
    const edge = listing.action === 'allow' ? `${(p.edge ?? 'SRV').padEnd(edgeWidth)}  ` : '';
    lines.push(`${p.domain.padEnd(width)}  ${edge}${p.note}`);
  }
  lines.push(`${listing.partners.length} ${listing.action === 'allow' ? 'allowed' : 'blocked'} domain(s)`);
  return lines;
}

/** `parley federation show`: the effective policy in a few lines. */
export function renderPolicy(policy: EffectivePolicy & { domain: string }): string[] {
  const lines = [`Federation for ${policy.domain}: closed except for the allowed domains below.`];
  lines.push(
    policy.allowed.length === 0
      ? 'Allowed: none'
      : `Allowed: ${policy.allowed.map((a) => `${a.domain} (edge ${a.edge})`).join(', ')}`,
  );
  lines.push(
    `Blocked: ${policy.blocked.length === 0 ? 'none' : policy.blocked.map((b) => b.domain).join(', ')}`,
  );
  lines.push(
    `Clearinghouse: ${policy.clearinghouse ?? 'none'}${policy.clearinghouse ? ' (for allowed partners without an edge of their own)' : ''}`,
  );
  return lines;
}

/** `parley federation test`: one line a step, then the verdict. */
export function renderProbe(result: ProbeResult): string[] {
  const lines = result.steps.map(
    (s) =>
      `${s.ok ? 'ok  ' : s.step === 'policy' ? 'note' : 'FAIL'}  ${s.step.padEnd(11)} ${s.detail}${s.ms > 0 ? ` (${s.ms} ms)` : ''}`,
  );
  lines.push(
    result.ok
      ? `${result.domain}: reachable over mutual TLS${result.allowed ? ' and allowed' : ', but not allowed yet'}.`
      : `${result.domain}: not reachable; fix the step marked FAIL.`,
  );
  return lines;
}
