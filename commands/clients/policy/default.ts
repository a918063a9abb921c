import { Args, Flags } from '@oclif/core';
import { ParleyCommand } from '../../../src/cli/command.js';
import { storeFlags } from '../../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../../src/cli/store-command.js';
import { setClientDefault } from '../../../src/clients/admin.js';
import type { ClientDefault } from '../../../src/clients/policy.js';

export default class ClientsPolicyDefault extends ParleyCommand {
  static override summary = 'Set what clients no rule matches get.';
  static override description =
    'allow (the default of a new deployment), block, or upgrade with --url. With block as the default, the rules list the clients that are allowed. Running servers apply the change at once.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> block --reason "only the supported clients"',
    '<%= config.bin %> <%= command.id %> allow',
  ];
  static override enableJsonFlag = true;
  static override args = {
    action: Args.string({
      required: true,
      options: ['allow', 'block', 'upgrade'],
      description: 'The default action.',
    }),
  };
  static override flags = {
    ...storeFlags,
    url: Flags.string({ summary: 'Upgrade action: where clients get a supported version.' }),
    reason: Flags.string({ summary: 'Why: shown to refused clients.' }),
  };

  async run(): Promise<{ default: ClientDefault; previous: ClientDefault } & StoreNamed> {
    const { args, flags } = await this.parse(ClientsPolicyDefault);
    const change = await runChange(this, flags, nothingToPrepare, async (store) => {
      const { fallback, previous } = await setClientDefault(store.clientPolicies, {
        action: args.action,
        upgradeUrl: flags.url,
        reason: flags.reason,
      });
      return { default: fallback, previous };
    });
    this.log(`Clients no rule matches: ${change.default.action} (was ${change.previous.action}).`);
    return change;
  }
}
