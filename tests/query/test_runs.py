"""runs(): one row per run with its params and last metric values, filtered and ordered."""

from __future__ import annotations

import pandas as pd
import pytest

from runstream import query
from runstream_core.errors import UsageError
from runstream_core.events import RunStatus
from tests.fixtures.seed import STEPS, loss_at
from tests.query.conftest import Seeded

BASE = ["run_id", "team", "project", "name", "group", "user", "status", "stalled", "started_at", "ended_at"]


def test_team_runs_have_their_params_and_last_values(seeded: Seeded) -> None:
    facts = seeded.facts
    table = query.runs(team="vision", settings=seeded.settings)

    assert list(table.columns) == [
        *BASE,
        "param.batch_size",
        "param.lr",
        "param.optimizer",
        "param.seed",
        "metric.acc",
        "metric.loss",
    ]
    # Default order: project, then start time (all equal here), then id.
    expected = sorted(facts.of_team("vision"), key=lambda run: (run.project, run.run_id))
    assert list(table["run_id"]) == [run.run_id for run in expected]
    for record, run in zip(table.to_dict("records"), expected, strict=True):
        assert record["team"] == "vision"
        assert record["project"] == run.project
        assert record["name"] == f"{run.run_id} ({run.params['optimizer']}, lr={run.params['lr']})"
        assert record["group"] == run.group
        assert record["user"] == run.user
        assert record["status"] == run.status.value
        assert not record["stalled"]
        assert {key: record[f"param.{key}"] for key in run.params} == run.params
        assert record["started_at"] == pd.Timestamp(facts.start_ms, unit="ms", tz="UTC")
        if run.status in (RunStatus.FINISHED, RunStatus.FAILED):
            assert record["ended_at"] == pd.Timestamp(facts.now_ms - 30_000, unit="ms", tz="UTC")
        else:
            assert pd.isna(record["ended_at"])
        # The last loss is the seed's curve at its last step, which ends on final_loss.
        assert record["metric.loss"] == loss_at(run, STEPS - 1)
        assert record["metric.loss"] == pytest.approx(run.final_loss, abs=1e-12)
    assert table["stalled"].dtype == bool
    assert str(table["started_at"].dtype).endswith(", UTC]")


def test_param_filter_and_metric_order(seeded: Seeded) -> None:
    facts = seeded.facts
    table = query.runs(team="nlp", params={"optimizer": "adamw"}, order_by="loss", settings=seeded.settings)
    adamw = [run for run in facts.of_team("nlp") if run.params["optimizer"] == "adamw"]
    assert list(table["run_id"]) == [run.run_id for run in sorted(adamw, key=lambda run: run.final_loss)]
    assert list(table["param.optimizer"]) == ["adamw"] * len(adamw)

    worst_two = query.runs(team="nlp", order_by="loss", ascending=False, limit=2, settings=seeded.settings)
    nlp = sorted(facts.of_team("nlp"), key=lambda run: run.final_loss, reverse=True)
    assert list(worst_two["run_id"]) == [run.run_id for run in nlp[:2]]


def test_numeric_param_values_match_as_the_sdk_stores_them(seeded: Seeded) -> None:
    table = query.runs(project="speech-main", params={"lr": 0.0003}, settings=seeded.settings)
    expected = [r.run_id for r in seeded.facts.runs if r.project == "speech-main" and r.params["lr"] == "0.0003"]
    assert list(table["run_id"]) == expected == ["speech-0-1", "speech-0-4"]


def test_where_with_bound_parameters(seeded: Seeded) -> None:
    table = query.runs(
        where="status = {status:String} AND last_values['loss'] < {below:Float64}",
        parameters={"status": "crashed", "below": 0.4},
        settings=seeded.settings,
    )
    expected = [r for r in seeded.facts.runs if r.status is RunStatus.CRASHED and r.final_loss < 0.4]
    assert sorted(table["run_id"]) == sorted(r.run_id for r in expected) == ["nlp-0-3", "vision-0-3"]


def test_no_match_gives_an_empty_frame_with_the_base_columns(seeded: Seeded) -> None:
    table = query.runs(team="no-such-team", settings=seeded.settings)
    assert table.empty
    assert list(table.columns) == BASE


def test_a_team_filter_follows_the_sdks_team_name_rule(seeded: Seeded) -> None:
    as_typed = query.runs(team=" Vision ", settings=seeded.settings)
    assert list(as_typed["run_id"]) == list(query.runs(team="vision", settings=seeded.settings)["run_id"])
    assert len(as_typed) == len(seeded.facts.of_team("vision")) > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"team": "vision", "order_by": "perplexity"},
            "no run has a metric 'perplexity'; metrics of these runs: \\['acc', 'loss'\\]",
        ),
        ({"limit": 0}, "limit must be a positive integer, got 0"),
        ({"where": "  "}, "where is empty"),
        ({"params": {"": "x"}}, "params keys must be non-empty strings"),
        ({"where": "user = {rs_team:String}", "parameters": {"rs_team": "ada"}}, "may not start with 'rs_'"),
        ({"team": "vision!"}, "team 'vision!' is not a team name: a team name is lowercase letters"),
    ],
)
def test_bad_input_is_a_clear_error(seeded: Seeded, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        query.runs(settings=seeded.settings, **kwargs)  # type: ignore[arg-type]
