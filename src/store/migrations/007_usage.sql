-- Usage rollups (parley report usage): each server adds its counts once a minute, so a
-- report reads a few rows a day instead of scanning the archive or the logs.

-- Per day, home and server: messages and body bytes routed, and the most users signed in at once.
CREATE TABLE usage_daily (
  day             date NOT NULL,
  home            text NOT NULL,
  server_id       text NOT NULL,
  messages        bigint NOT NULL DEFAULT 0,
  bytes           bigint NOT NULL DEFAULT 0,
  peak_signed_in  integer NOT NULL DEFAULT 0,
  PRIMARY KEY (day, home, server_id)
);

-- Who was active (signed in, sent a request) on a day, once per home: distinct counts
-- across the front-ends of a pool.
CREATE TABLE usage_active_users (
  day   date NOT NULL,
  home  text NOT NULL,
  aor   text NOT NULL,
  PRIMARY KEY (day, home, aor)
);
