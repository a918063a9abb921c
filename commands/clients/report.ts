import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { type ClientsReport, collectClientsReport, renderClientsReport } from '../../src/clients/admin.js';

export default class ClientsReportCommand extends ParleyCommand {
  static override summary = 'Count the endpoints signed in now by client product and version.';
  static override description =
    "Asks every server registered in the deployment's store (its health endpoint) which clients are signed in on it and adds them up, with what the current rules decide for each: endpoints of a product and version now blocked are refused at their next refresh. Servers that do not answer are named and not counted.";
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    'health-timeout': Flags.integer({
      summary: 'Milliseconds to wait for each server.',
      default: 2000,
      min: 100,
    }),
  };

  async run(): Promise<ClientsReport> {
    const { flags } = await this.parse(ClientsReportCommand);
    const report = await runWithStore(this, flags, async (store) =>
      collectClientsReport(await store.servers.list(), { timeoutMs: flags['health-timeout'] }),
    );
    for (const line of renderClientsReport(report)) this.log(line);
    return report;
  }
}
