import { describe, expect, it } from 'vitest';
import { parseMessage } from '../../src/sip/parser.js';
import { createResponse, reasonPhrase } from '../../src/sip/response.js';
import { sip } from './torture.js';

const subscribe = parseMessage(
  sip([
    'SUBSCRIBE sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1',
    'Via:  SIP/2.0/TCP   192.0.2.1:5060 ;branch=z9hG4bKa1;rport=5060;received=192.0.2.1',
    'Max-Forwards: 69',
    'Record-Route: <sip:proxy.example.com;lr>',
    'From: <sip:alice@example.com>;tag=1928301774',
    'To: Bob <sip:bob@example.com>',
    'Call-ID: sub-1@pc33.example.com',
    'CSeq: 7 SUBSCRIBE',
    'Timestamp: 54',
    'Event: presence',
    'Contact: <sip:alice@192.0.2.1;transport=tcp>',
    'Content-Length: 0',
  ]),
);

describe('createResponse (RFC 3261 8.2.6)', () => {
  if (!subscribe.ok) throw new Error(subscribe.reason);
  const req = subscribe.message;

  it('copies Via byte for byte, From, To, Call-ID, CSeq; adds the To tag', () => {
    const res = createResponse(req, 202, undefined, { toTag: 'srv1' });
    const text = res.toString();
    expect(text.startsWith('SIP/2.0 202 Accepted\r\n')).toBe(true);
    expect(text).toContain(
      '\r\nVia: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1\r\nVia:  SIP/2.0/TCP   192.0.2.1:5060 ;branch=z9hG4bKa1;rport=5060;received=192.0.2.1\r\n',
    );
    expect(res.to).toMatchObject({ displayName: 'Bob', uri: 'sip:bob@example.com', tag: 'srv1' });
    expect(res.from.tag).toBe('1928301774');
    expect(res.callId).toBe('sub-1@pc33.example.com');
    expect(res.cseq).toEqual({ seq: 7, method: 'SUBSCRIBE' });
    expect(res.getAll('record-route')).toEqual(['<sip:proxy.example.com;lr>']);
    expect(res.get('content-length')).toBe('0');
    expect(res.get('event')).toBeUndefined();
    const reparsed = parseMessage(res.toBuffer());
    expect(reparsed.ok).toBe(true);
  });

  it('100 Trying echoes Timestamp and gets no To tag', () => {
    const res = createResponse(req, 100, undefined, { toTag: 'srv1' });
    expect(res.reason).toBe('Trying');
    expect(res.get('timestamp')).toBe('54');
    expect(res.to.tag).toBeUndefined();
    expect(res.get('record-route')).toBeUndefined();
  });

  it('keeps an existing To tag and adds extra headers and a body', () => {
    const withTag = req.clone();
    withTag.set('to', '<sip:bob@example.com>;tag=existing');
    const body = Buffer.from('<presence/>');
    const res = createResponse(withTag, 200, 'OK', {
      toTag: 'other',
      headers: [{ name: 'expires', value: '3600' }],
      body,
      contentType: 'application/pidf+xml',
    });
    expect(res.to.tag).toBe('existing');
    expect(res.expires).toBe(3600);
    expect(res.contentType).toBe('application/pidf+xml');
    expect(res.toString().endsWith('Content-Length: 11\r\n\r\n<presence/>')).toBe(true);
  });

  it('no Record-Route in error responses', () => {
    expect(createResponse(req, 489).get('record-route')).toBeUndefined();
    expect(createResponse(req, 489).reason).toBe('Bad Event');
  });
});

describe('reasonPhrase', () => {
  it('knows the standard phrases and falls back by class', () => {
    expect(reasonPhrase(200)).toBe('OK');
    expect(reasonPhrase(423)).toBe('Interval Too Brief');
    expect(reasonPhrase(481)).toBe('Call/Transaction Does Not Exist');
    expect(reasonPhrase(499)).toBe('Client Error');
    expect(reasonPhrase(699)).toBe('Global Failure');
  });
});
