import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import type { Command } from '@oclif/core';
import { Listr } from 'listr2';
import { CliError, fromCatalogued } from '../cli/errors.js';
import { CentralDirectory } from '../directory/central.js';
import { type DirectoryConfig, parseDirectoryConfig } from '../directory/config.js';
import { normalizeDn } from '../directory/groups.js';
import { connectLdap } from '../directory/ldap.js';
import type { WaveRecord, WaveUserRecord, WaveUserState } from '../store/migration-journal.js';
import { DataFolderInUseError } from '../store/open.js';
import { isConnectionLost } from '../store/sql.js';
import type { Store } from '../store/store.js';
import { MigrationError } from './errors.js';
import { readGroupMembers, readSipEnabledWithMemberOf } from './groups.js';
import {
  MigrationInterruptedError,
  moveWave,
  type WaveMoveOptions,
  type WaveProgress,
  type WaveRunSummary,
} from './mover.js';
import { type DirectoryPlacementInfo, findWave, parsePlan, type Wave, type WavePlan } from './plan.js';
import {
  closeHomeStores,
  type HomeStore,
  openHomeStores,
  type ResolvedLocation,
  resolveLocation,
} from './stores.js';
import { type VerifySummary, verifyWave } from './verify.js';

/**
 * What the `parley migrate` commands share: reading a plan and opening the stores it names,
 * progress (listr2 in a terminal, plain lines otherwise), the per-user report file, and the
 * human rendering of results. The commands stay thin.
 */

export interface LoadedPlan {
  plan: WavePlan;
  file: string;
  baseDir: string;
}

export function loadPlan(file: string): LoadedPlan {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new MigrationError('MIGRATION_PLAN_INVALID', `cannot read ${file}: ${(err as Error).message}`);
  }
  return { plan: parsePlan(text, file), file, baseDir: dirname(resolve(file)) };
}

/** Opens the stores of the given homes as the plan names them; the caller closes them. */
export async function openPlanStores(
  loaded: LoadedPlan,
  homes: string[],
  env: Record<string, string | undefined>,
): Promise<Map<string, HomeStore>> {
  const where = new Map<string, ResolvedLocation>();
  for (const home of homes) {
    const location = loaded.plan.stores[home];
    if (!location)
      throw new MigrationError('MIGRATION_STORE_MISSING', `the plan names no store for home ${home}`);
    where.set(home, resolveLocation(home, location, env, loaded.baseDir));
  }
  return openHomeStores(where);
}

export interface Display {
  interactive: boolean;
  log: (line: string) => void;
}

/** The wave moves (or moves back) with progress per step. */
export async function moveWaveWithProgress(
  opts: Omit<WaveMoveOptions, 'onProgress'>,
  display: Display,
): Promise<WaveRunSummary> {
  if (!display.interactive || opts.dryRun) {
    let last = '';
    let lastAt = 0;
    return moveWave({
      ...opts,
      onProgress: (p) => {
        // Phase changes and one line every 5 s: CI logs stay readable for a wave of thousands.
        if (p.phase !== last || Date.now() - lastAt > 5000 || p.done === p.total) {
          display.log(`${opts.wave.name}: ${p.phase} ${p.done}/${p.total}`);
          last = p.phase;
          lastAt = Date.now();
        }
      },
    });
  }
  const phases: WaveProgress['phase'][] = ['copy', 'place', 'sign-out', 'verify'];
  const titles: Record<WaveProgress['phase'], string> = {
    copy: 'Copy accounts and contact lists',
    place: 'Switch placement in the new home',
    'sign-out': 'Sign out in the old home (paced)',
    verify: 'Verify both homes',
  };
  let result: WaveRunSummary | undefined;
  let failure: unknown;
  const waiters = new Map<string, () => void>();
  const reached = new Map<string, Promise<void>>();
  for (const p of phases) reached.set(p, new Promise<void>((r) => waiters.set(p, r)));
  const outputs = new Map<string, (text: string) => void>();
  const finished = moveWave({
    ...opts,
    onProgress: (p) => {
      for (const earlier of phases.slice(0, phases.indexOf(p.phase) + 1)) waiters.get(earlier)?.();
      outputs.get(p.phase)?.(`${p.done}/${p.total}`);
    },
  }).then(
    (r) => {
      result = r;
      for (const w of waiters.values()) w();
    },
    (err: unknown) => {
      failure = err;
      for (const w of waiters.values()) w();
    },
  );
  const tasks = new Listr(
    phases.map((phase, i) => ({
      title: titles[phase],
      task: async (_ctx: unknown, task: { output: string; title: string; skip: (m?: string) => void }) => {
        outputs.set(phase, (text) => {
          task.output = text;
        });
        await reached.get(phase);
        const next = phases[i + 1];
        if (next) await Promise.race([reached.get(next), finished]);
        else await finished;
        if (failure) throw failure instanceof Error ? failure : new Error(String(failure));
      },
    })),
    { concurrent: false, exitOnError: true, rendererOptions: { collapseErrors: false } },
  );
  await tasks.run().catch(() => undefined);
  await finished;
  if (failure) throw failure;
  return result!;
}

/** The per-user report of a run: JSON for .json files, CSV otherwise. */
export function writeReport(file: string, summary: WaveRunSummary): void {
  const rows = [...summary.successes, ...summary.failures];
  if (extname(file).toLowerCase() === '.json') {
    writeFileSync(
      file,
      `${JSON.stringify({ ...summary, successes: undefined, failures: undefined, users: rows }, null, 2)}\n`,
    );
    return;
  }
  const header = [
    'aor',
    'from',
    'to',
    'action',
    'state',
    'contacts',
    'groups',
    'rules',
    'realms',
    'checksum',
    'error',
  ];
  const cell = (v: unknown) => {
    const text = v === undefined ? '' : Array.isArray(v) ? v.join(' ') : String(v);
    return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  const lines = [header.join(',')];
  for (const r of rows) {
    lines.push(
      [
        r.aor,
        summary.from,
        summary.to,
        r.action,
        r.state,
        r.contacts,
        r.groups,
        r.rules,
        r.realms,
        r.checksum,
        r.error,
      ]
        .map(cell)
        .join(','),
    );
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}

export function runLines(s: WaveRunSummary): string[] {
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
  const verb = s.direction === 'forward' ? 'moved' : 'returned';
  const lines: string[] = [];
  if (s.dryRun) {
    lines.push(
      `dry run, nothing written: wave ${s.wave} would move ${s.moved} user(s) from ${s.from} to ${s.to} (${s.alreadyDone} already done, ${s.failed} cannot move)`,
    );
    for (const u of s.successes.filter((x) => x.action.startsWith('would')).slice(0, 50)) {
      lines.push(
        `  ${u.aor}: ${u.contacts} contact(s), ${u.groups} group(s), ${u.rules} rule(s), secrets for ${u.realms?.join(' ') || 'no realm'}`,
      );
    }
    if (s.moved > 50) lines.push(`  ... and ${s.moved - 50} more (--json or --report lists all)`);
  } else if (s.status === 'nothing-to-do') {
    lines.push(
      `wave ${s.wave} is already ${s.direction === 'forward' ? 'done' : 'rolled back'}: nothing to do`,
    );
  } else {
    lines.push(
      `wave ${s.wave}: ${s.status}: ${s.moved} user(s) ${verb} from ${s.from} to ${s.to}${s.resumed ? ' (resumed an interrupted run)' : ''}, ${s.alreadyDone} already done, ${s.failed} failed, in ${secs(s.timings.totalMs)} (copy ${secs(s.timings.copyMs)}, sign-outs at ${s.signOutRate}/s ${secs(s.timings.signOutMs)})`,
    );
  }
  for (const f of s.failures.slice(0, 20)) lines.push(`  failed: ${f.aor}: ${f.error}`);
  if (s.failures.length > 20) lines.push(`  ... and ${s.failures.length - 20} more failures`);
  if (s.verify) lines.push(...verifyLines(s.verify));
  return lines;
}

export function verifyLines(v: VerifySummary): string[] {
  const lines = [
    `verify ${v.wave}: ${v.ok ? 'ok' : 'MISMATCH'}: ${v.matched}/${v.users} user(s) match (source store holds ${v.counts.source}, target ${v.counts.target}; expected home ${v.expectedHome})`,
  ];
  for (const m of v.mismatches.slice(0, 20)) lines.push(`  ${m.aor}: ${m.problems.join('; ')}`);
  if (v.mismatches.length > 20) lines.push(`  ... and ${v.mismatches.length - 20} more (--json lists all)`);
  return lines;
}

/** `parley migrate verify`: compares the wave's users and marks the wave done when they match. */
export async function verifyPlannedWave(opts: {
  plan: WavePlan;
  wave: Wave;
  source: Store;
  target: Store;
}): Promise<VerifySummary & { state?: string }> {
  const journal = opts.target.migrationJournal;
  const record = await journal.getWave(opts.wave.name);
  if (!record) throw new MigrationError('MIGRATION_WAVE_STATE', `wave ${opts.wave.name} was never run`);
  const users = await journal.waveUsers(opts.wave.name);
  const back = record.state === 'rolled-back' || record.state === 'rolling-back';
  const summary = await verifyWave({
    wave: opts.wave.name,
    aors: users.filter((u) => u.state === (back ? 'returned' : 'moved')).map((u) => u.aor),
    source: { home: opts.wave.from, store: opts.source },
    target: { home: opts.plan.target, store: opts.target },
    expectedHome: back ? opts.wave.from : opts.plan.target,
    requireTarget: !back,
  });
  const unfinished = users.filter((u) => u.state !== (back ? 'returned' : 'moved'));
  for (const u of unfinished) {
    summary.mismatches.push({
      aor: u.aor,
      problems: [`not ${back ? 'returned' : 'moved'} yet (${u.state})`],
    });
  }
  summary.ok = summary.mismatches.length === 0;
  if (!back && (record.state === 'moved' || record.state === 'done')) {
    await journal.setWaveState(opts.wave.name, summary.ok ? 'done' : 'moved', {
      verified: summary.ok,
      summary: {
        ...(record.summary ?? {}),
        verify: { ok: summary.ok, matched: summary.matched, mismatches: summary.mismatches.slice(0, 100) },
      },
    });
  }
  return { ...summary, state: (await journal.getWave(opts.wave.name))?.state };
}

export interface WaveStatus {
  name: string;
  from: string;
  to: string;
  /** planned: in the plan, never run. */
  state: WaveRecord['state'] | 'planned';
  users: number;
  byState: Partial<Record<WaveUserState, number>>;
  startedAt?: string;
  finishedAt?: string;
  verifiedAt?: string;
  userStates?: WaveUserRecord[];
}

export interface MigrationStatus {
  target: string;
  waves: WaveStatus[];
}

/** Every wave of the plan (and any other the journal knows), with its users' steps. */
export async function migrationStatus(opts: {
  target: Store;
  targetHome: string;
  plan?: WavePlan;
  wave?: string;
  withUsers?: boolean;
}): Promise<MigrationStatus> {
  const journal = opts.target.migrationJournal;
  const recorded = new Map((await journal.listWaves()).map((w) => [w.name, w]));
  const names = [...new Set([...(opts.plan?.waves.map((w) => w.name) ?? []), ...recorded.keys()])];
  if (opts.wave) {
    if (!names.includes(opts.wave)) {
      throw new MigrationError('MIGRATION_WAVE_NOT_FOUND', `no wave ${opts.wave} in the plan or the journal`);
    }
    names.splice(0, names.length, opts.wave);
  }
  const waves: WaveStatus[] = [];
  for (const name of names) {
    const r = recorded.get(name);
    const planned = opts.plan?.waves.find((w) => w.name === name);
    const status: WaveStatus = {
      name,
      from: r?.sourceHome ?? planned?.from ?? '',
      to: r?.targetHome ?? opts.plan?.target ?? opts.targetHome,
      state: r?.state ?? 'planned',
      users: r?.users ?? planned?.users.length ?? 0,
      byState: r ? await journal.countByState(name) : { pending: planned?.users.length ?? 0 },
      startedAt: r?.startedAt.toISOString(),
      finishedAt: r?.finishedAt?.toISOString(),
      verifiedAt: r?.verifiedAt?.toISOString(),
    };
    if (opts.withUsers) {
      status.userStates = r
        ? await journal.waveUsers(name)
        : (planned?.users ?? []).map((aor) => ({ aor, state: 'pending' as const }));
    }
    waves.push(status);
  }
  return { target: opts.targetHome, waves };
}

export function statusLines(s: MigrationStatus): string[] {
  const rows = s.waves.map((w) => [
    w.name,
    w.from,
    w.to,
    w.state,
    String(w.users),
    Object.entries(w.byState)
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
    w.verifiedAt ?? '',
  ]);
  const header = ['WAVE', 'FROM', 'TO', 'STATE', 'USERS', 'STEPS', 'VERIFIED'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  const lines = [fmt(header), ...rows.map(fmt)];
  for (const w of s.waves) {
    for (const u of w.userStates ?? [])
      lines.push(`  ${w.name} ${u.aor} ${u.state}${u.error ? ` (${u.error})` : ''}`);
  }
  if (s.waves.length === 0) lines.push('no waves planned or run');
  return lines;
}

/**
 * Each SIP-enabled user's entry in the central forest (its DN, whose parent is its OU), for
 * `parley migrate plan --by ou`; with `by` = `group`, also the groups the user is a direct
 * member of (groupOfNames/groupOfUniqueNames under the base, and `memberOf` where the
 * server keeps it). Reads parley.yaml's directory section.
 */
export async function readDirectoryPlacements(
  rawDirectory: unknown,
  file: string,
  env: Record<string, string | undefined>,
  by: 'ou' | 'group' = 'ou',
): Promise<Map<string, DirectoryPlacementInfo>> {
  if (rawDirectory === undefined) {
    throw new MigrationError(
      'MIGRATION_PLAN_INVALID',
      `--by ${by} needs the directory: ${file} has no directory section (docs/directory.md)`,
    );
  }
  let config: DirectoryConfig;
  try {
    config = parseDirectoryConfig(rawDirectory, { file });
  } catch (err) {
    throw new MigrationError('MIGRATION_PLAN_INVALID', (err as Error).message);
  }
  const out = new Map<string, DirectoryPlacementInfo>();
  if (by === 'group') {
    const client = await connectLdap(config.central, { env });
    try {
      const members = await readGroupMembers(client, config.central);
      for await (const page of readSipEnabledWithMemberOf(client, config.central)) {
        for (const entry of page) {
          const groups = new Map<string, string>();
          for (const g of [...(members.get(normalizeDn(entry.dn)) ?? []), ...entry.memberOf])
            if (!groups.has(normalizeDn(g))) groups.set(normalizeDn(g), g);
          out.set(entry.aor, { dn: entry.dn, groups: [...groups.values()] });
        }
      }
    } finally {
      await client.unbind().catch(() => undefined);
    }
    return out;
  }
  const central = await CentralDirectory.connect(config.central, env);
  try {
    for await (const page of central.sipEnabled()) {
      for (const entry of page)
        if (entry.sipAddress) out.set(entry.sipAddress.toLowerCase(), { dn: entry.dn });
    }
  } finally {
    await central.close();
  }
  return out;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOENT', 'ENOTFOUND', 'ETIMEDOUT', '3D000', '28P01', '28000']);

/**
 * command.error() for a catalogued failure. oclif takes the exit status of a --json run
 * from `exitCode` on the error but of a human run from `oclif.exit`: set both.
 */
function failCommand(command: Command, err: CliError): never {
  try {
    command.error(err.message, err.toErrorOptions());
  } catch (thrown) {
    (thrown as { exitCode?: number }).exitCode = err.exit;
    throw thrown;
  }
}

/** Turns a migration's failure into the command's error: catalogued code, exit status, next step. */
export function failMigrationCommand(command: Command, err: unknown): never {
  if (err instanceof MigrationInterruptedError) {
    command.error(err.message, { exit: 130, code: 'MIGRATION_INTERRUPTED' });
  }
  if (err instanceof CliError) failCommand(command, err);
  if (err instanceof DataFolderInUseError)
    failCommand(command, new CliError('DATA_FOLDER_IN_USE', err.message));
  const catalogued = fromCatalogued(err);
  if (catalogued) failCommand(command, catalogued);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (isConnectionLost(err) || (typeof code === 'string' && UNREACHABLE.has(code))) {
    failCommand(
      command,
      new CliError(
        'DATABASE_UNAVAILABLE',
        `a store of the plan is unreachable: ${(err as Error).message}`,
        'Check that the store is reachable (its server or PostgreSQL running), then run the same command again: a wave resumes where it stopped.',
      ),
    );
  }
  throw err;
}

export { closeHomeStores, findWave };

/** Asks in a terminal; without one, --yes is required. */
export async function confirmMove(message: string): Promise<void> {
  if (!process.stdin.isTTY) {
    throw new MigrationError(
      'MIGRATION_NOT_CONFIRMED',
      'refusing to move users without confirmation (no terminal to ask in)',
    );
  }
  const { confirm } = await import('@inquirer/prompts');
  if (!(await confirm({ message, default: false }))) {
    throw new MigrationError('MIGRATION_NOT_CONFIRMED', 'not confirmed: nothing moved');
  }
}

export interface WaveCommandOptions {
  planFile: string;
  wave: string;
  direction: 'forward' | 'back';
  dryRun: boolean;
  yes: boolean;
  report?: string;
  rate?: number;
  batchSize?: number;
}

/**
 * `parley migrate run` and `rollback`: the same journaled steps in the two directions, so one
 * body: confirmation, the plan's stores, progress, the report, the summary and exit status,
 * Ctrl-C as an interruption the next run resumes from.
 */
export async function runWaveCommand(command: Command, opts: WaveCommandOptions): Promise<WaveRunSummary> {
  const json = command.jsonEnabled();
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once('SIGINT', stop).once('SIGTERM', stop);
  try {
    const loaded = loadPlan(opts.planFile);
    const wave = findWave(loaded.plan, opts.wave);
    const target = loaded.plan.target;
    if (!opts.dryRun && !opts.yes)
      await confirmMove(
        opts.direction === 'forward'
          ? `Move ${wave.users.length} user(s) of wave ${wave.name} from ${wave.from} to ${target}?`
          : `Move wave ${wave.name} back from ${target} to ${wave.from}?`,
      );
    const stores = await openPlanStores(loaded, [wave.from, target], process.env);
    try {
      const summary = await moveWaveWithProgress(
        {
          plan: loaded.plan,
          wave,
          source: stores.get(wave.from)!.store,
          target: stores.get(target)!.store,
          direction: opts.direction,
          dryRun: opts.dryRun,
          signOutRate: opts.rate,
          batchSize: opts.batchSize,
          signal: abort.signal,
        },
        {
          interactive: Boolean(process.stderr.isTTY) && !json && !process.env.CI,
          log: (line) => command.logToStderr(line),
        },
      );
      if (opts.report) writeReport(opts.report, summary);
      if (!json) for (const line of runLines(summary)) command.log(line);
      process.exitCode = summary.exitCode;
      return summary;
    } finally {
      await closeHomeStores(stores);
    }
  } catch (err) {
    failMigrationCommand(command, err);
  } finally {
    process.off('SIGINT', stop).off('SIGTERM', stop);
  }
}
