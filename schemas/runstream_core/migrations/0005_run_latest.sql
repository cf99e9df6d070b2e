-- runstream schema v1, part 5: one row per run with everything a run table shows (state, params,
-- last value of every metric), so that listing, filtering and sorting thousands of runs reads one
-- small table instead of joining runs, params and the metric summary.
-- Kept by views chained on the tables that carry each part; values merge by "newest wins":
-- maxMap over (version, value) tuples per key, max over a (version, ...) tuple for the run state.

CREATE TABLE IF NOT EXISTS run_latest
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    -- Per metric key: (last step, time of the last point, value at the last step).
    metrics     SimpleAggregateFunction(maxMap, Map(String, Tuple(Int64, DateTime64(3, 'UTC'), Float64))),
    -- Per param key: (updated_at, value).
    params      SimpleAggregateFunction(maxMap, Map(String, Tuple(DateTime64(3, 'UTC'), String))),
    -- The newest runs row: (updated_at, status, name, run_group, user, started_at, ended_at, stalled).
    state       SimpleAggregateFunction(max, Tuple(
                    DateTime64(3, 'UTC'), String, String, String, String,
                    DateTime64(3, 'UTC'), Nullable(DateTime64(3, 'UTC')), UInt8))
)
ENGINE = AggregatingMergeTree
ORDER BY (team, project, run_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Chained on the summary rollup: a handful of rows per insert instead of every point. A step
-- logged twice in different batches keeps the value of the batch whose newest point is later.
CREATE MATERIALIZED VIEW IF NOT EXISTS run_latest_metrics_mv TO run_latest AS
SELECT team, project, run_id,
       maxMap(map(toString(key), (last_step, last_ts, finalizeAggregation(last)))) AS metrics
FROM metric_summary
GROUP BY team, project, run_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS run_latest_params_mv TO run_latest AS
SELECT team, project, run_id, maxMap(map(toString(key), (updated_at, value))) AS params
FROM params
GROUP BY team, project, run_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS run_latest_state_mv TO run_latest AS
SELECT team, project, run_id,
       max((updated_at, toString(status), name, run_group, toString(user), started_at, ended_at, stalled)) AS state
FROM runs
GROUP BY team, project, run_id;

-- Readable form: one row per run with plain values. FINAL combines parts not merged yet; for the
-- fastest reads over many runs, query run_latest FINAL directly (params['k'].2, metrics['k'].3).
CREATE VIEW IF NOT EXISTS run_table AS
SELECT team, project, run_id,
       tupleElement(state, 2) AS status,
       tupleElement(state, 3) AS name,
       tupleElement(state, 4) AS run_group,
       tupleElement(state, 5) AS user,
       tupleElement(state, 6) AS started_at,
       tupleElement(state, 7) AS ended_at,
       toBool(tupleElement(state, 8)) AS stalled,
       mapApply((k, v) -> (k, tupleElement(v, 2)), params) AS params,
       mapApply((k, v) -> (k, tupleElement(v, 3)), metrics) AS last_values,
       mapApply((k, v) -> (k, tupleElement(v, 1)), metrics) AS last_steps
FROM run_latest FINAL;

-- Runs stored before this migration.
INSERT INTO run_latest (team, project, run_id, metrics)
SELECT team, project, run_id, maxMap(map(toString(key), (last_step, last_ts, last_value)))
FROM metric_summary_view
GROUP BY team, project, run_id;

INSERT INTO run_latest (team, project, run_id, params)
SELECT team, project, run_id, maxMap(map(toString(key), (updated_at, value)))
FROM params
GROUP BY team, project, run_id;

INSERT INTO run_latest (team, project, run_id, state)
SELECT team, project, run_id,
       max((updated_at, toString(status), name, run_group, toString(user), started_at, ended_at, stalled))
FROM runs
GROUP BY team, project, run_id;
