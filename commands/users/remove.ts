import { Args, Command, Flags } from '@oclif/core';
import { CliError } from '../../src/cli/errors.js';
import { domainFlag, storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { removeUser, resolveAor } from '../../src/users/admin.js';

export default class UsersRemove extends Command {
  static override summary = 'Delete a user, its credentials, contact list and registrations.';
  static override description =
    'Irreversible: asks for confirmation in a terminal; scripts pass --yes. To stop a user from signing in but keep the account, use `parley users disable`.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> alice@example.com --yes --json',
  ];
  static override enableJsonFlag = true;
  static override args = {
    aor: Args.string({ required: true, description: 'User address (alice or alice@DOMAIN).' }),
  };
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    yes: Flags.boolean({ char: 'y', summary: 'Do not ask for confirmation.' }),
  };

  async run(): Promise<{ aor: string }> {
    const { args, flags } = await this.parse(UsersRemove);
    const removed = await runWithStore(this, flags, async (store, config) => {
      const aor = resolveAor(args.aor, config.domain);
      if (!flags.yes) {
        if (!process.stdin.isTTY) {
          throw new CliError(
            'INVALID_ARGUMENT',
            `refusing to remove ${aor} without confirmation`,
            'Pass --yes to remove without a prompt.',
          );
        }
        const { confirm } = await import('@inquirer/prompts');
        if (!(await confirm({ message: `Remove ${aor} and its contact list?`, default: false }))) {
          this.exit(1);
        }
      }
      return removeUser(store, { aor, domain: config.domain });
    });
    this.log(`Removed ${removed.aor}.`);
    return removed;
  }
}
