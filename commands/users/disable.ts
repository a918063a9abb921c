import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, forceDomainFlag, storeFlags, userArgs } from '../../src/cli/flags.js';
import { runSetEnabled, type StoreNamed } from '../../src/cli/store-command.js';
import type { UserSummary } from '../../src/users/admin.js';

export default class UsersDisable extends ParleyCommand {
  static override summary = 'Stop a user from signing in, keeping the account.';
  static override description =
    'Running servers learn of the change at once through the store change feed. Contacts, rules and credentials are kept. Idempotent: "changed" in --json says whether anything changed.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> alice --json',
  ];
  static override enableJsonFlag = true;
  static override args = userArgs;
  static override flags = { ...storeFlags, ...domainFlag, ...forceDomainFlag };

  async run(): Promise<UserSummary & { changed: boolean } & StoreNamed> {
    const { args, flags } = await this.parse(UsersDisable);
    return runSetEnabled(this, args.aor, flags, false);
  }
}
