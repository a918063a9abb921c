import type { ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliRun, runCli, spawnCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { digestAnswer, RawSipClient } from '../support/raw-sip.js';

/**
 * A new administrator's first hour, with the built CLI only (`npm run build` first), as
 * issue 14 walks it: install, init, start, add users from the wrong folder and the right
 * one, a client signs in, status, a second deployment beside the first, and each mistake
 * answered with its catalogued code and a next step.
 */
const root = new URL('../../', import.meta.url).pathname;

function errorOf(run: CliRun): { code: string; suggestions: string[]; message: string } {
  return JSON.parse(run.stdout).error;
}

describe('the first hour of an administrator (built CLI)', { timeout: 600_000 }, () => {
  let work: string;
  let site: string;
  let elsewhere: string;
  let sip: number;
  let http: number;
  let server: ChildProcess | undefined;
  let serverErr = '';
  let serverOut = '';

  const inSite = (args: string[], stdin?: string) => runCli(args, { cwd: site, stdin, timeoutMs: 120_000 });

  beforeAll(async () => {
    if (!existsSync(join(root, 'dist', 'commands', 'server', 'start.js'))) {
      throw new Error('the CLI is not built: run `npm run build` first');
    }
    work = mkdtempSync(join(tmpdir(), 'cli-first-hour-'));
    site = join(work, 'site');
    elsewhere = join(work, 'elsewhere');
    mkdirSync(site);
    mkdirSync(elsewhere);
    sip = await freePort();
    http = await freePort();
  });

  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server!.once('exit', r));
      server.kill('SIGKILL');
      await exited;
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('says its version, under the package name it is installed as', async () => {
    const v = await runCli(['--version'], { cwd: elsewhere });
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^parley-server\/\d+\.\d+\.\d+/);
    expect(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).bin).toEqual({
      parley: './bin/run.js',
    });
  });

  it('init writes a file whose paths are relative to it, with the operations address', async () => {
    const init = await inSite([
      'init',
      '--yes',
      '--domain',
      'example.com',
      '--udp',
      'none',
      '--tcp',
      `127.0.0.1:${sip}`,
      '--ws',
      'none',
      '--http',
      `127.0.0.1:${http}`,
    ]);
    expect(init.code, init.output).toBe(0);
    const yaml = readFileSync(join(site, 'parley.yaml'), 'utf8');
    expect(yaml).toContain('dataDir: ./.parley');
    expect(yaml).toContain(`http: 127.0.0.1:${http}`);
    expect(yaml).toMatch(/domains:\n\s+- example.com/);
    expect(init.stdout).toContain('Next: parley server start');
  });

  it('starts, saying it creates the embedded database, with the banner apart from the logs', async () => {
    server = spawnCli(['server', 'start', '--log-format', 'json'], { cwd: site });
    server.stdout!.on('data', (d) => {
      serverOut += d;
    });
    server.stderr!.on('data', (d) => {
      serverErr += d;
    });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${http}/health`)
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ok) break;
      if (server.exitCode !== null || Date.now() > deadline) {
        throw new Error(`server did not come up:\n${serverOut}\n${serverErr}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    await expect.poll(() => serverErr, { timeout: 10_000 }).toContain('Add a user');
    expect(serverErr).toMatch(/Creating the embedded database in .*\.parley \(first start; takes/);
    expect(serverErr).toContain(`tcp://127.0.0.1:${sip}`);
    // stdout holds log lines only, each a JSON object.
    for (const line of serverOut.split('\n').filter(Boolean)) expect(() => JSON.parse(line)).not.toThrow();
  });

  it('refuses to add users from another folder, creating nothing there, with the hint', async () => {
    const run = await runCli(['users', 'add', 'zed', '--password-stdin', '--json'], {
      cwd: elsewhere,
      stdin: 'pw\n',
    });
    expect(run.code).toBe(3);
    expect(errorOf(run).code).toBe('STORE_NOT_FOUND');
    expect(errorOf(run).suggestions[0]).toMatch(/--config FILE, PARLEY_CONFIG=FILE/);
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it('adds users from the deployment folder and names the store it wrote to', async () => {
    const alice = await inSite(['users', 'add', 'alice', '--password-stdin'], 'wonderland\n');
    expect(alice.code, alice.output).toBe(0);
    expect(alice.stdout).toContain('Added alice@example.com.');
    expect(alice.stderr).toContain(
      `Store: embedded database in ${join(site, '.parley')} (from ./parley.yaml)`,
    );
    const bob = await inSite(['users', 'add', 'bob', '--password-stdin', '--json'], 'builder\n');
    expect(JSON.parse(bob.stdout)).toMatchObject({ aor: 'bob@example.com', store: join(site, '.parley') });
    const fromAfar = await runCli(['users', 'list', '--json', '--config', join(site, 'parley.yaml')], {
      cwd: elsewhere,
    });
    expect(
      JSON.parse(fromAfar.stdout).users.map((u: { aor: string; hasPassword: boolean }) => [
        u.aor,
        u.hasPassword,
      ]),
    ).toEqual([
      ['alice@example.com', true],
      ['bob@example.com', true],
    ]);
  });

  it('refuses a user of a domain the deployment does not serve, unless forced', async () => {
    const run = await inSite(['users', 'add', 'dave@other.example', '--password-stdin', '--json'], 'pw\n');
    expect(run.code).toBe(2);
    expect(errorOf(run).code).toBe('DOMAIN_NOT_SERVED');
  });

  it('signs a client in, and status shows it in one table', async () => {
    const client = await RawSipClient.open(sip);
    const register = (cseq: number, auth?: string) =>
      client.send(
        [
          'REGISTER sip:example.com SIP/2.0',
          `Via: SIP/2.0/TCP 127.0.0.1:${client.localPort};branch=z9hG4bK-first-hour-${cseq}`,
          'Max-Forwards: 70',
          'From: <sip:alice@example.com>;tag=fh1',
          'To: <sip:alice@example.com>',
          'Call-ID: first-hour-1',
          `CSeq: ${cseq} REGISTER`,
          `Contact: <sip:alice@127.0.0.1:${client.localPort};transport=tcp>`,
          'Expires: 600',
          ...(auth ? [`Authorization: ${auth}`] : []),
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
    register(1);
    const challenge = await client.response(10_000);
    expect(challenge.status).toBe(401);
    register(
      2,
      digestAnswer(challenge.header('www-authenticate') ?? '', {
        user: 'alice',
        password: 'wonderland',
        method: 'REGISTER',
        uri: 'sip:example.com',
      }),
    );
    expect((await client.response(10_000)).status).toBe(200);

    const status = await inSite(['server', 'status', '--json']);
    expect(status.code, status.output).toBe(0);
    const body = JSON.parse(status.stdout);
    expect(body.servers).toHaveLength(1);
    expect(body.servers[0]).toMatchObject({ role: 'standard', live: 'up', health: { signedInUsers: 1 } });
    const human = await inSite(['server', 'status']);
    expect(human.stdout).toMatch(/^TOTAL +1 server\(s\) +1 up +1 +1 +0$/m);
    expect(human.stdout).toContain("each server's /health");
    client.close();
  });

  it('inits a second deployment beside the first, never on its store', async () => {
    const again = await inSite([
      'init',
      '--yes',
      '--domain',
      'lab.example.com',
      '--config',
      '../lab/parley.yaml',
    ]);
    expect(again.code, again.output).toBe(0);
    expect(readFileSync(join(work, 'lab', 'parley.yaml'), 'utf8')).toContain('dataDir: ./.parley');
    expect(again.stdout).toContain('parley server start -c ../lab/parley.yaml');
    const taken = await inSite([
      'init',
      '--yes',
      '--config',
      '../lab/other.yaml',
      '--data-dir',
      './.parley',
      '--json',
    ]);
    expect(taken.code).toBe(4);
    expect(errorOf(taken).code).toBe('DATA_FOLDER_TAKEN');
  });

  it('answers each mistake with its code and a next step', async () => {
    const second = await inSite(['server', 'start', '--json']);
    expect(second.code).toBe(4);
    expect(errorOf(second).code).toBe('SERVER_ALREADY_RUNNING');
    expect(errorOf(second).suggestions[0]).toMatch(/stop it first, or give this server its own folder/);

    const lab = (args: string[]) => runCli(args, { cwd: join(work, 'lab'), timeoutMs: 120_000 });
    const port = await lab([
      'server',
      'start',
      '--udp',
      'none',
      '--tcp',
      `127.0.0.1:${sip}`,
      '--ws',
      'none',
      '--http',
      '127.0.0.1:0',
    ]);
    expect(port.code).toBe(4);
    expect(port.stderr).toContain(`cannot listen on 127.0.0.1:${sip}: the address is in use`);
    expect(port.stderr).toContain('ADDRESS_IN_USE');
    expect(port.stderr).not.toMatch(/"stack"/);

    const badFlag = await lab(['server', 'start', '--http', 'nonsense', '--json']);
    expect(badFlag.code).toBe(2);
    expect(errorOf(badFlag).code).toBe('INVALID_FLAG');
    expect(errorOf(badFlag).suggestions[0]).not.toContain('parley init');

    writeFileSync(
      join(work, 'lab', 'parley.yaml'),
      'domains: [lab.example.com]\nlistne: 1\nlog:\n  level: loud\n',
    );
    const twoMistakes = await lab(['users', 'list', '--json']);
    expect(twoMistakes.code).toBe(2);
    expect(errorOf(twoMistakes).code).toBe('CONFIG_INVALID');
    expect(errorOf(twoMistakes).message).toMatch(/listne: unknown key[\s\S]*log\.level: "loud"/);

    const folder = await inSite(['contacts', 'import', elsewhere, '--json']);
    expect(folder.code).toBe(2);
    expect(errorOf(folder)).toMatchObject({
      code: 'FILE_IS_FOLDER',
      message: `${elsewhere} is a folder, not a file`,
    });

    const typo = await runCli(['usres', 'list'], { cwd: site });
    expect(typo.code).not.toBe(0);
    expect(typo.stderr).toContain('is not a parley command');
  });

  it('stops cleanly, saying so', async () => {
    const exited = new Promise((r) => server!.once('exit', r));
    server!.kill('SIGTERM');
    await exited;
    expect(server!.exitCode).toBe(0);
    expect(serverErr).toMatch(/Stopping\.\.\.\nStopped\.\n/);
  });
});
