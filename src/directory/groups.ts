import type { Client } from 'ldapts';
import type { CentralConfig } from './config.js';
import { equalityFilter, orFilter } from './filter.js';
import { allValues, connectLdap, type Environment, firstValue, searchPages, values } from './ldap.js';

/**
 * Group entries of the central forest, the one reader of LDAP groups: groupOfNames and
 * Active Directory's group (`member`), groupOfUniqueNames (`uniqueMember`), under the base.
 * Replication turns them into the store's group membership (archiving.groups), nested groups
 * expanded; `parley migrate plan --by group` reads direct membership from them
 * (src/migration/groups.ts).
 */

/** A DN compared the way directories do: case-insensitive, spaces around `,` and `=` ignored. */
export function normalizeDn(dn: string): string {
  // uniqueMember may carry an optional UID: "uid=a,dc=x#'0101'B".
  const plain = dn.replace(/#'[01]*'B$/, '');
  return splitDn(plain)
    .map((rdn) => {
      const eq = rdn.search(/(?<!\\)=/);
      return eq < 0
        ? rdn.trim().toLowerCase()
        : `${rdn.slice(0, eq).trim().toLowerCase()}=${rdn
            .slice(eq + 1)
            .trim()
            .toLowerCase()}`;
    })
    .join(',');
}

/** The DN's RDNs, split on commas that are not escaped. */
export function splitDn(dn: string): string[] {
  const out: string[] = [];
  let current = '';
  for (let i = 0; i < dn.length; i++) {
    const ch = dn[i];
    if (ch === '\\' && i + 1 < dn.length) {
      current += ch + dn[i + 1];
      i++;
    } else if (ch === ',') {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out;
}

export interface GroupEntry {
  dn: string;
  /** Its cn (the first, when several). */
  cn?: string;
  /** Member DNs as the directory holds them. */
  members: string[];
}

/** Every group entry under the central base, a page at a time. */
export async function* groupEntries(client: Client, central: CentralConfig): AsyncGenerator<GroupEntry[]> {
  const pages = searchPages(client, central.baseDn, {
    filter: orFilter(
      equalityFilter('objectClass', 'groupOfNames'),
      equalityFilter('objectClass', 'groupOfUniqueNames'),
      equalityFilter('objectClass', 'group'),
    ),
    attributes: ['cn', 'member', 'uniqueMember'],
    pageSize: central.pageSize,
  });
  for await (const page of pages) {
    const groups: GroupEntry[] = [];
    for (const g of page)
      groups.push({
        dn: g.dn,
        cn: firstValue(g, 'cn'),
        // Active Directory hands a group of over 1,500 members out in ranges.
        members: [...(await allValues(client, g, 'member')), ...values(g, 'uniqueMember')],
      });
    yield groups;
  }
}

export interface CentralGroup {
  /** Its cn, lower case (LDAP compares cn without case). */
  name: string;
  /** Normalized, as are the members. */
  dn: string;
  members: string[];
}

/** Every named group of the central forest, over a connection of its own. */
export async function readCentralGroups(central: CentralConfig, env: Environment): Promise<CentralGroup[]> {
  const client = await connectLdap(central, { env });
  try {
    const groups: CentralGroup[] = [];
    for await (const page of groupEntries(client, central))
      for (const g of page)
        if (g.cn)
          groups.push({
            name: g.cn.toLowerCase(),
            dn: normalizeDn(g.dn),
            members: g.members.map(normalizeDn),
          });
    return groups;
  } finally {
    await client.unbind().catch(() => undefined);
  }
}

/**
 * Each group's SIP members, nested groups expanded at any depth (a cycle ends where it
 * closes): `addresses` maps a normalized DN to the SIP address of the entry; members without
 * one (people not SIP-enabled, computers) are left out. One membership per group and address.
 */
export function resolveMemberships(
  groups: readonly CentralGroup[],
  addresses: ReadonlyMap<string, string>,
): Array<{ group: string; aor: string }> {
  const byDn = new Map(groups.map((g) => [g.dn, g]));
  const out: Array<{ group: string; aor: string }> = [];
  for (const group of groups) {
    const aors = new Set<string>();
    const visited = new Set([group.dn]);
    const queue = [...group.members];
    while (queue.length > 0) {
      const dn = queue.pop() as string;
      const aor = addresses.get(dn);
      if (aor) aors.add(aor);
      const nested = byDn.get(dn);
      if (nested && !visited.has(dn)) {
        visited.add(dn);
        queue.push(...nested.members);
      }
    }
    for (const aor of aors) out.push({ group: group.name, aor });
  }
  return out;
}
