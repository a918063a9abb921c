import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Args, Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { fromCatalogued } from '../../src/cli/errors.js';
import { storeFlags } from '../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../src/cli/store-command.js';
import {
  importOutcomeError,
  importSummaryLines,
  progressDisplay,
  withProgress,
} from '../../src/contacts/cli.js';
import { ContactsError } from '../../src/contacts/errors.js';
import { type ImportMode, type ImportResult, importContactLists } from '../../src/contacts/import.js';
import { DEFAULT_LIMITS } from '../../src/contacts/xml-parse.js';
import { BULK_JOB_SHARED_BUFFERS } from '../../src/store/open.js';

export default class ContactsImport extends ParleyCommand {
  static override summary = 'Import contact lists from an XML file.';
  static override description =
    `Reads a contact-list XML file (docs/contact-list-xml.md) once, streaming. Any problem in the file rejects all of it, with line, column and reason, and nothing of it is stored. On PostgreSQL (and through a running server) the whole file is validated first (validated lists wait in a private temporary file, removed at the end), then the lists are written in batches of users, one transaction per batch. On the embedded store opened by the command, batches are written as they validate, in one transaction that commits only once the whole file has validated (a rejected file is rolled back). An import that was interrupted is resumed by running it again: what was written is left as it is, nothing is doubled.

--mode merge (default) never drops anything the store has: groups, contacts and access rules are added, and the file's display names and subscribed flags win for contacts in both. --mode replace makes each user's list exactly the file's. Re-running an import changes nothing.

Lists of users the store does not know are reported as failures and the others are imported. Exit status: 0 all imported, 6 some failed (partial success), 1 none imported, 2 file rejected. --json prints the full report (successes[], failures[], errors[]) in every case.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> contacts.xml --dry-run',
    '<%= config.bin %> <%= command.id %> contacts.xml --mode replace --json',
    '<%= config.bin %> <%= command.id %> exports/alice@example.com.xml --user sip:alice@example.com',
  ];
  static override enableJsonFlag = true;
  static override args = { file: Args.string({ required: true, description: 'Contact-list XML file.' }) };
  static override flags = {
    ...storeFlags,
    user: Flags.string({ summary: "Import only this user's list from the file." }),
    mode: Flags.string({
      summary: 'merge keeps what the store has; replace makes lists equal to the file.',
      options: ['merge', 'replace'],
      default: 'merge',
    }),
    'dry-run': Flags.boolean({ summary: 'Validate and report what would change, writing nothing.' }),
    'work-dir': Flags.string({
      summary:
        'Folder for the temporary file of validated lists (smaller than the XML file; none on the embedded store); default $TMPDIR or /tmp.',
    }),
  };

  async run(): Promise<ImportResult & StoreNamed> {
    const { args, flags } = await this.parse(ContactsImport);
    if (statSync(args.file, { throwIfNoEntry: false })?.isDirectory()) {
      throw new ContactsError('FILE_IS_FOLDER', `${args.file} is a folder, not a file`);
    }
    const display = progressDisplay(this, this.jsonEnabled());
    const result = await runChange(
      this,
      flags,
      nothingToPrepare,
      (store, config) => {
        const embedded = store.db.engine === 'pglite';
        return withProgress(`Importing ${args.file}`, display, (progress) =>
          importContactLists(store, {
            file: args.file,
            // The deployment's per-user limit (presence.maxContactsPerUser): a longer list rejects the file.
            limits: { ...DEFAULT_LIMITS, maxContacts: config.presence.maxContactsPerUser },
            user: flags.user,
            mode: flags.mode as ImportMode,
            dryRun: flags['dry-run'],
            workDir: flags['work-dir'],
            // PostgreSQL writes one batch while the next is prepared (two connections); the
            // embedded store has one session, so a second writer would only queue.
            writers: embedded ? 1 : 2,
            // The embedded store opened here runs its engine on this thread: it writes each
            // batch as it validates, in one transaction committed once the file has
            // validated, while a parse worker takes another core. PostgreSQL, whose server
            // writes in processes of its own, validates first and writes after.
            writeWhileValidating: embedded,
            // Elements are parsed in worker threads: on PostgreSQL one per core (at most two:
            // this thread reads, looks owners up and spools). On the embedded store this
            // thread is busy with the engine's writes for the whole import and one worker
            // keeps up with it (a 100,000 x 50 import, 18:43 UTC: 49 CPU-s and 515 MiB
            // with one, 60 CPU-s and 534 MiB with two, whose threads fought this one for
            // the two cores; each worker's heap is in this process).
            parseWorkers: embedded ? 1 : Math.min(2, availableParallelism()),
            onProgress: (p) => progress(p.phase === 'validate' ? 'validated' : 'written', p.users),
          }),
        );
      },
      { sharedBuffers: BULK_JOB_SHARED_BUFFERS },
    );
    for (const line of importSummaryLines(result)) this.log(line);
    const outcome = fromCatalogued(importOutcomeError(result));
    if (outcome) {
      // The report is the output (--json included); the exit status tells scripts the outcome.
      if (!this.jsonEnabled()) this.logToStderr(`${outcome.code}: ${outcome.suggestions[0]}`);
      process.exitCode = outcome.exit;
    }
    return result;
  }
}
