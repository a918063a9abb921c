import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, domainScope, forceDomainFlag, storeFlags, userArgs } from '../../src/cli/flags.js';
import { newPasswordStep } from '../../src/cli/password.js';
import { runChange, type StoreNamed } from '../../src/cli/store-command.js';
import { addUser, type UserSummary } from '../../src/users/admin.js';

export default class UsersAdd extends ParleyCommand {
  static override summary = 'Create a local SIP user with a password.';
  static override description =
    `Creates the user and stores the digest secrets of its password (HA1 for MD5 and SHA-256, realm = the domain); the password itself is never stored, logged or echoed. Give the password at the masked prompt, or on stdin with --password-stdin for scripts.

A bare name is taken in the deployment's first domain (or --domain): "alice" is alice@DOMAIN. An address in a domain the deployment does not serve is refused (DOMAIN_NOT_SERVED) unless --force. Run it in the deployment folder, or point at it with --config; it names the store it wrote to.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice --display-name "Alice Liddell"',
    'printf %s "$PW" | <%= config.bin %> <%= command.id %> bob --password-stdin --json',
    '<%= config.bin %> <%= command.id %> carol --config /etc/parley/parley.yaml',
  ];
  static override enableJsonFlag = true;
  static override args = userArgs;
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    ...forceDomainFlag,
    'display-name': Flags.string({ summary: 'Name shown to contacts.' }),
    home: Flags.string({
      summary:
        'Home (standard server or pool) the user lives in (default: the configured home, once its server has run).',
    }),
    disabled: Flags.boolean({ summary: 'Create the account disabled (cannot sign in until enabled).' }),
    'password-stdin': Flags.boolean({ summary: 'Read the password from the first line of stdin.' }),
  };

  async run(): Promise<UserSummary & StoreNamed> {
    const { args, flags } = await this.parse(UsersAdd);
    const user = await runChange(
      this,
      flags,
      newPasswordStep(args.aor, flags['password-stdin'], flags),
      (store, config, { aor, password }) =>
        addUser(store, {
          aor,
          password,
          domain: domainScope(config, flags),
          displayName: flags['display-name'],
          home: flags.home,
          defaultHome: config.home,
          enabled: !flags.disabled,
        }),
    );
    this.log(`Added ${user.aor}${user.enabled ? '' : ' (disabled)'}.`);
    return user;
  }
}
