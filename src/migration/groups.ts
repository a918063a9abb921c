import type { Client } from 'ldapts';
import type { CentralConfig } from '../directory/config.js';
import { andFilter, equalityFilter } from '../directory/filter.js';
import { groupEntries, normalizeDn, splitDn } from '../directory/groups.js';
import { searchPages, values } from '../directory/ldap.js';

/**
 * LDAP group membership in the central forest, for `parley migrate plan --by group`:
 * the central forest's group entries (src/directory/groups.ts groupEntries), read in one
 * paged search, plus `memberOf` on the user where the server keeps it (Active
 * Directory, OpenLDAP with the memberof overlay). Only direct membership counts: nested
 * groups are not followed.
 */

/** A group's name: the value of its first RDN, unescaped (cn=Sales\, EMEA,ou=groups → Sales, EMEA). */
export function groupLabel(dn: string): string {
  const first = splitDn(dn)[0] ?? dn;
  const eq = first.search(/(?<!\\)=/);
  const value = (eq < 0 ? first : first.slice(eq + 1)).trim();
  return value
    .replace(/\\([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
    .replace(/\\(.)/g, '$1');
}

/** The first of a user's groups by name (then by DN, for two groups of one name): its wave. */
export function firstGroup(groups: readonly string[]): string | undefined {
  return [...groups].sort((a, b) => {
    const la = groupLabel(a).toLowerCase();
    const lb = groupLabel(b).toLowerCase();
    if (la !== lb) return la < lb ? -1 : 1;
    return normalizeDn(a) < normalizeDn(b) ? -1 : normalizeDn(a) > normalizeDn(b) ? 1 : 0;
  })[0];
}

/** Every group under the central base, by the normalized DN of each member: the groups' DNs. */
export async function readGroupMembers(
  client: Client,
  central: CentralConfig,
): Promise<Map<string, string[]>> {
  const byMember = new Map<string, string[]>();
  for await (const page of groupEntries(client, central)) {
    for (const group of page) {
      for (const member of group.members) {
        const key = normalizeDn(member);
        const list = byMember.get(key) ?? [];
        if (!list.some((g) => normalizeDn(g) === normalizeDn(group.dn))) list.push(group.dn);
        byMember.set(key, list);
      }
    }
  }
  return byMember;
}

/** SIP-enabled entries of the central forest with the `memberOf` values they carry, if any. */
export async function* readSipEnabledWithMemberOf(
  client: Client,
  central: CentralConfig,
): AsyncGenerator<{ dn: string; aor: string; memberOf: string[] }[]> {
  const pages = searchPages(client, central.baseDn, {
    filter: andFilter(equalityFilter('objectClass', 'parleyUser'), '(parleySipAddress=*)'),
    attributes: ['parleySipAddress', 'memberOf'],
    pageSize: central.pageSize,
  });
  for await (const page of pages) {
    const out: { dn: string; aor: string; memberOf: string[] }[] = [];
    for (const e of page) {
      const sip = values(e, 'parleySipAddress')[0]
        ?.toLowerCase()
        .replace(/^sips?:/, '');
      if (sip) out.push({ dn: e.dn, aor: sip, memberOf: values(e, 'memberOf') });
    }
    yield out;
  }
}
