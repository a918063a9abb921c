/**
 * Watcher authorization: may this watcher see this presentity's presence? A small, fixed
 * form of the authorization rules of RFC 5025 (presence authorization rules) on the common
 * policy model of RFC 4745, matching what enterprise clients expose: a per-user list of
 * allow/block entries, each naming one address, one domain, or everybody.
 *
 * Precedence (documented for admins and clients):
 *  1. The presentity always sees itself (RFC 5025 section 3.2.1 notes the presentity's own
 *     devices must be able to watch it).
 *  2. The most specific matching rule decides: exact address > domain > sub-domain wildcard
 *     ('*.example.com') > everybody ('*'). This mirrors RFC 4745 identity conditions: <one id>
 *     is narrower than <many domain>, which is narrower than an empty condition.
 *  3. Among equally specific matching rules, block beats allow. This departs from RFC 4745
 *     section 10 (which combines by the most permissive value): a user who blocks someone
 *     expects the block to hold even if an allow for the same target slipped in.
 *  4. No matching rule: watchers of the presentity's organisation (organisationDomains,
 *     default its own domain) are allowed when sameDomainDefault is set; everybody else is
 *     'pending', i.e. the subscription is accepted in the pending state until the user
 *     decides (RFC 6665 section 4.2.1, with watcher information per RFC 3857).
 *
 * A block rule yields 'polite-block' by default: the watcher is accepted and sees the user
 * offline (RFC 5025 section 3.2.1, sub-handling "polite-block"), so blocking cannot be
 * detected; with blockedWatchers: 'block' it yields 'block' (the subscription is rejected).
 */

import type { AccessRule } from '../store/contact-lists.js';

/** One allow/block entry of a presentity's list, as stored with its contact list. */
export type { AccessRule };

export type WatcherDecision = 'allow' | 'block' | 'polite-block' | 'pending';

export interface AuthorizeWatcherOptions {
  /** The watcher's address of record ('bob@example.com') or a SIP URI / name-addr. */
  watcher: string;
  presentity: string;
  rules: AccessRule[];
  /** Default true: the same organisation may watch, others wait for the user's approval. */
  sameDomainDefault?: boolean;
  /** Domains counted as "same organisation"; default the presentity's own domain. */
  organisationDomains?: string[];
  /** What an explicit block rule answers; default 'polite-block'. */
  blockedWatchers?: 'polite-block' | 'block';
}

export type AccessPattern =
  | { kind: 'address'; value: string; specificity: 3 }
  | { kind: 'domain'; value: string; specificity: 2 }
  | { kind: 'subdomains'; value: string; specificity: 1 }
  | { kind: 'everybody'; specificity: 0 };

/**
 * 'Bob <sip:Bob@Example.COM:5061;transport=tls>' -> 'bob@example.com'. Addresses are compared
 * case-insensitively: directory-provisioned SIP addresses are lower-case e-mail-like names,
 * and treating "Bob" and "bob" as two people would let a block rule be sidestepped.
 */
export function normalizeAddress(value: string): string {
  let s = value.trim();
  const lt = s.indexOf('<');
  if (lt >= 0) {
    const gt = s.indexOf('>', lt);
    s = s.slice(lt + 1, gt >= 0 ? gt : undefined);
  }
  const colon = s.indexOf(':');
  const at = s.indexOf('@');
  // A scheme is a colon before any '@' (sip:, sips:, pres:, im:); a colon after it is a port.
  if (colon >= 0 && (at < 0 || colon < at)) s = s.slice(colon + 1);
  let end = s.length;
  for (const stop of [';', '?', '>']) {
    const i = s.indexOf(stop);
    if (i >= 0 && i < end) end = i;
  }
  s = s.slice(0, end);
  const userEnd = s.lastIndexOf('@');
  const hostPart = userEnd >= 0 ? s.slice(userEnd + 1) : s;
  const host = stripPort(hostPart);
  const user = userEnd >= 0 ? s.slice(0, userEnd) : '';
  const address = user === '' ? host : `${decodeUser(user)}@${host}`;
  return address.toLowerCase();
}

function stripPort(hostport: string): string {
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    return close >= 0 ? hostport.slice(0, close + 1) : hostport;
  }
  const colon = hostport.indexOf(':');
  return colon >= 0 ? hostport.slice(0, colon) : hostport;
}

function decodeUser(user: string): string {
  if (!user.includes('%')) return user;
  try {
    return decodeURIComponent(user);
  } catch {
    return user;
  }
}

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at >= 0 ? address.slice(at + 1) : address;
}

/** Reads a rule pattern; undefined when it names nothing usable (callers reject it on input). */
export function parseAccessPattern(pattern: string): AccessPattern | undefined {
  const p = pattern.trim();
  if (p === '') return undefined;
  if (p === '*') return { kind: 'everybody', specificity: 0 };
  if (p.startsWith('*.')) {
    const domain = p.slice(2).toLowerCase();
    return isDomain(domain) ? { kind: 'subdomains', value: domain, specificity: 1 } : undefined;
  }
  const bare = p.startsWith('@') ? p.slice(1) : p;
  const address = normalizeAddress(bare);
  if (address === '' || address.includes('*')) return undefined;
  if (address.includes('@')) {
    const at = address.lastIndexOf('@');
    if (at === 0 || !isDomain(address.slice(at + 1))) return undefined;
    return { kind: 'address', value: address, specificity: 3 };
  }
  return isDomain(address) ? { kind: 'domain', value: address, specificity: 2 } : undefined;
}

function isDomain(value: string): boolean {
  if (value === '' || value.length > 255) return false;
  if (value.startsWith('[') && value.endsWith(']')) return true;
  for (const label of value.split('.')) {
    if (label === '' || label.length > 63) return false;
    for (let i = 0; i < label.length; i++) {
      const c = label.charCodeAt(i);
      const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
      if (!ok) return false;
    }
  }
  return true;
}

export function patternMatches(pattern: AccessPattern, watcherAddress: string): boolean {
  switch (pattern.kind) {
    case 'everybody':
      return true;
    case 'address':
      return watcherAddress === pattern.value;
    case 'domain':
      return domainOf(watcherAddress) === pattern.value;
    case 'subdomains':
      return domainOf(watcherAddress).endsWith(`.${pattern.value}`);
  }
}

export function authorizeWatcher(opts: AuthorizeWatcherOptions): WatcherDecision {
  const watcher = normalizeAddress(opts.watcher);
  const presentity = normalizeAddress(opts.presentity);
  if (watcher !== '' && watcher === presentity) return 'allow';

  let bestSpecificity = -1;
  let decision: 'allow' | 'block' | undefined;
  for (const rule of opts.rules) {
    const pattern = parseAccessPattern(rule.pattern);
    if (!pattern || !patternMatches(pattern, watcher)) continue;
    if (pattern.specificity > bestSpecificity) {
      bestSpecificity = pattern.specificity;
      decision = rule.action;
    } else if (pattern.specificity === bestSpecificity && rule.action === 'block') {
      decision = 'block';
    }
  }
  if (decision === 'allow') return 'allow';
  if (decision === 'block') return opts.blockedWatchers ?? 'polite-block';

  if (opts.sameDomainDefault ?? true) {
    const organisation = (opts.organisationDomains ?? [domainOf(presentity)]).map((d) =>
      d.trim().toLowerCase(),
    );
    if (watcher.includes('@') && organisation.includes(domainOf(watcher))) return 'allow';
  }
  return 'pending';
}
