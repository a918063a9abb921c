/**
 * What a directory job did to the users it read: `directory replicate` (central forest into
 * the user store) and `directory sync` (each forest into the central one) count alike.
 */
export interface UserCounts {
  read: number;
  added: number;
  updated: number;
  disabled: number;
  deleted: number;
  unchanged: number;
}

export function noUserCounts(): UserCounts {
  return { read: 0, added: 0, updated: 0, disabled: 0, deleted: 0, unchanged: 0 };
}

/** 'read 10, added 2, updated 1, disabled 0, deleted 0': the start of each job's summary line. */
export function userCountsText(c: UserCounts): string {
  return `read ${c.read}, added ${c.added}, updated ${c.updated}, disabled ${c.disabled}, deleted ${c.deleted}`;
}
