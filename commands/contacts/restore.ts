import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../src/cli/store-command.js';
import { importOutcomeError, importSummaryLines } from '../../src/contacts/cli.js';
import { ContactsError } from '../../src/contacts/errors.js';
import { type RestoreResult, restoreContactList } from '../../src/contacts/restore.js';
import { BULK_JOB_SHARED_BUFFERS } from '../../src/store/open.js';

export default class ContactsRestore extends ParleyCommand {
  static override summary = "Restore one user's contact list from a contact-list export.";
  static override description =
    `Replaces one user's contact list with the one in an export written by \`parley contacts export\` (a per-user folder, a folder holding one all-users file, or the .xml file), without touching any other user. When the export's manifest is there, the file's sha256 is checked first. The whole file is validated before anything is written.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --user sip:alice@example.com --from /var/backups/parley/contacts-2026-11-25.xml',
    '<%= config.bin %> <%= command.id %> --user alice@example.com --from /var/backups/parley/pool1/ --dry-run --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    user: Flags.string({
      summary: 'The user whose list to restore (sip:alice@example.com).',
      required: true,
    }),
    from: Flags.string({ summary: 'The export: folder or .xml file.', required: true }),
    'dry-run': Flags.boolean({ summary: 'Validate and report what would change, writing nothing.' }),
  };

  async run(): Promise<RestoreResult & StoreNamed> {
    const { flags } = await this.parse(ContactsRestore);
    const result = await runChange(
      this,
      flags,
      nothingToPrepare,
      (store) => restoreContactList(store, { user: flags.user, from: flags.from, dryRun: flags['dry-run'] }),
      { sharedBuffers: BULK_JOB_SHARED_BUFFERS },
    );
    const outcome = importOutcomeError(result);
    if (outcome?.code === 'CONTACT_LIST_INVALID') throw outcome;
    if (outcome) throw new ContactsError('USER_NOT_FOUND', result.failures[0]?.reason ?? outcome.message);
    for (const line of importSummaryLines(result)) this.log(line);
    this.log(
      `Restored ${result.user} from ${result.source}${result.checksumVerified ? ' (checksum verified)' : ''}.`,
    );
    return result;
  }
}
