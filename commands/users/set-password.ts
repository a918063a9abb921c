import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, domainScope, forceDomainFlag, storeFlags, userArgs } from '../../src/cli/flags.js';
import { newPasswordStep } from '../../src/cli/password.js';
import { runChange, type StoreNamed } from '../../src/cli/store-command.js';
import { setPassword, type UserSummary } from '../../src/users/admin.js';

export default class UsersSetPassword extends ParleyCommand {
  static override summary = "Change a user's password.";
  static override description =
    'Replaces the stored digest secrets (HA1s) of the user. Endpoints already registered keep working until they authenticate again. The password comes from a masked prompt or, with --password-stdin, from the first line of stdin; it is never echoed or logged.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    'printf %s "$PW" | <%= config.bin %> <%= command.id %> alice --password-stdin',
  ];
  static override enableJsonFlag = true;
  static override args = userArgs;
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    ...forceDomainFlag,
    'password-stdin': Flags.boolean({ summary: 'Read the password from the first line of stdin.' }),
  };

  async run(): Promise<UserSummary & StoreNamed> {
    const { args, flags } = await this.parse(UsersSetPassword);
    // The prompt comes before the store opens, so an embedded data folder is not held while someone types.
    const user = await runChange(
      this,
      flags,
      newPasswordStep(args.aor, flags['password-stdin'], flags),
      (store, config, { aor, password }) =>
        setPassword(store, { aor, password, domain: { ...domainScope(config, flags), force: true } }),
    );
    this.log(`Password of ${user.aor} changed.`);
    return user;
  }
}
