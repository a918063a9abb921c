import { Args, Flags } from '@oclif/core';
import { ParleyCommand } from '../../../src/cli/command.js';
import { storeFlags } from '../../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../../src/cli/store-command.js';
import { addClientRule } from '../../../src/clients/admin.js';
import type { ClientRule } from '../../../src/clients/policy.js';

export default class ClientsPolicyAdd extends ParleyCommand {
  static override summary = 'Add a client version rule.';
  static override description =
    `A rule names a product token of the User-Agent (JsSIP, SIPp, baresip, or * for any client) and a version range; the first rule that matches a client decides: allow, block, or upgrade (block with the URL of a newer version). Clients no rule matches get the default (\`parley clients policy default\`). Running servers apply the change at once: a refused client's REGISTER gets 403 with a Warning naming the reason (and the URL), and an endpoint signed in before is refused at its next refresh, SUBSCRIBE, PUBLISH or MESSAGE. Check a User-Agent first with \`parley clients policy test\`.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> JsSIP --versions "<3.10" --action upgrade --url https://intranet.example.com/chat --reason "3.9 loses messages"',
    '<%= config.bin %> <%= command.id %> SIPp --action block --reason "load generators are for the lab"',
    '<%= config.bin %> <%= command.id %> baresip --versions ">=3.0" --action allow --position 1 --json',
  ];
  static override enableJsonFlag = true;
  static override args = {
    product: Args.string({
      required: true,
      description: 'Product token of the User-Agent, or * for any client.',
    }),
  };
  static override flags = {
    ...storeFlags,
    versions: Flags.string({
      summary: 'Version range: comparators that must all hold (">=3.10 <4"), * for any.',
      default: '*',
    }),
    action: Flags.string({
      summary: 'What matching clients get.',
      options: ['allow', 'block', 'upgrade'],
      required: true,
    }),
    url: Flags.string({
      summary: 'Upgrade action: where clients get a newer version (shown in the Warning).',
    }),
    reason: Flags.string({ summary: 'Why: shown to refused clients and in the list.' }),
    position: Flags.integer({ summary: 'Place among the rules (1 is checked first); default last.', min: 1 }),
  };

  async run(): Promise<ClientRule & StoreNamed> {
    const { args, flags } = await this.parse(ClientsPolicyAdd);
    const rule = await runChange(this, flags, nothingToPrepare, (store) =>
      addClientRule(store.clientPolicies, {
        product: args.product,
        versions: flags.versions,
        action: flags.action,
        upgradeUrl: flags.url,
        reason: flags.reason,
        position: flags.position,
      }),
    );
    this.log(
      `Added rule ${rule.id} at position ${rule.position}: ${rule.product} ${rule.versions} -> ${rule.action}.`,
    );
    return rule;
  }
}
