import { Args, Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../src/cli/store-command.js';
import { progressDisplay, withProgress } from '../../src/contacts/cli.js';
import { type RestoreStoreResult, restoreStore } from '../../src/store/backup.js';
import { BULK_JOB_SHARED_BUFFERS } from '../../src/store/open.js';

export default class DbRestore extends ParleyCommand {
  static override summary = 'Restore the whole store from a backup folder.';
  static override description =
    `Restores a folder written by \`parley db backup\`. Every file is checked against the manifest's checksums and the store's schema against the backup's before anything is written; then, in one transaction, all tables are emptied and reloaded, sequences reset, and every table is read back and compared with the manifest. Any difference rolls everything back.

The target must be migrated to the backup's schema (\`parley db migrate\`) and empty, unless --force is given to replace what it holds; a data folder that holds no store yet is created (a restore onto a new machine). Stop the servers using the store first.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> /var/backups/parley/store-2026-11-25',
    '<%= config.bin %> <%= command.id %> /backups/pool1 --database postgresql://parley@db2/parley --force --json',
  ];
  static override enableJsonFlag = true;
  static override args = { dir: Args.string({ required: true, description: 'Backup folder.' }) };
  static override flags = {
    ...storeFlags,
    force: Flags.boolean({ summary: 'Replace the contents of a store that is not empty.' }),
  };

  async run(): Promise<RestoreStoreResult & StoreNamed> {
    const { args, flags } = await this.parse(DbRestore);
    const display = progressDisplay(this, this.jsonEnabled());
    const result = await runChange(
      this,
      flags,
      nothingToPrepare,
      (store) =>
        withProgress('Restoring the store', display, (progress) =>
          restoreStore(store.db, {
            from: args.dir,
            force: flags.force,
            onProgress: (table, rows) => progress(table, rows),
          }),
        ),
      { create: true, sharedBuffers: BULK_JOB_SHARED_BUFFERS },
    );
    this.log(
      `Restored and verified ${result.rows} row(s) of ${result.tables.length} table(s) from ${result.dir}.`,
    );
    return result;
  }
}
