-- Message archiving (docs/archiving.md): 001 created the table unused; a row now carries the
-- size, the delivery result and the server that routed it.
ALTER TABLE archive
  ADD COLUMN size       integer NOT NULL DEFAULT 0,
  -- the final status the sender got (200, 480, 500 ...); 0 when none was sent
  ADD COLUMN result     integer NOT NULL DEFAULT 0,
  ADD COLUMN server_id  text NOT NULL DEFAULT '';
-- searches are by a user (sender or recipient) and a time range
CREATE INDEX archive_sender_at_idx ON archive(sender, at);
CREATE INDEX archive_recipient_at_idx ON archive(recipient, at);
