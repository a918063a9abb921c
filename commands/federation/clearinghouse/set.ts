import { Args } from '@oclif/core';
import { ParleyCommand } from '../../../src/cli/command.js';
import { domainFlag, storeFlags } from '../../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../../src/cli/store-command.js';
import { setClearinghouse } from '../../../src/federation/admin.js';

export default class FederationClearinghouseSet extends ParleyCommand {
  static override summary = 'Route federation through a clearinghouse.';
  static override description =
    'Allowed partners that publish no federation edge of their own (no SRV record, no --edge) are reached through the clearinghouse at FQDN, and requests it relays for allowed partners are accepted from a certificate naming it. Blocked domains stay blocked. There is one clearinghouse: setting another replaces it.';
  static override examples = ['<%= config.bin %> <%= command.id %> sip.clearinghouse.example'];
  static override enableJsonFlag = true;
  static override args = {
    fqdn: Args.string({ required: true, description: "The clearinghouse's edge FQDN." }),
  };
  static override flags = { ...storeFlags, ...domainFlag };

  async run(): Promise<{ clearinghouse: string; replaced: string | null } & StoreNamed> {
    const { args, flags } = await this.parse(FederationClearinghouseSet);
    const result = await runChange(this, flags, nothingToPrepare, (store) =>
      setClearinghouse(store, args.fqdn),
    );
    this.log(
      `Clearinghouse: ${result.clearinghouse}${result.replaced ? ` (replaces ${result.replaced})` : ''}.`,
    );
    return result;
  }
}
