import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { CliError, fromCatalogued } from '../../src/cli/errors.js';
import { findStore, openCliStore, storeFlags } from '../../src/cli/flags.js';
import { loadDirectoryConfig } from '../../src/directory/cli.js';
import { userCountsText } from '../../src/directory/counts.js';
import { EXIT } from '../../src/directory/errors.js';
import { type ReplicationSummary, replicateFromCentral } from '../../src/directory/replicator.js';

export default class DirectoryReplicate extends ParleyCommand {
  static override summary = "Refresh Parley's user store from the central forest.";
  static override description =
    `Copies the central forest's SIP-enabled users and contacts, and the group memberships of those users (groupOfNames, groupOfUniqueNames, group; nested groups expanded), into the user store (upsert by address), so servers never query LDAP while serving. Directory users that vanished are disabled (deleted with --prune); local users are never touched. Servers run the same on a timer (directory.replicate.interval).`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --dry-run --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    prune: Flags.boolean({ summary: 'Delete vanished directory users instead of disabling them.' }),
    'dry-run': Flags.boolean({ summary: 'Count what would change; write nothing.' }),
  };

  async run(): Promise<ReplicationSummary> {
    const { flags } = await this.parse(DirectoryReplicate);
    try {
      const { parley, directory } = loadDirectoryConfig(flags);
      const found = findStore(parley, flags);
      if (!this.jsonEnabled()) this.logToStderr(`Store: ${found.location} (from ${found.foundBy})`);
      const store = await openCliStore(parley);
      try {
        const r = await replicateFromCentral({
          store,
          config: directory,
          env: process.env,
          prune: flags.prune || undefined,
          dryRun: flags['dry-run'],
        });
        this.log(`${userCountsText(r)}, unchanged ${r.unchanged}, issues ${r.issues.length}`);
        if (r.groups)
          this.log(
            `groups ${r.groups.read}, memberships ${r.groups.memberships} (added ${r.groups.added}, removed ${r.groups.removed})`,
          );
        for (const i of r.issues.slice(0, 20)) this.log(`${i.code}: ${i.aor} (${i.dn}): ${i.message}`);
        if (r.issues.length > 0) process.exitCode = EXIT.partial;
        return r;
      } finally {
        await store.close();
      }
    } catch (err) {
      if (fromCatalogued(err)) throw err;
      throw new CliError(
        'DIRECTORY_CENTRAL_UNREACHABLE',
        `cannot replicate from the central forest: ${(err as Error).message}`,
      );
    }
  }
}
