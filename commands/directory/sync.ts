import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { CliError } from '../../src/cli/errors.js';
import { findStore, openCliStore, storeFlags } from '../../src/cli/flags.js';
import { loadDirectoryConfig, runSyncWithProgress, summaryLines } from '../../src/directory/cli.js';
import { SyncInterruptedError, type SyncSummary } from '../../src/directory/sync.js';
import { BULK_JOB_SHARED_BUFFERS } from '../../src/store/open.js';

export default class DirectorySyncCommand extends ParleyCommand {
  static override summary = 'Sync users of the secondary forests into contacts in the central forest.';
  static override description =
    `Reads users from each secondary forest (paged searches) and creates, updates, disables or deletes their contact objects in the central forest, SIP-enabled as alias@domain. Joins on the source anchor (entryUUID or objectGUID), so renames and moves update the same contact.

Incremental by default (changes since the last run, deletes detected); --full rechecks everything and repairs contacts changed by hand. One run at a time. Exit codes: 0 done, 1 nothing done, 2 configuration, 4 another sync is running, 6 partial (a forest or some items failed), 7 removals refused by the deletion threshold.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --forest north --dry-run',
    '<%= config.bin %> <%= command.id %> --full --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    forest: Flags.string({ summary: 'Only this forest (repeatable).', multiple: true }),
    'dry-run': Flags.boolean({ summary: 'Show what would change; write nothing.' }),
    full: Flags.boolean({ summary: 'Read every user and compare with the contacts themselves.' }),
    'allow-mass-delete': Flags.boolean({ summary: 'Make removals even past the deletion threshold.' }),
  };

  async run(): Promise<SyncSummary> {
    const { flags } = await this.parse(DirectorySyncCommand);
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop).once('SIGTERM', stop);
    try {
      const { parley, directory } = loadDirectoryConfig(flags);
      findStore(parley, flags);
      // A sync reads each join about once: a small buffer pool keeps the CLI's memory down.
      const store = await openCliStore(parley, { sharedBuffers: BULK_JOB_SHARED_BUFFERS });
      try {
        const summary = await runSyncWithProgress(
          {
            store,
            config: directory,
            env: process.env,
            forests: flags.forest,
            full: flags.full,
            dryRun: flags['dry-run'],
            allowMassDelete: flags['allow-mass-delete'],
            signal: abort.signal,
          },
          {
            interactive: Boolean(process.stderr.isTTY) && !this.jsonEnabled() && !process.env.CI,
            log: (line) => this.logToStderr(line),
          },
        );
        if (!this.jsonEnabled()) for (const line of summaryLines(summary)) this.log(line);
        process.exitCode = summary.exitCode;
        return summary;
      } finally {
        await store.close();
      }
    } catch (err) {
      if (err instanceof SyncInterruptedError) {
        throw new CliError(
          'DIRECTORY_INTERRUPTED',
          'interrupted; the next run resumes where this one stopped',
        );
      }
      throw err;
    } finally {
      process.off('SIGINT', stop).off('SIGTERM', stop);
    }
  }
}
