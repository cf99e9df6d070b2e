"""The worker serves its embedded store over ClickHouse's HTTP interface while it ingests.

chDB lets one process own a database path, so in embedded mode Grafana, notebooks and SQL clients
reach the data through the worker. The store is seeded with the multi-team data set first, then a
training job keeps logging while:

- clickhouse-go, configured as Grafana's ClickHouse plugin configures it, runs every panel and
  variable query of every dashboard, over and over;
- an attacker sends every probe that once worked against the endpoint (files, URLs, KILL QUERY,
  SET, writes, web origins, no credentials): each is refused, nothing is read, written or cancelled.

Afterwards every point is stored exactly once, and clickhouse-go's rows equal the engine's.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import runstream
from runstream_cli.worker_process import WorkerProcess
from runstream_core.clickhouse import connect
from runstream_grafana.dashboards import option_value
from runstream_worker.lag import wait_caught_up
from tests.fixtures.clients import Client
from tests.fixtures.endpoint import Endpoint, client_settings
from tests.fixtures.kafka import free_port
from tests.fixtures.pipeline import ENDPOINT_PASSWORD
from tests.fixtures.seed import SeedFacts, seed
from tests.fixtures.settings import StackSettings as Settings
from tests.grafana.emulator import all_queries

STEPS = 3000
KEYS = ("loss", "acc")
SECRET = "worker-secret-5c1e"


def train(settings: Settings, started: threading.Event) -> None:
    with runstream.init(project="live", team="vision", name="live-run", settings=settings) as run:
        for step in range(STEPS):
            run.log({"loss": 1.0 / (step + 1), "acc": step / STEPS}, step=step)
            if step % 100 == 0:
                started.set()
                time.sleep(0.2)  # about six seconds of training, so queries overlap ingestion


@pytest.fixture
def seeded(pipeline_settings: Settings) -> tuple[Settings, SeedFacts]:
    settings = pipeline_settings.model_copy(update={"worker_http_port": free_port()})
    return settings, seed(settings)  # seeded before the worker owns the path


def dashboard_queries(facts: SeedFacts) -> dict[str, str]:
    expanded = all_queries(
        {"team": option_value("vision"), "project": option_value("vision-main"), "run": ["vision-0-0", "vision-0-1"]},
        time_from_ms=facts.start_ms,
        time_to_ms=facts.now_ms + 600_000,
    )
    return {f"{dashboard}: {panel}": sql for dashboard, panel, sql in expanded}


def plain(value: Any) -> Any:
    """A value as both clients can give it: times as epoch seconds, numbers as floats."""
    if isinstance(value, datetime):
        return round(value.timestamp(), 3)
    if isinstance(value, str):
        looks_like_time = "T" in value and value[:4].isdigit()
        try:
            return round(datetime.fromisoformat(value).timestamp(), 3) if looks_like_time else value
        except ValueError:
            return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        return "nan" if math.isnan(number) else round(number, 6)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def probe_everything(endpoint: Endpoint, tmp: Path, secret_file: Path) -> None:
    """Every probe that once worked, each refused with ClickHouse's code and status."""
    probes: list[tuple[dict[str, Any], str, int]] = [
        ({"sql": f"SELECT * FROM file('{secret_file}', 'LineAsString')"}, "497", 403),
        ({"sql": f"SELECT file('{secret_file}')"}, "497", 403),
        ({"sql": f"SELECT 'x' INTO OUTFILE '{tmp / 'evil.pth'}' TRUNCATE"}, "164", 500),
        ({"sql": f"INSERT INTO FUNCTION file('{tmp / 'evil.csv'}', 'CSV') SELECT 1"}, "164", 500),
        ({"sql": "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')"}, "497", 403),
        ({"sql": "SELECT name, path FROM system.disks"}, "497", 403),
        ({"sql": "KILL QUERY WHERE 1"}, "164", 500),
        ({"sql": "SET max_result_rows = 1"}, "164", 500),
        ({"sql": "DROP TABLE runstream.metrics"}, "164", 500),
        ({"sql": None, "params": {"query": "DROP TABLE runstream.metrics"}, "method": "GET"}, "164", 500),
        ({"sql": "SELECT count() FROM runstream.metrics", "headers": {"Origin": "https://evil.example"}}, "497", 403),
        ({"sql": "SELECT count() FROM runstream.metrics", "auth": None}, "194", 401),
        ({"sql": "SELECT count() FROM runstream.metrics", "auth": ("runstream", "guess")}, "516", 403),
        ({"sql": "SELECT count() FROM system.numbers"}, "452", 500),  # max_execution_time below
    ]
    for request, code, status in probes:
        params = dict(request.get("params") or {})
        if "system.numbers" in str(request["sql"]):
            params["max_execution_time"] = "100000"
        reply = endpoint.request(
            request["sql"],
            params,
            request.get("headers"),
            method=request.get("method", "POST"),
            auth=request.get("auth", True),
        )
        assert (reply.code, reply.status) == (code, status), (request, reply.text)
        assert reply.text.startswith(f"Code: {code}. DB::Exception: ") and SECRET not in reply.text


def test_grafanas_driver_and_an_attacker_over_http_while_the_worker_ingests(
    seeded: tuple[Settings, SeedFacts],
    worker_factory: Callable[[Settings], WorkerProcess],
    go_client: Client,
    tmp_path: Path,
) -> None:
    settings, facts = seeded
    worker = worker_factory(settings)
    http = f"http://127.0.0.1:{settings.worker_http_port}"
    reader = client_settings(http, settings.state_dir)
    endpoint = Endpoint(settings.worker_http_port, reader)
    client = connect(reader)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    queries = dashboard_queries(facts)
    request = {
        "addr": f"127.0.0.1:{settings.worker_http_port}",
        "user": "runstream",
        "password": ENDPOINT_PASSWORD,
        "database": "runstream",
        "queries": [{"name": name, "sql": sql} for name, sql in queries.items()],
    }
    started = threading.Event()
    job = threading.Thread(target=train, args=(settings, started))
    job.start()
    assert started.wait(60)
    counts, rounds = [], 0
    while job.is_alive() or not counts:
        reply = go_client(request)
        assert reply["ping"] == ""
        for result in reply["results"]:
            assert "error" not in result and result["columns"], result
        rounds += 1
        probe_everything(endpoint, tmp_path, secret_file)
        counts.append(client.query("SELECT count() FROM metrics WHERE project = 'live'").result_rows[0][0])
    job.join()
    assert rounds > 0
    assert len(set(counts)) >= 2, counts  # rows became visible while the job was still logging
    wait_caught_up(settings, timeout_s=120)
    assert client.query("SELECT count() FROM metrics WHERE project = 'live'").result_rows == [(STEPS * len(KEYS),)]
    assert client.query("SELECT count() FROM metrics").result_rows == [
        (STEPS * len(KEYS) + len(facts.runs) * facts.steps * 2,)
    ]
    assert not (tmp_path / "evil.pth").exists() and not (tmp_path / "evil.csv").exists()
    # Once nothing moves: clickhouse-go decoded exactly the engine's rows, for every query.
    final = {result["name"]: result for result in go_client(request)["results"]}
    for name, sql in queries.items():
        expected = [plain(list(row)) for row in client.query(sql).result_rows]
        assert [plain(row) for row in final[name]["rows"]] == expected, name
    client.close()
    assert worker.stop() == 0, worker.log_text()[-3000:]
