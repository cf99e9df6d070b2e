"""Names chosen to break the dashboards' SQL, picked in every variable of every dashboard.

The store holds the hostile data set (``tests/fixtures/hostile.py``). For each variable, each name
it lists is selected as Grafana would store the choice (the option value, ``option_value(text)``),
alone, with another name, and All; every query reading that variable is expanded through the
Grafana emulator and run on the real engine. Each must return exactly what the same query returns
when the chosen texts are bound as ClickHouse parameters instead (``{v:Array(String)}``), and the
figures of one panel per variable are checked against the seed's facts. Values typed by hand that
name nothing select nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from runstream_core.clickhouse import connect
from runstream_core.events import RunStatus
from runstream_grafana.dashboards import ALL, DASHBOARDS, dashboard_queries, option_value
from runstream_grafana.dashboards.queries import DashboardQuery
from runstream_grafana.dashboards.variables import is_all, selected_texts, variable_text
from tests.fixtures.hostile import HOSTILE, INJECTION, LEAK_MARKERS, TEAMS, HostileFacts, HostileRun, seed_hostile
from tests.fixtures.settings import StackSettings as Settings
from tests.grafana.emulator import QueryContext, expand, expand_macros, variable_values
from tests.grafana.helpers import run

OVERVIEW, COMPARISON, HARDWARE = "runstream-team-overview", "runstream-run-comparison", "runstream-hardware"
PIPELINE, CROSS_TEAM = "runstream-pipeline-health", "runstream-cross-team"

MODELS = {spec.uid: spec.build() for spec in DASHBOARDS}
QUERIES = dashboard_queries()
MULTI = {v.name for model in MODELS.values() for v in model.templating.list_val or [] if v.multi}
SINGLE = {"metric", "group_by", "best"}
# Typed by hand, matching no name: line breaks, control characters, bad escapes, SQL.
TYPED = (
    "nope",
    "no\npe",
    "\r\n",
    "\x00",
    "\x01\x1f\x7f\x85",
    "\u2028",
    "100%",
    "%zz",
    "%FF%FE",
    "%E6%8D",
    "{nope}",
    "{{a}}",
    "nope'",
    "nope\\",
    "' OR 1=1 --",
    "${project}",
    INJECTION + " nope",
)


@dataclass(frozen=True)
class Choice:
    """What a user picks: the value Grafana stores, and the texts it stands for."""

    value: str | list[str]
    texts: tuple[str, ...] = ()
    all: bool = False


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, HostileFacts]]:
    path = tmp_path_factory.mktemp("hostile") / "clickhouse"
    settings = Settings(clickhouse_url=f"chdb://{path}", _env_file=None)  # type: ignore[call-arg]
    facts = seed_hostile(settings)
    client = connect(settings)
    yield client, facts
    client.close()


@pytest.fixture(scope="module")
def client(seeded: tuple[Client, HostileFacts]) -> Client:
    return seeded[0]


@pytest.fixture(scope="module")
def facts(seeded: tuple[Client, HostileFacts]) -> HostileFacts:
    return seeded[1]


@pytest.fixture(scope="module")
def context(facts: HostileFacts) -> QueryContext:
    return QueryContext(time_from_ms=facts.start_ms - 60_000, time_to_ms=facts.now_ms + 60_000)


def group_by_texts(facts: HostileFacts) -> list[str]:
    params = {f"param.{k}" for r in facts.runs for k in r.params}
    tags = {f"tag.{k}" for r in facts.runs for k in r.tags}
    return ["run", *sorted(params | tags)]


def names(facts: HostileFacts, variable: str) -> list[str]:
    """The texts ``variable`` lists over the whole store, from the seed's facts."""
    by_variable: dict[str, list[str]] = {
        "team": sorted(TEAMS),
        "project": sorted(HOSTILE),
        "group": sorted(HOSTILE),
        "metric": sorted({*HOSTILE, "loss"}),
        "run": sorted(r.run_id for r in facts.runs),
        "host": sorted(HOSTILE),
        "worker": sorted(facts.workers),
        "group_by": group_by_texts(facts),
        "best": ["min", "max"],
    }
    return by_variable[variable]


def choices(facts: HostileFacts, variable: str) -> list[Choice]:
    texts = names(facts, variable)
    if variable not in MULTI:
        return [Choice(option_value(t), (t,)) for t in texts]
    pairs = [("a", "b"), ("a,b", "a%2Cb"), (",", "%2C"), ("*", "%2A"), (INJECTION, "'"), ("{", "}"), ("损失", "\\")]
    if variable == "run":
        # Run ids are letters, digits and -_. (the schema's pattern): the runs named most hostile do.
        named = {r.name: r.run_id for r in facts.runs}
        texts = [named[n] for n in ("'", "\\'", ",", "a,b", "a%2Cb", "*", "{", INJECTION)]
        pairs = [(named["a,b"], named["a%2Cb"])]
    elif variable == "team":
        pairs = [("a,b", "a%2Cb"), ("\\'", "a,b")]
    pairs = [p for p in pairs if set(p) <= set(texts)]
    return [
        *(Choice([option_value(t)], (t,)) for t in texts),
        *(Choice([option_value(a), option_value(b)], (a, b)) for a, b in pairs),
        Choice(ALL, all=True),
    ]


def reference_sql(sql: str) -> str:
    """``sql`` with each variable read from bound ClickHouse parameters instead of Grafana's text."""
    for name in MULTI:
        sql = sql.replace(selected_texts(name), f"{{{name}_texts:Array(String)}}")
        sql = sql.replace(is_all(name), f"{{{name}_all:UInt8}}")
    for name in SINGLE:
        sql = sql.replace(variable_text(name), f"{{{name}_text:String}}")
    assert "${" not in sql, sql
    return sql


def parameters(chosen: dict[str, Choice]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, choice in chosen.items():
        if name in MULTI:
            params[f"{name}_texts"] = list(choice.texts)
            params[f"{name}_all"] = int(choice.all)
        else:
            (params[f"{name}_text"],) = choice.texts
    return params


DEFAULTS = {"metric": Choice("loss", ("loss",)), "group_by": Choice("run", ("run",)), "best": Choice("min", ("min",))}


def defaults(uid: str) -> dict[str, Choice]:
    chosen = {name: Choice(ALL, all=True) for name in MULTI}
    chosen.update(DEFAULTS)
    declared = {v.name for v in MODELS[uid].templating.list_val or []}
    return {name: choice for name, choice in chosen.items() if name in declared}


def rows(client: Client, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    result = [tuple(row) for row in client.query(sql, parameters=params or {}).result_rows]
    for row in result:
        assert not any(isinstance(cell, str) and any(m in cell for m in LEAK_MARKERS) for cell in row), row
    return result


def grafana_rows(client: Client, query: DashboardQuery, context: QueryContext, chosen: dict[str, Choice]) -> Any:
    values = variable_values(MODELS[query.dashboard_uid], {n: c.value for n, c in chosen.items()})
    return rows(client, expand(query.sql, replace(context, values=values)))


def reference_rows(client: Client, query: DashboardQuery, context: QueryContext, chosen: dict[str, Choice]) -> Any:
    return rows(client, expand_macros(reference_sql(query.sql), context), parameters(chosen))


def same(a: Sequence[tuple[Any, ...]], b: Sequence[tuple[Any, ...]]) -> bool:
    return Counter(map(repr, a)) == Counter(map(repr, b))


DASHBOARD_VARIABLES = [
    (spec.uid, v.name)
    for spec in DASHBOARDS
    for v in MODELS[spec.uid].templating.list_val or []
    if v.name != "datasource"
]


# --- every variable, every name, every query ----------------------------------------------------


@pytest.mark.parametrize(("uid", "variable"), DASHBOARD_VARIABLES, ids=str)
def test_each_name_selects_exactly_its_rows_in_every_query(
    client: Client, facts: HostileFacts, context: QueryContext, uid: str, variable: str
) -> None:
    reading = [q for q in QUERIES if q.dashboard_uid == uid and f"${{{variable}:" in q.sql]
    assert reading, f"no query of {uid} reads ${variable}"
    for choice in choices(facts, variable):
        chosen = {**defaults(uid), variable: choice}
        for query in reading:
            got = grafana_rows(client, query, context, chosen)
            want = reference_rows(client, query, context, chosen)
            assert same(got, want), (query.title, choice)


# Queries that still return rows when a filter selects nothing: a filled histogram, a sum, and
# the "run" option of "Curve per".
FIXED_ROWS = {
    (OVERVIEW, "GPU utilization distribution"),
    (PIPELINE, "Dead letters in range"),
    (COMPARISON, "variable group_by"),
}
# The queries the metric filters; the others only show its value as a column.
METRIC_FILTERED = {
    (COMPARISON, "${metric:text} by step"),
    (COMPARISON, "${metric:text} of the chosen runs"),
    (COMPARISON, "Leaderboard: best ${metric:text}"),
    (CROSS_TEAM, "Best ${metric:text} per team and project"),
}


@pytest.mark.parametrize(("uid", "variable"), DASHBOARD_VARIABLES, ids=str)
def test_typed_values_that_name_nothing_select_nothing(
    client: Client, context: QueryContext, uid: str, variable: str
) -> None:
    reading = [q for q in QUERIES if q.dashboard_uid == uid and f"${{{variable}:" in q.sql]
    # What selecting nothing gives: no text for a filter, a text that names nothing for the others.
    nothing = Choice([], ()) if variable in MULTI else Choice("", ("\x00no such name",))
    want = {q.title: reference_rows(client, q, context, {**defaults(uid), variable: nothing}) for q in reading}
    for typed in TYPED:
        # Grafana keeps a typed value as it is (a multi-value variable's in a list of one).
        chosen = {**defaults(uid), variable: Choice([typed] if variable in MULTI else typed)}
        for query in reading:
            got = grafana_rows(client, query, context, chosen)
            assert same(got, want[query.title]), (query.title, typed)
            key = (query.dashboard_uid, query.title)
            filtered = variable in MULTI or variable == "group_by" or key in METRIC_FILTERED
            if filtered and variable != "best" and key not in FIXED_ROWS:
                assert got == [], (query.title, typed)


# --- variable options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uid", "variable"),
    [(uid, v) for uid, v in DASHBOARD_VARIABLES if v not in {"best"}],
    ids=str,
)
def test_every_option_is_its_text_and_the_text_url_encoded(
    client: Client, facts: HostileFacts, context: QueryContext, uid: str, variable: str
) -> None:
    _, options = run(client, uid, f"variable {variable}", context)
    if variable == "run":  # the value is the run id encoded, the text the run's name
        assert sorted((row["value"], row["text"]) for row in options) == sorted(
            (option_value(r.run_id), r.name) for r in facts.runs
        )
    else:
        assert all(row["value"] == option_value(row["text"]) for row in options)
        assert [row["text"] for row in options] == names(facts, variable)


def test_option_value_is_what_clickhouse_encode_url_component_returns(client: Client) -> None:
    texts = [*HOSTILE, *TYPED, "", "~._-", "\U0010ffff"]
    result = client.query(
        "SELECT encodeURLComponent(t) FROM (SELECT arrayJoin({t:Array(String)}) AS t)", parameters={"t": texts}
    )
    assert [row[0] for row in result.result_rows] == [option_value(t) for t in texts]


def test_options_of_one_team_are_that_teams_names(client: Client, facts: HostileFacts, context: QueryContext) -> None:
    for team in TEAMS:
        runs = [r for r in facts.runs if r.team == team]
        _, projects = run(client, OVERVIEW, "variable project", context, team=option_value(team))
        assert [row["text"] for row in projects] == sorted({r.project for r in runs})
        _, metrics = run(client, OVERVIEW, "variable metric", context, team=option_value(team))
        assert [row["text"] for row in metrics] == sorted({k for r in runs for k in facts.keys_of(r)})


# --- figures checked against the seed's facts ---------------------------------------------------


def of(facts: HostileFacts, **fields: str) -> list[HostileRun]:
    return [r for r in facts.runs if all(getattr(r, k) == v for k, v in fields.items())]


@pytest.mark.parametrize("project", HOSTILE, ids=repr)
def test_each_project_shows_its_runs_in_each_team(
    client: Client, facts: HostileFacts, context: QueryContext, project: str
) -> None:
    _, usage = run(client, CROSS_TEAM, "Usage by team", context, project=option_value(project))
    expected = []
    for team in sorted({r.team for r in of(facts, project=project)}):
        runs = of(facts, project=project, team=team)
        points = sum(facts.loss_points + r.points for r in runs)
        gpu_hours = len(runs) * facts.hardware_samples * facts.hardware_interval_ms / 3_600_000
        running = sum(r.status is RunStatus.RUNNING for r in runs)
        expected.append((team, len(runs), running, points, pytest.approx(gpu_hours)))
    assert [tuple(row.values()) for row in usage] == expected
    # The same project, one team: the twin in the other team stays out.
    for team in {r.team for r in of(facts, project=project)}:
        _, failed = run(
            client,
            OVERVIEW,
            "Failed and crashed runs",
            context,
            team=option_value(team),
            project=option_value(project),
        )
        assert {row["run_id"] for row in failed} == {
            r.run_id for r in of(facts, project=project, team=team) if r.status is RunStatus.FAILED
        }


def test_a_name_and_its_own_encoding_stay_apart(client: Client, facts: HostileFacts, context: QueryContext) -> None:
    for chosen in (["a,b"], ["a%2Cb"], ["a", "b"], ["a,b", "a%2Cb"], ["*"], ["%2A"], [","], ["%2C"], ["%"]):
        _, by_state = run(client, OVERVIEW, "Runs by state", context, project=[option_value(p) for p in chosen])
        runs = [r for r in facts.runs if r.project in chosen]
        assert Counter({row["status"]: row["runs"] for row in by_state}) == Counter(str(r.status) for r in runs)


@pytest.mark.parametrize("key", sorted({*HOSTILE, "loss"}), ids=repr)
def test_each_metric_key_reads_its_points(client: Client, facts: HostileFacts, context: QueryContext, key: str) -> None:
    _, summary = run(client, COMPARISON, "${metric:text} of the chosen runs", context, metric=option_value(key))
    assert sorted((row["run"], row["points"]) for row in summary) == sorted(
        (r.name, facts.loss_points if key == "loss" else r.points) for r in facts.runs if key in facts.keys_of(r)
    )
    with_key = [r for r in facts.runs if key in facts.keys_of(r)]
    for best in ("min", "max"):
        _, board = run(
            client,
            CROSS_TEAM,
            "Best ${metric:text} per team and project",
            context,
            metric=option_value(key),
            best=best,
        )
        expected = []
        for team, project in sorted({(r.team, r.project) for r in with_key}):
            runs = [r for r in with_key if (r.team, r.project) == (team, project)]
            pick = max if best == "max" else min
            winner = pick(runs, key=lambda r: last_value(facts, r, key))
            expected.append((team, project, last_value(facts, winner, key), winner.name, len(runs)))
        assert [tuple(row.values()) for row in board] == expected


def last_value(facts: HostileFacts, run: HostileRun, key: str) -> float:
    """The seed writes ``100 * (index of the run) + step``; a key's last step is its point count less one."""
    points = facts.loss_points if key == "loss" else run.points
    return float(100 * facts.runs.index(run) + points - 1)


@pytest.mark.parametrize("group", HOSTILE, ids=repr)
def test_each_group_counts_its_runs(client: Client, facts: HostileFacts, context: QueryContext, group: str) -> None:
    _, by_state = run(client, OVERVIEW, "Runs by state", context, group=option_value(group))
    assert Counter({row["status"]: row["runs"] for row in by_state}) == Counter(
        str(r.status) for r in of(facts, group=group)
    )


@pytest.mark.parametrize(
    "group_by",
    ["run", "param.run", "param.tag.x", "tag.run", "tag.tag.x", "param.'", f"tag.{INJECTION}", "param.损失"],
    ids=repr,
)
def test_curves_per_param_or_tag_value(
    client: Client, facts: HostileFacts, context: QueryContext, group_by: str
) -> None:
    _, curves = run(client, COMPARISON, "${metric:text} by step", context, group_by=option_value(group_by))
    if group_by == "run":
        expected = {r.name for r in facts.runs}
    else:
        kind, key = group_by.split(".", 1)
        source = "params" if kind == "param" else "tags"
        expected = {f"{key}={getattr(r, source).get(key, '')}" for r in facts.runs}
    assert {row["series"] for row in curves} == expected


@pytest.mark.parametrize("host", HOSTILE, ids=repr)
def test_each_host_draws_its_curves(client: Client, facts: HostileFacts, context: QueryContext, host: str) -> None:
    _, cpu = run(client, HARDWARE, "CPU", context, host=option_value(host))
    assert {row["series"] for row in cpu} == {f"{r.run_id} {host}" for r in of(facts, host=host)}


def test_each_worker_shows_its_figures(client: Client, facts: HostileFacts, context: QueryContext) -> None:
    for n, worker in enumerate(facts.workers):
        _, totals = run(client, PIPELINE, "Dead letters in range", context, worker=option_value(worker))
        assert totals == [{"dead_letters": n, "replays": 0, "crashed_runs": 0}]
        _, lag = run(client, PIPELINE, "Consumer lag", context, worker=option_value(worker))
        assert [(row["worker"], row["lag"]) for row in lag] == [(worker, n)]


def test_a_run_shows_its_params(client: Client, facts: HostileFacts, context: QueryContext) -> None:
    for r in facts.runs[:8]:
        _, params = run(client, COMPARISON, "Params of the chosen runs", context, run=option_value(r.run_id))
        assert {(row["param"], row["run"], row["value"]) for row in params} == {
            (k, r.name, v) for k, v in r.params.items()
        }
