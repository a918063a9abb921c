-- `parley archive search --text WORDS` matches each word anywhere in the body, case-insensitive
-- (body ILIKE '%word%'). A trigram GIN index (pg_trgm) answers such patterns without reading
-- every row; PostgreSQL ships pg_trgm as a trusted extension (the database owner may create
-- it), PGlite loads it from its contrib bundle (src/store/pglite.ts). Words shorter than three
-- characters have no trigram and still scan.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX archive_body_trgm_idx ON archive USING gin (body gin_trgm_ops);
