import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attribute, Change } from 'ldapts';
import { fixtureUsers, forestLdif } from '../fixtures/ldap/generate.js';
import { parseDirectoryConfig } from '../src/directory/config.js';
import { prepareCentral } from '../src/directory/schema.js';
import type { SyncSummary } from '../src/directory/sync.js';
import { type SlapdInstance, startSlapd } from '../test-kit/slapd.js';
import { runCli } from './contacts.js';

/**
 * Directory sync benchmark of the `parley` CLI itself: a full sync of N users from two
 * forests into an empty central forest, then an incremental sync of M changes (content
 * sync, RFC 4533: the forests run syncprov, as a production OpenLDAP forest set up for
 * Parley does). Throwaway slapd instances (memory-backed; `olcDbNoSync`, as a test
 * instance may), the embedded store in a data folder. `parley directory sync --json` runs as
 * its own process, as an administrator or cron runs it: its peak RSS is the kernel's
 * high-water mark of that process (PGlite's heap included), its CPU seconds the kernel's
 * accounting, and the slapds' CPU seconds come from /proc. On a shared machine the CPU
 * split says where the time goes whatever else runs; the wall time depends on the load.
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
  /** Peak RSS of the CLI process (VmHWM). */
  peakRssMiB: number;
  /** CPU seconds of the CLI process, the central slapd and the forests' slapds during the run. */
  cpu: { cli?: number; central: number; forests: number };
}

export interface BenchSyncRun {
  users: number;
  full: Timed & { usersPerSecond: number; added: number };
  incremental: Timed & { changes: number; changesPerSecond: number; updated: number; read: number };
}

export interface BenchSyncResult extends BenchSyncRun {
  scale?: { runs: BenchSyncRun[]; incrementalSecondsPer100kUsers: number };
}

interface Servers {
  central: SlapdInstance;
  forests: SlapdInstance[];
}

function slapdCpu(s: Servers) {
  return { central: s.central.cpuSeconds(), forests: s.forests.reduce((n, f) => n + f.cpuSeconds(), 0) };
}

/** One `parley directory sync --json` run, timed; a failed run fails the benchmark. */
async function cliSync(servers: Servers, configFile: string) {
  const before = slapdCpu(servers);
  const run = await runCli(['directory', 'sync', '--config', configFile]);
  const after = slapdCpu(servers);
  const summary = run.json as SyncSummary;
  if (run.exitCode !== 0 || summary.status !== 'succeeded')
    throw new Error(`parley directory sync exited ${run.exitCode}: ${JSON.stringify(run.json)} ${run.tail}`);
  const timed: Timed = {
    seconds: run.seconds,
    peakRssMiB: Math.round(run.peakRssBytes / 1048576),
    cpu: {
      cli: run.cpuSeconds,
      central: after.central - before.central,
      forests: after.forests - before.forests,
    },
  };
  return { summary, timed };
}

function cpuText(t: Timed): string {
  const { cli, central, forests } = t.cpu;
  const own = cli === undefined ? '' : `CLI ${cli.toFixed(1)}s, `;
  return `CPU: ${own}central slapd ${central.toFixed(1)}s, forest slapds ${forests.toFixed(1)}s`;
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
  const servers = { central, forests: [east, west] };
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-sync-'));
  // The CLI inherits this process's environment: the bind passwords go there, not in the file.
  const env = {
    PARLEY_BENCH_CENTRAL_PW: central.adminPassword,
    PARLEY_BENCH_SCHEMA_PW: central.configPassword,
    PARLEY_BENCH_FOREST_PW: east.readerPassword,
  };
  Object.assign(process.env, env);
  try {
    const forest = (s: SlapdInstance, name: string) => ({
      name,
      url: s.url,
      bindDn: s.readerDn,
      bindPasswordEnv: 'PARLEY_BENCH_FOREST_PW',
      baseDn: `ou=people,${s.baseDn}`,
      pageSize: 1000,
    });
    const directory = {
      central: {
        url: central.url,
        bindDn: central.adminDn,
        bindPasswordEnv: 'PARLEY_BENCH_CENTRAL_PW',
        baseDn: central.baseDn,
        contactContainer: `ou=parley-contacts,${central.baseDn}`,
        sipDomain: 'example.com',
        pageSize: 1000,
        schemaAdmin: { bindDn: central.configDn, bindPasswordEnv: 'PARLEY_BENCH_SCHEMA_PW' },
      },
      forests: [forest(east, 'east'), forest(west, 'west')],
      sync: { maxDeletes: total },
    };
    await prepareCentral(parseDirectoryConfig(directory).central, { env });
    const configFile = join(dir, 'parley.yaml');
    // JSON is YAML.
    writeFileSync(
      configFile,
      JSON.stringify({ domain: 'example.com', database: { dataDir: join(dir, 'data') }, directory }),
    );

    const created = await runCli(['db', 'migrate', '--config', configFile]);
    if (created.exitCode !== 0)
      throw new Error(`parley db migrate exited ${created.exitCode}: ${created.tail}`);

    // The floor of every run: the CLI starting and opening the store, nothing to do.
    const floor = await runCli(['db', 'migrate', '--config', configFile]);
    log(
      `CLI floor (parley db migrate, nothing to do): ${floor.seconds.toFixed(2)}s, CPU ${floor.cpuSeconds?.toFixed(1) ?? '?'}s, peak RSS ${Math.round(floor.peakRssBytes / 1048576)} MiB`,
    );

    const full = await cliSync(servers, configFile);
    log(
      `full sync: ${full.summary.added} contacts from ${total} users in ${full.timed.seconds.toFixed(1)}s = ${(total / full.timed.seconds).toFixed(0)} users/s (${full.summary.status}; ${cpuText(full.timed)}; CLI peak RSS ${full.timed.peakRssMiB} MiB)`,
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
    const inc = await cliSync(servers, configFile);
    const read = inc.summary.forests.reduce((n, f) => n + f.read, 0);
    const tracking = [...new Set(inc.summary.forests.map((f) => f.tracking))].join('/');
    log(
      `incremental sync: ${inc.summary.updated} of ${changes} changes in ${inc.timed.seconds.toFixed(2)}s = ${(changes / inc.timed.seconds).toFixed(0)} changes/s (${inc.summary.status}; ${tracking}; ${read} entries read of ${total}; ${cpuText(inc.timed)}; CLI peak RSS ${inc.timed.peakRssMiB} MiB)`,
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
    for (const k of Object.keys(env)) delete process.env[k];
    rmSync(dir, { recursive: true, force: true });
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
