-- runstream schema v1, part 4: the workers' own health, one row per worker per interval.

CREATE TABLE IF NOT EXISTS pipeline_health
(
    ts                DateTime64(3, 'UTC'),
    worker            LowCardinality(String),
    interval_s        Float64,
    records           UInt64,
    points            UInt64,
    hardware_readings UInt64,
    dead_letters      UInt64,
    replays           UInt64,
    batches           UInt64,
    crashed_runs      UInt64,
    consumer_lag      UInt64,
    batch_p50_ms      Float64,
    batch_max_ms      Float64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (worker, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY;
