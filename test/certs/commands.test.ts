import { join, resolve } from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import CertsCreateCa from '../../commands/certs/create-ca.js';
import CertsIssue from '../../commands/certs/issue.js';
import CertsShow from '../../commands/certs/show.js';
import { ensureDebianCommand } from '../support/debian.js';
import { scratchDir } from '../support/scratch.js';

const root = resolve(import.meta.dirname, '../..');
const fixtures = join(root, 'fixtures/pki');

beforeAll(() => {
  ensureDebianCommand('openssl', 'openssl');
});

function captureStdout(): () => string {
  const chunks: string[] = [];
  // oclif's this.log goes through console.log.
  vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    chunks.push(`${args.join(' ')}\n`);
  });
  return () => chunks.join('');
}

afterEach(() => {
  vi.restoreAllMocks();
});

async function failure(
  p: Promise<unknown>,
): Promise<{ message: string; code?: string; oclif?: { exit?: number } }> {
  try {
    await p;
  } catch (err) {
    return err as { message: string; code?: string; oclif?: { exit?: number } };
  }
  throw new Error('expected the command to fail');
}

describe('parley certs', () => {
  it('create-ca, issue and show work end to end', async () => {
    const dir = scratchDir('parley-certs-cmd-');
    const out = captureStdout();
    const ca = await CertsCreateCa.run(['--dir', dir, '--name', 'Cmd CA'], root);
    expect(ca.summary.isCa).toBe(true);
    const leaf = await CertsIssue.run(
      ['--ca', dir, '--name', 'fe1.pool.test', '--san', '10.0.0.1', '--san', 'pool.test'],
      root,
    );
    expect(leaf.summary.subjectAltNames).toEqual(['DNS:fe1.pool.test', 'IP:10.0.0.1', 'DNS:pool.test']);
    const shown = await CertsShow.run([leaf.cert, '--ca', join(dir, 'ca.crt')], root);
    expect(shown.verified?.ok).toBe(true);
    expect(out()).toContain('Names       DNS:fe1.pool.test, IP:10.0.0.1, DNS:pool.test');
    expect(out()).toContain('Verified    yes');
  });

  it('show fails with exit 1 when the certificate is not from the CA', async () => {
    captureStdout();
    const err = await failure(
      CertsShow.run([join(fixtures, 'impostor-edge.crt'), '--ca', join(fixtures, 'ca.crt')], root),
    );
    expect(err.code).toBe('CERT_NOT_TRUSTED');
    expect(err.oclif?.exit).toBe(1);
  });

  it('reports a missing CA and an existing certificate with catalogue exit codes', async () => {
    captureStdout();
    const dir = scratchDir('parley-certs-cmd-');
    const missing = await failure(CertsIssue.run(['--ca', dir, '--name', 'a.test'], root));
    expect(missing.code).toBe('CERT_NOT_FOUND');
    expect(missing.oclif?.exit).toBe(3);
    await CertsCreateCa.run(['--dir', dir], root);
    const exists = await failure(CertsCreateCa.run(['--dir', dir], root));
    expect(exists.code).toBe('CERT_EXISTS');
    expect(exists.oclif?.exit).toBe(4);
  });
});
