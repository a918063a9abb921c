/**
 * Expected failures of wave migrations. Each carries a code of the CLI catalogue
 * (src/cli/errors.ts), which decides the exit status and the suggestion.
 */
export type MigrationErrorCode =
  | 'MIGRATION_PLAN_INVALID'
  | 'MIGRATION_STORE_MISSING'
  | 'MIGRATION_WAVE_NOT_FOUND'
  | 'MIGRATION_WAVE_STATE'
  | 'MIGRATION_LOCKED'
  | 'MIGRATION_NOT_CONFIRMED'
  | 'MIGRATION_VERIFY_FAILED'
  | 'MIGRATION_PARTIAL';

export class MigrationError extends Error {
  override name = 'MigrationError';
  constructor(
    readonly code: MigrationErrorCode,
    message: string,
  ) {
    super(message);
  }
}
