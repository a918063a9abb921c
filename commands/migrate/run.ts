import { Args, Command, Flags } from '@oclif/core';
import { runWaveCommand } from '../../src/migration/cli.js';
import type { WaveRunSummary } from '../../src/migration/mover.js';

export default class MigrateRun extends Command {
  static override summary = 'Move one wave of a plan to the target home.';
  static override description =
    `For each user of the wave: copy its account (digest secrets of every realm), contact list, groups and allow/block list to the target's store; place it in the target home (directors send new sign-ins there); then, at the plan's signOutRate, place it in the target in the old home's store too, which makes the old home's running servers end its subscriptions (reason=deactivated) and registrations, so the client registers again and the director sends it to its new home. Verifies both homes at the end; the wave is done only when they match.

Journaled: after a crash or kill -9, run it again and it finishes the wave; a finished wave's second run does nothing. Exit codes: 0 done, 1 moved but verify found differences, 2 plan or flags, 4 another run holds the lock, 5 a store unreachable, 6 some users failed, 130 interrupted.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> plan.yaml --wave legacy1-sales --dry-run',
    '<%= config.bin %> <%= command.id %> plan.yaml --wave legacy1-sales --yes --report wave1.csv',
  ];
  static override enableJsonFlag = true;
  static override args = {
    plan: Args.string({ required: true, description: 'Plan file (parley migrate plan).' }),
  };
  static override flags = {
    wave: Flags.string({ summary: 'The wave to move.', required: true }),
    'dry-run': Flags.boolean({ summary: 'Report per user what would move; write nothing.' }),
    report: Flags.string({ summary: 'Write a per-user report (.json, else CSV).' }),
    yes: Flags.boolean({ char: 'y', summary: 'Do not ask for confirmation.' }),
    rate: Flags.integer({ summary: "Sign-outs per second (overrides the plan's signOutRate).", min: 1 }),
    'batch-size': Flags.integer({ summary: 'Users per copy transaction (default 200).', min: 1, max: 5000 }),
  };

  async run(): Promise<WaveRunSummary> {
    const { args, flags } = await this.parse(MigrateRun);
    return runWaveCommand(this, {
      planFile: args.plan,
      wave: flags.wave,
      direction: 'forward',
      dryRun: flags['dry-run'],
      yes: flags.yes,
      report: flags.report,
      rate: flags.rate,
      batchSize: flags['batch-size'],
    });
  }
}
