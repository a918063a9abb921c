import type { Logger } from 'pino';
import type { GroupRepository } from '../store/groups.js';
import { GROUPS_CHANNEL } from '../store/groups.js';
import type { ChangeFeed } from '../store/sql.js';
import type { ArchiveWriter } from './writer.js';

/**
 * `archiving.groups`: loads the groups' members (replicated from the directory, migration
 * 010) into the writer before the server serves, and again whenever a replication changes
 * memberships (GROUPS_CHANNEL) or the change feed comes back after a loss. A failed reload
 * keeps the members known so far. Returns the stop function.
 */
export async function followArchivedGroups(o: {
  writer: Pick<ArchiveWriter, 'setGroupMembers'>;
  repo: Pick<GroupRepository, 'membersOf'>;
  feed: ChangeFeed;
  groups: readonly string[];
  log: Logger;
}): Promise<() => Promise<void>> {
  let loading: Promise<void> | undefined;
  let again = false;
  const load = async (): Promise<void> => {
    const members = await o.repo.membersOf(o.groups);
    o.writer.setGroupMembers(members);
    o.log.info({ groups: o.groups, members: members.length }, 'archiving the members of these groups');
  };
  // One load at a time; changes arriving meanwhile cause one more.
  const reload = () => {
    if (loading) {
      again = true;
      return;
    }
    loading = load()
      .catch((err: unknown) =>
        o.log.warn({ err }, 'cannot reload the archived groups: keeping the members known'),
      )
      .finally(() => {
        loading = undefined;
        if (again) {
          again = false;
          reload();
        }
      });
  };
  const unlisten = await o.feed.listen(GROUPS_CHANNEL, reload, { resumed: reload });
  await load();
  return async () => {
    await unlisten();
    await loading;
  };
}
