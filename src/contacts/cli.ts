import type { Command } from '@oclif/core';
import { Listr } from 'listr2';
import { ContactsError } from './errors.js';
import type { ImportResult } from './import.js';

/**
 * What the `parley contacts` commands share: progress (listr2 in a terminal, a plain line
 * every PROGRESS_EVERY users otherwise, nothing with --json), the human rendering of an
 * import report, and the catalogued error an import's outcome amounts to.
 */
const PROGRESS_EVERY = 10_000;

export interface ProgressDisplay {
  interactive: boolean;
  /** Plain progress lines (stderr), for logs of scheduled runs; omitted with --json. */
  log?: (line: string) => void;
}

export function progressDisplay(command: Command, json: boolean): ProgressDisplay {
  return {
    interactive: !json && process.stdout.isTTY === true,
    log: json ? undefined : (line) => command.logToStderr(line),
  };
}

export async function withProgress<T>(
  title: string,
  display: ProgressDisplay,
  fn: (progress: (label: string, count: number) => void) => Promise<T>,
): Promise<T> {
  if (!display.interactive) {
    let next = PROGRESS_EVERY;
    let lastLabel = '';
    return fn((label, count) => {
      if (label !== lastLabel) {
        lastLabel = label;
        next = PROGRESS_EVERY;
      }
      if (count >= next) {
        display.log?.(`${title}: ${label} ${count} users`);
        next += PROGRESS_EVERY;
      }
    });
  }
  let result: T | undefined;
  const tasks = new Listr(
    [
      {
        title,
        task: async (_ctx: unknown, task: { output: string }) => {
          result = await fn((label, count) => {
            if (count % 100 === 0) task.output = `${label}: ${count} users`;
          });
        },
      },
    ],
    { exitOnError: true, rendererOptions: { collapseErrors: false } },
  );
  await tasks.run();
  return result as T;
}

export function importSummaryLines(result: ImportResult): string[] {
  if (result.status === 'invalid') {
    return [
      `${result.file} was rejected; nothing was imported:`,
      ...result.errors.map((e) => `  line ${e.line}, column ${e.column}: ${e.reason}`),
    ];
  }
  const lines = [
    `${result.dryRun ? 'Dry run, nothing written: would import' : 'Imported'} ${result.imported} of ${result.usersInFile} list(s) (${result.mode}): ${result.changed} changed, ${result.unchanged} already up to date, ${result.failures.length} failed.`,
  ];
  for (const f of result.failures.slice(0, 50))
    lines.push(`  ${f.user} (line ${f.line}): ${f.code}: ${f.reason}`);
  if (result.failures.length > 50)
    lines.push(`  ... and ${result.failures.length - 50} more (--json lists all)`);
  return lines;
}

/** The ContactsError an import result amounts to, or undefined when it fully succeeded. */
export function importOutcomeError(result: ImportResult): ContactsError | undefined {
  if (result.status === 'invalid') {
    const first = result.errors[0];
    return new ContactsError(
      'CONTACT_LIST_INVALID',
      `${result.file} is not a valid contact list (line ${first.line}, column ${first.column}: ${first.reason})`,
    );
  }
  if (result.status === 'partial') {
    return new ContactsError(
      'IMPORT_PARTIAL',
      `${result.failures.length} of ${result.usersInFile} list(s) were not imported`,
    );
  }
  if (result.status === 'failed') return new ContactsError('IMPORT_FAILED', 'no list was imported');
  return undefined;
}
