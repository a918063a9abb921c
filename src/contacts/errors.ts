/**
 * Expected failures of the `parley contacts` and `parley db backup|restore` commands (STYLE
 * habit 11): a stable code for --json, an exit status following the CLI catalogue
 * (src/cli/errors.ts: 1 generic, 2 bad input, 3 not found, 5 store unavailable, 6 partial
 * success of a batch), and the next step for a person.
 */
export const CONTACTS_ERRORS = {
  CONTACT_LIST_INVALID: {
    exit: 2,
    suggestion:
      'Fix the file at the line and column shown (format: docs/contact-list-xml.md); nothing was imported.',
  },
  IMPORT_PARTIAL: {
    exit: 6,
    suggestion:
      'Lists of the users listed as failures were not imported; create the missing users and re-run (re-runs are idempotent).',
  },
  IMPORT_FAILED: { exit: 1, suggestion: 'No list was imported: see the failures above.' },
  USER_NOT_FOUND: { exit: 3, suggestion: 'List users with `parley users list`.' },
  FILE_NOT_FOUND: { exit: 3, suggestion: 'Check the path.' },
  BACKUP_NOT_FOUND: {
    exit: 3,
    suggestion: 'Give the folder or .xml file written by `parley contacts export`.',
  },
  USER_NOT_IN_BACKUP: {
    exit: 3,
    suggestion: 'Pick an export that includes this user (check its manifest.json).',
  },
  CHECKSUM_MISMATCH: { exit: 2, suggestion: 'The export is damaged: restore from an older export.' },
  INVALID_ARGUMENT: { exit: 2, suggestion: 'Run the command with --help to see what it accepts.' },
  STORE_BACKUP_INVALID: {
    exit: 2,
    suggestion: 'Give a folder written by `parley db backup`; nothing was restored.',
  },
  STORE_SCHEMA_MISMATCH: {
    exit: 2,
    suggestion:
      'Run `parley db migrate` so the target store has the schema of the backup, then restore again.',
  },
  STORE_RESTORE_VERIFY_FAILED: {
    exit: 1,
    suggestion: 'The restore was rolled back; the store is as it was. Report this as a bug.',
  },
  STORE_NOT_EMPTY: {
    exit: 4,
    suggestion: 'Restore into an empty store, or pass --force to replace everything in it.',
  },
} as const;

export type ContactsErrorCode = keyof typeof CONTACTS_ERRORS;

export class ContactsError extends Error {
  readonly exit: number;
  readonly suggestions: string[];

  constructor(
    readonly code: ContactsErrorCode,
    message: string,
    suggestion?: string,
  ) {
    super(message);
    this.exit = CONTACTS_ERRORS[code].exit;
    this.suggestions = [suggestion ?? CONTACTS_ERRORS[code].suggestion];
  }

  toErrorOptions(): { exit: number; code: string; suggestions: string[] } {
    return { exit: this.exit, code: this.code, suggestions: this.suggestions };
  }
}
