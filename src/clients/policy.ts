/**
 * Client version control: ordered rules on the User-Agent (RFC 3261 20.41), the first match
 * deciding, and a default for clients no rule matches. Pure: the store holds the rules, the
 * server compiles them once per change and asks `decide` per request (a cached Map lookup).
 */

import type { ClientAction, ClientDefault, ClientRule } from '../store/clients.js';

// The rows' shapes belong to the store that keeps them (as AccessRule does).
export type { ClientAction, ClientDefault, ClientRule } from '../store/clients.js';
export const CLIENT_ACTIONS: readonly ClientAction[] = ['allow', 'block', 'upgrade'];

export interface ClientDecision {
  action: ClientAction;
  /** The rule that matched; undefined when the default decided. */
  rule?: ClientRule;
  /** The product and version read from the User-Agent for the matching rule, when one did. */
  product?: string;
  version?: string;
  reason: string;
  upgradeUrl?: string;
  /** Why, in a sentence: for `parley clients policy test` and logs. */
  explanation: string;
}

type Comparator = { op: '<' | '<=' | '>' | '>=' | '='; version: number[] };

/** A version range's problem, or undefined when `text` is one. */
export function versionRangeProblem(text: string): string | undefined {
  return parseRange(text) === null
    ? `"${text}" is not a version range (e.g. "*", ">=3.10 <4", "=2.1.0")`
    : undefined;
}

/** A product token's problem, or undefined when `text` is one (RFC 3261 25.1 token, or `*`). */
export function productProblem(text: string): string | undefined {
  return text === '*' || /^[A-Za-z0-9.!%*_+`'~-]+$/.test(text)
    ? undefined
    : `"${text}" is not a product token (letters, digits and . ! % * _ + \` ' ~ -, or * for any client)`;
}

/** null: not a range; []: any version. */
function parseRange(text: string): Comparator[] | null {
  const trimmed = text.trim();
  if (trimmed === '*' || trimmed === '') return [];
  const out: Comparator[] = [];
  for (const part of trimmed.split(/\s+/)) {
    const m = /^(<=|>=|<|>|=)?v?(\d+(?:\.\d+)*)$/.exec(part);
    if (!m) return null;
    out.push({ op: (m[1] ?? '=') as Comparator['op'], version: m[2].split('.').map(Number) });
  }
  return out;
}

/** Compares dotted versions numerically, missing parts being 0 (3.10 > 3.9, 4 = 4.0.0). */
export function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function satisfies(version: number[], range: Comparator[]): boolean {
  return range.every(({ op, version: bound }) => {
    const c = compareVersions(version, bound);
    return op === '<' ? c < 0 : op === '<=' ? c <= 0 : op === '>' ? c > 0 : op === '>=' ? c >= 0 : c === 0;
  });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The product and version a User-Agent names. Clients write it several ways: `JsSIP 3.10.0`,
 * `SIPp/3.7`, `baresip v3.16.0 (x86_64/linux)`, `Parley-Probe/1.0 (bot)`; the product must
 * start the UA or follow a space, `(` or `;`, and the version, when there is one, follows
 * `/` or spaces and an optional `v`.
 */
function productMatcher(product: string): RegExp {
  return new RegExp(
    `(?:^|[\\s(;,])${escapeRegExp(product)}(?:(?:/|\\s+)v?(\\d+(?:\\.\\d+)*))?(?=$|[\\s/;,)._-])`,
    'i',
  );
}

/** The first product token of a User-Agent and its version, for reports (`parley clients report`). */
export function readUserAgent(ua: string): { product: string; version: string } {
  const m = /^\s*([^\s/()]+)(?:(?:\/|\s+)v?(\d+(?:\.\d+)*))?/.exec(ua);
  if (!m) return { product: '(none)', version: '' };
  return { product: m[1], version: m[2] ?? '' };
}

interface CompiledRule {
  rule: ClientRule;
  matcher?: RegExp;
  range: Comparator[];
}

/** The rules compiled for a server: `decide` reads a cache keyed by the whole User-Agent. */
export class ClientPolicy {
  private readonly compiled: CompiledRule[];
  private readonly cache = new Map<string, ClientDecision>();

  constructor(
    readonly rules: readonly ClientRule[],
    readonly fallback: ClientDefault,
  ) {
    this.compiled = [...rules]
      .sort((a, b) => a.position - b.position)
      .map((rule) => ({
        rule,
        matcher: rule.product === '*' ? undefined : productMatcher(rule.product),
        range: parseRange(rule.versions) ?? [],
      }));
  }

  /** Everyone allowed: what a server runs before it has read the rules, and with none. */
  static allowAll(): ClientPolicy {
    return new ClientPolicy([], { action: 'allow', reason: '' });
  }

  /** Whether every client is allowed whatever its User-Agent (nothing to check per request). */
  get allowsAll(): boolean {
    return this.fallback.action === 'allow' && this.compiled.every((c) => c.rule.action === 'allow');
  }

  decide(userAgent: string | undefined): ClientDecision {
    const ua = userAgent ?? '';
    const hit = this.cache.get(ua);
    if (hit) return hit;
    const decision = this.evaluate(ua);
    // User-Agents are few (a deployment runs a handful of client builds); a client making
    // up a new one per request must not grow the cache without bound.
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(ua, decision);
    return decision;
  }

  private evaluate(ua: string): ClientDecision {
    for (const { rule, matcher, range } of this.compiled) {
      let version: string | undefined;
      let product: string | undefined;
      if (matcher) {
        const m = matcher.exec(ua);
        if (!m) continue;
        product = rule.product;
        version = m[1];
        if (range.length > 0 && (version === undefined || !satisfies(version.split('.').map(Number), range)))
          continue;
      } else if (range.length > 0) {
        continue;
      }
      const what = matcher ? `${product}${version ? ` ${version}` : ''}` : 'any client';
      const rangeText = range.length > 0 ? ` (versions ${rule.versions})` : '';
      return {
        action: rule.action,
        rule,
        product,
        version,
        reason: rule.reason,
        upgradeUrl: rule.upgradeUrl,
        explanation: `rule ${rule.position} (id ${rule.id}) matches ${what}: ${rule.product}${rangeText} -> ${rule.action}`,
      };
    }
    return {
      action: this.fallback.action,
      reason: this.fallback.reason,
      upgradeUrl: this.fallback.upgradeUrl,
      explanation: `no rule matches ${ua ? JSON.stringify(ua) : 'a request without User-Agent'}: the default -> ${this.fallback.action}`,
    };
  }
}

const CACHE_LIMIT = 4096;

/** RFC 3261 25.1 quoted-string: backslash-escape `"` and `\`, no line breaks. */
function quoted(text: string): string {
  return `"${text.replace(/[\r\n]+/g, ' ').replace(/["\\]/g, '\\$&')}"`;
}

/**
 * The Warning of a refusal (RFC 3261 20.43): code 399 (miscellaneous), the server's domain
 * as the warn-agent, and the reason and upgrade URL as the text a client shows its user.
 */
export function refusalWarning(decision: ClientDecision, agent: string): string {
  const who = decision.product
    ? `${decision.product}${decision.version ? ` ${decision.version}` : ''}`
    : 'This client';
  const why = decision.reason ? `: ${decision.reason}` : '';
  const text =
    decision.action === 'upgrade'
      ? `${who} is no longer allowed${why}; upgrade at ${decision.upgradeUrl}`
      : `${who} is not allowed${why}`;
  return `399 ${agent} ${quoted(text)}`;
}

/** The Reason-Phrase of a refusal's 403. */
export function refusalPhrase(decision: ClientDecision): string {
  return decision.action === 'upgrade'
    ? 'Forbidden - Client Upgrade Required'
    : 'Forbidden - Client Not Allowed';
}
