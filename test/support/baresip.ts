import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDebianCommand } from './debian.js';
import { freePort } from './ports.js';

export interface BaresipOptions {
  user: string;
  domain: string;
  password: string;
  /**
   * The server as the account's outbound proxy, e.g. `sip:127.0.0.1:5060;transport=tcp`; without
   * `transport=` baresip starts on UDP, as a desktop client set up by hand does.
   */
  proxy: string;
  /** Users whose presence it watches (its contact list, `presence=p2p`). */
  watch?: string[];
  /** The contact `message` sends to. */
  messageTo?: string;
  /** Seconds between registrations (and publications). */
  regint?: number;
}

/**
 * baresip (Debian's `baresip-core`), a desktop SIP client nobody here wrote, run headless:
 * no audio, its menu commands sent through its ctrl_tcp module, its SIP trace (`-s`) read
 * for what it received (its menu shows a MESSAGE only to a terminal UI), its `contacts`
 * command for the presence it shows.
 */
export class Baresip {
  readonly output: string[] = [];
  private readonly waiters: Array<() => void> = [];
  private exited = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    private readonly ctrlPort: number,
  ) {
    const collect = (chunk: Buffer) => {
      this.output.push(...chunk.toString('utf8').split('\n'));
      for (const w of this.waiters.splice(0)) w();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.once('exit', () => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async start(opts: BaresipOptions): Promise<Baresip> {
    const command = ensureDebianCommand('baresip', 'baresip-core');
    const dir = mkdtempSync(join(tmpdir(), 'udp-baresip-'));
    const ctrlPort = await freePort();
    const account = [
      `<sip:${opts.user}@${opts.domain}>`,
      `auth_pass=${opts.password}`,
      `outbound="${opts.proxy}"`,
      `regint=${opts.regint ?? 600}`,
      `pubint=${opts.regint ?? 600}`,
      'answermode=manual',
    ].join(';');
    writeFileSync(join(dir, 'accounts'), `${account}\n`);
    writeFileSync(
      join(dir, 'contacts'),
      (opts.watch ?? []).map((aor) => `"${aor}" <sip:${aor}>;presence=p2p\n`).join(''),
    );
    if (opts.messageTo) writeFileSync(join(dir, 'current_contact'), `sip:${opts.messageTo}\n`);
    writeFileSync(
      join(dir, 'config'),
      [
        'poll_method epoll',
        'sip_listen 127.0.0.1:0',
        'module_path /usr/lib/baresip/modules',
        'module_app account.so',
        'module_app contact.so',
        'module_app menu.so',
        'module_app presence.so',
        'module_app ctrl_tcp.so',
        `ctrl_tcp_listen 127.0.0.1:${ctrlPort}`,
        'audio_player none',
        'audio_source none',
        'audio_alert none',
        '',
      ].join('\n'),
    );
    const child = spawn(command, ['-f', dir, '-v', '-s'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new Baresip(child, dir, ctrlPort);
  }

  /** Resolves when a line of its output matches (lines seen already count). */
  async waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.output.find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (this.exited) throw new Error(`baresip exited; output:\n${this.output.join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`baresip never printed ${pattern}; output:\n${this.output.slice(-60).join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** A menu command through ctrl_tcp (`{"command":...,"params":...}` as a netstring); its response. */
  command(command: string, params = ''): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket: Socket = connect({ host: '127.0.0.1', port: this.ctrlPort }, () => {
        const json = JSON.stringify({ command, params, token: 't1' });
        socket.write(`${Buffer.byteLength(json)}:${json},`);
      });
      let got = '';
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no answer to ${command}; got ${got}`));
      }, 5000);
      socket.on('data', (d: Buffer) => {
        got += d.toString('utf8');
        const m = /"response":\s*true[^}]*"data":\s*"((?:[^"\\]|\\.)*)"/.exec(got);
        if (m) {
          clearTimeout(timer);
          socket.destroy();
          resolve(m[1]);
        }
      });
      socket.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** SIGKILL: no de-registration, no goodbye; the kernel closes its sockets. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      this.child.kill('SIGKILL');
      await new Promise<void>((r) => {
        if (this.exited) r();
        else this.child.once('exit', () => r());
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
