import { Flags } from '@oclif/core';
import { type ParleyConfig, parseAdvertise } from '../ops/config.js';
import {
  parseServerTarget,
  renderSyntheticResult,
  runSyntheticTest,
  type SyntheticResult,
} from '../reports/synthetic.js';
import { hostReference } from '../sip/host.js';
import { resolveAor } from '../users/admin.js';
import { ParleyCommand } from './command.js';
import { CliError } from './errors.js';
import { domainFlag, domainScope, loadCliConfig, storeFlags } from './flags.js';
import { obtainPassword, readLine } from './password.js';

type TestName = SyntheticResult['test'];

/** The server a test dials when --server is not given: this deployment's TCP listener, else its TLS one. */
function defaultServer(config: ParleyConfig): string | undefined {
  const pick = config.listen.tcp
    ? { hp: config.listen.tcp, t: 'tcp' }
    : config.listen.tls
      ? { hp: config.listen.tls, t: 'tls' }
      : undefined;
  if (!pick) return undefined;
  const host =
    parseAdvertise(config.advertise)?.host ??
    (pick.hp.host === '0.0.0.0' || pick.hp.host === '::' ? '127.0.0.1' : pick.hp.host);
  return `sip:${hostReference(host)}:${pick.hp.port};transport=${pick.t}`;
}

/**
 * `parley test sign-in|im|presence`: one command body per test, made here once. Passwords
 * never go in argv: PARLEY_TEST_PASSWORD (and PARLEY_TEST_PEER_PASSWORD) for monitors, a
 * line each on stdin with --password-stdin, or a masked prompt.
 */
export function syntheticTestCommand(
  test: TestName,
  texts: { summary: string; description: string; examples: string[] },
) {
  const needsPeer = test !== 'sign-in';
  return class SyntheticTest extends ParleyCommand {
    static override summary = texts.summary;
    static override description = `${texts.description}

Each step is timed; the first failure stops the run and names the step. Exits 0 when every step passed, 1 when one failed (--json carries the steps either way). Passwords: PARLEY_TEST_PASSWORD (and PARLEY_TEST_PEER_PASSWORD), else one line each on stdin with --password-stdin, else a prompt.`;
    static override examples = texts.examples;
    static override enableJsonFlag = true;
    static override flags = {
      config: storeFlags.config,
      ...domainFlag,
      as: Flags.string({ summary: 'User to sign in as (alice or alice@DOMAIN).', required: true }),
      ...(needsPeer
        ? { to: Flags.string({ summary: 'The other user (bob or bob@DOMAIN).', required: true }) }
        : {}),
      ...(test === 'im'
        ? {
            receive: Flags.boolean({
              summary: 'Also sign in as --to and check the message arrives (needs its password).',
            }),
          }
        : {}),
      server: Flags.string({
        summary:
          "sip:HOST:PORT;transport=tcp|tls to test (default this deployment's TCP, else TLS, listener).",
      }),
      ca: Flags.string({ summary: 'CA bundle to check a TLS server against (default the system CAs).' }),
      'password-stdin': Flags.boolean({ summary: 'Read the password(s) from stdin, one a line.' }),
      timeout: Flags.integer({ summary: 'Milliseconds each step may take.', default: 5000, min: 100 }),
    };

    async run(): Promise<SyntheticResult> {
      const { flags } = await this.parse(SyntheticTest);
      const f = flags as typeof flags & { to?: string; receive?: boolean };
      const config = loadCliConfig(flags);
      const scope = { ...domainScope(config, flags), force: true };
      const server = flags.server ?? defaultServer(config);
      if (!server || !parseServerTarget(server))
        throw new CliError(
          'INVALID_FLAG',
          `--server: ${server ? `"${server}" is not sip:HOST:PORT;transport=tcp|tls` : 'this deployment has no TCP or TLS listener to test'}`,
        );
      const as = resolveAor(flags.as, scope);
      const to = f.to ? resolveAor(f.to, scope) : undefined;
      const password = async (env: string | undefined, aor: string) =>
        env ??
        (flags['password-stdin']
          ? readLine(process.stdin)
          : obtainPassword({ fromStdin: false, confirm: false, aor }));
      const asPassword = await password(process.env.PARLEY_TEST_PASSWORD, as);
      const peerPassword =
        to && f.receive ? await password(process.env.PARLEY_TEST_PEER_PASSWORD, to) : undefined;
      const result = await runSyntheticTest(test, {
        server,
        as: { aor: as, password: asPassword },
        to: to ? { aor: to, password: peerPassword } : undefined,
        ca: flags.ca,
        timeoutMs: flags.timeout,
      });
      for (const line of renderSyntheticResult(result)) this.log(line);
      if (!result.ok) process.exitCode = 1;
      return result;
    }
  };
}
