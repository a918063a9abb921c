import { Args } from '@oclif/core';
import { ParleyCommand } from '../../../src/cli/command.js';
import { storeFlags } from '../../../src/cli/flags.js';
import { runWithStore } from '../../../src/cli/store-command.js';
import { type ClientPolicyTest, testUserAgent } from '../../../src/clients/admin.js';

export default class ClientsPolicyTest extends ParleyCommand {
  static override summary = 'Say which rule a User-Agent matches, and why.';
  static override description =
    'Reads the rules from the store and decides as a server would: the matching rule (or the default), the product and version read from the string, and the action. Exits 0 whatever the action; scripts read `action` from --json.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> "JsSIP 3.9.1"',
    '<%= config.bin %> <%= command.id %> "baresip v3.16.0 (x86_64/linux)" --json',
  ];
  static override enableJsonFlag = true;
  static override args = {
    userAgent: Args.string({ required: true, description: 'A User-Agent header value.' }),
  };
  static override flags = { ...storeFlags };

  async run(): Promise<ClientPolicyTest> {
    const { args, flags } = await this.parse(ClientsPolicyTest);
    const result = await runWithStore(this, flags, (store) =>
      testUserAgent(store.clientPolicies, args.userAgent),
    );
    this.log(
      `${result.action}: ${result.explanation}${result.upgradeUrl ? ` (upgrade at ${result.upgradeUrl})` : ''}`,
    );
    return result;
  }
}
