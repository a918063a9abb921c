import { NO_SERVERS } from '../ops/status.js';
import type { ClientPolicyRepository } from '../store/clients.js';
import type { ServerRecord } from '../store/servers.js';
import type { ClientEndpointCount } from './gate.js';
import {
  CLIENT_ACTIONS,
  type ClientAction,
  type ClientDecision,
  type ClientDefault,
  ClientPolicy,
  type ClientRule,
  productProblem,
  versionRangeProblem,
} from './policy.js';

/** A failure of a clients command, carrying its catalogue code (src/cli/errors.ts). */
export class ClientPolicyError extends Error {
  constructor(
    readonly code: 'CLIENT_RULE_INVALID' | 'CLIENT_RULE_NOT_FOUND',
    message: string,
  ) {
    super(message);
    this.name = 'ClientPolicyError';
  }
}

export interface ClientRuleInput {
  product: string;
  versions?: string;
  action: string;
  upgradeUrl?: string;
  reason?: string;
  position?: number;
}

function checkAction(action: string): ClientAction {
  if (!(CLIENT_ACTIONS as readonly string[]).includes(action))
    throw new ClientPolicyError(
      'CLIENT_RULE_INVALID',
      `"${action}" is not one of ${CLIENT_ACTIONS.join(', ')}`,
    );
  return action as ClientAction;
}

function checkUpgradeUrl(action: ClientAction, url: string | undefined): string | undefined {
  if (action === 'upgrade') {
    if (!url)
      throw new ClientPolicyError(
        'CLIENT_RULE_INVALID',
        'an upgrade rule needs --url, where clients get the new version',
      );
    try {
      const u = new URL(url);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
    } catch {
      throw new ClientPolicyError('CLIENT_RULE_INVALID', `"${url}" is not an http(s) URL`);
    }
    return url;
  }
  if (url)
    throw new ClientPolicyError('CLIENT_RULE_INVALID', `--url goes with the upgrade action, not ${action}`);
  return undefined;
}

/** Checks and adds a rule: `parley clients policy add`. */
export async function addClientRule(
  repo: ClientPolicyRepository,
  input: ClientRuleInput,
): Promise<ClientRule> {
  const action = checkAction(input.action);
  const versions = input.versions?.trim() || '*';
  const problem = productProblem(input.product) ?? versionRangeProblem(versions);
  if (problem) throw new ClientPolicyError('CLIENT_RULE_INVALID', problem);
  if (input.product === '*' && versions !== '*')
    throw new ClientPolicyError('CLIENT_RULE_INVALID', 'a rule for any client (*) takes no version range');
  const upgradeUrl = checkUpgradeUrl(action, input.upgradeUrl);
  return repo.add({
    product: input.product,
    versions,
    action,
    upgradeUrl,
    reason: input.reason,
    position: input.position,
  });
}

export async function removeClientRule(repo: ClientPolicyRepository, id: number): Promise<ClientRule> {
  const removed = await repo.remove(id);
  if (!removed) throw new ClientPolicyError('CLIENT_RULE_NOT_FOUND', `there is no client rule ${id}`);
  return removed;
}

export async function moveClientRule(
  repo: ClientPolicyRepository,
  id: number,
  position: number,
): Promise<ClientRule> {
  const moved = await repo.move(id, position);
  if (!moved) throw new ClientPolicyError('CLIENT_RULE_NOT_FOUND', `there is no client rule ${id}`);
  return moved;
}

export async function setClientDefault(
  repo: ClientPolicyRepository,
  input: { action: string; upgradeUrl?: string; reason?: string },
): Promise<{ fallback: ClientDefault; previous: ClientDefault }> {
  const action = checkAction(input.action);
  const fallback: ClientDefault = { action, reason: input.reason ?? '' };
  const url = checkUpgradeUrl(action, input.upgradeUrl);
  if (url) fallback.upgradeUrl = url;
  const previous = await repo.setDefault(fallback);
  return { fallback, previous };
}

export interface ClientPolicyListing {
  rules: ClientRule[];
  default: ClientDefault;
}

export async function listClientPolicy(repo: ClientPolicyRepository): Promise<ClientPolicyListing> {
  const { rules, fallback } = await repo.load();
  return { rules, default: fallback };
}

export interface ClientPolicyTest {
  userAgent: string;
  action: ClientAction;
  rule: ClientRule | null;
  product: string | null;
  version: string | null;
  explanation: string;
  upgradeUrl: string | null;
}

/** Which rule a User-Agent meets and why: `parley clients policy test`. */
export async function testUserAgent(
  repo: ClientPolicyRepository,
  userAgent: string,
): Promise<ClientPolicyTest> {
  const { rules, fallback } = await repo.load();
  const d: ClientDecision = new ClientPolicy(rules, fallback).decide(userAgent);
  return {
    userAgent,
    action: d.action,
    rule: d.rule ?? null,
    product: d.product ?? null,
    version: d.version ?? null,
    explanation: d.explanation,
    upgradeUrl: d.upgradeUrl ?? null,
  };
}

export function renderClientRules(listing: ClientPolicyListing): string[] {
  const lines = ['POS  ID    ACTION   PRODUCT          VERSIONS        REASON / URL'];
  for (const r of listing.rules) {
    const extra = [r.reason, r.upgradeUrl].filter(Boolean).join(' ');
    lines.push(
      `${String(r.position).padEnd(4)} ${String(r.id).padEnd(5)} ${r.action.padEnd(8)} ${r.product.padEnd(16)} ${r.versions.padEnd(15)} ${extra}`,
    );
  }
  const d = listing.default;
  lines.push(
    `-    -     ${d.action.padEnd(8)} (default)        ${''.padEnd(15)} ${[d.reason, d.upgradeUrl].filter(Boolean).join(' ')}`,
  );
  return lines;
}

export interface ClientsReport {
  /** Endpoints signed in now, by product and version, over every server that answered. */
  clients: ClientEndpointCount[];
  servers: Array<{ id: string; reachable: boolean; endpoints: number; error?: string }>;
}

/**
 * Asks every registered server's health endpoint for its signed-in endpoints by client
 * (`clients` of GET /health) and adds them up: `parley clients report`.
 */
export async function collectClientsReport(
  servers: readonly ServerRecord[],
  opts: { timeoutMs: number; fetchJson?: (url: string, timeoutMs: number) => Promise<unknown> },
): Promise<ClientsReport> {
  const get = opts.fetchJson ?? fetchJson;
  const totals = new Map<string, ClientEndpointCount>();
  const report: ClientsReport = { clients: [], servers: [] };
  await Promise.all(
    servers.map(async (s) => {
      if (!s.healthUrl) {
        report.servers.push({ id: s.id, reachable: false, endpoints: 0, error: 'no health URL registered' });
        return;
      }
      try {
        const body = (await get(s.healthUrl, opts.timeoutMs)) as { clients?: unknown };
        const list = Array.isArray(body.clients) ? (body.clients as ClientEndpointCount[]) : [];
        let endpoints = 0;
        for (const c of list) {
          endpoints += c.endpoints;
          const key = `${c.product}\u0000${c.version}`;
          const t = totals.get(key);
          if (t) t.endpoints += c.endpoints;
          else totals.set(key, { ...c });
        }
        report.servers.push({ id: s.id, reachable: true, endpoints });
      } catch (err) {
        report.servers.push({ id: s.id, reachable: false, endpoints: 0, error: (err as Error).message });
      }
    }),
  );
  report.clients = [...totals.values()].sort(
    (a, b) => b.endpoints - a.endpoints || a.product.localeCompare(b.product),
  );
  report.servers.sort((a, b) => a.id.localeCompare(b.id));
  return report;
}

async function fetchJson(url: string, timeoutMs: number): Promise<unknown> {
  const res = await fetch(url, {
    signal: AbortSignal.timeout(timeoutMs),
    headers: { Accept: 'application/json' },
  });
  return res.json();
}

export function renderClientsReport(report: ClientsReport): string[] {
  const lines = ['PRODUCT          VERSION     ENDPOINTS  RULES NOW'];
  for (const c of report.clients)
    lines.push(
      `${c.product.padEnd(16)} ${(c.version || '-').padEnd(11)} ${String(c.endpoints).padEnd(10)} ${c.action}`,
    );
  const total = report.clients.reduce((n, c) => n + c.endpoints, 0);
  lines.push(
    `${total} endpoint(s) signed in on ${report.servers.filter((s) => s.reachable).length} server(s)`,
  );
  for (const s of report.servers.filter((x) => !x.reachable)) lines.push(`${s.id}: not counted (${s.error})`);
  if (report.servers.length === 0) lines.push(...NO_SERVERS);
  if (report.clients.some((c) => c.action !== 'allow'))
    lines.push('Endpoints whose rule is now block or upgrade are refused at their next refresh.');
  return lines;
}
