import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { showPolicy } from '../../src/federation/admin.js';
import type { EffectivePolicy } from '../../src/federation/policy.js';
import { renderPolicy } from '../../src/federation/render.js';

export default class FederationShow extends ParleyCommand {
  static override summary = 'Show the federation policy every edge enforces.';
  static override description =
    'Federation is closed by default: only allowed domains that are not blocked may exchange presence and IM with this deployment, directly with their edge or through the clearinghouse.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];
  static override enableJsonFlag = true;
  static override flags = { ...storeFlags, ...domainFlag };

  async run(): Promise<EffectivePolicy & { domain: string }> {
    const { flags } = await this.parse(FederationShow);
    const policy = await runWithStore(this, flags, (store, config) => showPolicy(store, config.domain));
    for (const line of renderPolicy(policy)) this.log(line);
    return policy;
  }
}
