import { Args, Command, Flags } from '@oclif/core';
import { runWaveCommand } from '../../src/migration/cli.js';
import type { WaveRunSummary } from '../../src/migration/mover.js';

export default class MigrateRollback extends Command {
  static override summary = 'Move a wave back to the home it came from.';
  static override description =
    `The same steps as run, the other way: what the users changed in the target since the move (contact lists, groups, rules) is copied back, the old home takes them again, and the target's servers sign them out at the plan's signOutRate so their clients register with the old home. Journaled and resumable like run; verified at the end.

Exit codes: 0 rolled back, 1 verify found differences, 4 the wave was never run or another run holds the lock, 6 some users failed, 130 interrupted.`;
  static override examples = ['<%= config.bin %> <%= command.id %> plan.yaml --wave legacy1-sales --yes'];
  static override enableJsonFlag = true;
  static override args = {
    plan: Args.string({ required: true, description: 'Plan file (parley migrate plan).' }),
  };
  static override flags = {
    wave: Flags.string({ summary: 'The wave to move back.', required: true }),
    'dry-run': Flags.boolean({ summary: 'Report per user what would move back; write nothing.' }),
    report: Flags.string({ summary: 'Write a per-user report (.json, else CSV).' }),
    yes: Flags.boolean({ char: 'y', summary: 'Do not ask for confirmation.' }),
    rate: Flags.integer({ summary: "Sign-outs per second (overrides the plan's signOutRate).", min: 1 }),
  };

  async run(): Promise<WaveRunSummary> {
    const { args, flags } = await this.parse(MigrateRollback);
    return runWaveCommand(this, {
      planFile: args.plan,
      wave: flags.wave,
      direction: 'back',
      dryRun: flags['dry-run'],
      yes: flags.yes,
      report: flags.report,
      rate: flags.rate,
    });
  }
}
