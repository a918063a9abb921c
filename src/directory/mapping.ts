import { createHash } from 'node:crypto';
import type { Entry } from 'ldapts';
import type { ForestConfig } from './config.js';
import { escapeDnValue } from './filter.js';
import { bufferValue, firstValue, values } from './ldap.js';

/** A user as read from a secondary forest, after the forest's attribute mapping. */
export interface SourceUser {
  forest: string;
  /** Immutable anchor: entryUUID (OpenLDAP) or objectGUID as hex (AD). Never the DN. */
  anchor: string;
  dn: string;
  /** Lower-case SIP user part, or undefined when the alias attribute is missing or unusable. */
  alias?: string;
  aliasProblem?: string;
  displayName: string;
  givenName?: string;
  surname?: string;
  mail?: string;
  disabled: boolean;
  /** modifyTimestamp (OpenLDAP) or uSNChanged (AD): the incremental watermark. */
  changeMark?: string;
}

/** Contact attributes as written to the central forest (objectClass and RDN aside). */
export type ContactAttributes = Record<string, string[]>;

export const PARLEY_ATTRIBUTES = [
  'parleySipAddress',
  'parleyHome',
  'parleyEnabled',
  'parleySourceAnchor',
  'parleySourceForest',
] as const;

export const CONTACT_ATTRIBUTES = ['sn', 'displayName', 'givenName', 'mail', ...PARLEY_ATTRIBUTES] as const;

export function anchorAttribute(forest: Pick<ForestConfig, 'type'>): string {
  return forest.type === 'ad' ? 'objectGUID' : 'entryUUID';
}

export function changeMarkAttribute(forest: Pick<ForestConfig, 'type'>): string {
  return forest.type === 'ad' ? 'uSNChanged' : 'modifyTimestamp';
}

export function sourceAttributes(forest: ForestConfig): string[] {
  const m = forest.mapping;
  const attrs = new Set([anchorAttribute(forest), changeMarkAttribute(forest), m.alias, m.displayName, 'cn']);
  for (const a of [m.givenName, m.surname, m.mail]) if (a) attrs.add(a);
  if (m.disabled.kind === 'values' || m.disabled.kind === 'present') attrs.add(m.disabled.attribute);
  if (m.disabled.kind === 'ad-uac') attrs.add('userAccountControl');
  return [...attrs];
}

export function readAnchor(entry: Entry, forest: Pick<ForestConfig, 'type'>): string | undefined {
  if (forest.type === 'ad') return bufferValue(entry, 'objectGUID')?.toString('hex');
  return firstValue(entry, 'entryUUID')?.toLowerCase();
}

// RFC 3261 section 25.1: user = 1*( unreserved / escaped / user-unreserved ). Escapes and
// the rarely used user-unreserved marks are refused: an alias has to be typed by people.
const SIP_USER = /^[a-z0-9][a-z0-9\-_.!~'+]*$/;

export function normaliseAlias(raw: string | undefined): { alias?: string; problem?: string } {
  if (raw === undefined || raw.trim() === '') return { problem: 'alias attribute is empty' };
  const alias = raw.trim().toLowerCase();
  if (!SIP_USER.test(alias)) return { problem: `alias '${raw}' is not a valid SIP user part` };
  return { alias };
}

function isDisabled(entry: Entry, forest: ForestConfig): boolean {
  const rule = forest.mapping.disabled;
  switch (rule.kind) {
    case 'none':
      return false;
    case 'present':
      return values(entry, rule.attribute).length > 0;
    case 'values':
      return values(entry, rule.attribute).some((v) => rule.values.includes(v.toLowerCase()));
    case 'ad-uac':
      // MS-ADTS 2.2.16: ADS_UF_ACCOUNTDISABLE is 0x2.
      return (Number(firstValue(entry, 'userAccountControl') ?? 0) & 2) === 2;
  }
}

export function readSourceUser(entry: Entry, forest: ForestConfig): SourceUser | undefined {
  const anchor = readAnchor(entry, forest);
  if (!anchor) return undefined;
  const m = forest.mapping;
  const { alias, problem } = normaliseAlias(firstValue(entry, m.alias));
  return {
    forest: forest.name,
    anchor,
    dn: entry.dn,
    alias,
    aliasProblem: problem,
    displayName: firstValue(entry, m.displayName) ?? firstValue(entry, 'cn') ?? alias ?? anchor,
    givenName: m.givenName ? firstValue(entry, m.givenName) : undefined,
    surname: m.surname ? firstValue(entry, m.surname) : undefined,
    mail: m.mail ? firstValue(entry, m.mail) : undefined,
    disabled: isDisabled(entry, forest),
    changeMark: firstValue(entry, changeMarkAttribute(forest)),
  };
}

export function sipAddress(alias: string, sipDomain: string): string {
  return `${alias}@${sipDomain}`;
}

/** The contact's RDN uses the anchor, so renames and OU moves in the source never rename it. */
export function contactDn(forest: string, anchor: string, container: string): string {
  return `cn=${escapeDnValue(`${forest}-${anchor}`)},${container}`;
}

export function contactAttributes(
  user: SourceUser & { alias: string },
  opts: { sipDomain: string; home?: string; enabled: boolean },
): ContactAttributes {
  const attrs: ContactAttributes = {
    sn: [user.surname ?? user.alias],
    displayName: [user.displayName],
    givenName: user.givenName ? [user.givenName] : [],
    mail: user.mail ? [user.mail] : [],
    parleySipAddress: [sipAddress(user.alias, opts.sipDomain)],
    parleyHome: opts.home ? [opts.home] : [],
    parleyEnabled: [opts.enabled ? 'TRUE' : 'FALSE'],
    parleySourceAnchor: [user.anchor],
    parleySourceForest: [user.forest],
  };
  return attrs;
}

/** Reads a central contact back into the same shape, to compare with what is wanted. */
export function readContactAttributes(entry: Entry): ContactAttributes {
  const attrs: ContactAttributes = {};
  for (const a of CONTACT_ATTRIBUTES) attrs[a] = values(entry, a);
  return attrs;
}

/** One attribute's values in a canonical order (most have one value: no copy). */
function sortedValues(values: readonly string[] | undefined): readonly string[] {
  if (values === undefined) return [];
  return values.length > 1 ? [...values].sort() : values;
}

export function hashAttributes(attrs: ContactAttributes): string {
  const canonical = CONTACT_ATTRIBUTES.map((a) => [a, sortedValues(attrs[a])]);
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

/** Attributes whose values differ: the replace operations of an update. */
export function changedAttributes(current: ContactAttributes, wanted: ContactAttributes): string[] {
  return CONTACT_ATTRIBUTES.filter((a) => {
    const x = sortedValues(current[a]);
    const y = sortedValues(wanted[a]);
    return x.length !== y.length || x.some((v, i) => v !== y[i]);
  });
}
