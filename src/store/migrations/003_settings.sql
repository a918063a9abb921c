-- Server-wide secrets and settings shared by every server of a store (a pool's front-ends):
-- the digest nonce key, so any front-end validates a nonce another one issued, and the key
-- that signs flow tokens between front-ends.
CREATE TABLE settings (
  key         text PRIMARY KEY,
  value       text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
