import { Attribute, Change, type Client, NoSuchObjectError } from 'ldapts';
import type { CentralConfig } from './config.js';
import { connectLdap, type Environment, values } from './ldap.js';

/**
 * Parley's schema extension for the central forest: one auxiliary object class, parleyUser,
 * added to existing users and to the contacts the sync creates. OIDs sit under
 * 1.3.6.1.4.1.32473, the enterprise number RFC 5612 reserves for documentation; a
 * deployment that registers its own IANA Private Enterprise Number replaces the prefix
 * (docs/directory.md).
 */
export const PARLEY_OID = '1.3.6.1.4.1.32473.1';

const DIRECTORY_STRING = '1.3.6.1.4.1.1466.115.121.1.15';
const BOOLEAN = '1.3.6.1.4.1.1466.115.121.1.7';

export const PARLEY_ATTRIBUTE_TYPES = [
  `( ${PARLEY_OID}.1.1 NAME 'parleySipAddress' DESC 'SIP address of record: alias@domain' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX ${DIRECTORY_STRING}{256} SINGLE-VALUE )`,
  `( ${PARLEY_OID}.1.2 NAME 'parleyHome' DESC 'Parley home (pool or standard server) hosting the user' EQUALITY caseIgnoreMatch SYNTAX ${DIRECTORY_STRING}{128} SINGLE-VALUE )`,
  `( ${PARLEY_OID}.1.3 NAME 'parleyEnabled' DESC 'TRUE when the user may sign in to Parley' EQUALITY booleanMatch SYNTAX ${BOOLEAN} SINGLE-VALUE )`,
  `( ${PARLEY_OID}.1.4 NAME 'parleySourceAnchor' DESC 'Immutable anchor of the source user (entryUUID, objectGUID)' EQUALITY caseExactMatch SYNTAX ${DIRECTORY_STRING}{128} SINGLE-VALUE )`,
  `( ${PARLEY_OID}.1.5 NAME 'parleySourceForest' DESC 'Name of the forest the contact was synchronised from' EQUALITY caseIgnoreMatch SYNTAX ${DIRECTORY_STRING}{64} SINGLE-VALUE )`,
];

export const PARLEY_OBJECT_CLASS = `( ${PARLEY_OID}.2.1 NAME 'parleyUser' DESC 'Parley SIP-enabled user or contact' SUP top AUXILIARY MAY ( parleySipAddress $ parleyHome $ parleyEnabled $ parleySourceAnchor $ parleySourceForest ) )`;

export const SCHEMA_CONFIG_DN = 'cn=parley,cn=schema,cn=config';

/** The same extension as an LDIF an administrator can load by hand: ldapadd -Y EXTERNAL -H ldapi:/// -f parley.ldif */
export function parleySchemaLdif(): string {
  return [
    `dn: ${SCHEMA_CONFIG_DN}`,
    'objectClass: olcSchemaConfig',
    'cn: parley',
    ...PARLEY_ATTRIBUTE_TYPES.map((t) => `olcAttributeTypes: ${t}`),
    `olcObjectClasses: ${PARLEY_OBJECT_CLASS}`,
    '',
  ].join('\n');
}

export interface PrepareResult {
  central: string;
  schema: 'present' | 'added' | 'would-add';
  container: 'present' | 'added' | 'would-add';
  contactContainer: string;
}

/** RFC 4512 section 4.2: the subschema subentry lists the object classes the server knows. */
export async function hasParleySchema(client: Client): Promise<boolean> {
  const root = await client.search('', {
    scope: 'base',
    filter: '(objectClass=*)',
    attributes: ['subschemaSubentry'],
  });
  const subschema = values(root.searchEntries[0] ?? { dn: '' }, 'subschemaSubentry')[0] ?? 'cn=Subschema';
  const res = await client.search(subschema, {
    scope: 'base',
    filter: '(objectClass=subschema)',
    attributes: ['objectClasses'],
  });
  return values(res.searchEntries[0] ?? { dn: '' }, 'objectClasses').some((oc) =>
    /NAME\s+'parleyUser'/i.test(oc),
  );
}

async function containerExists(client: Client, dn: string): Promise<boolean> {
  try {
    await client.search(dn, { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] });
    return true;
  } catch (err) {
    if (err instanceof NoSuchObjectError) return false;
    throw err;
  }
}

/**
 * An equality index on the addresses and anchors (olcDbIndex on the database holding the
 * base), so the sync's lookups of a few addresses do not scan every entry. Best effort: a
 * database that refuses it (another backend, no right) still works, more slowly.
 */
async function indexParleyAttributes(admin: Client, baseDn: string): Promise<void> {
  const norm = (dn: string) => dn.toLowerCase().replace(/\s+/g, '');
  const dbs = await admin
    .search('cn=config', { scope: 'one', filter: '(olcSuffix=*)', attributes: ['olcSuffix'] })
    .catch(() => undefined);
  const db = dbs?.searchEntries.find((e) =>
    values(e, 'olcSuffix').some(
      (sfx) => norm(baseDn) === norm(sfx) || norm(baseDn).endsWith(`,${norm(sfx)}`),
    ),
  );
  if (!db) return;
  await admin
    .modify(db.dn, [
      new Change({
        operation: 'add',
        modification: new Attribute({
          type: 'olcDbIndex',
          values: ['parleySipAddress,parleySourceAnchor eq'],
        }),
      }),
    ])
    .catch(() => undefined);
}

export class SchemaAdminMissingError extends Error {
  override name = 'SchemaAdminMissingError';
}

/**
 * Adds the schema (through cn=config, as the schema admin) and the contact container.
 * Idempotent: what is already there is left alone. Only the central forest is touched.
 */
export async function prepareCentral(
  central: CentralConfig,
  opts: { env: Environment; dryRun?: boolean },
): Promise<PrepareResult> {
  const client = await connectLdap(central, { env: opts.env });
  try {
    const result: PrepareResult = {
      central: central.url,
      schema: 'present',
      container: 'present',
      contactContainer: central.contactContainer,
    };
    if (!(await hasParleySchema(client))) {
      result.schema = 'would-add';
      if (!opts.dryRun) {
        if (!central.schemaAdmin) {
          throw new SchemaAdminMissingError(
            'the parleyUser schema is missing and directory.central.schemaAdmin is not configured',
          );
        }
        const admin = await connectLdap(
          { url: central.url, bindDn: central.schemaAdmin.bindDn, password: central.schemaAdmin.password },
          { env: opts.env },
        );
        try {
          await admin.add(SCHEMA_CONFIG_DN, {
            objectClass: 'olcSchemaConfig',
            cn: 'parley',
            olcAttributeTypes: PARLEY_ATTRIBUTE_TYPES,
            olcObjectClasses: PARLEY_OBJECT_CLASS,
          });
          await indexParleyAttributes(admin, central.baseDn);
        } finally {
          await admin.unbind();
        }
        result.schema = 'added';
      }
    }
    if (!(await containerExists(client, central.contactContainer))) {
      result.container = 'would-add';
      if (!opts.dryRun) {
        const ou = /^ou=([^,]+)/i.exec(central.contactContainer)?.[1];
        if (!ou) throw new Error(`contactContainer must start with ou=: ${central.contactContainer}`);
        await client.add(central.contactContainer, { objectClass: ['top', 'organizationalUnit'], ou });
        result.container = 'added';
      }
    }
    return result;
  } finally {
    await client.unbind();
  }
}
