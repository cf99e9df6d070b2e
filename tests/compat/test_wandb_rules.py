"""W&B's rules in ``runstream.wandb``, checked on what the SDK hands to Kafka (no broker needed)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import runstream.wandb as wandb
from runstream.run import Run
from runstream.settings import Settings
from runstream.wandb import _state
from runstream.wandb._config import Config
from runstream.wandb._run import WandbRun
from runstream_core.events import RunEnd, RunStart, RunUpdate
from tests.producer.fixtures import FakeSender, factory_for, unit_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path, flush_interval_s=0.05, finish_timeout_s=5, mode="disabled")


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender()


@pytest.fixture
def run(settings: Settings, sender: FakeSender) -> Iterator[WandbRun]:
    core = Run(project="p", team="t", settings=settings, mode="online", sender_factory=factory_for(sender))
    wrapped = WandbRun(core, entity="t", job_type=None, notes=None, tags=(), config=Config())
    yield wrapped
    wrapped.finish()


def summaries(sender: FakeSender) -> dict[str, object]:
    found: dict[str, object] = {}
    for event in sender.events():
        if isinstance(event, RunUpdate):
            found.update(event.summary)
    return found


def test_commit_false_accumulates_and_explicit_steps_follow_wandb(
    run: WandbRun, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    run.log({"a": 1.0}, commit=False)
    run.log({"b": 2.0})  # step 0: a and b
    run.log({"c": 3.0})  # step 1
    run.log({"d": 4.0}, step=5)  # pending at 5
    run.log({"e": 5.0}, step=5)  # still 5
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run.log({"f": 6.0}, step=2)  # behind: dropped
    run.log({"g": 7.0}, step=7)  # moves on: 5 is written, 7 pending
    run.log({"h": 8.0}, step=7, commit=True)  # 7 written, next is 8
    assert run.step == 8
    run.log({"nested": {"x": 1.0}})
    run.finish()
    assert sorted(sender.points(), key=lambda p: (p[1], p[0])) == [
        ("a", 0, 1.0),
        ("b", 0, 2.0),
        ("c", 1, 3.0),
        ("d", 5, 4.0),
        ("e", 5, 5.0),
        ("g", 7, 7.0),
        ("h", 7, 8.0),
        ("nested/x", 8, 1.0),
    ]
    assert sum("less than the current step" in r.getMessage() for r in caplog.records) == 1


def test_pending_step_is_written_when_the_run_finishes_and_a_rename_is_sent(run: WandbRun, sender: FakeSender) -> None:
    run.log({"late": 1.0}, step=3)
    run.name = "renamed"
    run.tags = (*run.tags, "best")
    run.finish()
    assert sender.points() == [("late", 3, 1.0)]
    assert run.name == "renamed"
    names = [e.run.name for e in sender.events() if isinstance(e, (RunStart, RunUpdate, RunEnd))]
    assert names[0] == run.id[:8] and set(names[1:]) == {"renamed"}  # start, rename, tags, summary, end
    assert run.tags == ("best",)
    assert [e.run.tags for e in sender.events() if isinstance(e, RunEnd)] == [{"best": ""}]


def test_summary_aggregates_globs_and_explicit_values(run: WandbRun, sender: FakeSender) -> None:
    run.define_metric("val/*", summary="min,max")
    run.define_metric("val/acc", summary="max", goal="maximize")  # an exact name wins over the glob
    run.define_metric("acc", summary="best", goal="maximize")
    run.define_metric("skip", summary="none")
    for value in (0.3, 0.1, 0.2):
        run.log({"val/loss": value, "val/acc": 1 - value, "acc": value, "loss": value, "skip": value})
    assert run.summary["val/loss"] == {"max": 0.3, "min": 0.1}
    assert run.summary["val/acc"] == {"max": 0.9}
    assert run.summary["loss"] == 0.2
    run.summary["loss"] = 0.05  # explicit wins
    assert run.summary["loss"] == 0.05
    assert "skip" not in dict(run.summary)
    run.finish()
    assert summaries(sender) == {
        "val/loss.min": 0.1,
        "val/loss.max": 0.3,
        "val/acc.max": 0.9,
        "acc.best": 0.3,
        "loss": 0.05,
    }


def test_step_metric_is_synced_into_steps_that_lack_it(run: WandbRun, sender: FakeSender) -> None:
    run.define_metric("val/*", step_metric="epoch")
    run.log({"epoch": 0})
    run.log({"val/loss": 1.0})
    run.define_metric("other", step_metric="epoch", step_sync=False)
    run.log({"other": 2.0})
    run.finish()
    assert sender.points() == [("epoch", 0, 0.0), ("val/loss", 1, 1.0), ("epoch", 1, 0.0), ("other", 2, 2.0)]


def test_bad_definitions_and_levels_raise_like_wandb(run: WandbRun) -> None:
    with pytest.raises(ValueError, match="summary"):
        run.define_metric("x", summary="median")
    with pytest.raises(ValueError, match="goal"):
        run.define_metric("x", goal="up")
    with pytest.raises(ValueError, match="level"):
        run.alert("t", "x", level="LOUD")


def test_config_takes_namespaces_and_warns_once_on_a_change(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[dict[str, object]] = []
    config = Config()
    config._attach(sent.append)
    config.update(argparse.Namespace(lr=0.1, batch=8))
    config.dropout = 0.2
    config["lr"] = 0.1  # unchanged: nothing sent
    with caplog.at_level(logging.WARNING, logger="runstream"):
        config.lr = 0.2
        config.lr = 0.3
    config.update({"lr": 0.4}, allow_val_change=True)
    config.setdefaults({"lr": 9, "new": 1})
    assert sent == [{"lr": 0.1, "batch": 8}, {"dropout": 0.2}, {"lr": 0.2}, {"lr": 0.3}, {"lr": 0.4}, {"new": 1}]
    assert (config.lr, config["batch"], config.get("missing", "d")) == (0.4, 8, "d")
    assert sum("config value changed" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(AttributeError):
        _ = config.missing


def test_module_api_before_init_and_disabled_mode(settings: Settings) -> None:
    assert wandb.run is None
    with pytest.raises(RuntimeError, match=r"wandb.init\(\) before wandb.log"):
        wandb.log({"x": 1.0})
    wandb.config.update({"preset": 1})  # kept for the next run, as W&B's preinit config
    run = wandb.init(project="p", entity="team", mode="disabled", settings=settings, config={"lr": 0.1})
    try:
        assert wandb.run is run
        assert dict(wandb.config) == {"preset": 1, "lr": 0.1}
        wandb.log({"x": 1.0})
        assert wandb.init(reinit=False, settings=settings) is run  # W&B's "return_previous"
        second = wandb.init(project="q", mode="disabled", settings=settings)  # finishes the first
        assert wandb.run is second and run.runstream_run.delivery is not None
        wandb.finish()
        assert wandb.run is None
        assert not settings.runs_dir.exists()  # disabled writes nothing
    finally:
        _state.runs.clear()


def test_unsupported_features_warn_once_and_never_raise(run: WandbRun, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runstream"):
        for _ in range(2):
            image = wandb.Image([[0]], caption="c")
            run.log({"img": image, "imgs": [image, image], "ok": 1.0})
            wandb.Table(columns=["a"]).add_data(1)
            wandb.plot.line(None, "x", "y")
            wandb.Artifact("m", type="model").add_file("f")
            run.log_artifact(wandb.Artifact("m", type="model")).wait()
            wandb.watch(object(), log="all")
            assert wandb.sweep({"method": "grid"}) == "unsupported-sweep"
            wandb.agent("id", function=lambda: None, count=1)
    messages = [r.getMessage() for r in caplog.records]
    for what in ("wandb.Image", "wandb.Table", "wandb.plot.line", "wandb.Artifact", "log_artifact", "wandb.watch"):
        assert sum(what in m for m in messages) == 1, (what, messages)


def test_resume_allow_continues_the_steps_of_a_run_this_machine_holds(settings: Settings) -> None:
    offline = settings.model_copy(update={"mode": "offline"})
    try:
        first = wandb.init(project="p", entity="team", id="resumable", settings=offline)
        for i in range(3):
            wandb.log({"loss": float(i)})
        wandb.finish()
        again = wandb.init(project="p", entity="team", id="resumable", resume="allow", settings=offline)
        assert (again.id, again.step, again.name) == ("resumable", 3, first.name)
        wandb.finish()
        fresh = wandb.init(project="p", entity="team", id="never-seen", resume="allow", settings=offline)
        assert fresh.step == 0
        wandb.finish()
        with pytest.raises(ValueError, match="must"):
            wandb.init(project="p", resume="must", settings=offline)
    finally:
        _state.runs.clear()
