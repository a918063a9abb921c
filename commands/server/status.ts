import { Command, Flags } from '@oclif/core';
import { storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { collectPoolStatus, type PoolStatus, renderPoolStatus } from '../../src/ops/status.js';

export default class ServerStatus extends Command {
  static override summary = 'Show the servers of a deployment, their health and the pool totals.';
  static override description =
    `Lists every server registered in the store (front-ends of pools, directors, edges, standard servers) with its role, home, SIP address, state and heartbeat age, asks each one for its live health (GET /health) and sums connected endpoints, signed-in users and subscriptions over the servers that answered. A server that does not answer within --health-timeout is shown as down.

Registered endpoints and users are also counted from the shared registrations table, which counts a user signed in on two front-ends once.`;
  static override examples = [
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
