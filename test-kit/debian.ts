import { execFileSync, spawnSync } from 'node:child_process';

/**
 * Makes sure a Debian package's command exists for an integration test. As root, installs
 * the package with apt (waiting on the dpkg lock, so parallel test files can ask at once);
 * otherwise fails with a message that says how to install it.
 */
export function ensureDebianCommand(command: string, pkg: string, searchPaths: string[] = []): string {
  const found = findCommand(command, searchPaths);
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `${command} is missing: install the Debian package '${pkg}' (sudo apt-get install ${pkg})`,
    );
  }
  const apt = (args: string[]) =>
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=900', ...args], {
      stdio: 'pipe',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 900_000,
    });
  try {
    apt(['install', '-y', '-qq', '--no-install-recommends', pkg]);
  } catch {
    apt(['update', '-qq']);
    apt(['install', '-y', '-qq', '--no-install-recommends', pkg]);
  }
  const installed = findCommand(command, searchPaths);
  if (!installed) throw new Error(`installed ${pkg} but ${command} is still not found`);
  return installed;
}

function findCommand(command: string, searchPaths: string[]): string | undefined {
  for (const dir of searchPaths) {
    const candidate = `${dir}/${command}`;
    if (spawnSync('test', ['-x', candidate]).status === 0) return candidate;
  }
  const which = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : undefined;
}
