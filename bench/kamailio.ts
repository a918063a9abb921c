/**
 * Kamailio as the peer of the SIP suite: the anchor configuration (in-memory usrloc, digest
 * with one shared password "secret", MESSAGE relayed to the registered contact) copied to a
 * temp folder with its listen port rewritten, and a UDP listener on the same port beside the
 * TCP one (what ../shared/bench/kamailio-presence/kamailio-udp.cfg adds to the anchor, and
 * nothing else), run in the foreground (-DD) so killing the main process ends its workers.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  captureTail,
  ensureCommand,
  freeTcpUdpPort,
  processTree,
  REPO_ROOT,
  type SipTarget,
  spawnTracked,
  waitForExit,
  waitForTcp,
} from './sip.js';

/**
 * The anchor folder: the sibling shared/ checkout (`<repo>/../shared/bench/kamailio`) when
 * present, else the copy committed under bench/kamailio/.
 */
export function kamailioConfigDir(): string {
  const shared = resolve(REPO_ROOT, '..', 'shared', 'bench', 'kamailio');
  if (existsSync(join(shared, 'kamailio.cfg'))) return shared;
  return join(REPO_ROOT, 'bench', 'kamailio');
}

/** Finds kamailio without installing it: --vs-kamailio is skipped with a hint when absent. */
export function findKamailio(): string | undefined {
  for (const candidate of ['/usr/sbin/kamailio', '/usr/local/sbin/kamailio'])
    if (existsSync(candidate)) return candidate;
  const which = spawnSync('sh', ['-c', 'command -v kamailio'], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : undefined;
}

export function kamailioVersion(binary: string): string {
  const out = spawnSync(binary, ['-v'], { encoding: 'utf8' });
  return /kamailio\s+([\d.]+)/i.exec(out.stdout ?? '')?.[0] ?? 'kamailio';
}

/**
 * The anchor cfg listening on TCP and UDP on the given port (the UDP anchor's one addition;
 * every other `listen=` line goes) and `mpath` fixed for this machine's multiarch folder.
 */
export function rewriteKamailioConfig(cfg: string, port: number): string {
  let first = true;
  let out = cfg.replace(/^listen=.*(?:\n|$)/gm, () => {
    if (!first) return '';
    first = false;
    return `listen=tcp:127.0.0.1:${port}\nlisten=udp:127.0.0.1:${port}\n`;
  });
  const mpath = /^mpath="([^"]+)"/m.exec(out)?.[1];
  if (mpath && !existsSync(mpath)) {
    const found = readdirSync('/usr/lib')
      .map((d) => join('/usr/lib', d, 'kamailio', 'modules'))
      .find((d) => existsSync(d));
    if (found) out = out.replace(/^mpath=.*$/m, `mpath="${found}/"`);
  }
  return out;
}

export async function startKamailio(opts: { install?: boolean } = {}): Promise<SipTarget> {
  const binary = opts.install ? ensureCommand('kamailio', 'kamailio', ['/usr/sbin']) : findKamailio();
  if (!binary)
    throw new Error(
      'kamailio is not installed: install the Debian package kamailio (sudo apt-get install kamailio)',
    );
  const dir = mkdtempSync(join(tmpdir(), 'parley-bench-kamailio-'));
  const port = await freeTcpUdpPort();
  const cfgPath = join(dir, 'kamailio.cfg');
  writeFileSync(
    cfgPath,
    rewriteKamailioConfig(readFileSync(join(kamailioConfigDir(), 'kamailio.cfg'), 'utf8'), port),
  );
  return { ...(await runKamailio(binary, dir, cfgPath, port, 'Kamailio')), udpPort: port };
}

/**
 * Runs Kamailio in the foreground on a cfg already written into `dir` (removed on stop), with
 * the anchor's flags (README of the anchor): shm 2 GiB, since 64 MiB runs out near 55,000
 * registrations. Resolves once it accepts TCP on `port`; `label` names it in the start error.
 */
export async function runKamailio(
  binary: string,
  dir: string,
  cfgPath: string,
  port: number,
  label: string,
): Promise<SipTarget> {
  const child = spawnTracked(
    binary,
    ['-f', cfgPath, '-P', join(dir, 'kamailio.pid'), '-E', '-w', dir, '-m', '2048', '-M', '16', '-DD'],
    { cwd: dir },
  );
  const tail = captureTail(child);
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await waitForExit(child, 10_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForTcp('127.0.0.1', port, 20_000, () => child.exitCode === null);
  } catch (err) {
    await stop();
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`${label} did not start: ${why}\n${tail().trim().split('\n').slice(-10).join('\n')}`);
  }
  const pid = child.pid ?? 0;
  return {
    name: 'kamailio',
    version: kamailioVersion(binary),
    host: '127.0.0.1',
    port,
    pids: () => processTree(pid),
    stop,
  };
}
