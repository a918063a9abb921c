-- Content synchronization (RFC 4533) per secondary forest: the cookie the forest's server
-- gave at the end of the last completed read, advanced only once that run's writes are
-- recorded, so a killed run reads the same changes again.
CREATE TABLE directory_sync_cookies (
  forest      text PRIMARY KEY,
  cookie      text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Each run looks at the joins still waiting on something (conflicts to retry, contacts
-- disabled for the grace period) without reading the forest's active joins.
CREATE INDEX directory_joins_waiting_idx ON directory_joins (forest, state) WHERE state <> 'active';
