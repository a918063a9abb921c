import { Args } from '@oclif/core';
import { ParleyCommand } from '../../../src/cli/command.js';
import { storeFlags } from '../../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../../src/cli/store-command.js';
import { removeClientRule } from '../../../src/clients/admin.js';
import type { ClientRule } from '../../../src/clients/policy.js';

export default class ClientsPolicyRemove extends ParleyCommand {
  static override summary = 'Remove a client version rule.';
  static override description =
    'Takes the rule with this id (see `parley clients policy list`) out; the rules below move up. Running servers apply the change at once. Exits 3 when there is no such rule.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> 3',
    '<%= config.bin %> <%= command.id %> 3 --json',
  ];
  static override enableJsonFlag = true;
  static override args = { id: Args.integer({ required: true, description: 'Rule id.' }) };
  static override flags = { ...storeFlags };

  async run(): Promise<ClientRule & StoreNamed> {
    const { args, flags } = await this.parse(ClientsPolicyRemove);
    const rule = await runChange(this, flags, nothingToPrepare, (store) =>
      removeClientRule(store.clientPolicies, args.id),
    );
    this.log(`Removed rule ${rule.id} (${rule.product} ${rule.versions} -> ${rule.action}).`);
    return rule;
  }
}
