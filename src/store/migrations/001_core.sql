-- Parley core schema. One dialect for PGlite and PostgreSQL.
-- Migrations are numbered; areas own their own files (002_directory.sql, ...).

CREATE TABLE homes (
  name        text PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('standard', 'pool')),
  -- SIP URI a director redirects to, e.g. sip:pool1.example.com;transport=tcp
  address     text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id           bigserial PRIMARY KEY,
  -- address of record without scheme: alice@example.com (lower-case)
  aor          text NOT NULL UNIQUE,
  display_name text NOT NULL DEFAULT '',
  enabled      boolean NOT NULL DEFAULT true,
  home         text REFERENCES homes(name),
  -- where the user came from: 'local', or 'ldap:<forest>' for replicated users
  source       text NOT NULL DEFAULT 'local',
  source_anchor text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_home_idx ON users(home);

-- Digest secrets: HA1 = H(username:realm:password) per algorithm, never the password.
CREATE TABLE credentials (
  user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  realm       text NOT NULL,
  ha1_md5     text NOT NULL,
  ha1_sha256  text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, realm)
);

CREATE TABLE contact_groups (
  user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name        text NOT NULL,
  position    integer NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, name)
);

CREATE TABLE contacts (
  user_id      bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  -- contact's SIP URI, normalised: sip:bob@example.com
  uri          text NOT NULL,
  display_name text NOT NULL DEFAULT '',
  subscribed   boolean NOT NULL DEFAULT true,
  groups       text[] NOT NULL DEFAULT '{}',
  position     integer NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, uri)
);

-- Per-user presence authorization: who may watch me. pattern is a SIP URI
-- (sip:bob@example.com) or a domain (example.com), or '*'.
CREATE TABLE access_rules (
  user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  pattern     text NOT NULL,
  action      text NOT NULL CHECK (action IN ('allow', 'block')),
  PRIMARY KEY (user_id, pattern)
);

-- Version counter per user's list, so clients (and exports) know when it changed.
CREATE TABLE contact_list_versions (
  user_id     bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  version     bigint NOT NULL DEFAULT 0,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE registrations (
  aor          text NOT NULL,
  -- the Contact URI the endpoint registered
  contact      text NOT NULL,
  instance_id  text,
  call_id      text NOT NULL,
  cseq         integer NOT NULL,
  expires_at   timestamptz NOT NULL,
  q            real NOT NULL DEFAULT 1.0,
  user_agent   text NOT NULL DEFAULT '',
  -- which server holds the flow, and which connection on it (RFC 5626 flow reuse)
  server_id    text NOT NULL,
  flow_id      text NOT NULL,
  path         text,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (aor, contact)
);
CREATE INDEX registrations_server_idx ON registrations(server_id);
CREATE INDEX registrations_expiry_idx ON registrations(expires_at);

-- PUBLISHed presence state (RFC 3903): one row per entity tag.
CREATE TABLE presence_publications (
  aor          text NOT NULL,
  etag         text NOT NULL PRIMARY KEY,
  content_type text NOT NULL,
  body         text NOT NULL,
  expires_at   timestamptz NOT NULL,
  server_id    text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX presence_publications_aor_idx ON presence_publications(aor);

CREATE TABLE subscriptions (
  id           text PRIMARY KEY,
  event        text NOT NULL,
  presentity   text NOT NULL,
  watcher      text NOT NULL,
  -- dialog state needed to send NOTIFY from any front-end
  call_id      text NOT NULL,
  local_tag    text NOT NULL,
  remote_tag   text NOT NULL,
  remote_target text NOT NULL,
  route_set    text[] NOT NULL DEFAULT '{}',
  local_cseq   integer NOT NULL DEFAULT 0,
  expires_at   timestamptz NOT NULL,
  status       text NOT NULL DEFAULT 'active',
  server_id    text NOT NULL,
  flow_id      text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_presentity_idx ON subscriptions(presentity, event);
CREATE INDEX subscriptions_server_idx ON subscriptions(server_id);

CREATE TABLE servers (
  id           text PRIMARY KEY,
  role         text NOT NULL,
  home         text,
  address      text NOT NULL,
  health_url   text,
  state        text NOT NULL DEFAULT 'up',
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE federation_partners (
  domain       text PRIMARY KEY,
  action       text NOT NULL CHECK (action IN ('allow', 'block', 'clearinghouse')),
  edge_fqdn    text,
  note         text NOT NULL DEFAULT '',
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE client_policies (
  id           bigserial PRIMARY KEY,
  -- matched against User-Agent: a product token and an optional version bound
  user_agent   text NOT NULL,
  action       text NOT NULL CHECK (action IN ('allow', 'block', 'upgrade')),
  upgrade_url  text,
  position     integer NOT NULL DEFAULT 0
);

CREATE TABLE archive (
  id           bigserial PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT now(),
  sender       text NOT NULL,
  recipient    text NOT NULL,
  content_type text NOT NULL,
  body         text NOT NULL
);
CREATE INDEX archive_at_idx ON archive(at);
