/**
 * Exit statuses of a directory run's summary (process.exitCode of `parley directory sync`
 * and `replicate`), so scripts and the scheduler can match them (docs/directory.md lists
 * them too). They follow the CLI catalogue (src/cli/errors.ts): 2 configuration, 4 in use,
 * 6 partial success; 7 is the directory's own "refused by the deletion threshold".
 */
export const EXIT = {
  /** Every forest synced, nothing refused. Conflicts are reported but are not failures. */
  ok: 0,
  /** Nothing could be done: bad configuration, central forest unreachable or not prepared, every forest failed. */
  error: 1,
  /** The configuration (parley.yaml directory section, password source) is wrong. */
  config: 2,
  /** Some forests failed or some items could not be written; the rest was done. */
  partial: 6,
  /** A forest's removals passed the deletion threshold and were not made (--allow-mass-delete). */
  refused: 7,
  /** Another sync holds the lock. */
  locked: 4,
} as const;

export type DirectoryErrorCode =
  | 'DIRECTORY_CONFIG'
  | 'DIRECTORY_PASSWORD'
  | 'DIRECTORY_CENTRAL_UNREACHABLE'
  | 'DIRECTORY_NOT_PREPARED'
  | 'DIRECTORY_SCHEMA_ADMIN'
  | 'DIRECTORY_LOCKED'
  | 'DIRECTORY_UNKNOWN_FOREST'
  | 'DIRECTORY_INTERRUPTED';

/**
 * A directory failure. The code is a key of the CLI catalogue (src/cli/errors.ts), which
 * maps it to its exit status; `exitCode` is what the directory code expects that to be
 * (test/cli/catalogue.test.ts checks they agree), and `suggestions`, when given, replace the
 * catalogue's next step with one that names the forest or the lock holder.
 */
export class DirectoryError extends Error {
  constructor(
    readonly code: DirectoryErrorCode,
    message: string,
    readonly exitCode: number,
    readonly suggestions: string[] = [],
  ) {
    super(message);
    this.name = 'DirectoryError';
  }
}
