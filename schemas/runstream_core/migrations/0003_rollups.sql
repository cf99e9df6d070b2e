-- runstream schema v1, part 3: rollups maintained by materialized views as rows arrive, live run
-- state columns, and the user on hardware rows (for GPU-hours per user).
-- Aggregations that are pure functions of the rows of one insert live here, in ClickHouse: they
-- are computed where the data is, merge in the background, and cost the worker nothing.
-- Every view target keeps a deduplication window: the worker inserts with
-- deduplicate_blocks_in_dependent_materialized_views, so a retried batch is not aggregated twice.

-- Live state written by the worker: a run whose step has not moved for a while is flagged.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS stalled UInt8 DEFAULT 0;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS heartbeat_at Nullable(DateTime64(3, 'UTC'));
ALTER TABLE runs ADD COLUMN IF NOT EXISTS last_step Int64 DEFAULT -1;

ALTER TABLE hardware ADD COLUMN IF NOT EXISTS user LowCardinality(String) DEFAULT '';

-- Per run and key: what a comparison table shows (count, min, max, last value and step).
-- Read with the -Merge combinators or the metric_summary_view below.
CREATE TABLE IF NOT EXISTS metric_summary
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    key         LowCardinality(String),
    points      SimpleAggregateFunction(sum, UInt64),
    min_value   SimpleAggregateFunction(min, Float64),
    max_value   SimpleAggregateFunction(max, Float64),
    last_step   SimpleAggregateFunction(max, Int64),
    last        AggregateFunction(argMax, Float64, Tuple(Int64, DateTime64(3, 'UTC'))),
    first_ts    SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_ts     SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (team, project, run_id, key)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS metric_summary_mv TO metric_summary AS
SELECT team, project, run_id, key,
       count() AS points,
       min(value) AS min_value,
       max(value) AS max_value,
       max(step) AS last_step,
       argMaxState(value, (step, ts)) AS last,
       min(ts) AS first_ts,
       max(ts) AS last_ts
FROM metrics
GROUP BY team, project, run_id, key;

CREATE VIEW IF NOT EXISTS metric_summary_view AS
SELECT team, project, run_id, key,
       sum(points) AS points,
       min(min_value) AS min_value,
       max(max_value) AS max_value,
       max(last_step) AS last_step,
       argMaxMerge(last) AS last_value,
       min(first_ts) AS first_ts,
       max(last_ts) AS last_ts
FROM metric_summary
GROUP BY team, project, run_id, key;

-- Step buckets at 4 resolutions (level L groups 16^L steps: 16, 256, 4096, 65536), so that a
-- curve of up to ~100 million steps is drawn from at most ~2,000 rows: read raw points below
-- 2,000 steps, else the lowest level with at most 2,000 buckets.
CREATE TABLE IF NOT EXISTS metric_buckets
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    key         LowCardinality(String),
    level       UInt8,
    bucket      Int64,
    points      SimpleAggregateFunction(sum, UInt64),
    sum_value   SimpleAggregateFunction(sum, Float64),
    min_value   SimpleAggregateFunction(min, Float64),
    max_value   SimpleAggregateFunction(max, Float64),
    last        AggregateFunction(argMax, Float64, Int64),
    last_step   SimpleAggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (team, project, run_id, key, level, bucket)
SETTINGS non_replicated_deduplication_window = 10000;

-- Points are first grouped into 16-step buckets (a 16x smaller set), which are then rolled up
-- into all four levels: the same aggregates as grouping raw points per level, at a fraction of
-- the cost (this view is the most expensive part of an insert).
CREATE MATERIALIZED VIEW IF NOT EXISTS metric_buckets_mv TO metric_buckets AS
SELECT team, project, run_id, key, level,
       intDiv(fine, bitShiftLeft(toInt64(1), 4 * (level - 1))) AS bucket,
       sum(n) AS points,
       sum(total) AS sum_value,
       min(low) AS min_value,
       max(high) AS max_value,
       argMaxState(fine_last, fine_last_step) AS last,
       max(fine_last_step) AS last_step
FROM
(
    SELECT team, project, run_id, key,
           intDiv(step, 16) AS fine,
           count() AS n,
           sum(value) AS total,
           min(value) AS low,
           max(value) AS high,
           argMax(value, step) AS fine_last,
           max(step) AS fine_last_step
    FROM metrics
    GROUP BY team, project, run_id, key, fine
)
ARRAY JOIN [1, 2, 3, 4] AS level
GROUP BY team, project, run_id, key, level, bucket;

-- Hardware per run, host, key and device per minute.
CREATE TABLE IF NOT EXISTS hardware_minute
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    host        LowCardinality(String),
    key         LowCardinality(String),
    device      LowCardinality(String),
    minute      DateTime('UTC'),
    samples     SimpleAggregateFunction(sum, UInt64),
    sum_value   SimpleAggregateFunction(sum, Float64),
    min_value   SimpleAggregateFunction(min, Float64),
    max_value   SimpleAggregateFunction(max, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (team, project, run_id, host, key, device, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS hardware_minute_mv TO hardware_minute AS
SELECT team, project, run_id, host, key, device,
       toStartOfMinute(ts) AS minute,
       count() AS samples,
       sum(value) AS sum_value,
       min(value) AS min_value,
       max(value) AS max_value
FROM hardware
GROUP BY team, project, run_id, host, key, device, minute;

-- GPU-hours per team, project and user per hour: each GPU reading stands for one sampling
-- interval of that GPU being held by the run (busy or not, as a scheduler would bill it).
CREATE TABLE IF NOT EXISTS gpu_hours
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    user        LowCardinality(String),
    hour        DateTime('UTC'),
    gpu_hours   Float64,
    busy_gpu_hours Float64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (team, project, user, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS gpu_hours_mv TO gpu_hours AS
SELECT team, project, user,
       toStartOfHour(ts) AS hour,
       sum(interval_ms) / 3600000 AS gpu_hours,
       sum(interval_ms * value / 100) / 3600000 AS busy_gpu_hours
FROM hardware
WHERE key = 'gpu.utilization_percent'
GROUP BY team, project, user, hour;
