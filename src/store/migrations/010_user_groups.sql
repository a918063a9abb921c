-- Group membership of users, replicated from the central forest's group entries
-- (src/directory/groups.ts), so servers can scope features to groups without querying LDAP:
-- archiving.groups archives the messages of a group's members (docs/archiving.md).
-- Group names are kept lower-case (LDAP compares cn without case).
CREATE TABLE user_groups (
  group_name  text NOT NULL,
  user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  -- where the membership came from: 'ldap:central'
  source      text NOT NULL DEFAULT 'ldap:central',
  PRIMARY KEY (group_name, user_id)
);
CREATE INDEX user_groups_user_idx ON user_groups(user_id);
