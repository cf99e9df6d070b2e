-- runstream schema v1, part 6: the deduplication token each raw point was inserted with.
-- A worker killed after a raw part was written but before every materialized view wrote its
-- own leaves rollups short. The worker that takes over finds the records' rows, reads the token
-- they were written with, and inserts those very rows again under that token: the raw table and
-- the views already written skip them as duplicates, the views left short get them.
-- MATERIALIZED: filled from the insert's own setting, never sent by the writer, left out of SELECT *.

ALTER TABLE metrics ADD COLUMN IF NOT EXISTS insert_token LowCardinality(String)
    MATERIALIZED getSetting('insert_deduplication_token');
ALTER TABLE metrics ADD INDEX IF NOT EXISTS idx_insert_token insert_token TYPE set(64) GRANULARITY 1;

ALTER TABLE hardware ADD COLUMN IF NOT EXISTS insert_token LowCardinality(String)
    MATERIALIZED getSetting('insert_deduplication_token');
ALTER TABLE hardware ADD INDEX IF NOT EXISTS idx_insert_token insert_token TYPE set(64) GRANULARITY 1;
