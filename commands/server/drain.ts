import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { nothingToPrepare, runChange, type StoreNamed } from '../../src/cli/store-command.js';
import { type DrainResult, drainServer } from '../../src/ops/drain.js';

export default class ServerDrain extends ParleyCommand {
  static override summary = 'Take a server out of service gently, for planned maintenance.';
  static override description =
    `Marks the server draining in the store and tells it so. The server stops taking new connections, fails its load balancer health check (/health answers 503), ends its subscriptions with reason=deactivated and closes its client connections, so endpoints sign in again through the load balancer to another front-end of the pool; then it exits.

With --wait the command returns only when the server has left (its row is gone or down), or fails with DRAIN_TIMEOUT after --timeout seconds; the server keeps draining either way.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --server pool1-fe2 --database postgres://parley@db.example.com/parley',
    '<%= config.bin %> <%= command.id %> --server pool1-fe2 --wait --timeout 900',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    server: Flags.string({
      summary: 'Id of the server to drain (see `parley server status`).',
      required: true,
    }),
    wait: Flags.boolean({ summary: 'Wait until the server has left.' }),
    timeout: Flags.integer({
      summary: 'Seconds --wait waits before giving up (ignored without --wait).',
      default: 600,
      min: 1,
    }),
  };

  async run(): Promise<DrainResult & StoreNamed> {
    const { flags } = await this.parse(ServerDrain);
    let lastLeft: string | undefined;
    let lastShownMs = 0;
    const result = await runChange(this, flags, nothingToPrepare, (store) =>
      drainServer(store, flags.server, {
        wait: flags.wait,
        timeoutMs: flags.timeout * 1000,
        onProgress: (p) => {
          const left = p.health
            ? ` (${p.health.flows ?? '?'} connection(s), ${p.health.registeredEndpoints ?? '?'} endpoint(s) left)`
            : '';
          // Polls run every second; a line every 10 s, or when the count moves, is enough to follow.
          if (left === lastLeft && p.elapsedMs - lastShownMs < 10_000) return;
          lastLeft = left;
          lastShownMs = p.elapsedMs;
          this.logToStderr(`${flags.server}: ${p.state} for ${Math.round(p.elapsedMs / 1000)} s${left}`);
        },
      }),
    );
    if (result.previousState === 'down') this.log(`${result.server} is already down: nothing to drain.`);
    else if (result.finished) this.log(`${result.server} has drained and left (${result.state}).`);
    else
      this.log(
        `${result.server} is draining: it stops taking connections and moves its clients to other servers. Follow it with \`parley server status\`.`,
      );
    return result;
  }
}
