import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, domainScope, storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import {
  collectSessions,
  type DeploymentSessions,
  renderSessions,
  SESSIONS_SECRET_KEY,
} from '../../src/reports/sessions.js';
import { sharedSecret } from '../../src/store/settings.js';
import { resolveAor } from '../../src/users/admin.js';

export default class ServerSessions extends ParleyCommand {
  static override summary = 'Show who is signed in: endpoints, addresses, clients and subscriptions.';
  static override description =
    "Asks every server registered in the deployment's store (its operations endpoint, GET /sessions, with a secret only the store's holders know) what it holds now: each signed-in user's endpoints (the address and transport of their connection, the User-Agent, when the registration expires) and the subscriptions it holds, each with its event package, target, state and expiry (RFC 6665), and who watches the user. Servers that do not answer are named.";
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --user alice',
    '<%= config.bin %> <%= command.id %> --user alice@example.com --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    user: Flags.string({ summary: 'Only this user (alice or alice@DOMAIN).' }),
    timeout: Flags.integer({ summary: 'Milliseconds to wait for each server.', default: 2000, min: 100 }),
  };

  async run(): Promise<DeploymentSessions> {
    const { flags } = await this.parse(ServerSessions);
    const sessions = await runWithStore(this, flags, async (store, config) =>
      collectSessions(await store.servers.list(), {
        secret: await sharedSecret(store.db, SESSIONS_SECRET_KEY),
        user: flags.user ? resolveAor(flags.user, { ...domainScope(config, flags), force: true }) : undefined,
        timeoutMs: flags.timeout,
      }),
    );
    for (const line of renderSessions(sessions)) this.log(line);
    return sessions;
  }
}
