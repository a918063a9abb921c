import { ParleyCommand } from '../../src/cli/command.js';
import { CliError } from '../../src/cli/errors.js';
import { describeStore, loadCliConfig, storeFlags, storeOpenError } from '../../src/cli/flags.js';
import type { StoreNamed } from '../../src/cli/store-command.js';
import { migrate } from '../../src/store/migrate.js';
import { embeddedStoreExists, openDatabase } from '../../src/store/open.js';

export interface DbMigrateResult extends StoreNamed {
  engine: 'pglite' | 'postgres';
  applied: { version: number; name: string }[];
  current: number;
  /** The embedded store did not exist and was created. */
  created: boolean;
}

export default class DbMigrate extends ParleyCommand {
  static override summary = 'Apply pending schema migrations to the store.';
  static override description =
    `Applies the numbered migrations (src/store/migrations/NNN_name.sql) not yet recorded in the store, each in its own transaction. Safe to re-run, and safe when several front-ends start at once: on PostgreSQL an advisory lock serializes them.

Without --database it migrates the embedded database in the data folder (through the running server when one owns the folder), creating it when the folder holds none: with \`server start\` and \`init\`, the only commands that create a store.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --database postgresql://parley@db1/parley --json',
    '<%= config.bin %> <%= command.id %> --data-dir /var/lib/parley',
  ];
  static override enableJsonFlag = true;
  static override flags = { ...storeFlags };

  async run(): Promise<DbMigrateResult> {
    const { flags } = await this.parse(DbMigrate);
    const config = loadCliConfig(flags);
    const created = !config.database.url && !embeddedStoreExists(config.database.dataDir);
    if (created && !this.jsonEnabled()) {
      this.logToStderr(`Creating the embedded database in ${config.database.dataDir}...`);
    }
    const db = await openDatabase({
      dataDir: config.database.dataDir,
      url: config.database.url,
      migrate: false,
    }).catch((err: unknown) => {
      throw storeOpenError(err, config);
    });
    let result: DbMigrateResult;
    try {
      const run = await migrate(db).catch((err: unknown) => {
        throw new CliError('MIGRATION_FAILED', `migration failed: ${(err as Error).message}`);
      });
      result = { engine: db.engine, ...run, created, store: describeStore(config) };
    } finally {
      await db.close();
    }
    if (!this.jsonEnabled()) this.logToStderr(`Store: ${result.store}`);
    if (result.applied.length === 0) this.log(`Store is up to date (version ${result.current}).`);
    for (const m of result.applied) this.log(`Applied ${String(m.version).padStart(3, '0')}_${m.name}`);
    return result;
  }
}
