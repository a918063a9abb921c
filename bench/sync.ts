import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attribute, Change } from 'ldapts';
import { type FixtureUser, fixtureUsers, forestLdif, userLdif } from '../fixtures/ldap/generate.js';
import { type DirectoryConfig, parseDirectoryConfig } from '../src/directory/config.js';
import { ForestReader } from '../src/directory/forest.js';
import { contactAttributes, contactDn, hashAttributes, sipAddress } from '../src/directory/mapping.js';
import { prepareCentral } from '../src/directory/schema.js';
import type { SyncSummary } from '../src/directory/sync.js';
import type { Join } from '../src/store/directory-journal.js';
import { openDatabase } from '../src/store/open.js';
import { createStore } from '../src/store/store.js';
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
 * Those forests are not synced in full first: they are *seeded* as a full sync would have
 * left them, offline and fast. slapadd loads each forest's users (with fixed entryUUIDs) and
 * the central forest's contacts for them (once prepare's schema and indexes are in), the
 * store gets their joins, and each forest's content-sync cookie is taken after its load.
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
  /** Absent for a seeded forest (loaded as a full sync leaves it, without running one). */
  full?: Timed & { usersPerSecond: number; added: number };
  incremental: Timed & { changes: number; changesPerSecond: number; updated: number; read: number };
}

export interface BenchSyncResult extends BenchSyncRun {
  full: Timed & { usersPerSecond: number; added: number };
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

interface Bench {
  total: number;
  servers: Servers;
  config: DirectoryConfig;
  configFile: string;
  dir: string;
  env: Record<string, string>;
  spec: (name: string) => Parameters<typeof fixtureUsers>[0];
}

/**
 * Two forests of total/2 users each (empty when seeded: the caller loads them) and an empty,
 * prepared central forest; a parley.yaml naming them and a migrated data folder.
 */
async function withBench<T>(
  total: number,
  seeded: boolean,
  log: (line: string) => void,
  body: (b: Bench) => Promise<T>,
): Promise<T> {
  const perForest = Math.floor(total / 2);
  const spec = (name: string) => ({
    baseDn: `dc=${name},dc=example`,
    prefix: name[0],
    count: perForest,
    disabledEvery: 0,
    seed: name.length,
  });
  // 8 GiB of address space for a seeded million: the folders are in memory, only used pages count.
  const maxSize = 2 ** 33;
  log(
    `sync bench: ${seeded ? 'starting servers for' : 'generating and loading'} ${total} users in two forests`,
  );
  const forestSlapd = (name: string) =>
    startSlapd({
      baseDn: `dc=${name},dc=example`,
      ldif: seeded ? undefined : forestLdif(spec(name)),
      sizeLimit: 'unlimited',
      maxSize,
    });
  const instances: SlapdInstance[] = await Promise.all([
    // The central forest is written, not tracked: no syncprov there.
    startSlapd({ baseDn: 'dc=central,dc=example', syncprov: false, maxSize }),
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
    const config = parseDirectoryConfig(directory);
    await prepareCentral(config.central, { env });
    const configFile = join(dir, 'parley.yaml');
    // JSON is YAML.
    writeFileSync(
      configFile,
      JSON.stringify({ domain: 'example.com', database: { dataDir: join(dir, 'data') }, directory }),
    );
    const created = await runCli(['db', 'migrate', '--config', configFile]);
    if (created.exitCode !== 0)
      throw new Error(`parley db migrate exited ${created.exitCode}: ${created.tail}`);
    return await body({ total, servers, config, configFile, dir, env, spec });
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
    rmSync(dir, { recursive: true, force: true });
    await Promise.all(instances.map((i) => i.stop()));
  }
}

/** Changes the display name of the first `changes` users of the east forest, over LDAP. */
async function changeUsers(b: Bench, changes: number, users?: FixtureUser[]): Promise<void> {
  const eastUsers = users ?? fixtureUsers(b.spec('east'));
  const client = await b.servers.forests[0].adminClient();
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
}

/** The incremental run after `changes` changes, timed and logged. */
async function incremental(b: Bench, changes: number, log: (line: string) => void, users?: FixtureUser[]) {
  await changeUsers(b, changes, users);
  const inc = await cliSync(b.servers, b.configFile);
  const read = inc.summary.forests.reduce((n, f) => n + f.read, 0);
  const tracking = [...new Set(inc.summary.forests.map((f) => f.tracking))].join('/');
  log(
    `incremental sync: ${inc.summary.updated} of ${changes} changes in ${inc.timed.seconds.toFixed(2)}s = ${(changes / inc.timed.seconds).toFixed(0)} changes/s (${inc.summary.status}; ${tracking}; ${read} entries read of ${b.total}; ${cpuText(inc.timed)}; CLI peak RSS ${inc.timed.peakRssMiB} MiB)`,
  );
  return {
    ...inc.timed,
    changes,
    changesPerSecond: changes / inc.timed.seconds,
    updated: inc.summary.updated,
    read,
  };
}

async function measure(
  total: number,
  changes: number,
  log: (line: string) => void,
): Promise<BenchSyncResult> {
  return withBench(total, false, log, async (b) => {
    // The floor of every run: the CLI starting and opening the store, nothing to do.
    const floor = await runCli(['db', 'migrate', '--config', b.configFile]);
    log(
      `CLI floor (parley db migrate, nothing to do): ${floor.seconds.toFixed(2)}s, CPU ${floor.cpuSeconds?.toFixed(1) ?? '?'}s, peak RSS ${Math.round(floor.peakRssBytes / 1048576)} MiB`,
    );

    const full = await cliSync(b.servers, b.configFile);
    log(
      `full sync: ${full.summary.added} contacts from ${total} users in ${full.timed.seconds.toFixed(1)}s = ${(total / full.timed.seconds).toFixed(0)} users/s (${full.summary.status}; ${cpuText(full.timed)}; CLI peak RSS ${full.timed.peakRssMiB} MiB)`,
    );
    return {
      users: total,
      full: {
        ...full.timed,
        usersPerSecond: total / full.timed.seconds,
        added: full.summary.added,
      },
      incremental: await incremental(b, changes, log),
    };
  });
}

/** A deterministic entryUUID per forest and user, so the seeded joins and contacts agree. */
function seededUuid(forest: number, i: number): string {
  return `${forest.toString(16).padStart(8, '0')}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

/** An LDIF file written a chunk of entries at a time (a million entries are hundreds of MiB). */
class LdifFile {
  private readonly fd: number;
  private chunk: string[] = [];

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  add(entry: string): void {
    this.chunk.push(entry);
    if (this.chunk.length >= 5000) this.flush();
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }

  private flush(): void {
    if (this.chunk.length > 0) writeSync(this.fd, `${this.chunk.join('\n')}\n`);
    this.chunk = [];
  }
}

const CONTACT_CLASSES = ['top', 'person', 'organizationalPerson', 'inetOrgPerson', 'parleyUser'];

/**
 * The incremental at a forest size never synced in full here: the forests, the central
 * contacts, the joins and the cookies are loaded as a full sync would have left them.
 */
async function measureSeeded(
  total: number,
  changes: number,
  log: (line: string) => void,
): Promise<BenchSyncRun> {
  return withBench(total, true, log, async (b) => {
    const t0 = performance.now();
    const { central } = b.config;
    const contacts = new LdifFile(join(b.dir, 'contacts.ldif'));
    // prepare made the container: the contacts go below it.
    let eastUsers: FixtureUser[] | undefined;
    const db = await openDatabase({ dataDir: join(b.dir, 'data') });
    try {
      const journal = createStore(db).directoryJournal;
      for (const [index, forest] of b.config.forests.entries()) {
        const spec = b.spec(forest.name);
        const users = fixtureUsers(spec);
        if (index === 0) eastUsers = users;
        const anchor = (i: number) => seededUuid(index + 1, i);
        const ldif = new LdifFile(join(b.dir, `${forest.name}.ldif`));
        ldif.add(forestLdif({ ...spec, count: 0 }));
        for (const [i, u] of users.entries())
          ldif.add(userLdif(u).replace('\n', `\nentryUUID: ${anchor(i)}\n`));
        ldif.close();
        await b.servers.forests[index].loadOffline(ldif.path);
        rmSync(ldif.path);
        const reader = await ForestReader.connect(forest, b.env);
        try {
          const cookie = await reader.currentCookie();
          if (!cookie) throw new Error(`forest ${forest.name} gave no content-sync cookie`);
          await journal.setSyncCookie(forest.name, cookie);
        } finally {
          await reader.close();
        }
        let joins: Join[] = [];
        for (const [i, u] of users.entries()) {
          const alias = u.uid.toLowerCase();
          const attrs = contactAttributes(
            {
              forest: forest.name,
              anchor: anchor(i),
              dn: u.dn,
              alias,
              displayName: `${u.givenName} ${u.sn} (${u.uid})`,
              givenName: u.givenName,
              surname: u.sn,
              mail: `${u.uid}@mail.example`,
              disabled: false,
            },
            { sipDomain: central.sipDomain, home: forest.home, enabled: true },
          );
          const dn = contactDn(forest.name, anchor(i), central.contactContainer);
          const lines = [
            `dn: ${dn}`,
            ...CONTACT_CLASSES.map((c) => `objectClass: ${c}`),
            `cn: ${forest.name}-${anchor(i)}`,
          ];
          for (const [k, v] of Object.entries(attrs)) for (const x of v) lines.push(`${k}: ${x}`);
          contacts.add(`${lines.join('\n')}\n`);
          joins.push({
            forest: forest.name,
            anchor: anchor(i),
            sourceDn: u.dn,
            contactDn: dn,
            sipAddress: sipAddress(alias, central.sipDomain),
            state: 'active',
            attributes: attrs,
            attributesHash: hashAttributes(attrs),
          });
          if (joins.length === 5000) {
            await journal.saveJoins(joins);
            joins = [];
          }
        }
        await journal.saveJoins(joins);
      }
    } finally {
      await db.close();
    }
    contacts.close();
    await b.servers.central.loadOffline(contacts.path);
    rmSync(contacts.path);
    log(`seeded ${total} users, contacts and joins in ${((performance.now() - t0) / 1000).toFixed(0)}s`);
    return { users: total, incremental: await incremental(b, changes, log, eastUsers) };
  });
}

export async function benchSync(opts: BenchSyncOptions = {}): Promise<BenchSyncResult> {
  const total = opts.users ?? 100_000;
  const changes = opts.changes ?? 1_000;
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const main = await measure(total, changes, log);
  const sizes = (opts.scale ?? []).filter((n) => n !== total);
  if (sizes.length === 0) return main;
  const runs: BenchSyncRun[] = [main];
  for (const size of sizes) runs.push(await measureSeeded(size, changes, log));
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
      .map((r) => `${r.users} users ${r.incremental.seconds.toFixed(2)}s${r.full ? '' : ' (seeded)'}`)
      .join(', ')}; slope ${per100k.toFixed(3)} s per 100,000 more users`,
  );
  main.scale = { runs, incrementalSecondsPer100kUsers: per100k };
  return main;
}
