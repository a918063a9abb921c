import { Args, Command, Flags } from '@oclif/core';
import { domainFlag, storeFlags } from '../../src/cli/flags.js';
import { newPasswordStep } from '../../src/cli/password.js';
import { runWithPreparedStore } from '../../src/cli/store-command.js';
import { setPassword, type UserSummary } from '../../src/users/admin.js';

export default class UsersSetPassword extends Command {
  static override summary = "Change a user's password.";
  static override description =
    'Replaces the stored digest secrets (HA1s) of the user. Endpoints already registered keep working until they authenticate again. The password comes from a masked prompt or, with --password-stdin, from the first line of stdin; it is never echoed or logged.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    'printf %s "$PW" | <%= config.bin %> <%= command.id %> alice@example.com --password-stdin',
  ];
  static override enableJsonFlag = true;
  static override args = {
    aor: Args.string({ required: true, description: 'User address (alice or alice@DOMAIN).' }),
  };
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    'password-stdin': Flags.boolean({ summary: 'Read the password from the first line of stdin.' }),
  };

  async run(): Promise<UserSummary> {
    const { args, flags } = await this.parse(UsersSetPassword);
    // The prompt comes before the store opens, so an embedded data folder is not held while someone types.
    const user = await runWithPreparedStore(
      this,
      flags,
      newPasswordStep(args.aor, flags['password-stdin']),
      (store, config, { aor, password }) => setPassword(store, { aor, password, domain: config.domain }),
    );
    this.log(`Password of ${user.aor} changed.`);
    return user;
  }
}
