/**
 * The contact-list XML format (docs/contact-list-xml.md, fixtures/contacts/contact-list.xsd):
 * what the SIP server's `parley-contacts` event package and the export/import commands use.
 */
export {
  type AccessRule,
  CONTACT_LIST_CONTENT_TYPE,
  CONTACT_LIST_FORMAT_VERSION,
  CONTACT_LIST_NAMESPACE,
  type Contact,
  type ContactGroup,
  type ContactList,
  type XmlProblem,
} from './model.js';
export {
  parseContactListDocument,
  parseContactListXml,
  type ScanStep,
  scanContactListStream,
  type UserFragment,
} from './xml-document.js';
export { type ContactListLimits, DEFAULT_LIMITS, parseUserElement } from './xml-parse.js';
export { serializeContactList, serializeContactLists, serializeUserElement } from './xml-serialize.js';
