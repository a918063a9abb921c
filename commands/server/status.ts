import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { collectPoolStatus, type PoolStatus, renderPoolStatus } from '../../src/ops/status.js';

export default class ServerStatus extends ParleyCommand {
  static override summary = 'Show the servers of a deployment, their health and the pool totals.';
  static override description =
    `One table: every server registered in the deployment's store (standard servers, front-ends of pools, directors, edges) with its role, home, state and heartbeat, and what it holds now according to its own health endpoint (GET /health): signed-in users, registered endpoints, presence subscriptions; then the totals. A server that does not answer within --health-timeout is shown as down. Under the table, each column says where it comes from.

--json adds the SIP and health addresses of each server, its raw health answer, and totals.store: the unexpired rows of the store's registrations table (what a pool shares).`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --database postgres://parley@db.example.com/parley',
    '<%= config.bin %> <%= command.id %> --home pool1 --role frontend',
    '<%= config.bin %> <%= command.id %> --data-dir /var/lib/parley --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    role: Flags.string({
      summary: 'Only servers of this role.',
      options: ['standard', 'frontend', 'director', 'edge'],
    }),
    home: Flags.string({ summary: 'Only servers of this home (a pool name or a standard server).' }),
    'health-timeout': Flags.integer({
      summary: 'Milliseconds to wait for each health check.',
      default: 2000,
      min: 100,
      max: 60_000,
    }),
  };

  async run(): Promise<PoolStatus> {
    const { flags } = await this.parse(ServerStatus);
    const status = await runWithStore(this, flags, (store) =>
      collectPoolStatus(store, {
        role: flags.role,
        home: flags.home,
        healthTimeoutMs: flags['health-timeout'],
      }),
    );
    for (const line of renderPoolStatus(status)) this.log(line);
    return status;
  }
}
