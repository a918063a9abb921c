import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, domainScope, storeFlags, userArgs } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { showUser, type UserSummary } from '../../src/users/admin.js';

export default class UsersShow extends ParleyCommand {
  static override summary = 'Show one user.';
  static override description = 'Prints the account (never its secrets: only whether a password is set).';
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> alice --json',
  ];
  static override enableJsonFlag = true;
  static override args = userArgs;
  static override flags = { ...storeFlags, ...domainFlag };

  async run(): Promise<UserSummary> {
    const { args, flags } = await this.parse(UsersShow);
    const user = await runWithStore(this, flags, (store, config) =>
      showUser(store, { aor: args.aor, domain: domainScope(config, flags) }),
    );
    this.log(`${user.aor}`);
    this.log(`  display name  ${user.displayName || '-'}`);
    this.log(`  enabled       ${user.enabled ? 'yes' : 'no'}`);
    this.log(`  home          ${user.home ?? '-'}`);
    this.log(`  source        ${user.source}`);
    this.log(`  groups        ${user.groups?.length ? user.groups.join(', ') : '-'}`);
    this.log(`  password      ${user.hasPassword ? 'set' : 'not set'}`);
    this.log(`  created       ${user.createdAt}`);
    return user;
  }
}
