"""Live run state on the real broker and engine when the producer's clock is off by an hour either
way, and when two teams each have a run with the same id: runs not marked crashed while they beat,
marked crashed when they stop, finished for good when they end; rollups equal to raw rows."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from runstream_cli.worker_process import WorkerProcess
from runstream_core.clickhouse import connect
from runstream_core.events import Heartbeat, RunEnd, RunInfo, RunStart, RunStatus
from runstream_worker.lag import wait_caught_up
from runstream_worker.migrate import migrate
from tests.faults.worker_support import Feed
from tests.fixtures.pipeline import ServedClickHouse
from tests.fixtures.rollups import rollup_differences
from tests.fixtures.settings import StackSettings as Settings

HOUR_MS = 3_600_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def states(settings: Settings) -> dict[tuple[str, str], tuple[str, int, int | None]]:
    """Per (team, run id): status, last step and last heartbeat (ms) as stored now, read over HTTP."""
    client = connect(settings)
    try:
        rows = client.query(
            "SELECT team, run_id, status, last_step, toUnixTimestamp64Milli(heartbeat_at) FROM runs FINAL"
        ).result_rows
    finally:
        client.close()
    return {(team, run): (status, int(step), beat) for team, run, status, step, beat in rows}


def table_states(settings: Settings) -> dict[tuple[str, str], str]:
    client = connect(settings)
    try:
        rows = client.query("SELECT team, run_id, status FROM run_table").result_rows
        assert rollup_differences(client) == []
    finally:
        client.close()
    return {(team, run): status for team, run, status in rows}


def wait_for(settings: Settings, key: tuple[str, str], status: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := states(settings).get(key)) is None or seen[0] != status:
        assert time.monotonic() < deadline, f"{key} is {seen}, expected {status}"
        time.sleep(0.2)


@pytest.fixture
def live_settings(pipeline_settings: Settings, served_clickhouse: ServedClickHouse) -> Settings:
    settings = pipeline_settings.model_copy(
        update={
            "clickhouse_url": served_clickhouse.url,  # readable while the worker writes
            "worker_crash_after_s": 3.0,
            "worker_liveness_interval_s": 0.5,
            "worker_flush_interval_s": 0.2,
        }
    )
    migrate(settings)
    return settings


@pytest.mark.parametrize("skew_ms", [-HOUR_MS, HOUR_MS], ids=["producer-an-hour-behind", "producer-an-hour-ahead"])
def test_a_skewed_producer_clock_changes_nothing_the_worker_decides(
    skew_ms: int, live_settings: Settings, worker_factory: Callable[[Settings], WorkerProcess]
) -> None:
    worker = worker_factory(live_settings)
    key = ("vision", "skewed")
    info = RunInfo(run_id="skewed", team="vision", project="clocks", started_at_ms=now_ms() + skew_ms)
    feed = Feed(live_settings)
    feed.events([RunStart(run=info)])
    # Six seconds of heartbeats, twice the crash delay: the run stays running, its heartbeat is now.
    for step in range(20):
        feed.events([Heartbeat(run=info, ts_ms=now_ms() + skew_ms, step=step)])
        time.sleep(0.3)
    status, last_step, beat = states(live_settings)[key]
    assert (status, last_step) == ("running", 19)
    assert beat is not None and abs(beat - now_ms()) < 5_000  # the worker's clock, not the producer's
    assert "run crashed" not in worker.log_text()
    # The heartbeats stop: crashed after the crash delay, whichever way the clock is off.
    wait_for(live_settings, key, "crashed")
    # Then the run ends cleanly after all: finished, for good.
    feed.events([RunEnd(run=info, status=RunStatus.FINISHED, ended_at_ms=now_ms() + skew_ms, step=19)])
    feed.close()
    wait_for(live_settings, key, "finished")
    wait_caught_up(live_settings, timeout_s=60)
    time.sleep(2.0)  # more liveness checks pass
    assert states(live_settings)[key][0] == "finished"
    assert table_states(live_settings) == {key: "finished"}
    assert worker.stop() == 0
    assert worker.log_text().count("run crashed") == 1


def test_two_teams_runs_of_one_id_are_watched_apart(
    live_settings: Settings, worker_factory: Callable[[Settings], WorkerProcess]
) -> None:
    worker = worker_factory(live_settings)
    vision = RunInfo(run_id="baseline", team="vision", project="p", started_at_ms=now_ms())
    nlp = RunInfo(run_id="baseline", team="nlp", project="p", started_at_ms=now_ms())
    feed = Feed(live_settings)
    feed.events([RunStart(run=vision), RunStart(run=nlp)])
    for step in range(5):
        feed.events([Heartbeat(run=run, ts_ms=now_ms(), step=step) for run in (vision, nlp)])
        time.sleep(0.3)
    # vision's run ends; nlp's dies without a word: it must still be caught.
    feed.events([RunEnd(run=vision, status=RunStatus.FINISHED, ended_at_ms=now_ms(), step=4)])
    feed.close()
    wait_for(live_settings, ("nlp", "baseline"), "crashed")
    wait_caught_up(live_settings, timeout_s=60)
    found = states(live_settings)
    assert {k: v[:2] for k, v in found.items()} == {
        ("vision", "baseline"): ("finished", 4),
        ("nlp", "baseline"): ("crashed", 4),
    }
    assert table_states(live_settings) == {("vision", "baseline"): "finished", ("nlp", "baseline"): "crashed"}
    assert worker.stop() == 0
    assert "run_id='baseline'" in worker.log_text() and "team='nlp'" in worker.log_text()
