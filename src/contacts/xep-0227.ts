import { authorizeWatcher } from '../presence/authorize.js';
import type { ContactList } from './model.js';
import { escapeAttribute } from './xml-serialize.js';

/**
 * XEP-0227 (Portable Import/Export Format for XMPP-IM Servers, namespace urn:xmpp:pie:0):
 * the file an XMPP server (Prosody, ejabberd, Openfire ...) imports, for users leaving Parley
 * for XMPP. One `<host>` per SIP domain, one `<user>` per Parley user, and the user's contact
 * list as the roster (`<query xmlns='jabber:iq:roster'>`, RFC 6121 section 2.1).
 *
 * Mapping (docs/contact-list-xml.md says what is lost):
 * - Addresses: sip:user@host and sips:user@host become the bare JID user@host. The user part
 *   is %-decoded (RFC 3261 19.1.2) and the characters a JID localpart may not hold are
 *   escaped as XEP-0106 says (space " & ' / : < > @ \ as \20 \22 ...); hosts are kept.
 * - Groups become `<group>` elements, display names the item's name.
 * - subscription: 'to' when the user subscribes to the contact; 'from' when the contact is a
 *   user of this export's store whose own list subscribes to the user and whom the user's
 *   allow/block list lets watch (src/presence/authorize.ts, with its defaults: the user's
 *   own domain may watch); 'both' when both hold; 'none' otherwise.
 */
export const PIE_NAMESPACE = 'urn:xmpp:pie:0';
export const ROSTER_NAMESPACE = 'jabber:iq:roster';

export type RosterSubscription = 'none' | 'to' | 'from' | 'both';

/** XEP-0106 section 4.2: what a localpart cannot hold, and its escape. */
const JID_ESCAPES: Record<string, string> = {
  ' ': '\\20',
  '"': '\\22',
  '&': '\\26',
  "'": '\\27',
  '/': '\\2f',
  ':': '\\3a',
  '<': '\\3c',
  '>': '\\3e',
  '@': '\\40',
  '\\': '\\5c',
};

/** sip:alice@example.com -> { local: 'alice', domain: 'example.com' }; also takes a bare aor. */
export function jidParts(sipUriOrAor: string): { local: string; domain: string } {
  const address = sipUriOrAor.replace(/^sips?:/i, '');
  const at = address.lastIndexOf('@');
  const user = at === -1 ? '' : address.slice(0, at);
  const domain = (at === -1 ? address : address.slice(at + 1)).toLowerCase();
  return { local: escapeLocalpart(percentDecode(user)), domain };
}

export function jidFromSipUri(sipUriOrAor: string): string {
  const { local, domain } = jidParts(sipUriOrAor);
  return local === '' ? domain : `${local}@${domain}`;
}

function percentDecode(user: string): string {
  if (!user.includes('%')) return user;
  try {
    return decodeURIComponent(user);
  } catch {
    // Not valid %-encoded UTF-8: the characters are kept as written ('%' is legal in a JID).
    return user;
  }
}

function escapeLocalpart(local: string): string {
  return local.replace(/[ "&'/:<>@\\]/g, (c) => JID_ESCAPES[c]);
}

/** Text content: XML 1.0 section 2.4 (and CR as a reference, or a parser turns it into LF). */
function escapeText(value: string): string {
  return value.replace(/[&<>\r]/g, (c) => TEXT_ESCAPES[c]);
}

const TEXT_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '\r': '&#13;' };

/** Which of the list's contacts may watch its owner (see the file comment): contact URIs. */
export function subscriptionFor(
  list: ContactList,
  contact: ContactList['contacts'][number],
  subscribersOfOwner: ReadonlySet<string>,
): RosterSubscription {
  const to = contact.subscribed;
  const from =
    subscribersOfOwner.has(contact.uri) &&
    authorizeWatcher({ watcher: contact.uri, presentity: list.user, rules: list.accessRules }) === 'allow';
  return to && from ? 'both' : to ? 'to' : from ? 'from' : 'none';
}

export const PIE_HEADER = `<?xml version="1.0" encoding="UTF-8"?>\n<server-data xmlns="${PIE_NAMESPACE}">\n`;
export const PIE_FOOTER = '</server-data>\n';

export function hostOpen(domain: string): string {
  return `  <host jid="${escapeAttribute(domain)}">\n`;
}

export const HOST_CLOSE = '  </host>\n';

/** One `<user>` with its roster, indented for its place under `<host>`. */
export function serializePieUser(list: ContactList, subscribersOfOwner: ReadonlySet<string>): string {
  const { local } = jidParts(list.user);
  let out = `    <user name="${escapeAttribute(local)}">\n`;
  if (list.contacts.length === 0) {
    out += `      <query xmlns="${ROSTER_NAMESPACE}"/>\n`;
  } else {
    out += `      <query xmlns="${ROSTER_NAMESPACE}">\n`;
    for (const contact of list.contacts) {
      let item = `        <item jid="${escapeAttribute(jidFromSipUri(contact.uri))}"`;
      if (contact.displayName !== '') item += ` name="${escapeAttribute(contact.displayName)}"`;
      item += ` subscription="${subscriptionFor(list, contact, subscribersOfOwner)}"`;
      if (contact.groups.length === 0) {
        out += `${item}/>\n`;
        continue;
      }
      out += `${item}>\n`;
      for (const group of contact.groups) out += `          <group>${escapeText(group)}</group>\n`;
      out += '        </item>\n';
    }
    out += '      </query>\n';
  }
  return `${out}    </user>\n`;
}
