/**
 * The presence suite (`npm run bench -- --presence [--vs-kamailio]`): NOTIFY fan-out driven
 * by PUBLISH, the workload of issue 16 and of ../shared/bench/kamailio-presence/ (README,
 * presence-ramp.py), here in TypeScript so it runs like the other suites.
 *
 * W watchers (user1000.., one SIPp, one TCP connection per server) each subscribe to one of
 * P presentities (user0..user(P-1), W/P watchers each). Each step targets R NOTIFY/s: P
 * publishers (one SIPp, one TCP connection) each publish K = duration / pause changes with
 * pause = W / R seconds, after an initial PUBLISH and before a removal, so the watchers must
 * receive W x (K + 2) NOTIFYs, counted at the watcher side (SIPp -trace_counts). Both
 * servers run at the same time, their steps interleaved, so background load hits both.
 *
 * Latency: every PUBLISH with a body carries its send time in its note (presence-publish.xml)
 * and every watcher logs the receive time of each NOTIFY (presence-watch.xml): per NOTIFY
 * (PUBLISH sent -> this NOTIFY received) and per change (PUBLISH sent -> the last of its
 * NOTIFYs received). Kamailio relays the published body as is; Parley composes it and keeps
 * the tuple note, so both carry the stamp.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { findKamailio, rewriteKamailioConfig, runKamailio } from './kamailio.js';
import { type BenchPool, startBenchPool } from './pool.js';
import {
  captureTail,
  ensureCommand,
  freePort,
  type LatencyPercentiles,
  machineInfo,
  memoryKiB,
  type ProfileSummary,
  processTree,
  REPO_ROOT,
  runSipp,
  SCENARIOS,
  type SipTarget,
  serverCpuProfile,
  sleep,
  spawnTracked,
  startParley,
  summariseCpuProfile,
  waitForExit,
  writeInjectionFile,
} from './sip.js';

/**
 * Target NOTIFY/s of the ramp: the anchor's pauses 1000..67 ms with 2,000 watchers, then on
 * to 25 ms, past what one core can deliver, so each server's ramp ends at its own ceiling
 * (a failed step, or a step that no longer gains on the previous one), not at the ramp's.
 */
export const PRESENCE_RATES = [2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 60_000, 80_000];
/** Watcher SIPp processes per server (one TCP connection each) unless --watcher-sipps. */
export const WATCHER_SIPPS = 2;
/** The first watcher's user number: watchers and presentities never overlap. */
const WATCHER_BASE = 1000;
/** A watcher ends its watch after this long without a NOTIFY (presence-watch.xml). */
const WATCHER_QUIET_S = 60;

export interface PresenceBenchOptions {
  watchers: number;
  presentities: number;
  rates?: number[];
  /** Seconds of changes per step (K = duration / pause). */
  duration: number;
  vsKamailio: boolean;
  profile: boolean;
  /**
   * SIPp processes the watchers are split over (one TCP connection each): one SIPp answering
   * every NOTIFY on one core would bound the rate before a server does.
   */
  watcherSipps?: number;
  /**
   * A pool of two front-ends on a throwaway PostgreSQL instead of one standard server: the
   * watchers subscribe on front-end 2, the presentities publish on front-end 1.
   */
  pool?: boolean;
  log: (line: string) => void;
}

export interface PresenceStep {
  targetRate: number;
  pauseMs: number;
  /** Changes each presentity published (K). */
  changes: number;
  /** W x (K + 2). */
  expected: number;
  received: number;
  /** NOTIFYs the watchers did not expect (SIPp answered them with -aa). */
  unexpected: number;
  /**
   * NOTIFYs that overtook the 200 to the previous one and were answered by SIPp's -aa
   * (AutoAnswered in its statistics): delivered, included in received.
   */
  outOfOrder: number;
  publisherExit: number;
  publisherFailed: number;
  /** First PUBLISH sent to the publisher's last 200. */
  publishSeconds: number;
  /** First PUBLISH sent to the counts line that first showed the last NOTIFY. */
  deliverSeconds: number;
  /** received / deliverSeconds. */
  notifyRate: number;
  /** Slope of the per-second counts strictly inside the step. */
  steadyRate?: number;
  publishRate: number;
  /** The step reached less than 90% of its target and no more than the best step before it. */
  saturated?: boolean;
  /** Server process tree, % of one core, over the delivery. */
  cpuPercent: number;
  rssMiB: number;
  pssMiB: number;
  /** PUBLISH sent -> each NOTIFY received (ms). */
  latency?: LatencyPercentiles;
  /** PUBLISH sent -> the last NOTIFY of that change received (ms). */
  lastNotifyLatency?: LatencyPercentiles;
  ok: boolean;
  error?: string;
  /** Epoch ms of the step's start and end, to assign latency samples. */
  startedAt: number;
  endedAt: number;
}

export interface PresenceRun {
  server: string;
  version: string;
  initialNotifies: number;
  steps: PresenceStep[];
  /** The fastest step with 0 failures. */
  best?: PresenceStep;
  watcherExit?: number;
  error?: string;
}

export interface PresenceSuiteResult {
  machine: ReturnType<typeof machineInfo>;
  /** Parley as one standard server, or as a pool of front-ends on PostgreSQL (--pool). */
  layout: 'standard' | 'pool';
  watchers: number;
  /** SIPp processes (TCP connections) the watchers of each server are split over. */
  watcherSipps: number;
  presentities: number;
  duration: number;
  rates: number[];
  runs: PresenceRun[];
  /** Parley's best NOTIFY/s over Kamailio's, both with 0 failures. */
  ratio?: number;
  /** The same with the steady (in-step) rates of those best steps. */
  steadyRatio?: number;
  /**
   * NOTIFYs per CPU-second of the server, Parley's over Kamailio's, at those best steps: the
   * cost of a NOTIFY, which holds on a busy machine where neither server gets the CPU it
   * could use and the rates are set by the contention.
   */
  cpuRatio?: number;
  kamailioSkipped?: string;
  profile?: ProfileSummary;
  failures: string[];
}

/**
 * One server under test, as the watchers and publishers see it: one address for both, or in
 * a pool the front-end the watchers subscribe on and the one the presentities publish on.
 */
interface PresenceSide {
  name: string;
  version: string;
  watchTarget: SipTarget;
  publishTarget: SipTarget;
  /** Every process whose CPU and memory is the server's (a pool: its front-ends and PostgreSQL). */
  pids(): number[];
}

interface Watched {
  side: PresenceSide;
  run: PresenceRun;
  /** One folder per watcher SIPp. */
  dirs: string[];
  done: Promise<unknown>;
  counts(): CountsLine[];
}

interface CountsLine {
  /** Epoch seconds. */
  t: number;
  received: number;
  unexpected: number;
}

export async function benchPresence(opts: PresenceBenchOptions): Promise<PresenceSuiteResult> {
  const { watchers: W, presentities: P, log } = opts;
  if (W < P) throw new Error(`--watchers (${W}) must be at least --presentities (${P})`);
  const rates = opts.rates ?? PRESENCE_RATES;
  const workDir = mkdtempSync(join(tmpdir(), 'parley-bench-presence-'));
  const profileDir = opts.profile ? mkdtempSync(join(tmpdir(), 'parley-bench-profile-')) : undefined;
  const sipps = Math.max(1, Math.min(opts.watcherSipps ?? WATCHER_SIPPS, W));
  const result: PresenceSuiteResult = {
    machine: machineInfo(),
    layout: opts.pool ? 'pool' : 'standard',
    watchers: W,
    watcherSipps: sipps,
    presentities: P,
    duration: opts.duration,
    rates,
    runs: [],
    failures: [],
  };
  const m = result.machine;
  log(`machine: ${m.cpus} CPUs (${m.cpuModel}), load ${m.loadAverage.join(' ')}, Node ${m.node}, ${m.sipp}`);
  const stops: Array<() => Promise<void>> = [];
  const sides: PresenceSide[] = [];
  try {
    if (opts.pool) {
      const pool = await startBenchPool(WATCHER_BASE + W, workDir, log);
      stops.push(() => pool.stop());
      sides.push(poolSide(pool));
      log(
        `pool: watchers subscribe on ${pool.frontends[1].id}, presentities publish on ${pool.frontends[0].id}`,
      );
    } else {
      const parley = await startParley({ users: WATCHER_BASE + W, cpuProfileDir: profileDir, log });
      stops.push(() => parley.stop());
      sides.push(sideOf(parley));
      log(`parley: listening on tcp 127.0.0.1:${parley.port}`);
    }
    if (opts.vsKamailio) {
      if (!findKamailio() && process.getuid?.() !== 0) {
        result.kamailioSkipped =
          'kamailio is not installed: sudo apt-get install kamailio kamailio-presence-modules';
        log(`kamailio: skipped (${result.kamailioSkipped})`);
      } else {
        const kamailio = await startPresenceKamailio();
        stops.push(() => kamailio.stop());
        sides.push(sideOf(kamailio));
        log(
          `kamailio: ${kamailio.version} (presence, presence_xml) listening on tcp 127.0.0.1:${kamailio.port}`,
        );
      }
    }
    const publisherCsv = writeInjectionFile(
      join(workDir, 'publishers.csv'),
      Array.from({ length: P }, (_, i) => ({ user: `user${i}` })),
    );
    const watched: Watched[] = [];
    for (const side of sides) {
      const run: PresenceRun = {
        server: side.name,
        version: side.version,
        initialNotifies: 0,
        steps: [],
      };
      result.runs.push(run);
      // Watcher SIPp i takes every sipps-th watcher from i: each presentity's watchers spread
      // over all of them.
      const dirs: string[] = [];
      const runs: Promise<unknown>[] = [];
      for (let i = 0; i < sipps; i++) {
        const dir = join(workDir, `watch-${side.name}-${i}`);
        const mine = Array.from({ length: W }, (_, k) => k).filter((k) => k % sipps === i);
        const injection = writeInjectionFile(
          join(workDir, `watchers-${i}.csv`),
          mine.map((k) => ({ user: `user${WATCHER_BASE + k}`, extra: `user${k % P}` })),
        );
        dirs.push(dir);
        runs.push(
          runSipp({
            target: side.watchTarget,
            scenario: join(SCENARIOS, 'presence-watch.xml'),
            injection,
            calls: mine.length,
            rate: 500,
            callLimit: mine.length + 10,
            dir,
            timeoutSeconds: 3_600,
            noRecvTimeout: true,
            // -aa: a NOTIFY that overtakes the 200 to the previous one is answered, not lost.
            extra: ['-aa', '-trace_counts', '-trace_logs'],
          }).then((r) => {
            if (r.exit !== 0 || run.watcherExit === undefined) run.watcherExit = r.exit;
            return r;
          }),
        );
      }
      watched.push({
        side,
        run,
        dirs,
        done: Promise.all(runs),
        counts: () => mergeCounts(dirs.map(readCounts)),
      });
    }
    log(
      `watchers: ${W} (user${WATCHER_BASE}..) subscribing to ${P} presentities (user0..) on each server, over ${sipps} SIPp`,
    );
    for (const w of watched) {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && (w.counts().at(-1)?.received ?? 0) < W) await sleep(250);
      w.run.initialNotifies = w.counts().at(-1)?.received ?? 0;
      log(`  ${w.side.name}: ${w.run.initialNotifies} initial NOTIFYs`);
      if (w.run.initialNotifies < W)
        w.run.error = `only ${w.run.initialNotifies} of ${W} watchers subscribed`;
    }

    // A server's ramp goes on until a step fails, or two steps in a row saturated: one step
    // that gained nothing may be a moment of background load on a shared machine.
    const goesOn = (w: Watched) => {
      const [prev, last] = w.run.steps.slice(-2);
      return !w.run.error && (!last || (last.ok && !(last.saturated && prev?.saturated)));
    };
    for (const [si, rate] of rates.entries()) {
      if (!watched.some(goesOn)) break;
      const pauseMs = Math.max(1, Math.round((W * 1000) / rate));
      const changes = Math.max(1, Math.round((opts.duration * 1000) / pauseMs));
      log(
        `step ${si + 1}: ${rate.toLocaleString('en-US')} NOTIFY/s target (pause ${pauseMs} ms, ${changes} changes)`,
      );
      for (const w of watched) {
        if (!goesOn(w)) continue;
        await sleep(2_500);
        const step = await publishStep(w, {
          rate,
          pauseMs,
          changes,
          W,
          P,
          publisherCsv,
          dir: join(workDir, `publish-${w.side.name}-${si}`),
        });
        const before = w.run.steps.filter((x) => x.ok);
        const bestBefore = Math.max(0, ...before.map((x) => x.notifyRate));
        step.saturated = step.ok && step.notifyRate < 0.9 * rate && step.notifyRate <= 1.05 * bestBefore;
        w.run.steps.push(step);
        log(
          `  ${w.side.name}: ${step.received}/${step.expected} NOTIFYs, ${step.notifyRate.toLocaleString('en-US')}/s` +
            ` (steady ${step.steadyRate?.toLocaleString('en-US') ?? '-'}), ${step.publishRate} PUBLISH/s,` +
            ` CPU ${step.cpuPercent}%, RSS ${step.rssMiB} MiB${step.error ? ` (${step.error})` : ''}` +
            (step.saturated ? ': saturated' : ''),
        );
      }
    }
    log(`watchers: waiting for them to end their watch (${WATCHER_QUIET_S} s without a NOTIFY)`);
    await Promise.all(watched.map((w) => w.done));
    for (const w of watched) {
      attachLatencies(w.run.steps, w.dirs.flatMap(readLatencySamples));
      w.run.best = w.run.steps
        .filter((s) => s.ok)
        .reduce<PresenceStep | undefined>((a, s) => (!a || s.notifyRate > a.notifyRate ? s : a), undefined);
      const first = w.run.steps[0];
      if (w.run.error) result.failures.push(`${w.run.server}: ${w.run.error}`);
      else if (first && !first.ok)
        result.failures.push(
          `${w.run.server}: failed at the lowest rate (${first.targetRate}/s): ${first.error}`,
        );
    }
    const [p, k] = [
      result.runs.find((r) => r.server === 'parley'),
      result.runs.find((r) => r.server === 'kamailio'),
    ];
    if (p?.best && k?.best) {
      result.ratio = round2(p.best.notifyRate / k.best.notifyRate);
      if (p.best.steadyRate && k.best.steadyRate)
        result.steadyRatio = round2(p.best.steadyRate / k.best.steadyRate);
      const perCpu = (s: PresenceStep) => s.notifyRate / Math.max(1, s.cpuPercent);
      result.cpuRatio = round2(perCpu(p.best) / perCpu(k.best));
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err) => log(`stopping a server: ${err}`));
    rmSync(workDir, { recursive: true, force: true });
  }
  if (profileDir) {
    const file = serverCpuProfile(profileDir);
    if (file) result.profile = summariseCpuProfile(file);
  }
  return result;
}

/** A server that takes the watchers and the publishers on one address. */
function sideOf(target: SipTarget): PresenceSide {
  return {
    name: target.name,
    version: target.version,
    watchTarget: target,
    publishTarget: target,
    pids: () => target.pids(),
  };
}

/**
 * The pool: watchers on front-end 2, publishers on front-end 1, so every change crosses
 * PostgreSQL (the publication's row and its change notification) before any NOTIFY. Its CPU
 * and memory are both front-ends' and PostgreSQL's.
 */
function poolSide(pool: BenchPool): PresenceSide {
  const target = (fe: BenchPool['frontends'][number]): SipTarget => ({
    name: fe.id,
    version: pool.postgres.version,
    host: '127.0.0.1',
    port: fe.tcpPort,
    pids: () => (fe.child.pid ? processTree(fe.child.pid) : []),
    stop: async () => undefined,
  });
  const [fe1, fe2] = pool.frontends;
  return {
    name: 'parley-pool',
    version: `2 front-ends, ${pool.postgres.version}`,
    watchTarget: target(fe2),
    publishTarget: target(fe1),
    pids: () => {
      const pg = pool.postgres.pid();
      return [...target(fe1).pids(), ...target(fe2).pids(), ...(pg ? processTree(pg) : [])];
    },
  };
}

async function publishStep(
  w: Watched,
  s: {
    rate: number;
    pauseMs: number;
    changes: number;
    W: number;
    P: number;
    publisherCsv: string;
    dir: string;
  },
): Promise<PresenceStep> {
  const expected = s.W * (s.changes + 2);
  const before = w.counts().at(-1) ?? { t: 0, received: 0, unexpected: 0 };
  const autoBefore = sum(w.dirs.map(readAutoAnswered));
  const pids = w.side.pids();
  const cpu0 = cpuSeconds(pids);
  const startedAt = Date.now();
  let peak = memoryKiB(pids);
  // The last time the watchers' count moved, with the server's CPU time then.
  let lastMove = { at: startedAt, cpu: cpu0, received: before.received };
  let publisherDone = false;
  const publisher = runSipp({
    target: w.side.publishTarget,
    scenario: join(SCENARIOS, 'presence-publish.xml'),
    injection: s.publisherCsv,
    calls: s.P,
    rate: s.P * 10,
    callLimit: s.P + 10,
    dir: s.dir,
    timeoutSeconds: 120,
    extra: ['-set', 'changes', String(s.changes), '-set', 'pausems', String(s.pauseMs)],
  }).finally(() => {
    publisherDone = true;
  });
  // Until every NOTIFY arrived (and the publisher is done), or nothing moved for 2.5 s.
  for (;;) {
    await sleep(100);
    const mem = memoryKiB(pids);
    peak = { rss: Math.max(peak.rss, mem.rss), pss: Math.max(peak.pss, mem.pss) };
    const now = w.counts().at(-1)?.received ?? 0;
    if (now !== lastMove.received) lastMove = { at: Date.now(), cpu: cpuSeconds(pids), received: now };
    const quiet = Date.now() - lastMove.at;
    if (publisherDone && (quiet > 5_000 || (now - before.received >= expected && quiet > 1_200))) break;
  }
  const pub = await publisher;
  const lines = w.counts();
  const final = lines.at(-1) ?? before;
  const outOfOrder = sum(w.dirs.map(readAutoAnswered)) - autoBefore;
  const received = final.received - before.received + outOfOrder;
  const unexpected = final.unexpected - before.unexpected;
  // The counts line that first showed the final value: when the last NOTIFY arrived.
  const tLast = (lines.find((l) => l.received === final.received)?.t ?? lastMove.at / 1000) * 1000;
  const deliverSeconds = Math.max(0.001, (tLast - startedAt) / 1000);
  const inside = lines.filter((l) => l.t * 1000 >= startedAt + 1000 && l.t * 1000 <= tLast - 1000);
  const steadyRate =
    inside.length >= 3
      ? Math.round(
          (inside[inside.length - 1].received - inside[0].received) /
            (inside[inside.length - 1].t - inside[0].t),
        )
      : undefined;
  const cpuWall = Math.max(0.001, (lastMove.at - startedAt) / 1000);
  const publisherFailed = pub.stats?.failed ?? 0;
  const step: PresenceStep = {
    targetRate: s.rate,
    pauseMs: s.pauseMs,
    changes: s.changes,
    expected,
    received,
    unexpected,
    outOfOrder,
    publisherExit: pub.exit,
    publisherFailed,
    publishSeconds: round2(pub.stats?.seconds ?? 0),
    deliverSeconds: round2(deliverSeconds),
    notifyRate: Math.round(received / deliverSeconds),
    steadyRate,
    publishRate: pub.stats?.seconds ? Math.round((s.P * (s.changes + 2)) / pub.stats.seconds) : 0,
    cpuPercent: Math.round(((lastMove.cpu - cpu0) / cpuWall) * 100),
    rssMiB: round1(peak.rss / 1024),
    pssMiB: round1(peak.pss / 1024),
    ok: false,
    startedAt,
    endedAt: Math.max(tLast, lastMove.at),
  };
  const problems: string[] = [];
  if (received !== expected) problems.push(`${received} of ${expected} NOTIFYs received`);
  if (unexpected > 0) problems.push(`${unexpected} unexpected NOTIFYs`);
  if (pub.exit !== 0 || publisherFailed > 0)
    problems.push(
      `publisher SIPp exit ${pub.exit}, ${publisherFailed} failed calls${firstError(pub.errors)}`,
    );
  step.ok = problems.length === 0;
  if (!step.ok) step.error = problems.join('; ');
  return step;
}

function firstError(errors: string): string {
  const line = errors
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l && !l.startsWith('The following events'));
  return line ? `: ${line.slice(0, 200)}` : '';
}

/** SIPp's AutoAnswered(C) from the watchers' statistics file (-trace_stat, once a second). */
function readAutoAnswered(dir: string): number {
  const file = join(dir, 'stat.csv');
  if (!existsSync(file)) return 0;
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  if (lines.length < 2) return 0;
  const i = lines[0].split(';').indexOf('AutoAnswered(C)');
  return i < 0 ? 0 : Number(lines[lines.length - 1].split(';')[i]) || 0;
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/**
 * The counts of several watcher SIPp as one: at every time any of them wrote a line, the sum
 * of each one's latest line at or before it.
 */
function mergeCounts(each: CountsLine[][]): CountsLine[] {
  if (each.length === 1) return each[0];
  const times = [...new Set(each.flatMap((lines) => lines.map((l) => l.t)))].sort((a, b) => a - b);
  const at = each.map(() => -1);
  return times.map((t) => {
    const line: CountsLine = { t, received: 0, unexpected: 0 };
    each.forEach((lines, i) => {
      while (at[i] + 1 < lines.length && lines[at[i] + 1].t <= t) at[i]++;
      const last = lines[at[i]];
      if (last) {
        line.received += last.received;
        line.unexpected += last.unexpected;
      }
    });
    return line;
  });
}

/** The watchers' -trace_counts file: one cumulative line per second. */
function readCounts(dir: string): CountsLine[] {
  const file = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('_counts.csv')) : undefined;
  if (!file) return [];
  const lines = readFileSync(join(dir, file), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  if (lines.length < 2) return [];
  const head = lines[0].split(';').map((h) => h.trim());
  // The watch loop's NOTIFY is the scenario's first NOTIFY receive.
  const ri = head.findIndex((h) => /^\d+_NOTIFY_Recv$/.test(h));
  const ui = head.findIndex((h) => /^\d+_NOTIFY_Unexp$/.test(h));
  const out: CountsLine[] = [];
  for (const line of lines.slice(1)) {
    const f = line.split(';');
    const t = Number(f[0]?.split('\t')[2]);
    if (!Number.isFinite(t)) continue;
    out.push({ t, received: Number(f[ri]) || 0, unexpected: ui >= 0 ? Number(f[ui]) || 0 : 0 });
  }
  return out;
}

interface LatencySample {
  /** The change: presentity and its PUBLISH's send stamp. */
  change: string;
  sentMs: number;
  latencyMs: number;
}

/**
 * The watchers' log lines "lat <call> <presentity> sent <ms> <s> <us>": one per NOTIFY. A
 * NOTIFY without a stamp (the initial and removal ones) repeats the previous stamp or has
 * none; only the first NOTIFY of a watcher per stamp counts.
 */
function readLatencySamples(dir: string): LatencySample[] {
  const file = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('_logs.log')) : undefined;
  if (!file) return [];
  const seen = new Set<string>();
  const out: LatencySample[] = [];
  for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
    const m = /lat (\d+) (\S+) sent ([\d.]+) ([\d.]+) ([\d.]+)/.exec(line);
    if (!m) continue;
    // Call numbers are per SIPp: one watcher is its folder and its call number.
    const key = `${dir} ${m[1]} ${m[3]}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const sentMs = Number(m[3]);
    const receivedMs = Number(m[4]) * 1000 + Number(m[5]) / 1000;
    out.push({ change: `${m[2]} ${m[3]}`, sentMs, latencyMs: receivedMs - sentMs });
  }
  return out;
}

function attachLatencies(steps: PresenceStep[], samples: LatencySample[]): void {
  for (const step of steps) {
    const mine = samples.filter((x) => x.sentMs >= step.startedAt - 50 && x.sentMs <= step.endedAt);
    step.latency = percentiles(mine.map((x) => x.latencyMs));
    const lastPerChange = new Map<string, number>();
    for (const x of mine)
      lastPerChange.set(x.change, Math.max(lastPerChange.get(x.change) ?? 0, x.latencyMs));
    step.lastNotifyLatency = percentiles([...lastPerChange.values()]);
  }
}

function percentiles(values: number[]): LatencyPercentiles | undefined {
  if (values.length === 0) return undefined;
  values.sort((a, b) => a - b);
  const at = (q: number) => Math.round(values[Math.min(values.length - 1, Math.floor(q * values.length))]);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), samples: values.length };
}

const CLOCK_TICKS = 100;

function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks / CLOCK_TICKS;
}

/**
 * The presence anchor folder: ../shared/bench/kamailio-presence beside the checkout when
 * present, else the copy under bench/kamailio-presence/.
 */
function presenceConfigDir(): string {
  const shared = resolve(REPO_ROOT, '..', 'shared', 'bench', 'kamailio-presence');
  if (existsSync(join(shared, 'kamailio-presence.cfg'))) return shared;
  return join(REPO_ROOT, 'bench', 'kamailio-presence');
}

/**
 * Kamailio with the presence anchor's cfg (presence + presence_xml, in memory; the SQLite
 * file only backs module start-up), listen port and paths rewritten, in the foreground.
 */
async function startPresenceKamailio(): Promise<SipTarget> {
  const binary = ensureCommand('kamailio', 'kamailio', ['/usr/sbin']);
  const sqlite = ensureCommand('sqlite3', 'sqlite3', ['/usr/bin']);
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-kamailio-presence-'));
  const port = await freePort();
  const db = join(dir, 'presence.db');
  const schemaDir = '/usr/share/kamailio/db_sqlite';
  if (!existsSync(join(schemaDir, 'presence-create.sql'))) {
    // The SQLite schema files come with the module packages.
    ensureCommand('true', 'kamailio-sqlite-modules');
    ensureCommand('true', 'kamailio-presence-modules');
  }
  for (const schema of ['standard-create.sql', 'presence-create.sql']) {
    const child = spawnTracked(sqlite, [db, `.read ${join(schemaDir, schema)}`]);
    const tail = captureTail(child);
    if ((await waitForExit(child, 30_000)) !== 0) throw new Error(`sqlite3 ${schema}: ${tail()}`);
  }
  const cfg = rewriteKamailioConfig(
    readFileSync(join(presenceConfigDir(), 'kamailio-presence.cfg'), 'utf8'),
    port,
  )
    .replace(/sqlite:\/\/presence\.db/g, `sqlite://${db}`)
    .replace(/(sip:presence@127\.0\.0\.1:)\d+/, `$1${port}`);
  const cfgPath = join(dir, 'kamailio-presence.cfg');
  writeFileSync(cfgPath, cfg);
  return runKamailio(binary, dir, cfgPath, port, 'Kamailio (presence)');
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const round2 = (n: number) => Math.round(n * 100) / 100;
const fmt = (n: number | undefined) => (n === undefined ? '-' : n.toLocaleString('en-US'));
const lat = (l: LatencyPercentiles | undefined) => (l ? `${l.p50}/${l.p90}/${l.p99}` : '-');

/** One row per step and server, then the ratio and how to read it. */
export function renderPresenceTable(r: PresenceSuiteResult): string {
  const header = [
    'target NOTIFY/s',
    'server',
    'NOTIFY/s',
    'steady',
    'PUBLISH/s',
    'received/expected',
    'CPU %',
    'NOTIFY/CPU-s',
    'RSS MiB',
    'per NOTIFY p50/p90/p99 ms',
    'last NOTIFY p50/p90/p99 ms',
    '',
  ];
  const rows: string[][] = [];
  for (const rate of r.rates) {
    for (const run of r.runs) {
      const s = run.steps.find((x) => x.targetRate === rate);
      if (!s) continue;
      rows.push([
        fmt(rate),
        run.server,
        fmt(s.notifyRate),
        fmt(s.steadyRate),
        fmt(s.publishRate),
        `${fmt(s.received)}/${fmt(s.expected)}${s.outOfOrder ? ` (${s.outOfOrder} by -aa)` : ''}`,
        String(s.cpuPercent),
        fmt(Math.round((s.notifyRate * 100) / Math.max(1, s.cpuPercent))),
        String(run.server === 'parley' ? s.rssMiB : s.pssMiB),
        lat(s.latency),
        lat(s.lastNotifyLatency),
        s.ok
          ? [run.best === s ? 'best' : '', s.saturated ? 'saturated' : ''].filter(Boolean).join(', ')
          : `FAILED: ${s.error ?? ''}`,
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 1 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line), ''];
  for (const run of r.runs)
    out.push(
      `${run.server} (${run.version}): best ${fmt(run.best?.notifyRate)} NOTIFY/s with 0 failures` +
        (run.best ? ` at target ${fmt(run.best.targetRate)}/s, CPU ${run.best.cpuPercent}%` : '') +
        (run.error ? `; ${run.error}` : ''),
    );
  if (r.ratio !== undefined)
    out.push(
      `ratio Parley/Kamailio: ${r.ratio.toFixed(2)} (steady rates: ${r.steadyRatio?.toFixed(2) ?? '-'}; NOTIFYs per CPU-second: ${r.cpuRatio?.toFixed(2) ?? '-'})`,
    );
  if (r.kamailioSkipped) out.push(`Kamailio not measured: ${r.kamailioSkipped}`);
  out.push(
    r.layout === 'pool'
      ? 'Parley as a pool: two front-ends on one PostgreSQL; the watchers on front-end 2, the publishers on front-end 1; CPU and memory (summed PSS): both front-ends plus PostgreSQL.'
      : 'Parley as one standard server (embedded store).',
    `${r.watchers} watchers (${r.watcherSipps} SIPp, one TCP connection each, per server) of ${r.presentities} presentities (one SIPp publisher per step);`,
    `each step publishes ${r.duration} s of changes per presentity, plus the initial PUBLISH and the removal: NOTIFYs = watchers x (changes + 2), counted at the watchers.`,
    'received includes NOTIFYs that overtook the 200 to the previous one, answered by SIPp -aa ("by -aa"): delivered, in order of sending.',
    'NOTIFY/s = received / (first PUBLISH -> counts line showing the last NOTIFY); steady = per-second slope inside the step; the publisher waits for each 200,',
    "so a target above what a server sustains stretches the step; a server's ramp ends at its first failed step or after two saturated steps in a row",
    '(under 90% of the target and no more than the best step before). CPU % of one core, server process tree. RSS: Parley VmRSS; Kamailio summed PSS.',
    'NOTIFY/CPU-s = NOTIFY/s per second of server CPU: on a busy machine both servers get less CPU than they could use and their rates converge; this does not.',
    'Latency: PUBLISH sent (stamped in its body) -> NOTIFY received at the watcher, per NOTIFY and per change (its last NOTIFY); SIPp on the same cores.',
    `Machine at start: ${r.machine.cpus} CPUs, load ${r.machine.loadAverage.join(' ')}: figures taken beside other work are noisy; compare servers of one run.`,
  );
  return out.join('\n');
}
