import { Flags } from '@oclif/core';
import { parseTimeFlag } from '../../src/archive/search.js';
import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import {
  collectUsageReport,
  renderUsageReport,
  type UsageReport,
  usageCsv,
} from '../../src/reports/usage.js';

export default class ReportUsage extends ParleyCommand {
  static override summary = 'Report usage by day and home: active users, peak signed in, messages and bytes.';
  static override description =
    "From the daily rollup every server adds to once a minute (not by scanning the archive): per UTC day and home, the users active that day (signed in or sent a request), the most users signed in at once (the sum of the servers' own peaks: exact for a standard server, an upper bound for a pool), messages routed and their body bytes; and the enabled users of each home now. --csv prints one CSV row per day and home.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> --since 30d',
    '<%= config.bin %> <%= command.id %> --since 2026-03-01 --until 2026-03-31 --csv',
    '<%= config.bin %> <%= command.id %> --since 7d --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    ...domainFlag,
    since: Flags.string({ summary: 'First day (ISO date, or 7d, 30d back).', required: true }),
    until: Flags.string({ summary: 'Last day, included (default today).' }),
    csv: Flags.boolean({ summary: 'Print CSV instead of a table.', exclusive: ['json'] }),
  };

  async run(): Promise<UsageReport> {
    const { flags } = await this.parse(ReportUsage);
    const since = parseTimeFlag(flags.since, '--since');
    const until = flags.until ? parseTimeFlag(flags.until, '--until') : undefined;
    const report = await runWithStore(this, flags, (store, config) =>
      collectUsageReport(store.usage, { since, until, unplacedHome: config.home ?? config.domain }),
    );
    if (flags.csv) process.stdout.write(usageCsv(report));
    else for (const line of renderUsageReport(report)) this.log(line);
    return report;
  }
}
