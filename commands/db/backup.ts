import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { progressDisplay, withProgress } from '../../src/contacts/cli.js';
import { type BackupResult, backupStore } from '../../src/store/backup.js';
import { BULK_JOB_SHARED_BUFFERS } from '../../src/store/open.js';

export default class DbBackup extends ParleyCommand {
  static override summary = 'Back up the whole store to a folder.';
  static override description =
    `Writes a consistent snapshot of every table (one REPEATABLE READ transaction) as JSON lines, one file per table, plus manifest.json with columns, row counts and sha256 checksums. The format is the same for the embedded database and PostgreSQL, so a backup of one restores into the other (docs/contact-list-xml.md, "Store backup").

On the embedded database the snapshot holds its single session: a running standard server waits for the backup to finish.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --out /var/backups/parley/store-$(date +%F)',
    '<%= config.bin %> <%= command.id %> --database postgresql://parley@db1/parley --out /backups/pool1 --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    out: Flags.string({ summary: 'Folder to write the backup into (created if missing).', required: true }),
  };

  async run(): Promise<BackupResult> {
    const { flags } = await this.parse(DbBackup);
    const display = progressDisplay(this, this.jsonEnabled());
    const result = await runWithStore(
      this,
      flags,
      (store) =>
        withProgress('Backing up the store', display, (progress) =>
          backupStore(store.db, { out: flags.out, onProgress: (table, rows) => progress(table, rows) }),
        ),
      { sharedBuffers: BULK_JOB_SHARED_BUFFERS },
    );
    this.log(
      `Backed up ${result.rows} row(s) of ${result.tables.length} table(s) (${result.engine}, schema ${result.schemaVersion}) to ${result.dir}.`,
    );
    return result;
  }
}
