import { replaceContactLists } from '../contacts/lists.js';
import type { ContactList } from '../store/contact-lists.js';
import { holderIsDead, lockHolder } from '../store/holder.js';
import type { WaveRecord, WaveUserRecord, WaveUserState } from '../store/migration-journal.js';
import type { Repositories, Store } from '../store/store.js';
import type { UserAccount } from '../store/users.js';
import { userChecksums } from './checksum.js';
import { MigrationError } from './errors.js';
import type { Wave, WavePlan } from './plan.js';
import { type VerifySummary, verifyWave } from './verify.js';

/**
 * Moving a wave's users between two homes' stores (`parley migrate run`, and `rollback`,
 * which is the same move the other way). The stores are separate databases, so no single
 * transaction spans a move; instead each user goes through journaled steps, each of which
 * is idempotent and recorded in the target's journal after (or, on the target, together
 * with) its effect:
 *
 *   1. copy     account, digest secrets, contact list, groups and rules from -> to
 *   2. place    the user's home := the new home in the destination store
 *   3. sign out the user's home := the new home in the store it leaves, at signOutRate per
 *               second: that store's running servers sign the user out (placement feed) and
 *               send its client on; then anything changed there since step 1 is copied again
 *
 * A run killed at any moment leaves each user at a step; the next run redoes that step and
 * goes on. Forward, the destination is the target (the journal's store), so steps 1 and 2
 * commit with their journal entries; the director reads placement from the target, so new
 * sign-ins go to the new home from step 2 on and the old home lets go at step 3.
 */

export type MoveDirection = 'forward' | 'back';

export interface WaveProgress {
  phase: 'copy' | 'place' | 'sign-out' | 'verify';
  done: number;
  total: number;
}

/** What happened to one user (run) or would happen (dry run). */
export interface WaveUserResult {
  aor: string;
  /** Journal state after this run. */
  state: WaveUserState | 'not-started';
  action: 'moved' | 'returned' | 'already-done' | 'failed' | 'would-move' | 'would-return';
  contacts?: number;
  groups?: number;
  rules?: number;
  realms?: string[];
  checksum?: string;
  error?: string;
}

export interface WaveRunSummary {
  wave: string;
  direction: MoveDirection;
  from: string;
  to: string;
  dryRun: boolean;
  /** done: moved and verified; moved: moved but verify found differences; partial: some users failed. */
  status: 'done' | 'moved' | 'partial' | 'rolled-back' | 'nothing-to-do' | 'dry-run';
  exitCode: number;
  /** The run resumed a wave an earlier run left unfinished. */
  resumed: boolean;
  users: number;
  moved: number;
  alreadyDone: number;
  failed: number;
  signOutRate: number;
  timings: { copyMs: number; placeMs: number; signOutMs: number; verifyMs: number; totalMs: number };
  verify?: VerifySummary;
  successes: WaveUserResult[];
  failures: WaveUserResult[];
}

export interface WaveMoveOptions {
  plan: WavePlan;
  wave: Wave;
  /** The store of the wave's `from` home. */
  source: Store;
  /** The store of the plan's target home: holds the journal; directors read placement there. */
  target: Store;
  direction?: MoveDirection;
  dryRun?: boolean;
  /** Users per copy transaction (default 200). */
  batchSize?: number;
  /** Overrides the plan's signOutRate. */
  signOutRate?: number;
  /** Stop between steps (SIGINT); the next run resumes. */
  signal?: AbortSignal;
  onProgress?: (p: WaveProgress) => void;
  /** Lock holder name; default host:pid. */
  holder?: string;
  /** A lock whose heartbeat is older than this is taken over (default 60 s). */
  staleLockSeconds?: number;
  /** Test seam: called between steps with the step just finished. */
  afterStep?: (step: string) => Promise<void> | void;
}

export class MigrationInterruptedError extends Error {
  override name = 'MigrationInterruptedError';
}

const STATES: Record<
  MoveDirection,
  { initial: WaveUserState[]; copied: WaveUserState; placed: WaveUserState; done: WaveUserState }
> = {
  forward: { initial: ['pending', 'returned', 'failed'], copied: 'copied', placed: 'placed', done: 'moved' },
  back: { initial: ['placed', 'moved'], copied: 'back-copied', placed: 'back-placed', done: 'returned' },
};

interface Side {
  home: string;
  store: Store;
}

/** Runs (or rolls back) one wave; see the module comment for the steps. */
export async function moveWave(opts: WaveMoveOptions): Promise<WaveRunSummary> {
  const started = Date.now();
  const direction = opts.direction ?? 'forward';
  const source: Side = { home: opts.wave.from, store: opts.source };
  const target: Side = { home: opts.plan.target, store: opts.target };
  const [from, to] = direction === 'forward' ? [source, target] : [target, source];
  const rate = opts.signOutRate ?? opts.plan.signOutRate;
  const summary: WaveRunSummary = {
    wave: opts.wave.name,
    direction,
    from: from.home,
    to: to.home,
    dryRun: opts.dryRun ?? false,
    status: 'nothing-to-do',
    exitCode: 0,
    resumed: false,
    users: opts.wave.users.length,
    moved: 0,
    alreadyDone: 0,
    failed: 0,
    signOutRate: rate,
    timings: { copyMs: 0, placeMs: 0, signOutMs: 0, verifyMs: 0, totalMs: 0 },
    successes: [],
    failures: [],
  };
  const journal = opts.target.migrationJournal;
  const existing = await journal.getWave(opts.wave.name);
  checkWaveState(existing, opts, direction);
  const finished = direction === 'forward' ? 'done' : 'rolled-back';
  if (existing?.state === finished && !opts.dryRun) {
    // A second run of a finished wave does nothing.
    summary.alreadyDone = existing.users;
    summary.timings.totalMs = Date.now() - started;
    return summary;
  }
  if (opts.dryRun) return dryRun(opts, summary, existing, from, direction, started);

  const holder = opts.holder ?? lockHolder();
  const lock = await journal.acquireLock(holder, opts.wave.name, opts.staleLockSeconds ?? 60, holderIsDead);
  if (!lock.acquired) {
    throw new MigrationError(
      'MIGRATION_LOCKED',
      `another migration (${lock.heldBy.holder}${lock.heldBy.wave ? `, wave ${lock.heldBy.wave}` : ''}) holds the lock since ${lock.heldBy.acquiredAt.toISOString()}`,
    );
  }
  const beat = setInterval(() => {
    journal.heartbeat(holder).catch(() => undefined);
  }, 10_000);
  beat.unref();
  try {
    if (direction === 'forward') {
      summary.resumed = existing?.state === 'running' || existing?.state === 'moved';
      await ensureHomes(from, to);
      await journal.beginWave({
        name: opts.wave.name,
        sourceHome: source.home,
        targetHome: target.home,
        aors: opts.wave.users,
      });
      await journal.setWaveState(opts.wave.name, 'running');
    } else {
      summary.resumed = existing?.state === 'rolling-back';
      await ensureHomes(from, to);
      await journal.setWaveState(opts.wave.name, 'rolling-back');
    }
    const mover = new Mover(opts, summary, direction, from, to, rate);
    await mover.run();
    const failed = summary.failures.length;
    if (direction === 'forward') {
      const verifyStarted = Date.now();
      opts.onProgress?.({ phase: 'verify', done: 0, total: summary.users });
      const users = await journal.waveUsers(opts.wave.name);
      summary.verify = await verifyWave({
        wave: opts.wave.name,
        aors: users.filter((u) => u.state === 'moved').map((u) => u.aor),
        source,
        target,
        expectedHome: target.home,
      });
      summary.timings.verifyMs = Date.now() - verifyStarted;
      const done = summary.verify.ok && failed === 0;
      summary.status = failed > 0 ? 'partial' : done ? 'done' : 'moved';
      summary.exitCode = failed > 0 ? 6 : done ? 0 : 1;
      await journal.setWaveState(opts.wave.name, done ? 'done' : 'moved', {
        finished: true,
        verified: done,
        summary: compactSummary(summary),
      });
    } else {
      const verifyStarted = Date.now();
      const users = await journal.waveUsers(opts.wave.name);
      // The same check as after a run, the other way: both stores agree and place the users at home.
      summary.verify = await verifyWave({
        wave: opts.wave.name,
        aors: users.filter((u) => u.state === 'returned').map((u) => u.aor),
        source,
        target,
        expectedHome: source.home,
        requireTarget: false,
      });
      summary.timings.verifyMs = Date.now() - verifyStarted;
      const back = failed === 0 && summary.verify.ok;
      summary.status = failed > 0 ? 'partial' : back ? 'rolled-back' : 'moved';
      summary.exitCode = failed > 0 ? 6 : back ? 0 : 1;
      await journal.setWaveState(opts.wave.name, back ? 'rolled-back' : 'rolling-back', {
        finished: back,
        summary: compactSummary(summary),
      });
    }
  } finally {
    clearInterval(beat);
    await journal.releaseLock(holder).catch(() => undefined);
  }
  summary.timings.totalMs = Date.now() - started;
  return summary;
}

function checkWaveState(
  existing: WaveRecord | undefined,
  opts: WaveMoveOptions,
  direction: MoveDirection,
): void {
  const name = opts.wave.name;
  if (existing && (existing.sourceHome !== opts.wave.from || existing.targetHome !== opts.plan.target)) {
    throw new MigrationError(
      'MIGRATION_WAVE_STATE',
      `wave ${name} was run from ${existing.sourceHome} to ${existing.targetHome}; the plan now says ${opts.wave.from} to ${opts.plan.target}`,
    );
  }
  if (direction === 'forward' && existing?.state === 'rolling-back') {
    throw new MigrationError(
      'MIGRATION_WAVE_STATE',
      `wave ${name} is being rolled back: finish with \`parley migrate rollback --wave ${name}\` first`,
    );
  }
  if (direction === 'back' && !existing) {
    throw new MigrationError(
      'MIGRATION_WAVE_STATE',
      `wave ${name} was never run: there is nothing to roll back`,
    );
  }
}

/** Each store names both homes: users' placement refers to them (foreign key). */
async function ensureHomes(a: Side, b: Side): Promise<void> {
  const ha = await a.store.homes.getHome(a.home);
  const hb = await b.store.homes.getHome(b.home);
  if (!ha)
    throw new MigrationError('MIGRATION_PLAN_INVALID', `home ${a.home} does not exist in its own store`);
  if (!hb)
    throw new MigrationError('MIGRATION_PLAN_INVALID', `home ${b.home} does not exist in its own store`);
  if (!(await b.store.homes.getHome(a.home))) await b.store.homes.upsertHome(ha);
  if (!(await a.store.homes.getHome(b.home))) await a.store.homes.upsertHome(hb);
}

interface Snapshot {
  account: UserAccount;
  list: ContactList;
  checksum: string;
}

async function readSnapshots(store: Store, aors: string[]): Promise<Map<string, Snapshot>> {
  const accounts = await store.users.readAccounts(aors);
  const owners = await store.contactLists.findOwners(accounts.map((a) => a.aor));
  const lists = await store.contactLists.getMany([...owners.values()]);
  const out = new Map<string, Snapshot>();
  for (const account of accounts) {
    const list = lists.get(owners.get(account.aor)!.id)!;
    out.set(account.aor, { account, list, checksum: userChecksums(account, list).all });
  }
  return out;
}

/** Writes snapshots into a store: accounts (new users placed in `newUserHome`) and lists. */
async function writeSnapshots(
  repos: Repositories,
  snapshots: Snapshot[],
  newUserHome: string | null,
): Promise<void> {
  const ids = await repos.users.writeAccounts(
    snapshots.map((s) => s.account),
    newUserHome,
  );
  await replaceContactLists(
    repos.contactLists,
    snapshots.map((s) => ({ userId: ids.get(s.account.aor)!, list: s.list })),
  );
}

class Mover {
  private readonly journal;
  private readonly states;

  constructor(
    private readonly opts: WaveMoveOptions,
    private readonly summary: WaveRunSummary,
    private readonly direction: MoveDirection,
    private readonly from: Side,
    private readonly to: Side,
    private readonly rate: number,
  ) {
    this.journal = opts.target.migrationJournal;
    this.states = STATES[direction];
  }

  private get forward(): boolean {
    return this.direction === 'forward';
  }

  async run(): Promise<void> {
    const wave = this.opts.wave.name;
    let users = await this.journal.waveUsers(wave);
    const inPlan = new Set(this.opts.wave.users);
    users = users.filter((u) => inPlan.has(u.aor) || !this.forward);
    this.summary.users = users.length;
    const { initial, copied, placed, done } = this.states;
    for (const u of users) {
      if (u.state === done) {
        this.summary.alreadyDone++;
        this.summary.successes.push({ aor: u.aor, state: u.state, action: 'already-done' });
      }
    }
    if (this.forward) {
      const held = await this.journal.heldByOtherWaves(
        wave,
        users.filter((u) => initial.includes(u.state)).map((u) => u.aor),
      );
      if (held.size > 0) {
        await this.fail([...held].map(([aor, other]) => ({ aor, error: `held by wave ${other}` })));
        users = users.filter((u) => !held.has(u.aor));
      }
    } else {
      // Never copied or placed: nothing to undo.
      const untouched = users.filter(
        (u) => u.state === 'pending' || u.state === 'copied' || u.state === 'failed',
      );
      await this.journal.setUserStates(
        wave,
        untouched.map((u) => ({ aor: u.aor, state: 'returned' })),
      );
      for (const u of untouched)
        this.summary.successes.push({ aor: u.aor, state: 'returned', action: 'returned' });
    }
    const toCopy = users.filter((u) => initial.includes(u.state)).map((u) => u.aor);
    const toPlace = users.filter((u) => u.state === copied).map((u) => u.aor);
    const toSignOut = users
      .filter((u) => u.state === placed)
      .map((u) => ({ aor: u.aor, checksum: u.checksum }));

    const t0 = Date.now();
    const copiedNow = await this.copy(toCopy);
    this.summary.timings.copyMs = Date.now() - t0;
    toPlace.push(...copiedNow.map((c) => c.aor));
    const t1 = Date.now();
    await this.place(toPlace);
    this.summary.timings.placeMs = Date.now() - t1;
    const checksums = new Map([...copiedNow.map((c) => [c.aor, c.checksum] as const)]);
    for (const u of users) if (u.checksum && !checksums.has(u.aor)) checksums.set(u.aor, u.checksum);
    toSignOut.push(...toPlace.map((aor) => ({ aor, checksum: checksums.get(aor) })));
    const t2 = Date.now();
    await this.signOut(toSignOut);
    this.summary.timings.signOutMs = Date.now() - t2;
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted)
      throw new MigrationInterruptedError('interrupted; the next run resumes where this one stopped');
  }

  private async step(name: string): Promise<void> {
    await this.opts.afterStep?.(name);
    this.checkAbort();
  }

  private async fail(users: { aor: string; error: string }[]): Promise<void> {
    if (users.length === 0) return;
    await this.journal.setUserStates(
      this.opts.wave.name,
      users.map((u) => ({ aor: u.aor, state: 'failed', error: u.error })),
    );
    for (const u of users) {
      this.summary.failed++;
      this.summary.failures.push({ aor: u.aor, state: 'failed', action: 'failed', error: u.error });
    }
  }

  /** Step 1, batch by batch. Returns the users copied with the checksum of what was copied. */
  private async copy(aors: string[]): Promise<{ aor: string; checksum: string }[]> {
    const batch = this.opts.batchSize ?? 200;
    const out: { aor: string; checksum: string }[] = [];
    const newUserHome = this.forward ? this.from.home : this.to.home;
    for (let i = 0; i < aors.length; i += batch) {
      this.checkAbort();
      const chunk = aors.slice(i, i + batch);
      const snaps = await readSnapshots(this.from.store, chunk);
      await this.fail(
        chunk
          .filter((a) => !snaps.has(a))
          .map((aor) => ({ aor, error: `not found in ${this.from.home}'s store` })),
      );
      const found = chunk.filter((a) => snaps.has(a)).map((a) => snaps.get(a)!);
      const entries = found.map((s) => ({
        aor: s.account.aor,
        state: this.states.copied,
        checksum: s.checksum,
      }));
      if (this.forward) {
        // The target is the journal's store: the copy and its journal entry commit together.
        await this.to.store.transaction(async (repos) => {
          await writeSnapshots(repos, found, newUserHome);
          await repos.migrationJournal.setUserStates(this.opts.wave.name, entries);
        });
      } else {
        await this.to.store.transaction((repos) => writeSnapshots(repos, found, newUserHome));
        await this.journal.setUserStates(this.opts.wave.name, entries);
      }
      out.push(...entries);
      this.opts.onProgress?.({ phase: 'copy', done: Math.min(i + batch, aors.length), total: aors.length });
      await this.step('copy');
    }
    return out;
  }

  /** Step 2: the destination store places the users in their new home. */
  private async place(aors: string[]): Promise<void> {
    const batch = this.opts.batchSize ?? 200;
    const home = this.to.home;
    for (let i = 0; i < aors.length; i += batch) {
      this.checkAbort();
      const chunk = aors.slice(i, i + batch);
      const entries = chunk.map((aor) => ({ aor, state: this.states.placed }));
      if (this.forward) {
        await this.to.store.transaction(async (repos) => {
          await repos.homes.movePlacement(chunk, home);
          await repos.migrationJournal.setUserStates(this.opts.wave.name, entries);
        });
      } else {
        await this.to.store.homes.movePlacement(chunk, home);
        await this.journal.setUserStates(this.opts.wave.name, entries);
      }
      this.opts.onProgress?.({ phase: 'place', done: Math.min(i + batch, aors.length), total: aors.length });
      await this.step('place');
    }
  }

  /**
   * Step 3, paced: the home the users leave places them in the new home, `rate` users a
   * second, in small slices (a tenth of a second's worth) so re-registrations arrive evenly.
   */
  private async signOut(users: { aor: string; checksum?: string }[]): Promise<void> {
    const slice = Math.max(1, Math.round(this.rate / 10));
    const started = Date.now();
    const home = this.to.home;
    for (let i = 0; i < users.length; i += slice) {
      this.checkAbort();
      const due = started + (i / this.rate) * 1000;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const chunk = users.slice(i, i + slice);
      const aors = chunk.map((u) => u.aor);
      await this.from.store.homes.movePlacement(aors, home);
      await this.step('sign-out');
      // Whatever the user changed in the old home after the copy (it was live there until now) follows it.
      const snaps = await readSnapshots(this.from.store, aors);
      const changed = chunk.filter((u) => snaps.has(u.aor) && snaps.get(u.aor)!.checksum !== u.checksum);
      const recopy = changed.map((u) => snaps.get(u.aor)!);
      const entries = chunk.map((u) => ({
        aor: u.aor,
        state: this.states.done,
        checksum: snaps.get(u.aor)?.checksum,
      }));
      if (this.forward) {
        await this.to.store.transaction(async (repos) => {
          if (recopy.length > 0) await writeSnapshots(repos, recopy, this.from.home);
          await repos.migrationJournal.setUserStates(this.opts.wave.name, entries);
        });
      } else {
        if (recopy.length > 0)
          await this.to.store.transaction((repos) => writeSnapshots(repos, recopy, home));
        await this.journal.setUserStates(this.opts.wave.name, entries);
      }
      for (const u of chunk) {
        const snap = snaps.get(u.aor);
        this.summary.moved++;
        this.summary.successes.push({
          aor: u.aor,
          state: this.states.done,
          action: this.forward ? 'moved' : 'returned',
          contacts: snap?.list.contacts.length,
          groups: snap?.list.groups.length,
          rules: snap?.list.accessRules.length,
          realms: snap?.account.credentials.map((c) => c.realm),
          checksum: snap?.checksum,
        });
      }
      this.opts.onProgress?.({
        phase: 'sign-out',
        done: Math.min(i + slice, users.length),
        total: users.length,
      });
      await this.step('signed-out');
    }
  }
}

async function dryRun(
  opts: WaveMoveOptions,
  summary: WaveRunSummary,
  existing: WaveRecord | undefined,
  from: Side,
  direction: MoveDirection,
  started: number,
): Promise<WaveRunSummary> {
  const journaled = new Map<string, WaveUserRecord>(
    existing ? (await opts.target.migrationJournal.waveUsers(opts.wave.name)).map((u) => [u.aor, u]) : [],
  );
  const done = STATES[direction].done;
  const aors = direction === 'forward' ? opts.wave.users : [...journaled.keys()];
  summary.users = aors.length;
  for (let i = 0; i < aors.length; i += 500) {
    const chunk = aors.slice(i, i + 500);
    const snaps = await readSnapshots(from.store, chunk);
    for (const aor of chunk) {
      const state = journaled.get(aor)?.state ?? 'not-started';
      const snap = snaps.get(aor);
      if (state === done) {
        summary.alreadyDone++;
        summary.successes.push({ aor, state, action: 'already-done' });
      } else if (!snap) {
        summary.failed++;
        summary.failures.push({ aor, state, action: 'failed', error: `not found in ${from.home}'s store` });
      } else {
        summary.moved++;
        summary.successes.push({
          aor,
          state,
          action: direction === 'forward' ? 'would-move' : 'would-return',
          contacts: snap.list.contacts.length,
          groups: snap.list.groups.length,
          rules: snap.list.accessRules.length,
          realms: snap.account.credentials.map((c) => c.realm),
          checksum: snap.checksum,
        });
      }
    }
  }
  summary.status = 'dry-run';
  summary.exitCode = 0;
  summary.timings.totalMs = Date.now() - started;
  return summary;
}

/** What the journal keeps of a run: counts and problems, not the per-user lists. */
function compactSummary(s: WaveRunSummary): Record<string, unknown> {
  return {
    direction: s.direction,
    status: s.status,
    users: s.users,
    moved: s.moved,
    alreadyDone: s.alreadyDone,
    failed: s.failed,
    timings: s.timings,
    failures: s.failures.slice(0, 100).map((f) => ({ aor: f.aor, error: f.error })),
    verify: s.verify && {
      ok: s.verify.ok,
      matched: s.verify.matched,
      mismatches: s.verify.mismatches.slice(0, 100),
    },
  };
}
