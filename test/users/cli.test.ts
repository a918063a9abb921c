import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

/**
 * End to end through the built CLI (`npm run build` first; `npm test` does it): the
 * commands a person types, against a temp data folder, alone and while another process
 * owns the folder and serves it. A command that opens the folder itself starts PGlite
 * (about 3 CPU-seconds on a two-core machine); one served the store is a fifth of that. So
 * the folder is opened by the CLI itself where that is what is tested (migrate, the first
 * add, opening again once the owner is gone), and served for the rest: the commands' flags,
 * output and exit statuses are the same either way.
 */
const root = new URL('../../', import.meta.url).pathname;
const built = join(root, 'dist', 'commands', 'users', 'add.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function parley(args: string[], opts: { stdin?: string; cwd: string }): Promise<Run> {
  const r = await runCli(args, { cwd: opts.cwd, stdin: opts.stdin, timeoutMs: 120_000 });
  return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}

// Each run starts a CLI process that opens PGlite: seconds apiece on a loaded machine.
describe('parley users (built CLI)', { timeout: 300_000 }, () => {
  let work: string;
  let common: string[];
  const run = (args: string[], stdin?: string) => parley([...args, ...common], { stdin, cwd: work });

  beforeAll(() => {
    if (!existsSync(built)) throw new Error('the CLI is not built: run `npm run build` first');
    work = mkdtempSync(join(tmpdir(), 'parley-cli-'));
    common = ['--data-dir', join(work, 'data'), '--domain', 'example.com'];
  });

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('migrates, then finds nothing to do', async () => {
    const first = await parley(['db', 'migrate', '--data-dir', join(work, 'data'), '--json'], { cwd: work });
    expect(first.code).toBe(0);
    const result = JSON.parse(first.stdout);
    expect(result.engine).toBe('pglite');
    expect(result.applied[0]).toEqual({ version: 1, name: 'core' });
    const again = await parley(['db', 'migrate', '--data-dir', join(work, 'data')], { cwd: work });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('up to date');
  });

  it('adds a user from stdin without echoing the password', async () => {
    const added = await run(
      ['users', 'add', 'alice', '--password-stdin', '--display-name', 'Alice', '--json'],
      'Tr0ub4dor&3\n',
    );
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({
      aor: 'alice@example.com',
      displayName: 'Alice',
      hasPassword: true,
    });
    expect(added.stdout + added.stderr).not.toContain('Tr0ub4dor');
  });

  describe('while another process owns and serves the data folder', () => {
    let owner: ChildProcess;
    const notified: string[] = [];

    beforeAll(async () => {
      const script = join(work, 'owner.mjs');
      const dist = (p: string) => JSON.stringify(new URL(`dist/src/store/${p}`, `file://${root}`).href);
      writeFileSync(
        script,
        `import { openDatabase } from ${dist('open.js')};
import { serveEmbeddedDatabase } from ${dist('embedded.js')};
const dataDir = process.argv[2];
const db = await openDatabase({ dataDir });
const server = await serveEmbeddedDatabase(db, dataDir);
await db.listen('parley_users', (aor) => console.log('changed ' + aor));
process.on('SIGTERM', async () => { await server.close(); await db.close(); process.exit(0); });
console.log('ready ' + db.engine);
`,
      );
      owner = spawn(process.execPath, [script, join(work, 'data')], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      await new Promise<void>((resolve, reject) => {
        owner.on('exit', (code) => reject(new Error(`owner exited with ${code}`)));
        owner.stdout!.on('data', (d) => {
          out += d;
          for (const line of out.split('\n')) if (line.startsWith('changed ')) notified.push(line.slice(8));
          if (out.includes('ready pglite')) resolve();
        });
      });
      owner.stdout!.removeAllListeners('data');
      let rest = '';
      owner.stdout!.on('data', (d) => {
        rest += d;
        const lines = rest.split('\n');
        rest = lines.pop()!;
        for (const line of lines) if (line.startsWith('changed ')) notified.push(line.slice(8));
      });
    });

    afterAll(async () => {
      if (owner && owner.exitCode === null) {
        owner.removeAllListeners('exit');
        const exited = new Promise((r) => owner.on('exit', r));
        owner.kill('SIGTERM');
        await exited;
      }
    });

    it('refuses a duplicate with exit 4 and a next step', async () => {
      const dup = await run(['users', 'add', 'alice@example.com', '--password-stdin', '--json'], 'x\n');
      expect(dup.code).toBe(4);
      const body = JSON.parse(dup.stdout);
      expect(body.error.code).toBe('USER_EXISTS');
      expect(body.error.suggestions[0]).toContain('parley users set-password');
      const human = await run(['users', 'add', 'alice', '--password-stdin'], 'x\n');
      expect(human.code).toBe(4);
      expect(human.stderr).toContain('set-password');
    });

    it('asks for a password it cannot prompt for', async () => {
      const res = await run(['users', 'add', 'nopw', '--json']);
      expect(res.code).toBe(2);
      expect(JSON.parse(res.stdout).error.code).toBe('PASSWORD_REQUIRED');
    });

    it('lists, shows, disables, enables, changes the password and removes', async () => {
      expect((await run(['users', 'add', 'bob', '--password-stdin'], 'pw\n')).code).toBe(0);
      const list = await run(['users', 'list', '--json', '--limit', '1']);
      expect(list.code).toBe(0);
      const page = JSON.parse(list.stdout);
      expect(page.users.map((u: { aor: string }) => u.aor)).toEqual(['alice@example.com']);
      expect(page.total).toBe(2);
      expect(page.nextCursor).toBe('alice@example.com');
      const disabled = await run(['users', 'disable', 'bob', '--json']);
      expect(JSON.parse(disabled.stdout)).toMatchObject({ enabled: false, changed: true });
      const onlyDisabled = JSON.parse((await run(['users', 'list', '--disabled', '--json'])).stdout);
      expect(onlyDisabled.users.map((u: { aor: string }) => u.aor)).toEqual(['bob@example.com']);
      expect(JSON.parse((await run(['users', 'enable', 'bob', '--json'])).stdout)).toMatchObject({
        enabled: true,
      });
      expect((await run(['users', 'set-password', 'bob', '--password-stdin'], 'pw2\n')).code).toBe(0);
      const show = await run(['users', 'show', 'bob']);
      expect(show.stdout).toContain('password      set');
      expect((await run(['users', 'remove', 'bob'])).code).toBe(2);
      expect((await run(['users', 'remove', 'bob', '--yes'])).code).toBe(0);
      const gone = await run(['users', 'show', 'bob', '--json']);
      expect(gone.code).toBe(3);
      expect(JSON.parse(gone.stdout).error.code).toBe('USER_NOT_FOUND');
    });

    it('refuses an address outside the domain', async () => {
      const res = await run(['users', 'add', 'eve@other.org', '--password-stdin', '--json'], 'x\n');
      expect(res.code).toBe(2);
      expect(JSON.parse(res.stdout).error.code).toBe('DOMAIN_NOT_SERVED');
    });

    it('adds and lists users through the served database, and the owner hears of it', async () => {
      const added = await run(['users', 'add', 'carol', '--password-stdin', '--json'], 'pw\n');
      expect(added.stderr).toBe('');
      expect(added.code).toBe(0);
      const list = JSON.parse((await run(['users', 'list', '--json'])).stdout);
      expect(list.users.map((u: { aor: string }) => u.aor)).toEqual([
        'alice@example.com',
        'carol@example.com',
      ]);
      await expect.poll(() => notified, { timeout: 5_000 }).toContain('carol@example.com');
      const migrate = await parley(['db', 'migrate', '--data-dir', join(work, 'data'), '--json'], {
        cwd: work,
      });
      expect(JSON.parse(migrate.stdout)).toMatchObject({ engine: 'postgres', applied: [] });
    });
  });

  it('opens the folder itself again once the owner is gone', async () => {
    const res = await run(['users', 'show', 'carol', '--json']);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).aor).toBe('carol@example.com');
  });
});
