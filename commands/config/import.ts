import { readFileSync } from 'node:fs';
import { Args, Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { CliError } from '../../src/cli/errors.js';
import { storeFlags } from '../../src/cli/flags.js';
import { runChange, type StoreNamed } from '../../src/cli/store-command.js';
import { type ImportResult, importSettings, parseSettings } from '../../src/reports/deployment-settings.js';

export default class ConfigImport extends ParleyCommand {
  static override summary = "Make the deployment's settings those of a YAML file.";
  static override description =
    "Reads a file written by `parley config export` (this deployment's or another's), lists what would change (client rules and default, federation lists, clearinghouse) and applies it in one transaction once confirmed (--yes in scripts); running servers follow at once. --dry-run only lists. The archiving and presence sections are compared but never applied: they belong to each server's parley.yaml, and differences are named.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> settings.yaml --dry-run',
    '<%= config.bin %> <%= command.id %> settings.yaml --yes --json',
  ];
  static override enableJsonFlag = true;
  static override args = { file: Args.string({ required: true, description: 'Settings file (YAML).' }) };
  static override flags = {
    ...storeFlags,
    'dry-run': Flags.boolean({ summary: 'List the changes without making them.' }),
    yes: Flags.boolean({ char: 'y', summary: 'Do not ask for confirmation.' }),
  };

  async run(): Promise<ImportResult & StoreNamed> {
    const { args, flags } = await this.parse(ConfigImport);
    const wanted = parseSettings(readFileSync(args.file, 'utf8'));
    const result = await runChange(
      this,
      flags,
      async () => undefined,
      async (store, config) => {
        const plan = await importSettings(store, config, wanted, { dryRun: true });
        if (flags['dry-run'] || plan.changes.length === 0) return plan;
        if (!flags.yes) {
          if (!process.stdin.isTTY)
            throw new CliError(
              'CONFIRMATION_REQUIRED',
              `refusing to apply ${plan.changes.length} change(s) without confirmation`,
            );
          for (const c of plan.changes) this.log(`  ${c.change.padEnd(6)} ${c.section}: ${c.what}`);
          const { confirm } = await import('@inquirer/prompts');
          if (!(await confirm({ message: `Apply ${plan.changes.length} change(s)?`, default: false })))
            this.exit(1);
        }
        return importSettings(store, config, wanted, { dryRun: false });
      },
    );
    for (const c of result.changes)
      this.log(`${result.applied ? '' : 'would '}${c.change} ${c.section}: ${c.what}`);
    if (result.changes.length === 0) this.log('Nothing to change.');
    for (const key of result.notApplied)
      this.logToStderr(
        `${key}: differs from this parley.yaml; not applied (set it in each server's parley.yaml).`,
      );
    return result;
  }
}
