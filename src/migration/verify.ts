import type { ContactList } from '../store/contact-lists.js';
import type { Store } from '../store/store.js';
import type { UserAccount } from '../store/users.js';
import { accountChecksum, contactListChecksum } from './checksum.js';

/** One user whose two homes disagree, with every difference found. */
export interface VerifyMismatch {
  aor: string;
  problems: string[];
}

export interface VerifySummary {
  wave: string;
  /** Which home the users should live in now: the target after a run, the source after a rollback. */
  expectedHome: string;
  ok: boolean;
  users: number;
  matched: number;
  /** Users of the wave that exist in each store. */
  counts: { source: number; target: number };
  mismatches: VerifyMismatch[];
}

export interface VerifyOptions {
  wave: string;
  aors: string[];
  source: { home: string; store: Store };
  target: { home: string; store: Store };
  expectedHome: string;
  /** After a rollback, a user that never reached the target is fine (default true: it must be there). */
  requireTarget?: boolean;
  batchSize?: number;
}

/**
 * Compares a wave's users in the source and the target store: both hold the user, with equal
 * accounts (digest secrets included) and equal contact-list checksums (groups, contacts,
 * rules), and both place it in the expected home.
 */
export async function verifyWave(opts: VerifyOptions): Promise<VerifySummary> {
  const batch = opts.batchSize ?? 500;
  const summary: VerifySummary = {
    wave: opts.wave,
    expectedHome: opts.expectedHome,
    ok: true,
    users: opts.aors.length,
    matched: 0,
    counts: { source: 0, target: 0 },
    mismatches: [],
  };
  for (let i = 0; i < opts.aors.length; i += batch) {
    const aors = opts.aors.slice(i, i + batch);
    const [s, t] = [await readSide(opts.source.store, aors), await readSide(opts.target.store, aors)];
    summary.counts.source += s.accounts.size;
    summary.counts.target += t.accounts.size;
    for (const aor of aors) {
      const problems: string[] = [];
      const sa = s.accounts.get(aor);
      const ta = t.accounts.get(aor);
      if (!sa) problems.push(`missing in ${opts.source.home}'s store`);
      if (!ta && (opts.requireTarget ?? true)) problems.push(`missing in ${opts.target.home}'s store`);
      if (sa && ta) {
        if (accountChecksum(sa) !== accountChecksum(ta)) {
          const realms = (a: UserAccount) => JSON.stringify(a.credentials);
          problems.push(realms(sa) !== realms(ta) ? 'credentials differ' : 'account differs');
        }
        const sl = s.lists.get(aor)!;
        const tl = t.lists.get(aor)!;
        if (contactListChecksum(sl) !== contactListChecksum(tl))
          problems.push(describeListDifference(sl, tl));
      }
      for (const [side, placement] of [
        [opts.source.home, s.placements.get(aor)],
        [opts.target.home, t.placements.get(aor)],
      ] as const) {
        if (placement !== undefined && placement !== opts.expectedHome)
          problems.push(`${side}'s store places it in ${placement ?? 'no home'}, not ${opts.expectedHome}`);
      }
      if (problems.length > 0) summary.mismatches.push({ aor, problems });
      else summary.matched++;
    }
  }
  summary.ok = summary.mismatches.length === 0;
  return summary;
}

async function readSide(store: Store, aors: string[]) {
  const accounts = new Map((await store.users.readAccounts(aors)).map((a) => [a.aor, a]));
  const owners = await store.contactLists.findOwners(aors);
  const byId = await store.contactLists.getMany([...owners.values()]);
  const lists = new Map<string, ContactList>();
  for (const [aor, owner] of owners) lists.set(aor, byId.get(owner.id)!);
  const placements = await store.homes.getPlacements(aors);
  return { accounts, lists, placements };
}

function describeListDifference(a: ContactList, b: ContactList): string {
  const parts: string[] = [];
  if (JSON.stringify(a.groups) !== JSON.stringify(b.groups)) parts.push('groups');
  if (JSON.stringify(a.contacts) !== JSON.stringify(b.contacts))
    parts.push(`contacts (${a.contacts.length} vs ${b.contacts.length})`);
  if (JSON.stringify(a.accessRules) !== JSON.stringify(b.accessRules)) parts.push('allow/block rules');
  return `contact list differs: ${parts.join(', ')}`;
}
