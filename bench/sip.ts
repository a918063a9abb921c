/**
 * The SIP suite: drives a server with SIPp over one TCP connection on loopback and finds
 * the highest rate with 0 failed calls for two workloads, REGISTER with digest (401 then
 * 200) and MESSAGE from alice to a registered bob (answered by a SIPp UAS). The same
 * scenario files (bench/scenarios/, copies of fixtures/sipp/ with RTD timers) drive Parley
 * and, with --vs-kamailio, Kamailio, so the ratio compares like with like.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { SourceMap } from 'node:module';
import { connect, createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { computeHa1Pair } from '../src/registrar/ha1.js';
import { openDatabase } from '../src/store/open.js';
import { type SeedUser, seedUsers } from '../src/store/seed.js';

export type Workload = 'register' | 'message' | 'register-udp' | 'message-udp';

export const WORKLOAD_LABELS: Record<Workload, string> = {
  register: 'REGISTER with digest',
  message: 'MESSAGE alice -> bob',
  'register-udp': 'REGISTER with digest, UDP',
  'message-udp': 'MESSAGE alice -> bob, UDP',
};

/** Workloads sent over UDP (SIPp -t u1): every MESSAGE is challenged, no flow stays signed in. */
const UDP_WORKLOADS = new Set<Workload>(['register-udp', 'message-udp']);

export interface LatencyPercentiles {
  /** Milliseconds; SIPp's RTT trace has 1 ms resolution. */
  p50: number;
  p90: number;
  p99: number;
  samples: number;
}

export interface RateStep {
  targetRate: number;
  calls: number;
  successful: number;
  failed: number;
  seconds: number;
  /** Successful calls per second over the whole step, drain included. */
  achievedRate: number;
  latency?: LatencyPercentiles;
  /** CPU time of the server's process tree over the step, in % of one core. */
  cpuPercent: number;
  /** Peak VmRSS summed over the server's processes. */
  rssMiB: number;
  /** Peak PSS summed over the server's processes (shared memory counted once). */
  pssMiB: number;
  sippExit: number;
  /**
   * UDP steps: datagrams the kernel dropped during the step, machine-wide (/proc/net/snmp
   * Udp RcvbufErrors: a receive buffer was full; SndbufErrors: a send buffer was).
   */
  udpDrops?: { rcvbuf: number; sndbuf: number; server: number };
  error?: string;
}

export interface WorkloadRun {
  server: string;
  steps: RateStep[];
  /** The step with the highest achieved rate among those with 0 failures. */
  best?: RateStep;
  /** The highest-rate clean step that kept up with its target: latency without queueing. */
  sustained?: RateStep;
  /** The lowest-rate step already failed: the server did not hold the first rate tried. */
  failedAtLowestRate: boolean;
  /**
   * Memory once the ramp ended (its last step drained): what the server kept, as opposed to
   * the peak during a step. VmRSS summed, and PSS (Kamailio's workers share their memory).
   */
  endRssMiB: number;
  endPssMiB: number;
}

/** A SIP server under test, reachable over TCP on loopback. */
export interface SipTarget {
  name: string;
  version: string;
  host: string;
  port: number;
  /** Its UDP port, when it listens on UDP (the UDP workloads need one). */
  udpPort?: number;
  /** Every process of the server (the root and its children), for CPU and memory. */
  pids(): number[];
  stop(): Promise<void>;
}

export interface SipBenchOptions {
  /** Users in the injection file (and in Parley's store), user0..user(N-1), password "secret". */
  users: number;
  /** Target rates tried in order; the ramp stops at the first failure or saturation. */
  rates: number[];
  /** Length of each step in seconds (calls = rate x duration). */
  duration: number;
  workloads: Workload[];
  /**
   * SIPp processes per TCP step (default 1), each its own connection with rate/N and calls/N
   * (REGISTER: each its own slice of the users): node:cluster hands out connections, so a
   * second worker only gets work from a second connection. UDP steps keep one socket.
   */
  sipps?: number;
  /** Measure latency at 70% of the best rate when every step saturated (default true). */
  sustainedStep?: boolean;
  log: (line: string) => void;
}

export const DOMAIN = 'example.com';
export const PASSWORD = 'secret';
export const REPO_ROOT = findRepoRoot();
export const SCENARIOS = join(REPO_ROOT, 'bench', 'scenarios');

function findRepoRoot(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 5; i++) {
    const pkg = join(dir, 'package.json');
    // The checkout is the package that provides the `parley` command, whatever npm calls it.
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).bin?.parley) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error(`cannot find the Parley checkout above ${import.meta.dirname}`);
}

const children = new Set<ChildProcess>();

/** Spawns a child that killChildren() ends, so no SIPp or server outlives the bench. */
export function spawnTracked(command: string, args: string[], opts: { cwd?: string } = {}): ChildProcess {
  const child = spawn(command, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** Last resort on exit or SIGINT: SIGKILL every child still running. */
export function killChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
}

/** Resolves with the exit code; after timeoutMs sends SIGTERM, then SIGKILL 3 s later. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<number> {
  return new Promise((resolvePromise) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolvePromise(child.exitCode ?? -1);
    let hard: NodeJS.Timeout | undefined;
    const soft = setTimeout(() => {
      child.kill('SIGTERM');
      hard = setTimeout(() => child.kill('SIGKILL'), 3_000);
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(soft);
      if (hard) clearTimeout(hard);
      resolvePromise(code ?? -1);
    });
  });
}

/** Keeps the last bytes a child wrote, for error messages. */
export function captureTail(child: ChildProcess, limit = 8_192): () => string {
  let tail = '';
  const keep = (d: Buffer) => {
    tail = (tail + d.toString()).slice(-limit);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => tail;
}

/**
 * The bench's own check for an external command (bench code does not import test/): as
 * root, installs the Debian package; otherwise says how to.
 */
export function ensureCommand(command: string, pkg: string, searchPaths: string[] = []): string {
  const find = () => {
    for (const dir of searchPaths) if (existsSync(join(dir, command))) return join(dir, command);
    const which = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
    return which.status === 0 ? which.stdout.trim() : undefined;
  };
  const found = find();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `${command} is not installed: install the Debian package '${pkg}' (sudo apt-get install ${pkg})`,
    );
  }
  const apt = (args: string[]) =>
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', ...args], {
      stdio: 'pipe',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 600_000,
    });
  try {
    apt(['install', '-y', '-qq', '--no-install-recommends', pkg]);
  } catch {
    apt(['update', '-qq']);
    apt(['install', '-y', '-qq', '--no-install-recommends', pkg]);
  }
  const installed = find();
  if (!installed) throw new Error(`installed ${pkg} but ${command} is still not found`);
  return installed;
}

export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolvePromise(port));
    });
  });
}

/** A loopback port free for both TCP and UDP (a server listening on both, as Kamailio's anchor does). */
export async function freeTcpUdpPort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const free = await new Promise<boolean>((resolvePromise) => {
      const s = createSocket('udp4');
      s.once('error', () => resolvePromise(false));
      s.bind(port, '127.0.0.1', () => s.close(() => resolvePromise(true)));
    });
    if (free || attempt >= 20) return port;
  }
}

/** Polls until something accepts TCP connections on host:port, or the deadline passes. */
export async function waitForTcp(
  host: string,
  port: number,
  timeoutMs: number,
  alive: () => boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('the process exited before it listened');
    const ok = await new Promise<boolean>((r) => {
      const sock = connect(port, host);
      sock.once('connect', () => {
        sock.destroy();
        r(true);
      });
      sock.once('error', () => r(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs / 1000} s`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const CLOCK_TICKS = (() => {
  const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(out.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** A process and all its descendants, from /proc (Kamailio forks workers; Parley is one process). */
export function processTree(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat) parents.set(Number(entry), stat.ppid);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, ppid] of parents) if (ppid === tree[i]) tree.push(pid);
  }
  return tree.filter((pid) => parents.has(pid));
}

function readProcStat(pid: number): { ppid: number; ticks: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: fields after it start past the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}

function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += readProcStat(pid)?.ticks ?? 0;
  return ticks / CLOCK_TICKS;
}

export function memoryKiB(pids: number[]): { rss: number; pss: number } {
  let rss = 0;
  let pss = 0;
  for (const pid of pids) {
    try {
      rss += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      pss += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch {
      // The process may have exited between listing and reading.
    }
  }
  return { rss, pss };
}

/** Samples CPU time and peak memory of a server's processes while a step runs. */
function startResourceSampler(
  target: SipTarget,
): () => { cpuPercent: number; rssMiB: number; pssMiB: number } {
  const started = process.hrtime.bigint();
  const cpu0 = cpuSeconds(target.pids());
  let peak = memoryKiB(target.pids());
  const timer = setInterval(() => {
    const m = memoryKiB(target.pids());
    peak = { rss: Math.max(peak.rss, m.rss), pss: Math.max(peak.pss, m.pss) };
  }, 250);
  return () => {
    clearInterval(timer);
    const wall = Number(process.hrtime.bigint() - started) / 1e9;
    const used = cpuSeconds(target.pids()) - cpu0;
    const m = memoryKiB(target.pids());
    peak = { rss: Math.max(peak.rss, m.rss), pss: Math.max(peak.pss, m.pss) };
    return {
      cpuPercent: round1((used / wall) * 100),
      rssMiB: round1(peak.rss / 1024),
      pssMiB: round1(peak.pss / 1024),
    };
  };
}

const round1 = (n: number) => Math.round(n * 10) / 10;

/** SIPp injection file: field0 user, field1 auth keyword, field2 domain, field3 extra. */
export function writeInjectionFile(path: string, rows: Array<{ user: string; extra?: string }>): string {
  const lines = ['SEQUENTIAL'];
  for (const r of rows) {
    lines.push(
      `${r.user};[authentication username=${r.user} password=${PASSWORD}];${DOMAIN};${r.extra ?? ''}`,
    );
  }
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

interface SippStats {
  successful: number;
  failed: number;
  seconds: number;
}

/** The last line of SIPp's -trace_stat file, read by column name. */
export function parseSippStats(csv: string): SippStats | undefined {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  if (lines.length < 2) return undefined;
  const header = lines[0].split(';');
  const last = lines[lines.length - 1].split(';');
  const col = (name: string) => last[header.indexOf(name)];
  // Times are "date<TAB>time<TAB>epoch.micros"; the epoch gives sub-second elapsed time.
  const epoch = (v: string | undefined) => Number(v?.split('\t')[2]);
  const seconds = epoch(col('CurrentTime')) - epoch(col('StartTime'));
  const successful = Number(col('SuccessfulCall(C)'));
  const failed = Number(col('FailedCall(C)'));
  if (!Number.isFinite(successful) || !Number.isFinite(seconds)) return undefined;
  return { successful, failed: Number.isFinite(failed) ? failed : 0, seconds };
}

/** p50/p90/p99 of one RTD timer from SIPp's -trace_rtt file ("Date_ms;response_time_ms;rtd_no"). */
export function rttPercentiles(csv: string, timer: string): LatencyPercentiles | undefined {
  const values: number[] = [];
  for (const line of csv.split('\n')) {
    const [, ms, name] = line.split(';');
    if (name?.trim() === timer) values.push(Number(ms));
  }
  if (values.length === 0) return undefined;
  values.sort((a, b) => a - b);
  const at = (q: number) => values[Math.min(values.length - 1, Math.floor(q * values.length))];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), samples: values.length };
}

let sippPath: string | undefined;
function sipp(): string {
  sippPath ??= ensureCommand('sipp', 'sip-tester', ['/usr/bin']);
  return sippPath;
}

export function sippVersion(): string {
  const out = spawnSync(sipp(), ['-v'], { encoding: 'utf8' });
  return /SIPp v[\S]+/.exec(`${out.stdout}${out.stderr}`)?.[0] ?? 'SIPp';
}

/** SIPp refuses (or warns about) more open calls than open files; stay under the limit. */
const CALL_LIMIT = (() => {
  const out = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' });
  const n = Number(out.stdout?.trim());
  return Number.isFinite(n) && n > 2_000 ? Math.min(40_000, n - 1_000) : 1_000;
})();

/** SIPp's UDP socket buffers (-buff_size; the kernel caps them at net.core.rmem_max and wmem_max). */
const SIPP_UDP_BUFFER = 4 * 1024 * 1024;

export interface SippRunOptions {
  target: Pick<SipTarget, 'host' | 'port' | 'udpPort'>;
  /** SIPp's transport: one TCP connection (default) or one UDP socket. */
  transport?: 'tcp' | 'udp';
  scenario: string;
  injection: string;
  calls: number;
  rate: number;
  dir: string;
  timeoutSeconds: number;
  /** Open calls at most (-l); default CALL_LIMIT. */
  callLimit?: number;
  /** Leave out -recv_timeout (scenarios whose waits set their own timeouts). */
  noRecvTimeout?: boolean;
  /** Digest uri (SIPp -auth_uri): through a load balancer it must be the Request-URI's. */
  authUri?: string;
  /** SIPp's own address (-i), default 127.0.0.1: servers that trust 127.0.0.1 as their edge need another. */
  localIp?: string;
  extra?: string[];
}

export interface SippRun {
  exit: number;
  stats?: SippStats;
  rtt: string;
  counts?: string;
  /** What SIPp printed last: why it stopped. */
  tail: string;
  /** SIPp's -trace_err log: why calls failed. */
  errors: string;
}

/** Runs one SIPp UAC to completion: every target is loopback, every run has -m and a timeout. */
export async function runSipp(o: SippRunOptions): Promise<SippRun> {
  // A fresh folder: SIPp names its logs by pid, and a stale _rtt.csv of an earlier run in the
  // same folder (the archive bench reuses step names per engine) would be read as this one's.
  rmSync(o.dir, { recursive: true, force: true });
  mkdirSync(o.dir, { recursive: true });
  const localPort = await freePort();
  const udp = o.transport === 'udp';
  const args = [
    `${o.target.host}:${udp ? o.target.udpPort : o.target.port}`,
    ...['-sf', o.scenario, '-inf', o.injection, '-t', udp ? 'u1' : 't1', '-i', o.localIp ?? '127.0.0.1'],
    ...['-p', String(localPort)],
    ...['-m', String(o.calls), '-r', String(o.rate), '-l', String(o.callLimit ?? CALL_LIMIT)],
    ...(o.noRecvTimeout ? [] : ['-recv_timeout', '5000']),
    // SIPp's UDP socket otherwise keeps its 64 KiB buffers: a burst of responses overflows
    // it, the responses are dropped and SIPp retransmits requests the server answered
    // (load the server did not cause, and the same for every server measured).
    ...(udp ? ['-buff_size', String(SIPP_UDP_BUFFER)] : []),
    ...['-timeout', `${o.timeoutSeconds}s`, '-timeout_error', '-nostdin'],
    ...[
      '-trace_stat',
      '-stf',
      join(o.dir, 'stat.csv'),
      '-fd',
      '1',
      '-trace_rtt',
      '-rtt_freq',
      '1000',
      '-trace_err',
    ],
    ...(o.authUri ? ['-auth_uri', o.authUri] : []),
    ...(o.extra ?? []),
  ];
  const child = spawnTracked(sipp(), args, { cwd: o.dir });
  const tail = captureTail(child);
  const exit = await waitForExit(child, (o.timeoutSeconds + 15) * 1_000);
  const statPath = join(o.dir, 'stat.csv');
  const stats = existsSync(statPath) ? parseSippStats(readFileSync(statPath, 'utf8')) : undefined;
  const files = readdirSync(o.dir);
  const read = (suffix: string) => {
    const f = files.find((name) => name.endsWith(suffix));
    return f ? readFileSync(join(o.dir, f), 'utf8') : undefined;
  };
  return {
    exit,
    stats,
    rtt: read('_rtt.csv') ?? '',
    counts: read('_counts.csv'),
    tail: tail(),
    errors: read('_errors.log') ?? '',
  };
}

/** The last meaningful lines SIPp printed (errors, not the screen's frame). */
function sippError(tail: string): string {
  const lines = tail
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /error|broken|refused|closed|unable|cannot|fatal|timeout/i.test(l) && !/^-+|^\|/.test(l));
  return lines.slice(-3).join(' | ') || 'no error text from SIPp';
}

/** Calls of one of `lanes` SIPp processes: an even share, the first ones taking the remainder. */
export function laneShare(calls: number, lanes: number, lane: number): number {
  return Math.floor(calls / lanes) + (lane < calls % lanes ? 1 : 0);
}

/** What SIPp processes run side by side for one step did together. */
export interface SummedSippRuns {
  successful: number;
  /** Failed calls, and calls that never completed (the planned count less the successful). */
  failed: number;
  /** The longest of the runs: the step lasted until its last SIPp was done. */
  seconds: number;
  achievedRate: number;
  latency?: LatencyPercentiles;
  /** SIPp's exit status: the first that is neither 0 nor 1 (SIPp's own trouble), else the highest. */
  exit: number;
  error?: string;
}

/** Sums SIPp runs of one step (`calls` planned over all of them); latency over every sample. */
export function sumSippRuns(runs: SippRun[], calls: number, rtdTimer: string): SummedSippRuns {
  const successful = runs.reduce((n, r) => n + (r.stats?.successful ?? 0), 0);
  const failed = Math.max(
    runs.reduce((n, r) => n + (r.stats?.failed ?? 0), 0),
    calls - successful,
  );
  const seconds = Math.max(0, ...runs.map((r) => r.stats?.seconds ?? 0));
  const odd = runs.find((r) => r.exit !== 0 && r.exit !== 1);
  const exit = odd ? odd.exit : Math.max(0, ...runs.map((r) => r.exit));
  const troubled = runs.filter((r) => r.exit !== 0);
  const summed: SummedSippRuns = {
    successful,
    failed,
    seconds,
    achievedRate: seconds > 0 ? Math.round(successful / seconds) : 0,
    latency: rttPercentiles(runs.map((r) => r.rtt).join('\n'), rtdTimer),
    exit,
  };
  if (failed > 0 || odd)
    summed.error =
      troubled.map((r) => `SIPp exit ${r.exit}: ${sippError(r.tail)}`).join('; ') || 'calls missing';
  return summed;
}

export interface WorkloadSetup {
  scenario: string;
  injection: string;
  /** One injection file per SIPp when a step runs several (SipBenchOptions.sipps), else `injection`. */
  injections?: string[];
  rtdTimer: string;
  /** SIPp's own address (SippRunOptions.localIp). */
  localIp?: string;
  /** Digest uri (SippRunOptions.authUri). */
  authUri?: string;
  transport?: 'tcp' | 'udp';
}

/**
 * One workload's ramp against one server: each rate for `duration` seconds; stops at the
 * first step with a failure, or when the server no longer keeps up (achieved < 90% of the
 * target: higher targets only queue more calls).
 */
export async function rampWorkload(
  target: SipTarget,
  workload: Workload,
  setup: WorkloadSetup,
  opts: SipBenchOptions,
  workDir: string,
): Promise<WorkloadRun> {
  const lanes = setup.transport === 'udp' ? 1 : Math.max(1, opts.sipps ?? 1);
  const runStep = async (rate: number): Promise<RateStep> => {
    const calls = Math.max(1, Math.round(rate * opts.duration));
    const sample = startResourceSampler(target);
    const udpBefore = setup.transport === 'udp' ? udpErrorCounts(target.udpPort) : undefined;
    const runs = await Promise.all(
      Array.from({ length: lanes }, (_, lane) =>
        runSipp({
          target,
          scenario: setup.scenario,
          injection: setup.injections?.[lane] ?? setup.injection,
          calls: laneShare(calls, lanes, lane),
          rate: rate / lanes,
          dir: join(workDir, `${target.name}-${workload}-${rate}${lanes > 1 ? `-${lane + 1}` : ''}`),
          timeoutSeconds: Math.ceil(opts.duration * 3 + 20),
          localIp: setup.localIp,
          authUri: setup.authUri,
          transport: setup.transport,
        }),
      ),
    );
    const resources = sample();
    const run = sumSippRuns(runs, calls, setup.rtdTimer);
    const { successful, failed, seconds } = run;
    const step: RateStep = {
      targetRate: rate,
      calls,
      successful,
      failed,
      seconds: Math.round(seconds * 100) / 100,
      achievedRate: run.achievedRate,
      latency: run.latency,
      ...resources,
      sippExit: run.exit,
    };
    if (udpBefore) {
      const after = udpErrorCounts(target.udpPort);
      step.udpDrops = {
        rcvbuf: after.rcvbuf - udpBefore.rcvbuf,
        sndbuf: after.sndbuf - udpBefore.sndbuf,
        server: after.server - udpBefore.server,
      };
    }
    if (run.error) step.error = run.error;
    opts.log(
      `  ${target.name} ${workload} @ ${rate}/s: ${step.achievedRate}/s, ${successful} ok, ${failed} failed` +
        (step.latency ? `, p50 ${step.latency.p50} ms p99 ${step.latency.p99} ms` : '') +
        `, CPU ${step.cpuPercent}%, RSS ${step.rssMiB} MiB` +
        (step.udpDrops
          ? `, UDP drops ${step.udpDrops.rcvbuf} rcvbuf (${step.udpDrops.server} at the server's socket) ${step.udpDrops.sndbuf} sndbuf`
          : '') +
        (step.error ? ` (${step.error})` : ''),
    );
    return step;
  };
  const ramp = await rampRates(opts.rates, runStep, { sustainedStep: opts.sustainedStep !== false });
  const end = memoryKiB(target.pids());
  const run = {
    server: target.name,
    ...ramp,
    endRssMiB: round1(end.rss / 1024),
    endPssMiB: round1(end.pss / 1024),
  };
  opts.log(`  ${target.name} ${workload}: at the end RSS ${run.endRssMiB} MiB, PSS ${run.endPssMiB} MiB`);
  return run;
}

/**
 * The kernel's UDP buffer-overflow counters (/proc/net/snmp), machine-wide, and the drops of
 * the sockets bound to `port` (the server's; /proc/net/udp and udp6, last column).
 */
function udpErrorCounts(port?: number): { rcvbuf: number; sndbuf: number; server: number } {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp: '));
  const names = lines[0]?.split(' ') ?? [];
  const values = lines[1]?.split(' ').map(Number) ?? [];
  const get = (name: string) => values[names.indexOf(name)] ?? 0;
  let server = 0;
  if (port !== undefined) {
    const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
      if (!existsSync(file)) continue;
      for (const row of readFileSync(file, 'utf8').split('\n').slice(1)) {
        const cols = row.trim().split(/\s+/);
        if (cols[1]?.endsWith(hexPort)) server += Number(cols[cols.length - 1]) || 0;
      }
    }
  }
  return { rcvbuf: get('RcvbufErrors'), sndbuf: get('SndbufErrors'), server };
}

/** What a ramp needs of a step, whatever else a suite measures in it. */
export interface RampStep {
  targetRate: number;
  achievedRate: number;
  failed: number;
  error?: string;
}

export interface RampResult<S extends RampStep> {
  steps: S[];
  /** The fastest step with no failure. */
  best?: S;
  /** The last clean step that kept up with its target: its latency is not queueing time. */
  sustained?: S;
  failedAtLowestRate: boolean;
}

/**
 * A rate ramp, for every suite: each rate in turn, stopping at the first step with a
 * failure or once the server no longer keeps up (achieved < 90% of the target: higher
 * targets only queue more calls). Latency at saturation is queueing time; when no clean
 * step kept up, one more step at 70% of the best rate gives the latency of a load the
 * server sustains.
 */
export async function rampRates<S extends RampStep>(
  rates: number[],
  runStep: (rate: number) => Promise<S>,
  opts: { sustainedStep?: boolean } = {},
): Promise<RampResult<S>> {
  const steps: S[] = [];
  for (const rate of rates) {
    const step = await runStep(rate);
    steps.push(step);
    if (step.failed > 0 || step.error || !keptUp(step)) break;
  }
  const clean = steps.filter((s) => s.failed === 0 && !s.error);
  const best = clean.reduce<S | undefined>(
    (a, s) => (!a || s.achievedRate > a.achievedRate ? s : a),
    undefined,
  );
  let sustained = [...clean].reverse().find(keptUp);
  if (!sustained && best && opts.sustainedStep !== false) {
    const step = await runStep(Math.max(100, Math.round((best.achievedRate * 0.7) / 100) * 100));
    steps.push(step);
    if (step.failed === 0 && !step.error && keptUp(step)) sustained = step;
  }
  return { steps, best, sustained, failedAtLowestRate: steps.length > 0 && clean.length === 0 };
}

/** The server kept up with the target: higher targets may still go faster. */
const keptUp = (s: RampStep) => s.achievedRate >= s.targetRate * 0.9;

/** Starts a SIPp UAS that answers MESSAGE, then registers bob with a contact at it. */
async function prepareMessageWorkload(
  target: SipTarget,
  workDir: string,
  opts: SipBenchOptions,
): Promise<{ setup: WorkloadSetup; stop(): Promise<void> }> {
  const uasPort = await freePort();
  const uas = spawnTracked(
    sipp(),
    [
      '-sf',
      join(SCENARIOS, 'uas-message.xml'),
      '-t',
      't1',
      '-i',
      '127.0.0.1',
      '-p',
      String(uasPort),
      '-nostdin',
      '-timeout',
      `${Math.ceil(opts.duration * opts.rates.length * 4 + 120)}s`,
    ],
    { cwd: workDir },
  );
  const uasTail = captureTail(uas);
  const stop = async () => {
    uas.kill('SIGTERM');
    await waitForExit(uas, 3_000);
  };
  try {
    await waitForTcp('127.0.0.1', uasPort, 10_000, () => uas.exitCode === null);
    const bob = writeInjectionFile(join(workDir, `${target.name}-bob.csv`), [
      { user: 'bob', extra: `127.0.0.1:${uasPort}` },
    ]);
    const reg = await runSipp({
      target,
      scenario: join(SCENARIOS, 'register-contact.xml'),
      injection: bob,
      calls: 1,
      rate: 1,
      dir: join(workDir, `${target.name}-register-bob`),
      timeoutSeconds: 20,
    });
    if (reg.exit !== 0)
      throw new Error(
        `registering bob at ${target.name} failed (SIPp exit ${reg.exit}): ${sippError(reg.tail)}`,
      );
  } catch (err) {
    await stop();
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`${why}${uas.exitCode !== null ? ` (UAS: ${sippError(uasTail())})` : ''}`);
  }
  const alice = writeInjectionFile(join(workDir, 'alice.csv'), [{ user: 'alice', extra: 'bob' }]);
  return {
    setup: { scenario: join(SCENARIOS, 'uac-message.xml'), injection: alice, rtdTimer: 'message' },
    stop,
  };
}

/** Runs every workload against every target, interleaved so background load hits both alike. */
export async function measureTargets(
  targets: SipTarget[],
  opts: SipBenchOptions,
  workDir: string,
): Promise<Record<Workload, WorkloadRun[]>> {
  const users = writeInjectionFile(
    join(workDir, 'users.csv'),
    Array.from({ length: opts.users }, (_, i) => ({ user: `user${i}` })),
  );
  // Several SIPps register users of their own: user i goes to lane i mod N.
  const lanes = Math.max(1, opts.sipps ?? 1);
  const userLanes =
    lanes > 1
      ? Array.from({ length: lanes }, (_, lane) =>
          writeInjectionFile(
            join(workDir, `users-${lane + 1}.csv`),
            Array.from({ length: Math.ceil((opts.users - lane) / lanes) }, (_, i) => ({
              user: `user${i * lanes + lane}`,
            })),
          ),
        )
      : undefined;
  const result = { register: [], message: [], 'register-udp': [], 'message-udp': [] } as Record<
    Workload,
    WorkloadRun[]
  >;
  for (const workload of opts.workloads) {
    opts.log(`${WORKLOAD_LABELS[workload]}: rates ${opts.rates.join(', ')}/s, ${opts.duration} s each`);
    const transport = UDP_WORKLOADS.has(workload) ? 'udp' : 'tcp';
    for (const target of targets) {
      if (transport === 'udp' && !target.udpPort) {
        opts.log(`  ${target.name}: no UDP listener, skipped`);
        continue;
      }
      if (workload === 'register' || workload === 'register-udp') {
        const setup = {
          scenario: join(SCENARIOS, 'register-auth.xml'),
          injection: users,
          injections: userLanes,
          rtdTimer: 'register',
          transport,
        } as const;
        result[workload].push(await rampWorkload(target, workload, setup, opts, workDir));
      } else {
        // bob's UAS is registered and reached over TCP either way; alice's side is the one measured.
        const prepared = await prepareMessageWorkload(target, workDir, opts);
        try {
          result[workload].push(
            await rampWorkload(target, workload, { ...prepared.setup, transport }, opts, workDir),
          );
        } finally {
          await prepared.stop();
        }
      }
    }
  }
  return result;
}

export interface ParleyServerOptions {
  users: number;
  /** server.workers (default 1: one process). */
  workers?: number;
  /** Folder for a V8 CPU profile of the server (node --cpu-prof), written when it stops. */
  cpuProfileDir?: string;
  log: (line: string) => void;
}

/**
 * Creates user0..user(N-1) plus alice and bob (password "secret", realm example.com) in a
 * fresh data folder: set-based INSERTs in batches, HA1s computed here (RFC 7616 3.4.2).
 */
export async function seedParleyUsers(dataDir: string, count: number): Promise<void> {
  const db = await openDatabase({ dataDir });
  try {
    await seedUsers(
      db,
      benchUsers(['alice', 'bob', ...Array.from({ length: count }, (_, i) => `user${i}`)]),
      DOMAIN,
    );
  } finally {
    await db.close();
  }
}

/** name@example.com with password "secret", both HA1s, for `seedUsers` (src/store/seed.ts). */
export function benchUsers(names: string[], domain = DOMAIN): SeedUser[] {
  return names.map((n) => ({
    aor: `${n}@${domain}`,
    displayName: n,
    ...computeHa1Pair(n, domain, PASSWORD),
  }));
}

/**
 * Starts the built CLI (`node bin/run.js server start`) as a child on ephemeral loopback
 * ports, reads the ports it printed, and waits for /health.
 */
export async function startParley(opts: ParleyServerOptions): Promise<SipTarget> {
  const cli = join(REPO_ROOT, 'bin', 'run.js');
  if (!existsSync(join(REPO_ROOT, 'dist', 'commands', 'server', 'start.js'))) {
    throw new Error('the CLI is not built: run `npm run build` first');
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'parley-bench-data-'));
  const seeded = Date.now();
  await seedParleyUsers(dataDir, opts.users);
  opts.log(`parley: ${opts.users + 2} users created in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);
  const nodeFlags = opts.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfileDir] : [];
  nodeFlags.push(...(process.env.PARLEY_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean));
  const child = spawnTracked(
    process.execPath,
    [
      ...nodeFlags,
      cli,
      'server',
      'start',
      '--domain',
      DOMAIN,
      '--config',
      writeUdpConfig(dataDir, opts.workers ?? 1),
      '--data-dir',
      dataDir,
      '--tcp',
      '127.0.0.1:0',
      '--ws',
      '127.0.0.1:0',
      '--http',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ],
    { cwd: dataDir },
  );
  const tail = captureTail(child, 16_384);
  const outFile = process.env.PARLEY_BENCH_SERVER_OUT;
  if (outFile) child.stdout?.on('data', (d: Buffer) => appendFileSync(outFile, d));
  const stop = async () => {
    // SIGINT: the server closes its store and node writes the CPU profile on a clean exit.
    if (child.exitCode === null) child.kill('SIGINT');
    await waitForExit(child, 20_000);
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const { sipPort, udpPort, httpUrl } = await readParleyAddresses(child, tail, 120_000);
    await waitForHealth(httpUrl, 60_000, () => child.exitCode === null);
    const pid = child.pid ?? 0;
    return {
      name: 'parley',
      version: parleyVersion(),
      host: '127.0.0.1',
      port: sipPort,
      udpPort,
      pids: () => processTree(pid),
      stop,
    };
  } catch (err) {
    await stop();
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`Parley did not start: ${why}\n${tail().trim().split('\n').slice(-15).join('\n')}`);
  }
}

/** The flags set TCP and WebSocket; the file adds UDP (listen keys merge across layers) and the workers. */
function writeUdpConfig(dataDir: string, workers: number): string {
  const file = join(dataDir, 'parley-bench.yaml');
  writeFileSync(file, `listen:\n  udp: 127.0.0.1:0\nserver:\n  workers: ${workers}\n`);
  return file;
}

function parleyVersion(): string {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  return `Parley ${pkg.version} (Node ${process.versions.node})`;
}

/**
 * `server start` prints "SIP   tcp://host:port" and "HTTP  http://host:port/metrics ..." once
 * listening (on stderr, apart from the logs on stdout; either is read).
 */
function readParleyAddresses(
  child: ChildProcess,
  tail: () => string,
  timeoutMs: number,
): Promise<{ sipPort: number; udpPort?: number; httpUrl: string }> {
  return new Promise((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(
      () => finish(new Error(`no listening addresses printed after ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      out += d.toString();
      const sip = /SIP\s+tcp:\/\/[^\s]+:(\d+)/.exec(out);
      const http = /HTTP\s+(http:\/\/[^\s/]+)\//.exec(out);
      const udp = /SIP\s+udp:\/\/[^\s]+:(\d+)/.exec(out);
      if (sip && http)
        finish(undefined, {
          sipPort: Number(sip[1]),
          udpPort: udp ? Number(udp[1]) : undefined,
          httpUrl: http[1],
        });
    };
    const onExit = (code: number | null) =>
      finish(new Error(`the server exited with code ${code}: ${tail().trim().slice(-2000)}`));
    const finish = (err?: Error, value?: { sipPort: number; udpPort?: number; httpUrl: string }) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else if (value) resolvePromise(value);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
  });
}

async function waitForHealth(httpUrl: string, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('the server exited while starting');
    try {
      const res = await fetch(`${httpUrl}/health`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(200);
  }
  throw new Error(`${httpUrl}/health not ok after ${timeoutMs / 1000} s (${last})`);
}

export interface ProfileHotSpot {
  function: string;
  /** file:line relative to the checkout (or a node: / native frame). */
  location: string;
  selfMs: number;
  selfPercent: number;
}

export interface ProfileSummary {
  file: string;
  /** Sampled time the server was busy (waiting for I/O, "(idle)", left out). */
  totalMs: number;
  functions: ProfileHotSpot[];
  files: Array<{ file: string; selfMs: number; selfPercent: number }>;
  /** Parley's own functions (src/) by total time, callees included. */
  inclusive: Array<{ function: string; location: string; totalMs: number; totalPercent: number }>;
}

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

/** Pseudo-frames that are not work: the thread waiting for I/O. */
const NOT_WORK = new Set(['(idle)']);

/** Self time per function and per file from a V8 .cpuprofile (samples x time deltas). */
export function summariseCpuProfile(path: string, top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as {
    nodes: CpuProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const fns = new Map<string, { function: string; location: string; us: number }>();
  const files = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node || NOT_WORK.has(node.callFrame.functionName)) continue;
    total += us;
    const frame = node.callFrame;
    const source = frame.url ? sourceLocation(frame.url, frame.lineNumber, frame.columnNumber) : undefined;
    const file = source?.file || `(${frame.functionName || 'native'})`;
    const location = source ? `${source.file}:${source.line}` : file;
    const name = frame.functionName || '(anonymous)';
    const key = `${name}@${location}`;
    const entry = fns.get(key) ?? { function: name, location, us: 0 };
    entry.us += us;
    fns.set(key, entry);
    files.set(file, (files.get(file) ?? 0) + us);
  }
  // Total (inclusive) time of Parley's own functions: which code path leads to the cost.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, { function: string; location: string; us: number }>();
  for (const [id, us] of selfUs) {
    if (NOT_WORK.has(byId.get(id)?.callFrame.functionName ?? '')) continue;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame?.url.startsWith('file://')) continue;
      const source = sourceLocation(frame.url, frame.lineNumber, frame.columnNumber);
      if (!source.file.startsWith('src/')) continue;
      const key = `${frame.functionName}@${source.file}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const entry = inclusive.get(key) ?? {
        function: frame.functionName || '(anonymous)',
        location: `${source.file}:${source.line}`,
        us: 0,
      };
      entry.us += us;
      inclusive.set(key, entry);
    }
  }
  const pct = (us: number) => round1((us / Math.max(total, 1)) * 100);
  return {
    file: path,
    totalMs: Math.round(total / 1000),
    functions: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({
        function: f.function,
        location: f.location,
        selfMs: Math.round(f.us / 1000),
        selfPercent: pct(f.us),
      })),
    files: [...files.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([file, us]) => ({ file, selfMs: Math.round(us / 1000), selfPercent: pct(us) })),
    inclusive: [...inclusive.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({
        function: f.function,
        location: f.location,
        totalMs: Math.round(f.us / 1000),
        totalPercent: pct(f.us),
      })),
  };
}

const sourceMaps = new Map<string, SourceMap | undefined>();

/**
 * file:line of a profile frame, mapped through the compiled file's source map back to the
 * TypeScript (dist/src/sip/parser.js:92 -> src/sip/parser.ts:118) so the hot spots name
 * the lines to change.
 */
function sourceLocation(url: string, line0: number, column0: number): { file: string; line: number } {
  if (!url.startsWith('file://')) return { file: url, line: line0 + 1 };
  const path = fileURLToPath(url);
  const shown = (p: string) => (p.startsWith(REPO_ROOT) ? relative(REPO_ROOT, p) : p);
  if (!sourceMaps.has(path)) {
    let map: SourceMap | undefined;
    try {
      if (existsSync(`${path}.map`)) map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')));
    } catch {
      map = undefined;
    }
    sourceMaps.set(path, map);
  }
  const entry = sourceMaps.get(path)?.findEntry(line0, column0) as
    | { originalSource?: string; originalLine?: number }
    | undefined;
  if (entry?.originalSource && entry.originalLine !== undefined) {
    const original = entry.originalSource.startsWith('file://')
      ? fileURLToPath(entry.originalSource)
      : resolve(dirname(path), entry.originalSource);
    return { file: shown(original), line: entry.originalLine + 1 };
  }
  return { file: shown(path), line: line0 + 1 };
}

/**
 * The server's .cpuprofile in a folder: the largest, since `parley server start` runs the
 * server in a child node and its launcher writes a small profile of its own.
 */
export function serverCpuProfile(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).size - statSync(a).size);
  return files[0];
}

export function machineInfo(): {
  cpus: number;
  cpuModel: string;
  loadAverage: number[];
  node: string;
  sipp: string;
} {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
    loadAverage: loadavg().map((l) => round1(l)),
    node: process.versions.node,
    sipp: sippVersion(),
  };
}
