import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { componentLogger, createLogger } from '../../src/ops/log.js';

function capture(): { stream: Writable; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('createLogger', () => {
  it('redacts credentials at any of the first three levels', () => {
    const out = capture();
    const log = createLogger(
      { log: { level: 'info' }, serverId: 's1', role: 'edge' },
      { destination: out.stream },
    );
    log.info(
      {
        authorization: 'Digest response="abc"',
        password: 'hunter2',
        user: { ha1: 'deadbeef', name: 'alice' },
        req: {
          headers: {
            'proxy-authorization': 'Digest x',
            'Proxy-Authorization': 'Digest y',
            via: 'SIP/2.0/TCP h',
          },
        },
        row: { ha1_md5: 'm', ha1_sha256: 's' },
      },
      'hello',
    );
    const text = JSON.stringify(out.lines());
    for (const secret of ['abc', 'hunter2', 'deadbeef', 'Digest x', 'Digest y', '"m"', '"s"']) {
      expect(text).not.toContain(secret);
    }
    const [line] = out.lines();
    expect(line.server).toBe('s1');
    expect(line.role).toBe('edge');
    expect(line.level).toBe('info');
    expect((line.user as Record<string, unknown>).name).toBe('alice');
    expect((line.user as Record<string, unknown>).ha1).toBe('[redacted]');
  });

  it('tags component child loggers and honours the level', () => {
    const out = capture();
    const log = createLogger({ log: { level: 'warn' } }, { destination: out.stream });
    const reg = componentLogger(log, 'registrar', { transport: 'tcp' });
    reg.info('dropped');
    reg.warn('kept');
    const lines = out.lines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ component: 'registrar', transport: 'tcp', msg: 'kept', level: 'warn' });
  });
});
