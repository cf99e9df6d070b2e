"""Team isolation on the embedded store's endpoint: each team's user sees exactly its own rows.

Two teams share every name (projects, run ids and names, groups, metric and param keys); only their
values differ (nlp's losses are near 1000), so a row of the other team is plain to see. The oracle
for what a team may see is the same data set written for that team alone into a database of its own
(``only_<team>``): every team dashboard query and every ``runstream.query`` call made as the team's
user must return exactly what the endpoint's own user gets from that database. Then a curious team
user tries every way around the filter, and sign-in failures are checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import runstream.query as rq
from runstream_core.clickhouse import connect
from runstream_core.endpoint_users import TeamUser, users_path, write_users
from runstream_grafana.dashboards import DASHBOARDS
from runstream_worker.endpoint.config import EndpointConfig
from runstream_worker.endpoint.server import EndpointServer
from tests.fixtures.endpoint import Endpoint, client_settings
from tests.fixtures.pipeline import ENDPOINT_PASSWORD
from tests.fixtures.seed import SeedFacts, overlapping_runs, seed
from tests.fixtures.settings import StackSettings as Settings
from tests.grafana.emulator import all_queries

TEAMS = ("vision", "nlp")
PASSWORDS = {"vision": "vision-pw", "nlp": "nlp-pw"}
NOW_MS = 1_767_225_600_000
TEAM_DASHBOARDS = {spec.uid for spec in DASHBOARDS if spec.folder == "team"}


@dataclass
class Store:
    path: Path
    state: Path
    facts: SeedFacts


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The two teams in ``runstream``, and each team alone in ``only_<team>``."""
    tmp = tmp_path_factory.mktemp("isolation")
    state = tmp / "state"
    settings = Settings(_env_file=None, state_dir=state, http_password=ENDPOINT_PASSWORD)  # type: ignore[call-arg]
    config = EndpointConfig.from_settings(settings, path=str(tmp / "db"), host="127.0.0.1", port=0, writable=True)
    server = EndpointServer(config).start()
    try:
        client = client_settings(server.url, state)
        runs = overlapping_runs(TEAMS)
        facts = seed(client, now_ms=NOW_MS, runs=runs)
        for team in TEAMS:
            alone = client.model_copy(update={"clickhouse_database": f"only_{team}"})
            seed(alone, now_ms=NOW_MS, runs=tuple(r for r in runs if r.team == team))
    finally:
        server.stop()
    write_users(users_path(settings), [TeamUser.create(team, PASSWORDS[team]) for team in TEAMS])
    return Store(tmp / "db", state, facts)


@pytest.fixture
def endpoint(endpoint_factory: Callable[..., Endpoint], store: Store, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("RUNSTREAM_STATE_DIR", str(store.state))  # the users file the sync wrote
    return endpoint_factory(store.path, state_dir=store.state)


def team_settings(endpoint: Endpoint, team: str, password: str | None = None) -> Settings:
    return endpoint.settings.model_copy(
        update={"clickhouse_user": f"team_{team}", "clickhouse_password": SecretStr(password or PASSWORDS[team])}
    )


def rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    client = connect(settings)
    try:
        return sorted((tuple(_plain(v) for v in row) for row in client.query(sql).result_rows), key=repr)
    finally:
        client.close()


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else round(value, 9)
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    return value


@pytest.mark.parametrize("team", TEAMS)
def test_every_team_dashboard_query_returns_the_teams_rows_alone(endpoint: Endpoint, store: Store, team: str) -> None:
    queries = [
        (uid, title, sql)
        for uid, title, sql in all_queries({}, time_from_ms=store.facts.start_ms, time_to_ms=NOW_MS + 600_000)
        if uid in TEAM_DASHBOARDS
    ]
    assert len(queries) > 20
    alone = endpoint.settings.model_copy(update={"clickhouse_database": f"only_{team}"})
    as_team = team_settings(endpoint, team)
    checked_rows = 0
    for uid, title, sql in queries:
        expected = rows(alone, sql)
        assert rows(as_team, sql) == expected, f"{uid}: {title}"
        checked_rows += len(expected)
    assert checked_rows > 100


@pytest.mark.parametrize("team", TEAMS)
def test_runstream_query_returns_the_teams_rows_alone(endpoint: Endpoint, store: Store, team: str) -> None:
    as_team = team_settings(endpoint, team)
    mine = [r for r in store.facts.runs if r.team == team]
    try:
        table = rq.runs(settings=as_team)
        assert sorted(table["run_id"]) == sorted(r.run_id for r in mine)
        assert set(table["team"]) == {team}
        assert sorted(table["metric.loss"].round(6)) == sorted(r.final_loss for r in mine)
        # The run ids are shared with the other team: the curve is this team's alone.
        curve = rq.curves("run-0-0", "loss", points=50, settings=as_team)
        assert 0 < len(curve) <= 50
        assert (curve["value"] < 900).all() if team == "vision" else (curve["value"] > 900).all()
        every = rq.sql("SELECT team, count() AS points FROM metrics GROUP BY team", settings=as_team)
        assert every.to_dict("records") == [{"team": team, "points": len(mine) * store.facts.steps * 2}]
        gpu = rq.hardware("run-0-1", "gpu.utilization_percent", settings=as_team)
        assert len(gpu) == store.facts.hardware_samples * store.facts.hardware_interval_ms // 60_000
    finally:
        rq.close()


# What a curious vision user tries. Each either answers as a server's row policies would (vision's
# rows only), or is refused: never a row of nlp.
PROBES: dict[str, str | tuple[Any, ...]] = {
    "SELECT team, count() FROM metrics GROUP BY team": "vision only",
    "SELECT DISTINCT team FROM runstream.runs": "vision only",
    "SELECT DISTINCT team FROM run_table": "vision only",
    "SELECT DISTINCT team FROM (SELECT * FROM metrics WHERE team = 'nlp' OR 1)": "vision only",
    "WITH x AS (SELECT team FROM metrics) SELECT DISTINCT team FROM x": "vision only",
    "SELECT count() FROM runs WHERE run_id IN (SELECT run_id FROM runs WHERE team = 'nlp')": ((0,),),
    "SELECT count() FROM metrics WHERE (team, project, run_id) IN (SELECT team, project, run_id FROM runs "
    "WHERE team = 'nlp')": ((0,),),
    "SELECT DISTINCT team FROM runs UNION ALL SELECT DISTINCT team FROM metric_summary": "vision only",
    "SELECT DISTINCT a.team, b.team FROM runs AS a INNER JOIN metrics AS b ON a.run_id = b.run_id": "vision only",
    "SELECT DISTINCT team FROM view(SELECT * FROM metrics)": "vision only",
    "SELECT max(value) < 900 FROM metrics WHERE key = 'loss'": ((1,),),
    "SELECT DISTINCT team FROM run_latest FINAL": "vision only",
    "SELECT * FROM merge('runstream', '.*')": "497",
    "SELECT * FROM remote('127.0.0.1', runstream.metrics)": "497",
    "SELECT * FROM loop(runstream, metrics) LIMIT 1": "497",
    "SELECT * FROM cluster('default', runstream.metrics)": "497",
    "SELECT * FROM file('x', 'CSV')": "497",
    "SELECT * FROM pipeline_health": "497",
    "SELECT * FROM runstream.schema_migrations": "497",
    "SELECT * FROM ingested_records": "497",
    "SELECT 1 WHERE 1 IN runstream.pipeline_health": "497",
    "SELECT * FROM system.parts": "497",
    "SELECT * FROM system.processes": "497",
    "SELECT * FROM system.query_log": "497",
    "SELECT * FROM default.anything": "497",
    "SELECT * FROM only_nlp.metrics": "497",
    "EXPLAIN SELECT * FROM metrics": "497",
    "SELECT joinGet('runstream.runs', 'team', 'x')": "497",
    "SELECT count() FROM metrics SETTINGS additional_table_filters = {'runstream.metrics': '1'}": "164",
    "SELECT count() FROM metrics SETTINGS readonly = 0": "164",
    "INSERT INTO metrics (team) VALUES ('vision')": "164",
    "DROP TABLE metrics": "164",
    "SET additional_table_filters = {}": "164",
    "SELECT name FROM system.tables WHERE database = 'runstream' AND name = 'metrics'": (("metrics",),),
    "SELECT count() > 0 FROM information_schema.columns WHERE table_name = 'metrics'": ((1,),),
}


def test_a_curious_team_user_never_sees_another_teams_row(endpoint: Endpoint) -> None:
    for sql, outcome in PROBES.items():
        reply = endpoint.request(sql, {"default_format": "TabSeparated"}, auth=("team_vision", PASSWORDS["vision"]))
        if isinstance(outcome, str) and outcome.isdigit():
            assert reply.code == outcome, f"{sql}: {reply.status} {reply.text}"
            continue
        assert reply.status == 200, f"{sql}: {reply.text}"
        assert "nlp" not in reply.text and "1000." not in reply.text, f"{sql}: {reply.text}"
        got = tuple(tuple(_cell(c) for c in line.split("\t")) for line in reply.text.splitlines())
        if outcome == "vision only":
            teams = {cell for row in got for cell in row if isinstance(cell, str)}
            assert teams == {"vision"}, f"{sql}: {got}"
        else:
            assert got == outcome, f"{sql}: {got}"
    # Settings in the URL that would lift the filter, and other databases.
    for params, code in (
        ({"additional_table_filters": "{}"}, "452"),
        ({"additional_result_filter": "1"}, "452"),
        ({"readonly": "0"}, "164"),
        ({"database": "only_nlp"}, "497"),
        ({"database": "system"}, "497"),
        ({"param_t": "pipeline_health"}, "497"),
    ):
        sql = "SELECT count() FROM {t:Identifier}" if "param_t" in params else "SELECT count() FROM metrics"
        reply = endpoint.request(sql, params, auth=("team_vision", PASSWORDS["vision"]))
        assert reply.code == code, f"{params}: {reply.text}"


def _cell(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def test_sign_in_failures_and_a_removed_team(endpoint: Endpoint, store: Store) -> None:
    count = "SELECT count() FROM metrics"
    for auth, code in (
        (("team_vision", "nlp-pw"), "516"),
        (("team_nobody", "pw"), "516"),
        (("team_vision", ""), "516"),
        (None, "194"),
    ):
        reply = endpoint.request(count, auth=auth)
        assert reply.code == code and "vision" not in reply.text.split("DB::Exception:")[0], reply.text
    assert endpoint.request(count, auth=("team_nlp", PASSWORDS["nlp"])).status == 200
    # A sync without nlp (what `runstream teams sync` writes): nlp is refused at its next request,
    # with no restart; vision and the endpoint's own user go on.
    write_users(users_path(endpoint.settings.model_copy(update={"state_dir": store.state})),
                [TeamUser.create("vision", PASSWORDS["vision"])])  # fmt: skip
    removed = endpoint.request(count, auth=("team_nlp", PASSWORDS["nlp"]))
    assert removed.code == "516", removed.text
    assert endpoint.request(count, auth=("team_vision", PASSWORDS["vision"])).status == 200
    assert endpoint.query(count, database="runstream") == f"{len(store.facts.runs) * store.facts.steps * 2}\n"
    # And it comes back when the team does.
    write_users(users_path(endpoint.settings.model_copy(update={"state_dir": store.state})),
                [TeamUser.create(team, PASSWORDS[team]) for team in TEAMS])  # fmt: skip
    assert endpoint.request(count, auth=("team_nlp", PASSWORDS["nlp"])).status == 200


@pytest.fixture
def unreadable_users(store: Store) -> Iterator[Path]:
    path = store.state / "http_users.json"
    saved = path.read_bytes()
    path.write_text("{not json")
    yield path
    path.write_bytes(saved)


def test_a_broken_users_file_signs_no_team_user_in(endpoint: Endpoint, unreadable_users: Path) -> None:
    reply = endpoint.request("SELECT 1", auth=("team_vision", PASSWORDS["vision"]))
    assert reply.code == "516", reply.text
    assert endpoint.query("SELECT 1") == "1\n"  # the endpoint's own user is unaffected
