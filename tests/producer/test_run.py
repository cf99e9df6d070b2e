"""The SDK's Run against a stand-in producer: step rule, value handling, lifecycle, delivery."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runstream import _environment
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.errors import UsageError
from runstream_core.events import Heartbeat, MetricBatch, RunEnd, RunStart, RunUpdate
from tests.producer.fixtures import FakeSender, factory_for, unit_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path, flush_interval_s=0.05, finish_timeout_s=5)


def make_run(settings: Settings, sender: Any, **kwargs: Any) -> Run:
    args: dict[str, Any] = {
        "project": "p",
        "team": "t",
        "name": None,
        "group": None,
        "tags": (),
        "config": None,
        "run_id": None,
    }
    args.update(kwargs)
    return Run(settings=settings, sender_factory=sender if callable(sender) else factory_for(sender), **args)


def test_missing_step_auto_increments_and_nested_keys_flatten(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    run.log({"loss": 1.0})
    run.log({"loss": 0.5, "eval": {"acc": 0.25}})
    run.log({"loss": 0.25}, step=10)
    run.log({"acc": 0.75}, step=10)  # same step again is fine
    run.log({"loss": 0.125})
    assert run.finish().complete
    assert sender.points() == [
        ("loss", 0, 1.0),
        ("loss", 1, 0.5),
        ("eval/acc", 1, 0.25),
        ("loss", 10, 0.25),
        ("acc", 10, 0.75),
        ("loss", 11, 0.125),
    ]


def test_backwards_steps_are_dropped_counted_and_warned_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    run.log({"loss": 1.0}, step=5)
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run.log({"loss": 2.0, "acc": 1.0}, step=3)
        run.log({"loss": 3.0}, step=4)
    run.log({"loss": 4.0}, step=6)
    report = run.finish()
    assert sender.points() == [("loss", 5, 1.0), ("loss", 6, 4.0)]
    assert report.rejected_points == 3
    assert sum("step went backwards" in r.getMessage() for r in caplog.records) == 1


def test_log_at_takes_each_keys_steps_in_any_order_as_mlflow_does(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    run.log_at(5, {"loss": 1.0})
    run.log_at(0, {"val_loss": 2.0})  # behind the run's step: kept (each key's steps are its own)
    run.log_at(0, {"val_loss": 3.0})  # the same step again: kept
    run.log_at(-1, {"x": 1.0})  # outside 0..MAX_STEP: rejected
    run.log_at(7, {"bad": "text", "ok": np.float32(0.5)})
    assert run.step == 7
    run.log({"loss": 0.5})  # log() goes on after the highest step
    report = run.finish()
    assert sender.points() == [
        ("loss", 5, 1.0),
        ("val_loss", 0, 2.0),
        ("val_loss", 0, 3.0),
        ("ok", 7, 0.5),
        ("loss", 8, 0.5),
    ]
    assert report.rejected_points == 2


def test_rename_sends_the_new_name_and_refuses_a_bad_one(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(settings, sender, name="first")
    run.rename("second")
    run.rename("second")  # unchanged: nothing sent
    with pytest.raises(UsageError, match="control character"):
        run.rename("bad\nname")
    run.finish()
    names = [event.run.name for event in sender.events() if hasattr(event, "run")]
    assert names == ["first", "second", "second"]  # start, the rename, the end


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (3, 3.0),
        (True, 1.0),
        (np.float32(0.5), 0.5),
        (np.int64(7), 7.0),
        (np.array(2.5), 2.5),
        (float("inf"), math.inf),
        (float("-inf"), -math.inf),
    ],
)
def test_numbers_of_every_kind_are_stored(settings: Settings, value: Any, stored: float) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    run.log({"x": value})
    run.finish()
    assert sender.points() == [("x", 0, stored)]


def test_nan_is_stored_as_nan(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    run.log({"x": float("nan")})
    run.finish()
    (point,) = sender.points()
    assert point[:2] == ("x", 0) and math.isnan(point[2])


def test_bad_values_are_dropped_with_one_warning_each_and_never_raise(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    with caplog.at_level(logging.WARNING, logger="runstream"):
        for _ in range(3):
            run.log({"s": "high", "n": None, "big": 10**400, "ok": 1.0, "k" * 300: 1.0, 7: 2.0})
        run.log("not a mapping")  # type: ignore[arg-type]
        run.log({"ok": 1.0}, step="3")  # type: ignore[arg-type]
    run.finish()
    assert sender.points() == [("ok", 0, 1.0), ("ok", 1, 1.0), ("ok", 2, 1.0)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not a number" in m for m in messages) == 2  # one per bad key: s, n
    assert sum("too large for a float" in m for m in messages) == 1  # big
    assert sum("too long" in m for m in messages) == 1
    assert sum("keys must be strings" in m for m in messages) == 1
    assert sum("takes a mapping" in m for m in messages) == 1
    assert sum("step must be an int" in m for m in messages) == 1


def test_lifecycle_events_carry_identity_config_and_sequence(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(
        settings,
        sender,
        name="exp-1",
        group="sweep",
        tags=["baseline"],
        config={"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "amp": True},
        run_id="run-42",
    )
    run.log({"loss": 1.0})
    run.finish()
    events = sender.events()
    start, end = events[0], events[-1]
    assert isinstance(start, RunStart) and isinstance(end, RunEnd)
    assert start.run.run_id == "run-42" and start.run.name == "exp-1" and start.run.group == "sweep"
    assert start.run.tags == {"baseline": ""}
    assert start.params == {"opt.lr": "0.1", "opt.betas": "[0.9, 0.99]", "amp": "true"}
    assert end.status == "finished"
    assert [e.seq for e in events] == sorted({e.seq for e in events})  # unique, increasing per producer
    assert {e.producer_id for e in events} == {start.producer_id}
    assert all(key == b"run-42" for _, key, _ in sender.sent)
    assert {topic for topic, _, _ in sender.sent} == {"unit.runs", "unit.metrics"}


def test_context_manager_marks_failure_and_reraises(settings: Settings) -> None:
    sender = FakeSender()
    with pytest.raises(ZeroDivisionError), make_run(settings, sender) as run:
        run.log({"loss": 1.0})
        _ = 1 / 0
    end = sender.events()[-1]
    assert isinstance(end, RunEnd) and end.status == "failed"


def test_finish_is_idempotent_and_log_after_finish_is_ignored(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    first = run.finish("killed")
    assert run.finish() is first
    run.log({"loss": 1.0})
    assert sender.points() == []
    assert [type(e) for e in sender.events()] == [RunStart, RunEnd]
    assert sender.events()[-1].status == "killed"  # type: ignore[union-attr]
    assert sender.closed


def test_points_are_packed_many_per_record(settings: Settings) -> None:
    small = settings.model_copy(update={"max_points_per_record": 100})
    sender = FakeSender()
    run = make_run(small, sender)
    for step in range(50):
        run.log({f"m{i}": float(i) for i in range(10)}, step=step)
    run.finish()
    batches = [e for e in sender.events() if isinstance(e, MetricBatch)]
    assert sum(len(b.keys) for b in batches) == 500
    assert all(len(b.keys) <= 100 for b in batches)
    assert len(batches) <= 10


def test_failed_deliveries_are_retried(settings: Settings) -> None:
    sender = FakeSender()
    sender.fail_next = 2
    run = make_run(settings, sender)
    run.log({"loss": 1.0})
    report = run.finish()
    assert report.complete and report.failed_sends == 2
    assert sender.points() == [("loss", 0, 1.0)]
    # Retries may reorder records; every one arrives once, identified by its sequence number.
    assert sorted((e.seq, type(e).__name__) for e in sender.events()) == [
        (0, "RunStart"),
        (1, "MetricBatch"),
        (2, "RunEnd"),
    ]


def test_unreachable_kafka_never_raises_and_finish_reports_what_is_pending(settings: Settings) -> None:
    def unreachable(_: Settings) -> FakeSender:
        raise ConnectionRefusedError("no broker")

    run = make_run(settings, unreachable)
    for step in range(1000):
        run.log({"loss": float(step)}, step=step)
    report = run.finish(timeout=0.5)
    assert not report.complete
    assert report.pending_records >= 2  # start, end and the metric record(s) are all still here


def test_heartbeats_are_sent_on_the_interval(settings: Settings) -> None:
    fast = settings.model_copy(update={"heartbeat_interval_s": 0.05})
    sender = FakeSender()
    run = make_run(fast, sender)
    run.log({"loss": 1.0}, step=7)
    time.sleep(0.4)
    run.finish()
    beats = [e for e in sender.events() if isinstance(e, Heartbeat)]
    assert len(beats) >= 2
    assert beats[-1].step == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"project": ""}, "project"),
        ({"team": " "}, "team"),
        ({"run_id": "has space"}, "run_id"),
        ({"project": "a\nb"}, r"project 'a\\nb' holds control character U\+000A"),
        ({"team": "t\x00"}, r"team 't\\x00' is not a team name"),
        ({"name": "run\x85"}, r"name 'run\\x85' holds control character U\+0085"),
        ({"group": "\x1bsweep"}, r"group '\\x1bsweep' holds control character U\+001B"),
        ({"name": "n" * 257}, "name is 257 characters long; the limit is 256"),
        ({"group": 7}, "group must be a string"),
        ({"tags": ["ok", "bad\t"]}, r"tag 'bad\\t': '' holds a control character"),
        ({"tags": {"k": "v\x7f"}}, r"tag 'k': 'v\\x7f' holds a control character"),
    ],
)
def test_bad_init_arguments_raise_a_usage_error(settings: Settings, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_run(settings, FakeSender(), **kwargs)


def test_names_with_quotes_backslashes_and_unicode_are_kept(settings: Settings) -> None:
    sender = FakeSender()
    name = "\\'), 1, 0) AS x, -- 损失 😀 {a,b} %2C"
    run = make_run(settings, sender, project=name, name=name, group=name, tags={name: name})
    run.log({name: 1.0})
    run.finish()
    start = next(e for e in sender.events() if isinstance(e, RunStart))
    assert (start.run.project, start.run.name, start.run.group) == (name, name, name)  # a team name is stricter
    assert start.run.tags == {name: name}
    assert sender.points() == [(name, 0, 1.0)]


def test_keys_with_control_characters_are_dropped_with_one_warning_per_key(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    run = make_run(settings, sender, config={"lr": 0.1, "bad\nkey": 1, "nested": {"x\x00": 2}})
    with caplog.at_level(logging.WARNING, logger="runstream"):
        for _ in range(3):
            run.log({"ok": 1.0, "bad\nkey": 2.0, "bell\x07": 3.0, "nel\x85": 4.0})
        run.log({"eval": {"acc\r": 0.5}})
        run.log_params({"wd": 0.01, "tab\tkey": 1})
        run.set_tags({"stage": "ft", "bad\x1f": "v", "k": "bad\x9f"})
    report = run.finish()
    assert sender.points() == [("ok", 0, 1.0), ("ok", 1, 1.0), ("ok", 2, 1.0)]
    assert report.rejected_points == 3 * 3 + 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("metric key holds a control character" in m for m in messages) == 4  # one per bad key
    assert sum("param key holds a control character" in m for m in messages) == 3
    assert sum("tag key holds a control character" in m for m in messages) == 1
    assert sum("tag value holds a control character" in m for m in messages) == 1
    assert report.rejected_entries == 3 + 2  # params, tags
    starts = [e for e in sender.events() if isinstance(e, RunStart)]
    assert starts[0].params == {"lr": "0.1"}
    updates = [e for e in sender.events() if isinstance(e, RunUpdate)]
    assert [u.params for u in updates] == [{"wd": "0.01"}, {}]
    assert updates[-1].run.tags == {"stage": "ft"}


def test_user_host_and_commit_read_from_the_machine_are_cleaned(monkeypatch: pytest.MonkeyPatch) -> None:
    """An odd $USER or hostname must not get every record of the run refused by the worker."""
    monkeypatch.setattr(_environment.getpass, "getuser", lambda: "ada\n\x00" + "x" * 300)
    monkeypatch.setattr(_environment.socket, "gethostname", lambda: "node\x85-1")
    assert _environment.username() == "ada" + "x" * 253
    assert _environment.hostname() == "node-1"
