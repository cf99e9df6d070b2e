"""Grafana's path to a team's rows, on the embedded store, while the worker ingests.

`runstream teams sync` runs while the worker owns the store: it writes the team users and, in the
Grafana double, each team's organization and datasource. clickhouse-go, configured from that very
datasource (host, port, user, password, database, as Grafana's ClickHouse plugin would be), runs
every team dashboard query against the worker's endpoint: each returns what the endpoint's own user
gets from the same data written for that team alone. Meanwhile a job logs into the same project
names for one team; the other never sees a row of it, ingest goes on, and every count is exact.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import runstream
from runstream_cli.worker_process import WorkerProcess
from runstream_core.clickhouse import connect
from runstream_grafana.dashboards import DASHBOARDS
from runstream_worker.lag import wait_caught_up
from tests.e2e.test_worker_http import plain
from tests.fixtures.clients import Client
from tests.fixtures.endpoint import Endpoint, client_settings
from tests.fixtures.kafka import free_port
from tests.fixtures.pipeline import ENDPOINT_PASSWORD
from tests.fixtures.seed import overlapping_runs, seed
from tests.fixtures.settings import StackSettings as Settings
from tests.grafana.emulator import all_queries
from tests.teams.grafana_double import grafana_double

TEAMS = ("vision", "nlp")
PASSWORDS = {"vision": "vision-pw", "nlp": "nlp-pw"}
TEAM_DASHBOARDS = {spec.uid for spec in DASHBOARDS if spec.folder == "team"}
LIVE_STEPS = 1500
TEAMS_YAML = """
teams:
  - name: vision
    display_name: Vision
  - name: nlp
    display_name: NLP
"""


def train(settings: Settings, started: threading.Event) -> None:
    with runstream.init(project="shared", team="vision", run_id="live-run", settings=settings) as run:
        for step in range(LIVE_STEPS):
            run.log({"loss": 0.5, "acc": 0.5}, step=step)
            if step % 100 == 0:
                started.set()
                time.sleep(0.2)


def teams_sync(settings: Settings, teams_yaml: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "RUNSTREAM_CLICKHOUSE_URL": settings.clickhouse_url,
        "RUNSTREAM_STATE_DIR": str(settings.state_dir),
        "RUNSTREAM_WORKER_HTTP_PORT": str(settings.worker_http_port),
        **{f"RUNSTREAM_TEAM_{t.upper()}_CLICKHOUSE_PASSWORD": p for t, p in PASSWORDS.items()},
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "teams", "sync", str(teams_yaml), "--dashboards", "/nonexistent"],
        capture_output=True, text=True, timeout=120, check=False, env=environment,
    )  # fmt: skip


def go_request(datasource: dict[str, Any], queries: dict[str, str], *, user: str, password: str) -> dict[str, Any]:
    data = datasource["jsonData"]
    return {
        "addr": f"{data['host']}:{data['port']}",
        "user": user,
        "password": password,
        "database": data["defaultDatabase"],
        "queries": [{"name": name, "sql": sql} for name, sql in queries.items()],
    }


def test_team_datasources_read_their_teams_rows_through_clickhouse_go_while_the_worker_ingests(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    go_client: Client,
    tmp_path: Path,
) -> None:
    settings = pipeline_settings.model_copy(update={"worker_http_port": free_port()})
    runs = overlapping_runs(TEAMS)
    facts = seed(settings, runs=runs)
    for team in TEAMS:  # the oracle: each team's data alone, in a database of its own
        alone = settings.model_copy(update={"clickhouse_database": f"only_{team}"})
        seed(alone, now_ms=facts.now_ms, runs=tuple(r for r in runs if r.team == team))
    worker = worker_factory(settings)
    teams_yaml = tmp_path / "teams.yaml"
    teams_yaml.write_text(TEAMS_YAML)
    with grafana_double() as (grafana_url, grafana):
        synced = teams_sync(
            settings, teams_yaml, RUNSTREAM_GRAFANA_URL=grafana_url, RUNSTREAM_GRAFANA_PASSWORD="grafana-secret"
        )
        assert synced.returncode == 0, synced.stderr
        datasources = {
            org_id: body for (org_id, uid), body in grafana.datasources.items() if uid == "runstream-clickhouse"
        }
    by_user = {body["jsonData"]["username"]: body for body in datasources.values()}
    assert sorted(by_user) == ["team_nlp", "team_vision"]
    queries = {
        f"{uid}: {title}": sql
        for uid, title, sql in all_queries({}, time_from_ms=facts.start_ms, time_to_ms=facts.now_ms + 600_000)
        if uid in TEAM_DASHBOARDS
    }
    admin = client_settings(f"http://127.0.0.1:{settings.worker_http_port}", settings.state_dir, ENDPOINT_PASSWORD)
    # Each team's datasource: exactly what its data alone gives, query by query.
    for team in TEAMS:
        body = by_user[f"team_{team}"]
        password = body["secureJsonData"]["password"]
        assert password == PASSWORDS[team]
        as_team = go_client(go_request(body, queries, user=f"team_{team}", password=password))
        oracle = go_client(
            {**go_request(body, queries, user="runstream", password=ENDPOINT_PASSWORD), "database": f"only_{team}"}
        )
        assert as_team["ping"] == ""
        expected = {r["name"]: r for r in oracle["results"]}
        rows_seen = 0
        for result in as_team["results"]:
            assert "error" not in result, result
            want = expected[result["name"]]
            assert sorted(map(repr, plain(result["rows"]))) == sorted(map(repr, plain(want["rows"]))), result["name"]
            rows_seen += len(result["rows"])
        assert rows_seen > 100
    started = threading.Event()
    job = threading.Thread(target=train, args=(settings, started))
    job.start()
    assert started.wait(60)
    # While vision's job logs into project "shared", nlp's datasource sees nlp's rows only.
    while job.is_alive():
        body = by_user["team_nlp"]
        reply = go_client(go_request(body, queries, user="team_nlp", password=body["secureJsonData"]["password"]))
        assert reply["ping"] == ""
        for result in reply["results"]:
            assert "error" not in result, result
            assert "vision" not in str(result["rows"]) and "live-run" not in str(result["rows"]), result["name"]
    job.join()
    wait_caught_up(settings, timeout_s=120)
    client = connect(admin.model_copy(update={"clickhouse_database": "runstream"}))
    try:
        live = client.query("SELECT count() FROM metrics WHERE run_id = 'live-run'").result_rows
        assert live == [(LIVE_STEPS * 2,)]
        assert client.query("SELECT count() FROM metrics").result_rows == [
            (LIVE_STEPS * 2 + len(runs) * facts.steps * 2,)
        ]
    finally:
        client.close()
    vision = Endpoint(settings.worker_http_port, admin, user="team_vision", password=PASSWORDS["vision"])
    assert vision.request("INSERT INTO metrics (team) VALUES ('nlp')", {"database": "runstream"}).code == "164"
    # nlp leaves the file: its user is refused from the next request, while the worker runs on.
    teams_yaml.write_text(TEAMS_YAML.split("  - name: nlp", maxsplit=1)[0])
    assert teams_sync(settings, teams_yaml).returncode == 0
    nlp = Endpoint(settings.worker_http_port, admin, user="team_nlp", password=PASSWORDS["nlp"])
    assert nlp.request("SELECT count() FROM metrics", {"database": "runstream"}).code == "516"
    assert vision.query("SELECT count() FROM metrics WHERE team = 'vision'", database="runstream") == (
        f"{LIVE_STEPS * 2 + len(runs) // 2 * facts.steps * 2}\n"
    )
    assert worker.stop() == 0, worker.log_text()[-3000:]
