import { describe, expect, it } from 'vitest';
import {
  ContentSyncDecodeError,
  decodeSyncDoneValue,
  decodeSyncInfoValue,
  decodeSyncStateValue,
  encodeSyncRequestValue,
} from '../../src/directory/content-sync-codec.js';

// Values as OpenLDAP 2.5's slapd sent them (ldapsearch -E sync=ro prints them in base64).
const UUID = 'eac82b82-82cb-1041-9acb-1160f7a11d44';
const COOKIE = 'rid=000,csn=20261202184258.604368Z#000000#000#000000';

describe('RFC 4533 values', () => {
  it('encodes a refreshOnly request with and without a cookie', () => {
    expect(encodeSyncRequestValue({ mode: 'refreshOnly' }).toString('hex')).toBe('30030a0101');
    const withCookie = encodeSyncRequestValue({ mode: 'refreshOnly', cookie: Buffer.from('abc') });
    expect(withCookie.toString('hex')).toBe('30080a01010403616263');
    expect(encodeSyncRequestValue({ mode: 'refreshAndPersist', reloadHint: true }).toString('hex')).toBe(
      '30060a01030101ff',
    );
  });

  it('uses the long length form for long cookies', () => {
    const cookie = Buffer.alloc(300, 0x41);
    const v = encodeSyncRequestValue({ mode: 'refreshOnly', cookie });
    expect(v.subarray(0, 2).toString('hex')).toBe('3082');
    expect(v.readUInt16BE(2)).toBe(3 + 4 + 300);
    expect(v.subarray(7, 11).toString('hex')).toBe('0482012c');
  });

  it('decodes a Sync State control from slapd', () => {
    const v = decodeSyncStateValue(Buffer.from('MBUKAQEEEOrIK4KCyxBBmssRYPehHUQ=', 'base64'));
    expect(v).toEqual({ state: 'add', entryUuid: UUID, cookie: undefined });
  });

  it('decodes a Sync Done control from slapd, with the refreshDeletes flag', () => {
    const withDeletes = Buffer.from(
      'MDkENHJpZD0wMDAsY3NuPTIwMjYxMjAyMTg0MjU4LjYwNDM2OFojMDAwMDAwIzAwMCMwMDAwMDABAf8=',
      'base64',
    );
    expect(decodeSyncDoneValue(withDeletes)).toEqual({ cookie: Buffer.from(COOKIE), refreshDeletes: true });
    const presentPhase = Buffer.concat([Buffer.from([0x30, 0x36, 0x04, 0x34]), Buffer.from(COOKIE)]);
    expect(decodeSyncDoneValue(presentPhase)).toEqual({ cookie: Buffer.from(COOKIE), refreshDeletes: false });
    expect(decodeSyncDoneValue(Buffer.alloc(0))).toEqual({ refreshDeletes: false });
  });

  it('decodes the four Sync Info choices', () => {
    const uuid = Buffer.from(UUID.replace(/-/g, ''), 'hex');
    const idSet = Buffer.from([0xa3, 0x17, 0x01, 0x01, 0xff, 0x31, 0x12, 0x04, 0x10, ...uuid]);
    expect(decodeSyncInfoValue(idSet)).toEqual({
      kind: 'syncIdSet',
      cookie: undefined,
      refreshDeletes: true,
      syncUuids: [UUID],
    });
    expect(decodeSyncInfoValue(Buffer.from([0x80, 0x02, 0x61, 0x62]))).toEqual({
      kind: 'newCookie',
      cookie: Buffer.from('ab'),
    });
    expect(decodeSyncInfoValue(Buffer.from([0xa2, 0x00]))).toEqual({
      kind: 'refreshPresent',
      cookie: undefined,
      refreshDone: true,
    });
    expect(decodeSyncInfoValue(Buffer.from([0xa1, 0x03, 0x01, 0x01, 0x00]))).toEqual({
      kind: 'refreshDelete',
      cookie: undefined,
      refreshDone: false,
    });
  });

  it('refuses truncated or malformed values with a typed error', () => {
    expect(() => decodeSyncStateValue(Buffer.from('MBUKAQEEEOrIK4KCyxBBmssRYPeh', 'base64'))).toThrow(
      ContentSyncDecodeError,
    );
    expect(() => decodeSyncStateValue(Buffer.from([0x30, 0x05, 0x0a, 0x01, 0x01, 0x04, 0x00]))).toThrow(/16/);
    expect(() => decodeSyncInfoValue(Buffer.from([0xa7, 0x00]))).toThrow(ContentSyncDecodeError);
  });
});
