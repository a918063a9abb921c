import { Args, Command } from '@oclif/core';
import { domainFlag, storeFlags } from '../../../src/cli/flags.js';
import { runWithStore } from '../../../src/cli/store-command.js';
import { removePartner } from '../../../src/federation/admin.js';

export default class FederationBlockRemove extends Command {
  static override summary = 'Take a domain off the block list.';
  static override description =
    'Federation with the domain is then closed (the default for any domain not on the allow list). Exits 3 when the domain is not on the list.';
  static override examples = ['<%= config.bin %> <%= command.id %> partner.example'];
  static override enableJsonFlag = true;
  static override args = { domain: Args.string({ required: true, description: 'Partner domain.' }) };
  static override flags = { ...storeFlags, ...domainFlag };

  async run(): Promise<{ domain: string; action: 'allow' | 'block' }> {
    const { args, flags } = await this.parse(FederationBlockRemove);
    const removed = await runWithStore(this, flags, (store) =>
      removePartner(store, { domain: args.domain, action: 'block' }),
    );
    this.log(`Removed ${removed.domain} from the block list.`);
    return removed;
  }
}
