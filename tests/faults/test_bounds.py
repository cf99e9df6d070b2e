"""Input out of the event schema's bounds, on the real broker and engine: the SDK refuses it itself,
so the worker stores everything else and never has a record to set aside."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clickhouse_connect.driver.client import Client

from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core.events import MAX_KEY_LEN, MAX_LABEL_LEN, MAX_PARAMS, MAX_STEP, MAX_SUMMARY, MAX_TEXT_LEN
from tests.faults.helpers import dead_letters, ingest, points, status
from tests.fixtures.settings import StackSettings as Settings


def test_out_of_bounds_input_is_refused_by_the_sdk_and_the_rest_is_stored(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    config: dict[str, Any] = {f"p{i:05d}": i for i in range(MAX_PARAMS - 1)}
    config["long_value"] = "v" * (MAX_TEXT_LEN + 1)
    config["k" * (MAX_KEY_LEN + 1)] = 1
    run = Run(project="faults", team="vision", run_id="bounds", settings=pipeline_settings, config=config)
    run.log({"ok": 1.0, "k" * (MAX_KEY_LEN + 1): 1.0}, step=0)
    run.log({"ok": 2.0}, step=-1)
    run.log({"ok": 3.0}, step=2**63)  # the SDK sent this one before
    run.log({"ok": 4.0}, step=MAX_STEP)
    run.log({"ok": 5.0})  # the step after MAX_STEP
    run.log_params({"last": 1, "one_too_many": 2})
    run.set_tags({"stage": "ft", "long": "t" * (MAX_LABEL_LEN + 1)})
    run.summary.update({f"s{i}": float(i) for i in range(MAX_SUMMARY)})
    run.summary.update({"one_too_many": 1.0, "note": "x" * (MAX_TEXT_LEN + 1)})
    report = run.finish()
    assert report.complete
    assert (report.rejected_points, report.rejected_entries) == (1 + 1 + 1 + 1, 2 + 1 + 1 + 2)
    assert report.oversized_records == 0  # ~10,000 params: the start went in several records

    ingest(pipeline_settings, worker)
    client = clickhouse_factory(pipeline_settings)
    assert points(client, "bounds") == [("ok", 0, 1.0), ("ok", MAX_STEP, 4.0)]
    assert status(client, "bounds") == [("vision", "finished")]
    params = dict(client.query("SELECT key, value FROM params FINAL WHERE run_id = 'bounds'").result_rows)
    assert len(params) == MAX_PARAMS and params["last"] == "1" and "one_too_many" not in params
    tags = client.query("SELECT tags FROM runs FINAL WHERE run_id = 'bounds'").result_rows
    assert tags == [({"stage": "ft"},)]
    summary = client.query("SELECT count(), countIf(key = 'one_too_many') FROM summary FINAL WHERE run_id = 'bounds'")
    assert summary.result_rows == [(MAX_SUMMARY, 0)]
    assert dead_letters(pipeline_settings) == 0
