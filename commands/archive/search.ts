import { Flags } from '@oclif/core';
import {
  type ArchiveSearchResult,
  parseTimeFlag,
  renderArchiveSearch,
  searchArchive,
} from '../../src/archive/search.js';
import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, domainScope, storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { resolveAor } from '../../src/users/admin.js';

export default class ArchiveSearch extends ParleyCommand {
  static override summary = "Search the message archive for a user's messages.";
  static override description =
    'Messages sent or received by --user, oldest first: only those exchanged with --with, within --since and --until (ISO dates or spans back from now: 30m, 24h, 7d), holding every word of --text (case-insensitive). Each line shows the time, sender, recipient, the delivery result the sender got, and the body.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> --user alice',
    '<%= config.bin %> <%= command.id %> --user alice@example.com --with bob --since 7d --text "quarterly report"',
    '<%= config.bin %> <%= command.id %> --user alice --since 2026-03-01 --until 2026-04-01 --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    user: Flags.string({ summary: 'User whose messages to find (alice or alice@DOMAIN).', required: true }),
    with: Flags.string({ summary: 'Only messages exchanged with this user.' }),
    since: Flags.string({ summary: 'From this time (ISO date, or 30m, 24h, 7d back).' }),
    until: Flags.string({ summary: 'Before this time.' }),
    text: Flags.string({ summary: 'Words the body must hold (all of them).' }),
    limit: Flags.integer({ summary: 'Most messages shown.', default: 100, min: 1, max: 100_000 }),
  };

  async run(): Promise<ArchiveSearchResult> {
    const { flags } = await this.parse(ArchiveSearch);
    const since = flags.since ? parseTimeFlag(flags.since, '--since') : undefined;
    const until = flags.until ? parseTimeFlag(flags.until, '--until') : undefined;
    const result = await runWithStore(this, flags, (store, config) => {
      const scope = { ...domainScope(config, flags), force: true };
      return searchArchive(store.archive, {
        user: resolveAor(flags.user, scope),
        with: flags.with ? resolveAor(flags.with, scope) : undefined,
        since,
        until,
        text: flags.text,
        limit: flags.limit,
      });
    });
    for (const line of renderArchiveSearch(result)) this.log(line);
    return result;
  }
}
