import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { CliError } from '../../src/cli/errors.js';
import { domainFlag, domainScope, storeFlags, userArgs } from '../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../src/cli/store-command.js';
import { removeUser, resolveAor } from '../../src/users/admin.js';

export default class UsersRemove extends ParleyCommand {
  static override summary = 'Delete a user, its credentials, contact list and registrations.';
  static override description =
    'Irreversible: asks for confirmation in a terminal; scripts pass --yes. To stop a user from signing in but keep the account, use `parley users disable`.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> alice --yes --json',
  ];
  static override enableJsonFlag = true;
  static override args = userArgs;
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    yes: Flags.boolean({ char: 'y', summary: 'Do not ask for confirmation.' }),
  };

  async run(): Promise<{ aor: string } & StoreNamed> {
    const { args, flags } = await this.parse(UsersRemove);
    const removed = await runChange(this, flags, nothingToPrepare, async (store, config) => {
      const scope = { ...domainScope(config, flags), force: true };
      const aor = resolveAor(args.aor, scope);
      if (!flags.yes) {
        if (!process.stdin.isTTY) {
          throw new CliError('CONFIRMATION_REQUIRED', `refusing to remove ${aor} without confirmation`);
        }
        const { confirm } = await import('@inquirer/prompts');
        if (!(await confirm({ message: `Remove ${aor} and its contact list?`, default: false }))) {
          this.exit(1);
        }
      }
      return removeUser(store, { aor, domain: scope });
    });
    this.log(`Removed ${removed.aor}.`);
    return removed;
  }
}
