import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { normalizeAor } from '../store/users.js';
import { EXPORT_MANIFEST_FORMAT, type ExportManifestFile, fileNameForAor } from './export.js';
import { type ImportResult, type ImportStore, importContactLists } from './import.js';

/**
 * Restores one user's list from a nightly export, leaving every other user untouched:
 * the export's document for that user is checked against the manifest's checksum when the
 * manifest is there, then imported in replace mode for that user only.
 */
export interface RestoreOptions {
  /** sip:alice@example.com or alice@example.com. */
  user: string;
  /** An export: a per-user folder, a folder holding one all-users file, or the .xml file itself. */
  from: string;
  dryRun?: boolean;
}

export interface RestoreResult extends ImportResult {
  user: string;
  /** The document the list was read from. */
  source: string;
  /** True when the manifest's sha256 for the source was checked and matched. */
  checksumVerified: boolean;
}

export class RestoreSourceError extends Error {
  constructor(
    readonly code: 'BACKUP_NOT_FOUND' | 'USER_NOT_IN_BACKUP' | 'CHECKSUM_MISMATCH',
    message: string,
  ) {
    super(message);
  }
}

/** Manifests above this size (per-user exports of very many users) are not read whole. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export async function restoreContactList(
  store: ImportStore,
  options: RestoreOptions,
): Promise<RestoreResult> {
  const aor = normalizeAor(options.user);
  const { source, manifest } = await locateSource(options.from, aor);
  let checksumVerified = false;
  if (manifest) {
    const name = source.slice(source.lastIndexOf('/') + 1);
    const entry = manifest.find((f) => f.path === name);
    if (entry) {
      const actual = await sha256File(source);
      if (actual !== entry.sha256) {
        throw new RestoreSourceError(
          'CHECKSUM_MISMATCH',
          `${source} does not match the sha256 in its manifest: the export is damaged`,
        );
      }
      checksumVerified = true;
    }
  }
  const result = await importContactLists(store, {
    file: source,
    user: aor,
    mode: 'replace',
    dryRun: options.dryRun,
  });
  if (
    result.status === 'invalid' &&
    result.errors.some((e) => e.reason.startsWith('the file holds no list'))
  ) {
    throw new RestoreSourceError('USER_NOT_IN_BACKUP', `the export ${options.from} holds no list for ${aor}`);
  }
  return { ...result, user: `sip:${aor}`, source, checksumVerified };
}

async function locateSource(
  from: string,
  aor: string,
): Promise<{ source: string; manifest?: ExportManifestFile[] }> {
  const info = await stat(from).catch(() => undefined);
  if (!info) throw new RestoreSourceError('BACKUP_NOT_FOUND', `no export at ${from}`);
  if (info.isFile()) return { source: from, manifest: await readManifest(`${from}.manifest.json`) };
  const manifest = await readManifest(join(from, 'manifest.json'));
  const perUser = join(from, fileNameForAor(aor));
  if (await stat(perUser).catch(() => undefined)) return { source: perUser, manifest };
  const single = manifest?.length === 1 && manifest[0].users > 1 ? join(from, manifest[0].path) : undefined;
  if (single) return { source: single, manifest };
  throw new RestoreSourceError('USER_NOT_IN_BACKUP', `the export ${from} holds no list for ${aor}`);
}

async function readManifest(path: string): Promise<ExportManifestFile[] | undefined> {
  const info = await stat(path).catch(() => undefined);
  if (!info || info.size > MAX_MANIFEST_BYTES) return undefined;
  const parsed = JSON.parse(await readFile(path, 'utf8')) as {
    format?: string;
    files?: ExportManifestFile[];
  };
  return parsed.format === EXPORT_MANIFEST_FORMAT ? parsed.files : undefined;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
