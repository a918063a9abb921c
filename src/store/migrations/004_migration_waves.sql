-- Wave migrations (parley migrate): the journal lives in the target home's store, so a
-- copy to the target and its journal entry commit together (docs/migration.md).

-- One row per wave that was ever run (or rolled back) against this store.
CREATE TABLE migration_waves (
  name         text PRIMARY KEY,
  source_home  text NOT NULL,
  target_home  text NOT NULL,
  -- running: moving to the target; moved: every user moved, verify pending or failed;
  -- done: verified; rolling-back / rolled-back: moving back to the source.
  state        text NOT NULL CHECK (state IN ('running', 'moved', 'done', 'rolling-back', 'rolled-back')),
  users        integer NOT NULL DEFAULT 0,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  verified_at  timestamptz,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  -- the last run's or verify's summary (counts, mismatches), for `parley migrate status`
  summary      jsonb
);

-- One row per user of a wave: how far its move (or its move back) got. A step's effect on
-- the target commits in the same transaction as its state; a step on the source is redone
-- (idempotently) when the journal does not show it done.
CREATE TABLE migration_users (
  wave         text NOT NULL REFERENCES migration_waves(name) ON DELETE CASCADE,
  aor          text NOT NULL,
  -- pending -> copied -> placed -> moved (forward); back-copied -> back-placed -> returned (rollback)
  state        text NOT NULL CHECK (state IN ('pending', 'copied', 'placed', 'moved', 'back-copied', 'back-placed', 'returned', 'failed')),
  -- checksum of what was copied (account, credentials, contact list) as read from the copy's source
  checksum     text,
  error        text,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (wave, aor)
);
CREATE INDEX migration_users_aor_idx ON migration_users(aor);

-- One migration run (or rollback, or verify) at a time per target store: a row with a
-- heartbeat, as directory_sync_lock (a pool's connections rule out session advisory locks).
CREATE TABLE migration_lock (
  name          text PRIMARY KEY,
  wave          text,
  holder        text NOT NULL,
  acquired_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
