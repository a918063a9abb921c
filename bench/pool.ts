/**
 * The pool suite (`npm run bench -- --pool`): a pool of two front-ends (`server start --role
 * frontend`) on one throwaway PostgreSQL, HAProxy in front in TCP mode (the documented
 * fixtures/haproxy/parley.cfg), driven with SIPp on loopback. It measures
 *
 * - sign-ins per second: REGISTER with digest through HAProxy, two SIPp processes at once
 *   (one TCP connection each, so HAProxy's leastconn puts one on each front-end), half the
 *   rate and half the users each; the rates are summed;
 * - MESSAGE per second across front-ends: bob keeps a connection to front-end 2 (an outbound
 *   ";ob" registration, answered by SIPp's out-of-call scenario), alice sends from a
 *   connection to front-end 1, which finds bob's binding in PostgreSQL and relays every
 *   MESSAGE to front-end 2 along the binding's Path (RFC 3327, RFC 5626 flow token);
 * - presence NOTIFY fan-out per second: W watchers (half on each front-end) subscribed to
 *   one presentity that PUBLISHes K changes from front-end 1; NOTIFYs counted by the
 *   front-ends' parley_presence_notifications_sent_total and by the watchers' SIPp;
 * - the user base held: every user registered once (Expires 3600), then each front-end's
 *   RSS, the rows of `registrations`, and PostgreSQL's database and table sizes.
 *
 * The rate ramps follow the SIP suite (bench/sip.ts): stop at the first failed call or when
 * the pool no longer keeps up; best = highest achieved rate with 0 failures; latency at the
 * highest clean step that kept up (one more step at 70% of the best when none did).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/open.js';
import { seedUsers } from '../src/store/seed.js';
import type { Database } from '../src/store/sql.js';
import { freeLoopbackPorts, parseStatsCsv, renderHaproxyConfig } from '../test-kit/haproxy.js';
import { startTestPostgres, type TestPostgres } from '../test-kit/postgres.js';
import {
  benchUsers,
  captureTail,
  DOMAIN,
  ensureCommand,
  freePort,
  type LatencyPercentiles,
  machineInfo,
  memoryKiB,
  processTree,
  REPO_ROOT,
  rampRates,
  runSipp as runSippAt,
  SCENARIOS,
  type SippRun,
  type SippRunOptions as SipRunOptions,
  sleep,
  spawnTracked,
  sumSippRuns,
  waitForExit,
  waitForTcp,
  writeInjectionFile,
} from './sip.js';

/** Pool ramp when --rate is not given: the pool adds a PostgreSQL write and a proxy hop. */
export const POOL_RATES = [1_000, 2_000, 4_000, 6_000, 8_000, 10_000, 12_500, 15_000, 20_000];
const HOME = 'pool1';
/** Where the sign-in phase's users say they can be reached: nothing calls them. */
const PARKED_CONTACT = '127.0.0.1:9';

export interface PoolBenchOptions {
  /** user0..user(N-1), password "secret", realm example.com, living in pool1 (plus alice and bob). */
  users: number;
  rates?: number[];
  /** Seconds per rate step; default 10, or 3 below 10,000 users (a smoke run). */
  duration?: number;
  /** Presence watchers, half on each front-end (default 200, at most the users). */
  watchers?: number;
  /** State changes the presentity publishes (default 50). */
  changes?: number;
  log: (line: string) => void;
}

export interface PoolStep {
  targetRate: number;
  calls: number;
  successful: number;
  failed: number;
  seconds: number;
  /** Successful calls per second over the step (all SIPp processes summed), drain included. */
  achievedRate: number;
  latency?: LatencyPercentiles;
  /** CPU over the step in % of one core: both front-ends together, PostgreSQL, HAProxy. */
  cpu: { frontends: number; postgres: number; haproxy: number };
  /** Peak VmRSS of each front-end over the step. */
  frontendRssMiB: number[];
  sippExits: number[];
  error?: string;
}

export interface PoolRamp {
  workload: 'signin' | 'message';
  label: string;
  steps: PoolStep[];
  best?: PoolStep;
  sustained?: PoolStep;
  failedAtLowestRate: boolean;
}

export interface PresenceFanout {
  watchers: number;
  /** Watchers connected to each front-end. */
  watchersPerFrontend: number[];
  changes: number;
  /** watchers x changes: NOTIFYs the changes should cause. */
  expected: number;
  /** NOTIFYs the front-ends sent for the changes (metrics delta). */
  sent: number;
  /** NOTIFYs the watchers' SIPp received for the changes (their initial and final ones left out). */
  received?: number;
  /** From the first PUBLISH sent to the last NOTIFY counted. */
  seconds: number;
  notifyRate: number;
  failedWatchers: number;
  error?: string;
}

export interface HeldUsers {
  users: number;
  /** The pass that registers every user once through HAProxy. */
  registerPass: {
    targetRate: number;
    successful: number;
    failed: number;
    seconds: number;
    achievedRate: number;
  };
  /** Rows of `registrations` for user0..user(N-1). */
  registrations: number;
  registrationsByFrontend: Record<string, number>;
  /** Endpoints each front-end holds in memory (its /health). */
  endpointsByFrontend: Record<string, number>;
  frontendRssMiB: Record<string, number>;
  /** Each front-end's RSS once started, before any load: what holding the users added is the difference. */
  idleRssMiB: Record<string, number>;
  /** V8 heap in use on each front-end (its /metrics) while holding the users. */
  heapUsedMiB: Record<string, number>;
  databaseMiB: number;
  registrationsTableMiB: number;
  error?: string;
}

export interface PoolSuiteResult {
  machine: ReturnType<typeof machineInfo>;
  servers: Record<string, string>;
  frontends: string[];
  users: number;
  rates: number[];
  duration: number;
  signIn?: PoolRamp;
  message?: PoolRamp;
  presence?: PresenceFanout;
  held?: HeldUsers;
  /** Front-end RSS once started, before any load. */
  idleRssMiB: Record<string, number>;
  /** Front-end RSS after every phase. */
  finalRssMiB: Record<string, number>;
  /** Why the suite failed, when it did (the runner exits 1). */
  failures: string[];
}

export interface Frontend {
  id: string;
  child: ChildProcess;
  tcpPort: number;
  httpUrl: string;
  output: () => string;
}

export interface BenchPool {
  db: Database;
  frontends: Frontend[];
  haproxy: { port: number; statsUrl: string; pid: number; version: string };
  postgres: { version: string; pid: () => number | undefined };
  stop(): Promise<void>;
}

/** Runs the pool suite; throws only when the pool cannot be started. */
export async function benchPool(opts: PoolBenchOptions): Promise<PoolSuiteResult> {
  const log = opts.log;
  const rates = opts.rates ?? POOL_RATES;
  const duration = opts.duration ?? (opts.users < 10_000 ? 3 : 10);
  const watchers = Math.max(2, Math.min(opts.watchers ?? 200, opts.users));
  const changes = opts.changes ?? 50;
  const workDir = mkdtempSync(join(tmpdir(), 'parley-bench-pool-'));
  // SIGINT ends the run through process.exit: the SIPp files must not stay behind either.
  const removeWorkDir = () => rmSync(workDir, { recursive: true, force: true });
  process.once('exit', removeWorkDir);
  const result: PoolSuiteResult = {
    machine: machineInfo(),
    servers: {},
    frontends: [],
    users: opts.users,
    rates,
    duration,
    idleRssMiB: {},
    finalRssMiB: {},
    failures: [],
  };
  const m = result.machine;
  log(`machine: ${m.cpus} CPUs (${m.cpuModel}), load ${m.loadAverage.join(' ')}, Node ${m.node}, ${m.sipp}`);
  const pool = await startBenchPool(opts.users, workDir, log);
  try {
    result.frontends = pool.frontends.map((f) => f.id);
    for (const fe of pool.frontends) result.idleRssMiB[fe.id] = rssMiB(fe.child.pid);
    result.servers = {
      parley: parleyVersion(),
      postgres: pool.postgres.version,
      haproxy: pool.haproxy.version,
    };
    const phase = async <T>(name: string, run: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await run();
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        result.failures.push(`${name}: ${why}`);
        log(`${name}: FAILED: ${why}`);
        return undefined;
      }
    };
    const ctx: PhaseContext = {
      pool,
      workDir,
      duration,
      rates,
      log,
      users: opts.users,
      idleRssMiB: result.idleRssMiB,
    };
    result.signIn = await phase('sign-in', () => rampSignIn(ctx));
    if (result.signIn?.failedAtLowestRate) result.failures.push(rampFailure(result.signIn));
    result.held = await phase('held users', () => holdUsers(ctx, result.signIn));
    if (result.held && result.held.registrations < opts.users)
      result.failures.push(
        `held users: ${result.held.registrations} of ${opts.users} users registered${result.held.error ? ` (${result.held.error})` : ''}`,
      );
    result.message = await phase('MESSAGE', () => rampMessage(ctx));
    if (result.message?.failedAtLowestRate) result.failures.push(rampFailure(result.message));
    result.presence = await phase('presence', () => presenceFanout(ctx, watchers, changes));
    if (result.presence?.error) result.failures.push(`presence: ${result.presence.error}`);
    for (const fe of pool.frontends) result.finalRssMiB[fe.id] = rssMiB(fe.child.pid);
  } finally {
    await pool.stop().catch((err) => log(`stopping the pool: ${err}`));
    process.off('exit', removeWorkDir);
    removeWorkDir();
  }
  return result;
}

function rampFailure(r: PoolRamp): string {
  const first = r.steps[0];
  return `${r.label}: ${first?.failed ?? 0} failed calls at the lowest rate (${first?.targetRate}/s)${first?.error ? `: ${first.error}` : ''}`;
}

interface PhaseContext {
  pool: BenchPool;
  workDir: string;
  duration: number;
  rates: number[];
  users: number;
  idleRssMiB: Record<string, number>;
  log: (line: string) => void;
}

/** Sign-ins through HAProxy: two SIPp processes (one connection each), half the users each. */
async function rampSignIn(ctx: PhaseContext): Promise<PoolRamp> {
  const lanes = signInLanes(ctx);
  ctx.log(
    `sign-in through HAProxy: rates ${ctx.rates.join(', ')}/s, ${ctx.duration} s each, 2 SIPp connections`,
  );
  return ramp('signin', 'sign-in (REGISTER with digest) via HAProxy', ctx, async (rate) => {
    const halves = [Math.ceil(rate / 2), Math.floor(rate / 2)];
    return measureStep(ctx, rate, 'register', () =>
      lanes.map((injection, i) => ({
        port: ctx.pool.haproxy.port,
        scenario: join(SCENARIOS, 'pool-register.xml'),
        injection,
        authUri: DOMAIN,
        calls: Math.max(1, Math.round(halves[i] * ctx.duration)),
        rate: Math.max(1, halves[i]),
        dir: join(ctx.workDir, `signin-${rate}-${i}`),
        timeoutSeconds: Math.ceil(ctx.duration * 3 + 20),
      })),
    );
  });
}

/** Injection files of the two sign-in lanes: user0..user(N/2-1) and the rest. */
function signInLanes(ctx: PhaseContext): string[] {
  const half = Math.ceil(ctx.users / 2);
  const ranges = [
    [0, half],
    [half, ctx.users],
  ];
  return ranges.map(([from, to], i) => {
    const path = join(ctx.workDir, `lane-${i}.csv`);
    if (!existsSync(path)) {
      const rows = Array.from({ length: Math.max(0, to - from) }, (_, k) => ({
        user: `user${from + k}`,
        extra: PARKED_CONTACT,
      }));
      writeInjectionFile(path, rows.length > 0 ? rows : [{ user: 'user0', extra: PARKED_CONTACT }]);
    }
    return path;
  });
}

/**
 * Registers every user exactly once (Expires 3600) through HAProxy at a rate the pool
 * sustained, waits until the pool's table has them all, and reports what holding them costs.
 */
async function holdUsers(ctx: PhaseContext, signIn: PoolRamp | undefined): Promise<HeldUsers> {
  const lanes = signInLanes(ctx);
  const half = Math.ceil(ctx.users / 2);
  const sizes = [half, ctx.users - half];
  const rate = Math.max(
    200,
    signIn?.sustained?.achievedRate ?? Math.round((signIn?.best?.achievedRate ?? ctx.rates[0]) * 0.7),
  );
  ctx.log(`held users: registering all ${ctx.users.toLocaleString('en-US')} users once at ${rate}/s`);
  const halves = [Math.ceil(rate / 2), Math.floor(rate / 2)];
  const runs = await Promise.all(
    lanes.map((injection, i) =>
      sizes[i] > 0
        ? runSipp({
            port: ctx.pool.haproxy.port,
            scenario: join(SCENARIOS, 'pool-register.xml'),
            injection,
            authUri: DOMAIN,
            calls: sizes[i],
            rate: Math.max(1, halves[i]),
            dir: join(ctx.workDir, `hold-${i}`),
            timeoutSeconds: Math.ceil((sizes[i] / Math.max(1, halves[i])) * 3 + 60),
          })
        : undefined,
    ),
  );
  const done = runs.filter((r): r is SippRun => r !== undefined);
  const successful = done.reduce((n, r) => n + (r.stats?.successful ?? 0), 0);
  const seconds = Math.max(0, ...done.map((r) => r.stats?.seconds ?? 0));
  const failed = ctx.users - successful;
  const held: HeldUsers = {
    users: ctx.users,
    registerPass: {
      targetRate: rate,
      successful,
      failed,
      seconds: round2(seconds),
      achievedRate: seconds > 0 ? Math.round(successful / seconds) : 0,
    },
    registrations: 0,
    registrationsByFrontend: {},
    endpointsByFrontend: {},
    frontendRssMiB: {},
    idleRssMiB: ctx.idleRssMiB,
    heapUsedMiB: {},
    databaseMiB: 0,
    registrationsTableMiB: 0,
  };
  if (failed > 0) held.error = `${failed} sign-ins failed: ${done.map((r) => sippError(r)).join(' | ')}`;
  // Front-ends mirror bindings to the table in batches: wait for the last ones.
  const db = ctx.pool.db;
  const count = async () =>
    (
      await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM registrations WHERE aor LIKE 'user%' AND expires_at > now()",
      )
    ).rows[0].n;
  const deadline = Date.now() + 60_000;
  let rows = await count();
  while (rows < successful && Date.now() < deadline) {
    await sleep(250);
    rows = await count();
  }
  held.registrations = rows;
  const byServer = await db.query<{ server_id: string; n: number }>(
    "SELECT server_id, count(*)::int AS n FROM registrations WHERE aor LIKE 'user%' GROUP BY server_id ORDER BY server_id",
  );
  for (const r of byServer.rows) held.registrationsByFrontend[r.server_id] = r.n;
  for (const fe of ctx.pool.frontends) {
    held.frontendRssMiB[fe.id] = rssMiB(fe.child.pid);
    const health = await fetchJson(`${fe.httpUrl}/health`);
    held.endpointsByFrontend[fe.id] = Number(health?.registeredEndpoints ?? 0);
    // RSS keeps what the ramps' garbage grew; the live heap is closer to what the bindings cost.
    const heap = await scrapeMetric(fe, 'parley_nodejs_heap_size_used_bytes').catch(() => undefined);
    if (heap !== undefined) held.heapUsedMiB[fe.id] = round1(heap / 1_048_576);
  }
  const sizesRow = await db.query<{ db: string; reg: string }>(
    "SELECT pg_database_size(current_database())::text AS db, pg_total_relation_size('registrations')::text AS reg",
  );
  held.databaseMiB = round1(Number(sizesRow.rows[0].db) / 1_048_576);
  held.registrationsTableMiB = round1(Number(sizesRow.rows[0].reg) / 1_048_576);
  ctx.log(
    `  ${held.registrations.toLocaleString('en-US')} registrations (${Object.entries(
      held.registrationsByFrontend,
    )
      .map(([k, v]) => `${k} ${v}`)
      .join(
        ', ',
      )}) at ${held.registerPass.achievedRate}/s; front-end RSS ${Object.values(held.frontendRssMiB).join(' / ')} MiB; database ${held.databaseMiB} MiB, registrations ${held.registrationsTableMiB} MiB`,
  );
  return held;
}

/**
 * bob keeps one connection to front-end 2; alice sends from a connection to front-end 1:
 * each MESSAGE goes alice -> fe1 -> (PostgreSQL lookup) -> fe2 -> bob's flow -> 200 back.
 */
async function rampMessage(ctx: PhaseContext): Promise<PoolRamp> {
  const [fe1, fe2] = ctx.pool.frontends;
  const bobFile = writeInjectionFile(join(ctx.workDir, 'bob.csv'), [{ user: 'bob' }]);
  const bobPort = await freePort();
  const bobDir = join(ctx.workDir, 'bob');
  mkdirSync(bobDir, { recursive: true });
  const bob = spawnTracked(
    sipp(),
    [
      `127.0.0.1:${fe2.tcpPort}`,
      '-sf',
      join(SCENARIOS, 'pool-register-flow.xml'),
      '-oocsf',
      join(SCENARIOS, 'uas-message.xml'),
      '-inf',
      bobFile,
      '-t',
      't1',
      '-i',
      '127.0.0.1',
      '-p',
      String(bobPort),
      '-m',
      '1',
      '-l',
      String(callLimit()),
      '-nostdin',
      '-timeout',
      `${Math.ceil(ctx.duration * (ctx.rates.length + 1) * 4 + 120)}s`,
    ],
    { cwd: bobDir },
  );
  const bobTail = captureTail(bob);
  try {
    // bob's binding reaches the pool's table with a Path through front-end 2.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { rows } = await ctx.pool.db.query<{ server_id: string; path: string | null }>(
        'SELECT server_id, path FROM registrations WHERE aor = $1',
        [`bob@${DOMAIN}`],
      );
      if (rows.some((r) => r.server_id === fe2.id && r.path)) break;
      if (bob.exitCode !== null)
        throw new Error(`bob's SIPp exited (${bob.exitCode}): ${sippError({ tail: bobTail(), errors: '' })}`);
      if (Date.now() > deadline)
        throw new Error(
          `bob's registration on ${fe2.id} did not reach the pool's table: ${JSON.stringify(rows)}`,
        );
      await sleep(100);
    }
    const alice = writeInjectionFile(join(ctx.workDir, 'alice.csv'), [{ user: 'alice', extra: 'bob' }]);
    ctx.log(
      `MESSAGE alice (${fe1.id}) -> bob (${fe2.id}): rates ${ctx.rates.join(', ')}/s, ${ctx.duration} s each`,
    );
    return await ramp('message', `MESSAGE ${fe1.id} -> ${fe2.id}`, ctx, (rate) =>
      measureStep(ctx, rate, 'message', () => [
        {
          port: fe1.tcpPort,
          scenario: join(SCENARIOS, 'uac-message.xml'),
          injection: alice,
          calls: Math.max(1, Math.round(rate * ctx.duration)),
          rate,
          dir: join(ctx.workDir, `message-${rate}`),
          timeoutSeconds: Math.ceil(ctx.duration * 3 + 20),
        },
      ]),
    );
  } finally {
    bob.kill('SIGTERM');
    await waitForExit(bob, 3_000);
  }
}

/**
 * W watchers (half connected to each front-end) subscribe to alice; alice, on front-end 1,
 * publishes K changes back to back; every change is a NOTIFY to every watcher, half of them
 * from the other front-end (the publication travels through PostgreSQL).
 */
async function presenceFanout(ctx: PhaseContext, watchers: number, changes: number): Promise<PresenceFanout> {
  const fes = ctx.pool.frontends;
  const perFe = [Math.ceil(watchers / 2), Math.floor(watchers / 2)];
  ctx.log(`presence: ${watchers} watchers of alice (${perFe.join(' + ')}), ${changes} published changes`);
  const before = await notificationsSent(fes);
  const watcherRuns = perFe.map((n, i) => {
    const injection = writeInjectionFile(
      join(ctx.workDir, `watchers-${i}.csv`),
      Array.from({ length: n }, (_, k) => ({ user: `user${i * perFe[0] + k}`, extra: 'alice' })),
    );
    return runSipp({
      port: fes[i].tcpPort,
      scenario: join(SCENARIOS, 'pool-watch.xml'),
      injection,
      calls: n,
      rate: 100,
      dir: join(ctx.workDir, `watch-${i}`),
      timeoutSeconds: 180,
      // -aa: a NOTIFY that overtakes the 200 to the previous one is answered, not a failure.
      extra: ['-trace_counts', '-aa'],
      noRecvTimeout: true,
    });
  });
  const fanout: PresenceFanout = {
    watchers,
    watchersPerFrontend: perFe,
    changes,
    expected: watchers * changes,
    sent: 0,
    seconds: 0,
    notifyRate: 0,
    failedWatchers: 0,
  };
  // Every watcher subscribed and got its first NOTIFY (RFC 6665 4.2.1) before alice publishes.
  const ready = Date.now() + 30_000;
  let subscribed = 0;
  while (Date.now() < ready) {
    subscribed = 0;
    for (const fe of fes) subscribed += Number((await fetchJson(`${fe.httpUrl}/health`))?.subscriptions ?? 0);
    if (subscribed >= watchers && (await notificationsSent(fes)) - before >= watchers) break;
    await sleep(100);
  }
  if (subscribed < watchers) fanout.error = `only ${subscribed} of ${watchers} watchers subscribed`;
  const base = await notificationsSent(fes);
  const started = Date.now();
  const publisher = runSipp({
    port: fes[0].tcpPort,
    scenario: join(SCENARIOS, 'pool-publish.xml'),
    injection: writeInjectionFile(join(ctx.workDir, 'publisher.csv'), [{ user: 'alice' }]),
    calls: 1,
    rate: 1,
    dir: join(ctx.workDir, 'publish'),
    timeoutSeconds: 120,
    extra: ['-set', 'changes', String(changes)],
  });
  // Count until every NOTIFY went out, or nothing moved for 5 s.
  let sent = 0;
  let lastChange = started;
  while (sent < fanout.expected && Date.now() - lastChange < 5_000) {
    await sleep(20);
    const now = (await notificationsSent(fes)) - base;
    if (now > sent) {
      sent = now;
      lastChange = Date.now();
    }
  }
  fanout.sent = sent;
  fanout.seconds = round2((lastChange - started) / 1000);
  fanout.notifyRate = fanout.seconds > 0 ? Math.round(sent / fanout.seconds) : 0;
  const pub = await publisher;
  if (pub.exit !== 0) fanout.error = `publisher SIPp exit ${pub.exit}: ${sippError(pub)}`;
  const runs = await Promise.all(watcherRuns);
  fanout.failedWatchers = runs.reduce(
    (n, r, i) => n + Math.max(r.stats?.failed ?? 0, perFe[i] - (r.stats?.successful ?? 0)),
    0,
  );
  const received = runs.map((r) => countReceived(r.counts, 'NOTIFY'));
  // Each watcher also gets the NOTIFY of its subscription and the one ending it (RFC 6665 4.4.1).
  if (received.every((n) => n !== undefined))
    fanout.received = received.reduce((a, b) => a + (b ?? 0), 0) - 2 * (watchers - fanout.failedWatchers);
  if (fanout.failedWatchers > 0)
    fanout.error = `${fanout.failedWatchers} watchers failed: ${runs.map((r) => sippError(r)).join(' | ')}`;
  else if (sent < fanout.expected && !fanout.error)
    fanout.error = `${sent} of ${fanout.expected} NOTIFYs sent for the published changes`;
  ctx.log(
    `  ${sent} NOTIFYs in ${fanout.seconds} s = ${fanout.notifyRate}/s` +
      (fanout.received !== undefined ? `, ${fanout.received} received by the watchers` : '') +
      `, ${fanout.failedWatchers} failed watchers`,
  );
  return fanout;
}

/** Sum of parley_presence_notifications_sent_total over the front-ends' /metrics. */
async function notificationsSent(fes: Frontend[]): Promise<number> {
  let total = 0;
  for (const fe of fes) total += (await scrapeMetric(fe, 'parley_presence_notifications_sent_total')) ?? 0;
  return total;
}

/** One unlabelled (or default-labelled) series of a front-end's /metrics. */
async function scrapeMetric(fe: Frontend, name: string): Promise<number | undefined> {
  const res = await fetch(`${fe.httpUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/**
 * Received count of a request from SIPp's -trace_counts CSV: the header names each scenario
 * element ("3_NOTIFY_Recv"...); the last line holds the counts.
 */
export function countReceived(csv: string | undefined, method: string): number | undefined {
  if (!csv) return undefined;
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  if (lines.length < 2) return undefined;
  const header = lines[0].split(';');
  const last = lines[lines.length - 1].split(';');
  let total = 0;
  let found = false;
  header.forEach((name, i) => {
    if (new RegExp(`^\\d+_${method}_Recv$`).test(name.trim())) {
      total += Number(last[i]) || 0;
      found = true;
    }
  });
  return found ? total : undefined;
}

/** One rate ramp, as in the SIP suite. */
async function ramp(
  workload: PoolRamp['workload'],
  label: string,
  ctx: PhaseContext,
  runStep: (rate: number) => Promise<PoolStep>,
): Promise<PoolRamp> {
  const step = async (rate: number) => {
    const s = await runStep(rate);
    ctx.log(
      `  ${workload} @ ${rate}/s: ${s.achievedRate}/s, ${s.successful} ok, ${s.failed} failed` +
        (s.latency ? `, p50 ${s.latency.p50} ms p99 ${s.latency.p99} ms` : '') +
        `, CPU front-ends ${s.cpu.frontends}% PostgreSQL ${s.cpu.postgres}% HAProxy ${s.cpu.haproxy}%` +
        `, RSS ${s.frontendRssMiB.join('/')} MiB` +
        (s.error ? ` (${s.error})` : ''),
    );
    return s;
  };
  return { workload, label, ...(await rampRates(ctx.rates, step)) };
}

/** Runs the step's SIPp processes at once and sums them; CPU and memory sampled meanwhile. */
async function measureStep(
  ctx: PhaseContext,
  rate: number,
  rtdTimer: string,
  runs: () => SippRunOptions[],
): Promise<PoolStep> {
  const specs = runs();
  const sample = startPoolSampler(ctx.pool);
  const results = await Promise.all(specs.map((s) => runSipp(s)));
  const resources = sample();
  const calls = specs.reduce((n, s) => n + s.calls, 0);
  const summed = sumSippRuns(results, calls, rtdTimer);
  const step: PoolStep = {
    targetRate: rate,
    calls,
    successful: summed.successful,
    failed: summed.failed,
    seconds: round2(summed.seconds),
    achievedRate: summed.achievedRate,
    latency: summed.latency,
    ...resources,
    sippExits: results.map((r) => r.exit),
  };
  const bad = results.filter((r) => r.exit !== 0 && r.exit !== 1);
  if (summed.failed > 0 || bad.length > 0)
    step.error = results.map((r) => `SIPp exit ${r.exit}: ${sippError(r)}`).join('; ');
  return step;
}

interface SippRunOptions extends Omit<SipRunOptions, 'target' | 'callLimit'> {
  port: number;
}

let sippPath: string | undefined;
function sipp(): string {
  sippPath ??= ensureCommand('sipp', 'sip-tester', ['/usr/bin']);
  return sippPath;
}

/** Open calls per SIPp process: below the open-file limit (several processes run at once). */
function callLimit(): number {
  const out = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' });
  const n = Number(out.stdout?.trim());
  return Number.isFinite(n) && n > 4_000 ? Math.min(20_000, Math.floor((n - 1_000) / 2)) : 1_000;
}

/** One SIPp UAC over one TCP connection to 127.0.0.1:port, bounded by -m and -timeout. */
function runSipp({ port, ...o }: SippRunOptions): Promise<SippRun> {
  return runSippAt({ ...o, target: { host: '127.0.0.1', port }, callLimit: callLimit() });
}

/**
 * Why a SIPp run failed, briefly: the first events of its error log (the cause; later ones
 * are usually consequences), else the last error lines it printed.
 */
function sippError(run: { tail: string; errors: string }): string {
  const events = run.errors
    .replace(/^The following events occurred:\s*/, '')
    .split(/(?=\d{4}-\d\d-\d\d\t)/)
    .map((e) =>
      e
        .replace(/^\S+\t\S+\t\S+:\s*/, '')
        .replace(/\s+/g, ' ')
        .trim(),
    )
    // A watcher's quiet-time timeout is how it ends its watch, not a failure.
    .filter((e) => e && !/receive timeout on message .* jumping to label/.test(e));
  if (events.length > 0)
    return events
      .slice(0, 2)
      .map((e) => e.slice(0, 300))
      .join(' | ');
  const lines = run.tail
    .split('\n')
    .map((l) => l.trim())
    .filter(
      (l) =>
        /error|broken|refused|closed|unable|cannot|fatal|timeout/i.test(l) && !/^-+|^\||TCP errors/.test(l),
    );
  return lines.slice(-3).join(' | ') || 'no error text from SIPp';
}

/** CPU of the front-ends, PostgreSQL and HAProxy over a step, and each front-end's peak RSS. */
function startPoolSampler(pool: BenchPool): () => Pick<PoolStep, 'cpu' | 'frontendRssMiB'> {
  const groups = () => ({
    frontends: pool.frontends.flatMap((f) => (f.child.pid ? processTree(f.child.pid) : [])),
    postgres: pool.postgres.pid() ? processTree(pool.postgres.pid() ?? 0) : [],
    haproxy: processTree(pool.haproxy.pid),
  });
  const started = process.hrtime.bigint();
  const g0 = groups();
  const cpu0 = {
    frontends: cpuSeconds(g0.frontends),
    postgres: cpuSeconds(g0.postgres),
    haproxy: cpuSeconds(g0.haproxy),
  };
  const peak = pool.frontends.map((f) => rssMiB(f.child.pid));
  const sampleRss = () => {
    pool.frontends.forEach((f, i) => {
      peak[i] = Math.max(peak[i], rssMiB(f.child.pid));
    });
  };
  const timer = setInterval(sampleRss, 250);
  return () => {
    clearInterval(timer);
    sampleRss();
    const wall = Number(process.hrtime.bigint() - started) / 1e9;
    const g1 = groups();
    const pct = (a: number, b: number) => round1(((b - a) / wall) * 100);
    return {
      cpu: {
        frontends: pct(cpu0.frontends, cpuSeconds(g1.frontends)),
        postgres: pct(cpu0.postgres, cpuSeconds(g1.postgres)),
        haproxy: pct(cpu0.haproxy, cpuSeconds(g1.haproxy)),
      },
      frontendRssMiB: peak,
    };
  };
}

const CLOCK_TICKS = (() => {
  const n = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/**
 * utime+stime of each process plus cutime+cstime (children it has reaped): PostgreSQL's
 * backends come and go, and a finished backend's CPU then shows up in the postmaster's.
 */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // Exited between listing and reading.
    }
  }
  return ticks / CLOCK_TICKS;
}

/**
 * VmRSS of a front-end's process tree: `server start` is a launcher that runs the server in a
 * child with its heap flags (src/roles/heap.ts), so the launcher's own RSS alone is ~60 MiB of
 * node binary and says nothing of the users held. Summed as the SIP suite sums it.
 */
function rssMiB(pid: number | undefined): number {
  if (!pid) return 0;
  return round1(memoryKiB(processTree(pid)).rss / 1024);
}

async function fetchJson(url: string): Promise<Record<string, unknown> | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return (await res.json()) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * PostgreSQL, migrated, with pool1 and its users; two front-ends of the built CLI; HAProxy
 * in front. Whatever started is stopped again if a later part fails.
 */
export async function startBenchPool(
  users: number,
  workDir: string,
  log: (line: string) => void,
): Promise<BenchPool> {
  const cli = join(REPO_ROOT, 'bin', 'run.js');
  if (!existsSync(join(REPO_ROOT, 'dist', 'commands', 'server', 'start.js')))
    throw new Error('the CLI is not built: run `npm run build` first');
  let pg: TestPostgres | undefined;
  let db: Database | undefined;
  const frontends: Frontend[] = [];
  let haproxy: ChildProcess | undefined;
  // pg_ctl daemonizes PostgreSQL: on an abrupt exit (SIGINT) stop it here. TestPostgres.stop
  // runs pg_ctl synchronously, so it completes inside the exit handler.
  const stopPostgresOnExit = () => void pg?.stop().catch(() => undefined);
  process.once('exit', stopPostgresOnExit);
  const stop = async () => {
    process.off('exit', stopPostgresOnExit);
    await Promise.all(
      frontends.map(async (fe) => {
        if (fe.child.exitCode === null && fe.child.signalCode === null) fe.child.kill('SIGTERM');
        await waitForExit(fe.child, 15_000);
      }),
    );
    if (haproxy) {
      haproxy.kill('SIGTERM');
      await waitForExit(haproxy, 5_000);
    }
    await db?.close().catch(() => undefined);
    await pg?.stop();
  };
  try {
    pg = await startTestPostgres();
    const url = await pg.createDatabase('parley_bench');
    const pgDir = new URL(url).searchParams.get('host') ?? '';
    db = await openDatabase({ url });
    const version = (await db.query<{ server_version: string }>('SHOW server_version')).rows[0]
      .server_version;
    log(`postgres: PostgreSQL ${version}`);
    const seeded = Date.now();
    await seedPoolUsers(db, users);
    log(
      `postgres: ${(users + 2).toLocaleString('en-US')} users created in ${((Date.now() - seeded) / 1000).toFixed(1)} s`,
    );

    const ports = await freeLoopbackPorts(6);
    // HAProxy (fixtures/haproxy/parley.cfg) sends a PROXY v2 header from 127.0.0.1: the
    // front-ends' ./parley.yaml trusts it (docs/pool.md, section 4).
    writeFileSync(join(workDir, 'parley.yaml'), 'limits:\n  trustedProxies: [127.0.0.1]\n');
    for (let i = 0; i < 2; i++) {
      const id = `${HOME}-fe${i + 1}`;
      const [tcp, ws, http] = ports.slice(3 * i, 3 * i + 3);
      const child = spawnFrontend(
        [
          cli,
          'server',
          'start',
          '--role',
          'frontend',
          '--server-id',
          id,
          '--home',
          HOME,
          '--database',
          url,
          '--domain',
          DOMAIN,
          '--tcp',
          `127.0.0.1:${tcp}`,
          '--ws',
          `127.0.0.1:${ws}`,
          '--http',
          `127.0.0.1:${http}`,
          '--log-level',
          'warn',
        ],
        workDir,
      );
      frontends.push({
        id,
        child,
        tcpPort: tcp,
        httpUrl: `http://127.0.0.1:${http}`,
        output: captureTail(child, 16_384),
      });
    }
    const started = Date.now();
    await Promise.all(frontends.map((fe) => waitForHealthy(fe, 120_000)));
    log(
      `pool: ${frontends.map((f) => `${f.id} tcp 127.0.0.1:${f.tcpPort}`).join(', ')} healthy in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );

    const haproxyBin = ensureCommand('haproxy', 'haproxy', ['/usr/sbin']);
    const haproxyVersion =
      /HAProxy version \S+/.exec(spawnSync(haproxyBin, ['-v'], { encoding: 'utf8' }).stdout ?? '')?.[0] ??
      'HAProxy';
    const [lbPort, wsPort, statsPort] = await freeLoopbackPorts(3);
    const template = readFileSync(join(REPO_ROOT, 'fixtures', 'haproxy', 'parley.cfg'), 'utf8');
    const config = renderHaproxyConfig(
      template,
      {
        backends: frontends.map((fe, i) => ({
          name: fe.id,
          host: '127.0.0.1',
          sipTcpPort: fe.tcpPort,
          healthPort: ports[3 * i + 2],
          wsPort: ports[3 * i + 1],
        })),
      },
      { tcpPort: lbPort, wsPort, statsPort },
    )
      // Per-connection log lines are noise here; the bench reads the stats page.
      .replace(/^\s*log stdout .*$/m, '');
    const configPath = join(workDir, 'haproxy.cfg');
    writeFileSync(configPath, config);
    const lb = spawnTracked(haproxyBin, ['-db', '-f', configPath]);
    haproxy = lb;
    const lbTail = captureTail(lb);
    await waitForTcp('127.0.0.1', statsPort, 15_000, () => lb.exitCode === null).catch((err) => {
      throw new Error(`HAProxy did not start: ${err instanceof Error ? err.message : err}: ${lbTail()}`);
    });
    const statsUrl = `http://127.0.0.1:${statsPort}/stats`;
    await waitForBackendsUp(
      statsUrl,
      frontends.map((f) => f.id),
      20_000,
    );
    log(`haproxy: ${haproxyVersion} on tcp 127.0.0.1:${lbPort}, both front-ends UP`);
    const openDb = db;
    return {
      db: openDb,
      frontends,
      haproxy: { port: lbPort, statsUrl, pid: lb.pid ?? 0, version: haproxyVersion },
      postgres: { version: `PostgreSQL ${version}`, pid: () => postmasterPid(pgDir) },
      stop,
    };
  } catch (err) {
    const outputs = frontends.map((f) => `${f.id}: ${f.output().trim().split('\n').slice(-10).join('\n')}`);
    await stop().catch(() => undefined);
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`the pool did not start: ${why}${outputs.length ? `\n${outputs.join('\n')}` : ''}`);
  }
}

const frontendChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of frontendChildren)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/**
 * A front-end of the built CLI. Not spawnTracked: it needs its own environment, so that no
 * parley.yaml or PARLEY_* setting of the caller leaks into the pool's settings. Killed on exit.
 */
function spawnFrontend(args: string[], cwd: string): ChildProcess {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, PARLEY_CONFIG: '', PARLEY_DATABASE_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  frontendChildren.add(child);
  child.on('exit', () => frontendChildren.delete(child));
  return child;
}

/** The postmaster's pid, first line of postmaster.pid in the cluster's data folder. */
function postmasterPid(pgDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(pgDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isFinite(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * alice, bob and user0..user(N-1) living in pool1 with both HA1s (RFC 7616 3.4.2; digest
 * username = user part, realm = domain), in set-based batches of 10,000.
 */
export async function seedPoolUsers(db: Database, count: number): Promise<void> {
  await db.query(
    "INSERT INTO homes (name, kind, address) VALUES ($1, 'pool', $2) ON CONFLICT (name) DO NOTHING",
    [HOME, `sip:${HOME}.${DOMAIN};transport=tcp`],
  );
  await seedUsers(
    db,
    benchUsers(['alice', 'bob', ...Array.from({ length: count }, (_, i) => `user${i}`)]),
    DOMAIN,
    HOME,
  );
}

async function waitForHealthy(fe: Frontend, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (fe.child.exitCode !== null || fe.child.signalCode !== null)
      throw new Error(`${fe.id} exited (${fe.child.exitCode ?? fe.child.signalCode}) while starting`);
    try {
      const res = await fetch(`${fe.httpUrl}/health`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(200);
  }
  throw new Error(`${fe.id}: /health not 200 after ${timeoutMs / 1000} s (${last})`);
}

async function waitForBackendsUp(statsUrl: string, servers: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${statsUrl};csv`, { signal: AbortSignal.timeout(2_000) });
      const states = parseStatsCsv(await res.text()).filter((s) => s.backend === 'parley_sip_tcp');
      last = JSON.stringify(states.map((s) => `${s.server} ${s.status}`));
      if (servers.every((id) => states.some((s) => s.server === id && s.status === 'UP'))) return;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(200);
  }
  throw new Error(`HAProxy did not mark the front-ends UP within ${timeoutMs / 1000} s (${last})`);
}

function parleyVersion(): string {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  return `Parley ${pkg.version} (Node ${process.versions.node})`;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const round2 = (n: number) => Math.round(n * 100) / 100;

const fmt = (n: number | undefined) => (n === undefined ? '-' : n.toLocaleString('en-US'));

/** The human rendering: the two ramps as a table, then the fan-out and the held users. */
export function renderPoolTable(r: PoolSuiteResult): string {
  const header = [
    'workload',
    'best rate/s',
    'at target',
    'failed',
    'CPU % FEs/PG/LB',
    'FE RSS MiB',
    'p50/p90/p99 ms at a sustained rate',
  ];
  const rows: string[][] = [];
  for (const run of [r.signIn, r.message]) {
    if (!run) continue;
    const b = run.best;
    const s = run.sustained;
    rows.push([
      run.label,
      fmt(b?.achievedRate),
      fmt(b?.targetRate),
      b ? String(b.failed) : `${run.steps[0]?.failed ?? 0} (at ${fmt(run.steps[0]?.targetRate)}/s)`,
      b ? `${b.cpu.frontends}/${b.cpu.postgres}/${b.cpu.haproxy}` : '-',
      b ? b.frontendRssMiB.join('/') : '-',
      s?.latency ? `${s.latency.p50}/${s.latency.p90}/${s.latency.p99} @ ${fmt(s.achievedRate)}/s` : '-',
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i >= 1 && i < 6 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  const out = [
    `pool: ${r.frontends.join(', ')} (${r.servers.parley}) on ${r.servers.postgres}, ${r.servers.haproxy} in front`,
    '',
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(line),
  ];
  const p = r.presence;
  if (p) {
    out.push('');
    out.push(
      `presence fan-out: ${p.watchers} watchers of one presentity (${p.watchersPerFrontend.join(' + ')} per front-end), ${p.changes} published changes: ` +
        `${fmt(p.sent)} of ${fmt(p.expected)} NOTIFYs in ${p.seconds} s = ${fmt(p.notifyRate)} NOTIFY/s, ${p.failedWatchers} failed watchers` +
        (p.received !== undefined ? `; the watchers' SIPp received ${fmt(p.received)}` : ''),
    );
  }
  const h = r.held;
  if (h) {
    out.push('');
    out.push(
      `held: ${fmt(h.registrations)} of ${fmt(h.users)} users registered (Expires 3600) at ${fmt(h.registerPass.achievedRate)}/s, ${h.registerPass.failed} failed; ` +
        `rows per front-end ${Object.entries(h.registrationsByFrontend)
          .map(([k, v]) => `${k} ${fmt(v)}`)
          .join(', ')}`,
    );
    out.push(
      `      front-end RSS ${Object.entries(h.frontendRssMiB)
        .map(
          ([k, v]) => `${k} ${v} MiB (${h.idleRssMiB[k] ?? '?'} idle, heap used ${h.heapUsedMiB[k] ?? '?'})`,
        )
        .join(
          ', ',
        )}; PostgreSQL database ${h.databaseMiB} MiB, registrations table ${h.registrationsTableMiB} MiB (indexes included)`,
    );
  }
  out.push('');
  out.push(
    `best rate: highest achieved rate with 0 failed calls over ${r.duration} s steps (targets ${r.rates.join(', ')}/s). ` +
      'Sign-ins: two SIPp connections through HAProxy (leastconn: one per front-end), rates summed. ' +
      'MESSAGE: alice connected to front-end 1, bob to front-end 2; every MESSAGE crosses the pool.',
  );
  out.push(
    'CPU %: % of one core over the best step (both front-ends together / PostgreSQL / HAProxy); FE RSS: peak per front-end.',
  );
  return out.join('\n');
}
