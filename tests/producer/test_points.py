"""The one check of metric points: which keys and values are kept, how they are converted, what is reported."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runstream._buffer import ColumnPacker
from runstream._points import check_points
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.events import MAX_KEY_LEN
from tests.producer.fixtures import FakeSender, factory_for, unit_settings


class Reports:
    """Records every ``warn_once(kind, message, **fields)`` call, without deduplicating."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, kind: str, message: str, **fields: Any) -> None:
        self.calls.append((kind, message))

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


def test_a_row_of_plain_numbers_is_kept_as_it_is() -> None:
    reports = Reports()
    keys, values = check_points(("loss", "acc", "epoch"), (0.5, float("nan"), 3), reports)
    assert keys == ("loss", "acc", "epoch")
    assert values[0] == 0.5 and math.isnan(values[1]) and values[2] == 3 and type(values[2]) is int
    assert reports.calls == []


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (True, 1.0),
        (np.float32(0.5), 0.5),
        (np.int64(7), 7.0),
        (np.array(2.5), 2.5),
        (float("-inf"), -math.inf),
        (2**63 - 1, 2**63 - 1),
        (2**64 - 1, 2**64 - 1),
        (2**64, float(2**64)),
        (-(2**63) - 1, -float(2**63 + 1)),
    ],
)
def test_numbers_of_every_kind_are_converted_or_kept(value: Any, kept: float) -> None:
    reports = Reports()
    assert check_points(["x"], [value], reports) == (("x",), (kept,))
    assert reports.calls == []


def test_every_bad_point_is_rejected_and_reported_by_kind() -> None:
    reports = Reports()
    keys = [7, "s", "n", "b", "k" * (MAX_KEY_LEN + 1), "", "bad\nkey", "big", "ok", None]
    values = [1.0, "high", None, b"1", 1.0, 1.0, 1.0, 10**400, 2.0, 3.0]
    assert check_points(keys, values, reports) == (("ok",), (2.0,))
    assert reports.kinds == [
        "key-type",
        "value:s",
        "value:n",
        "value:b",
        "key-length",
        "key-length",
        "key-control:bad\nkey",
        "value-overflow:big",
        "key-type",
    ]
    messages = [message for _, message in reports.calls]
    assert all(message.endswith("rejected") for message in messages)


def test_a_key_is_checked_before_its_value() -> None:
    reports = Reports()
    assert check_points([3, "k" * 300], ["text", None], reports) == ((), ())
    assert reports.kinds == ["key-type", "value:" + "k" * 300]


def test_the_key_at_most_max_key_len_characters_is_kept() -> None:
    reports = Reports()
    longest = "k" * MAX_KEY_LEN
    assert check_points([longest, "损失 😀 {a,b}"], [1.0, 2.0], reports) == ((longest, "损失 😀 {a,b}"), (1.0, 2.0))


def test_the_packer_checks_a_row_again_only_when_its_keys_change_or_it_holds_ints() -> None:
    reports = Reports()
    packer = ColumnPacker(reports)
    assert packer.add((0, 1.0, ("a", "b"), (1.0, 2.0))) == 2
    assert packer.add((1, 1.0, ("a", "b"), (3.0, 4.0))) == 2
    assert packer.add((2, 1.0, ("a", "b\x00"), (5.0, 6.0))) == 1
    assert packer.add((3, 1.0, ("a", "b"), (7, 10**400))) == 1
    columns = packer.take()
    assert list(zip(columns.keys, columns.steps, columns.values, strict=True)) == [
        ("a", 0, 1.0),
        ("b", 0, 2.0),
        ("a", 1, 3.0),
        ("b", 1, 4.0),
        ("a", 2, 5.0),
        ("a", 3, 7),
    ]
    assert packer.rejected == 2
    assert reports.kinds == ["key-control:b\x00", "value-overflow:b"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path, flush_interval_s=0.05, finish_timeout_s=5)


def test_log_rejects_the_same_points_and_warns_once_whether_it_checks_them_at_once_or_when_packing(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A row of plain numbers is checked on the sender thread, any other row in the caller: same verdicts,
    one warning per kind for the run."""
    sender = FakeSender()
    run = Run(project="p", team="t", settings=settings, sender_factory=factory_for(sender))
    bad = {"ok": 1.0, "bad\x07": 2.0, "k" * 300: 3.0, 5: 4.0, "huge": 10**400}
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run.log(bad, step=0)  # plain numbers: checked when packed
        run.log({**bad, "np": np.float64(5.0)}, step=1)  # a numpy value: checked in the caller
    report = run.finish()
    assert sender.points() == [("ok", 0, 1.0), ("ok", 1, 1.0), ("np", 1, 5.0)]
    assert report.rejected_points == 4 + 4
    messages = [r.getMessage() for r in caplog.records]
    for text in ("control character", "too long", "keys must be strings", "too large for a float"):
        assert sum(text in m for m in messages) == 1
