import { Attribute, Change } from 'ldapts';
import { fixtureUsers, forestLdif } from '../fixtures/ldap/generate.js';
import { parseDirectoryConfig } from '../src/directory/config.js';
import { prepareCentral } from '../src/directory/schema.js';
import { runDirectorySync, type SyncPhase, type SyncSummary } from '../src/directory/sync.js';
import { migrate } from '../src/store/migrate.js';
import { createPgliteDatabase } from '../src/store/pglite.js';
import { createStore } from '../src/store/store.js';
import { type SlapdInstance, startSlapd } from '../test-kit/slapd.js';

/**
 * Directory sync benchmark: a full sync of N users from two forests into an empty central
 * forest, then an incremental sync of M changes (content sync, RFC 4533: the forests run
 * syncprov, as a production OpenLDAP forest set up for Parley does). Throwaway slapd
 * instances (memory-backed), the embedded store (PGlite), all in this process. Prints wall
 * time, users (changes) per second, the time of each phase and the process's peak RSS
 * while each sync ran (sampled; it includes PGlite, which lives in this process).
 *
 * `scale` repeats the incremental at other forest sizes and prints the slope: seconds per
 * 100,000 more users for the same change count (zero when the work follows the change).
 */
export interface BenchSyncOptions {
  /** Users in all forests together (default 100,000). */
  users?: number;
  /** Changes for the incremental run (default 1,000). */
  changes?: number;
  /** More forest sizes (users in all) for the incremental run, e.g. [200000, 400000]. */
  scale?: number[];
  log?: (line: string) => void;
}

interface Timed {
  seconds: number;
  /** Seconds from the start of each phase to the next, summed over the forests. */
  phases: Partial<Record<SyncPhase, number>>;
  peakRssMiB: number;
  /**
   * CPU seconds used during the sync by this process (the sync and PGlite), the central
   * slapd and the forests' slapds: where the time goes, whatever else the machine runs.
   */
  cpu: { cli: number; central: number; forests: number };
}

export interface BenchSyncRun {
  users: number;
  full: Timed & { usersPerSecond: number; added: number };
  incremental: Timed & { changes: number; changesPerSecond: number; updated: number; read: number };
}

export interface BenchSyncResult extends BenchSyncRun {
  scale?: { runs: BenchSyncRun[]; incrementalSecondsPer100kUsers: number };
}

interface CpuSources {
  central: SlapdInstance;
  forests: SlapdInstance[];
}

function cpuNow(src: CpuSources) {
  const own = process.cpuUsage();
  return {
    cli: (own.user + own.system) / 1e6,
    central: src.central.cpuSeconds(),
    forests: src.forests.reduce((n, f) => n + f.cpuSeconds(), 0),
  };
}

async function timedSync(
  src: CpuSources,
  run: (onProgress: (p: { phase: SyncPhase }) => void) => Promise<SyncSummary>,
) {
  const phases: Partial<Record<SyncPhase, number>> = {};
  let current: SyncPhase | undefined;
  let since = performance.now();
  const enter = (phase: SyncPhase | undefined) => {
    const now = performance.now();
    if (current) phases[current] = (phases[current] ?? 0) + (now - since) / 1000;
    current = phase;
    since = now;
  };
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 100);
  const t0 = performance.now();
  const cpu0 = cpuNow(src);
  try {
    const summary = await run((p) => {
      if (p.phase !== current) enter(p.phase);
    });
    enter(undefined);
    peak = Math.max(peak, process.memoryUsage.rss());
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = cpuNow(src);
    const cpu = {
      cli: cpu1.cli - cpu0.cli,
      central: cpu1.central - cpu0.central,
      forests: cpu1.forests - cpu0.forests,
    };
    return { summary, timed: { seconds, phases, peakRssMiB: Math.round(peak / 1048576), cpu } };
  } finally {
    clearInterval(sampler);
  }
}

function phaseText(t: Timed): string {
  return (['read', 'diff', 'write'] as const)
    .filter((p) => t.phases[p] !== undefined)
    .map((p) => `${p} ${(t.phases[p] ?? 0).toFixed(1)}s`)
    .join(', ');
}

function cpuText(t: Timed): string {
  const { cli, central, forests } = t.cpu;
  return `CPU: sync process ${cli.toFixed(1)}s, central slapd ${central.toFixed(1)}s, forest slapds ${forests.toFixed(1)}s`;
}

async function measure(total: number, changes: number, log: (line: string) => void): Promise<BenchSyncRun> {
  const perForest = Math.floor(total / 2);
  const spec = (name: string) => ({
    baseDn: `dc=${name},dc=example`,
    prefix: name[0],
    count: perForest,
    disabledEvery: 0,
    seed: name.length,
  });
  log(`sync bench: generating and loading ${total} users in two forests`);
  const forestSlapd = (name: string) =>
    startSlapd({ baseDn: `dc=${name},dc=example`, ldif: forestLdif(spec(name)), sizeLimit: 'unlimited' });
  const instances: SlapdInstance[] = await Promise.all([
    // The central forest is written, not tracked: no syncprov there.
    startSlapd({ baseDn: 'dc=central,dc=example', syncprov: false }),
    forestSlapd('east'),
    forestSlapd('west'),
  ]);
  const [central, east, west] = instances;
  const db = await createPgliteDatabase();
  try {
    await migrate(db);
    const env = { C: central.adminPassword, CC: central.configPassword, F: east.readerPassword };
    const forest = (s: SlapdInstance, name: string) => ({
      name,
      url: s.url,
      bindDn: s.readerDn,
      bindPasswordEnv: 'F',
      baseDn: `ou=people,${s.baseDn}`,
      pageSize: 1000,
    });
    const config = parseDirectoryConfig({
      central: {
        url: central.url,
        bindDn: central.adminDn,
        bindPasswordEnv: 'C',
        baseDn: central.baseDn,
        contactContainer: `ou=parley-contacts,${central.baseDn}`,
        sipDomain: 'example.com',
        pageSize: 1000,
        schemaAdmin: { bindDn: central.configDn, bindPasswordEnv: 'CC' },
      },
      forests: [forest(east, 'east'), forest(west, 'west')],
      sync: { maxDeletes: total },
    });
    await prepareCentral(config.central, { env });
    const store = createStore(db);

    const src = { central, forests: [east, west] };
    const full = await timedSync(src, (onProgress) => runDirectorySync({ store, config, env, onProgress }));
    log(
      `full sync: ${full.summary.added} contacts from ${total} users in ${full.timed.seconds.toFixed(1)}s = ${(total / full.timed.seconds).toFixed(0)} users/s (${full.summary.status}; ${phaseText(full.timed)}; ${cpuText(full.timed)}; peak RSS ${full.timed.peakRssMiB} MiB)`,
    );

    const eastUsers = fixtureUsers(spec('east'));
    const client = await east.adminClient();
    try {
      for (const u of eastUsers.slice(0, changes)) {
        await client.modify(u.dn, [
          new Change({
            operation: 'replace',
            modification: new Attribute({ type: 'displayName', values: [`Changed ${u.uid}`] }),
          }),
        ]);
      }
    } finally {
      await client.unbind();
    }
    const inc = await timedSync(src, (onProgress) => runDirectorySync({ store, config, env, onProgress }));
    const read = inc.summary.forests.reduce((n, f) => n + f.read, 0);
    const tracking = [...new Set(inc.summary.forests.map((f) => f.tracking))].join('/');
    log(
      `incremental sync: ${inc.summary.updated} of ${changes} changes in ${inc.timed.seconds.toFixed(2)}s = ${(changes / inc.timed.seconds).toFixed(0)} changes/s (${inc.summary.status}; ${tracking}; ${read} entries read of ${total}; ${phaseText(inc.timed)}; ${cpuText(inc.timed)}; peak RSS ${inc.timed.peakRssMiB} MiB)`,
    );
    return {
      users: total,
      full: {
        ...full.timed,
        usersPerSecond: total / full.timed.seconds,
        added: full.summary.added,
      },
      incremental: {
        ...inc.timed,
        changes,
        changesPerSecond: changes / inc.timed.seconds,
        updated: inc.summary.updated,
        read,
      },
    };
  } finally {
    await db.close();
    await Promise.all(instances.map((i) => i.stop()));
  }
}

export async function benchSync(opts: BenchSyncOptions = {}): Promise<BenchSyncResult> {
  const total = opts.users ?? 100_000;
  const changes = opts.changes ?? 1_000;
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const main: BenchSyncResult = await measure(total, changes, log);
  const sizes = (opts.scale ?? []).filter((n) => n !== total);
  if (sizes.length === 0) return main;
  const runs = [main];
  for (const size of sizes) runs.push(await measure(size, changes, log));
  runs.sort((a, b) => a.users - b.users);
  // Least-squares slope of the incremental's seconds against the forest's size.
  const xs = runs.map((r) => r.users);
  const ys = runs.map((r) => r.incremental.seconds);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const slope =
    xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) / xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  const per100k = slope * 100_000;
  log(
    `incremental sync of ${changes} changes by forest size: ${runs
      .map((r) => `${r.users} users ${r.incremental.seconds.toFixed(2)}s`)
      .join(', ')}; slope ${per100k.toFixed(3)} s per 100,000 more users`,
  );
  main.scale = { runs, incrementalSecondsPer100kUsers: per100k };
  return main;
}
