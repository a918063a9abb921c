import { type ParseArgsConfig, parseArgs } from 'node:util';

/**
 * The command line of a suite that bench/run.ts hands over whole (`--soak ...`,
 * `--archive ...`): parsed strictly with `--help`, usage errors printed with the usage.
 */

export type SuiteValues = Record<string, string | boolean | undefined>;

/** The suite's values, or the exit code once its usage (0) or a usage error (2) was printed. */
export function suiteArgs(
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
  usage: string,
): SuiteValues | number {
  let values: SuiteValues;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
    }).values as SuiteValues;
  } catch (err) {
    return usageError(err instanceof Error ? err.message : String(err), usage);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  return values;
}

/** Prints the reason and the usage; the exit code of a usage error. */
export function usageError(reason: string, usage: string): 2 {
  process.stderr.write(`${reason}\n\n${usage}\n`);
  return 2;
}

/**
 * A flag's comma-separated positive numbers (`_` allowed as a digit separator), the fallback
 * when the flag is absent, or undefined when any is not a positive number.
 */
export function positiveNumbers(
  text: string | boolean | undefined,
  fallback: number[],
): number[] | undefined {
  if (typeof text !== 'string') return fallback;
  const list = text.split(',').map((r) => Number(r.trim().replace(/_/g, '')));
  return list.every((n) => Number.isFinite(n) && n > 0) ? list : undefined;
}
