import { ParleyCommand } from '../../../src/cli/command.js';
import { domainFlag, storeFlags } from '../../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../../src/cli/store-command.js';
import { clearClearinghouse } from '../../../src/federation/admin.js';

export default class FederationClearinghouseClear extends ParleyCommand {
  static override summary = 'Stop routing federation through a clearinghouse.';
  static override description =
    'Partners without an edge of their own are then unreachable; partners with one are not affected.';
  static override examples = ['<%= config.bin %> <%= command.id %>'];
  static override enableJsonFlag = true;
  static override flags = { ...storeFlags, ...domainFlag };

  async run(): Promise<{ cleared: string | null } & StoreNamed> {
    const { flags } = await this.parse(FederationClearinghouseClear);
    const result = await runChange(this, flags, nothingToPrepare, (store) => clearClearinghouse(store));
    this.log(result.cleared ? `Cleared the clearinghouse ${result.cleared}.` : 'There was no clearinghouse.');
    return result;
  }
}
