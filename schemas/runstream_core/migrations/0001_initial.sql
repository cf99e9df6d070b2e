-- runstream schema v1: run registry, params and raw metric points.
-- Tables are created in the database named by the settings (RUNSTREAM_CLICKHOUSE_DATABASE).
-- Migrations are additive only; each statement ends with a semicolon on its own line end.

-- One row per lifecycle event; ReplacingMergeTree keeps the newest per run (read with FINAL
-- or argMax). The team leads the sort key so per-team row policies prune whole ranges.
CREATE TABLE IF NOT EXISTS runs
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    name        String,
    run_group   String,
    user        LowCardinality(String),
    host        LowCardinality(String),
    git_commit  String,
    tags        Map(LowCardinality(String), String),
    status      LowCardinality(String),
    started_at  DateTime64(3, 'UTC'),
    ended_at    Nullable(DateTime64(3, 'UTC')),
    updated_at  DateTime64(3, 'UTC'),
    INDEX idx_tag_keys mapKeys(tags) TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_tag_values mapValues(tags) TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (team, project, run_id);

-- Flattened config of a run, one row per key; values kept as text (typed views come later).
CREATE TABLE IF NOT EXISTS params
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    key         LowCardinality(String),
    value       String CODEC(ZSTD(1)),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (team, project, run_id, key);

-- Raw metric points. Sorted for per-run, per-key curve reads; monthly partitions keep part
-- counts low at high ingest rates. Delta/DoubleDelta suit monotonic step and time columns,
-- Gorilla suits slowly changing float gauges.
CREATE TABLE IF NOT EXISTS metrics
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String CODEC(ZSTD(1)),
    key         LowCardinality(String),
    step        Int64 CODEC(Delta, ZSTD(1)),
    ts          DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value       Float64 CODEC(Gorilla, ZSTD(1)),
    producer_id LowCardinality(String),
    seq         UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (team, project, run_id, key, step)
-- Remember recent insert tokens so a batch retried after an error is not stored twice.
SETTINGS non_replicated_deduplication_window = 10000;
