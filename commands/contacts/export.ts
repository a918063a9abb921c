import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { progressDisplay, withProgress } from '../../src/contacts/cli.js';
import {
  type ExportFormat,
  type ExportResult,
  type ExportScope,
  exportContactLists,
} from '../../src/contacts/export.js';
import { BULK_JOB_SHARED_BUFFERS } from '../../src/store/open.js';
import { normalizeAor } from '../../src/store/users.js';

export default class ContactsExport extends ParleyCommand {
  static override summary = "Export users' contact lists to XML.";
  static override description =
    `Writes contact lists in Parley's contact-list XML format (docs/contact-list-xml.md) for one user, one home or every user, streaming: memory stays flat however many users there are.

--out ending in .xml writes one document holding every selected user, with FILE.manifest.json beside it. Any other --out is a folder that receives one document per user (alice@example.com.xml) and manifest.json. The manifest carries user, contact and byte counts and the sha256 of every file; it is written last, so its presence means the export completed.

--format xep-0227 writes the XMPP servers' import format (XEP-0227, urn:xmpp:pie:0) instead, for users leaving for an XMPP server: one <host> per SIP domain, one <user> per user with the contact list as its roster. It needs an --out ending in .xml. Parley cannot import it back; docs/contact-list-xml.md says how addresses map to JIDs and what is lost.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --all --out /var/backups/parley/contacts-$(date +%F).xml',
    '<%= config.bin %> <%= command.id %> --home pool1 --out /var/backups/parley/pool1/',
    '<%= config.bin %> <%= command.id %> --user sip:alice@example.com --out alice.xml --json',
    '<%= config.bin %> <%= command.id %> --all --format xep-0227 --out /var/backups/parley/to-xmpp.xml',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    user: Flags.string({
      summary: 'Export this user only (sip:alice@example.com).',
      exactlyOne: ['user', 'all', 'home'],
    }),
    all: Flags.boolean({ summary: 'Export every user.', exactlyOne: ['user', 'all', 'home'] }),
    home: Flags.string({
      summary: 'Export the users living in this home.',
      exactlyOne: ['user', 'all', 'home'],
    }),
    out: Flags.string({
      summary: 'A .xml file (one document) or a folder (one document per user).',
      required: true,
    }),
    format: Flags.string({
      summary: "parley (Parley's contact-list XML) or xep-0227 (XMPP servers' import format).",
      options: ['parley', 'xep-0227'],
      default: 'parley',
    }),
  };

  async run(): Promise<ExportResult> {
    const { flags } = await this.parse(ContactsExport);
    const scope: ExportScope = flags.user
      ? { kind: 'user', aor: normalizeAor(flags.user) }
      : flags.home
        ? { kind: 'home', home: flags.home }
        : { kind: 'all' };
    const display = progressDisplay(this, this.jsonEnabled());
    const result = await runWithStore(
      this,
      flags,
      (store) =>
        withProgress('Exporting contact lists', display, (progress) =>
          exportContactLists(store, {
            scope,
            out: flags.out,
            format: flags.format as ExportFormat,
            // PostgreSQL reads the next batch while this one is written; PGlite runs in this process.
            readAhead: store.db.engine === 'postgres',
            onProgress: (users) => progress('exported', users),
          }),
        ),
      { sharedBuffers: BULK_JOB_SHARED_BUFFERS },
    );
    this.log(
      `Exported ${result.users} user(s), ${result.contacts} contact(s) to ${result.out} (${result.files} file(s), ${result.bytes} bytes); manifest ${result.manifest}.`,
    );
    return result;
  }
}
