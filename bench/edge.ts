/**
 * `npm run bench -- --edge`: what the edge costs. Two organisations on loopback, each a home
 * (a standard server) and an edge, every server the built CLI as its own process:
 *
 * - TLS REGISTER with digest per second through edge A (SIPp -> TLS -> edge -> home A),
 *   beside the same workload straight to home A's TLS listener;
 * - MESSAGE per second from alice@example.com (at home A) to bob@partner.test (at home B)
 *   through both edges over mutual TLS, beside alice -> bob@example.com inside home A.
 *
 * Debian's SIPp has no TLS: it speaks TCP to socat, which opens the TLS connection
 * (test/support/sipp.ts startTlsTunnel), for both the edge and the direct runs.
 * See bench/README.md.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FederationRepository } from '../src/store/federation.js';
import { openDatabase } from '../src/store/open.js';
import { seedUsers as seedStoreUsers } from '../src/store/seed.js';
import { TestDnsServer } from '../test-kit/dns.js';
import { startTlsTunnel, type TlsTunnel } from '../test-kit/tls-tunnel.js';
import {
  benchUsers,
  captureTail,
  DOMAIN,
  freePort,
  machineInfo,
  PASSWORD,
  processTree,
  REPO_ROOT,
  rampWorkload,
  runSipp,
  SCENARIOS,
  type SipTarget,
  seedParleyUsers,
  sleep,
  spawnTracked,
  WORKLOAD_LABELS,
  type Workload,
  type WorkloadRun,
  type WorkloadSetup,
  waitForExit,
  writeInjectionFile,
} from './sip.js';

/** Each server is a Node process and SIPp and socat share the same cores: lower than the SIP suite's. */
export const EDGE_RATES = [500, 1_000, 2_000, 4_000, 8_000];
const PARTNER = 'partner.test';
/** Inside clients connect from here: the homes trust 127.0.0.1, where their edge connects from. */
const INSIDE_IP = '127.0.0.2';
const pki = (name: string) => join(REPO_ROOT, 'fixtures', 'pki', name);

export interface EdgeWorkloadRow {
  workload: Workload;
  label: string;
  /** Through the edge (REGISTER) or through both edges (MESSAGE). */
  edge: WorkloadRun;
  /** The same workload straight to the home. */
  direct: WorkloadRun;
  /** Best rate through the edge(s) over the direct best rate. */
  ratio?: number;
}

export interface EdgeSuiteResult {
  machine: ReturnType<typeof machineInfo>;
  users: number;
  rates: number[];
  duration: number;
  workloads: EdgeWorkloadRow[];
  failures: string[];
}

export interface EdgeBenchOptions {
  users: number;
  rates?: number[];
  duration?: number;
  workloads: Workload[];
  log: (line: string) => void;
}

interface ServerProcess {
  child: ChildProcess;
  pids(): number[];
  stop(): Promise<void>;
}

interface Org {
  domain: string;
  home: ServerProcess;
  edge: ServerProcess;
  homeTcp: number;
  homeTls: number;
  edgeTls: number;
  federation: number;
}

export async function benchEdge(opts: EdgeBenchOptions): Promise<EdgeSuiteResult> {
  const rates = opts.rates ?? EDGE_RATES;
  const duration = opts.duration ?? 5;
  const log = opts.log;
  const suite: EdgeSuiteResult = {
    machine: machineInfo(),
    users: opts.users,
    rates,
    duration,
    workloads: [],
    failures: [],
  };
  log(
    `machine: ${suite.machine.cpus} CPUs (${suite.machine.cpuModel}), load ${suite.machine.loadAverage.join(' ')}, Node ${suite.machine.node}, ${suite.machine.sipp}`,
  );
  const workDir = mkdtempSync(join(tmpdir(), 'parley-bench-edge-'));
  const stops: Array<() => Promise<void> | void> = [];
  try {
    const dns = await TestDnsServer.start([]);
    stops.push(() => dns.close());
    const a = await startOrg(DOMAIN, 'server', 'edge.parley.test', PARTNER, opts.users, dns, workDir, log);
    stops.push(() => stopOrg(a));
    const b = await startOrg(PARTNER, 'partner-edge', 'edge.partner.test', DOMAIN, 0, dns, workDir, log);
    stops.push(() => stopOrg(b));
    for (const [org, target] of [
      [a, 'edge.parley.test'],
      [b, 'edge.partner.test'],
    ] as const) {
      dns.zone.push(
        {
          type: 'SRV',
          name: `_sipfederationtls._tcp.${org.domain}`,
          priority: 0,
          weight: 0,
          port: org.federation,
          target,
        },
        { type: 'A', name: target, address: '127.0.0.1' },
      );
    }
    const sipOpts = { users: opts.users, rates, duration, workloads: opts.workloads, log };
    for (const workload of opts.workloads) {
      log(`${WORKLOAD_LABELS[workload]}: rates ${rates.join(', ')}/s, ${duration} s each`);
      const row =
        workload === 'register'
          ? await registerRow(a, opts.users, sipOpts, workDir, stops)
          : await messageRow(a, b, sipOpts, workDir);
      if (row.edge.best && row.direct.best)
        row.ratio = Math.round((row.edge.best.achievedRate / row.direct.best.achievedRate) * 100) / 100;
      for (const run of [row.edge, row.direct]) {
        if (run.failedAtLowestRate) {
          const first = run.steps[0];
          suite.failures.push(
            `${run.server} ${workload}: ${first.failed} failed calls at the lowest rate (${first.targetRate}/s)${first.error ? `: ${first.error}` : ''}`,
          );
        }
      }
      suite.workloads.push(row);
    }
  } finally {
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => undefined);
    if (!process.env.PARLEY_BENCH_KEEP) rmSync(workDir, { recursive: true, force: true });
    else log(`kept ${workDir}`);
  }
  return suite;
}

/** REGISTER with digest over TLS: through edge A, and straight to home A's TLS listener. */
async function registerRow(
  a: Org,
  users: number,
  sipOpts: Parameters<typeof rampWorkload>[3],
  workDir: string,
  stops: Array<() => Promise<void> | void>,
): Promise<EdgeWorkloadRow> {
  const injection = writeInjectionFile(
    join(workDir, 'users.csv'),
    Array.from({ length: users }, (_, i) => ({ user: `user${i}` })),
  );
  const setup: WorkloadSetup = {
    scenario: join(SCENARIOS, 'register-auth.xml'),
    injection,
    rtdTimer: 'register',
    // SIPp's digest uri would name the tunnel it sent to, which the home does not know as its own.
    authUri: DOMAIN,
  };
  const ca = { ca: pki('ca.crt') };
  const viaEdge = await startTlsTunnel({ host: '127.0.0.1', port: a.edgeTls, name: 'edge.parley.test' }, ca);
  stops.push(() => viaEdge.stop());
  // Straight to the home from another address than the edge's, so it is not taken for its edge.
  const direct = await startTlsTunnel(
    { host: '127.0.0.1', port: a.homeTls, name: 'edge.parley.test' },
    ca,
    INSIDE_IP,
  );
  stops.push(() => direct.stop());
  const edge = await rampWorkload(
    tunnelTarget('via edge', viaEdge, () => [...a.edge.pids(), ...a.home.pids()]),
    'register',
    setup,
    sipOpts,
    workDir,
  );
  const straight = await rampWorkload(
    tunnelTarget('direct', direct, () => a.home.pids()),
    'register',
    setup,
    sipOpts,
    workDir,
  );
  return { workload: 'register', label: 'REGISTER with digest', edge, direct: straight };
}

/**
 * MESSAGE from alice at home A to bob at home B through both edges, and to bob at home A.
 * Alice's SIPp connects to home A over TCP from INSIDE_IP; each bob is a SIPp UAS there.
 */
async function messageRow(
  a: Org,
  b: Org,
  sipOpts: Parameters<typeof rampWorkload>[3],
  workDir: string,
): Promise<EdgeWorkloadRow> {
  // uac-message.xml with a whole address in field3 (another domain than alice's).
  const scenario = join(workDir, 'uac-message-to.xml');
  writeFileSync(
    scenario,
    readFileSync(join(SCENARIOS, 'uac-message.xml'), 'utf8').replaceAll('[field3]@[field2]', '[field3]'),
  );
  const run = async (name: string, bob: Org, pids: () => number[]) => {
    const uas = await startBob(bob, workDir, sipOpts.duration * sipOpts.rates.length * 4 + 120);
    try {
      const alice = writeInjectionFile(join(workDir, `alice-${name}.csv`), [
        { user: 'alice', extra: `bob@${bob.domain}` },
      ]);
      const target: SipTarget = {
        name,
        version: '',
        host: '127.0.0.1',
        port: a.homeTcp,
        pids,
        stop: async () => undefined,
      };
      const setup: WorkloadSetup = { scenario, injection: alice, rtdTimer: 'message', localIp: INSIDE_IP };
      return await rampWorkload(target, 'message', setup, sipOpts, workDir);
    } finally {
      await uas();
    }
  };
  const edge = await run('via edges', b, () => [
    ...a.home.pids(),
    ...a.edge.pids(),
    ...b.edge.pids(),
    ...b.home.pids(),
  ]);
  const direct = await run('direct', a, () => a.home.pids());
  return { workload: 'message', label: 'MESSAGE alice -> bob', edge, direct };
}

function tunnelTarget(name: string, tunnel: TlsTunnel, pids: () => number[]): SipTarget {
  return { name, version: '', host: '127.0.0.1', port: tunnel.port, pids, stop: async () => undefined };
}

/** A SIPp UAS answering MESSAGE at INSIDE_IP, registered as bob at the org's home; returns its stop. */
async function startBob(org: Org, workDir: string, seconds: number): Promise<() => Promise<void>> {
  const port = await freePort();
  const uas = spawnTracked(
    sippCommand(),
    [
      ...['-sf', join(SCENARIOS, 'uas-message.xml'), '-t', 't1', '-i', INSIDE_IP, '-p', String(port)],
      ...['-nostdin', '-timeout', `${Math.ceil(seconds)}s`],
    ],
    { cwd: workDir },
  );
  const stop = async () => {
    uas.kill('SIGTERM');
    await waitForExit(uas, 3_000);
  };
  await sleep(300);
  const injection = join(workDir, `bob-${org.domain}.csv`);
  writeFileSync(
    injection,
    `SEQUENTIAL\nbob;[authentication username=bob password=${PASSWORD}];${org.domain};${INSIDE_IP}:${port}\n`,
  );
  const reg = await runSipp({
    target: { host: '127.0.0.1', port: org.homeTcp },
    scenario: join(SCENARIOS, 'register-contact.xml'),
    injection,
    calls: 1,
    rate: 1,
    dir: join(workDir, `register-bob-${org.domain}`),
    timeoutSeconds: 20,
    localIp: INSIDE_IP,
  });
  if (reg.exit !== 0) {
    await stop();
    throw new Error(
      `registering bob at ${org.domain} failed (SIPp exit ${reg.exit}): ${reg.tail.slice(-500)}`,
    );
  }
  return stop;
}

function sippCommand(): string {
  return spawnSync('sh', ['-c', 'command -v sipp'], { encoding: 'utf8' }).stdout.trim() || 'sipp';
}

/**
 * One organisation: a home (users seeded, trusting 127.0.0.1, other domains to its edge) and
 * an edge with the given certificate, allowing `partner`; rate limits out of the way (one
 * SIPp address carries every user).
 */
async function startOrg(
  domain: string,
  cert: string,
  edgeName: string,
  partner: string,
  users: number,
  dns: TestDnsServer,
  workDir: string,
  log: (line: string) => void,
): Promise<Org> {
  const [homeTcp, homeTls, homeHttp, edgeTls, federation, internal, edgeHttp] = await Promise.all(
    Array.from({ length: 7 }, () => freePort()),
  );
  const tls = { cert: pki(`${cert}.crt`), key: pki(`${cert}.key`), ca: pki('ca.crt') };
  const homeDir = join(workDir, `home-${domain}`);
  if (domain === DOMAIN) await seedParleyUsers(homeDir, users);
  else await seedUsers(homeDir, domain, ['alice', 'bob']);
  const home = await startServerProcess(
    `home ${domain}`,
    homeDir,
    {
      domain,
      role: 'standard',
      serverId: `home-${domain}`,
      listen: { tcp: `127.0.0.1:${homeTcp}`, tls: `127.0.0.1:${homeTls}` },
      tls,
      trustedPeers: ['127.0.0.1'],
      federation: { edge: `sip:127.0.0.1:${internal};transport=tcp` },
      // Bob's UAS is registered by a SIPp run that exits: keep its binding after that connection closes.
      registrar: { connectionGraceSeconds: 3_600 },
      http: `127.0.0.1:${homeHttp}`,
      database: { dataDir: homeDir },
      log: { level: 'warn' },
    },
    homeHttp,
  );
  const edgeDir = join(workDir, `edge-${domain}`);
  const db = await openDatabase({ dataDir: edgeDir });
  try {
    await new FederationRepository(db).put({ domain: partner, action: 'allow' });
  } finally {
    await db.close();
  }
  const edge = await startServerProcess(
    `edge ${domain}`,
    edgeDir,
    {
      domain,
      role: 'edge',
      serverId: `edge-${domain}`,
      advertise: edgeName,
      listen: {
        tls: `127.0.0.1:${edgeTls}`,
        federation: `127.0.0.1:${federation}`,
        internal: `127.0.0.1:${internal}`,
      },
      tls,
      edge: {
        next: `sip:127.0.0.1:${homeTcp};transport=tcp`,
        requestsPerSecond: 1_000_000,
        burst: 1_000_000,
        unknownRequestsPerSecond: 1_000_000,
        partnerRequestsPerSecond: 1_000_000,
        partnerBurst: 1_000_000,
      },
      federation: { dnsServers: [dns.address] },
      http: `127.0.0.1:${edgeHttp}`,
      database: { dataDir: edgeDir },
      log: { level: 'warn' },
    },
    edgeHttp,
  ).catch(async (err: unknown) => {
    await home.stop();
    throw err;
  });
  log(`${domain}: home tcp ${homeTcp} tls ${homeTls}; edge tls ${edgeTls} federation ${federation}`);
  return { domain, home, edge, homeTcp, homeTls, edgeTls, federation };
}

async function stopOrg(org: Org): Promise<void> {
  await org.edge.stop();
  await org.home.stop();
}

/** A few users of another realm than the SIP suite's, password PASSWORD. */
async function seedUsers(dataDir: string, domain: string, names: string[]): Promise<void> {
  const db = await openDatabase({ dataDir });
  try {
    await seedStoreUsers(db, benchUsers(names, domain), domain);
  } finally {
    await db.close();
  }
}

/** `node bin/run.js server start --config <dir>/parley.yaml` (JSON is YAML); waits for /health. */
async function startServerProcess(
  name: string,
  dataDir: string,
  config: Record<string, unknown>,
  httpPort: number,
): Promise<ServerProcess> {
  const file = join(dataDir, 'parley.yaml');
  writeFileSync(file, JSON.stringify(config, null, 2));
  const child = spawnTracked(
    process.execPath,
    [join(REPO_ROOT, 'bin', 'run.js'), 'server', 'start', '--config', file],
    { cwd: dataDir },
  );
  const tail = captureTail(child, 16_384);
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGINT');
    await waitForExit(child, 20_000);
  };
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited while starting: ${tail().slice(-2_000)}`);
    const ok = await fetch(`http://127.0.0.1:${httpPort}/health`, {
      signal: AbortSignal.timeout(2_000),
    }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} did not answer /health within 120 s: ${tail().slice(-2_000)}`);
    }
    await sleep(200);
  }
  const pid = child.pid ?? 0;
  return { child, pids: () => processTree(pid), stop };
}

function rateText(run: WorkloadRun): string {
  if (!run.best) return 'failed';
  return `${run.best.achievedRate.toLocaleString('en-US')}/s`;
}

function latencyText(run: WorkloadRun): string {
  const s = run.sustained;
  if (!s?.latency) return '-';
  return `${s.latency.p50}/${s.latency.p90}/${s.latency.p99} ms @ ${s.achievedRate.toLocaleString('en-US')}/s`;
}

function cpuText(run: WorkloadRun): string {
  const b = run.best;
  return b ? `${b.cpuPercent}%` : '-';
}

/** The edge suite's table: through the edge(s) beside straight to the home, and the ratio. */
export function renderEdgeTable(suite: EdgeSuiteResult): string {
  const header = [
    'workload',
    'via edge(s) best',
    'direct best',
    'ratio',
    'via edge(s) p50/p90/p99',
    'direct p50/p90/p99',
    'CPU edge(s)+homes / home',
  ];
  const rows = suite.workloads.map((r) => [
    r.workload === 'message' ? `${r.label} (federated, mutual TLS)` : `${r.label} (TLS)`,
    rateText(r.edge),
    rateText(r.direct),
    r.ratio === undefined ? '-' : r.ratio.toFixed(2),
    latencyText(r.edge),
    latencyText(r.direct),
    `${cpuText(r.edge)} / ${cpuText(r.direct)}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [
    `Edge suite: ${suite.users.toLocaleString('en-US')} users, ${suite.duration} s steps, load at start ${suite.machine.loadAverage.join(' ')}`,
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    'CPU: % of one core, summed over the processes on the path (best step).',
  ].join('\n');
}
