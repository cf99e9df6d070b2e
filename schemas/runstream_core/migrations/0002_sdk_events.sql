-- runstream schema v1, part 2: distributed ranks, hardware samples, run summaries and the
-- record log that lets the worker drop replayed records (producer id + sequence number).

-- Rank of the process that logged a point (0 for single-process runs).
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS rank UInt32 DEFAULT 0 CODEC(ZSTD(1));

-- The worker looks replayed records up by (run, producer id, sequence number) in the rows
-- themselves: within a run, sequence numbers rise with steps, so min/max per granule prunes well.
ALTER TABLE metrics ADD INDEX IF NOT EXISTS idx_seq seq TYPE minmax GRANULARITY 1;

-- Processes in the run's job (1 for single-process runs).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS world_size UInt32 DEFAULT 1;

-- Hardware readings in long form: one row per (sample, key, device). Daily partitions suit
-- the high row rate and let a TTL drop whole days; device is "" for host-wide readings.
CREATE TABLE IF NOT EXISTS hardware
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String CODEC(ZSTD(1)),
    host        LowCardinality(String),
    rank        UInt32 CODEC(ZSTD(1)),
    key         LowCardinality(String),
    device      LowCardinality(String),
    ts          DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value       Float64 CODEC(Gorilla, ZSTD(1)),
    interval_ms UInt32 CODEC(ZSTD(1)),
    producer_id LowCardinality(String),
    seq         UInt64 CODEC(Delta, ZSTD(1)),
    INDEX idx_seq seq TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (team, project, run_id, key, device, ts)
SETTINGS non_replicated_deduplication_window = 10000;

-- Explicit summary values of a run (run.summary["best_acc"] = 0.93): a number or a text.
CREATE TABLE IF NOT EXISTS summary
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    key         LowCardinality(String),
    value       Nullable(Float64),
    text        String CODEC(ZSTD(1)),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (team, project, run_id, key);

-- When each append-only record (producer id, sequence number) became visible, filled by the
-- materialized views below as rows are inserted: the basis of freshness figures.
CREATE TABLE IF NOT EXISTS ingested_records
(
    producer_id String,
    seq         UInt64,
    kind        LowCardinality(String),
    rows        UInt64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (producer_id, seq, kind)
-- A retried insert (same token) must not be counted twice here either.
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ingested_metric_records TO ingested_records AS
SELECT producer_id, seq, 'metrics' AS kind, count() AS rows
FROM metrics
WHERE producer_id != ''
GROUP BY producer_id, seq;

CREATE MATERIALIZED VIEW IF NOT EXISTS ingested_hardware_records TO ingested_records AS
SELECT producer_id, seq, 'hardware' AS kind, count() AS rows
FROM hardware
WHERE producer_id != ''
GROUP BY producer_id, seq;
