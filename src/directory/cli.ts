import { loadCliConfig, type StoreFlagValues } from '../cli/flags.js';
import type { ParleyConfig } from '../ops/config.js';
import { type DirectoryConfig, DirectoryConfigError, parseDirectoryConfig } from './config.js';
import { userCountsText } from './counts.js';
import { DirectoryError, EXIT } from './errors.js';
import { DirectorySync, type ForestSummary, type SyncOptions, type SyncSummary } from './sync.js';

/**
 * What the `parley directory` commands share: parley.yaml's directory section, and the
 * progress display of a sync (listr2 per forest in a terminal, plain lines in CI, in a
 * pipe and with --json).
 */

export function loadDirectoryConfig(flags: StoreFlagValues): {
  parley: ParleyConfig;
  directory: DirectoryConfig;
} {
  const parley = loadCliConfig(flags);
  if (parley.directory === undefined) {
    throw new DirectoryError(
      'DIRECTORY_CONFIG',
      `${flags.config ?? 'parley.yaml'} has no directory section`,
      EXIT.config,
      ['add directory.central and directory.forests (see docs/directory.md)'],
    );
  }
  try {
    return {
      parley,
      directory: parseDirectoryConfig(parley.directory, { file: flags.config ?? 'parley.yaml' }),
    };
  } catch (err) {
    if (err instanceof DirectoryConfigError) {
      throw new DirectoryError('DIRECTORY_CONFIG', err.message, EXIT.config, [
        'fix the key named above (docs/directory.md)',
      ]);
    }
    throw err;
  }
}

export function forestLine(f: ForestSummary): string {
  const counts = `${userCountsText(f)}, conflicts ${f.conflicts}, errors ${f.errors}`;
  return `${f.forest}: ${f.status}: ${counts}${f.message ? ` (${f.message})` : ''}`;
}

export function summaryLines(s: SyncSummary): string[] {
  const lines = [
    `${s.dryRun ? 'dry run, nothing written: ' : ''}${s.mode} sync ${s.status} in ${(s.durationMs / 1000).toFixed(1)}s (run ${s.runId}${s.resumedFrom ? `, resumed after interrupted run ${s.resumedFrom}` : ''})`,
    ...s.forests.map(forestLine),
    ...s.conflicts
      .slice(0, 20)
      .map((c) => `conflict: ${c.sipAddress} wanted by ${c.forest}:${c.sourceDn}, held by ${c.heldBy}`),
    ...s.errors
      .slice(0, 20)
      .map((e) => `error: ${e.forest}${e.dn ? ` ${e.dn}` : ''}: ${e.code}: ${e.message}`),
  ];
  if (s.conflicts.length > 20)
    lines.push(`... and ${s.conflicts.length - 20} more conflicts (--json lists all)`);
  if (s.errors.length > 20) lines.push(`... and ${s.errors.length - 20} more errors (--json lists all)`);
  for (const p of s.planned.slice(0, 50)) lines.push(`would ${p.action} ${p.contactDn} (${p.sipAddress})`);
  if (s.planned.length > 50) lines.push(`... and ${s.planned.length - 50} more changes (--json lists all)`);
  return lines;
}

/** Runs the sync forest by forest, showing progress the way the terminal allows. */
export async function runSyncWithProgress(
  opts: SyncOptions,
  display: { interactive: boolean; log: (line: string) => void },
): Promise<SyncSummary> {
  const sync = await DirectorySync.begin(opts);
  try {
    if (display.interactive) {
      // Loaded only for a terminal: cron and --json runs do not pay for it.
      const { Listr } = await import('listr2');
      const tasks = new Listr(
        sync.forestsToSync().map((forest) => ({
          title: forest.name,
          task: async (_ctx: unknown, task: { output: string; title: string }) => {
            const s = await sync.syncForest(forest, (p) => {
              task.output = `${p.phase}: ${p.done}${p.total !== undefined ? `/${p.total}` : ''}${
                p.written !== undefined ? `, ${p.written} written` : ''
              }`;
            });
            task.title = forestLine(s);
            if (s.status === 'failed') throw new Error(s.message);
          },
        })),
        { concurrent: false, exitOnError: false, rendererOptions: { collapseErrors: false } },
      );
      await tasks.run().catch(() => undefined);
    } else {
      for (const forest of sync.forestsToSync()) {
        let last = '';
        const s = await sync.syncForest(forest, (p) => {
          // Phase changes only: CI logs stay readable at 100,000 users.
          if (p.phase !== last) display.log(`${forest.name}: ${p.phase}`);
          last = p.phase;
        });
        display.log(forestLine(s));
      }
    }
  } catch (err) {
    await sync.abandon();
    throw err;
  }
  return sync.finish();
}
