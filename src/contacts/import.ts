import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { type ContactListOwner, ContactListOwnersMissingError } from '../store/contact-lists.js';
import { IO_CHUNK } from '../store/io-chunk.js';
import { isConnectionLost } from '../store/sql.js';
import type { Store } from '../store/store.js';
import { normalizeAor } from '../store/users.js';
import {
  type FragmentParser,
  type FragmentResult,
  fragmentParser,
  type ParsedForImport,
} from './import-parse.js';
import { decodePreparedList, ListSpool, type SpooledList, validatedList } from './import-spool.js';
import { type ContactListChange, mergeContactLists, replaceContactLists } from './lists.js';
import type { ContactList, XmlProblem } from './model.js';
import { scanContactListStream, type UserFragment } from './xml-document.js';
import { type ContactListLimits, DEFAULT_LIMITS } from './xml-parse.js';

/**
 * Import of a contact-list XML file, in two phases so a file of 100,000 users never sits in
 * memory and nothing is written from a bad file:
 *  1. validate: the file is read once, each `<user>` element is parsed and checked once,
 *     duplicate users are found, owners are looked up 200 at a time (the only time
 *     they are), and the import's checks run (see ImportCheck). Valid lists go to a spool
 *     (import-spool.ts) with their owner. Any XML or semantic problem rejects the whole file
 *     with line, column and reason, and nothing is written.
 *  2. write: the spool is read back and lists are written a batch of users per
 *     transaction, with set-based statements (ContactListRepository.write). A failing batch
 *     is retried user by user so one bad row cannot take its neighbours down; users deleted
 *     since phase 1 are reported and their neighbours written.
 * Unknown users are not a reason to reject a file (a list can arrive before its owner is
 * provisioned): they are reported as failures and the others are imported.
 * Every write is idempotent (a list equal to the stored one leaves it and its version
 * alone), so an import that dies half way is resumed by running it again: the batches that
 * committed are "unchanged", the others are written, nothing is doubled.
 * A dry run does phase 2 inside transactions that are rolled back, so it reports exactly
 * what a real run would change.
 *
 * With writeWhileValidating the two phases run at once instead, in one transaction: each
 * batch is written as soon as it has validated, and the transaction commits only once the
 * whole file has. A bad file is then rolled back (nothing it held was ever visible), and a
 * killed import leaves nothing: re-running it is the resume.
 */
export type ImportMode = 'merge' | 'replace';

/** A list of the file whose owner is known: what an ImportCheck judges. */
export interface OwnedList {
  list: ContactList;
  owner: ContactListOwner;
  line: number;
  column: number;
}

/**
 * A rule of the validation phase beyond the format's own (per-user limits, policy): given a
 * batch of lists whose owners are known, returns the problems that reject the file. Checks
 * run during validation, so a failing check means nothing is written. They see the file's
 * list in stored form (access rules by pattern), not the stored one a merge would combine
 * it with.
 */
export type ImportCheck = (batch: readonly OwnedList[]) => Promise<XmlProblem[]> | XmlProblem[];

export interface ImportOptions {
  file: string;
  mode?: ImportMode;
  dryRun?: boolean;
  /** Import only this user's list (sip:alice@example.com or alice@example.com). */
  user?: string;
  /** Users per write transaction (default 250). */
  batchSize?: number;
  /**
   * Write transactions in flight at once (default 1). More than one helps where
   * transactions run in parallel, on separate connections to PostgreSQL: the server
   * writes one batch while this process prepares the next. On the embedded store they
   * would only queue for its one session.
   */
  writers?: number;
  /**
   * Worker threads that parse the file's `<user>` elements during validation (default 0:
   * parsed in this thread). The thread that reads and cuts the file, looks owners up and
   * spools keeps going while they parse. Where the TypeScript sources run (tests), there
   * is no built worker module and elements are parsed in this thread.
   */
  parseWorkers?: number;
  limits?: ContactListLimits;
  /** Extra validation rules, run on every batch of known owners before anything is written. */
  checks?: ImportCheck[];
  /** Folder for the spool of validated lists (default: the system's temp folder). */
  workDir?: string;
  /**
   * Write each batch as soon as it has validated, all in one transaction that commits only
   * when the whole file has validated (rolled back otherwise), instead of validating the
   * whole file into the spool first and then writing a batch per transaction. Owner
   * lookups and writes share that transaction; each batch is a savepoint of it, so a
   * failing batch is still retried user by user. For the embedded store opened by this
   * process, whose engine runs on this thread while the parse workers use the other cores:
   * its writing then overlaps the file's parsing. It holds the store's one session, and
   * every written list's lock, until the end.
   */
  writeWhileValidating?: boolean;
  onProgress?: (event: { phase: 'validate' | 'write'; users: number }) => void;
  /** Keep at most this many entries in successes[] (default 10,000); counts stay exact. */
  maxSuccessEntries?: number;
}

export interface ImportSuccess {
  user: string;
  changed: boolean;
  version: number;
  contactsAdded: number;
  contactsRemoved: number;
  contactsUpdated: number;
}

export type ImportFailureCode = 'UNKNOWN_USER' | 'WRITE_FAILED';

export interface ImportFailure {
  user: string;
  code: ImportFailureCode;
  reason: string;
  line: number;
  column: number;
}

/**
 * complete: every list imported. partial: some failed. failed: none imported (all
 * failed). invalid: the file was rejected before writing anything.
 */
export type ImportStatus = 'complete' | 'partial' | 'failed' | 'invalid';

export interface ImportResult {
  status: ImportStatus;
  file: string;
  mode: ImportMode;
  dryRun: boolean;
  /** `<user>` elements in the file. */
  usersInFile: number;
  /** Lists imported (or, in a dry run, that would be). */
  imported: number;
  changed: number;
  unchanged: number;
  /** Problems that rejected the file (status invalid). */
  errors: XmlProblem[];
  successes: ImportSuccess[];
  /** True when successes[] was cut at maxSuccessEntries. */
  successesTruncated: boolean;
  failures: ImportFailure[];
  /**
   * Where the time went, in wall and CPU seconds of this process (on the embedded store
   * PGlite runs in it, so its work is included; PostgreSQL's own work is not): the
   * validation phase, the owner lookups within it, and the write phase. Writing while
   * validating, validate is the pass that reads, validates and writes, and write what is
   * left once the file has validated (the last batch and the commit).
   */
  phases: ImportPhases;
}

export interface PhaseTime {
  seconds: number;
  cpuSeconds: number;
}

export interface ImportPhases {
  validate: PhaseTime;
  ownerLookup: PhaseTime;
  write: PhaseTime;
}

/**
 * Parsed lists wait for their owners' lookup in batches of this many: small enough that
 * they die young (a batch of 1,000 lived long enough to reach V8's old space, whose garbage
 * took a 10,000-user import to a peak RSS of 567 MiB, against 507 MiB with 200), large enough that
 * lookups stay few (500 for 100,000 users).
 */
const LOOKUP_BATCH = 200;
const DEFAULT_BATCH = 250;

class DryRunRollback extends Error {}

/** What an import needs of the store: the contact lists, and transactions to roll a dry run back. */
export type ImportStore = Pick<Store, 'contactLists' | 'transaction'>;

export async function importContactLists(store: ImportStore, options: ImportOptions): Promise<ImportResult> {
  const mode = options.mode ?? 'merge';
  const limits = options.limits ?? DEFAULT_LIMITS;
  const result: ImportResult = {
    status: 'invalid',
    file: options.file,
    mode,
    dryRun: options.dryRun ?? false,
    usersInFile: 0,
    imported: 0,
    changed: 0,
    unchanged: 0,
    errors: [],
    successes: [],
    successesTruncated: false,
    failures: [],
    phases: { validate: newPhase(), ownerLookup: newPhase(), write: newPhase() },
  };
  const before = await stat(options.file);
  /** Once validation ended: whether the whole file is good (errors sorted, written lists dropped when not). */
  const validated = async (): Promise<boolean> => {
    const after = await stat(options.file);
    if (result.errors.length === 0 && (after.size !== before.size || after.mtimeMs !== before.mtimeMs)) {
      result.errors.push({ line: 1, column: 1, reason: 'the file changed while it was being read' });
    }
    if (result.errors.length === 0) return true;
    result.errors.sort((a, b) => a.line - b.line || a.column - b.column);
    Object.assign(result, { imported: 0, changed: 0, unchanged: 0, successes: [], failures: [] });
    result.successesTruncated = false;
    return false;
  };
  if (options.writeWhileValidating) {
    try {
      await store.transaction(async (repos) => {
        // Every batch a savepoint of this transaction (nested transactions reuse it).
        const tx: ImportStore = { contactLists: repos.contactLists, transaction: (fn) => fn(repos) };
        const writer = batchWriter(tx, options, mode, result, { writers: 1, savepoint: true, dryRun: false });
        try {
          await timed(result.phases.validate, () =>
            validateFile(tx, options, limits, result, (owner, line, column, prepared) =>
              writer.add(validatedList(owner.id, owner.aor, line, column, prepared)),
            ),
          );
        } catch (err) {
          await writer.abandon();
          throw err;
        }
        if (!(await validated())) {
          await writer.abandon();
          throw new RollbackImport();
        }
        await timed(result.phases.write, () => writer.finish());
        if (result.dryRun) throw new RollbackImport();
      });
    } catch (err) {
      if (!(err instanceof RollbackImport)) throw err;
    }
    if (result.errors.length > 0) return result;
  } else {
    const spool = await ListSpool.create(options.workDir);
    try {
      await timed(result.phases.validate, async () => {
        await validateFile(store, options, limits, result, (owner, line, column, prepared) =>
          spool.appendEncoded(owner.id, owner.aor, line, column, prepared),
        );
        await spool.finish();
      });
      if (!(await validated())) return result;
      const writers = Math.max(1, Math.floor(options.writers ?? 1));
      const writer = batchWriter(store, options, mode, result, {
        writers,
        savepoint: false,
        dryRun: result.dryRun,
      });
      await timed(result.phases.write, async () => {
        try {
          for await (const user of spool.entries()) await writer.add(user);
        } catch (err) {
          await writer.abandon();
          throw err;
        }
        await writer.finish();
      });
    } finally {
      await spool.remove();
    }
  }
  result.status = result.failures.length === 0 ? 'complete' : result.imported === 0 ? 'failed' : 'partial';
  return result;
}

/** Thrown to roll back an import writing while it validates: the file was bad, or it was a dry run. */
class RollbackImport extends Error {}

/** Takes a validated list of a known owner, its list as a parse worker encoded it (encodePrepared). */
type AcceptList = (owner: ContactListOwner, line: number, column: number, prepared: string) => Promise<void>;

/**
 * Phase 1: reads the file once, parses each user once, looks its owner up once (a batch at
 * a time), runs the checks, and hands the lists to write to accept (the spool, or the
 * writer of an import writing while it validates), in file order, until the file is known
 * to be bad. Problems go to result.errors; unknown users to result.failures.
 */
async function validateFile(
  store: ImportStore,
  options: ImportOptions,
  limits: ContactListLimits,
  result: ImportResult,
  accept: AcceptList,
): Promise<void> {
  const only = options.user ? normalizeAor(options.user) : undefined;
  const checks = options.checks ?? [];
  // Users already met: known owners by id in a bit set (an eighth of a byte per user id,
  // flat next to a set of strings), unknown ones by aor (they are failures, kept anyway).
  const seenOwners = new OwnerIdSet();
  const seenUnknown = new Set<string>();
  let onlyFound = false;
  const resolveBatch = async (batch: ParsedForImport[]) => {
    const owners = await timed(result.phases.ownerLookup, () =>
      store.contactLists.findOwners([...new Set(batch.map((p) => p.aor))]),
    );
    const owned: (ParsedForImport & { owner: ContactListOwner })[] = [];
    for (const user of batch) {
      const owner = owners.get(user.aor);
      const first = owner ? seenOwners.add(owner.id) : !seenUnknown.has(user.aor);
      if (!owner) seenUnknown.add(user.aor);
      if (!first) {
        addError(result.errors, limits, {
          line: user.line,
          column: user.column,
          reason: `user ${user.user} appears twice in the file`,
        });
        continue;
      }
      if (only !== undefined && user.aor !== only) continue;
      onlyFound ||= only !== undefined;
      if (!owner) {
        result.failures.push({
          user: user.user,
          code: 'UNKNOWN_USER',
          reason: `no user ${user.aor} in this store`,
          line: user.line,
          column: user.column,
        });
        continue;
      }
      owned.push({ ...user, owner });
    }
    if (checks.length > 0) {
      const lists = owned.map(({ owner, line, column, user, prepared }) => ({
        list: decodePreparedList(user, prepared),
        owner,
        line,
        column,
      }));
      for (const check of checks) {
        for (const problem of await check(lists)) addError(result.errors, limits, problem);
      }
    }
    // Once the file is known to be bad, nothing will be written: stop handing lists on.
    if (result.errors.length > 0) return;
    for (const user of owned) await accept(user.owner, user.line, user.column, user.prepared);
  };
  const workers = Math.max(0, Math.floor(options.parseWorkers ?? 0));
  const parser = fragmentParser(workers, limits);
  try {
    // Two batches per worker in flight: each has the next one queued when it finishes.
    for await (const batch of parsedBatches(options.file, limits, result.errors, parser, 2 * workers || 1)) {
      result.usersInFile += batch.length;
      options.onProgress?.({ phase: 'validate', users: result.usersInFile });
      await resolveBatch(batch);
      if (result.errors.length >= limits.maxProblems) break;
    }
  } finally {
    await parser.close();
  }
  if (result.errors.length === 0 && only !== undefined && !onlyFound) {
    result.errors.push({ line: 1, column: 1, reason: `the file holds no list for ${only}` });
  }
}

/**
 * Phase 2: writes validated lists as they are added, a batch of users per write, up to
 * `writers` batches in flight while the next one fills (on one transaction of the
 * caller's, one, each batch a savepoint of it). Results are taken in file order whatever
 * order the batches finish in, so successes[] and progress read as with one writer. add()
 * waits while `writers` batches are in flight: what waits to be written stays bounded.
 */
function batchWriter(
  store: ImportStore,
  options: ImportOptions,
  mode: ImportMode,
  result: ImportResult,
  how: { writers: number; savepoint: boolean; dryRun: boolean },
): { add(user: SpooledList): Promise<void>; finish(): Promise<void>; abandon(): Promise<void> } {
  const maxSuccesses = options.maxSuccessEntries ?? 10_000;
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  const replace = mode === 'replace';
  const write: BatchWrite = (repository, lists) =>
    (replace ? replaceContactLists : mergeContactLists)(repository, lists, { savepoint: how.savepoint });
  let written = 0;
  const deleted = new Set<number>();
  /** Writes one batch; resolves with what it did, for the caller to record in file order. */
  const writeOne = async (batch: SpooledList[]): Promise<BatchOutcome> => {
    const outcome: BatchOutcome = { users: batch.length, done: [], failures: [] };
    try {
      const done = await writeBatchDroppingDeleted(store, batch, write, how.dryRun, deleted, outcome);
      for (const [i, user] of done.users.entries()) outcome.done.push([`sip:${user.aor}`, done.changes[i]]);
    } catch (err) {
      // A lost store ends the import (the CLI's DATABASE_UNAVAILABLE); a re-run resumes it.
      if (isConnectionLost(err)) throw err;
      const ready = batch.filter((u) => !deleted.has(u.userId));
      if (ready.length === 1) {
        outcome.failures.push(writeFailure(ready[0], err));
      } else {
        for (const user of ready) {
          try {
            const single = await writeBatchDroppingDeleted(
              store,
              [user],
              write,
              how.dryRun,
              deleted,
              outcome,
            );
            if (single.users.length === 1) outcome.done.push([`sip:${user.aor}`, single.changes[0]]);
          } catch (failure) {
            if (isConnectionLost(failure)) throw failure;
            outcome.failures.push(writeFailure(user, failure));
          }
        }
      }
    }
    return outcome;
  };
  const record = (outcome: BatchOutcome) => {
    for (const [user, change] of outcome.done) {
      result.imported++;
      if (change.changed) result.changed++;
      else result.unchanged++;
      if (result.successes.length < maxSuccesses) result.successes.push({ user, ...change });
      else result.successesTruncated = true;
    }
    result.failures.push(...outcome.failures);
    written += outcome.users;
    options.onProgress?.({ phase: 'write', users: written });
  };
  const inFlight: Promise<BatchOutcome>[] = [];
  const start = (batch: SpooledList[]) => {
    const running = writeOne(batch);
    // Handled here so a batch failing while an earlier one is awaited is no unhandled rejection.
    running.catch(() => undefined);
    inFlight.push(running);
  };
  let batch: SpooledList[] = [];
  return {
    async add(user) {
      batch.push(user);
      if (batch.length < batchSize) return;
      start(batch);
      batch = [];
      if (inFlight.length >= how.writers) record(await inFlight.shift()!);
    },
    async finish() {
      if (batch.length > 0) start(batch);
      batch = [];
      try {
        while (inFlight.length > 0) record(await inFlight.shift()!);
      } catch (err) {
        await Promise.allSettled(inFlight);
        throw err;
      }
    },
    async abandon() {
      batch = [];
      await Promise.allSettled(inFlight.splice(0));
    },
  };
}

/** What a batch's write is: replaceContactLists or mergeContactLists, with the import's options. */
type BatchWrite = (
  repository: ImportStore['contactLists'],
  lists: SpooledList[],
) => Promise<ContactListChange[]>;

interface BatchOutcome {
  users: number;
  /** Users written (their URIs) and their changes, in file order. */
  done: [string, ContactListChange][];
  failures: ImportFailure[];
}

/**
 * Writes a batch; users deleted since validation are reported as unknown (in
 * outcome.failures) and the batch is written without them. Returns the users written and
 * their changes, in the same order.
 */
async function writeBatchDroppingDeleted(
  store: ImportStore,
  users: SpooledList[],
  write: BatchWrite,
  dryRun: boolean,
  deleted: Set<number>,
  outcome: BatchOutcome,
): Promise<{ users: SpooledList[]; changes: ContactListChange[] }> {
  let remaining = users.filter((u) => !deleted.has(u.userId));
  for (;;) {
    if (remaining.length === 0) return { users: [], changes: [] };
    try {
      return { users: remaining, changes: await writeBatch(store, remaining, write, dryRun) };
    } catch (err) {
      if (!(err instanceof ContactListOwnersMissingError)) throw err;
      for (const id of err.userIds) deleted.add(id);
      for (const user of remaining) {
        if (!deleted.has(user.userId)) continue;
        outcome.failures.push({
          user: `sip:${user.aor}`,
          code: 'UNKNOWN_USER',
          reason: `no user ${user.aor} in this store (deleted during the import)`,
          line: user.line,
          column: user.column,
        });
      }
      remaining = remaining.filter((u) => !deleted.has(u.userId));
    }
  }
}

async function writeBatch(
  store: ImportStore,
  users: SpooledList[],
  write: BatchWrite,
  dryRun: boolean,
): Promise<ContactListChange[]> {
  let changes: ContactListChange[] = [];
  try {
    await store.transaction(async (tx) => {
      // The spooled lists as they are: each list is parsed from the spool only if the write reads it.
      changes = await write(tx.contactLists, users);
      if (dryRun) throw new DryRunRollback();
    });
  } catch (err) {
    if (!(err instanceof DryRunRollback)) throw err;
  }
  return changes;
}

function writeFailure(user: SpooledList, err: unknown): ImportFailure {
  const reason = err instanceof Error ? err.message : String(err);
  return { user: `sip:${user.aor}`, code: 'WRITE_FAILED', reason, line: user.line, column: user.column };
}

function newPhase(): PhaseTime {
  return { seconds: 0, cpuSeconds: 0 };
}

/** Runs fn and adds its wall and CPU time (the whole process's) to phase. */
async function timed<T>(phase: PhaseTime, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  try {
    return await fn();
  } finally {
    const used = process.cpuUsage(cpu);
    phase.seconds += (performance.now() - started) / 1000;
    phase.cpuSeconds += (used.user + used.system) / 1e6;
  }
}

function addError(errors: XmlProblem[], limits: ContactListLimits, problem: XmlProblem): void {
  if (errors.length < limits.maxProblems) errors.push(problem);
}

/** Ids of users met so far, one bit each (user ids are a sequence: dense and small). */
class OwnerIdSet {
  private bits = new Uint8Array(8192);

  /** Adds id; false when it was already there. */
  add(id: number): boolean {
    const byte = Math.floor(id / 8);
    if (byte >= this.bits.length) {
      const grown = new Uint8Array(Math.max(byte + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    const mask = 1 << (id % 8);
    if (this.bits[byte] & mask) return false;
    this.bits[byte] |= mask;
    return true;
  }
}

/**
 * Streams the file's lists, LOOKUP_BATCH elements at a time, parsed by parser with up to
 * `ahead` batches in flight, yielded in file order with the elements that failed left out
 * (their problems go to errors, in file order). Stops at the first structural problem,
 * after the batches before it, or once errors are full.
 */
async function* parsedBatches(
  file: string,
  limits: ContactListLimits,
  errors: XmlProblem[],
  parser: FragmentParser,
  ahead: number,
): AsyncGenerator<ParsedForImport[]> {
  const source = createReadStream(file, { highWaterMark: IO_CHUNK });
  const inFlight: Promise<FragmentResult[]>[] = [];
  const send = (fragments: UserFragment[]) => {
    const parsing = parser.parse(fragments);
    // Handled here so a batch failing while an earlier one is awaited is no unhandled rejection.
    parsing.catch(() => undefined);
    inFlight.push(parsing);
  };
  /** The oldest batch's lists; false once errors are full. */
  const take = async (): Promise<ParsedForImport[] | false> => {
    const parsed: ParsedForImport[] = [];
    for (const result of await inFlight.shift()!) {
      if (result.ok) parsed.push(result.parsed);
      else for (const problem of result.errors) addError(errors, limits, problem);
    }
    return errors.length < limits.maxProblems && parsed;
  };
  try {
    let fragments: UserFragment[] = [];
    for await (const step of scanContactListStream(source, limits)) {
      if (step.kind === 'error') {
        while (inFlight.length > 0) {
          const parsed = await take();
          if (!parsed) return;
          yield parsed;
        }
        addError(errors, limits, step.problem);
        return;
      }
      fragments.push(step.fragment);
      if (fragments.length < LOOKUP_BATCH) continue;
      send(fragments);
      fragments = [];
      if (inFlight.length < ahead) continue;
      const parsed = await take();
      if (!parsed) return;
      yield parsed;
    }
    if (fragments.length > 0) send(fragments);
    while (inFlight.length > 0) {
      const parsed = await take();
      if (!parsed) return;
      yield parsed;
    }
  } finally {
    source.destroy();
    await Promise.allSettled(inFlight);
  }
}
