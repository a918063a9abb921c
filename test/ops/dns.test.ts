import { resolve } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import DnsRecords from '../../commands/dns/records.js';
import { DnsPlanError, planDnsRecords, renderZoneFile } from '../../src/ops/dns.js';

describe('planDnsRecords', () => {
  it('plans the SRV records of a deployment with default names and ports', () => {
    const plan = planDnsRecords({ domain: 'Parley.Test.' });
    expect(plan.domain).toBe('parley.test');
    expect(plan.srv.map((r) => [r.name, r.port, r.target])).toEqual([
      ['_sip._tls.parley.test', 443, 'sip.parley.test'],
      ['_sipinternaltls._tcp.parley.test', 5061, 'director.parley.test'],
      ['_sipfederationtls._tcp.parley.test', 5061, 'sip.parley.test'],
    ]);
    expect(plan.hosts.map((h) => [h.name, h.type, h.value])).toEqual([
      ['sip.parley.test', 'A', undefined],
      ['director.parley.test', 'A', undefined],
    ]);
  });

  it('honours FQDNs, ports, TCP and addresses', () => {
    const plan = planDnsRecords({
      domain: 'corp.test',
      edgeFqdn: 'edge.corp.test',
      directorFqdn: 'pool1.corp.test',
      edgeAccessPort: 5061,
      tcp: true,
      edgeAddress: '203.0.113.7',
      directorAddress: '2001:db8::5',
      ttl: 300,
    });
    expect(plan.srv.find((r) => r.name === '_sip._tls.corp.test')).toMatchObject({
      port: 5061,
      target: 'edge.corp.test',
    });
    expect(plan.srv.find((r) => r.name === '_sip._tcp.corp.test')).toMatchObject({
      port: 5060,
      target: 'pool1.corp.test',
      ttl: 300,
    });
    expect(plan.hosts).toEqual([
      expect.objectContaining({ name: 'edge.corp.test', type: 'A', value: '203.0.113.7' }),
      expect.objectContaining({ name: 'pool1.corp.test', type: 'AAAA', value: '2001:db8::5' }),
    ]);
  });

  it('renders zone-file lines', () => {
    const zone = renderZoneFile(planDnsRecords({ domain: 'parley.test', edgeAddress: '198.51.100.1' }));
    expect(zone).toContain('_sip._tls.parley.test.\t3600\tIN\tSRV\t0 0 443 sip.parley.test.\n');
    expect(zone).toContain(
      '_sipinternaltls._tcp.parley.test.\t3600\tIN\tSRV\t0 0 5061 director.parley.test.\n',
    );
    expect(zone).toContain('_sipfederationtls._tcp.parley.test.\t3600\tIN\tSRV\t0 0 5061 sip.parley.test.\n');
    expect(zone).toContain('sip.parley.test.\t3600\tIN\tA\t198.51.100.1\n');
    expect(zone).toMatch(/^; director\.parley\.test\.\t3600\tIN\tA\t<address>/m);
    expect(zone).not.toContain('_sip._tcp');
  });

  it('rejects bad names, ports and addresses naming the field', () => {
    expect(() => planDnsRecords({ domain: 'localhost' })).toThrow(DnsPlanError);
    expect(() => planDnsRecords({ domain: 'a.test', edgeFqdn: 'bad name' })).toThrow(/edgeFqdn/);
    expect(() => planDnsRecords({ domain: 'a.test', edgeAccessPort: 0 })).toThrow(/edgeAccessPort/);
    expect(() => planDnsRecords({ domain: 'a.test', edgeAddress: 'edge' })).toThrow(/edgeAddress/);
  });
});

describe('parley dns records (oclif)', () => {
  it('prints zone lines and returns the plan as JSON data', async () => {
    const chunks: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
      chunks.push(`${args.join(' ')}\n`);
    });
    try {
      const root = resolve(import.meta.dirname, '../..');
      const plan = await DnsRecords.run(
        ['--domain', 'cli.test', '--edge-fqdn', 'edge.cli.test', '--tcp'],
        root,
      );
      expect(plan.srv.map((r) => r.name)).toEqual([
        '_sip._tls.cli.test',
        '_sipinternaltls._tcp.cli.test',
        '_sipfederationtls._tcp.cli.test',
        '_sip._tcp.cli.test',
      ]);
      expect(chunks.join('')).toContain(
        '_sipfederationtls._tcp.cli.test.\t3600\tIN\tSRV\t0 0 5061 edge.cli.test.',
      );
      const err = await DnsRecords.run(['--domain', 'cli.test', '--edge-address', 'nope'], root).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'INVALID_FLAG', oclif: { exit: 2 } });
    } finally {
      spy.mockRestore();
    }
  });
});
