/**
 * Expected failures of contact-list import, export and restore, and of the store backup
 * commands. The code is a key of the CLI catalogue (src/cli/errors.ts), which owns the
 * exit status (2 bad input, 3 not found, 6 partial success ...) and the next step.
 */
export type ContactsErrorCode =
  | 'CONTACT_LIST_INVALID'
  | 'IMPORT_PARTIAL'
  | 'IMPORT_FAILED'
  | 'USER_NOT_FOUND'
  | 'FILE_NOT_FOUND'
  | 'FILE_IS_FOLDER'
  | 'BACKUP_NOT_FOUND'
  | 'USER_NOT_IN_BACKUP'
  | 'CHECKSUM_MISMATCH'
  | 'INVALID_ARGUMENT';

export class ContactsError extends Error {
  constructor(
    readonly code: ContactsErrorCode,
    message: string,
    readonly suggestion?: string,
  ) {
    super(message);
    this.name = 'ContactsError';
  }
}
