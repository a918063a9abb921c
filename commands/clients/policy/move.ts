import { Args, Flags } from '@oclif/core';
import { ParleyCommand } from '../../../src/cli/command.js';
import { storeFlags } from '../../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../../src/cli/store-command.js';
import { moveClientRule } from '../../../src/clients/admin.js';
import type { ClientRule } from '../../../src/clients/policy.js';

export default class ClientsPolicyMove extends ParleyCommand {
  static override summary = 'Move a client version rule to another position.';
  static override description =
    'The first matching rule decides, so order matters: put exceptions (an allowed build) above broad rules (block the product). Positions past the end put the rule last. Exits 3 when there is no such rule.';
  static override examples = ['<%= config.bin %> <%= command.id %> 3 --to 1'];
  static override enableJsonFlag = true;
  static override args = { id: Args.integer({ required: true, description: 'Rule id.' }) };
  static override flags = {
    ...storeFlags,
    to: Flags.integer({ summary: 'New position (1 is checked first).', required: true, min: 1 }),
  };

  async run(): Promise<ClientRule & StoreNamed> {
    const { args, flags } = await this.parse(ClientsPolicyMove);
    const rule = await runChange(this, flags, nothingToPrepare, (store) =>
      moveClientRule(store.clientPolicies, args.id, flags.to),
    );
    this.log(`Rule ${rule.id} is now at position ${rule.position}.`);
    return rule;
  }
}
