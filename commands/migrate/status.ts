import { Args, Command, Flags } from '@oclif/core';
import {
  closeHomeStores,
  failMigrationCommand,
  loadPlan,
  type MigrationStatus,
  migrationStatus,
  openPlanStores,
  statusLines,
} from '../../src/migration/cli.js';
import { MigrationError } from '../../src/migration/errors.js';
import { openHomeStores } from '../../src/migration/stores.js';

export default class MigrateStatus extends Command {
  static override summary = 'Every wave and where its users stand.';
  static override description =
    `Reads the journal in the target home's store: each wave's state (planned, running, moved, done, rolling-back, rolled-back) and how many of its users are at each step (pending, copied, placed, moved; back-copied, back-placed, returned; failed). With a plan, its waves not run yet are listed as planned; without one, --database names the target's store. --users lists every user.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> plan.yaml',
    '<%= config.bin %> <%= command.id %> plan.yaml --wave legacy1-sales --users --json',
    '<%= config.bin %> <%= command.id %> --database "$PARLEY_DATABASE_URL"',
  ];
  static override enableJsonFlag = true;
  static override args = {
    plan: Args.string({ required: false, description: 'Plan file (parley migrate plan).' }),
  };
  static override flags = {
    wave: Flags.string({ summary: 'Only this wave.' }),
    users: Flags.boolean({ summary: "List every user's step." }),
    database: Flags.string({
      summary: "PostgreSQL URL of the target's store (without a plan).",
      env: 'PARLEY_DATABASE_URL',
    }),
  };

  async run(): Promise<MigrationStatus> {
    const { args, flags } = await this.parse(MigrateStatus);
    try {
      let status: MigrationStatus;
      if (args.plan) {
        const loaded = loadPlan(args.plan);
        const stores = await openPlanStores(loaded, [loaded.plan.target], process.env);
        try {
          status = await migrationStatus({
            target: stores.get(loaded.plan.target)!.store,
            targetHome: loaded.plan.target,
            plan: loaded.plan,
            wave: flags.wave,
            withUsers: flags.users,
          });
        } finally {
          await closeHomeStores(stores);
        }
      } else {
        if (!flags.database) {
          throw new MigrationError(
            'MIGRATION_STORE_MISSING',
            "give the plan file, or --database with the target's store",
          );
        }
        const stores = await openHomeStores(new Map([['target', { url: flags.database }]]));
        try {
          status = await migrationStatus({
            target: stores.get('target')!.store,
            targetHome: 'target',
            wave: flags.wave,
            withUsers: flags.users,
          });
        } finally {
          await closeHomeStores(stores);
        }
      }
      if (!this.jsonEnabled()) for (const line of statusLines(status)) this.log(line);
      return status;
    } catch (err) {
      failMigrationCommand(this, err);
    }
  }
}
