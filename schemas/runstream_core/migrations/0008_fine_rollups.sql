-- runstream schema v1, part 8: metric rollups chained off one pass over the points.
-- Before, the run summary and the curve buckets each grouped every inserted point (the most
-- expensive part of an insert). Now one view groups the points into 16-step buckets, into a Null
-- table that stores nothing and only feeds the views chained on it; the summary (and run_latest,
-- chained on the summary) and the four bucket levels are rolled up from those buckets: the same
-- aggregates, from a 16x smaller set. Apply it with the worker stopped (`runstream worker --migrate`
-- does): an insert between the views dropped and created below would miss its rollups.

-- One row per run, key and 16-step bucket of an insert: everything both rollups need.
-- The bucket's newest point is the one with the largest (step, time): newest_step, newest_ts and
-- newest_value are its step, time and value.
CREATE TABLE IF NOT EXISTS metric_fine
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    key         LowCardinality(String),
    fine        Int64,
    points      UInt64,
    sum_value   Float64,
    min_value   Float64,
    max_value   Float64,
    newest_step  Int64,
    newest_ts    DateTime64(3, 'UTC'),
    newest_value Float64,
    first_ts    DateTime64(3, 'UTC'),
    last_ts     DateTime64(3, 'UTC')
)
ENGINE = Null;

DROP VIEW IF EXISTS metric_summary_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS metric_summary_mv TO metric_summary AS
SELECT team, project, run_id, key,
       sum(points) AS points,
       min(min_value) AS min_value,
       max(max_value) AS max_value,
       max(newest_step) AS last_step,
       argMaxState(newest_value, (newest_step, newest_ts)) AS last,
       min(first_ts) AS first_ts,
       max(last_ts) AS last_ts
FROM metric_fine
GROUP BY team, project, run_id, key;

DROP VIEW IF EXISTS metric_buckets_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS metric_buckets_mv TO metric_buckets AS
SELECT team, project, run_id, key, level,
       intDiv(fine, bitShiftLeft(toInt64(1), 4 * (level - 1))) AS bucket,
       sum(points) AS points,
       sum(sum_value) AS sum_value,
       min(min_value) AS min_value,
       max(max_value) AS max_value,
       argMaxState(newest_value, newest_step) AS last,
       max(newest_step) AS last_step
FROM metric_fine
ARRAY JOIN [1, 2, 3, 4] AS level
GROUP BY team, project, run_id, key, level, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS metric_fine_mv TO metric_fine AS
SELECT team, project, run_id, key,
       intDiv(step, 16) AS fine,
       count() AS points,
       sum(value) AS sum_value,
       min(value) AS min_value,
       max(value) AS max_value,
       max(step) AS newest_step,
       argMax(ts, newest) AS newest_ts,
       argMax(value, newest) AS newest_value,
       min(ts) AS first_ts,
       max(ts) AS last_ts
FROM
(
    -- (step, time) as one Int128, step in the high 64 bits: the same order as the tuple, at the
    -- cost of a number (argMax over a tuple compares generic values, several times slower).
    SELECT team, project, run_id, key, step, ts, value,
           bitShiftLeft(toInt128(step), 64) + toUnixTimestamp64Milli(ts) AS newest
    FROM metrics
)
GROUP BY team, project, run_id, key, fine;

-- The insert token's skip index, on its hash: a set index over the token strings themselves cost
-- as much as a third of an insert (the strings of a LowCardinality column are expanded for every
-- row), the hash is computed on its dictionary. The sink looks tokens up by both.
ALTER TABLE metrics DROP INDEX IF EXISTS idx_insert_token;
ALTER TABLE metrics ADD INDEX IF NOT EXISTS idx_insert_token_hash cityHash64(insert_token) TYPE set(64) GRANULARITY 1;
ALTER TABLE hardware DROP INDEX IF EXISTS idx_insert_token;
ALTER TABLE hardware ADD INDEX IF NOT EXISTS idx_insert_token_hash cityHash64(insert_token) TYPE set(64) GRANULARITY 1;
