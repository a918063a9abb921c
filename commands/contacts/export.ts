import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { progressDisplay, withProgress } from '../../src/contacts/cli.js';
import { type ExportResult, type ExportScope, exportContactLists } from '../../src/contacts/export.js';
import { normalizeAor } from '../../src/store/users.js';

export default class ContactsExport extends ParleyCommand {
  static override summary = "Export users' contact lists to XML.";
  static override description =
    `Writes contact lists in Parley's contact-list XML format (docs/contact-list-xml.md) for one user, one home or every user, streaming: memory stays flat however many users there are.

--out ending in .xml writes one document holding every selected user, with FILE.manifest.json beside it. Any other --out is a folder that receives one document per user (alice@example.com.xml) and manifest.json. The manifest carries user, contact and byte counts and the sha256 of every file; it is written last, so its presence means the export completed.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --all --out /var/backups/parley/contacts-$(date +%F).xml',
    '<%= config.bin %> <%= command.id %> --home pool1 --out /var/backups/parley/pool1/',
    '<%= config.bin %> <%= command.id %> --user sip:alice@example.com --out alice.xml --json',
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
  };

  async run(): Promise<ExportResult> {
    const { flags } = await this.parse(ContactsExport);
    const scope: ExportScope = flags.user
      ? { kind: 'user', aor: normalizeAor(flags.user) }
      : flags.home
        ? { kind: 'home', home: flags.home }
        : { kind: 'all' };
    const display = progressDisplay(this, this.jsonEnabled());
    const result = await runWithStore(this, flags, (store) =>
      withProgress('Exporting contact lists', display, (progress) =>
        exportContactLists(store, {
          scope,
          out: flags.out,
          onProgress: (users) => progress('exported', users),
        }),
      ),
    );
    this.log(
      `Exported ${result.users} user(s), ${result.contacts} contact(s) to ${result.out} (${result.files} file(s), ${result.bytes} bytes); manifest ${result.manifest}.`,
    );
    return result;
  }
}
