/**
 * `npm run bench` (node dist/bench/run.js): the bench runner. The SIP suite by default;
 * --vs-kamailio measures Kamailio in the same run and prints the ratio; --sync, --contacts
 * and --pool select the other suites. See bench/README.md.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { archiveMain } from './archive.js';
import { benchEdge, EDGE_RATES, type EdgeSuiteResult, renderEdgeTable } from './edge.js';
import { benchFuzz, type FuzzSuiteResult, renderFuzz } from './fuzz.js';
import { findKamailio, startKamailio } from './kamailio.js';
import { benchPool, POOL_RATES, type PoolSuiteResult, renderPoolTable } from './pool.js';
import {
  benchPresence,
  PRESENCE_RATES,
  type PresenceSuiteResult,
  renderPresenceTable,
  WATCHER_SIPPS,
} from './presence.js';
import {
  killChildren,
  machineInfo,
  measureTargets,
  type ProfileSummary,
  type SipTarget,
  serverCpuProfile,
  startParley,
  summariseCpuProfile,
  WORKLOAD_LABELS,
  type Workload,
  type WorkloadRun,
} from './sip.js';
import { soakMain } from './soak.js';

const DEFAULT_RATES = [2_500, 5_000, 10_000, 15_000, 20_000, 25_000];

const USAGE = `Usage: npm run bench -- [options]

Suites (default: the SIP suite)
  --sip               SIP suite: REGISTER with digest and MESSAGE rates with SIPp over TCP
  --vs-kamailio       also measure Kamailio (the anchor) in the same run and print the ratio
  --sync              directory sync benchmark (bench/sync.ts): full and incremental (1,000
                      changes) at --users users
  --sync-scale N[,N2] also the incremental at these forest sizes (seeded with slapadd, not synced
                      in full first), with its slope per 100,000 users
  --contacts          contact-list benchmark (bench/contacts.ts): export and import of --users
                      users x 50 contacts by the parley CLI, with the CLI's peak RSS
  --contacts-engine E store for --contacts: pglite (default, a data folder), postgres or both
  --migrate           wave-migration benchmark (bench/migrate.ts): one wave of --users (default
                      10000) users with 50 contacts each, legacy PGlite store to PostgreSQL
  --fuzz N            fuzz a Parley server with N mutated messages over TCP; prints messages
                      sent, crashes and RSS at start and end (--seed S to replay a run)
  --pool              pool benchmark (bench/pool.ts): 2 front-ends, PostgreSQL, HAProxy; ramp
                      ${POOL_RATES.join(',')} unless --rate; 3 s steps below 10000 users unless --duration
  --presence          presence NOTIFY fan-out (bench/presence.ts): --watchers (default 2000) subscribed
                      to --presentities (default 100), PUBLISH-driven, target NOTIFY/s ramp
                      ${PRESENCE_RATES.join(',')} unless --rate; with --vs-kamailio, Kamailio's
                      presence modules in the same run and the ratio; --profile profiles Parley;
                      --presence --pool: Parley as two front-ends on PostgreSQL (watchers on one,
                      presentities on the other)
  --soak              memory soak (bench/soak.ts): --users registered, then MESSAGE at
                      --rate (default 5000/s) for --minutes (default 10); RSS and heap each minute
  --archive           archiving cost (bench/archive.ts): MESSAGE rate with archiving off and on,
                      on PGlite and PostgreSQL (--engine pglite|postgres|both); --archive --help
  --edge              edge benchmark (bench/edge.ts): TLS REGISTER through the edge and MESSAGE
                      between two organisations through both edges (mutual TLS), beside the same
                      workloads straight to the home; ramp ${EDGE_RATES.join(',')} unless --rate,
                      5 s steps unless --duration, 10000 users unless --users

Options
  --watchers N        presence watchers (--presence; default 2000)
  --presentities N    presence presentities (--presence; default 100)
  --watcher-sipps N   SIPp processes (TCP connections) the watchers are split over (--presence; default ${WATCHER_SIPPS})
  --users N           users created and registered (default 100000)
  --rate R[,R2...]    target rate(s) in calls/s instead of the ramp ${DEFAULT_RATES.join(',')}
  --duration S        seconds per rate step (default 10)
  --only W[,W2..]     only these SIP workloads, in this order: register, message, register-udp, message-udp
  --workers N         Parley's server.workers (SIP worker processes; default 1)
  --sipps N           SIPp processes per TCP step, one connection each, rate split (default 1)
  --profile           CPU-profile the Parley server (node --cpu-prof) and print its hot spots
  --json              print the results as JSON (progress goes to stderr)
  -h, --help          this text`;

export interface SipWorkloadRow {
  workload: Workload;
  label: string;
  parley: WorkloadRun;
  kamailio?: WorkloadRun;
  /** Parley's best rate over Kamailio's, both with 0 failures. */
  ratio?: number;
}

export interface SipSuiteResult {
  machine: ReturnType<typeof machineInfo>;
  servers: Record<string, string>;
  users: number;
  rates: number[];
  duration: number;
  /** Parley's SIP worker processes (server.workers). */
  workers: number;
  /** SIPp processes (TCP connections) per TCP step. */
  sipps: number;
  workloads: SipWorkloadRow[];
  kamailioSkipped?: string;
  profile?: ProfileSummary;
}

export interface BenchResult {
  sip?: SipSuiteResult;
  sync?: unknown;
  contacts?: unknown;
  migrate?: unknown;
  pool?: PoolSuiteResult;
  edge?: EdgeSuiteResult;
  presence?: PresenceSuiteResult;
  fuzz?: FuzzSuiteResult;
  notAvailable: string[];
  /** Why the run exits non-zero, when it does. */
  failures: string[];
}

class UsageError extends Error {}

interface Options {
  sip: boolean;
  vsKamailio: boolean;
  sync: boolean;
  /** --sync-scale: more forest sizes for the incremental sync. */
  syncScale: number[];
  contacts: boolean;
  /** Stores the contacts suite measures: pglite, postgres or both. */
  contactsEngines: ('pglite' | 'postgres')[];
  migrate: boolean;
  pool: boolean;
  edge: boolean;
  presence: boolean;
  /** --presence --pool: the presence suite against a pool of front-ends. */
  presencePool: boolean;
  watchers: number;
  presentities: number;
  watcherSipps?: number;
  /** Messages for the fuzz run, when asked for. */
  fuzz?: number;
  seed?: number;
  users: number;
  /** --users was given (the migrate suite has its own default). */
  usersGiven: boolean;
  rates: number[];
  /** --rate was given (the pool suite has its own default ramp). */
  ratesGiven: boolean;
  duration: number;
  /** --duration was given (the pool suite shortens steps for small user counts). */
  durationGiven: boolean;
  workloads: Workload[];
  workers: number;
  sipps: number;
  profile: boolean;
  json: boolean;
}

export function parseOptions(argv: string[]): Options | 'help' {
  let parsed: ReturnType<typeof parseArgsStrict>;
  try {
    parsed = parseArgsStrict(argv);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const v = parsed.values;
  if (v.help) return 'help';
  const positive = (text: string, flag: string) => {
    const n = Number(text.replace(/_/g, ''));
    if (!Number.isFinite(n) || n <= 0)
      throw new UsageError(`${flag} needs a positive number, not ${JSON.stringify(text)}`);
    return n;
  };
  const users = v.users ? Math.floor(positive(v.users, '--users')) : 100_000;
  const rates = v.rate
    ? v.rate.split(',').map((r) => Math.floor(positive(r.trim(), '--rate')))
    : DEFAULT_RATES;
  const duration = v.duration ? positive(v.duration, '--duration') : 10;
  const allWorkloads: Workload[] = ['register', 'message', 'register-udp', 'message-udp'];
  // In the order given: `--only register,message` runs MESSAGE after a REGISTER ramp, as the full suite does.
  const workloads = v.only ? (v.only.split(',').map((w) => w.trim()) as Workload[]) : allWorkloads;
  if (workloads.some((w) => !allWorkloads.includes(w)))
    throw new UsageError(`--only is one or more of ${allWorkloads.join(', ')}, comma-separated`);
  const fuzz = v.fuzz ? Math.floor(positive(v.fuzz, '--fuzz')) : undefined;
  const seed = v.seed ? Math.floor(positive(v.seed, '--seed')) : undefined;
  const engine = v['contacts-engine'] ?? 'pglite';
  if (!['pglite', 'postgres', 'both'].includes(engine))
    throw new UsageError('--contacts-engine is one of pglite, postgres, both');
  if (v.presence && v.pool && (v['vs-kamailio'] || v.profile))
    throw new UsageError('--presence --pool runs Parley only: leave out --vs-kamailio and --profile');
  const contactsEngines: ('pglite' | 'postgres')[] =
    engine === 'both' ? ['pglite', 'postgres'] : [engine as 'pglite' | 'postgres'];
  const otherSuite = Boolean(v.sync || v.contacts || v.migrate || v.pool || v.edge || v.presence || fuzz);
  return {
    sip: Boolean(v.sip || ((v['vs-kamailio'] || v.profile) && !v.presence) || !otherSuite),
    vsKamailio: Boolean(v['vs-kamailio']),
    sync: Boolean(v.sync),
    syncScale: v['sync-scale']
      ? v['sync-scale'].split(',').map((n) => Math.floor(positive(n.trim(), '--sync-scale')))
      : [],
    contacts: Boolean(v.contacts),
    contactsEngines,
    migrate: Boolean(v.migrate),
    // --presence --pool is the presence suite on a pool, not the pool suite.
    pool: Boolean(v.pool) && !v.presence,
    presencePool: Boolean(v.pool) && Boolean(v.presence),
    edge: Boolean(v.edge),
    presence: Boolean(v.presence),
    watchers: v.watchers ? Math.floor(positive(v.watchers, '--watchers')) : 2_000,
    presentities: v.presentities ? Math.floor(positive(v.presentities, '--presentities')) : 100,
    watcherSipps: v['watcher-sipps']
      ? Math.floor(positive(v['watcher-sipps'], '--watcher-sipps'))
      : undefined,
    fuzz,
    seed,
    users,
    usersGiven: Boolean(v.users),
    rates,
    ratesGiven: Boolean(v.rate),
    duration,
    durationGiven: Boolean(v.duration),
    workloads,
    workers: v.workers ? Math.floor(positive(v.workers, '--workers')) : 1,
    sipps: v.sipps ? Math.floor(positive(v.sipps, '--sipps')) : 1,
    profile: Boolean(v.profile),
    json: Boolean(v.json),
  };
}

function parseArgsStrict(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      sip: { type: 'boolean' },
      'vs-kamailio': { type: 'boolean' },
      sync: { type: 'boolean' },
      'sync-scale': { type: 'string' },
      contacts: { type: 'boolean' },
      'contacts-engine': { type: 'string' },
      migrate: { type: 'boolean' },
      pool: { type: 'boolean' },
      edge: { type: 'boolean' },
      presence: { type: 'boolean' },
      watchers: { type: 'string' },
      presentities: { type: 'string' },
      'watcher-sipps': { type: 'string' },
      fuzz: { type: 'string' },
      seed: { type: 'string' },
      users: { type: 'string' },
      rate: { type: 'string' },
      duration: { type: 'string' },
      only: { type: 'string' },
      workers: { type: 'string' },
      sipps: { type: 'string' },
      profile: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

async function runSipSuite(
  opts: Options,
  log: (line: string) => void,
  result: BenchResult,
): Promise<SipSuiteResult> {
  const workDir = mkdtempSync(join(tmpdir(), 'parley-bench-'));
  const profileDir = opts.profile ? mkdtempSync(join(tmpdir(), 'parley-bench-profile-')) : undefined;
  const targets: SipTarget[] = [];
  const suite: SipSuiteResult = {
    machine: machineInfo(),
    servers: {},
    users: opts.users,
    rates: opts.rates,
    duration: opts.duration,
    workers: opts.workers,
    sipps: opts.sipps,
    workloads: [],
  };
  try {
    log(
      `machine: ${suite.machine.cpus} CPUs (${suite.machine.cpuModel}), load ${suite.machine.loadAverage.join(' ')}, Node ${suite.machine.node}, ${suite.machine.sipp}`,
    );
    const parley = await startParley({
      users: opts.users,
      workers: opts.workers,
      cpuProfileDir: profileDir,
      log,
    });
    targets.push(parley);
    log(`parley: listening on tcp 127.0.0.1:${parley.port}`);
    if (opts.vsKamailio) {
      if (!findKamailio() && process.getuid?.() !== 0) {
        suite.kamailioSkipped = 'kamailio is not installed: sudo apt-get install kamailio';
        log(`kamailio: skipped (${suite.kamailioSkipped})`);
      } else {
        const kamailio = await startKamailio({ install: true });
        targets.push(kamailio);
        log(`kamailio: ${kamailio.version} listening on tcp 127.0.0.1:${kamailio.port}`);
      }
    }
    for (const t of targets) suite.servers[t.name] = t.version;
    const runs = await measureTargets(
      targets,
      {
        users: opts.users,
        rates: opts.rates,
        duration: opts.duration,
        workloads: opts.workloads,
        sipps: opts.sipps,
        log,
      },
      workDir,
    );
    for (const workload of opts.workloads) {
      const [p, k] = [
        runs[workload].find((r) => r.server === 'parley'),
        runs[workload].find((r) => r.server === 'kamailio'),
      ];
      if (!p) continue;
      const row: SipWorkloadRow = { workload, label: WORKLOAD_LABELS[workload], parley: p, kamailio: k };
      if (p.best && k?.best) row.ratio = Math.round((p.best.achievedRate / k.best.achievedRate) * 100) / 100;
      suite.workloads.push(row);
      for (const run of [p, k]) {
        if (run?.failedAtLowestRate) {
          const first = run.steps[0];
          result.failures.push(
            `${run.server} ${workload}: ${first.failed} failed calls at the lowest rate (${first.targetRate}/s)${first.error ? `: ${first.error}` : ''}`,
          );
        }
      }
    }
  } finally {
    for (const t of targets.reverse()) await t.stop().catch((err) => log(`stopping ${t.name}: ${err}`));
    rmSync(workDir, { recursive: true, force: true });
  }
  if (profileDir) {
    const file = serverCpuProfile(profileDir);
    if (file) suite.profile = summariseCpuProfile(file);
    else log(`profile: no .cpuprofile was written in ${profileDir} (did the server exit cleanly?)`);
  }
  return suite;
}

/** Calls an optional suite module's export when its file was built, else reports it missing. */
async function runOptionalSuite(
  name: string,
  module: string,
  exportName: string,
  args: Record<string, unknown>,
  result: BenchResult,
): Promise<unknown> {
  const path = join(import.meta.dirname, module);
  if (!existsSync(path)) {
    result.notAvailable.push(
      `${name} benchmark: not available (bench/${module.replace(/\.js$/, '.ts')} is not built)`,
    );
    return undefined;
  }
  const mod = (await import(`./${module}`)) as Record<string, unknown>;
  const fn = mod[exportName];
  if (typeof fn !== 'function') {
    result.notAvailable.push(`${name} benchmark: bench/${module} has no ${exportName}()`);
    return undefined;
  }
  return (fn as (o: Record<string, unknown>) => Promise<unknown>)(args);
}

export async function runBench(opts: Options, log: (line: string) => void): Promise<BenchResult> {
  const result: BenchResult = { notAvailable: [], failures: [] };
  if (opts.pool) {
    result.pool = await benchPool({
      users: opts.users,
      rates: opts.ratesGiven ? opts.rates : undefined,
      duration: opts.durationGiven ? opts.duration : undefined,
      log,
    });
    for (const f of result.pool.failures) result.failures.push(`pool ${f}`);
  }
  if (opts.edge) {
    result.edge = await benchEdge({
      users: opts.usersGiven ? opts.users : 10_000,
      rates: opts.ratesGiven ? opts.rates : undefined,
      duration: opts.durationGiven ? opts.duration : undefined,
      // The edge carries TLS: its workloads are the TCP-family ones (REGISTER and MESSAGE).
      workloads: opts.workloads.filter((w) => w === 'register' || w === 'message'),
      log,
    });
    for (const f of result.edge.failures) result.failures.push(`edge ${f}`);
  }
  if (opts.presence) {
    result.presence = await benchPresence({
      watchers: opts.watchers,
      presentities: opts.presentities,
      rates: opts.ratesGiven ? opts.rates : undefined,
      duration: opts.duration,
      vsKamailio: opts.vsKamailio,
      profile: opts.profile,
      watcherSipps: opts.watcherSipps,
      pool: opts.presencePool,
      log,
    });
    for (const f of result.presence.failures) result.failures.push(`presence ${f}`);
  }
  if (opts.fuzz) {
    result.fuzz = await benchFuzz({ count: opts.fuzz, seed: opts.seed, log });
    if (result.fuzz.crashes > 0 || !result.fuzz.servingAfter)
      result.failures.push(`fuzz: the server ${result.fuzz.crashes > 0 ? 'crashed' : 'stopped answering'}`);
  }
  if (opts.sip) result.sip = await runSipSuite(opts, log, result);
  if (opts.sync)
    result.sync = await runOptionalSuite(
      'sync',
      'sync.js',
      'benchSync',
      { users: opts.users, scale: opts.syncScale, log },
      result,
    );
  if (opts.contacts)
    result.contacts = await runOptionalSuite(
      'contacts',
      'contacts.js',
      'benchContacts',
      { users: opts.users, engines: opts.contactsEngines, log },
      result,
    );
  if (opts.migrate)
    result.migrate = await runOptionalSuite(
      'migrate',
      'migrate.js',
      'benchMigrate',
      { users: opts.usersGiven ? opts.users : undefined, log },
      result,
    );
  return result;
}

const fmtRate = (n: number | undefined) => (n === undefined ? '-' : n.toLocaleString('en-US'));

function latencyText(run: WorkloadRun | undefined): string {
  const s = run?.sustained;
  const l = s?.latency;
  return s && l ? `${l.p50}/${l.p90}/${l.p99} @ ${fmtRate(s.achievedRate)}/s` : '-';
}

function failuresText(run: WorkloadRun | undefined): string {
  if (!run) return '-';
  if (!run.best) return `${run.steps[0]?.failed ?? 0} (at ${fmtRate(run.steps[0]?.targetRate)}/s)`;
  return String(run.best.failed);
}

/** The human rendering: one row per workload and server, then the ratio. */
export function renderSipTable(suite: SipSuiteResult): string {
  const header = [
    'workload',
    'server',
    'best rate/s',
    'at target',
    'ratio',
    'failed',
    'CPU %',
    'RSS MiB',
    'RSS end',
    'p50/p90/p99 ms at a sustained rate',
  ];
  const rows: string[][] = [];
  for (const w of suite.workloads) {
    for (const run of [w.parley, w.kamailio]) {
      if (!run) continue;
      rows.push([
        w.label,
        run.server,
        fmtRate(run.best?.achievedRate),
        fmtRate(run.best?.targetRate),
        run.server === 'parley' && w.ratio !== undefined ? w.ratio.toFixed(2) : '',
        failuresText(run),
        run.best ? String(run.best.cpuPercent) : '-',
        // Kamailio is several processes sharing memory: PSS counts shared pages once.
        run.best ? String(run.server === 'parley' ? run.best.rssMiB : run.best.pssMiB) : '-',
        String(run.server === 'parley' ? run.endRssMiB : run.endPssMiB),
        latencyText(run),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i >= 2 && i < 9 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  out.push('');
  out.push(
    `best rate: highest achieved rate with 0 failed calls over ${suite.duration} s steps (target rates ${suite.rates.join(', ')}/s), ${suite.sipps === 1 ? 'one SIPp' : `${suite.sipps} SIPps`} of one TCP connection each per TCP step (UDP rows: one SIPp, one socket), SIPp on the same cores; Parley with ${suite.workers === 1 ? 'one process' : `${suite.workers} SIP worker processes (server.workers)`}.`,
  );
  out.push(
    'CPU % and RSS at the best rate (peak over the step); RSS end: once the ramp ended. Latency at the highest clean step that kept up with its target (at saturation it is only queueing time).',
  );
  out.push(
    'CPU %: server process tree, % of one core. RSS: Parley VmRSS; Kamailio summed PSS of its processes.',
  );
  if (suite.kamailioSkipped) out.push(`Kamailio not measured: ${suite.kamailioSkipped}`);
  return out.join('\n');
}

export function renderProfile(p: ProfileSummary): string {
  const out = [
    `CPU profile of the Parley server (${p.totalMs} ms sampled): ${p.file}`,
    'top self time by function:',
  ];
  for (const f of p.functions)
    out.push(
      `  ${String(f.selfPercent).padStart(5)}%  ${String(f.selfMs).padStart(7)} ms  ${f.function}  ${f.location}`,
    );
  out.push('top self time by file:');
  for (const f of p.files.slice(0, 12))
    out.push(`  ${String(f.selfPercent).padStart(5)}%  ${String(f.selfMs).padStart(7)} ms  ${f.file}`);
  out.push("Parley's functions by total time (callees included):");
  for (const f of p.inclusive.slice(0, 15))
    out.push(
      `  ${String(f.totalPercent).padStart(5)}%  ${String(f.totalMs).padStart(7)} ms  ${f.function}  ${f.location}`,
    );
  return out.join('\n');
}

async function main(): Promise<number> {
  if (process.argv.includes('--soak')) return soakMain(process.argv.slice(2));
  if (process.argv.includes('--archive')) return archiveMain(process.argv.slice(2));
  let opts: Options | 'help';
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  if (opts === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const json = opts.json;
  const log = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
  let result: BenchResult;
  try {
    result = await runBench(opts, log);
  } catch (err) {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    if (result.pool) {
      log('');
      log(renderPoolTable(result.pool));
    }
    if (result.edge) {
      log('');
      log(renderEdgeTable(result.edge));
    }
    if (result.presence) {
      log('');
      log(renderPresenceTable(result.presence));
      if (result.presence.profile) {
        log('');
        log(renderProfile(result.presence.profile));
      }
    }
    if (result.fuzz) {
      log('');
      log(renderFuzz(result.fuzz));
    }
    for (const line of result.notAvailable) log(line);
    if (result.sip) {
      log('');
      log(renderSipTable(result.sip));
      if (result.sip.profile) {
        log('');
        log(renderProfile(result.sip.profile));
      }
    }
    for (const f of result.failures) log(`FAILED: ${f}`);
  }
  return result.failures.length > 0 ? 1 : 0;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping SIPp and the servers\n`);
    killChildren();
    process.exit(130);
  });
}
process.on('exit', killChildren);

main().then(
  (code) => {
    killChildren();
    process.exit(code);
  },
  (err) => {
    killChildren();
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(2);
  },
);
