"""The SDK applies the event schema's bounds itself: what is out of bounds is refused, counted and
warned about once per kind, so that a job learns early and the worker never sees it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from runstream import _transport as transport_module
from runstream._distributed import MAX_WORLD_SIZE, Distributed, detect
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.errors import UsageError
from runstream_core.events import (
    MAX_EPOCH_MS,
    MAX_KEY_LEN,
    MAX_LABEL_LEN,
    MAX_PARAMS,
    MAX_STEP,
    MAX_SUMMARY,
    MAX_TAGS,
    MAX_TEXT_LEN,
    RunEnd,
    RunStart,
    RunUpdate,
)
from tests.producer.fixtures import FakeSender, factory_for, unit_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path)


def make_run(settings: Settings, sender: FakeSender, **kwargs: Any) -> Run:
    return Run(project="p", team="t", settings=settings, sender_factory=factory_for(sender), **kwargs)


def warnings_of(caplog: pytest.LogCaptureFixture, needle: str) -> int:
    return sum(needle in r.getMessage() for r in caplog.records)


def test_steps_outside_zero_to_max_step_are_refused(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run.log({"a": 1.0, "b": 2.0}, step=-1)
        run.log({"a": 1.0}, step=-(2**70))
        run.log({"a": 1.0}, step=2**63)  # one past the schema's Int64 step
        run.log({"a": 1.0}, step=MAX_STEP)  # the last step there is
        run.log({"a": 2.0})  # the next one would be 2**63
        run.log({"a": 3.0}, step=5)  # backwards
    report = run.finish()
    assert sender.points() == [("a", MAX_STEP, 1.0)]  # every record sent passed the schema's check
    assert report.rejected_points == 2 + 1 + 1 + 1 + 1
    assert warnings_of(caplog, "step must be 0 to 9223372036854775807") == 1
    assert warnings_of(caplog, "step went backwards") == 1
    end = sender.events()[-1]
    assert isinstance(end, RunEnd) and end.step == MAX_STEP


def test_points_taken_while_the_clock_is_out_of_range_are_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run.log({"ok": 1.0}, step=0)
        assert run.flush(5)
        for clock in (-1.0, (MAX_EPOCH_MS + 1) / 1000):  # before 1970, after 2299
            monkeypatch.setattr(transport_module, "_time", lambda clock=clock: clock)
            run.log({"a": 1.0, "b": 1.0})
            assert run.flush(5)
        monkeypatch.setattr(time, "time_ns", lambda: -(10**15))  # lifecycle times are clamped, not refused
        report = run.finish()
    assert sender.points() == [("ok", 0, 1.0)]
    assert report.rejected_points == 4
    assert warnings_of(caplog, "clock is out of the range") == 1
    end = sender.events()[-1]
    assert isinstance(end, RunEnd) and end.ended_at_ms == 0


def test_params_out_of_bounds_are_refused_once_per_kind(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    config: dict[str, Any] = {f"p{i}": i for i in range(MAX_PARAMS - 2)}
    config["k" * (MAX_KEY_LEN + 1)] = 1
    config["long"] = "v" * (MAX_TEXT_LEN + 1)
    config["longest"] = "v" * (MAX_TEXT_LEN + 2)
    config["fits"] = "v" * MAX_TEXT_LEN
    sender = FakeSender()
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run = make_run(settings, sender, config=config)
        run.log_params({"last": 1, "more": 2, "p0": "changed"})  # one more fits, a held key may change
        report = run.finish()
    start = next(e for e in sender.events() if isinstance(e, RunStart))
    updates = [e for e in sender.events() if isinstance(e, RunUpdate)]
    stored = dict(start.params)
    for update in updates:
        stored.update(update.params)
    assert len(stored) == MAX_PARAMS == len(run.params)
    assert stored["fits"] == "v" * MAX_TEXT_LEN and stored["last"] == "1" and stored["p0"] == "changed"
    assert "more" not in stored and "long" not in stored
    assert report.rejected_entries == 1 + 2 + 1  # key too long, values too long, one param too many
    assert warnings_of(caplog, "param key longer than 256") == 1
    assert warnings_of(caplog, "param value longer than 65,536") == 1
    assert warnings_of(caplog, "a run holds at most 10,000") == 1


def test_tags_out_of_bounds_are_refused_by_set_tags_and_are_a_usage_error_in_init(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(UsageError, match="tag value longer than 1,024 characters"):
        make_run(settings, FakeSender(), tags={"k": "v" * (MAX_LABEL_LEN + 1)})
    with pytest.raises(UsageError, match="tag key longer than 256 characters"):
        make_run(settings, FakeSender(), tags=["t" * (MAX_KEY_LEN + 1)])
    with pytest.raises(UsageError, match="a run holds at most 256"):
        make_run(settings, FakeSender(), tags=[f"t{i}" for i in range(MAX_TAGS + 1)])
    sender = FakeSender()
    run = make_run(settings, sender, tags=[f"t{i}" for i in range(MAX_TAGS - 1)])
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run.set_tags({"k": "v" * (MAX_LABEL_LEN + 1), "ok": "v" * MAX_LABEL_LEN, "over": ""})
        run.set_tags({"t0": "relabelled"})
    report = run.finish()
    assert len(run.info.tags) == MAX_TAGS and run.info.tags["t0"] == "relabelled"
    assert "over" not in run.info.tags and "k" not in run.info.tags
    assert report.rejected_entries == 2
    assert warnings_of(caplog, "tag value longer than 1,024") == 1
    assert warnings_of(caplog, "a run holds at most 256") == 1


def test_summary_values_out_of_bounds_are_refused(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run.summary.update({f"s{i}": float(i) for i in range(MAX_SUMMARY - 1)})
        run.summary["note"] = "x" * (MAX_TEXT_LEN + 1)
        run.summary["k" * (MAX_KEY_LEN + 1)] = 1.0
        run.summary["bad\nkey"] = 1.0
        run.summary["bad"] = object()
        run.summary.update({"last": "fits", "one_more": 1.0})
        run.summary["s0"] = -1.0  # a held key may change
    report = run.finish()
    assert len(run.summary) == MAX_SUMMARY and run.summary["s0"] == -1.0 and run.summary["last"] == "fits"
    sent: dict[str, Any] = {}
    for update in (e for e in sender.events() if isinstance(e, RunUpdate)):
        sent.update(update.summary)
    assert sent == dict(run.summary)
    assert report.rejected_entries == 5
    for needle in (
        "summary value longer than 65,536",
        "summary key longer than 256",
        "summary key holds a control character",
        "summary value must be a number or text",
        "a run holds at most 1,000",
    ):
        assert warnings_of(caplog, needle) == 1, needle


@pytest.mark.parametrize(
    "distributed",
    [Distributed(rank=-1, world_size=2), Distributed(rank=2, world_size=2), Distributed(world_size=MAX_WORLD_SIZE + 1)],
)
def test_a_place_in_a_job_outside_the_schemas_bounds_is_a_usage_error(
    settings: Settings, distributed: Distributed
) -> None:
    with pytest.raises(UsageError, match="rank < world_size"):
        make_run(settings, FakeSender(), distributed=distributed)


def test_a_launchers_world_size_is_kept_within_the_schemas_bound() -> None:
    placed = detect({"RANK": "1999999", "WORLD_SIZE": "2000000"})
    assert (placed.rank, placed.world_size) == (MAX_WORLD_SIZE - 1, MAX_WORLD_SIZE)
