import YAML from 'yaml';
import type { Store } from '../store/store.js';
import { normalizeAor } from '../store/users.js';
import { MigrationError } from './errors.js';
import { firstGroup, groupLabel } from './groups.js';
import type { StoreLocation } from './stores.js';

/**
 * A wave plan: what `parley migrate plan` writes and an administrator reviews and edits
 * before `parley migrate run` moves one wave at a time (docs/migration.md).
 */
export interface WavePlan {
  version: 1;
  /** The home every wave moves to (a pool). */
  target: string;
  /** Each home's store: data folder, postgresql:// URL, or $ENV_VAR naming one. */
  stores: Record<string, StoreLocation>;
  /** Users the target may hold at most (its declared capacity), if any. */
  capacity?: number;
  /** Sign-outs per second on the home a user leaves: re-registrations reach the pool at this rate. */
  signOutRate: number;
  waves: Wave[];
}

export interface Wave {
  name: string;
  /** The home the wave's users leave (a legacy standard server). */
  from: string;
  /** Addresses of record, lower-case. */
  users: string[];
}

export type WaveGrouping = 'home' | 'ou' | 'group' | 'domain' | 'forest' | 'size';
export const WAVE_GROUPINGS: readonly WaveGrouping[] = ['home', 'ou', 'group', 'domain', 'forest', 'size'];

export const DEFAULT_SIGN_OUT_RATE = 100;

/** A user the plan leaves out, and why. */
export interface RefusedUser {
  aor: string;
  from: string;
  reason: 'lives-elsewhere' | 'duplicate' | 'over-capacity' | 'not-in-directory' | 'filtered';
  detail: string;
}

/** What the directory says of a user, for grouping by OU or group (`--by ou|group`). */
export interface DirectoryPlacementInfo {
  /** The entry's DN: its parent is the user's OU. */
  dn: string;
  /** DNs (or names) of the groups the user is a member of. */
  groups?: string[];
}

export interface PlanOptions {
  /** Source homes, in order, with their opened stores. */
  sources: { home: string; store: Store }[];
  target: { home: string; store: Store };
  /** Locations to write into the plan (as the administrator gave them). */
  locations: Record<string, StoreLocation>;
  by: WaveGrouping;
  /** Largest wave; groups larger than this are split (default: no limit, except for `size`). */
  waveSize?: number;
  /** Glob on the address (`*@sales.example.com`, `a*`); only matching users are planned. */
  filter?: string;
  capacity?: number;
  signOutRate?: number;
  /** For `--by ou|group`: the directory's entry of each user, by aor. */
  directory?: Map<string, DirectoryPlacementInfo>;
}

export interface PlanResult {
  plan: WavePlan;
  refused: RefusedUser[];
  /** Users of the target home before any wave. */
  targetUsers: number;
}

/**
 * Splits the users living in the source homes into named waves. A user is planned once:
 * one found in two source stores is refused the second time (it would be doubled); users
 * past the target's capacity are refused, so the plan never promises more than it holds.
 */
export async function planWaves(opts: PlanOptions): Promise<PlanResult> {
  const targetHome = await opts.target.store.homes.getHome(opts.target.home);
  if (!targetHome) {
    throw new MigrationError(
      'MIGRATION_PLAN_INVALID',
      `the target home ${opts.target.home} does not exist in its store (start a front-end of it first)`,
    );
  }
  if (opts.by === 'size' && !opts.waveSize) {
    throw new MigrationError('MIGRATION_PLAN_INVALID', '--by size needs --wave-size');
  }
  if ((opts.by === 'ou' || opts.by === 'group') && !opts.directory) {
    throw new MigrationError(
      'MIGRATION_PLAN_INVALID',
      `--by ${opts.by} needs the directory: add a directory section to parley.yaml (docs/directory.md)`,
    );
  }
  const match = opts.filter ? globMatcher(opts.filter) : () => true;
  const refused: RefusedUser[] = [];
  const seen = new Map<string, string>();
  const groups = new Map<string, { from: string; key: string; users: string[] }>();
  const targetUsers = await opts.target.store.users.countUsers({ home: opts.target.home });
  let room = opts.capacity === undefined ? Number.POSITIVE_INFINITY : opts.capacity - targetUsers;
  for (const source of opts.sources) {
    for await (const user of source.store.users.iterateUsers()) {
      if (!match(user.aor)) continue;
      // A standard server's own users may have no home recorded: they live there.
      if (user.home !== null && user.home !== source.home) {
        if (user.home !== opts.target.home) {
          refused.push({
            aor: user.aor,
            from: source.home,
            reason: 'lives-elsewhere',
            detail: `its store places it in ${user.home}`,
          });
        }
        continue;
      }
      const first = seen.get(user.aor);
      if (first !== undefined) {
        refused.push({
          aor: user.aor,
          from: source.home,
          reason: 'duplicate',
          detail: `also a user of ${first}, planned from there`,
        });
        continue;
      }
      seen.set(user.aor, source.home);
      const key = groupKey(opts, source.home, user.aor, user.source);
      if (key === undefined) {
        refused.push({
          aor: user.aor,
          from: source.home,
          reason: 'not-in-directory',
          detail: `no directory entry to group it by ${opts.by}`,
        });
        continue;
      }
      if (room <= 0) {
        refused.push({
          aor: user.aor,
          from: source.home,
          reason: 'over-capacity',
          detail: `${opts.target.home} declares a capacity of ${opts.capacity} users`,
        });
        continue;
      }
      room--;
      const id = `${source.home}\u0000${key}`;
      let group = groups.get(id);
      if (!group) {
        group = { from: source.home, key, users: [] };
        groups.set(id, group);
      }
      group.users.push(user.aor);
    }
  }
  const waves: Wave[] = [];
  const names = new Set<string>();
  for (const group of groups.values()) {
    const size = opts.waveSize ?? group.users.length;
    const parts = Math.ceil(group.users.length / size);
    for (let i = 0; i < parts; i++) {
      const base = waveName(group.from, opts.by, group.key);
      let name = parts > 1 ? `${base}-${i + 1}` : base;
      for (let n = 2; names.has(name); n++) name = `${base}-${n}`;
      names.add(name);
      waves.push({ name, from: group.from, users: group.users.slice(i * size, (i + 1) * size) });
    }
  }
  const plan: WavePlan = {
    version: 1,
    target: opts.target.home,
    stores: opts.locations,
    signOutRate: opts.signOutRate ?? DEFAULT_SIGN_OUT_RATE,
    waves,
  };
  if (opts.capacity !== undefined) plan.capacity = opts.capacity;
  validatePlan(plan);
  return { plan, refused, targetUsers };
}

function groupKey(opts: PlanOptions, home: string, aor: string, source: string): string | undefined {
  switch (opts.by) {
    case 'home':
      return home;
    case 'size':
      return 'all';
    case 'domain':
      return aor.slice(aor.indexOf('@') + 1);
    case 'forest':
      return source.startsWith('ldap:') ? source.slice(5) : source;
    case 'ou': {
      const dn = opts.directory?.get(aor)?.dn;
      if (!dn) return undefined;
      const comma = dn.search(/(?<!\\),/);
      return comma < 0 ? dn : dn.slice(comma + 1).trim();
    }
    case 'group': {
      const entry = opts.directory?.get(aor);
      if (!entry) return undefined;
      // In no group: a wave of their own. In several: the first group by name, once.
      return firstGroup(entry.groups ?? []) ?? NO_GROUP;
    }
  }
}

/** The group key of directory users who are members of no group (not a DN, so never a group's). */
const NO_GROUP = '\u0000no-group';

/** A readable wave name: legacy1-sales for ou=sales,dc=example,dc=com. */
function waveName(from: string, by: WaveGrouping, key: string): string {
  if (by === 'home' || by === 'size') return from;
  if (key === NO_GROUP) return `${from}-no-group`;
  let label = key;
  if (by === 'ou') label = /^[a-z]+=([^,]+)/i.exec(key)?.[1] ?? key;
  if (by === 'group') label = groupLabel(key);
  const slug = label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
  return `${from}-${slug || 'wave'}`;
}

/** `*` any run of characters, `?` one; case-insensitive, as addresses are. */
export function globMatcher(glob: string): (aor: string) => boolean {
  const pattern = glob
    .toLowerCase()
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  const re = new RegExp(`^${pattern}$`);
  return (aor) => re.test(aor.toLowerCase());
}

const WAVE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * Checks a plan as a person may have edited it: names unique and plain, every home's store
 * named, no user twice (in one wave or across waves), nothing past the target's capacity.
 */
export function validatePlan(plan: WavePlan): void {
  const fail = (message: string): never => {
    throw new MigrationError('MIGRATION_PLAN_INVALID', message);
  };
  if (plan.version !== 1) fail(`plan version ${String(plan.version)} is not supported (expected 1)`);
  if (!plan.target) fail('the plan names no target home');
  if (!plan.stores[plan.target]) fail(`stores has no entry for the target home ${plan.target}`);
  if (!Number.isFinite(plan.signOutRate) || plan.signOutRate <= 0)
    fail('signOutRate must be a positive number of sign-outs per second');
  const names = new Set<string>();
  const owner = new Map<string, string>();
  let total = 0;
  for (const [i, wave] of plan.waves.entries()) {
    if (typeof wave.name !== 'string' || !WAVE_NAME.test(wave.name))
      fail(`waves[${i}].name must be letters, digits, '.', '_' or '-' (got ${JSON.stringify(wave.name)})`);
    if (names.has(wave.name)) fail(`two waves are named ${wave.name}`);
    names.add(wave.name);
    if (!wave.from) fail(`wave ${wave.name} has no from home`);
    if (wave.from === plan.target) fail(`wave ${wave.name} moves from ${wave.from} to itself`);
    if (!plan.stores[wave.from]) fail(`stores has no entry for home ${wave.from} (wave ${wave.name})`);
    if (!Array.isArray(wave.users)) fail(`wave ${wave.name} has no users list`);
    for (const aor of wave.users) {
      if (typeof aor !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(aor))
        fail(`wave ${wave.name}: ${JSON.stringify(aor)} is not an address like alice@example.com`);
      const before = owner.get(aor);
      if (before !== undefined) {
        fail(
          before === wave.name
            ? `wave ${wave.name} lists ${aor} twice`
            : `${aor} is in two waves (${before} and ${wave.name}): a user moves once`,
        );
      }
      owner.set(aor, wave.name);
    }
    total += wave.users.length;
  }
  if (plan.capacity !== undefined && total > plan.capacity)
    fail(`the waves hold ${total} users, more than the target's capacity of ${plan.capacity}`);
}

export function findWave(plan: WavePlan, name: string): Wave {
  const wave = plan.waves.find((w) => w.name === name);
  if (!wave) {
    throw new MigrationError(
      'MIGRATION_WAVE_NOT_FOUND',
      `the plan has no wave ${name} (waves: ${plan.waves.map((w) => w.name).join(', ') || 'none'})`,
    );
  }
  return wave;
}

/** The plan as YAML, with a header saying what to do with it. */
export function serializePlan(plan: WavePlan, note?: string): string {
  const header = [
    '# Parley wave plan (docs/migration.md). Review and edit: move users between waves,',
    '# rename or drop waves, change signOutRate. Then, wave by wave:',
    '#   parley migrate run PLAN --wave NAME     (--dry-run first to see what moves)',
    '#   parley migrate verify PLAN --wave NAME',
    ...(note ? [`# ${note}`] : []),
  ];
  return `${header.join('\n')}\n${YAML.stringify(plan, { lineWidth: 0 })}`;
}

/** Reads a plan file's text; errors name what is wrong. */
export function parsePlan(text: string, file = 'plan.yaml'): WavePlan {
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw new MigrationError('MIGRATION_PLAN_INVALID', `${file}: not YAML: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null)
    throw new MigrationError('MIGRATION_PLAN_INVALID', `${file}: not a wave plan`);
  const r = raw as Record<string, unknown>;
  const stores: Record<string, string> = {};
  if (typeof r.stores === 'object' && r.stores !== null) {
    for (const [home, where] of Object.entries(r.stores)) {
      if (typeof where !== 'string')
        throw new MigrationError(
          'MIGRATION_PLAN_INVALID',
          `${file}: stores.${home} must be a folder, URL or $VAR`,
        );
      stores[home] = where;
    }
  }
  const waves = Array.isArray(r.waves) ? r.waves : [];
  const plan: WavePlan = {
    version: r.version as 1,
    target: String(r.target ?? ''),
    stores,
    signOutRate: r.signOutRate === undefined ? DEFAULT_SIGN_OUT_RATE : Number(r.signOutRate),
    waves: waves.map((w: Record<string, unknown>) => ({
      name: w?.name as string,
      from: String(w?.from ?? ''),
      users: Array.isArray(w?.users)
        ? w.users.map((u: unknown) => (typeof u === 'string' ? normalizeAor(u) : u))
        : [],
    })) as Wave[],
  };
  if (r.capacity !== undefined) plan.capacity = Number(r.capacity);
  try {
    validatePlan(plan);
  } catch (err) {
    if (err instanceof MigrationError) throw new MigrationError(err.code, `${file}: ${err.message}`);
    throw err;
  }
  return plan;
}
