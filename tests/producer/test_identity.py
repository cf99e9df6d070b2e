"""What names a run: its id (a directory of the SDK's) and its team (the row filter of team isolation)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from runstream._distributed import Distributed, shared_run_id
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.errors import UsageError
from runstream_core.events import RUN_ID_PATTERN, MetricBatch
from tests.producer.fixtures import FakeSender, factory_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, runs_dir=tmp_path / "runs", hardware_interval_s=0, handle_sigterm=False
    )


def offline_run(settings: Settings, **kwargs: Any) -> Run:
    args: dict[str, Any] = {"project": "p", "team": "t", "mode": "offline", "settings": settings}
    return Run(**{**args, **kwargs})


BAD_RUN_IDS = ["..", ".", "ok\n", "a/b", "../x", "x" * 129, "", "run id", "ü"]


@pytest.mark.parametrize("run_id", BAD_RUN_IDS)
def test_a_run_id_that_is_no_plain_name_is_a_usage_error(settings: Settings, run_id: str) -> None:
    with pytest.raises(UsageError, match=r"run_id .* letters, digits, '_', '\.' and '-'"):
        offline_run(settings, run_id=run_id)
    assert not settings.runs_dir.exists()  # nothing was created anywhere


@pytest.mark.parametrize("run_id", ["..", "ok\n"])
def test_the_run_id_from_the_environment_and_resume_go_through_the_same_check(settings: Settings, run_id: str) -> None:
    with pytest.raises(UsageError, match="run_id"):
        offline_run(settings.model_copy(update={"run_id": run_id}))
    with pytest.raises(UsageError, match="run_id"):
        offline_run(settings, run_id=run_id, resume=True)


def test_a_run_id_that_is_not_text_is_a_usage_error(settings: Settings) -> None:
    with pytest.raises(UsageError, match="run_id must be a string"):
        offline_run(settings, run_id=123)


def test_an_empty_run_id_from_the_environment_counts_as_unset(settings: Settings) -> None:
    run = offline_run(settings.model_copy(update={"run_id": ""}))
    run.finish()
    assert re.fullmatch("[0-9a-f]{32}", run.run_id)


def test_dotted_run_ids_that_name_no_directory_above_are_fine(settings: Settings) -> None:
    run = offline_run(settings, run_id="v1.2-final_run...")
    run.finish()
    assert run.dir == settings.runs_dir / "v1.2-final_run..."


def test_launcher_ids_become_valid_run_ids_whatever_the_job_id_holds(settings: Settings) -> None:
    odd = {"SLURM_JOB_ID": "../../etc\n", "SLURM_STEP_ID": "0"}
    shared = shared_run_id(odd, "t", "p")
    assert shared is not None and re.fullmatch(RUN_ID_PATTERN, shared)
    elastic = shared_run_id({"TORCHELASTIC_RUN_ID": ".."}, "t", "p")
    assert elastic is not None and re.fullmatch(RUN_ID_PATTERN, elastic)
    run = offline_run(settings, distributed=Distributed(rank=1, world_size=2), environ=odd)
    run.finish()
    assert run.run_id == shared


@pytest.mark.parametrize(
    ("given", "stored"),
    [("vision", "vision"), ("Vision", "vision"), ("  ML Infra ", "ml_infra"), ("speech-2", "speech_2")],
)
def test_team_names_are_normalised_with_one_warning_when_changed(
    settings: Settings, caplog: pytest.LogCaptureFixture, given: str, stored: str
) -> None:
    sender = FakeSender()
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run = Run(project="p", team=given, settings=settings, sender_factory=factory_for(sender))
        run.log({"loss": 1.0})
        run.set_tags(["x"])
        run.finish()
    assert run.info.team == stored
    assert {e.team if isinstance(e, MetricBatch) else e.run.team for e in sender.events()} == {stored}
    warned = [r.getMessage() for r in caplog.records if "team name normalised" in r.getMessage()]
    assert len(warned) == (given != stored)
    if warned:
        assert f"team='{stored}'" in warned[0] and f"given={given!r}" in warned[0]


@pytest.mark.parametrize(
    "team", ["", "   ", "9lives", "vision!", "t'\\", "team.name", "a" * 33, "ви́дение", "ok\nbad", "_lead"]
)
def test_a_team_that_is_no_team_name_after_normalising_is_a_usage_error(settings: Settings, team: str) -> None:
    with pytest.raises(UsageError, match="lowercase letters, digits and underscores, starting with a letter"):
        offline_run(settings, team=team)


def test_a_team_that_is_not_text_is_a_usage_error(settings: Settings) -> None:
    with pytest.raises(UsageError, match="team must be a string"):
        offline_run(settings, team=7)


def test_every_rank_derives_the_shared_run_id_from_the_normalised_team(settings: Settings) -> None:
    env = {"TORCHELASTIC_RUN_ID": "job-1"}
    ids = set()
    for rank, team in enumerate(("Vision", "vision", " vision ")):
        run = offline_run(settings, team=team, distributed=Distributed(rank=rank, world_size=3), environ=env)
        run.finish()
        ids.add(run.run_id)
    assert ids == {shared_run_id(env, "vision", "p")}
