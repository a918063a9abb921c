-- Directory sync (parley directory sync / replicate): journal, watermarks, joins, lock.

-- One row per sync run. A run killed half way stays 'running' until the next run finds
-- its lock gone and marks it 'interrupted'; the next run then redoes its work, which is
-- safe because every LDAP write is idempotent and joins record what was done.
CREATE TABLE directory_sync_runs (
  id           bigserial PRIMARY KEY,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'partial', 'refused', 'failed', 'interrupted')),
  mode         text NOT NULL CHECK (mode IN ('incremental', 'full')),
  dry_run      boolean NOT NULL DEFAULT false,
  holder       text NOT NULL,
  resumed_from bigint REFERENCES directory_sync_runs(id),
  summary      jsonb
);

-- Planned operations of a run, written before they are applied and marked after.
CREATE TABLE directory_sync_ops (
  run_id      bigint NOT NULL REFERENCES directory_sync_runs(id) ON DELETE CASCADE,
  seq         integer NOT NULL,
  forest      text NOT NULL,
  anchor      text NOT NULL,
  action      text NOT NULL CHECK (action IN ('add', 'update', 'disable', 'delete')),
  contact_dn  text NOT NULL,
  status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
  error       text,
  PRIMARY KEY (run_id, seq)
);

-- Incremental sync: the highest modifyTimestamp (OpenLDAP) or uSNChanged (AD) seen.
CREATE TABLE directory_watermarks (
  forest      text PRIMARY KEY,
  watermark   text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The join: a source user (forest + immutable anchor) and the contact made for it in
-- the central forest. attributes holds the contact attributes last written (or wanted,
-- while the SIP address is in conflict), so an unchanged user costs no write.
CREATE TABLE directory_joins (
  forest           text NOT NULL,
  anchor           text NOT NULL,
  source_dn        text NOT NULL,
  contact_dn       text NOT NULL,
  sip_address      text NOT NULL,
  state            text NOT NULL CHECK (state IN ('active', 'disabled', 'conflict')),
  attributes       jsonb NOT NULL,
  attributes_hash  text NOT NULL,
  disabled_at      timestamptz,
  disabled_reason  text CHECK (disabled_reason IN ('source-disabled', 'source-gone')),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (forest, anchor)
);
CREATE INDEX directory_joins_sip_idx ON directory_joins(sip_address);

-- One sync at a time. A row rather than a session advisory lock, because a PostgreSQL
-- pool spreads statements over connections; a stale heartbeat (or a dead holder pid on
-- the same host) lets the next run take over.
CREATE TABLE directory_sync_lock (
  name          text PRIMARY KEY,
  run_id        bigint,
  holder        text NOT NULL,
  acquired_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
