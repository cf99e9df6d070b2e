"""``runstream.init()``: the documented options, typed once and forwarded to ``Run`` as they are."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import get_type_hints

import pytest

import runstream
from runstream.run import Run, RunOptions, init
from runstream.settings import Settings

DOCUMENTED = ["name", "group", "tags", "config", "run_id", "resume", "mode", "settings", "distributed"]
TEST_HOOKS = {"sender_factory", "environ"}


def test_init_takes_project_and_team_then_the_documented_options() -> None:
    params = inspect.signature(init).parameters
    assert [(p.name, p.kind) for p in params.values()] == [
        ("project", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("team", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("options", inspect.Parameter.VAR_KEYWORD),
    ]
    assert list(get_type_hints(RunOptions)) == DOCUMENTED
    assert RunOptions.__required_keys__ == frozenset()


def test_the_options_are_runs_keyword_parameters_with_the_documented_defaults() -> None:
    run_params = inspect.signature(Run.__init__).parameters
    assert set(run_params) - {"self", "project", "team"} - TEST_HOOKS == set(DOCUMENTED)
    assert all(run_params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in DOCUMENTED)
    defaults = ", ".join(f"{name}={run_params[name].default!r}" for name in DOCUMENTED)
    assert f"init(project, team, *, {defaults})" in " ".join((init.__doc__ or "").split())
    assert defaults == (
        "name=None, group=None, tags=(), config=None, run_id=None, resume=False, mode=None, settings=None, "
        "distributed=None"
    )


def test_init_forwards_every_option_to_the_run(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, runs_dir=tmp_path / "runs", hardware_interval_s=0, handle_sigterm=False
    )
    run = runstream.init(
        "proj",
        "team",
        name="exp",
        group="sweep",
        tags={"k": "v"},
        config={"opt": {"lr": 0.1}},
        run_id="run-7",
        resume=False,
        mode="offline",
        settings=settings,
        distributed=runstream.Distributed(rank=0, world_size=1),
    )
    try:
        assert runstream.active_run() is run
        assert (run.info.project, run.info.team, run.name, run.info.group) == ("proj", "team", "exp", "sweep")
        assert (run.id, run.mode, run.settings, run.info.tags) == ("run-7", "offline", settings, {"k": "v"})
        assert run.params == {"opt.lr": "0.1"}
    finally:
        run.finish()
    assert runstream.active_run() is None


def test_an_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError, match="nam"):
        runstream.init("p", "t", nam="x", mode="disabled")  # type: ignore[call-arg]
