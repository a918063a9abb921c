import { Args, Command, Flags } from '@oclif/core';
import { domainFlag, storeFlags } from '../../../src/cli/flags.js';
import { runWithStore } from '../../../src/cli/store-command.js';
import { type PartnerChange, putPartner } from '../../../src/federation/admin.js';

export default class FederationBlockAdd extends Command {
  static override summary = 'Block a domain from federation.';
  static override description =
    'Refuses every request from DOMAIN and sends none to it, even through a clearinghouse. An allowed domain becomes blocked. Running edges apply the change within a second.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> spam.example --note "abuse report 2026-11"',
  ];
  static override enableJsonFlag = true;
  static override args = {
    domain: Args.string({ required: true, description: 'Partner domain (partner.example).' }),
  };
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    note: Flags.string({ summary: 'Why (shown by list and show).' }),
  };

  async run(): Promise<PartnerChange> {
    const { args, flags } = await this.parse(FederationBlockAdd);
    const change = await runWithStore(this, flags, (store, config) =>
      putPartner(store, {
        domain: args.domain,
        action: 'block',
        note: flags.note,
        ownDomain: config.domain,
      }),
    );
    const was = change.previous && change.previous !== change.action ? ` (was ${change.previous}ed)` : '';
    this.log(change.changed ? `Blocked ${change.domain}${was}.` : `${change.domain} was already blocked.`);
    return change;
  }
}
