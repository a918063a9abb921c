/**
 * `npm run bench -- --soak`: the memory soak. Seeds --users users (default 100,000),
 * registers every one of them with SIPp over UDP (bindings that stay for the whole run: one
 * made over TCP goes with SIPp's connection), then runs MESSAGE alice -> bob over TCP at
 * --rate per second (default 5,000) for --minutes (default 10), printing the server's RSS
 * and JS heap every minute and at the end. The goal (issue 9): under 1 GiB RSS at the end.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { positiveNumbers, suiteArgs, usageError } from './args.js';
import {
  captureTail,
  DOMAIN,
  ensureCommand,
  freePort,
  machineInfo,
  memoryKiB,
  processTree,
  REPO_ROOT,
  runSipp,
  SCENARIOS,
  type SippRun,
  seedParleyUsers,
  sleep,
  spawnTracked,
  waitForExit,
  waitForTcp,
  writeInjectionFile,
} from './sip.js';

export interface SoakOptions {
  users: number;
  minutes: number;
  rate: number;
  log: (line: string) => void;
}

/** One reading of the server's memory. */
export interface MemorySample {
  /** Seconds since the MESSAGE run started (negative: before it). */
  atSeconds: number;
  label: string;
  rssMiB: number;
  /**
   * The same processes' summed PSS: pages they share (the node binary's, mapped by the
   * launcher and the server alike) counted once, where summed VmRSS counts them in each.
   */
  pssMiB: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  /** Buffers and other memory outside the JS heap (Node's `external`). */
  externalMiB: number;
  registeredEndpoints: number;
}

export interface SoakResult {
  machine: ReturnType<typeof machineInfo>;
  users: number;
  rate: number;
  minutes: number;
  registered: { successful: number; failed: number; seconds: number };
  messages: { successful: number; failed: number; seconds: number; achievedRate: number };
  samples: MemorySample[];
  /** RSS at the end of the run is below 1 GiB (the bound). */
  underOneGiB: boolean;
  failures: string[];
}

const GIB_MIB = 1024;

/**
 * SIPp stops itself (exit 255) after 120 trips of its 500 ms watchdog: on a machine shared
 * with other work a long run trips it whatever the server does. Calls that time out still
 * count as failed; SIPp just keeps going.
 */
const PATIENT_SIPP = ['-watchdog_minor_maxtriggers', '1000000', '-watchdog_major_maxtriggers', '1000000'];

export async function benchSoak(opts: SoakOptions): Promise<SoakResult> {
  const { log } = opts;
  const workDir = mkdtempSync(join(tmpdir(), 'parley-soak-'));
  const dataDir = mkdtempSync(join(tmpdir(), 'parley-soak-data-'));
  const result: SoakResult = {
    machine: machineInfo(),
    users: opts.users,
    rate: opts.rate,
    minutes: opts.minutes,
    registered: { successful: 0, failed: 0, seconds: 0 },
    messages: { successful: 0, failed: 0, seconds: 0, achievedRate: 0 },
    samples: [],
    underOneGiB: false,
    failures: [],
  };
  const children: ChildProcess[] = [];
  try {
    log(
      `machine: ${result.machine.cpus} CPUs, load ${result.machine.loadAverage.join(' ')}, Node ${result.machine.node}`,
    );
    const seeded = Date.now();
    await seedParleyUsers(dataDir, opts.users);
    log(`soak: ${opts.users + 2} users created in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);
    const [tcpPort, udpPort, httpPort] = [await freePort(), await freePort(), await freePort()];
    const server = spawnTracked(
      process.execPath,
      [
        join(REPO_ROOT, 'bin', 'run.js'),
        ...['server', 'start', '--domain', DOMAIN, '--data-dir', dataDir],
        ...['--tcp', `127.0.0.1:${tcpPort}`, '--udp', `127.0.0.1:${udpPort}`],
        ...['--http', `127.0.0.1:${httpPort}`, '--log-level', 'warn'],
      ],
      { cwd: dataDir },
    );
    children.push(server);
    const serverTail = captureTail(server, 16_384);
    const alive = () => server.exitCode === null;
    await waitForTcp('127.0.0.1', tcpPort, 120_000, alive).catch((err) => {
      throw new Error(`${err.message}\n${serverTail().trim().split('\n').slice(-10).join('\n')}`);
    });
    const httpUrl = `http://127.0.0.1:${httpPort}`;
    const target = { host: '127.0.0.1', port: tcpPort, udpPort };
    const pid = server.pid ?? 0;
    const t0 = { at: Date.now() };
    const sample = async (label: string): Promise<MemorySample> => {
      const metrics = await readMetrics(httpUrl);
      const memory = memoryKiB(processTree(pid));
      const s: MemorySample = {
        atSeconds: Math.round((Date.now() - t0.at) / 1000),
        label,
        rssMiB: round1(memory.rss / 1024),
        pssMiB: round1(memory.pss / 1024),
        heapUsedMiB: round1((metrics.get('parley_nodejs_heap_size_used_bytes') ?? 0) / 2 ** 20),
        heapTotalMiB: round1((metrics.get('parley_nodejs_heap_size_total_bytes') ?? 0) / 2 ** 20),
        externalMiB: round1((metrics.get('parley_nodejs_external_memory_bytes') ?? 0) / 2 ** 20),
        registeredEndpoints: metrics.get('parley_registered_endpoints') ?? 0,
      };
      result.samples.push(s);
      log(
        `  ${label.padEnd(14)} RSS ${s.rssMiB} MiB (PSS ${s.pssMiB}), heap ${s.heapUsedMiB}/${s.heapTotalMiB} MiB, external ${s.externalMiB} MiB, ${s.registeredEndpoints} endpoints`,
      );
      return s;
    };
    await sample('started');

    // Every user registers over UDP: a binding made over TCP goes with the connection it was
    // made on (a Contact at another address is reached over that connection too), so only UDP
    // bindings outlive SIPp. Below the bench's REGISTER rates: on a loaded machine a late 401
    // makes SIPp retransmit, and the retransmission's answer fails the call.
    const users = writeInjectionFile(
      join(workDir, 'users.csv'),
      Array.from({ length: opts.users }, (_, i) => ({ user: `user${i}` })),
    );
    const registerRate = Math.min(opts.users, 1_000);
    const reg = await runSipp({
      target,
      transport: 'udp',
      scenario: join(SCENARIOS, 'register-auth.xml'),
      injection: users,
      calls: opts.users,
      rate: registerRate,
      dir: join(workDir, 'register'),
      timeoutSeconds: Math.ceil(opts.users / registerRate) * 3 + 30,
      extra: PATIENT_SIPP,
    });
    result.registered = tally(reg, opts.users);
    log(
      `soak: ${result.registered.successful} users registered in ${result.registered.seconds} s (${result.registered.failed} failed)`,
    );
    if (result.registered.failed > 0) {
      result.failures.push(`${result.registered.failed} REGISTERs failed: ${sippTrouble(reg)}`);
    }
    await sample('registered');

    const uas = await startMessageUas(workDir, opts.minutes);
    children.push(uas.child);
    const bob = writeInjectionFile(join(workDir, 'bob.csv'), [
      { user: 'bob', extra: `127.0.0.1:${uas.port}` },
    ]);
    const bobReg = await runSipp({
      target,
      scenario: join(SCENARIOS, 'register-contact.xml'),
      injection: bob,
      calls: 1,
      rate: 1,
      dir: join(workDir, 'register-bob'),
      timeoutSeconds: 20,
    });
    if (bobReg.exit !== 0) throw new Error(`registering bob failed (SIPp exit ${bobReg.exit})`);

    const alice = writeInjectionFile(join(workDir, 'alice.csv'), [{ user: 'alice', extra: 'bob' }]);
    const calls = Math.round(opts.rate * opts.minutes * 60);
    log(`soak: MESSAGE alice -> bob over TCP at ${opts.rate}/s for ${opts.minutes} min (${calls} messages)`);
    t0.at = Date.now();
    const run = runSipp({
      target,
      scenario: join(SCENARIOS, 'uac-message.xml'),
      injection: alice,
      calls,
      rate: opts.rate,
      dir: join(workDir, 'message'),
      timeoutSeconds: Math.ceil(opts.minutes * 60 * 1.5 + 60),
      extra: PATIENT_SIPP,
    });
    let done = false;
    void run.finally(() => {
      done = true;
    });
    for (let minute = 1; !done; minute++) {
      const due = t0.at + minute * 60_000;
      while (!done && Date.now() < due) await sleep(Math.min(1_000, due - Date.now()));
      if (!done) await sample(`minute ${minute}`);
    }
    const messages = await run;
    const m = tally(messages, calls);
    result.messages = { ...m, achievedRate: m.seconds > 0 ? Math.round(m.successful / m.seconds) : 0 };
    log(
      `soak: ${m.successful} messages in ${m.seconds} s (${result.messages.achievedRate}/s), ${m.failed} failed`,
    );
    if (m.failed > 0) result.failures.push(`${m.failed} MESSAGEs failed: ${sippTrouble(messages)}`);
    const end = await sample('end');
    // Memory the run left behind once its transactions are over (Timer K and friends).
    await sleep(45_000);
    await sample('end + 45 s');
    result.underOneGiB = end.rssMiB < GIB_MIB;
    if (!result.underOneGiB) result.failures.push(`RSS ${end.rssMiB} MiB at the end is over 1 GiB`);
    uas.child.kill('SIGTERM');
    if (server.exitCode === null) server.kill('SIGINT');
    await waitForExit(server, 20_000);
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(workDir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
  return result;
}

export function renderSoak(r: SoakResult): string {
  const lines = [
    `Soak: ${r.users} users registered, MESSAGE at ${r.rate}/s for ${r.minutes} min (${r.messages.achievedRate}/s achieved, ${r.messages.failed} failed)`,
    '',
    '| when | RSS MiB | PSS MiB | heap used MiB | heap total MiB | external MiB | endpoints |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.samples.map(
      (s) =>
        `| ${s.label} | ${s.rssMiB} | ${s.pssMiB} | ${s.heapUsedMiB} | ${s.heapTotalMiB} | ${s.externalMiB} | ${s.registeredEndpoints} |`,
    ),
    '',
    `RSS at the end: ${r.samples.find((s) => s.label === 'end')?.rssMiB ?? '?'} MiB (${r.underOneGiB ? 'under' : 'OVER'} 1 GiB)`,
  ];
  return lines.join('\n');
}

async function startMessageUas(
  workDir: string,
  minutes: number,
): Promise<{ child: ChildProcess; port: number }> {
  const sipp = ensureCommand('sipp', 'sip-tester', ['/usr/bin']);
  const port = await freePort();
  const child = spawnTracked(
    sipp,
    [
      ...['-sf', join(SCENARIOS, 'uas-message.xml'), '-t', 't1', '-i', '127.0.0.1', '-p', String(port)],
      ...['-nostdin', '-timeout', `${Math.ceil(minutes * 60 * 2 + 300)}s`, ...PATIENT_SIPP],
    ],
    { cwd: workDir },
  );
  await waitForTcp('127.0.0.1', port, 10_000, () => child.exitCode === null);
  return { child, port };
}

function tally(run: SippRun, calls: number): { successful: number; failed: number; seconds: number } {
  const successful = run.stats?.successful ?? 0;
  return {
    successful,
    failed: Math.max(run.stats?.failed ?? 0, calls - successful),
    seconds: Math.round((run.stats?.seconds ?? 0) * 10) / 10,
  };
}

/** Why SIPp calls failed: its exit code, the last lines it printed and its first logged errors. */
function sippTrouble(run: SippRun): string {
  const lines = (text: string, n: number, last: boolean) => {
    const all = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !/^[-|=+]+$/.test(l));
    return (last ? all.slice(-n) : all.slice(0, n)).join(' | ');
  };
  const errors = `${lines(run.errors, 2, false).slice(0, 300)} ... ${lines(run.errors, 2, true).slice(-300)}`;
  return `SIPp exit ${run.exit}; printed: ${lines(run.tail, 4, true).slice(-400)}; errors: ${errors}`;
}

/** The server's /metrics series by name (the first sample of each). */
async function readMetrics(httpUrl: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    const text = await (await fetch(`${httpUrl}/metrics`)).text();
    for (const line of text.split('\n')) {
      if (line.startsWith('#')) continue;
      // Every series carries the server's constant labels: the first sample of a name is its value.
      const m = /^([a-z_:]+)(?:\{[^}]*\})? (\S+)$/.exec(line);
      if (m && !out.has(m[1])) out.set(m[1], Number(m[2]));
    }
  } catch {
    // A server too busy to answer in time: the sample shows zeros beside its RSS.
  }
  return out;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

const SOAK_USAGE = `Usage: npm run bench -- --soak [--minutes N] [--users N] [--rate R] [--json]

  --minutes N   length of the MESSAGE run (default 10)
  --users N     users created and registered before it (default 100000)
  --rate R      MESSAGE per second, alice to bob over TCP (default 5000)
  --json        print the result as JSON (progress goes to stderr)

Exit codes: 0 under 1 GiB RSS at the end with no failed call; 1 otherwise; 2 usage error
or a server/SIPp that could not start.`;

/** The soak's own command line (bench/run.ts hands `--soak ...` over whole). */
export async function soakMain(argv: string[]): Promise<number> {
  const values = suiteArgs(
    argv,
    {
      soak: { type: 'boolean' },
      minutes: { type: 'string' },
      users: { type: 'string' },
      rate: { type: 'string' },
      json: { type: 'boolean' },
    },
    SOAK_USAGE,
  );
  if (typeof values === 'number') return values;
  const minutes = positiveNumbers(values.minutes, [10])?.[0];
  const users = positiveNumbers(values.users, [100_000])?.[0];
  const rate = positiveNumbers(values.rate, [5_000])?.[0];
  if (minutes === undefined || users === undefined || rate === undefined)
    return usageError('--minutes, --users and --rate take positive numbers', SOAK_USAGE);
  const json = values.json === true;
  const log = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
  let result: SoakResult;
  try {
    result = await benchSoak({ minutes, users: Math.floor(users), rate: Math.floor(rate), log });
  } catch (err) {
    process.stderr.write(`soak failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else {
    log('');
    log(renderSoak(result));
    for (const f of result.failures) log(`FAILED: ${f}`);
  }
  return result.failures.length > 0 ? 1 : 0;
}
