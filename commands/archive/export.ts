import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { Flags } from '@oclif/core';
import { exportArchive, parseTimeFlag } from '../../src/archive/search.js';
import { ParleyCommand } from '../../src/cli/command.js';
import { storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';

export default class ArchiveExport extends ParleyCommand {
  static override summary = 'Export archived messages as JSON lines or XML.';
  static override description =
    'Every archived message from --since (and before --until), oldest first, streamed: one JSON object a line (id, at, sender, recipient, contentType, body, size, result, serverId), or one XML document of <message> elements (urn:parley:archive:1). Written to --out, or to stdout; the count goes to stderr.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> --since 2026-03-01 --until 2026-03-31 --format jsonl --out march.jsonl',
    '<%= config.bin %> <%= command.id %> --since 30d --format xml --out archive.xml',
  ];
  static override flags = {
    ...storeFlags,
    since: Flags.string({ summary: 'From this time (ISO date, or 30m, 24h, 7d back).', required: true }),
    until: Flags.string({ summary: 'Before this time.' }),
    format: Flags.string({ summary: 'Output format.', options: ['jsonl', 'xml'], default: 'jsonl' }),
    out: Flags.string({ char: 'o', summary: 'File to write (default: stdout).' }),
  };

  async run(): Promise<{ messages: number; out: string }> {
    const { flags } = await this.parse(ArchiveExport);
    const since = parseTimeFlag(flags.since, '--since');
    const until = flags.until ? parseTimeFlag(flags.until, '--until') : undefined;
    const out = flags.out ? createWriteStream(flags.out) : process.stdout;
    const result = await runWithStore(this, flags, (store) =>
      exportArchive(store.archive, { since, until, format: flags.format as 'jsonl' | 'xml', out }),
    );
    if (flags.out) {
      out.end();
      await finished(out);
    }
    this.logToStderr(`Exported ${result.messages} message(s)${flags.out ? ` to ${flags.out}` : ''}.`);
    return { ...result, out: flags.out ?? '-' };
  }
}
