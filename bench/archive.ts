/**
 * `npm run bench -- --archive`: what message archiving costs. The SIP suite's MESSAGE workload
 * (SIPp alice -> Parley -> SIPp UAS bob, digest, TCP) against two standard servers, one with
 * archiving off and one with it on (every MESSAGE archived, batched writes,
 * docs/archiving.md), on the embedded store (PGlite) and on a PostgreSQL server. Both run at
 * once and their steps alternate (off, on, off, on ... at rising rates), so a change in the
 * machine's load falls on both; each ramps until it saturates (a failed call, or under 90% of
 * the target). The issue's goal: archiving costs less than 20% of the MESSAGE rate, read two
 * ways: the best clean rates at saturation, and the server CPU per message (on a machine
 * where the server gets a whole core, its saturated rate is the inverse of that).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { computeHa1Pair } from '../src/registrar/ha1.js';
import { openDatabase } from '../src/store/open.js';
import { UserRepository } from '../src/store/users.js';
import { startTestPostgres, type TestPostgres } from '../test-kit/postgres.js';
import { positiveNumbers, suiteArgs, usageError } from './args.js';
import {
  captureTail,
  DOMAIN,
  killChildren,
  machineInfo,
  measureTargets,
  PASSWORD,
  processTree,
  type RateStep,
  REPO_ROOT,
  type SipTarget,
  seedParleyUsers,
  sleep,
  spawnTracked,
  type WorkloadRun,
  waitForExit,
} from './sip.js';

const DEFAULT_ARCHIVE_RATES = [
  1_000, 2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 15_000, 20_000, 25_000, 30_000,
];

const ARCHIVE_USAGE = `Usage: npm run bench -- --archive [options]

MESSAGE rate with archiving off and on, on PGlite and on PostgreSQL (bench/archive.ts).

Options
  --engine E          pglite, postgres or both (default both)
  --rate R[,R2...]    target MESSAGE rates (default ${DEFAULT_ARCHIVE_RATES.join(',')})
  --duration S        seconds per rate step (default 5)
  --json              print the results as JSON (progress goes to stderr)
  -h, --help          this text`;

type Engine = 'pglite' | 'postgres';

export interface ArchiveBenchRow {
  engine: Engine;
  off: WorkloadRun;
  on: WorkloadRun;
  /** Rows the archiving server wrote (parley_archive_written_total) during its run. */
  archivedRows: number;
  /** Failed batch writes (parley_archive_failures_total): non-zero means the rate is not archiving's. */
  archiveFailures: number;
  /** 1 - best rate with archiving / best rate without: the share of the rate archiving costs. */
  cost?: number;
  /** Server CPU per message (microseconds of CPU) at the highest target rate both carried cleanly. */
  cpuUsPerMessage?: { atRate: number; off: number; on: number };
  /** 1 - CPU per message without / with archiving: the cost in saturated rate on a core of its own. */
  cpuCost?: number;
  /** Machine load average (1 min) when the engine's ramp started and ended. */
  load: [number, number];
}

export interface ArchiveBenchResult {
  machine: ReturnType<typeof machineInfo>;
  rates: number[];
  duration: number;
  rows: ArchiveBenchRow[];
}

export async function archiveMain(argv: string[]): Promise<number> {
  const values = suiteArgs(
    argv,
    {
      archive: { type: 'boolean' },
      engine: { type: 'string' },
      rate: { type: 'string' },
      duration: { type: 'string' },
      json: { type: 'boolean' },
    },
    ARCHIVE_USAGE,
  );
  if (typeof values === 'number') return values;
  const engineFlag = typeof values.engine === 'string' ? values.engine : 'both';
  if (!['pglite', 'postgres', 'both'].includes(engineFlag))
    return usageError('--engine is one of pglite, postgres, both', ARCHIVE_USAGE);
  const engines: Engine[] = engineFlag === 'both' ? ['pglite', 'postgres'] : [engineFlag as Engine];
  const rates = positiveNumbers(values.rate, DEFAULT_ARCHIVE_RATES);
  const duration = positiveNumbers(values.duration, [5])?.[0];
  if (rates === undefined || duration === undefined)
    return usageError('--rate and --duration need positive numbers', ARCHIVE_USAGE);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const onSignal = () => {
    killChildren();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  try {
    const result = await benchArchive({ engines, rates, duration, log });
    if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else for (const line of renderArchiveTable(result)) process.stdout.write(`${line}\n`);
    return result.rows.some((r) => r.off.best === undefined || r.on.best === undefined) ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
  }
}

export async function benchArchive(o: {
  engines: Engine[];
  rates: number[];
  duration: number;
  log: (line: string) => void;
}): Promise<ArchiveBenchResult> {
  const machine = machineInfo();
  o.log(
    `machine: ${machine.cpus} CPUs (${machine.cpuModel}), load ${machine.loadAverage.join(' ')}, Node ${machine.node}`,
  );
  const result: ArchiveBenchResult = { machine, rates: o.rates, duration: o.duration, rows: [] };
  const workDir = mkdtempSync(join(tmpdir(), 'parley-bench-archive-'));
  let pg: TestPostgres | undefined;
  const stopPostgres = () => void pg?.stop().catch(() => undefined);
  process.once('exit', stopPostgres);
  try {
    for (const engine of o.engines) {
      if (engine === 'postgres' && !pg) pg = await startTestPostgres();
      const loadBefore = loadavg()[0];
      const modes = ['off', 'on'] as const;
      const servers: Partial<
        Record<(typeof modes)[number], Awaited<ReturnType<typeof startArchivingParley>>>
      > = {};
      try {
        for (const mode of modes) {
          const url =
            pg && engine === 'postgres' ? await pg.createDatabase(`parley_archive_${mode}`) : undefined;
          servers[mode] = await startArchivingParley({
            archiving: mode === 'on',
            databaseUrl: url,
            log: o.log,
          });
          o.log(`${engine}, archiving ${mode}: parley on tcp 127.0.0.1:${servers[mode]!.target.port}`);
        }
        // Steps alternate between the two servers at each rate; a server's ramp ends once it saturates.
        const steps: Record<(typeof modes)[number], RateStep[]> = { off: [], on: [] };
        const saturated = { off: false, on: false };
        for (const rate of o.rates) {
          for (const mode of modes) {
            if (saturated[mode]) continue;
            const measured = await measureTargets(
              [servers[mode]!.target],
              {
                users: 0,
                rates: [rate],
                duration: o.duration,
                workloads: ['message'],
                log: o.log,
                sustainedStep: false,
              },
              workDir,
            );
            const step = measured.message[0].steps[0];
            steps[mode].push(step);
            if (step.failed > 0 || step.error || step.achievedRate < step.targetRate * 0.9)
              saturated[mode] = true;
          }
          if (saturated.off && saturated.on) break;
        }
        const runOf = (mode: (typeof modes)[number]): WorkloadRun => {
          const clean = steps[mode].filter((st) => st.failed === 0 && !st.error);
          const best = clean.reduce<RateStep | undefined>(
            (a, st) => (!a || st.achievedRate > a.achievedRate ? st : a),
            undefined,
          );
          const sustained = [...clean].reverse().find((st) => st.achievedRate >= st.targetRate * 0.9);
          return {
            server: 'parley',
            steps: steps[mode],
            best,
            sustained,
            failedAtLowestRate: clean.length === 0,
            endRssMiB: 0,
            endPssMiB: 0,
          };
        };
        const off = runOf('off');
        const on = runOf('on');
        // Rows still waiting (final responses, the last batch) are written before counting.
        const deadline = Date.now() + 15_000;
        while (Date.now() < deadline && (await servers.on!.metric('parley_archive_backlog')) > 0)
          await sleep(200);
        const row: ArchiveBenchRow = {
          engine,
          off,
          on,
          archivedRows: await servers.on!.metric('parley_archive_written_total'),
          archiveFailures: await servers.on!.metric('parley_archive_failures_total'),
          load: [loadBefore, loadavg()[0]],
        };
        if (off.best && on.best)
          row.cost = Math.round((1 - on.best.achievedRate / off.best.achievedRate) * 1000) / 1000;
        // CPU per message at the highest rate both carried without a failure: the closest to
        // saturation, where a server's fixed costs (timers, sampling) weigh least per message.
        const perMessage = (st: RateStep) => (st.cpuPercent / 100 / st.achievedRate) * 1e6;
        const clean = (st?: RateStep) =>
          st !== undefined && st.failed === 0 && !st.error && st.achievedRate > 0;
        const top = off.steps
          .map((a, i) => [a, on.steps[i]] as const)
          .filter(([a, b]) => clean(a) && clean(b))
          .at(-1);
        if (top) {
          const [a, b] = top;
          row.cpuUsPerMessage = {
            atRate: a.targetRate,
            off: Math.round(perMessage(a) * 10) / 10,
            on: Math.round(perMessage(b) * 10) / 10,
          };
          row.cpuCost = Math.round((1 - perMessage(a) / perMessage(b)) * 1000) / 1000;
        }
        result.rows.push(row);
      } finally {
        for (const mode of modes) await servers[mode]?.target.stop();
      }
    }
  } finally {
    process.off('exit', stopPostgres);
    await pg?.stop().catch(() => undefined);
    rmSync(workDir, { recursive: true, force: true });
  }
  return result;
}

export function renderArchiveTable(r: ArchiveBenchResult): string[] {
  const lines = [
    `MESSAGE rate with archiving off and on (${r.duration} s steps alternating, rates ${r.rates.join(', ')}/s, each ramped to saturation)`,
    'engine    off best/s  on best/s  rate cost  CPU us/msg off  on  CPU cost  archived rows  failed writes  load 1m',
  ];
  const pct = (x?: number) => (x === undefined ? '    -' : `${(x * 100).toFixed(1).padStart(5)}%`);
  for (const row of r.rows) {
    lines.push(
      [
        row.engine.padEnd(8),
        String(row.off.best?.achievedRate ?? '-').padStart(11),
        String(row.on.best?.achievedRate ?? '-').padStart(10),
        pct(row.cost).padStart(10),
        `${row.cpuUsPerMessage?.off ?? '-'} @${row.cpuUsPerMessage?.atRate ?? '-'}/s`.padStart(15),
        String(row.cpuUsPerMessage?.on ?? '-').padStart(4),
        pct(row.cpuCost).padStart(9),
        String(row.archivedRows).padStart(14),
        String(row.archiveFailures).padStart(14),
        `  ${row.load.map((l) => l.toFixed(1)).join(' -> ')}`,
      ].join(' '),
    );
  }
  lines.push(
    'rate cost = 1 - best clean rate with archiving / without; CPU cost = 1 - CPU per message without / with (the saturated rate on a core of its own). Goal < 20%.',
  );
  return lines;
}

/** A standard server from the built CLI with archiving on or off, on PGlite or on PostgreSQL. */
async function startArchivingParley(o: {
  archiving: boolean;
  databaseUrl?: string;
  log: (line: string) => void;
}): Promise<{ target: SipTarget; metric(name: string): Promise<number> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'parley-bench-archive-data-'));
  if (o.databaseUrl) {
    const db = await openDatabase({ url: o.databaseUrl });
    try {
      const users = new UserRepository(db);
      for (const name of ['alice', 'bob']) {
        const user = await users.createUser({ aor: `${name}@${DOMAIN}`, displayName: name });
        await users.setCredentials(user.id, DOMAIN, computeHa1Pair(name, DOMAIN, PASSWORD));
      }
    } finally {
      await db.close();
    }
  } else {
    await seedParleyUsers(dataDir, 0);
  }
  const config = join(dataDir, 'parley-bench.yaml');
  writeFileSync(
    config,
    `archiving:\n  enabled: ${o.archiving}\n${o.databaseUrl ? `database:\n  url: ${JSON.stringify(o.databaseUrl)}\n` : ''}`,
  );
  const child = spawnTracked(
    process.execPath,
    [
      join(REPO_ROOT, 'bin', 'run.js'),
      'server',
      'start',
      ...['--domain', DOMAIN, '--config', config, '--data-dir', dataDir],
      ...['--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'warn'],
    ],
    { cwd: dataDir },
  );
  const tail = captureTail(child, 16_384);
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGINT');
    await waitForExit(child, 20_000);
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const { sipPort, httpUrl } = await listeningAddresses(child, 60_000);
    const pid = child.pid ?? 0;
    const metric = async (name: string) => {
      const text = await (await fetch(`${httpUrl}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
      return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
    };
    return {
      target: {
        name: `parley-archiving-${o.archiving ? 'on' : 'off'}`,
        version: 'Parley',
        host: '127.0.0.1',
        port: sipPort,
        pids: () => processTree(pid),
        stop,
      },
      metric,
    };
  } catch (err) {
    await stop();
    throw new Error(
      `Parley did not start: ${(err as Error).message}\n${tail().trim().split('\n').slice(-15).join('\n')}`,
    );
  }
}

/** `server start` prints "SIP   tcp://host:port" and "HTTP  http://host:port/..." once it serves. */
function listeningAddresses(
  child: ChildProcess,
  timeoutMs: number,
): Promise<{ sipPort: number; httpUrl: string }> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => done(new Error(`no listening addresses after ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      out += d.toString();
      const sip = /SIP\s+tcp:\/\/[^\s]+:(\d+)/.exec(out);
      const http = /HTTP\s+(http:\/\/[^\s/]+)\//.exec(out);
      if (sip && http) done(undefined, { sipPort: Number(sip[1]), httpUrl: http[1] });
    };
    const onExit = (code: number | null) => done(new Error(`the server exited with code ${code}`));
    const done = (err?: Error, value?: { sipPort: number; httpUrl: string }) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else if (value) resolve(value);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
  });
}
