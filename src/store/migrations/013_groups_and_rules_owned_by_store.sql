-- Contact groups and presence access rules lose their foreign keys to users, as contacts did
-- in 011: the store keeps that integrity itself, on the same terms.
--
-- Why: the key is checked for every row written, by a trigger that looks the user up and
-- locks it (KEY SHARE). On the embedded store an import runs on the command's one thread,
-- and the groups' COPY of an import of 100,000 users x 50 contacts took 1.8 s of it
-- (3 December, statements timed one by one), most of it those checks.
--
-- What keeps the rows owned instead (see 011):
--  * writes: groups and rules are written only by the contact-list repository
--    (src/store/contact-lists.ts) and the bulk seeding of tests and benchmarks, after the
--    owner's contact_list_versions row is inserted or locked (FOR UPDATE): that row keeps
--    its foreign key, so the owner exists when the lock is taken and a deletion of the owner
--    waits for the write and then removes what it added;
--  * deletes: the trigger of 011 now also removes the groups and rules of every deleted user
--    in the same statement, whichever code deletes users, as ON DELETE CASCADE did.
ALTER TABLE contact_groups DROP CONSTRAINT IF EXISTS contact_groups_user_id_fkey;
ALTER TABLE access_rules DROP CONSTRAINT IF EXISTS access_rules_user_id_fkey;

CREATE OR REPLACE FUNCTION contacts_of_deleted_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM contacts WHERE user_id IN (SELECT id FROM deleted_users);
  DELETE FROM contact_groups WHERE user_id IN (SELECT id FROM deleted_users);
  DELETE FROM access_rules WHERE user_id IN (SELECT id FROM deleted_users);
  RETURN NULL;
END
$$;
