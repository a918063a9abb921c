-- Contacts lose their foreign key to users: the store keeps that integrity itself.
--
-- Why: the key is checked for every contact row written, by a trigger that looks the user
-- up and locks it (KEY SHARE): five million checks for an import of 100,000 users x 50
-- contacts. COPY of those rows into PostgreSQL, 250 users per transaction (3 December,
-- load 3.9): 37.8 s wall and 29.5 s of the server's CPU with the key, 16.4 s and 8.8 s
-- without it. PGlite already skipped it for the import's COPY (session_replication_role).
--
-- What keeps the rows owned instead:
--  * writes: contacts are written only by the contact-list repository
--    (src/store/contact-lists.ts, ContactListRepository.write) and the bulk seeding of tests
--    and benchmarks. A write first inserts or locks (FOR UPDATE) the owner's
--    contact_list_versions row, which keeps its own foreign key to users: the owner exists
--    when the lock is taken, and a deletion of the owner waits for the write to commit
--    (its cascade must delete that locked row) and then removes what the write added;
--  * deletes: the trigger below removes the contacts of every deleted user in the same
--    statement, whichever code deletes users (one user, a directory sync's batch, an
--    administrator's SQL), as ON DELETE CASCADE did; one set-based DELETE per statement.
-- Groups, access rules and versions keep their keys (a few rows per user, no measurable
-- cost). TRUNCATE of users no longer reaches contacts by itself: name both (db restore does).
ALTER TABLE contacts DROP CONSTRAINT IF EXISTS contacts_user_id_fkey;

CREATE FUNCTION contacts_of_deleted_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM contacts WHERE user_id IN (SELECT id FROM deleted_users);
  RETURN NULL;
END
$$;

CREATE TRIGGER users_delete_contacts
  AFTER DELETE ON users
  REFERENCING OLD TABLE AS deleted_users
  FOR EACH STATEMENT EXECUTE FUNCTION contacts_of_deleted_users();
