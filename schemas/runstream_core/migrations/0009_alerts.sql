-- runstream schema v1, part 9: alerts, and the state the worker evaluates them with.
-- (Parts 7 and 8 are reserved for other changes; migrations apply in name order.)

-- One row per alert message: an episode that fired, its recovery, or an alert a job raised itself
-- (run.alert). `delivery` says where its webhooks stand (pending, sent, failed, suppressed within
-- the rule's wait_duration, none configured); the worker updates it with a newer `updated_at`, so
-- read with FINAL. `alert_id` is made from the rule, the key, the episode's number and the message,
-- so a message made again after a worker restart replaces the first one instead of adding to it.
-- The team leads the key: a team's row policy reads its own alerts only.
CREATE TABLE IF NOT EXISTS alerts
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    alert_id    String,
    rule        LowCardinality(String),
    kind        LowCardinality(String),
    subject     String,
    event       LowCardinality(String),
    level       LowCardinality(String),
    title       String,
    text        String CODEC(ZSTD(1)),
    value       Nullable(Float64),
    step        Int64,
    ts          DateTime64(3, 'UTC'),
    webhooks    Array(LowCardinality(String)),
    delivery    LowCardinality(String),
    error       String,
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (team, project, run_id, alert_id);

-- What the worker needs to go on evaluating a run's rules after a restart or a rebalance: per run
-- (entry '') when it was last seen and its step last moved, and the producers' records already
-- evaluated; per rule and key (entry 'rule/key') its window and episode. MessagePack blobs, newest
-- wins. No team column: this is the worker's own bookkeeping, not granted to teams.
CREATE TABLE IF NOT EXISTS alert_state
(
    run_team    LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    entry       String,
    state       String CODEC(ZSTD(1)),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (run_team, project, run_id, entry)
TTL toDateTime(updated_at) + INTERVAL 30 DAY;
