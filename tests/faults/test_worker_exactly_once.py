"""Exactly once where the insert's own bookkeeping is tested: a materialized view failing once after the
raw part is written, a topic deleted and created again (its offsets reused by other records), and a
run synced late spanning more partitions than one insert may. Raw rows exact, every rollup equal
to its raw aggregate."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from runstream_core import kafka
from runstream_core.clickhouse import connect
from runstream_worker.lag import wait_caught_up
from runstream_worker.topics import ensure_topics
from tests.faults.worker_support import DAY_MS, Feed, Workload, assert_stored_exactly
from tests.fixtures.endpoint import client_settings
from tests.fixtures.kafka import free_port
from tests.fixtures.settings import StackSettings as Settings


def test_a_view_that_fails_once_leaves_no_rollup_short(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    # The worker's own embedded store, reached over its writable HTTP endpoint while it runs. (A
    # store served by `runstream serve` reports an insert whose view failed as a success: chDB's
    # streamed insert drops the error, see the report of this change.)
    settings = pipeline_settings.model_copy(update={"worker_http_port": free_port(), "worker_http_readonly": False})
    worker = worker_factory(settings)
    store = connect(client_settings(f"http://127.0.0.1:{settings.worker_http_port}", settings.state_dir))
    # A view of the test's own that fails while a flag is up: after the raw part is committed.
    store.command("CREATE TABLE fault_flag (up UInt8) ENGINE = Memory")
    store.command("INSERT INTO fault_flag VALUES (1)")
    store.command("CREATE TABLE fault_target (n UInt64) ENGINE = MergeTree ORDER BY n")
    store.command(
        "CREATE MATERIALIZED VIEW fault_view TO fault_target AS "
        "SELECT throwIf((SELECT min(up) FROM fault_flag) = 1, 'view failed') + count() AS n FROM metrics"
    )
    work = Workload(run_id="view-fails-once", batches=10)
    feed = Feed(settings)
    feed.events(work.events())
    feed.close()
    deadline = time.monotonic() + 60
    while "clickhouse refused the batch; trying again" not in worker.log_text():
        assert time.monotonic() < deadline, worker.log_text()[-3000:]
        time.sleep(0.05)
    store.command("INSERT INTO fault_flag VALUES (0)")  # the flag goes down
    store.close()
    wait_caught_up(settings, timeout_s=60)
    assert worker.stop() == 0
    assert "record skipped" not in worker.log_text()
    assert_stored_exactly(clickhouse_factory(settings), [work])


def test_records_at_the_offsets_of_a_deleted_topic_are_new_records(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = pipeline_settings.model_copy(update={"worker_batch_records": 4})
    first = Workload(run_id="reused", team="vision", batches=8)
    second = Workload(run_id="reused", team="nlp", batches=8)  # same key: same partitions, same offsets
    worker = worker_factory(settings)
    feed = Feed(settings)
    feed.events(first.events())
    feed.close()
    wait_caught_up(settings, timeout_s=60)
    assert worker.stop() == 0

    admin = kafka.admin(settings, client_id="test-recreate")
    try:
        admin.delete_topics(list(settings.topics.inputs()))
        deadline = time.monotonic() + 60
        while set(settings.topics.inputs()) & set(admin.list_topics()):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        admin.close()
    deadline = time.monotonic() + 60
    while ensure_topics(settings):  # created again once the deletion is through
        assert time.monotonic() < deadline
        time.sleep(0.5)
    feed = Feed(settings)
    feed.events(second.events())
    feed.close()

    worker = worker_factory(settings)
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0
    assert_stored_exactly(clickhouse_factory(settings), [first, second])


def test_a_run_synced_late_over_many_partitions_is_stored_whole(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    # A run logged offline for a year: a record of a year of daily hardware readings (365 daily
    # partitions) and one of 101 monthly points (101 monthly partitions), with an ordinary run.
    work = Workload(run_id="offline", batches=4, samples=2)
    months = msgspec.structs.replace(
        work.metric_batch(0),
        keys=["loss"] * 101,
        steps=list(range(101)),
        ts_ms=[work.t0 + i * 31 * DAY_MS for i in range(101)],
        values=[float(i) for i in range(101)],
        run_id="synced-late",
        seq=900,
    )
    year = msgspec.structs.replace(
        work.hardware_batch(0),
        ts_ms=[work.t0 + d * DAY_MS for d in range(365)],
        keys=["gpu.utilization_percent"] * 365,
        devices=["gpu0"] * 365,
        values=[50.0] * 365,
        run_id="synced-late",
        seq=901,
    )
    worker = worker_factory(pipeline_settings)
    feed = Feed(pipeline_settings)
    feed.events([*work.events()[:-1], months, year, work.events()[-1]])
    feed.close()
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    assert "record skipped" not in worker.log_text()
    client = clickhouse_factory(pipeline_settings)
    late = client.query(
        "SELECT (SELECT count() FROM metrics WHERE run_id = 'synced-late'), "
        "(SELECT uniqExact(_partition_id) FROM metrics), "
        "(SELECT count() FROM hardware WHERE run_id = 'synced-late'), "
        "(SELECT uniqExact(_partition_id) FROM hardware)"
    ).result_rows
    assert late == [(101, 101, 365, 365)]
    assert_stored_exactly(client, [work])  # and every rollup, the late records' included
