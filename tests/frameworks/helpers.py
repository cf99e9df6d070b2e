"""What the framework tests share: running the worker until everything a job sent is stored, then reading rows."""

from __future__ import annotations

from collections.abc import Callable

from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings


def stored(
    settings: Settings,
    worker: WorkerProcess,
    clickhouse_factory: Callable[[Settings], Client],
) -> Client:
    """Waits for the worker to catch up, stops it (it owns the embedded store) and opens the store."""
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0, worker.log_text()[-3000:]
    return clickhouse_factory(settings)


def curves(client: Client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Each key's (step, value) points of one run, in step order."""
    found: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in client.query(
        "SELECT key, step, value FROM metrics WHERE run_id = {r:String} ORDER BY key, step",
        parameters={"r": run_id},
    ).result_rows:
        found.setdefault(key, []).append((step, value))
    return found


def run_row(client: Client, run_id: str) -> tuple[str, str, str, str]:
    rows = client.query(
        "SELECT team, project, name, status FROM runs FINAL WHERE run_id = {r:String}", parameters={"r": run_id}
    ).result_rows
    assert len(rows) == 1, rows
    return rows[0]


def params(client: Client, run_id: str) -> dict[str, str]:
    return dict(
        client.query(
            "SELECT key, value FROM params FINAL WHERE run_id = {r:String}", parameters={"r": run_id}
        ).result_rows
    )
