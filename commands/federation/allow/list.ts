import { Command } from '@oclif/core';
import { domainFlag, storeFlags } from '../../../src/cli/flags.js';
import { runWithStore } from '../../../src/cli/store-command.js';
import { listPartners, type PartnerListing } from '../../../src/federation/admin.js';
import { renderPartners } from '../../../src/federation/render.js';

export default class FederationAllowList extends Command {
  static override summary = 'List the allowed partner domains.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];
  static override enableJsonFlag = true;
  static override flags = { ...storeFlags, ...domainFlag };

  async run(): Promise<PartnerListing> {
    const { flags } = await this.parse(FederationAllowList);
    const listing = await runWithStore(this, flags, (store) => listPartners(store, 'allow'));
    for (const line of renderPartners(listing)) this.log(line);
    return listing;
  }
}
