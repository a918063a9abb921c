import { randomBytes } from 'node:crypto';
import { BRANCH_MAGIC_COOKIE } from './via.js';

// Random per process start; a counter after it keeps making an identifier a string concat on
// the hot path instead of a random draw per branch or tag.
const prefix = randomBytes(6).toString('hex');
const branchPrefix = BRANCH_MAGIC_COOKIE + prefix;
let counter = 0;

/**
 * RFC 3261 8.1.1.7: a branch begins with the magic cookie and is unique in space and time.
 * Branches of this process share a prefix, so isOwnBranch recognises them in responses and
 * in the Vias of a request that comes back (loop detection).
 */
export function createBranch(): string {
  return branchPrefix + (counter++).toString(36);
}

/** RFC 3261 19.3: a tag needs 32 bits of randomness across restarts; the prefix gives 48. A token. */
export function createTag(): string {
  return prefix + (counter++).toString(36);
}

/** True for a branch made by createBranch in this process. */
export function isOwnBranch(branch: string | undefined): boolean {
  return branch !== undefined && branch.length > branchPrefix.length && branch.startsWith(branchPrefix);
}
