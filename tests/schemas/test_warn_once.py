"""One warn-once rule for every component that reports recurring trouble."""

from __future__ import annotations

import logging

import pytest

from runstream_core.log import WarnOnce, get_logger


def test_each_kind_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    warn = WarnOnce(get_logger("runstream.test"))
    with caplog.at_level(logging.WARNING, logger="runstream.test"):
        told = [warn("disk-full", "spool cannot be written", path="/x") for _ in range(3)]
        told.append(warn(("key", "a"), "bad key", key="a"))
        told.append(warn(("key", "b"), "bad key", key="b"))
    assert told == [True, False, False, True, True]
    assert [r.getMessage().split()[0] for r in caplog.records] == ["event='spool", "event='bad", "event='bad"]
