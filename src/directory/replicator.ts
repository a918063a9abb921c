import type { Repositories } from '../store/store.js';
import type { DirectoryUser } from '../store/users.js';
import { CentralDirectory, type CentralEntry } from './central.js';
import type { DirectoryConfig } from './config.js';
import { noUserCounts, type UserCounts } from './counts.js';
import { normalizeDn, readCentralGroups, resolveMemberships } from './groups.js';
import type { Environment } from './ldap.js';

/**
 * Refreshes the Parley user store from the central forest's SIP-enabled users and
 * contacts, so servers answer from the store and never query LDAP on the hot path.
 * Upsert by AOR; users that vanished from the directory are disabled (or deleted with
 * prune); users created locally (source 'local') are never touched. Every write goes
 * through UserRepository, which announces each changed user on the store's change feed:
 * running servers drop their cached credentials and sign disabled or deleted users out.
 */

export interface ReplicationIssue {
  aor: string;
  dn: string;
  code: 'local-user' | 'unknown-home' | 'duplicate-address';
  message: string;
}

export interface ReplicationSummary extends UserCounts {
  issues: ReplicationIssue[];
  /** Group entries read and the group memberships of users added and removed (src/directory/groups.ts). */
  groups?: { read: number; memberships: number; added: number; removed: number };
  durationMs: number;
}

/** The repositories replication reads and writes. */
export type ReplicationStore = Pick<Repositories, 'users' | 'homes' | 'groups'>;

export interface ReplicateOptions {
  store: ReplicationStore;
  /** Pages of SIP-enabled entries (CentralDirectory.sipEnabled()). */
  entries: AsyncIterable<CentralEntry[]>;
  /** Delete vanished directory users instead of disabling them. */
  prune?: boolean;
  dryRun?: boolean;
}

function wanted(e: CentralEntry & { sipAddress: string }): DirectoryUser {
  return {
    aor: e.sipAddress,
    displayName: e.displayName,
    enabled: e.enabled,
    home: e.home ?? null,
    source: e.isContact ? `ldap:${e.sourceForest}` : 'ldap:central',
    sourceAnchor: (e.isContact ? e.sourceAnchor : e.entryUuid) ?? null,
  };
}

function differs(row: DirectoryUser, w: DirectoryUser): boolean {
  return (
    row.displayName !== w.displayName ||
    row.enabled !== w.enabled ||
    row.home !== w.home ||
    row.source !== w.source ||
    row.sourceAnchor !== w.sourceAnchor
  );
}

export async function replicateUsers(opts: ReplicateOptions): Promise<ReplicationSummary> {
  const started = Date.now();
  const { users } = opts.store;
  const summary: ReplicationSummary = { ...noUserCounts(), issues: [], durationMs: 0 };
  const homes = new Set((await opts.store.homes.listHomes()).map((h) => h.name));
  const existing = new Map((await users.listDirectoryStates()).map((u) => [u.aor, u]));
  const seen = new Set<string>();
  const upserts: DirectoryUser[] = [];

  for await (const page of opts.entries) {
    for (const e of page) {
      summary.read++;
      if (!e.sipAddress) continue;
      const w = wanted(e as CentralEntry & { sipAddress: string });
      if (seen.has(w.aor)) {
        summary.issues.push({
          aor: w.aor,
          dn: e.dn,
          code: 'duplicate-address',
          message: 'another entry has the same SIP address',
        });
        continue;
      }
      seen.add(w.aor);
      const row = existing.get(w.aor);
      if (row?.source === 'local') {
        summary.issues.push({
          aor: w.aor,
          dn: e.dn,
          code: 'local-user',
          message: 'a local user has this address; left alone',
        });
        continue;
      }
      if (w.home !== null && !homes.has(w.home)) {
        summary.issues.push({
          aor: w.aor,
          dn: e.dn,
          code: 'unknown-home',
          message: `home '${w.home}' does not exist`,
        });
        continue;
      }
      if (!row) summary.added++;
      else if (differs(row, w)) summary.updated++;
      else {
        summary.unchanged++;
        continue;
      }
      upserts.push(w);
    }
  }

  const vanished = [...existing.values()].filter((r) => r.source.startsWith('ldap:') && !seen.has(r.aor));
  const toDelete = opts.prune ? vanished.map((r) => r.aor) : [];
  const toDisable = opts.prune ? [] : vanished.filter((r) => r.enabled).map((r) => r.aor);
  summary.deleted = toDelete.length;
  summary.disabled = toDisable.length;

  if (!opts.dryRun) {
    await users.upsertDirectoryUsers(upserts);
    await users.disableDirectoryUsers(toDisable);
    await users.removeDirectoryUsers(toDelete);
  }
  summary.durationMs = Date.now() - started;
  return summary;
}

/** Connects to the central forest and replicates (parley directory replicate). */
export async function replicateFromCentral(opts: {
  store: ReplicationStore;
  config: DirectoryConfig;
  env: Environment;
  prune?: boolean;
  dryRun?: boolean;
}): Promise<ReplicationSummary> {
  const started = Date.now();
  const central = await CentralDirectory.connect(opts.config.central, opts.env);
  // The SIP address of each entry read, by DN: group members are DNs.
  const addresses = new Map<string, string>();
  async function* noted(pages: AsyncIterable<CentralEntry[]>) {
    for await (const page of pages) {
      for (const e of page) if (e.sipAddress) addresses.set(normalizeDn(e.dn), e.sipAddress);
      yield page;
    }
  }
  let summary: ReplicationSummary;
  try {
    summary = await replicateUsers({
      store: opts.store,
      entries: noted(central.sipEnabled()),
      prune: opts.prune ?? opts.config.replicate.prune,
      dryRun: opts.dryRun,
    });
  } finally {
    await central.close();
  }
  const groups = await readCentralGroups(opts.config.central, opts.env);
  const memberships = resolveMemberships(groups, addresses);
  const written = opts.dryRun
    ? { added: 0, removed: 0 }
    : await opts.store.groups.replaceMemberships('ldap:central', memberships);
  summary.groups = { read: groups.length, memberships: memberships.length, ...written };
  summary.durationMs = Date.now() - started;
  return summary;
}

/**
 * What a server runs: replicate now and every interval. A failed round is reported and
 * retried at the next tick; the store keeps serving the last good copy meanwhile.
 */
export function startReplicationTimer(opts: {
  store: ReplicationStore;
  config: DirectoryConfig;
  env: Environment;
  onResult?: (result: ReplicationSummary | Error) => void;
}): { stop(): void } {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      opts.onResult?.(await replicateFromCentral(opts));
    } catch (err) {
      opts.onResult?.(err instanceof Error ? err : new Error(String(err)));
    } finally {
      running = false;
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), opts.config.replicate.intervalSeconds * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
