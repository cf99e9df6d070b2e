"""``teams sync`` against a local HTTP double of Grafana's API (and the real engine for discovery).

First run: everything is created. Second run with the same file: not one write request, everything
reported unchanged. Then each kind of drift produces exactly the write that repairs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from runstream_core.clickhouse import connect
from runstream_grafana.teams import clickhouse_access as access
from runstream_grafana.teams.config import TeamsConfig, parse_teams
from runstream_grafana.teams.grafana_api import GrafanaError
from runstream_grafana.teams.grafana_sync import Change, GrafanaSyncError, password_fingerprint
from runstream_grafana.teams.secrets import SyncSecrets
from runstream_grafana.teams.sync import SyncResult, sync_teams
from tests.fixtures.settings import StackSettings as Settings
from tests.teams.conftest import RecordingSession, write_dashboards
from tests.teams.grafana_double import GrafanaState, Request, grafana_double

TEAMS_YAML = """
platform_admins: [ops@example.com]
teams:
  - name: vision
    display_name: Vision
    members:
      - {login: ada@example.com, role: Admin}
      - {login: grace, role: Editor}
  - name: nlp
    display_name: NLP
    members:
      - {login: alan@example.com, role: Editor}
      - {login: barbara@example.com}
"""

PASSWORDS = {"vision": "vision-pw", "nlp": "nlp-pw"}


@pytest.fixture
def grafana() -> Iterator[tuple[str, GrafanaState]]:
    with grafana_double() as (url, state):
        # Accounts as sign-in made them; Grafana puts new users in the main org as Viewers.
        for login, in_main in (("ops", True), ("ada", True), ("grace", True), ("alan", True), ("barbara", False)):
            state.add_user(login, f"{login}@example.com", main_org_role="Viewer" if in_main else None)
        state.add_user("zed", "zed@example.com", main_org_role="Editor")  # not in teams.yaml: left alone
        yield url, state


class Harness:
    def __init__(self, url: str, state: GrafanaState, schema: Settings, dashboards: Path) -> None:
        self.state = state
        self.schema = schema
        self.dashboards = dashboards
        self.settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            clickhouse_url=schema.clickhouse_url,
            grafana_url=url,
            grafana_password=SecretStr("grafana-secret"),
            grafana_clickhouse_url="http://clickhouse:8123",
        )
        self.executed: list[str] = []

    def run(
        self,
        config: TeamsConfig,
        *,
        passwords: dict[str, str] = PASSWORDS,
        dry_run: bool = False,
        grafana_password: str = "grafana-secret",
    ) -> SyncResult:
        secrets = SyncSecrets({t: SecretStr(p) for t, p in passwords.items()}, "admin", SecretStr(grafana_password))
        self.state.requests.clear()
        client = connect(self.schema)
        try:
            session = RecordingSession(client)
            result = sync_teams(
                config, self.settings, secrets, dashboards_dir=self.dashboards, dry_run=dry_run, clickhouse=session
            )
        finally:
            client.close()
        self.executed = session.executed
        assert self.state.unknown_routes == []
        return result


@pytest.fixture
def harness(grafana: tuple[str, GrafanaState], migrated: Settings, tmp_path: Path) -> Harness:
    return Harness(*grafana, migrated, write_dashboards(tmp_path / "dashboards"))


def actions(result: SyncResult) -> list[tuple[str, str, str, str]]:
    return [(c.scope, c.kind, c.name, c.action) for c in result.grafana]


FIRST_RUN = [
    ("Vision", "organization", "Vision", "create"),
    ("Vision", "member", "admin", "unchanged"),
    ("Vision", "member", "ada@example.com", "create"),
    ("Vision", "member", "grace", "create"),
    ("Vision", "member", "ops@example.com", "create"),
    ("Vision", "datasource", "runstream-clickhouse", "create"),
    ("Vision", "folder", "runstream", "create"),
    ("Vision", "dashboard", "runstream-hardware (Hardware)", "create"),
    ("Vision", "dashboard", "runstream-runs (Runs)", "create"),
    ("NLP", "organization", "NLP", "create"),
    ("NLP", "member", "admin", "unchanged"),
    ("NLP", "member", "alan@example.com", "create"),
    ("NLP", "member", "barbara@example.com", "create"),
    ("NLP", "member", "ops@example.com", "create"),
    ("NLP", "datasource", "runstream-clickhouse", "create"),
    ("NLP", "folder", "runstream", "create"),
    ("NLP", "dashboard", "runstream-hardware (Hardware)", "create"),
    ("NLP", "dashboard", "runstream-runs (Runs)", "create"),
    ("main organization", "member", "ops@example.com", "update"),
    ("main organization", "member", "ada@example.com", "remove"),
    ("main organization", "member", "alan@example.com", "remove"),
    ("main organization", "member", "grace", "remove"),
    ("main organization", "folder", "runstream-admin", "create"),
    ("main organization", "dashboard", "runstream-pipeline (Pipeline health)", "create"),
]


def test_first_run_creates_everything_and_second_run_writes_nothing(harness: Harness) -> None:
    config = parse_teams(TEAMS_YAML)
    first = harness.run(config)
    state = harness.state
    assert actions(first) == FIRST_RUN

    assert state.orgs == {1: "Main Org.", 2: "Vision", 3: "NLP"}
    assert state.roles("Vision") == {"admin": "Admin", "ops": "Admin", "ada": "Admin", "grace": "Editor"}
    assert state.roles("NLP") == {"admin": "Admin", "ops": "Admin", "alan": "Editor", "barbara": "Viewer"}
    # Team members left the main org (its datasource reads every team); others were not touched.
    assert state.roles("Main Org.") == {"admin": "Admin", "ops": "Admin", "zed": "Editor"}
    removed = [(c.name, c.detail) for c in first.grafana if c.action == "remove"]
    assert removed == [(login, "team member") for login in ("ada@example.com", "alan@example.com", "grace")]

    vision_ds = {k: v for k, v in state.datasources[(2, "runstream-clickhouse")].items() if k != "id"}
    assert vision_ds == {
        "uid": "runstream-clickhouse",
        "name": "runstream ClickHouse",
        "type": "grafana-clickhouse-datasource",
        "access": "proxy",
        "isDefault": True,
        "jsonData": {
            "host": "clickhouse",
            "port": 8123,
            "protocol": "http",
            "secure": False,
            "defaultDatabase": "runstream",
            "username": "team_vision",
            "runstreamPasswordFingerprint": password_fingerprint("vision", "vision-pw"),
        },
        "secureJsonData": {"password": "vision-pw"},
    }
    nlp_ds = state.datasources[(3, "runstream-clickhouse")]
    assert (nlp_ds["jsonData"]["username"], nlp_ds["secureJsonData"]) == ("team_nlp", {"password": "nlp-pw"})
    assert sorted(state.datasources) == [(2, "runstream-clickhouse"), (3, "runstream-clickhouse")]
    # Every organization-scoped request went to the organization it was meant for.
    assert {r.org for r in state.requests if r.path.startswith("/api/datasources")} == {2, 3}

    assert {key: f["title"] for key, f in state.folders.items()} == {
        (2, "runstream"): "runstream",
        (3, "runstream"): "runstream",
        (1, "runstream-admin"): "runstream admin",
    }
    assert {key: d["folderUid"] for key, d in state.dashboards.items()} == {
        (2, "runstream-hardware"): "runstream",
        (2, "runstream-runs"): "runstream",
        (3, "runstream-hardware"): "runstream",
        (3, "runstream-runs"): "runstream",
        (1, "runstream-pipeline"): "runstream-admin",
    }
    runs = state.dashboards[(2, "runstream-runs")]["dashboard"]
    assert {k: v for k, v in runs.items() if k not in {"id", "version"}} == {
        "uid": "runstream-runs",
        "title": "Runs",
        "schemaVersion": 41,
        "panels": [{"type": "table", "datasource": {"uid": "runstream-clickhouse"}}],
    }

    # ClickHouse: the shared statements, then each team's, generated for the real schema.
    with_schema = connect(harness.schema)
    try:
        objects = access.discover(RecordingSession(with_schema), "runstream")
    finally:
        with_schema.close()
    expected_sql = [s.sql for s in access.shared_statements(objects, "runstream")]
    for team in ("vision", "nlp"):
        expected_sql += [s.sql for s in access.team_statements(team, PASSWORDS[team], objects, "runstream")]
    assert harness.executed == expected_sql
    assert len(expected_sql) == 2 + len(objects.tables) + 2 * (3 + len(objects.tables))

    second = harness.run(config)
    assert state.writes() == []
    assert {c.action for c in second.grafana} == {"unchanged"}
    assert second.lines()[-1] == (
        "grafana: 0 created, 0 updated, 0 removed, 21 unchanged; clickhouse: applied shared access and 2 team user(s)"
    )


def test_a_changed_role_is_exactly_one_update(harness: Harness) -> None:
    harness.run(parse_teams(TEAMS_YAML))
    grace = harness.state.user_by_login("grace")
    assert grace is not None
    result = harness.run(
        parse_teams(TEAMS_YAML.replace("{login: grace, role: Editor}", "{login: grace, role: Viewer}"))
    )
    assert harness.state.writes() == [Request("PATCH", f"/api/orgs/2/users/{grace['id']}", None, {"role": "Viewer"})]
    assert [c for c in result.grafana if c.action != "unchanged"] == [
        Change("Vision", "member", "grace", "update", "Editor -> Viewer")
    ]
    assert harness.state.roles("Vision")["grace"] == "Viewer"


def test_drift_is_repaired_with_exactly_the_needed_writes(harness: Harness) -> None:
    config = parse_teams(TEAMS_YAML)
    harness.run(config)
    state = harness.state
    zed = state.user_by_login("zed")
    assert zed is not None
    state.members[2][zed["id"]] = "Viewer"  # someone added by hand to Vision
    state.dashboards[(3, "runstream-runs")]["dashboard"]["title"] = "Edited in the UI"
    state.folders[(2, "runstream")]["title"] = "renamed"

    result = harness.run(config, passwords={"vision": "rotated", "nlp": "nlp-pw"})
    assert [(r.method, r.path, r.org) for r in state.writes()] == [
        ("DELETE", f"/api/orgs/2/users/{zed['id']}", None),
        ("PUT", "/api/datasources/uid/runstream-clickhouse", 2),
        ("PUT", "/api/folders/runstream", 2),
        ("POST", "/api/dashboards/db", 3),
    ]
    assert [(c.scope, c.kind, c.name, c.action, c.detail) for c in result.grafana if c.action != "unchanged"] == [
        ("Vision", "member", "zed", "remove", "not in teams.yaml"),
        ("Vision", "datasource", "runstream-clickhouse", "update", "jsonData.runstreamPasswordFingerprint"),
        ("Vision", "folder", "runstream", "update", "title 'renamed' -> 'runstream'"),
        ("NLP", "dashboard", "runstream-runs (Runs)", "update", "content"),
    ]
    assert state.datasources[(2, "runstream-clickhouse")]["secureJsonData"] == {"password": "rotated"}
    assert state.dashboards[(3, "runstream-runs")]["dashboard"]["title"] == "Runs"
    assert "zed" in state.roles("Main Org.")  # removed from Vision only; still has the main org


def test_dry_run_reports_the_plan_and_changes_nothing(harness: Harness) -> None:
    result = harness.run(parse_teams(TEAMS_YAML), dry_run=True)
    assert actions(result) == FIRST_RUN
    assert harness.state.writes() == []
    assert harness.executed == []
    assert harness.state.orgs == {1: "Main Org."}
    lines = result.lines(with_sql=True)
    assert lines[-2:] == [
        "grafana: 18 to create, 1 to update, 3 to remove, 2 unchanged; "
        "clickhouse: would apply shared access and 2 team user(s)",
        "dry run: nothing was changed",
    ]
    assert "    ALTER USER `team_vision` IDENTIFIED WITH sha256_password BY '******' " in "\n".join(lines)
    assert "vision-pw" not in "\n".join(lines)


def test_dashboards_provisioned_from_files_are_left_to_them(harness: Harness) -> None:
    state = harness.state
    state.folders[(1, "runstream-admin")] = {
        "uid": "runstream-admin",
        "title": "runstream admin",
        "id": 7,
        "version": 1,
    }
    provisioned = {"uid": "runstream-pipeline", "title": "Pipeline (from files)", "id": 8, "version": 1}
    state.dashboards[(1, "runstream-pipeline")] = {
        "dashboard": provisioned,
        "folderUid": "runstream-admin",
        "provisioned": True,
    }
    result = harness.run(parse_teams(TEAMS_YAML))
    main = [c for c in result.grafana if c.scope == "main organization" and c.kind in {"folder", "dashboard"}]
    assert main == [
        Change("main organization", "folder", "runstream-admin", "unchanged"),
        Change(
            "main organization",
            "dashboard",
            "runstream-pipeline (Pipeline health)",
            "unchanged",
            "provisioned from files",
        ),
    ]
    assert [r for r in state.writes() if r.org == 1] == []
    assert state.dashboards[(1, "runstream-pipeline")]["dashboard"] == provisioned


def test_no_dashboard_files_still_syncs(harness: Harness, tmp_path: Path) -> None:
    harness.dashboards = tmp_path / "missing"
    result = harness.run(parse_teams(TEAMS_YAML))
    assert [c for c in result.grafana if c.kind == "dashboard"] == []
    assert harness.state.dashboards == {}
    assert (2, "runstream") in harness.state.folders
    assert (1, "runstream-admin") not in harness.state.folders


def test_a_member_without_a_grafana_account_stops_before_any_change(harness: Harness) -> None:
    config = parse_teams(TEAMS_YAML.replace("barbara@example.com", "nobody@example.com"))
    with pytest.raises(GrafanaSyncError, match=r"no Grafana user for: nobody@example.com; "):
        harness.run(config)
    assert harness.state.writes() == []
    assert harness.executed == []


def test_wrong_grafana_credentials_stop_before_any_change(harness: Harness) -> None:
    with pytest.raises(
        GrafanaError,
        match=r"look up user .* failed \(401\): Invalid username or password; check RUNSTREAM_GRAFANA_USER",
    ):
        harness.run(parse_teams(TEAMS_YAML), grafana_password="wrong")
    assert harness.state.writes() == []
    assert harness.executed == []


def test_on_a_cluster_every_clickhouse_statement_runs_on_every_server(harness: Harness) -> None:
    """RUNSTREAM_CLICKHOUSE_CLUSTER reaches every statement of the sync, and only ClickHouse's side changes."""
    harness.settings = harness.settings.model_copy(
        update={"clickhouse_url": "http://clickhouse-01:8123", "clickhouse_cluster": "runstream"}
    )
    result = harness.run(parse_teams(TEAMS_YAML))
    assert actions(result) == FIRST_RUN
    with_schema = connect(harness.schema)
    try:
        objects = access.discover(RecordingSession(with_schema), "runstream")
    finally:
        with_schema.close()
    expected = [s.sql for s in access.shared_statements(objects, "runstream", "runstream")]
    for team in ("vision", "nlp"):
        expected += [s.sql for s in access.team_statements(team, PASSWORDS[team], objects, "runstream", "runstream")]
    assert harness.executed == expected
    assert all(sql.count(" ON CLUSTER `runstream`") == 1 for sql in harness.executed)
