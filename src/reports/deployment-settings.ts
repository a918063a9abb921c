import YAML from 'yaml';
import {
  CLIENT_ACTIONS,
  type ClientAction,
  type ClientDefault,
  productProblem,
  versionRangeProblem,
} from '../clients/policy.js';
import { normalizeFederationDomain } from '../federation/policy.js';
import type { ParleyConfig } from '../ops/config.js';
import type { Store } from '../store/store.js';

/**
 * The deployment's settings as one YAML file (`parley config export|import`): what lives in
 * the store (client version rules and default, federation allow and block lists and the
 * clearinghouse) and, for review, the archiving and presence sections of this server's
 * parley.yaml, which import compares but cannot change (they belong to each server's file).
 */
export interface DeploymentSettings {
  version: 1;
  clients: {
    default: { action: ClientAction; url?: string; reason?: string };
    rules: Array<{ product: string; versions: string; action: ClientAction; url?: string; reason?: string }>;
  };
  federation: {
    allow: Array<{ domain: string; edge?: string; note?: string }>;
    block: Array<{ domain: string; note?: string }>;
    clearinghouse?: string;
  };
  /** From parley.yaml: shown for review, never imported. */
  archiving?: ParleyConfig['archiving'];
  presence?: ParleyConfig['presence'];
}

/** A settings file's problem, with the catalogue code of a bad input. */
export class SettingsFileError extends Error {
  readonly code = 'SETTINGS_FILE_INVALID';
}

const clean = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== '')) as T;

export async function exportSettings(store: Store, config: ParleyConfig): Promise<DeploymentSettings> {
  const { rules, fallback } = await store.clientPolicies.load();
  const partners = await store.federation.list();
  return {
    version: 1,
    clients: {
      default: clean({ action: fallback.action, url: fallback.upgradeUrl, reason: fallback.reason }),
      rules: rules.map((r) =>
        clean({
          product: r.product,
          versions: r.versions,
          action: r.action,
          url: r.upgradeUrl,
          reason: r.reason,
        }),
      ),
    },
    federation: clean({
      allow: partners
        .filter((p) => p.action === 'allow')
        .map((p) => clean({ domain: p.domain, edge: p.edgeFqdn, note: p.note })),
      block: partners
        .filter((p) => p.action === 'block')
        .map((p) => clean({ domain: p.domain, note: p.note })),
      clearinghouse: partners.find((p) => p.action === 'clearinghouse')?.domain,
    }),
    archiving: config.archiving,
    presence: config.presence,
  };
}

export function settingsToYaml(s: DeploymentSettings): string {
  return `# Parley deployment settings (parley config export). archiving and presence come from\n# parley.yaml and are shown for review: parley config import does not change them.\n${YAML.stringify(s)}`;
}

/** Reads and checks a settings file; every problem at once, naming its path in the file. */
export function parseSettings(text: string): DeploymentSettings {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new SettingsFileError(`not YAML: ${(err as Error).message}`);
  }
  const problems: string[] = [];
  const d = (doc ?? {}) as Record<string, unknown>;
  if (d.version !== 1) problems.push('version: must be 1');
  const clients = (d.clients ?? {}) as Record<string, unknown>;
  const fallback = (clients.default ?? { action: 'allow' }) as Record<string, unknown>;
  const action = (v: unknown, at: string) => {
    if (!(CLIENT_ACTIONS as readonly unknown[]).includes(v))
      problems.push(`${at}: "${String(v)}" is not one of ${CLIENT_ACTIONS.join(', ')}`);
  };
  action(fallback.action, 'clients.default.action');
  if (fallback.action === 'upgrade' && typeof fallback.url !== 'string')
    problems.push('clients.default.url: an upgrade default needs a url');
  const rules = Array.isArray(clients.rules) ? (clients.rules as Array<Record<string, unknown>>) : [];
  if (clients.rules !== undefined && !Array.isArray(clients.rules))
    problems.push('clients.rules: must be a list');
  rules.forEach((r, i) => {
    const at = `clients.rules[${i}]`;
    const p = typeof r.product === 'string' ? productProblem(r.product) : 'a product is required';
    if (p) problems.push(`${at}.product: ${p}`);
    const v = versionRangeProblem(String(r.versions ?? '*'));
    if (v) problems.push(`${at}.versions: ${v}`);
    action(r.action, `${at}.action`);
    if (r.action === 'upgrade' && typeof r.url !== 'string')
      problems.push(`${at}.url: an upgrade rule needs a url`);
  });
  const federation = (d.federation ?? {}) as Record<string, unknown>;
  const list = (key: 'allow' | 'block') => {
    const v = federation[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) {
      problems.push(`federation.${key}: must be a list`);
      return [];
    }
    return (v as Array<Record<string, unknown>>).map((e, i) => {
      try {
        return { ...e, domain: normalizeFederationDomain(String(e.domain ?? '')) };
      } catch (err) {
        problems.push(`federation.${key}[${i}].domain: ${(err as Error).message}`);
        return e;
      }
    });
  };
  const allow = list('allow');
  const block = list('block');
  if (problems.length > 0) throw new SettingsFileError(problems.join('\n'));
  return {
    version: 1,
    clients: {
      default: fallback as DeploymentSettings['clients']['default'],
      rules: rules.map((r) => ({
        ...r,
        versions: String(r.versions ?? '*'),
      })) as DeploymentSettings['clients']['rules'],
    },
    federation: {
      allow: allow as DeploymentSettings['federation']['allow'],
      block: block as DeploymentSettings['federation']['block'],
      clearinghouse: typeof federation.clearinghouse === 'string' ? federation.clearinghouse : undefined,
    },
    archiving: d.archiving as DeploymentSettings['archiving'],
    presence: d.presence as DeploymentSettings['presence'],
  };
}

export interface SettingsChange {
  section: string;
  change: 'add' | 'remove' | 'change';
  what: string;
}

export interface ImportResult {
  applied: boolean;
  changes: SettingsChange[];
  /** parley.yaml sections that differ from the file: set them in each server's parley.yaml. */
  notApplied: string[];
}

const ruleKey = (r: { product: string; versions: string; action: string; url?: string; reason?: string }) =>
  `${r.product} ${r.versions} -> ${r.action}${r.url ? ` ${r.url}` : ''}${r.reason ? ` (${r.reason})` : ''}`;

/**
 * Makes the store's settings equal the file's, in one transaction (running servers follow
 * the change feeds); `dryRun` only lists what would change.
 */
export async function importSettings(
  store: Store,
  config: ParleyConfig,
  wanted: DeploymentSettings,
  opts: { dryRun: boolean },
): Promise<ImportResult> {
  const current = await exportSettings(store, config);
  const changes: SettingsChange[] = [];
  const curRules = current.clients.rules.map(ruleKey);
  const newRules = wanted.clients.rules.map(ruleKey);
  const rulesChanged = curRules.join('\n') !== newRules.join('\n');
  if (rulesChanged) {
    for (const r of curRules)
      if (!newRules.includes(r)) changes.push({ section: 'clients.rules', change: 'remove', what: r });
    for (const r of newRules)
      if (!curRules.includes(r)) changes.push({ section: 'clients.rules', change: 'add', what: r });
    if (changes.length === 0) changes.push({ section: 'clients.rules', change: 'change', what: 'order' });
  }
  const d = (x: DeploymentSettings['clients']['default']) =>
    `${x.action}${x.url ? ` ${x.url}` : ''}${x.reason ? ` (${x.reason})` : ''}`;
  const defaultChanged = d(current.clients.default) !== d(wanted.clients.default);
  if (defaultChanged)
    changes.push({
      section: 'clients.default',
      change: 'change',
      what: `${d(current.clients.default)} -> ${d(wanted.clients.default)}`,
    });

  const fed = (s: DeploymentSettings) =>
    new Map([
      ...s.federation.allow.map(
        (e) => [e.domain, `allow${e.edge ? ` edge ${e.edge}` : ''}${e.note ? ` (${e.note})` : ''}`] as const,
      ),
      ...s.federation.block.map((e) => [e.domain, `block${e.note ? ` (${e.note})` : ''}`] as const),
    ]);
  const curFed = fed(current);
  const newFed = fed(wanted);
  for (const [domain, v] of curFed)
    if (!newFed.has(domain))
      changes.push({ section: 'federation', change: 'remove', what: `${domain} ${v}` });
  for (const [domain, v] of newFed) {
    const was = curFed.get(domain);
    if (was === undefined) changes.push({ section: 'federation', change: 'add', what: `${domain} ${v}` });
    else if (was !== v)
      changes.push({ section: 'federation', change: 'change', what: `${domain} ${was} -> ${v}` });
  }
  if ((current.federation.clearinghouse ?? '') !== (wanted.federation.clearinghouse ?? ''))
    changes.push({
      section: 'federation.clearinghouse',
      change: 'change',
      what: `${current.federation.clearinghouse ?? 'none'} -> ${wanted.federation.clearinghouse ?? 'none'}`,
    });
  const notApplied: string[] = [];
  for (const key of ['archiving', 'presence'] as const) {
    if (wanted[key] !== undefined && JSON.stringify(wanted[key]) !== JSON.stringify(current[key]))
      notApplied.push(key);
  }
  if (opts.dryRun || changes.length === 0) return { applied: false, changes, notApplied };

  await store.transaction(async (repos) => {
    if (rulesChanged || defaultChanged) {
      const fallback: ClientDefault = {
        action: wanted.clients.default.action,
        reason: wanted.clients.default.reason ?? '',
      };
      if (wanted.clients.default.url) fallback.upgradeUrl = wanted.clients.default.url;
      await repos.clientPolicies.replaceAll(
        wanted.clients.rules.map((r) => ({
          product: r.product,
          versions: r.versions,
          action: r.action,
          upgradeUrl: r.url,
          reason: r.reason,
        })),
        fallback,
      );
    }
    if (
      current.federation.clearinghouse &&
      current.federation.clearinghouse !== wanted.federation.clearinghouse
    )
      await repos.federation.clearClearinghouse();
    for (const [domain] of curFed) {
      if (newFed.has(domain)) continue;
      const action = current.federation.allow.some((e) => e.domain === domain) ? 'allow' : 'block';
      await repos.federation.remove(domain, action);
    }
    for (const e of wanted.federation.allow)
      await repos.federation.put({ domain: e.domain, action: 'allow', edgeFqdn: e.edge, note: e.note });
    for (const e of wanted.federation.block)
      await repos.federation.put({ domain: e.domain, action: 'block', note: e.note });
    if (
      wanted.federation.clearinghouse &&
      wanted.federation.clearinghouse !== current.federation.clearinghouse
    )
      await repos.federation.setClearinghouse(wanted.federation.clearinghouse);
  });
  return { applied: true, changes, notApplied };
}
