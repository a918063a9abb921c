import { isTokenChar } from './lexer.js';

export interface CSeq {
  seq: number;
  method: string;
}

/** RFC 3261 8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned integer and less than 2**31. */
export const MAX_CSEQ = 2 ** 31 - 1;

/** CSeq = 1*DIGIT LWS Method (RFC 3261 20.16); undefined when malformed or out of range. */
export function parseCSeq(text: string): CSeq | undefined {
  const len = text.length;
  let i = 0;
  while (i < len && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  const digitsStart = i;
  while (i < len && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
  if (i === digitsStart) return undefined;
  // Leading zeros are legal ("0009"); count significant digits to refuse overlarge values early.
  let significant = digitsStart;
  while (significant < i - 1 && text.charCodeAt(significant) === 48) significant++;
  if (i - significant > 10) return undefined;
  const seq = Number(text.slice(digitsStart, i));
  if (seq > MAX_CSEQ) return undefined;
  const wsStart = i;
  while (i < len && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  if (i === wsStart) return undefined;
  const methodStart = i;
  while (i < len && isTokenChar(text.charCodeAt(i))) i++;
  if (i === methodStart) return undefined;
  const method = text.slice(methodStart, i);
  while (i < len && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  if (i !== len) return undefined;
  return { seq, method };
}

export function formatCSeq(cseq: CSeq): string {
  return `${cseq.seq} ${cseq.method}`;
}
