import { Flags } from '@oclif/core';
import { ParleyCommand } from '../../src/cli/command.js';
import { domainFlag, storeFlags } from '../../src/cli/flags.js';
import { runWithStore } from '../../src/cli/store-command.js';
import { listUsers, type UserList } from '../../src/users/admin.js';

export default class UsersList extends ParleyCommand {
  static override summary = 'List users.';
  static override description =
    'Lists users of every domain in address order, a page at a time (--limit); "password" says whether digest secrets are stored in the user\'s own domain. The --json output carries nextCursor: pass it to --after for the next page.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --home pool1 --disabled',
    '<%= config.bin %> <%= command.id %> --limit 500 --after bob@parley.local --json',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...storeFlags,
    // Kept for scripts written when listing took a realm: users of every domain are listed.
    domain: { ...domainFlag.domain, hidden: true },
    home: Flags.string({ summary: 'Only users living in this home.' }),
    enabled: Flags.boolean({ summary: 'Only enabled users.', exclusive: ['disabled'] }),
    disabled: Flags.boolean({ summary: 'Only disabled users.', exclusive: ['enabled'] }),
    limit: Flags.integer({ summary: 'Page size.', default: 100, min: 1, max: 10_000 }),
    after: Flags.string({ summary: 'Start after this address (the nextCursor of the previous page).' }),
  };

  async run(): Promise<UserList> {
    const { flags } = await this.parse(UsersList);
    const enabled = flags.enabled ? true : flags.disabled ? false : undefined;
    const list = await runWithStore(this, flags, (store) =>
      listUsers(store, {
        home: flags.home,
        enabled,
        limit: flags.limit,
        after: flags.after,
      }),
    );
    const width = Math.max(7, ...list.users.map((u) => u.aor.length));
    this.log(`${'ADDRESS'.padEnd(width)}  ENABLED  HOME           DISPLAY NAME`);
    for (const u of list.users) {
      this.log(
        `${u.aor.padEnd(width)}  ${(u.enabled ? 'yes' : 'no').padEnd(7)}  ${(u.home ?? '-').padEnd(13)}  ${u.displayName}`,
      );
    }
    this.log(
      `${list.users.length} of ${list.total} user(s)${list.nextCursor ? ` — next page: --after ${list.nextCursor}` : ''}`,
    );
    return list;
  }
}
