import { ParleyCommand } from '../../../src/cli/command.js';
import { storeFlags } from '../../../src/cli/flags.js';
import { runWithStore } from '../../../src/cli/store-command.js';
import { type ClientPolicyListing, listClientPolicy, renderClientRules } from '../../../src/clients/admin.js';

export default class ClientsPolicyList extends ParleyCommand {
  static override summary = 'List the client version rules in the order they are checked, and the default.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];
  static override enableJsonFlag = true;
  static override flags = { ...storeFlags };

  async run(): Promise<ClientPolicyListing> {
    const { flags } = await this.parse(ClientsPolicyList);
    const listing = await runWithStore(this, flags, (store) => listClientPolicy(store.clientPolicies));
    for (const line of renderClientRules(listing)) this.log(line);
    return listing;
  }
}
