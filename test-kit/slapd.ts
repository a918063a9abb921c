import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { ensureDebianCommand } from './debian.js';

/**
 * Throwaway OpenLDAP servers for directory tests: one slapd per forest, its cn=config
 * (slapd.d) built with `slapadd -n0`, an mdb database in a memory-backed folder, listening
 * on 127.0.0.1 on a free port. Each instance has a root DN (admin), a cn=config admin (so
 * `parley directory prepare` can load the schema over LDAP) and a non-root reader account
 * whose searches are size-limited, so only paged searches (RFC 2696) can read a whole forest.
 */
export interface SlapdInstance {
  url: string;
  baseDn: string;
  adminDn: string;
  adminPassword: string;
  configDn: string;
  configPassword: string;
  readerDn: string;
  readerPassword: string;
  dir: string;
  /** A client bound as the root DN; the caller unbinds it. */
  adminClient(): Promise<Client>;
  /** CPU seconds slapd has used so far (user + system, from /proc; 0 where there is none). */
  cpuSeconds(): number;
  /**
   * Adds the entries of an LDIF file with slapadd while slapd is stopped (a benchmark's
   * hundreds of thousands of entries in seconds, not LDAP adds), then starts it again on the
   * same URL. The schema and indexes added over LDAP since the start apply. cpuSeconds
   * counts from the restart.
   */
  loadOffline(ldifFile: string): Promise<void>;
  stop(): Promise<void>;
}

export interface StartSlapdOptions {
  /** e.g. dc=north,dc=example */
  baseDn: string;
  /** Entries loaded with slapadd before start (below the base entry). */
  ldif?: string;
  /**
   * Non-root searches return at most this many entries unless paged (default 500).
   * 'unlimited' is how a replication consumer's identity is set up: content-sync answers
   * are not paged.
   */
  sizeLimit?: number | 'unlimited';
  /**
   * The syncprov overlay (RFC 4533 content synchronization), on by default. `sessionlog` is
   * how many write operations syncprov remembers (olcSpSessionlog): a cookie older than the
   * log gets a present phase instead of the deletes. `false` leaves the overlay out.
   */
  syncprov?: { sessionlog?: number } | false;
  /** olcDbMaxSize in bytes (default 2 GiB; the folder is memory-backed, so only what is used counts). */
  maxSize?: number;
}

const SCHEMAS = ['core', 'cosine', 'nis', 'inetorgperson'];

export function ensureSlapd(): { slapd: string; slapadd: string } {
  const slapd = ensureDebianCommand('slapd', 'slapd', ['/usr/sbin']);
  ensureDebianCommand('ldapsearch', 'ldap-utils', ['/usr/bin']);
  const slapadd = join(slapd.replace(/\/slapd$/, ''), 'slapadd');
  return { slapd, slapadd: existsSync(slapadd) ? slapadd : '/usr/sbin/slapadd' };
}

function memoryTempDir(prefix: string): string {
  const root = existsSync('/dev/shm') ? '/dev/shm' : undefined;
  return mkdtempSync(join(root ?? (process.env.TMPDIR || '/tmp'), prefix));
}

function syncprovLdif(syncprov: { sessionlog?: number }): string {
  return `
dn: olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: {0}syncprov
olcSpCheckpoint: 100 1
olcSpSessionlog: ${syncprov.sessionlog ?? 100000}
`;
}

function configLdif(
  dir: string,
  baseDn: string,
  adminDn: string,
  sizeLimit: number | 'unlimited',
  syncprov: { sessionlog?: number } | false,
  maxSize: number,
): string {
  const schemas = SCHEMAS.map((s) => `include: file:///etc/ldap/schema/${s}.ldif`).join('\n');
  return `dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: ${dir}/slapd.pid
olcLogLevel: none

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb${syncprov ? '\nolcModuleLoad: syncprov' : ''}

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

${schemas}

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcRootDN: cn=admin,cn=config
olcRootPW: config-secret

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: ${baseDn}
olcDbDirectory: ${dir}/data
olcDbMaxSize: ${maxSize}
olcDbNoSync: TRUE
olcRootDN: ${adminDn}
olcRootPW: admin-secret
olcDbIndex: objectClass eq
olcDbIndex: entryUUID eq
olcDbIndex: uid eq
olcDbIndex: entryCSN eq
olcLimits: * size.soft=${sizeLimit} size.hard=${sizeLimit} size.pr=1000 size.prtotal=unlimited
olcAccess: to attrs=userPassword by self write by anonymous auth by * none
olcAccess: to * by users read by * none
${syncprov ? syncprovLdif(syncprov) : ''}`;
}

function baseLdif(baseDn: string, readerDn: string): string {
  const dc = /^dc=([^,]+)/i.exec(baseDn)?.[1] ?? 'example';
  return `dn: ${baseDn}
objectClass: dcObject
objectClass: organization
dc: ${dc}
o: ${dc}

dn: ${readerDn}
objectClass: inetOrgPerson
cn: parley-reader
sn: reader
uid: parley-reader
userPassword: reader-secret
`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) return false;
    const ok = await new Promise<boolean>((resolve) => {
      const sock = createConnection({ port, host: '127.0.0.1' });
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

export async function startSlapd(opts: StartSlapdOptions): Promise<SlapdInstance> {
  const { slapd, slapadd } = ensureSlapd();
  const dir = memoryTempDir('parley-slapd-');
  const confDir = join(dir, 'slapd.d');
  mkdirSync(confDir);
  mkdirSync(join(dir, 'data'));
  const adminDn = `cn=admin,${opts.baseDn}`;
  const readerDn = `cn=parley-reader,${opts.baseDn}`;
  writeFileSync(
    join(dir, 'config.ldif'),
    configLdif(
      dir,
      opts.baseDn,
      adminDn,
      opts.sizeLimit ?? 500,
      opts.syncprov ?? {},
      opts.maxSize ?? 2 ** 31,
    ),
  );
  execFileSync(slapadd, ['-n0', '-F', confDir, '-l', join(dir, 'config.ldif')], { stdio: 'pipe' });
  writeFileSync(join(dir, 'data.ldif'), `${baseLdif(opts.baseDn, readerDn)}\n${opts.ldif ?? ''}`);
  // -w writes the suffix's contextCSN, so a content-sync cookie exists from the start.
  execFileSync(slapadd, ['-q', '-w', '-n1', '-F', confDir, '-l', join(dir, 'data.ldif')], {
    stdio: 'pipe',
    maxBuffer: 64 * 1024 * 1024,
  });

  let child: ChildProcess | undefined;
  let url = '';
  const launch = async (ports: () => Promise<number>) => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await ports();
      // -d keeps slapd in the foreground so the test owns the process and can kill it.
      const proc = spawn(slapd, ['-F', confDir, '-h', `ldap://127.0.0.1:${port}/`, '-d', '0'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      proc.stderr?.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      if (await waitForPort(port, proc, 10_000)) {
        child = proc;
        url = `ldap://127.0.0.1:${port}`;
        return;
      }
      proc.kill('SIGKILL');
      if (attempt === 4) throw new Error(`slapd did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const halt = async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    }
  };
  await launch(freePort);

  const instance: SlapdInstance = {
    get url() {
      return url;
    },
    baseDn: opts.baseDn,
    adminDn,
    adminPassword: 'admin-secret',
    configDn: 'cn=admin,cn=config',
    configPassword: 'config-secret',
    readerDn,
    readerPassword: 'reader-secret',
    dir,
    async adminClient() {
      const client = new Client({ url });
      await client.bind(adminDn, 'admin-secret');
      return client;
    },
    cpuSeconds() {
      try {
        // proc(5): utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
        const stat = readFileSync(`/proc/${child?.pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(fields[11]) + Number(fields[12])) / 100;
      } catch {
        return 0;
      }
    },
    async loadOffline(ldifFile: string) {
      const port = Number(new URL(url).port);
      await halt();
      execFileSync(slapadd, ['-q', '-w', '-n1', '-F', confDir, '-l', ldifFile], {
        stdio: 'pipe',
        maxBuffer: 64 * 1024 * 1024,
      });
      await launch(async () => port);
    },
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return instance;
}
