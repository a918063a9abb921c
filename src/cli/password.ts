import type { Readable } from 'node:stream';
import type { ParleyConfig } from '../ops/config.js';
import { resolveAor } from '../users/admin.js';
import { CliError } from './errors.js';
import { domainScope, type StoreFlagValues } from './flags.js';

/** Reads one line (the password) from a stream, without the line ending; EOF ends it too. */
export async function readLine(input: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    const nl = buf.indexOf(0x0a);
    if (nl >= 0) {
      chunks.push(buf.subarray(0, nl));
      break;
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r$/, '');
}

/**
 * Gets a password without it ever appearing in argv, the shell history or a log: from
 * stdin with --password-stdin, else a masked prompt (typed twice when setting one). With
 * neither a terminal nor --password-stdin there is nobody to ask: PASSWORD_REQUIRED.
 */
export async function obtainPassword(opts: {
  fromStdin: boolean;
  confirm: boolean;
  aor: string;
}): Promise<string> {
  if (opts.fromStdin) return readLine(process.stdin);
  if (!process.stdin.isTTY) {
    throw new CliError(
      'PASSWORD_REQUIRED',
      `no password given for ${opts.aor} and no terminal to ask for one`,
    );
  }
  const { password } = await import('@inquirer/prompts');
  const first = await password({ message: `Password for ${opts.aor}:`, mask: '*' });
  if (opts.confirm) {
    const again = await password({ message: 'Repeat the password:', mask: '*' });
    if (again !== first) throw new CliError('PASSWORD_MISMATCH', 'the two passwords differ');
  }
  return first;
}

/**
 * The step before the store opens for commands that set a password (users add, users
 * set-password): the AOR in a domain the deployment serves and its new password, asked twice.
 */
export function newPasswordStep(aorArg: string, fromStdin: boolean, flags: StoreFlagValues) {
  return async (config: ParleyConfig): Promise<{ aor: string; password: string }> => {
    const aor = resolveAor(aorArg, domainScope(config, flags));
    return { aor, password: await obtainPassword({ fromStdin, confirm: true, aor }) };
  };
}
