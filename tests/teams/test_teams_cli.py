"""``runstream teams sync`` run as a user runs it; every refusal happens before any request is made."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream_core.endpoint_users import read_users
from tests.teams.conftest import write_dashboards
from tests.teams.grafana_double import GrafanaState, grafana_double
from tests.test_cli import runstream

TEAMS_YAML = """
teams:
  - name: vision
    display_name: Vision
    members: [{login: ada, role: Editor}]
  - name: nlp
    display_name: NLP
"""


@pytest.fixture
def grafana() -> Iterator[tuple[str, GrafanaState]]:
    with grafana_double() as (url, state):
        state.add_user("ada", "ada@example.com")
        yield url, state


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An embedded database migrated by the command itself (its own process holds the path)."""
    url = f"chdb://{tmp_path_factory.mktemp('cli') / 'clickhouse'}"
    result = runstream("migrate", env={"RUNSTREAM_CLICKHOUSE_URL": url})
    assert result.returncode == 0, result.stderr
    return url


def environment(grafana_url: str, clickhouse_url: str, **extra: str) -> dict[str, str]:
    return {
        "RUNSTREAM_CLICKHOUSE_URL": clickhouse_url,
        "RUNSTREAM_GRAFANA_URL": grafana_url,
        "RUNSTREAM_GRAFANA_PASSWORD": "grafana-secret",
        "RUNSTREAM_GRAFANA_CLICKHOUSE_URL": "http://clickhouse:8123",
        "RUNSTREAM_TEAM_VISION_CLICKHOUSE_PASSWORD": "vision-pw",
        **extra,
    }


def test_dry_run_prints_the_plan_and_sql_without_writing(
    grafana: tuple[str, GrafanaState], schema: str, tmp_path: Path
) -> None:
    url, state = grafana
    (tmp_path / "teams.yaml").write_text(TEAMS_YAML)
    (tmp_path / "secrets.env").write_text("RUNSTREAM_TEAM_NLP_CLICKHOUSE_PASSWORD=nlp-pw\n")
    write_dashboards(tmp_path / "dashboards")
    result = runstream(
        "teams",
        "sync",
        str(tmp_path / "teams.yaml"),
        "--secrets",
        str(tmp_path / "secrets.env"),
        "--dashboards",
        str(tmp_path / "dashboards"),
        "--dry-run",
        env=environment(url, schema, RUNSTREAM_STATE_DIR=str(tmp_path / "state")),
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "state" / "http_users.json").exists()
    lines = result.stdout.splitlines()
    state_dir = tmp_path / "state"
    assert (
        f"apply     clickhouse user team_nlp: password (salted hash) in {state_dir / 'http_users.json'}; reads the "
        "tables with a team column, cut to team = 'nlp' by the endpoint"
    ) in lines
    assert "create    grafana    organization Vision in Vision" in lines
    assert "create    grafana    member ada in Vision (Editor)" in lines
    assert "create    grafana    datasource runstream-clickhouse in NLP (user team_nlp)" in lines
    pipeline = "dashboard runstream-pipeline (Pipeline health) in main organization (runstream-pipeline.json)"
    assert f"create    grafana    {pipeline}" in lines
    assert lines[-1] == "dry run: nothing was changed"
    assert "vision-pw" not in result.stdout and "nlp-pw" not in result.stdout
    assert state.writes() == []


def test_real_sync_on_the_embedded_store_writes_the_endpoints_users(
    grafana: tuple[str, GrafanaState], schema: str, tmp_path: Path
) -> None:
    url, state = grafana
    (tmp_path / "teams.yaml").write_text(TEAMS_YAML)
    users_file = tmp_path / "state" / "http_users.json"
    env = environment(
        url, schema, RUNSTREAM_TEAM_NLP_CLICKHOUSE_PASSWORD="nlp-pw", RUNSTREAM_STATE_DIR=str(tmp_path / "state")
    )
    result = runstream("teams", "sync", str(tmp_path / "teams.yaml"), env=env)
    assert result.returncode == 0, result.stderr
    assert f"team user(s) written to {users_file}" in result.stdout
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    users = read_users(users_file)
    assert sorted(users) == ["team_nlp", "team_vision"]
    assert users["team_vision"].matches("vision-pw") and not users["team_vision"].matches("nlp-pw")
    assert "vision-pw" not in users_file.read_text() and "nlp-pw" not in users_file.read_text()
    assert state.writes()  # and Grafana was synced too
    # A team removed from the file loses its user; without Grafana settings only ClickHouse is synced.
    (tmp_path / "teams.yaml").write_text(TEAMS_YAML.split("  - name: nlp", maxsplit=1)[0])
    env.pop("RUNSTREAM_GRAFANA_PASSWORD")
    requests_before = len(state.requests)
    again = runstream("teams", "sync", str(tmp_path / "teams.yaml"), env=env)
    assert again.returncode == 0, again.stderr
    assert "grafana: skipped, RUNSTREAM_GRAFANA_PASSWORD is not set (ClickHouse side only)" in again.stdout
    assert sorted(read_users(users_file)) == ["team_vision"]
    assert len(state.requests) == requests_before


def test_missing_secrets_are_named_and_nothing_is_requested(
    grafana: tuple[str, GrafanaState], schema: str, tmp_path: Path
) -> None:
    url, state = grafana
    (tmp_path / "teams.yaml").write_text(TEAMS_YAML)
    result = runstream("teams", "sync", str(tmp_path / "teams.yaml"), "--dry-run", env=environment(url, schema))
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "missing secrets, set them in the environment (or a --secrets file): RUNSTREAM_TEAM_NLP_CLICKHOUSE_PASSWORD"
    )
    assert state.requests == []


def test_invalid_teams_file_names_the_field_and_nothing_is_requested(
    grafana: tuple[str, GrafanaState], schema: str, tmp_path: Path
) -> None:
    url, state = grafana
    (tmp_path / "teams.yaml").write_text(TEAMS_YAML.replace("role: Editor", "role: Owner"))
    result = runstream("teams", "sync", str(tmp_path / "teams.yaml"), env=environment(url, schema))
    assert result.returncode == 1
    assert "teams[0].members[0].role: Input should be 'Viewer', 'Editor' or 'Admin'" in result.stderr
    assert state.requests == []


def test_a_cluster_on_the_embedded_store_is_refused_and_nothing_is_requested(
    grafana: tuple[str, GrafanaState], schema: str, tmp_path: Path
) -> None:
    url, state = grafana
    (tmp_path / "teams.yaml").write_text(TEAMS_YAML)
    env = environment(url, schema, RUNSTREAM_TEAM_NLP_CLICKHOUSE_PASSWORD="nlp-pw")
    result = runstream("teams", "sync", str(tmp_path / "teams.yaml"), env={**env, "RUNSTREAM_CLICKHOUSE_CLUSTER": "c1"})
    assert result.returncode == 1
    assert "the cluster c1 needs ClickHouse servers (http(s)://host:8123)" in result.stderr
    teams_file = str(tmp_path / "teams.yaml")
    hostile = runstream("teams", "sync", teams_file, env={**env, "RUNSTREAM_CLICKHOUSE_CLUSTER": "c;1"})
    assert hostile.returncode != 0
    assert "unsafe cluster name 'c;1'" in hostile.stderr
    assert state.requests == []
