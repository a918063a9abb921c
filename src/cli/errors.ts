import { Errors } from '@oclif/core';

/**
 * The catalogue of expected failures of the `parley` commands (STYLE habit 11): a stable
 * code scripts match in --json output, the exit status, and the next step for a person.
 * Domain code (src/users, src/contacts, src/directory, src/certs, src/ops ...) throws its
 * own errors carrying one of these codes; the catalogue alone decides exit status and
 * default suggestion. docs/cli.md lists the codes.
 *
 * Exit statuses: 1 generic failure, 2 bad input or configuration, 3 not found, 4 conflict
 * (already exists / in use), 5 store unavailable, 6 partial success of a batch, 7 refused
 * by the directory deletion threshold, 130 interrupted.
 */
export interface CatalogueEntry {
  exit: number;
  suggestion: string;
}

export const CLI_ERRORS = {
  CONFIG_INVALID: {
    exit: 2,
    suggestion: 'Fix the keys named above (docs/config.md lists every key and the values it takes).',
  },
  CONFIG_NOT_FOUND: {
    exit: 3,
    suggestion:
      'Check the path given to --config or PARLEY_CONFIG, or write a configuration with `parley init`.',
  },
  CONFIG_EXISTS: {
    exit: 4,
    suggestion: 'Pass --force to overwrite it, or --config to write elsewhere.',
  },
  MISSING_ANSWER: {
    exit: 2,
    suggestion: 'Pass the flag named above, or run `parley init` in a terminal to be asked.',
  },
  INVALID_FLAG: {
    exit: 2,
    suggestion: 'Fix the flag named above; `parley COMMAND --help` says what each flag accepts.',
  },
  INVALID_ARGUMENT: { exit: 2, suggestion: 'Run the command with --help to see what it accepts.' },
  STORE_NOT_FOUND: {
    exit: 3,
    suggestion:
      'Run the command in the deployment folder (the one holding parley.yaml), or point at it: --config FILE, PARLEY_CONFIG=FILE, --data-dir DIR or --database URL.',
  },
  STORE_NOT_CREATED: {
    exit: 3,
    suggestion:
      'Start the server once (`parley server start`), or create the store with `parley db migrate`, then run this again.',
  },
  DATA_FOLDER_IN_USE: {
    exit: 5,
    suggestion: 'Another parley command has the embedded database open: wait for it to finish, or stop it.',
  },
  DATA_FOLDER_TAKEN: {
    exit: 4,
    suggestion:
      "That folder already holds another deployment's store: choose a new --data-dir for this one (a relative path is kept beside its parley.yaml).",
  },
  SERVER_ALREADY_RUNNING: {
    exit: 4,
    suggestion:
      'Another Parley server owns that data folder: stop it first, or give this server its own folder (--data-dir, or database.dataDir in its parley.yaml).',
  },
  ADDRESS_IN_USE: {
    exit: 4,
    suggestion:
      'Another process listens on that address: stop it, or choose other ports (--udp, --tcp, --tls, --ws, --wss, --http, or listen.* and http in parley.yaml).',
  },
  START_FAILED: {
    exit: 1,
    suggestion: 'Read the reason above; `--log-level debug` shows what the server did before it stopped.',
  },
  DATABASE_UNAVAILABLE: {
    exit: 5,
    suggestion:
      'Check --database (or database.url in parley.yaml) and that PostgreSQL is running and reachable.',
  },
  MIGRATION_FAILED: {
    exit: 5,
    suggestion:
      'The failed migration was rolled back; fix the cause shown above and run `parley db migrate` again.',
  },
  INVALID_AOR: {
    exit: 2,
    suggestion:
      'Give the user as alice or alice@DOMAIN, where DOMAIN is one of the domains the deployment serves.',
  },
  DOMAIN_NOT_SERVED: {
    exit: 2,
    suggestion:
      'A server started with --domain serves that domain: give the same --domain here. Otherwise add the domain to `domains:` in parley.yaml and restart the server (docs/config.md), fix the address, or pass --force to store the user anyway (it cannot sign in until the domain is served).',
  },
  INVALID_PASSWORD: { exit: 2, suggestion: 'Give a non-empty password on one line.' },
  PASSWORD_REQUIRED: {
    exit: 2,
    suggestion:
      'Run in a terminal to be prompted, or pipe the password: `printf %s "$PW" | parley users ... --password-stdin`.',
  },
  PASSWORD_MISMATCH: { exit: 2, suggestion: 'Type the same password twice.' },
  CONFIRMATION_REQUIRED: { exit: 2, suggestion: 'Pass --yes to go ahead without a prompt.' },
  USER_EXISTS: {
    exit: 4,
    suggestion: 'Change its password with `parley users set-password`, or pick another address.',
  },
  USER_NOT_FOUND: {
    exit: 3,
    suggestion: 'List users with `parley users list`, or create one with `parley users add`.',
  },
  HOME_NOT_FOUND: {
    exit: 3,
    suggestion: 'Homes are created when a server of that home starts, or with `parley migrate`.',
  },
  HOME_EMPTY: { exit: 3, suggestion: 'List the users of a home with `parley users list --home HOME`.' },
  SERVER_NOT_FOUND: {
    exit: 3,
    suggestion: 'List the servers with `parley server status`, and pass one of their ids to --server.',
  },
  DRAIN_TIMEOUT: {
    exit: 1,
    suggestion:
      'The server is still draining (clients take a while to move): check `parley server status`, wait again with `parley server drain --wait`, or stop the process.',
  },
  FILE_NOT_FOUND: { exit: 3, suggestion: 'Check the path.' },
  FILE_IS_FOLDER: {
    exit: 2,
    suggestion:
      'Give a file. To restore one user from a folder written by `parley contacts export`, use `parley contacts restore --from FOLDER`.',
  },
  PERMISSION_DENIED: {
    exit: 2,
    suggestion: 'Run as a user that may read (and write) that path, or change its permissions.',
  },
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
  BACKUP_NOT_FOUND: {
    exit: 3,
    suggestion: 'Give the folder or .xml file written by `parley contacts export`.',
  },
  USER_NOT_IN_BACKUP: {
    exit: 3,
    suggestion: 'Pick an export that includes this user (check its manifest.json).',
  },
  CHECKSUM_MISMATCH: { exit: 2, suggestion: 'The export is damaged: restore from an older export.' },
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
  FEDERATION_NOT_LISTED: {
    exit: 3,
    suggestion: 'See the lists with `parley federation show`.',
  },
  FEDERATION_CONFLICT: {
    exit: 4,
    suggestion:
      'A name is either a partner (allowed or blocked) or the clearinghouse: change the other entry first.',
  },
  DIRECTORY_CONFIG: {
    exit: 2,
    suggestion: 'Fix the directory section of parley.yaml (docs/directory.md).',
  },
  DIRECTORY_PASSWORD: {
    exit: 2,
    suggestion: 'Check the bind password source (bindPasswordFile or bindPasswordEnv) of that forest.',
  },
  DIRECTORY_CENTRAL_UNREACHABLE: {
    exit: 1,
    suggestion: 'Check directory.central.url, bindDn and the bind password source.',
  },
  DIRECTORY_NOT_PREPARED: { exit: 1, suggestion: 'Run `parley directory prepare` first.' },
  DIRECTORY_SCHEMA_ADMIN: {
    exit: 2,
    suggestion:
      'Set directory.central.schemaAdmin (bindDn and bindPasswordFile or bindPasswordEnv) to an identity that may write cn=config.',
  },
  DIRECTORY_LOCKED: { exit: 4, suggestion: 'Wait for the other sync to finish.' },
  DIRECTORY_UNKNOWN_FOREST: { exit: 2, suggestion: 'Pass one of the forests of the directory section.' },
  DIRECTORY_INTERRUPTED: {
    exit: 130,
    suggestion: 'Run it again: the next run resumes where this one stopped.',
  },
  OPENSSL_MISSING: {
    exit: 1,
    suggestion:
      "Install it: sudo apt-get install openssl (Debian/Ubuntu), or your platform's openssl package.",
  },
  OPENSSL_FAILED: { exit: 1, suggestion: "Read openssl's message above." },
  CERT_EXISTS: { exit: 4, suggestion: 'Pass --force to replace it, or write elsewhere (--dir, --out).' },
  CERT_BAD_NAME: { exit: 2, suggestion: 'Give an FQDN, an IP address or an email address.' },
  CERT_NOT_FOUND: { exit: 3, suggestion: 'Check the path.' },
  CERT_INVALID: { exit: 2, suggestion: 'Give a PEM file (-----BEGIN CERTIFICATE-----).' },
  CERT_NOT_TRUSTED: {
    exit: 1,
    suggestion: 'Issue the certificate from that CA, or pass the CA that issued it.',
  },
  DNS_PLAN_INVALID: {
    exit: 2,
    suggestion: 'Fix the value named above (`parley dns records --help` lists the flags).',
  },
  MIGRATION_PLAN_INVALID: {
    exit: 2,
    suggestion:
      'Fix the plan file as the message says (docs/migration.md describes it), or make a new one with `parley migrate plan`.',
  },
  MIGRATION_STORE_MISSING: {
    exit: 2,
    suggestion:
      "Name every home's store in the plan's stores section: a data folder, a postgresql:// URL, or $VAR set in the environment.",
  },
  MIGRATION_WAVE_NOT_FOUND: {
    exit: 3,
    suggestion: 'See the waves with `parley migrate status PLAN`.',
  },
  MIGRATION_WAVE_STATE: {
    exit: 4,
    suggestion: 'See where the wave stands with `parley migrate status PLAN --wave NAME`.',
  },
  MIGRATION_LOCKED: {
    exit: 4,
    suggestion:
      'Wait for the other run to finish; a holder killed on another machine is taken over after 60 s.',
  },
  MIGRATION_NOT_CONFIRMED: {
    exit: 2,
    suggestion: 'Run in a terminal to confirm, or pass --yes.',
  },
  MIGRATION_VERIFY_FAILED: {
    exit: 1,
    suggestion:
      'Look at the users listed (--json has them all), repair or roll the wave back, then verify again.',
  },
  MIGRATION_PARTIAL: {
    exit: 6,
    suggestion:
      'The users listed failed and the others moved; fix the cause and run the wave again (it resumes).',
  },
  CLIENT_RULE_INVALID: {
    exit: 2,
    suggestion:
      'A rule is a product token (or *), a version range such as ">=3.10 <4", and allow, block or upgrade (with --url); see docs/clients.md.',
  },
  CLIENT_RULE_NOT_FOUND: {
    exit: 3,
    suggestion: '`parley clients policy list` shows the rules and their ids.',
  },
  SETTINGS_FILE_INVALID: {
    exit: 2,
    suggestion:
      'Fix the keys named above; `parley config export` writes a file in the expected shape to start from.',
  },
} as const satisfies Record<string, CatalogueEntry>;

export type CliErrorCode = keyof typeof CLI_ERRORS;

export function isCatalogued(code: unknown): code is CliErrorCode {
  return typeof code === 'string' && Object.hasOwn(CLI_ERRORS, code);
}

/** An expected failure raised by src/cli code for a command to render (message says what happened). */
export class CliError extends Error {
  readonly exit: number;
  readonly suggestions: string[];

  constructor(
    readonly code: CliErrorCode,
    message: string,
    suggestion?: string,
  ) {
    super(message);
    this.name = 'CliError';
    this.exit = CLI_ERRORS[code].exit;
    this.suggestions = [suggestion ?? CLI_ERRORS[code].suggestion];
  }

  /** Options for oclif's this.error(message, options). */
  toErrorOptions(): { exit: number; code: string; suggestions: string[] } {
    return { exit: this.exit, code: this.code, suggestions: this.suggestions };
  }
}

/** Failures of the system a person can cause and fix (a path that is a folder, no permission). */
const SYSTEM_ERRORS: Record<string, CliErrorCode> = {
  ENOENT: 'FILE_NOT_FOUND',
  EISDIR: 'FILE_IS_FOLDER',
  EACCES: 'PERMISSION_DENIED',
  EPERM: 'PERMISSION_DENIED',
  EADDRINUSE: 'ADDRESS_IN_USE',
};

/**
 * The catalogued form of any failure: a CliError as it is; a domain error (src/users,
 * src/contacts, src/federation ...) whose `code` is a catalogue key, with the suggestion it
 * carries or the catalogue's; a file-system error a person caused, described by its path.
 * Undefined for anything else (a bug: oclif shows it as it is).
 */
export function fromCatalogued(err: unknown): CliError | undefined {
  if (err instanceof CliError) return err;
  if (!(err instanceof Error)) return undefined;
  const e = err as Error & { code?: unknown; suggestion?: unknown; suggestions?: unknown; path?: unknown };
  if (isCatalogued(e.code)) {
    const own = Array.isArray(e.suggestions) ? e.suggestions[0] : e.suggestion;
    return new CliError(e.code, err.message, typeof own === 'string' && own ? capitalise(own) : undefined);
  }
  const system = typeof e.code === 'string' ? SYSTEM_ERRORS[e.code] : undefined;
  if (system) {
    const what = typeof e.path === 'string' ? e.path : undefined;
    const message =
      system === 'FILE_NOT_FOUND' && what
        ? `${what} does not exist`
        : system === 'FILE_IS_FOLDER' && what
          ? `${what} is a folder, not a file`
          : system === 'PERMISSION_DENIED' && what
            ? `no permission to use ${what}`
            : err.message;
    return new CliError(system, message);
  }
  return undefined;
}

/**
 * oclif's parse failures (an unknown flag, a bad option value, a missing argument) carry
 * the whole parser context, which --json would print: keep the message, code it. A value
 * a flag's own parser refuses (`--limit 0`: "Parsing --limit ...") comes without that
 * context, as a bare CLIError.
 */
function parseError(err: unknown): CliError | undefined {
  if (!(err instanceof Errors.CLIError)) return undefined;
  if (!('parse' in err) && !err.message.startsWith('Parsing --')) return undefined;
  const message = err.message.replace(/\nSee more help with --help$/, '');
  return new CliError('INVALID_FLAG', message);
}

function capitalise(s: string): string {
  const text = s[0].toUpperCase() + s.slice(1);
  return /[.!?`)]$/.test(text) ? text : `${text}.`;
}

/**
 * The error a command exits with for a catalogued failure: oclif's CLIError carrying the
 * code, the suggestion and the exit status (as `oclif.exit`, read by human runs, and as
 * `exitCode`, read by --json runs). Anything else comes back unchanged.
 */
export function toCommandError(err: unknown): unknown {
  if (err instanceof Errors.CLIError && (err as { exitCode?: number }).exitCode !== undefined) return err;
  const known = fromCatalogued(err) ?? parseError(err);
  if (!known) {
    if (err instanceof Errors.CLIError) {
      const e = err as Errors.CLIError & { exitCode?: number };
      e.exitCode = e.oclif?.exit ?? 2;
    }
    return err;
  }
  const out = new Errors.CLIError(known.message, known.toErrorOptions()) as Errors.CLIError & {
    exitCode?: number;
  };
  out.exitCode = known.exit;
  return out;
}
