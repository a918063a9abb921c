import { Args, Command, Flags } from '@oclif/core';
import {
  closeHomeStores,
  failMigrationCommand,
  findWave,
  loadPlan,
  openPlanStores,
  verifyLines,
  verifyPlannedWave,
} from '../../src/migration/cli.js';
import { MigrationError } from '../../src/migration/errors.js';
import type { VerifySummary } from '../../src/migration/verify.js';

export default class MigrateVerify extends Command {
  static override summary = "Compare a wave's users in the old and the new home.";
  static override description =
    `For every user of the wave: present in both stores, equal accounts (digest secrets included), equal checksums of contact list, groups and allow/block rules, and both stores placing it in the home it should live in. A moved wave is marked done only when this passes; a difference marks it moved again and exits 1 (MIGRATION_VERIFY_FAILED), listing the users.`;
  static override examples = ['<%= config.bin %> <%= command.id %> plan.yaml --wave legacy1-sales --json'];
  static override enableJsonFlag = true;
  static override args = {
    plan: Args.string({ required: true, description: 'Plan file (parley migrate plan).' }),
  };
  static override flags = {
    wave: Flags.string({ summary: 'The wave to verify.', required: true }),
  };

  async run(): Promise<VerifySummary & { state?: string }> {
    const { args, flags } = await this.parse(MigrateVerify);
    let summary: (VerifySummary & { state?: string }) | undefined;
    try {
      const loaded = loadPlan(args.plan);
      const wave = findWave(loaded.plan, flags.wave);
      const stores = await openPlanStores(loaded, [wave.from, loaded.plan.target], process.env);
      try {
        summary = await verifyPlannedWave({
          plan: loaded.plan,
          wave,
          source: stores.get(wave.from)!.store,
          target: stores.get(loaded.plan.target)!.store,
        });
      } finally {
        await closeHomeStores(stores);
      }
      if (!this.jsonEnabled()) for (const line of verifyLines(summary)) this.log(line);
      if (!summary.ok) {
        if (this.jsonEnabled()) {
          process.exitCode = 1;
          return summary;
        }
        throw new MigrationError(
          'MIGRATION_VERIFY_FAILED',
          `wave ${summary.wave}: ${summary.mismatches.length} user(s) differ between the homes`,
        );
      }
      return summary;
    } catch (err) {
      failMigrationCommand(this, err);
    }
  }
}
