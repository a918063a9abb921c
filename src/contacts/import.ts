import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { ContactListOwner } from '../store/contact-lists.js';
import type { Store } from '../store/store.js';
import { normalizeAor } from '../store/users.js';
import { type ContactListChange, mergeContactLists, replaceContactLists } from './lists.js';
import type { ContactList, XmlProblem } from './model.js';
import { scanContactListStream } from './xml-document.js';
import { type ContactListLimits, DEFAULT_LIMITS, parseUserElement } from './xml-parse.js';

/**
 * Import of a contact-list XML file, in two streaming passes so a file of 100,000 users
 * never sits in memory:
 *  1. validate: every `<user>` element is parsed and checked, duplicate users are found,
 *     and owners are looked up in batches. Any XML or semantic problem rejects the whole
 *     file with line, column and reason, and nothing is written.
 *  2. write: the file is read again and lists are written a batch of users per
 *     transaction (each user's write is atomic; a failing batch is retried user by user so
 *     one bad row cannot take its neighbours down).
 * Unknown users are not a reason to reject a file (a list can arrive before its owner is
 * provisioned): they are reported as failures and the others are imported.
 * A dry run does pass 2 inside transactions that are rolled back, so it reports exactly
 * what a real run would change.
 */
export type ImportMode = 'merge' | 'replace';

export interface ImportOptions {
  file: string;
  mode?: ImportMode;
  dryRun?: boolean;
  /** Import only this user's list (sip:alice@example.com or alice@example.com). */
  user?: string;
  /** Users per write transaction (default 100). */
  batchSize?: number;
  limits?: ContactListLimits;
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
}

interface ParsedUser {
  list: ContactList;
  aor: string;
  line: number;
  column: number;
}

const LOOKUP_BATCH = 1_000;

class DryRunRollback extends Error {}

/** What an import needs of the store: the contact lists, and transactions to roll a dry run back. */
export type ImportStore = Pick<Store, 'contactLists' | 'transaction'>;

export async function importContactLists(store: ImportStore, options: ImportOptions): Promise<ImportResult> {
  const mode = options.mode ?? 'merge';
  const limits = options.limits ?? DEFAULT_LIMITS;
  const only = options.user ? normalizeAor(options.user) : undefined;
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
  };
  const before = await stat(options.file);

  // Pass 1: validate everything, find owners.
  const seen = new Set<string>();
  const unknown = new Set<string>();
  let pending: ParsedUser[] = [];
  const resolvePending = async () => {
    const owners = await store.contactLists.findOwners(pending.map((p) => p.aor));
    for (const p of pending) {
      if (owners.has(p.aor)) continue;
      unknown.add(p.aor);
      result.failures.push({
        user: p.list.user,
        code: 'UNKNOWN_USER',
        reason: `no user ${p.aor} in this store`,
        line: p.line,
        column: p.column,
      });
    }
    pending = [];
  };
  for await (const user of readUsers(options.file, limits, result.errors)) {
    result.usersInFile++;
    options.onProgress?.({ phase: 'validate', users: result.usersInFile });
    if (seen.has(user.aor)) {
      addError(result.errors, limits, {
        line: user.line,
        column: user.column,
        reason: `user ${user.list.user} appears twice in the file`,
      });
      continue;
    }
    seen.add(user.aor);
    if (only !== undefined && user.aor !== only) continue;
    pending.push(user);
    if (pending.length >= LOOKUP_BATCH) await resolvePending();
  }
  await resolvePending();
  if (result.errors.length === 0 && only !== undefined && !seen.has(only)) {
    result.errors.push({ line: 1, column: 1, reason: `the file holds no list for ${only}` });
  }
  if (result.errors.length > 0) {
    result.failures = [];
    return result;
  }

  // Pass 2: write, a batch of users per transaction.
  const after = await stat(options.file);
  if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
    result.errors.push({ line: 1, column: 1, reason: 'the file changed while it was being imported' });
    result.failures = [];
    return result;
  }
  const maxSuccesses = options.maxSuccessEntries ?? 10_000;
  const write = mode === 'replace' ? replaceContactLists : mergeContactLists;
  let written = 0;
  let batch: ParsedUser[] = [];
  const record = (user: ParsedUser, change: ContactListChange) => {
    result.imported++;
    if (change.changed) result.changed++;
    else result.unchanged++;
    if (result.successes.length < maxSuccesses) result.successes.push({ user: user.list.user, ...change });
    else result.successesTruncated = true;
  };
  const flush = async () => {
    if (batch.length === 0) return;
    const owners = await store.contactLists.findOwners(batch.map((u) => u.aor));
    const ready = batch.filter((u) => owners.has(u.aor));
    for (const user of batch) {
      if (!owners.has(user.aor) && !unknown.has(user.aor)) {
        // Deleted between the passes.
        result.failures.push({
          user: user.list.user,
          code: 'UNKNOWN_USER',
          reason: `no user ${user.aor} in this store`,
          line: user.line,
          column: user.column,
        });
      }
    }
    try {
      const changes = await writeBatch(store, ready, owners, write, result.dryRun);
      for (const [i, user] of ready.entries()) record(user, changes[i]);
    } catch (err) {
      if (ready.length === 1) {
        result.failures.push(writeFailure(ready[0], err));
      } else {
        for (const user of ready) {
          try {
            const [change] = await writeBatch(store, [user], owners, write, result.dryRun);
            record(user, change);
          } catch (single) {
            result.failures.push(writeFailure(user, single));
          }
        }
      }
    }
    written += batch.length;
    options.onProgress?.({ phase: 'write', users: written });
    batch = [];
  };
  const rereadErrors: XmlProblem[] = [];
  for await (const user of readUsers(options.file, limits, rereadErrors)) {
    if (unknown.has(user.aor) || (only !== undefined && user.aor !== only)) continue;
    batch.push(user);
    if (batch.length >= (options.batchSize ?? 100)) await flush();
  }
  await flush();
  if (rereadErrors.length > 0) {
    // Only possible if the file was rewritten in place between the passes.
    result.errors.push(...rereadErrors);
  }
  result.status = result.failures.length === 0 ? 'complete' : result.imported === 0 ? 'failed' : 'partial';
  return result;
}

async function writeBatch(
  store: ImportStore,
  users: ParsedUser[],
  owners: Map<string, ContactListOwner>,
  write: typeof replaceContactLists,
  dryRun: boolean,
): Promise<ContactListChange[]> {
  let changes: ContactListChange[] = [];
  try {
    await store.transaction(async (tx) => {
      changes = await write(
        tx.contactLists,
        users.map((user) => ({ userId: owners.get(user.aor)!.id, list: user.list })),
      );
      if (dryRun) throw new DryRunRollback();
    });
  } catch (err) {
    if (!(err instanceof DryRunRollback)) throw err;
  }
  return changes;
}

function writeFailure(user: ParsedUser, err: unknown): ImportFailure {
  const reason = err instanceof Error ? err.message : String(err);
  return { user: user.list.user, code: 'WRITE_FAILED', reason, line: user.line, column: user.column };
}

function addError(errors: XmlProblem[], limits: ContactListLimits, problem: XmlProblem): void {
  if (errors.length < limits.maxProblems) errors.push(problem);
}

/** Streams the file's lists; problems go to errors (parsing continues past semantic ones). */
async function* readUsers(
  file: string,
  limits: ContactListLimits,
  errors: XmlProblem[],
): AsyncGenerator<ParsedUser> {
  const source = createReadStream(file, { highWaterMark: 256 * 1024 });
  try {
    for await (const step of scanContactListStream(source, limits)) {
      if (step.kind === 'error') {
        addError(errors, limits, step.problem);
        return;
      }
      const parsed = parseUserElement(step.fragment.text, step.fragment.origin, limits);
      if (!parsed.ok) {
        for (const problem of parsed.errors) addError(errors, limits, problem);
        if (errors.length >= limits.maxProblems) return;
        continue;
      }
      yield { list: parsed.value, aor: normalizeAor(parsed.value.user), ...step.fragment.origin };
    }
  } finally {
    source.destroy();
  }
}
