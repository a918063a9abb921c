/**
 * The catalogue of expected failures of the `parley` commands (STYLE habit 11): a stable
 * code scripts match in --json output, the exit code, and the next step for a person.
 * Exit codes: 1 generic failure, 2 bad input or configuration, 3 not found, 4 conflict
 * (already exists / in use), 5 store unavailable, 6 partial success of a batch.
 */
export interface CatalogueEntry {
  exit: number;
  suggestion: string;
}

export const CLI_ERRORS = {
  CONFIG_INVALID: {
    exit: 2,
    suggestion: 'Fix the key named above, or run `parley init` to write a fresh parley.yaml.',
  },
  INVALID_ARGUMENT: { exit: 2, suggestion: 'Run the command with --help to see what it accepts.' },
  INVALID_AOR: {
    exit: 2,
    suggestion: 'Give the user as alice or alice@DOMAIN, where DOMAIN is the server domain (--domain).',
  },
  WRONG_DOMAIN: {
    exit: 2,
    suggestion:
      'Users live in the server domain: pass --domain to manage another domain, or fix the address.',
  },
  PASSWORD_REQUIRED: {
    exit: 2,
    suggestion:
      'Run in a terminal to be prompted, or pipe the password: `printf %s "$PW" | parley users ... --password-stdin`.',
  },
  PASSWORD_MISMATCH: { exit: 2, suggestion: 'Type the same password twice.' },
  USER_EXISTS: {
    exit: 4,
    suggestion: 'Change its password with `parley users set-password`, or pick another address.',
  },
  USER_NOT_FOUND: {
    exit: 3,
    suggestion: 'List users with `parley users list`, or create it with `parley users add`.',
  },
  HOME_NOT_FOUND: {
    exit: 3,
    suggestion: 'Homes are created when a server of that home starts, or with `parley migrate`.',
  },
  DATA_FOLDER_IN_USE: {
    exit: 5,
    suggestion: 'Another parley command has the embedded database open: wait for it to finish, or stop it.',
  },
  DATABASE_UNAVAILABLE: {
    exit: 5,
    suggestion:
      'Check --database (or database.url in parley.yaml) and that PostgreSQL is running and reachable.',
  },
  FEDERATION_NOT_LISTED: {
    exit: 3,
    suggestion: 'See the lists with `parley federation show`.',
  },
  FEDERATION_CONFLICT: {
    exit: 4,
    suggestion:
      'A name is either a partner (allowed or blocked) or the clearinghouse: change the other entry first.',
  },
  MIGRATION_FAILED: {
    exit: 5,
    suggestion:
      'The failed migration was rolled back; fix the cause shown above and run `parley db migrate` again.',
  },
} as const satisfies Record<string, CatalogueEntry>;

export type CliErrorCode = keyof typeof CLI_ERRORS;

/**
 * A failure from domain code (src/federation, ...) that carries a catalogued code: the
 * catalogue, not the domain, decides its exit status and suggestion.
 */
export function fromCatalogued(err: unknown): CliError | undefined {
  if (err instanceof CliError || !(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && Object.hasOwn(CLI_ERRORS, code)
    ? new CliError(code as CliErrorCode, err.message)
    : undefined;
}

/** An expected failure raised by src/ code for a command to render (message says what happened). */
export class CliError extends Error {
  readonly exit: number;
  readonly suggestions: string[];

  constructor(
    readonly code: CliErrorCode,
    message: string,
    suggestion?: string,
  ) {
    super(message);
    this.exit = CLI_ERRORS[code].exit;
    this.suggestions = [suggestion ?? CLI_ERRORS[code].suggestion];
  }

  /** Options for oclif's this.error(message, options). */
  toErrorOptions(): { exit: number; code: string; suggestions: string[] } {
    return { exit: this.exit, code: this.code, suggestions: this.suggestions };
  }
}
