"""The generated Grafana dashboards: committed JSON, file validity, and every query run on seeded data.

Every panel target and query variable runs against embedded ClickHouse (chDB) seeded with the
multi-team data set, its macros and variables expanded as Grafana and the ClickHouse plugin would
(time range: the seed's start to now). Columns are checked for every query, values for the panels
whose figures follow from the seed's facts.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from runstream_cli.main import main
from runstream_core.clickhouse import connect
from runstream_core.errors import UsageError
from runstream_core.events import MetricBatch, RunInfo, RunStart, RunStatus
from runstream_grafana.dashboards import (
    ALL,
    ALL_VALUE,
    DASHBOARDS,
    dashboard_queries,
    differences,
    option_value,
    rendered,
)
from runstream_grafana.dashboards.clickhouse_query import DATASOURCE_UID, PLUGIN_ID, ClickHouseQuery
from runstream_grafana.dashboards.run_comparison import MAX_POINTS_PER_CURVE
from runstream_grafana.dashboards.variables import team_and_project
from runstream_worker.rows import RowBatch
from runstream_worker.sink import ClickHouseSink
from tests.fixtures.seed import ALERT_AFTER_MS, ALERT_RULE, SeedFacts, SeedRun, loss_at, seed
from tests.fixtures.settings import StackSettings as Settings
from tests.grafana.emulator import QueryContext, all_queries, expand
from tests.grafana.helpers import run

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "deploy" / "grafana" / "dashboards"
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"

OVERVIEW, COMPARISON, HARDWARE = "runstream-team-overview", "runstream-run-comparison", "runstream-hardware"
PIPELINE, CROSS_TEAM = "runstream-pipeline-health", "runstream-cross-team"
CHOSEN_RUNS = ["vision-0-0", "vision-0-1"]
# A short curve in a team of its own, so the overlay's raw-rows path has data to read.
SHORT_TEAM, SHORT_NAME, SHORT_STEPS = "robotics", "short run", 300

TIME_SERIES = ("time", "series", "value")
OPTION = ("value", "text")  # every variable query: the option's value (its text, URL-encoded), then its text
ANNOTATION = ("time", "title", "text", "tags")  # what the ClickHouse plugin reads as an annotation
ALERT_COLUMNS = (
    "ts",
    "level",
    "event",
    "rule",
    "kind",
    "subject",
    "project",
    "run_id",
    "title",
    "text",
    "delivery",
)
EXPECTED_COLUMNS: dict[tuple[str, str], tuple[str, ...]] = {
    (OVERVIEW, "variable team"): OPTION,
    (OVERVIEW, "variable project"): OPTION,
    (OVERVIEW, "variable group"): OPTION,
    (OVERVIEW, "variable metric"): OPTION,
    (OVERVIEW, "Runs by state"): ("status", "runs"),
    (OVERVIEW, "GPU utilization distribution"): ("utilization", "gpu_minutes"),
    (OVERVIEW, "GPU-hours this week by project and user"): (
        "project",
        "user",
        "gpu_hours",
        "busy_gpu_hours",
        "busy_percent",
    ),
    (OVERVIEW, "Active runs: latest step and ${metric:text}"): (
        "name",
        "run_id",
        "project",
        "user",
        "started_at",
        "step",
        "last_value",
        "stalled",
    ),
    (OVERVIEW, "Failed and crashed runs"): (
        "name",
        "run_id",
        "project",
        "user",
        "status",
        "started_at",
        "ended_at",
        "last_step",
    ),
    (OVERVIEW, "annotation Alerts"): ANNOTATION,
    (OVERVIEW, "Alerts"): ALERT_COLUMNS,
    (COMPARISON, "variable team"): OPTION,
    (COMPARISON, "variable project"): OPTION,
    (COMPARISON, "variable run"): OPTION,
    (COMPARISON, "variable metric"): OPTION,
    (COMPARISON, "variable group_by"): OPTION,
    (COMPARISON, "${metric:text} by step"): ("step", "series", "value"),
    (COMPARISON, "Params of the chosen runs"): ("param", "run", "value", "differs"),
    (COMPARISON, "${metric:text} of the chosen runs"): (
        "run",
        "points",
        "min_value",
        "max_value",
        "last_value",
        "last_step",
    ),
    (COMPARISON, "Leaderboard: best ${metric:text}"): ("name", "run_id", "project", "user", "status", "value", "step"),
    (COMPARISON, "annotation Alerts"): ANNOTATION,
    (COMPARISON, "Alerts"): ALERT_COLUMNS,
    (HARDWARE, "variable team"): OPTION,
    (HARDWARE, "variable project"): OPTION,
    (HARDWARE, "variable run"): OPTION,
    (HARDWARE, "variable host"): OPTION,
    (HARDWARE, "Idle GPUs: under 10% for the last 10 minutes"): (
        "run_id",
        "run",
        "user",
        "host",
        "device",
        "max_utilization",
        "mean_utilization",
        "samples",
    ),
    (HARDWARE, "GPU utilization"): TIME_SERIES,
    (HARDWARE, "GPU memory used"): TIME_SERIES,
    (HARDWARE, "GPU power"): TIME_SERIES,
    (HARDWARE, "GPU temperature"): TIME_SERIES,
    (HARDWARE, "CPU"): TIME_SERIES,
    (HARDWARE, "RAM used"): TIME_SERIES,
    (PIPELINE, "variable worker"): OPTION,
    (PIPELINE, "Ingest rate"): ("time", "points_per_s", "records_per_s", "hardware_readings_per_s"),
    (PIPELINE, "Consumer lag"): ("time", "worker", "lag"),
    (PIPELINE, "Dead letters in range"): ("dead_letters", "replays", "crashed_runs"),
    (PIPELINE, "Dead letters"): ("time", "dead_letters"),
    (PIPELINE, "Batch latency"): ("time", "p50_ms", "max_ms"),
    (CROSS_TEAM, "variable team"): OPTION,
    (CROSS_TEAM, "variable project"): OPTION,
    (CROSS_TEAM, "variable metric"): OPTION,
    (CROSS_TEAM, "Usage by team"): ("team", "runs", "running", "points", "gpu_hours"),
    (CROSS_TEAM, "GPU-hours by team"): ("time", "team", "gpu_hours"),
    (CROSS_TEAM, "Best ${metric:text} per team and project"): ("team", "project", "best_value", "best_run", "runs"),
}


def add_short_run(settings: Settings, facts: SeedFacts) -> None:
    info = RunInfo(
        run_id="robotics-short",
        team=SHORT_TEAM,
        project="robotics-main",
        user="hopper",
        name=SHORT_NAME,
        started_at_ms=facts.start_ms,
    )
    rows = RowBatch()
    rows.add_run_start(RunStart(run=info, params={"lr": "0.01"}, producer_id="p-short", seq=0))
    rows.add_metrics(
        MetricBatch(
            producer_id="p-short",
            seq=1,
            run_id=info.run_id,
            team=info.team,
            project=info.project,
            keys=["loss"] * SHORT_STEPS,
            steps=list(range(SHORT_STEPS)),
            ts_ms=[facts.start_ms + 1000 * s for s in range(SHORT_STEPS)],
            values=[1 / (s + 1) for s in range(SHORT_STEPS)],
        )
    )
    sink = ClickHouseSink(settings)
    try:
        sink.write(rows, token="short-run")
    finally:
        sink.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, SeedFacts]]:
    path = tmp_path_factory.mktemp("grafana") / "clickhouse"
    settings = Settings(clickhouse_url=f"chdb://{path}", _env_file=None)  # type: ignore[call-arg]
    facts = seed(settings)
    add_short_run(settings, facts)
    client = connect(settings)
    yield client, facts
    client.close()


@pytest.fixture(scope="module")
def client(seeded: tuple[Client, SeedFacts]) -> Client:
    return seeded[0]


@pytest.fixture(scope="module")
def facts(seeded: tuple[Client, SeedFacts]) -> SeedFacts:
    return seeded[1]


@pytest.fixture(scope="module")
def context(facts: SeedFacts) -> QueryContext:
    """Team vision and two of its runs, from the seed's start to now, one-minute interval."""
    return QueryContext(
        time_from_ms=facts.start_ms,
        time_to_ms=facts.now_ms,
        values={"team": option_value("vision"), "run": [option_value(r) for r in CHOSEN_RUNS]},
    )


def vision(facts: SeedFacts) -> list[SeedRun]:
    return facts.of_team("vision")


def gpu_minutes(facts: SeedFacts) -> int:
    """Distinct minutes each seeded GPU has readings in."""
    start = facts.now_ms - facts.hardware_samples * facts.hardware_interval_ms
    return len({(start + s * facts.hardware_interval_ms) // 60_000 for s in range(facts.hardware_samples)})


def gpu_busy_percent(run: SeedRun, gpu: int, sample: int) -> float:
    """The seed's utilization reading (an idle GPU reads 3 %)."""
    return 3.0 if (run.idle_gpu and gpu == 1) else 80.0 + (sample % 10)


# --- generated files -------------------------------------------------------------------------


def test_committed_json_is_byte_for_byte_what_the_generator_writes() -> None:
    files = rendered()
    assert sorted(str(p) for p in files) == [
        "admin/runstream-cross-team.json",
        "admin/runstream-pipeline-health.json",
        "team/runstream-hardware.json",
        "team/runstream-run-comparison.json",
        "team/runstream-team-overview.json",
    ]
    for path, text in files.items():
        assert (DASHBOARD_DIR / path).read_bytes() == text.encode("utf-8"), f"{path}: run `runstream dashboards`"
    assert differences(DASHBOARD_DIR) == []


def test_cli_writes_the_files_and_check_lists_each_that_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def cli(*args: str) -> int:
        with pytest.raises(SystemExit) as exited:
            main(["dashboards", "--out", str(tmp_path), *args])
        return int(exited.value.code or 0)

    assert cli("--check") == 1
    assert capsys.readouterr().err.count("differs from the generator") == len(DASHBOARDS)
    assert cli() == 0
    assert cli("--check") == 0
    for path, text in rendered().items():
        assert (tmp_path / path).read_text(encoding="utf-8") == text
    edited = tmp_path / "team" / f"{OVERVIEW}.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Runs by state", "Runs per state"), encoding="utf-8")
    stale = tmp_path / "admin" / "old-dashboard.json"
    stale.write_text("{}", encoding="utf-8")
    capsys.readouterr()
    assert cli("--check") == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{tmp_path / p} differs from the generator: run `runstream dashboards`"
        for p in sorted([Path("admin/old-dashboard.json"), Path(f"team/{OVERVIEW}.json")])
    ]
    assert cli() == 0
    assert not stale.exists()
    assert differences(tmp_path) == []


def committed_dashboards() -> list[tuple[Path, dict[str, Any]]]:
    paths = sorted(DASHBOARD_DIR.glob("*/*.json"))
    assert len(paths) == len(DASHBOARDS)
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in paths]


@pytest.mark.parametrize(("path", "board"), committed_dashboards(), ids=lambda v: getattr(v, "name", ""))
def test_dashboard_file_is_valid_for_grafana_and_the_clickhouse_plugin(path: Path, board: dict[str, Any]) -> None:
    assert board["uid"] == path.stem and path.parent.name in {"team", "admin"}
    assert {(s.uid, s.folder) for s in DASHBOARDS} >= {(board["uid"], path.parent.name)}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == PLUGIN_ID
    assert datasource["current"]["value"] == DATASOURCE_UID
    ref = {"type": PLUGIN_ID, "uid": "${datasource}"}
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == ref, variable["name"]
            assert isinstance(variable["query"], str) and variable["query"].startswith("SELECT"), variable["name"]
            if variable["multi"]:
                assert variable["includeAll"] and variable["allValue"] == ALL_VALUE, variable["name"]
    for panel in board["panels"]:
        assert panel["datasource"] == ref, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ref
            assert target["editorType"] == "sql"
            assert target["refId"] == "A"
            assert target["rawSql"].strip()
            assert (target["queryType"], target["format"]) in {("table", 1), ("timeseries", 0)}, panel["title"]
            assert target["pluginVersion"] >= "4"


# Grafana's interpolation pattern (variableRegex): $name, [[name:format]], ${name.fieldPath:format}.
GRAFANA_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")


def variable_uses(text: str) -> list[tuple[str, str | None, str | None]]:
    """(name, field path, format) of every variable reference Grafana would interpolate in ``text``."""
    return [
        (m.group(1) or m.group(2) or m.group(4), m.group(5), m.group(3) or m.group(6))
        for m in GRAFANA_VARIABLE.finditer(text)
    ]


def strings(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item, key)
    elif isinstance(node, str):
        yield key, node


@pytest.mark.parametrize(("path", "board"), committed_dashboards(), ids=lambda v: getattr(v, "name", ""))
def test_sql_reads_variables_only_percent_encoded(path: Path, board: dict[str, Any]) -> None:
    """Any other format lets a name chosen in a variable (a producer's, or typed) rewrite the SQL."""
    names = {v["name"] for v in board["templating"]["list"]}
    sql = [t["rawSql"] for p in board["panels"] for t in p["targets"]]
    sql += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    for text in sql:
        for name, field_path, fmt in variable_uses(text):
            if name.startswith("__") and fmt is None and field_path is None:
                continue  # the plugin's macros and Grafana's $__from / $__to
            assert (name in names, field_path, fmt) == (True, None, "percentencode"), (name, fmt, text)
        assert "[[" not in text
    # Outside SQL: the datasource reference, option texts in panel titles, and All as a current value.
    for key, text in strings(board):
        uses = variable_uses(text)
        if not uses or key in {"rawSql", "query"} or (key, text) == ("value", ALL):
            continue
        if key == "uid":
            assert text == "${datasource}"
        else:
            assert key == "title" and all(fmt == "text" for _, _, fmt in uses), (key, text)


def test_filters_keep_primary_key_pruning(client: Client, facts: SeedFacts) -> None:
    """``column IN (SELECT arrayJoin(...))`` over the decoded selection is used by the primary key."""
    where = team_and_project()
    context = QueryContext(
        facts.start_ms,
        facts.now_ms,
        values={"team": [option_value("vision")], "project": [option_value("vision-main"), option_value("x")]},
    )
    sql = expand(f"SELECT count() FROM metrics WHERE {where}", context)
    plan = [row[0].strip() for row in client.query(f"EXPLAIN indexes = 1 {sql}").result_rows]
    primary_key = plan[plan.index("PrimaryKey") :]
    condition = next(line for line in primary_key if line.startswith("Condition:"))
    assert "team in 1-element set" in condition and "project in 2-element set" in condition, plan
    read, total = map(int, next(line for line in primary_key if line.startswith("Granules:")).split()[1].split("/"))
    assert read < total, plan
    main = [r for r in facts.of_team("vision") if r.project == "vision-main"]
    assert client.query(sql).result_rows == [(len(main) * 2 * facts.steps,)]


def test_each_dashboard_has_its_variables_and_folder() -> None:
    variables = {
        spec.uid: (spec.folder, [v.name for v in spec.build().templating.list_val or []]) for spec in DASHBOARDS
    }
    assert variables == {
        OVERVIEW: ("team", ["datasource", "team", "project", "group", "metric"]),
        COMPARISON: ("team", ["datasource", "team", "project", "run", "metric", "group_by", "best"]),
        HARDWARE: ("team", ["datasource", "team", "project", "run", "host"]),
        PIPELINE: ("admin", ["datasource", "worker"]),
        CROSS_TEAM: ("admin", ["datasource", "team", "project", "metric", "best"]),
    }


def test_parsed_back_dashboards_hold_clickhouse_queries_equal_to_the_file() -> None:
    for _, board in committed_dashboards():
        model = Dashboard.from_json(board)
        for parsed, original in zip(model.panels or [], board["panels"], strict=True):
            assert isinstance(parsed, Panel)
            targets = [t for t in parsed.targets or [] if isinstance(t, ClickHouseQuery)]
            assert len(targets) == len(parsed.targets or []) == 1
            assert [json.loads(json.dumps(t, cls=JSONEncoder)) for t in targets] == original["targets"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"editorType": "builder", "rawSql": "SELECT 1"}, "only SQL-editor queries"),
        ({"editorType": "sql", "queryType": "table", "format": 0}, "does not match"),
        ({"editorType": "sql", "queryType": "logs"}, "query_type must be one of"),
    ],
)
def test_clickhouse_query_refuses_what_it_cannot_represent(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClickHouseQuery.from_json(data)


def test_provisioning_loads_both_folders_against_the_datasource_the_dashboards_name() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "runstream.yaml").read_text())["providers"]
    by_path = {p["options"]["path"]: p for p in providers}
    assert set(by_path) == {"/var/lib/grafana/dashboards/team", "/var/lib/grafana/dashboards/admin"}
    assert {(p["orgId"], p["folderUid"]) for p in providers} == {(1, "runstream"), (1, "runstream-admin")}
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "clickhouse.yaml").read_text())["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE_UID, PLUGIN_ID)


# --- every query, on seeded ClickHouse ----------------------------------------------------------


def test_the_expected_columns_cover_every_query_once() -> None:
    keys = [(q.dashboard_uid, q.title) for q in dashboard_queries()]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(EXPECTED_COLUMNS)


@pytest.fixture(scope="module")
def expanded(facts: SeedFacts) -> dict[tuple[str, str], str]:
    queries = all_queries(
        {"team": option_value("vision"), "run": [option_value(r) for r in CHOSEN_RUNS]},
        time_from_ms=facts.start_ms,
        time_to_ms=facts.now_ms,
    )
    assert len(queries) == len(EXPECTED_COLUMNS)
    return {(uid, title): sql for uid, title, sql in queries}


@pytest.mark.parametrize("key", sorted(EXPECTED_COLUMNS), ids=lambda k: f"{k[0]}:{k[1]}")
def test_query_returns_its_columns_and_rows(
    client: Client, expanded: dict[tuple[str, str], str], key: tuple[str, str]
) -> None:
    sql = expanded[key]
    assert "${" not in sql and "$__" not in sql
    result = client.query(sql)
    assert tuple(result.column_names) == EXPECTED_COLUMNS[key]
    assert result.result_rows, f"{key} returned no rows"


def test_all_queries_refuses_a_variable_no_dashboard_has(facts: SeedFacts) -> None:
    with pytest.raises(UsageError, match=r"no dashboard has the variable\(s\) \['teams'\]"):
        all_queries({"teams": "vision"}, time_from_ms=facts.start_ms, time_to_ms=facts.now_ms)


def test_variables_list_what_the_data_holds(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    def texts(uid: str, name: str, **overrides: str | list[str]) -> list[str]:
        """The texts of the variable's options; each value is the text URL-encoded."""
        _, rows = run(client, uid, f"variable {name}", context, **overrides)
        assert all(row["value"] == option_value(row["text"]) for row in rows), rows
        return [row["text"] for row in rows]

    assert texts(OVERVIEW, "team", team=ALL) == sorted([*facts.teams, SHORT_TEAM])
    assert texts(OVERVIEW, "project") == ["vision-ablations", "vision-main"]
    assert texts(OVERVIEW, "group") == ["sweep-0", "sweep-1"]
    assert texts(OVERVIEW, "metric") == ["acc", "loss"]
    _, runs = run(client, COMPARISON, "variable run", context)
    assert sorted((row["value"], row["text"]) for row in runs) == sorted(
        (r.run_id, f"{r.run_id} ({r.params['optimizer']}, lr={r.params['lr']})") for r in vision(facts)
    )
    assert texts(COMPARISON, "group_by") == [
        "run",
        "param.batch_size",
        "param.lr",
        "param.optimizer",
        "param.seed",
        "tag.dataset",
        "tag.sweep",
    ]
    assert texts(HARDWARE, "host") == sorted({facts.run(r).host for r in CHOSEN_RUNS})
    assert texts(PIPELINE, "worker") == ["worker-a"]


# --- values checked against the seed's facts ---------------------------------------------------


def test_team_overview_counts_runs_by_state(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    _, rows = run(client, OVERVIEW, "Runs by state", context)
    assert {row["status"]: row["runs"] for row in rows} == Counter(str(r.status) for r in vision(facts))
    _, rows = run(client, OVERVIEW, "Runs by state", context, group=option_value("sweep-1"))
    assert sum(row["runs"] for row in rows) == sum(r.group == "sweep-1" for r in vision(facts))


def test_team_overview_lists_active_and_failed_runs(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    _, active = run(client, OVERVIEW, "Active runs: latest step and ${metric:text}", context)
    last = facts.steps - 1
    assert {row["run_id"]: (row["step"], row["last_value"], row["stalled"]) for row in active} == {
        r.run_id: (last, loss_at(r, last), False) for r in vision(facts) if r.status is RunStatus.RUNNING
    }
    _, failed = run(client, OVERVIEW, "Failed and crashed runs", context)
    assert {(row["run_id"], row["status"], row["ended_at"] is None) for row in failed} == {
        (r.run_id, str(r.status), r.status is RunStatus.CRASHED)
        for r in vision(facts)
        if r.status in {RunStatus.FAILED, RunStatus.CRASHED}
    }


def test_team_overview_gpu_hours_per_project_and_user(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    expected: defaultdict[tuple[str, str], float] = defaultdict(float)
    busy: defaultdict[tuple[str, str], float] = defaultdict(float)
    for r in vision(facts):
        for gpu in range(r.gpus):
            for sample in range(facts.hardware_samples):
                expected[r.project, r.user] += facts.hardware_interval_ms / 3_600_000
                busy[r.project, r.user] += (
                    facts.hardware_interval_ms * gpu_busy_percent(r, gpu, sample) / 100 / 3_600_000
                )
    _, rows = run(client, OVERVIEW, "GPU-hours this week by project and user", context)
    assert {(row["project"], row["user"]): row["gpu_hours"] for row in rows} == pytest.approx(dict(expected))
    assert {(row["project"], row["user"]): row["busy_gpu_hours"] for row in rows} == pytest.approx(dict(busy))
    assert [row["gpu_hours"] for row in rows] == sorted((row["gpu_hours"] for row in rows), reverse=True)


def test_team_overview_gpu_utilization_distribution(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    _, rows = run(client, OVERVIEW, "GPU utilization distribution", context)
    gpus = [(r, gpu) for r in vision(facts) for gpu in range(r.gpus)]
    idle = sum(r.idle_gpu and gpu == 1 for r, gpu in gpus)
    minutes = gpu_minutes(facts)
    expected = {f"{low}-{low + 10}%": 0 for low in range(0, 100, 10)}
    expected["0-10%"] = idle * minutes
    expected["80-90%"] = (len(gpus) - idle) * minutes
    assert [(row["utilization"], row["gpu_minutes"]) for row in rows] == list(expected.items())


def test_overlay_reads_buckets_with_at_most_1000_points_per_run(
    client: Client, facts: SeedFacts, context: QueryContext
) -> None:
    _, rows = run(client, COMPARISON, "${metric:text} by step", context)
    names = {r: f"{r} ({facts.run(r).params['optimizer']}, lr={facts.run(r).params['lr']})" for r in CHOSEN_RUNS}
    assert {row["series"] for row in rows} == set(names.values())
    for run_id, name in names.items():
        curve = [(row["step"], row["value"]) for row in rows if row["series"] == name]
        # 2,000 steps: level 1 (16 steps per bucket), the first level under 1,000 points.
        assert len(curve) == math.ceil(facts.steps / 16) <= MAX_POINTS_PER_CURVE
        assert [step for step, _ in curve] == sorted({step for step, _ in curve})
        first_step, first_mean = curve[0]
        assert first_step == 7
        assert first_mean == pytest.approx(sum(loss_at(facts.run(run_id), s) for s in range(16)) / 16)


def test_overlay_reads_raw_points_of_a_short_curve(client: Client, context: QueryContext) -> None:
    _, rows = run(client, COMPARISON, "${metric:text} by step", context, team=option_value(SHORT_TEAM), run=ALL)
    assert [(row["step"], row["series"], row["value"]) for row in rows] == [
        (s, SHORT_NAME, 1 / (s + 1)) for s in range(SHORT_STEPS)
    ]


def test_overlay_draws_one_curve_per_param_or_tag_value(
    client: Client, facts: SeedFacts, context: QueryContext
) -> None:
    main_runs = [r for r in vision(facts) if r.project == "vision-main"]
    for group_by, expected in [
        ("param.optimizer", {f"optimizer={r.params['optimizer']}" for r in main_runs}),
        ("tag.sweep", {f"sweep={r.group}" for r in main_runs}),
    ]:
        _, rows = run(
            client,
            COMPARISON,
            "${metric:text} by step",
            context,
            project=option_value("vision-main"),
            run=ALL,
            group_by=option_value(group_by),
        )
        assert {row["series"] for row in rows} == expected, group_by
        assert max(Counter(row["series"] for row in rows).values()) <= MAX_POINTS_PER_CURVE


def test_params_table_marks_the_params_that_differ(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    _, rows = run(client, COMPARISON, "Params of the chosen runs", context)
    chosen = [facts.run(r) for r in CHOSEN_RUNS]
    differing = {k for k in chosen[0].params if len({r.params[k] for r in chosen}) > 1}
    assert differing == {"lr", "optimizer", "seed"}
    assert {row["param"]: row["differs"] for row in rows} == {
        (f"{k} (differs)" if k in differing else k): int(k in differing) for k in chosen[0].params
    }
    assert [row["param"] for row in rows[: 2 * len(differing)]] == sorted(2 * [f"{k} (differs)" for k in differing])
    assert {(row["param"].removesuffix(" (differs)"), row["value"]) for row in rows} == {
        (k, v) for r in chosen for k, v in r.params.items()
    }


def test_summary_and_leaderboard(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    last = facts.steps - 1
    _, summary = run(client, COMPARISON, "${metric:text} of the chosen runs", context)
    assert [(row["points"], row["last_step"], row["last_value"], row["max_value"]) for row in summary] == [
        (facts.steps, last, loss_at(facts.run(r), last), loss_at(facts.run(r), 0)) for r in CHOSEN_RUNS
    ]
    _, board = run(client, COMPARISON, "Leaderboard: best ${metric:text}", context)
    ranked = sorted(vision(facts), key=lambda r: r.final_loss)
    assert [row["run_id"] for row in board] == [r.run_id for r in ranked]
    assert board[0]["value"] == loss_at(ranked[0], last) == pytest.approx(min(r.final_loss for r in vision(facts)))
    _, by_acc = run(
        client, COMPARISON, "Leaderboard: best ${metric:text}", context, metric=option_value("acc"), best="max"
    )
    assert [row["run_id"] for row in by_acc] == [r.run_id for r in ranked]


def test_idle_gpu_detector_finds_exactly_the_seeded_idle_gpu(
    client: Client, facts: SeedFacts, context: QueryContext
) -> None:
    _, rows = run(client, HARDWARE, "Idle GPUs: under 10% for the last 10 minutes", context, run=ALL)
    assert [(row["run_id"], row["host"], row["device"], row["max_utilization"]) for row in rows] == [
        (r.run_id, r.host, "gpu1", 3.0) for r in vision(facts) if r.idle_gpu and r.status is RunStatus.RUNNING
    ]


def test_hardware_curves_per_run_host_and_gpu(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    chosen = [facts.run(r) for r in CHOSEN_RUNS]
    gpu_series = {f"{r.run_id} {r.host} gpu{g}" for r in chosen for g in range(r.gpus)}
    # One-minute interval: the per-minute rollup, one point per GPU and minute.
    _, rows = run(client, HARDWARE, "GPU utilization", context)
    assert Counter(row["series"] for row in rows) == dict.fromkeys(gpu_series, gpu_minutes(facts))
    _, rows = run(client, HARDWARE, "CPU", context)
    assert {row["series"] for row in rows} == {f"{r.run_id} {r.host}" for r in chosen}
    # Ten-second interval: raw readings, every sample.
    raw = QueryContext(facts.start_ms, facts.now_ms, interval_s=10, values=context.values)
    _, rows = run(client, HARDWARE, "GPU utilization", raw)
    assert Counter(row["series"] for row in rows) == dict.fromkeys(gpu_series, facts.hardware_samples)
    idle = {f"{r.run_id} {r.host} gpu1" for r in chosen if r.idle_gpu}
    assert {row["value"] for row in rows if row["series"] in idle} == {3.0}


def test_pipeline_health_panels(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    _, totals = run(client, PIPELINE, "Dead letters in range", context)
    assert totals == [{"dead_letters": 1, "replays": 0, "crashed_runs": 0}]
    _, lag = run(client, PIPELINE, "Consumer lag", context)
    assert [(row["worker"], row["lag"]) for row in lag] == [("worker-a", m % 5) for m in range(facts.health_rows)]
    _, rate = run(client, PIPELINE, "Ingest rate", context)
    assert [row["points_per_s"] for row in rate] == pytest.approx(
        [(50_000 + 1000 * m) / 60 for m in range(facts.health_rows)], rel=1e-3
    )
    _, latency = run(client, PIPELINE, "Batch latency", context)
    assert [(row["p50_ms"], row["max_ms"]) for row in latency] == [
        ((20.0 + 30.0 + m) / 2, 30.0 + m) for m in range(facts.health_rows)
    ]


def test_cross_team_usage_and_best_results(client: Client, facts: SeedFacts, context: QueryContext) -> None:
    teams = [option_value(t) for t in facts.teams]
    _, usage = run(client, CROSS_TEAM, "Usage by team", context, team=teams)
    assert [tuple(row.values()) for row in usage] == [
        (
            team,
            len(facts.of_team(team)),
            sum(r.status is RunStatus.RUNNING for r in facts.of_team(team)),
            len(facts.of_team(team)) * 2 * facts.steps,
            pytest.approx(
                sum(r.gpus * facts.hardware_samples * facts.hardware_interval_ms for r in facts.of_team(team))
                / 3_600_000
            ),
        )
        for team in sorted(facts.teams)
    ]
    _, best = run(client, CROSS_TEAM, "Best ${metric:text} per team and project", context, team=teams)
    projects = sorted({(r.team, r.project) for r in facts.runs})
    winners = [min((r for r in facts.runs if (r.team, r.project) == tp), key=lambda r: r.final_loss) for tp in projects]
    assert [(row["team"], row["project"], row["best_value"], row["best_run"].split(" ")[0]) for row in best] == [
        (w.team, w.project, loss_at(w, facts.steps - 1), w.run_id) for w in winners
    ]
    _, hours = run(client, CROSS_TEAM, "GPU-hours by team", context, team=teams)
    assert {row["team"] for row in hours} == set(facts.teams)
    assert sum(row["gpu_hours"] for row in hours) == pytest.approx(sum(row["gpu_hours"] for row in usage))


def test_alert_panels_and_annotations_show_the_chosen_runs_alerts(
    client: Client, facts: SeedFacts, context: QueryContext
) -> None:
    alert_at = datetime.fromtimestamp((facts.start_ms + ALERT_AFTER_MS) / 1000, tz=UTC).replace(tzinfo=None)
    _, chosen = run(client, COMPARISON, "Alerts", context)
    assert sorted((r["run_id"], r["rule"], r["event"], r["delivery"], r["ts"]) for r in chosen) == [
        (run_id, ALERT_RULE, "fired", "sent", alert_at) for run_id in sorted(CHOSEN_RUNS)
    ]
    _, notes = run(client, COMPARISON, "annotation Alerts", context)
    assert sorted((n["time"], n["text"], tuple(n["tags"])) for n in notes) == sorted(
        (alert_at, f"value is nan ({r.project}/{r.run_id})", ("ERROR", "nan", ALERT_RULE))
        for r in vision(facts)
        if r.run_id in CHOSEN_RUNS
    )
    _, overview = run(client, OVERVIEW, "Alerts", context)
    assert sorted(r["run_id"] for r in overview) == sorted(r.run_id for r in vision(facts))
    _, everyone = run(client, OVERVIEW, "annotation Alerts", context, team=ALL)
    assert len(everyone) == len(facts.runs)
