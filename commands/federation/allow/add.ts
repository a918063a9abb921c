import { Args, Command, Flags } from '@oclif/core';
import { domainFlag, storeFlags } from '../../../src/cli/flags.js';
import { runWithStore } from '../../../src/cli/store-command.js';
import { type PartnerChange, putPartner } from '../../../src/federation/admin.js';

export default class FederationAllowAdd extends Command {
  static override summary = 'Allow federation with a partner domain.';
  static override description =
    "Opens federation with DOMAIN: its users may exchange presence and IM with ours through the edges, each user's own allow/block list still applying. --edge pins the partner to its edge's FQDN, which its certificate must name; without it the edge its SRV record (_sipfederationtls._tcp.DOMAIN) names is used, or the clearinghouse when it publishes none. A blocked domain becomes allowed. Running edges apply the change within a second.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> partner.example --note "Contoso, ticket 4711"',
    '<%= config.bin %> <%= command.id %> partner.example --edge sip.partner.example --json',
  ];
  static override enableJsonFlag = true;
  static override args = {
    domain: Args.string({ required: true, description: 'Partner domain (partner.example).' }),
  };
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    edge: Flags.string({ summary: 'Pin the partner to this edge FQDN (its certificate must name it).' }),
    note: Flags.string({ summary: 'Why (shown by list and show).' }),
  };

  async run(): Promise<PartnerChange> {
    const { args, flags } = await this.parse(FederationAllowAdd);
    const change = await runWithStore(this, flags, (store, config) =>
      putPartner(store, {
        domain: args.domain,
        action: 'allow',
        edge: flags.edge,
        note: flags.note,
        ownDomain: config.domain,
      }),
    );
    const was = change.previous && change.previous !== change.action ? ` (was ${change.previous}ed)` : '';
    this.log(change.changed ? `Allowed ${change.domain}${was}.` : `${change.domain} was already allowed.`);
    return change;
  }
}
