import { spawnSync } from 'node:child_process';

/**
 * A certificate task that failed. The code is a key of the CLI catalogue
 * (src/cli/errors.ts), which gives the exit status; `suggestion` replaces its next step.
 */
export class CertError extends Error {
  constructor(
    message: string,
    readonly code:
      | 'OPENSSL_MISSING'
      | 'OPENSSL_FAILED'
      | 'CERT_EXISTS'
      | 'CERT_BAD_NAME'
      | 'CERT_NOT_FOUND'
      | 'CERT_INVALID'
      | 'CERT_NOT_TRUSTED',
    readonly suggestion?: string,
  ) {
    super(message);
    this.name = 'CertError';
  }
}

export const OPENSSL_INSTALL_HINT =
  "install it: sudo apt-get install openssl (Debian/Ubuntu), or your platform's openssl package";

/** Checks the `openssl` command line is usable; returns its version line. */
export function opensslVersion(): string {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new CertError('openssl is not installed or not on PATH', 'OPENSSL_MISSING', OPENSSL_INSTALL_HINT);
  }
  return r.stdout.trim();
}

/** Runs openssl with arguments (never through a shell); fails with openssl's own message. */
export function runOpenssl(args: string[], input?: string): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8', input });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new CertError('openssl is not installed or not on PATH', 'OPENSSL_MISSING', OPENSSL_INSTALL_HINT);
    throw new CertError(`openssl ${args[0]} failed: ${r.error.message}`, 'OPENSSL_FAILED');
  }
  if (r.status !== 0) {
    const detail = (r.stderr || r.stdout).trim().split('\n').slice(0, 3).join('; ');
    throw new CertError(`openssl ${args[0]} failed: ${detail}`, 'OPENSSL_FAILED');
  }
  return r.stdout;
}
