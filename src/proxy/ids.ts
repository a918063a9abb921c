import { randomBytes } from 'node:crypto';

// Unique per process start; a counter after it keeps generation to a string concat on the
// hot path instead of a random draw per branch or tag.
const prefix = randomBytes(6).toString('hex');
let counter = 0;

/** RFC 3261 8.1.1.7: branch IDs begin with the magic cookie and are unique in space and time. */
export function newBranch(): string {
  return `z9hG4bK${prefix}${(counter++).toString(36)}`;
}

/** RFC 3261 19.3: tags need 32 bits of randomness across restarts; the prefix gives 48. */
export function newTag(): string {
  return `${prefix}${(counter++).toString(36)}`;
}

export function newCallId(host: string): string {
  return `${prefix}${(counter++).toString(36)}@${host}`;
}

export function isOurBranch(branch: string | undefined): boolean {
  return branch !== undefined && branch.startsWith(`z9hG4bK${prefix}`);
}
