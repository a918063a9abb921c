-- Client version control (parley clients policy): rules on the User-Agent, first match wins.
-- 001 created client_policies unused; a rule is now a product token and a version range.
ALTER TABLE client_policies RENAME COLUMN user_agent TO product;
ALTER TABLE client_policies
  -- space-separated comparators (">=3.10 <4"), all of which must hold; '*' for any version
  ADD COLUMN versions    text NOT NULL DEFAULT '*',
  -- shown to the client in the 403's Warning and to administrators
  ADD COLUMN reason      text NOT NULL DEFAULT '',
  ADD COLUMN created_at  timestamptz NOT NULL DEFAULT now(),
  ADD CONSTRAINT client_policies_upgrade_url CHECK (action <> 'upgrade' OR upgrade_url IS NOT NULL);
-- positions are renumbered 1..n inside the transaction of every change (ClientPolicyRepository)

-- What a client no rule matches gets: at most one row; none means allow (so a new store
-- holds no rows and restores into it as empty).
CREATE TABLE client_policy_default (
  only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  action       text NOT NULL CHECK (action IN ('allow', 'block', 'upgrade')),
  upgrade_url  text,
  reason       text NOT NULL DEFAULT '',
  CHECK (action <> 'upgrade' OR upgrade_url IS NOT NULL)
);
