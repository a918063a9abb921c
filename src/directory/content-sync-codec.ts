/**
 * The BER values of LDAP Content Synchronization (RFC 4533): the Sync Request control the
 * client sends, and the Sync State and Sync Done controls and Sync Info message the server
 * answers with. Pure: buffers in, values out, no I/O; a malformed value throws
 * ContentSyncDecodeError.
 */

export const SYNC_REQUEST_OID = '1.3.6.1.4.1.4203.1.9.1.1';
export const SYNC_STATE_OID = '1.3.6.1.4.1.4203.1.9.1.2';
export const SYNC_DONE_OID = '1.3.6.1.4.1.4203.1.9.1.3';
export const SYNC_INFO_OID = '1.3.6.1.4.1.4203.1.9.1.4';

/** RFC 4533 section 2.5: the result code of e-syncRefreshRequired. */
export const SYNC_REFRESH_REQUIRED = 4096;

export type SyncMode = 'refreshOnly' | 'refreshAndPersist';
export type SyncState = 'present' | 'add' | 'modify' | 'delete';

export interface SyncStateValue {
  state: SyncState;
  /** entryUUID as text (RFC 4122 form, lower case). */
  entryUuid: string;
  cookie?: Buffer;
}

export interface SyncDoneValue {
  cookie?: Buffer;
  refreshDeletes: boolean;
}

/** RFC 4533 section 2.5: syncInfoValue, a CHOICE of four. */
export type SyncInfoValue =
  | { kind: 'newCookie'; cookie: Buffer }
  | { kind: 'refreshDelete' | 'refreshPresent'; cookie?: Buffer; refreshDone: boolean }
  | { kind: 'syncIdSet'; cookie?: Buffer; refreshDeletes: boolean; syncUuids: string[] };

export class ContentSyncDecodeError extends Error {
  override name = 'ContentSyncDecodeError';
}

const TAG = {
  boolean: 0x01,
  octetString: 0x04,
  enumerated: 0x0a,
  sequence: 0x30,
  set: 0x31,
  newCookie: 0x80,
  refreshDelete: 0xa1,
  refreshPresent: 0xa2,
  syncIdSet: 0xa3,
} as const;

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

/**
 * syncRequestValue ::= SEQUENCE { mode ENUMERATED { refreshOnly (1), refreshAndPersist (3) },
 * cookie syncCookie OPTIONAL, reloadHint BOOLEAN DEFAULT FALSE } (RFC 4533 section 2.2).
 * A DEFAULT value is left out, as DER requires.
 */
export function encodeSyncRequestValue(opts: {
  mode: SyncMode;
  cookie?: Buffer;
  reloadHint?: boolean;
}): Buffer {
  const parts = [tlv(TAG.enumerated, Buffer.from([opts.mode === 'refreshOnly' ? 1 : 3]))];
  if (opts.cookie !== undefined) parts.push(tlv(TAG.octetString, opts.cookie));
  if (opts.reloadHint) parts.push(tlv(TAG.boolean, Buffer.from([0xff])));
  return tlv(TAG.sequence, Buffer.concat(parts));
}

interface Tlv {
  tag: number;
  value: Buffer;
}

/** Reads the TLVs of one constructed value in order. */
class TlvReader {
  private offset = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  get done(): boolean {
    return this.offset >= this.buf.length;
  }

  peekTag(): number | undefined {
    return this.done ? undefined : this.buf[this.offset];
  }

  read(expected?: number): Tlv {
    if (this.done) throw new ContentSyncDecodeError(`${this.what}: value ends early`);
    const tag = this.buf[this.offset];
    if (expected !== undefined && tag !== expected) {
      throw new ContentSyncDecodeError(
        `${this.what}: expected tag 0x${expected.toString(16)}, found 0x${tag.toString(16)}`,
      );
    }
    let pos = this.offset + 1;
    if (pos >= this.buf.length) throw new ContentSyncDecodeError(`${this.what}: length missing`);
    let length = this.buf[pos++];
    if (length & 0x80) {
      const count = length & 0x7f;
      if (count === 0 || count > 4) throw new ContentSyncDecodeError(`${this.what}: unsupported length form`);
      length = 0;
      for (let i = 0; i < count; i++) {
        if (pos >= this.buf.length) throw new ContentSyncDecodeError(`${this.what}: length truncated`);
        length = length * 256 + this.buf[pos++];
      }
    }
    if (pos + length > this.buf.length) throw new ContentSyncDecodeError(`${this.what}: value truncated`);
    this.offset = pos + length;
    return { tag, value: this.buf.subarray(pos, pos + length) };
  }

  optional(tag: number): Tlv | undefined {
    return this.peekTag() === tag ? this.read(tag) : undefined;
  }
}

function decodeBoolean(t: Tlv | undefined, fallback: boolean): boolean {
  if (!t) return fallback;
  return t.value.length > 0 && t.value[0] !== 0;
}

/** syncUUID ::= OCTET STRING (SIZE(16)), shown as entryUUID is (RFC 4530). */
export function uuidText(raw: Buffer): string {
  if (raw.length !== 16) throw new ContentSyncDecodeError(`syncUUID has ${raw.length} bytes, not 16`);
  const h = raw.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const STATES: SyncState[] = ['present', 'add', 'modify', 'delete'];

/** syncStateValue ::= SEQUENCE { state ENUMERATED, entryUUID syncUUID, cookie syncCookie OPTIONAL } */
export function decodeSyncStateValue(buf: Buffer): SyncStateValue {
  const seq = new TlvReader(new TlvReader(buf, 'Sync State').read(TAG.sequence).value, 'Sync State');
  const stateCode = seq.read(TAG.enumerated).value.readUIntBE(0, 1);
  const state = STATES[stateCode];
  if (!state) throw new ContentSyncDecodeError(`Sync State: unknown state ${stateCode}`);
  const entryUuid = uuidText(seq.read(TAG.octetString).value);
  const cookie = seq.optional(TAG.octetString)?.value;
  return { state, entryUuid, cookie: cookie ? Buffer.from(cookie) : undefined };
}

/** syncDoneValue ::= SEQUENCE { cookie syncCookie OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE } */
export function decodeSyncDoneValue(buf: Buffer): SyncDoneValue {
  if (buf.length === 0) return { refreshDeletes: false };
  const seq = new TlvReader(new TlvReader(buf, 'Sync Done').read(TAG.sequence).value, 'Sync Done');
  const cookie = seq.optional(TAG.octetString)?.value;
  return {
    cookie: cookie ? Buffer.from(cookie) : undefined,
    refreshDeletes: decodeBoolean(seq.optional(TAG.boolean), false),
  };
}

export function decodeSyncInfoValue(buf: Buffer): SyncInfoValue {
  const choice = new TlvReader(buf, 'Sync Info').read();
  switch (choice.tag) {
    case TAG.newCookie:
      return { kind: 'newCookie', cookie: Buffer.from(choice.value) };
    case TAG.refreshDelete:
    case TAG.refreshPresent: {
      const seq = new TlvReader(choice.value, 'Sync Info');
      const cookie = seq.optional(TAG.octetString)?.value;
      return {
        kind: choice.tag === TAG.refreshDelete ? 'refreshDelete' : 'refreshPresent',
        cookie: cookie ? Buffer.from(cookie) : undefined,
        refreshDone: decodeBoolean(seq.optional(TAG.boolean), true),
      };
    }
    case TAG.syncIdSet: {
      const seq = new TlvReader(choice.value, 'Sync Info syncIdSet');
      const cookie = seq.optional(TAG.octetString)?.value;
      const refreshDeletes = decodeBoolean(seq.optional(TAG.boolean), false);
      const set = new TlvReader(seq.read(TAG.set).value, 'Sync Info syncUUIDs');
      const syncUuids: string[] = [];
      while (!set.done) syncUuids.push(uuidText(set.read(TAG.octetString).value));
      return {
        kind: 'syncIdSet',
        cookie: cookie ? Buffer.from(cookie) : undefined,
        refreshDeletes,
        syncUuids,
      };
    }
    default:
      throw new ContentSyncDecodeError(`Sync Info: unknown choice 0x${choice.tag.toString(16)}`);
  }
}
