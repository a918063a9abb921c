/**
 * Exit codes and error codes of the directory commands, one place, so scripts and the
 * scheduler can match them (docs/directory.md lists them too).
 */
export const EXIT = {
  /** Every forest synced, nothing refused. Conflicts are reported but are not failures. */
  ok: 0,
  /** Nothing could be done: bad configuration, central forest unreachable or not prepared, every forest failed. */
  error: 1,
  /** Some forests failed or some items could not be written; the rest was done. */
  partial: 2,
  /** A forest's removals passed the deletion threshold and were not made (--allow-mass-delete). */
  refused: 3,
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
