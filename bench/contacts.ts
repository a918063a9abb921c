import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { EXPORT_BATCH_USERS } from '../src/contacts/export.js';
import type { ImportPhases, PhaseTime } from '../src/contacts/import.js';
import { ContactListRepository } from '../src/store/contact-lists.js';
import { migrate } from '../src/store/migrate.js';
import { openDatabase } from '../src/store/open.js';
import { createPgliteDatabase } from '../src/store/pglite.js';
import { seedContactLists } from '../src/store/seed.js';
import { copyTextField, type Database } from '../src/store/sql.js';
import { startTestPostgres, type TestPostgres } from '../test-kit/postgres.js';
import { captureTail, REPO_ROOT, spawnTracked, waitForExit } from './sip.js';

/**
 * Contact-list benchmark of the `parley` CLI itself: N users with C contacts each are seeded
 * into a store, `parley contacts export --all` writes them to one XML file, then
 * `parley contacts import --mode replace` reads that file into a second store holding the
 * same users with empty lists. Each command runs as its own process, as an administrator
 * runs it, and its peak resident memory is the kernel's high-water mark of that process
 * (GNU time's maximum resident set size, or VmHWM in /proc/PID/status sampled until it
 * exits): what "the CLI stays under 512 MiB" means. Wall time includes the command's start
 * (oclif, opening the store); CPU time says what the command cost on a machine shared
 * with other work.
 *
 * Engines: `pglite` is the embedded store of a standard server, opened by the command from
 * a data folder on disk (the command's RSS includes the PGlite WebAssembly heap); `postgres`
 * is a throwaway PostgreSQL server (test-kit), whose memory is its own processes', not the
 * command's.
 */
export type ContactsEngine = 'pglite' | 'postgres';

export interface BenchContactsOptions {
  /** Users (default 100,000). */
  users?: number;
  /** Contacts per user (default 50). */
  contacts?: number;
  /** Engines to measure, in order (default pglite). */
  engines?: ContactsEngine[];
  log?: (line: string) => void;
}

export interface ContactsPhase {
  users: number;
  seconds: number;
  usersPerSecond: number;
  /** CPU time of the CLI process (user + system), when GNU time is there to measure it. */
  cpuSeconds?: number;
  /** On PostgreSQL, the CPU time of the server's backends that served the command (serverCpu). */
  serverCpuSeconds?: number;
  /** Peak resident memory of the CLI process. */
  peakRssMiB: number;
  exitCode: number;
}

/**
 * What the engine itself costs for the same rows, with no product code: no XML, no spool,
 * no JSON, no list comparison. `copy`: the contact rows an import writes, COPYed in the
 * import's batches (250 users per transaction, the import's COPY options) into a store
 * holding the users with empty lists. `read`: the export's own read (the store's cursor, one
 * row per user holding the whole list as one JSON text, in the export's batches), the texts
 * left unparsed; its rows are users, not contacts. Measured in the benchmark's process: on
 * PGlite its CPU is the engine's; on PostgreSQL the server's is serverCpuSeconds.
 */
export interface ContactsFloor {
  seconds: number;
  cpuSeconds: number;
  /** On PostgreSQL, the CPU time of the server's backends (serverCpu). */
  serverCpuSeconds?: number;
  rows: number;
}

export interface ContactsEngineResult {
  engine: ContactsEngine;
  fileBytes: number;
  contacts: number;
  export: ContactsPhase;
  /** phases: the import's own account of its phases (its --json report), CPU of the CLI process. */
  import: ContactsPhase & { status: string; changed: number; phases?: ImportPhases };
  floor: { read: ContactsFloor; copy: ContactsFloor };
}

export interface BenchContactsResult {
  users: number;
  contactsPerUser: number;
  loadAverage: number[];
  engines: ContactsEngineResult[];
}

export async function benchContacts(opts: BenchContactsOptions = {}): Promise<BenchContactsResult> {
  const users = opts.users ?? 100_000;
  const contacts = opts.contacts ?? 50;
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const result: BenchContactsResult = {
    users,
    contactsPerUser: contacts,
    loadAverage: loadavg().map((l) => Math.round(l * 10) / 10),
    engines: [],
  };
  for (const engine of opts.engines ?? ['pglite']) {
    result.engines.push(await benchEngine(engine, users, contacts, log));
  }
  return result;
}

interface StoreUnderTest {
  /** CLI flags that select it. */
  flags: string[];
  open(): Promise<Database>;
}

async function benchEngine(
  engine: ContactsEngine,
  users: number,
  contacts: number,
  log: (line: string) => void,
): Promise<ContactsEngineResult> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-contacts-'));
  let postgres: TestPostgres | undefined;
  try {
    const stores: StoreUnderTest[] = [];
    if (engine === 'postgres') {
      postgres = await startTestPostgres();
      for (let i = 0; i < 3; i++) {
        const url = await postgres.createDatabase();
        stores.push({ flags: ['--database', url], open: () => openDatabase({ url }) });
      }
    } else {
      for (const name of ['source', 'target', 'floor']) {
        const folder = join(dir, name);
        // As the CLI opens a data folder (openDatabase), minus the owner file.
        stores.push({ flags: ['--data-dir', folder], open: () => createPgliteDatabase(folder) });
      }
    }
    const [source, target, floorStore] = stores;
    log(`contacts bench (${engine}): seeding ${users} users x ${contacts} contacts`);
    for (const [store, perUser] of [
      [source, contacts],
      [target, 0],
      [floorStore, 0],
    ] as const) {
      const db = await store.open();
      try {
        await migrate(db);
        await seedContactLists(db, users, perUser);
        // Statistics, as a store in service has them: without, the planner may scan all
        // contacts for each batch's users (autovacuum analyses only some time later).
        await db.query('ANALYZE');
      } finally {
        await db.close();
      }
    }

    const server = postgres ? await serverCpu(postgres.url) : undefined;
    const onServer = async <T extends object>(run: () => Promise<T>) => {
      const before = await server?.();
      const done = await run();
      return { ...done, serverCpuSeconds: before === undefined ? undefined : (await server!()) - before };
    };
    const file = join(dir, 'all.xml');
    const exported = await onServer(() =>
      runCli(['contacts', 'export', '--all', '--out', file, ...source.flags]),
    );
    const exportReport = exported.json as { contacts?: number };
    const fileBytes = statSync(file, { throwIfNoEntry: false })?.size ?? 0;
    const exportPhase = phase(users, exported);
    log(
      line(
        `export (${engine})`,
        exportPhase,
        `${(fileBytes / 1048576).toFixed(0)} MiB, ${exportReport.contacts ?? '?'} contacts`,
      ),
    );

    const imported = await onServer(() =>
      runCli(['contacts', 'import', file, '--mode', 'replace', ...target.flags]),
    );
    const importReport = imported.json as { status?: string; changed?: number; phases?: ImportPhases };
    const importPhase = {
      ...phase(users, imported),
      status: importReport.status ?? `exit ${imported.exitCode}`,
      changed: importReport.changed ?? 0,
      phases: importReport.phases,
    };
    log(
      line(
        `import (${engine})`,
        importPhase,
        `${importPhase.status}, ${importPhase.changed} lists written (${engine === 'pglite' ? 'while validating, one transaction' : 'validate, then write'})`,
      ),
    );
    if (importReport.phases) log(phasesLine(`import phases (${engine})`, importReport.phases));
    if (exported.exitCode !== 0 || imported.exitCode !== 0) {
      log(`contacts bench (${engine}): a command failed: ${exported.tail}${imported.tail}`);
    }
    const floor = {
      read: await onServer(() => floorRead(source, engine)),
      copy: await onServer(() => floorCopy(floorStore, contacts)),
    };
    log(
      floorLine(
        `floor (${engine}): bare read`,
        floor.read,
        "the export's cursor, one JSON text per user, not parsed, no XML",
      ),
    );
    log(floorLine(`floor (${engine}): bare COPY`, floor.copy, "the import's batches and COPY, no XML"));
    return {
      engine,
      fileBytes,
      contacts: exportReport.contacts ?? 0,
      export: exportPhase,
      import: importPhase,
      floor,
    };
  } finally {
    await postgres?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * CPU seconds, so far, of the PostgreSQL server's backends that have ended: the postmaster's
 * reaped children (cutime + cstime of /proc/PID/stat). A command's connections end with it,
 * so the difference across a command is what the server spent on it, which its wall time on
 * a shared machine does not say (plus any autovacuum worker that ended meanwhile).
 */
async function serverCpu(url: string): Promise<() => Promise<number>> {
  const db = await openDatabase({ url });
  let backend: number;
  try {
    backend = (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  } finally {
    await db.close();
  }
  const fields = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const postmaster = Number(fields(backend)[1]);
  return async () => {
    // Ended connections are reaped by the postmaster when it handles SIGCHLD: a moment later.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const f = fields(postmaster);
    return (Number(f[13]) + Number(f[14])) / 100;
  };
}

async function measureFloor(
  store: StoreUnderTest,
  work: (db: Database) => Promise<number>,
): Promise<ContactsFloor> {
  const db = await store.open();
  try {
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const rows = await work(db);
    const cpu = process.cpuUsage(cpu0);
    return { seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, rows };
  } finally {
    await db.close();
  }
}

/**
 * The export's read without the product: the store's own cursor (one row per user, the whole
 * list as one JSON text), in the export's batches and with its read-ahead, each text left
 * unparsed. Rows: users.
 */
function floorRead(store: StoreUnderTest, engine: ContactsEngine): Promise<ContactsFloor> {
  return measureFloor(store, async (db) => {
    let rows = 0;
    await new ContactListRepository(db).exportListTexts(
      {},
      EXPORT_BATCH_USERS,
      async (batch) => {
        rows += batch.length;
      },
      // As the command reads (commands/contacts/export.ts).
      { readAhead: engine === 'postgres' },
    );
    return rows;
  });
}

/** The import's writes without the product: the seeded rows, COPYed 250 users per transaction. */
function floorCopy(store: StoreUnderTest, perUser: number): Promise<ContactsFloor> {
  return measureFloor(store, async (db) => {
    const { rows: users } = await db.query<{ id: number }>('SELECT id FROM users ORDER BY id');
    let rows = 0;
    for (let at = 0; at < users.length; at += 250) {
      let data = '';
      for (const { id } of users.slice(at, at + 250)) {
        for (let c = 0; c < perUser; c++) {
          data += `${id}\tsip:contact${c}.${id}@example.org\t${copyTextField(`Contact ${c}`)}\tt\t{"Team"}\t${c}\n`;
        }
      }
      rows += Math.min(250, users.length - at) * perUser;
      await db.transaction(async (tx) => {
        if (!tx.copyFrom) throw new Error('this store offers no COPY');
        await tx.copyFrom(
          'contacts',
          ['user_id', 'uri', 'display_name', 'subscribed', 'groups', 'position'],
          data,
        );
      });
    }
    return rows;
  });
}

function phasesLine(name: string, p: ImportPhases): string {
  const t = (x: PhaseTime) => `${x.seconds.toFixed(1)}s (CPU ${x.cpuSeconds.toFixed(1)}s)`;
  return `${name}: validate ${t(p.validate)}, of which owner lookups ${t(p.ownerLookup)}; write ${t(p.write)}`;
}

function floorLine(name: string, f: ContactsFloor, note: string): string {
  const server = f.serverCpuSeconds === undefined ? '' : `, PostgreSQL CPU ${f.serverCpuSeconds.toFixed(1)}s`;
  return `${name}: ${f.rows} rows in ${f.seconds.toFixed(1)}s, bench process CPU ${f.cpuSeconds.toFixed(1)}s${server} (${note})`;
}

export interface CliRun {
  exitCode: number;
  seconds: number;
  /** CPU the command used (user + system): what it costs, whatever else the machine runs. */
  cpuSeconds?: number;
  peakRssBytes: number;
  json: unknown;
  tail: string;
}

const GNU_TIME = '/usr/bin/time';

/**
 * Runs `node bin/run.js ARGS --json`. Under GNU time (when installed) the kernel's own
 * accounting of the process gives its peak RSS and CPU time after it exits; otherwise
 * VmHWM in /proc/PID/status is sampled until it exits.
 */
export async function runCli(args: string[]): Promise<CliRun> {
  const t0 = performance.now();
  const usage = existsSync(GNU_TIME)
    ? join(mkdtempSync(join(tmpdir(), 'parley-bench-time-')), 'usage')
    : undefined;
  const node = [process.execPath, join(REPO_ROOT, 'bin', 'run.js'), ...args, '--json'];
  const child = usage
    ? spawnTracked(GNU_TIME, ['-o', usage, '-f', '%M %U %S', ...node], { cwd: REPO_ROOT })
    : spawnTracked(node[0], node.slice(1), { cwd: REPO_ROOT });
  let stdout = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  const tail = captureTail(child, 8_192);
  let peak = 0;
  const sample = () => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
      if (hwm) peak = Math.max(peak, Number(hwm[1]) * 1024);
    } catch {
      // The process has exited (or /proc is not there): keep the last sample.
    }
  };
  const sampler = usage ? undefined : setInterval(sample, 50);
  let exitCode: number;
  try {
    exitCode = await waitForExit(child, 30 * 60_000);
  } finally {
    clearInterval(sampler);
  }
  const seconds = (performance.now() - t0) / 1000;
  let cpuSeconds: number | undefined;
  if (usage) {
    // GNU time writes "Command exited with non-zero status N" first when it did.
    const last = readFileSync(usage, 'utf8').trim().split('\n').pop() ?? '';
    const [maxRssKiB, user, system] = last.split(' ').map(Number);
    peak = maxRssKiB * 1024;
    cpuSeconds = user + system;
    rmSync(dirname(usage), { recursive: true, force: true });
  }
  let json: unknown = {};
  try {
    json = JSON.parse(stdout);
  } catch {
    // Not JSON: the tail says why.
  }
  return { exitCode, seconds, cpuSeconds, peakRssBytes: peak, json, tail: tail() };
}

function phase(users: number, run: CliRun & { serverCpuSeconds?: number }): ContactsPhase {
  return {
    users,
    seconds: run.seconds,
    usersPerSecond: users / run.seconds,
    cpuSeconds: run.cpuSeconds,
    serverCpuSeconds: run.serverCpuSeconds,
    peakRssMiB: run.peakRssBytes / 1048576,
    exitCode: run.exitCode,
  };
}

function line(name: string, p: ContactsPhase, note: string): string {
  const cpu =
    (p.cpuSeconds === undefined ? '' : `, CLI CPU ${p.cpuSeconds.toFixed(1)}s`) +
    (p.serverCpuSeconds === undefined ? '' : `, PostgreSQL CPU ${p.serverCpuSeconds.toFixed(1)}s`);
  return `${name}: ${p.users} users in ${p.seconds.toFixed(1)}s = ${p.usersPerSecond.toFixed(0)} users/s${cpu}, CLI peak RSS ${p.peakRssMiB.toFixed(0)} MiB (${note})`;
}
