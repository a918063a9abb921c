import { buildPidf, closedPresence, type PresenceDocument, type PresenceTuple, parsePidf } from './pidf.js';

/**
 * Composition of a presentity's publications (one per endpoint and ETag, RFC 3903) into the
 * single document its watchers are notified with. RFC 3863 section 3.3 and RFC 4479 section
 * 3.4 leave the composition policy to the server; Parley's is:
 *
 * 1. Tuples: union over all publications, deduplicated by tuple id; for a duplicate id the
 *    most recent publication wins. Open tuples come first, then higher contact priority, then
 *    the most recent, so clients that only read the first tuple show the reachable endpoint.
 *    The presentity is open as soon as one tuple is open.
 * 2. Activities (RPID, RFC 4480): endpoints disagree (the phone says on-the-phone, the idle
 *    desktop says away). Only publications with an open tuple are considered, unless none of
 *    those carries activities. Among them the publication whose strongest activity ranks
 *    highest in ACTIVITY_PRECEDENCE wins, and its whole activity set is used; equal ranks go
 *    to the most recent publication. The ranking puts what the user chose or is doing now
 *    above what a device inferred: busy (do-not-disturb) > on-the-phone > presentation >
 *    meeting > appointment > performance > any other activity > away > unknown.
 * 3. Person: the id and note of the winning publication's person, else of the most recent
 *    publication that has a person.
 * 4. Notes: presence-level notes of all publications, most recent first, without duplicates.
 *
 * No usable publication composes to closedPresence(), the same bytes a politely blocked
 * watcher receives.
 */

export interface PresencePublication {
  etag: string;
  body: string;
  updatedAt: Date | string | number;
}

export interface ComposeOptions {
  /**
   * Whether tuple <contact> URIs (often an endpoint's private address) reach watchers.
   * Default true; a federation-facing server may turn it off.
   */
  includeContacts?: boolean;
}

export const ACTIVITY_PRECEDENCE: readonly string[] = [
  'busy',
  'on-the-phone',
  'presentation',
  'meeting',
  'appointment',
  'performance',
];

const OTHER_ACTIVITY_RANK = 1;
const AWAY_RANK = 0;
const UNKNOWN_RANK = -1;

/** Higher ranks win a conflict; see the composition policy above. */
export function activityRank(activity: string): number {
  const index = ACTIVITY_PRECEDENCE.indexOf(activity);
  if (index >= 0) return OTHER_ACTIVITY_RANK + ACTIVITY_PRECEDENCE.length - index;
  if (activity === 'away') return AWAY_RANK;
  if (activity === 'unknown') return UNKNOWN_RANK;
  return OTHER_ACTIVITY_RANK;
}

interface ParsedPublication {
  doc: PresenceDocument;
  time: number;
  order: number;
  open: boolean;
}

function timeOf(value: Date | string | number): number {
  const ms = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : Date.parse(value);
  return Number.isFinite(ms) ? ms : 0;
}

function strongestRank(activities: string[]): number {
  let best = Number.NEGATIVE_INFINITY;
  for (const activity of activities) best = Math.max(best, activityRank(activity));
  return best;
}

/** The composed document; composePresence serializes it. */
export function composeDocument(
  entity: string,
  publications: PresencePublication[],
  opts: ComposeOptions = {},
): PresenceDocument | undefined {
  const includeContacts = opts.includeContacts ?? true;
  const parsed: ParsedPublication[] = [];
  publications.forEach((publication, order) => {
    // Bodies were validated when published; one that no longer parses is skipped, not fatal.
    const result = parsePidf(publication.body);
    if (!result.ok) return;
    const open = result.doc.tuples.some((t) => t.basic === 'open');
    parsed.push({ doc: result.doc, time: timeOf(publication.updatedAt), order, open });
  });
  if (parsed.length === 0) return undefined;
  // Oldest first, so "later wins" is a plain overwrite; input order breaks timestamp ties.
  parsed.sort((a, b) => a.time - b.time || a.order - b.order);

  const tuples = new Map<string, { tuple: PresenceTuple; recency: number }>();
  parsed.forEach((publication, recency) => {
    for (const tuple of publication.doc.tuples) {
      tuples.delete(tuple.id);
      const copy: PresenceTuple = { ...tuple };
      if (!includeContacts) {
        delete copy.contact;
        delete copy.priority;
      }
      tuples.set(tuple.id, { tuple: copy, recency });
    }
  });
  const orderedTuples = [...tuples.values()]
    .sort(
      (a, b) =>
        Number(b.tuple.basic === 'open') - Number(a.tuple.basic === 'open') ||
        (b.tuple.priority ?? 0) - (a.tuple.priority ?? 0) ||
        b.recency - a.recency,
    )
    .map((entry) => entry.tuple);

  const withActivities = parsed.filter((p) => p.doc.activities.length > 0);
  const openWithActivities = withActivities.filter((p) => p.open);
  const candidates = openWithActivities.length > 0 ? openWithActivities : withActivities;
  let winner: ParsedPublication | undefined;
  for (const candidate of candidates) {
    // candidates are oldest first, so >= lets the most recent win a tie
    if (!winner || strongestRank(candidate.doc.activities) >= strongestRank(winner.doc.activities)) {
      winner = candidate;
    }
  }

  const newestPerson = [...parsed].reverse().find((p) => p.doc.person)?.doc.person;
  const personSource = winner?.doc.person ?? newestPerson;
  const activities = winner ? [...winner.doc.activities] : [];

  const doc: PresenceDocument = {
    entity,
    tuples: orderedTuples,
    notes: [...new Set([...parsed].reverse().flatMap((p) => p.doc.notes))],
    activities,
  };
  if (personSource || activities.length > 0) {
    const person: NonNullable<PresenceDocument['person']> = { id: personSource?.id ?? 'p', activities };
    const note = winner?.doc.person?.note ?? newestPerson?.note;
    if (note !== undefined) person.note = note;
    doc.person = person;
  }
  return doc;
}

/** The NOTIFY body (application/pidf+xml) for a presentity's current publications. */
export function composePresence(
  entity: string,
  publications: PresencePublication[],
  opts?: ComposeOptions,
): string {
  const doc = composeDocument(entity, publications, opts);
  return doc ? buildPidf(doc) : closedPresence(entity);
}
