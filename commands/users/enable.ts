import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, forceDomainFlag, storeFlags, userArgs } from '../../src/cli/flags.js';
import { runSetEnabled, type StoreNamed } from '../../src/cli/store-command.js';
import type { UserSummary } from '../../src/users/admin.js';

export default class UsersEnable extends ParleyCommand {
  static override summary = 'Allow a user to sign in again.';
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
    const { args, flags } = await this.parse(UsersEnable);
    return runSetEnabled(this, args.aor, flags, true);
  }
}
