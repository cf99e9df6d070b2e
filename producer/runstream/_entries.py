"""What a param, tag or summary entry is, checked in one place (``_points`` does it for metric points).

The bounds are the event schema's (``runstream_core.events``), so the worker never sees an entry it
would refuse: keys (``Label``) at most ``MAX_KEY_LEN`` characters, param values and summary text
(``Text``) at most ``MAX_TEXT_LEN``, tag values (``TagValue``) at most ``MAX_LABEL_LEN``; keys and
tag values hold no control character; summary values are numbers or text. A run holds at most
``MAX_PARAMS`` params, ``MAX_TAGS`` tags and ``MAX_SUMMARY`` summary values: a new key past that is
refused, a key the run holds already may change. Each refused entry is reported to ``warn_once``
(once per kind) and counted by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runstream._points import WarnOnce
from runstream_core.events import (
    MAX_KEY_LEN,
    MAX_LABEL_LEN,
    MAX_PARAMS,
    MAX_SUMMARY,
    MAX_TAGS,
    MAX_TEXT_LEN,
    control_character,
)

SummaryValue = float | str


def check_params(
    entries: Iterable[tuple[str, str]], held: Mapping[str, str], warn_once: WarnOnce
) -> tuple[dict[str, str], int]:
    """The params of ``entries`` (key, text) that may be stored next to the run's ``held`` ones, and how
    many were refused."""
    return _check("param", entries, held, MAX_PARAMS, MAX_TEXT_LEN, warn_once, control_in_values=False)


def check_tags(
    entries: Iterable[tuple[str, str]], held: Mapping[str, str], warn_once: WarnOnce
) -> tuple[dict[str, str], int]:
    """The tags of ``entries`` (key, value) that may be stored next to the run's ``held`` ones, and how
    many were refused."""
    return _check("tag", entries, held, MAX_TAGS, MAX_LABEL_LEN, warn_once, control_in_values=True)


def check_summary(
    entries: Iterable[tuple[Any, Any]], held: Mapping[str, SummaryValue], warn_once: WarnOnce
) -> tuple[dict[str, SummaryValue], int]:
    """The summary values of ``entries`` (numbers, or text) that may be stored next to the run's ``held``
    ones, as floats or text, and how many were refused."""
    values: list[tuple[str, SummaryValue]] = []
    refused = 0
    for key, value in entries:
        number = summary_value(value)
        if not isinstance(key, str) or number is None:
            warn_once(
                "summary-type", "summary value must be a number or text under a string key; refused", key=repr(key)[:64]
            )
            refused += 1
            continue
        values.append((key, number))
    kept, more = _check("summary", values, held, MAX_SUMMARY, MAX_TEXT_LEN, warn_once, control_in_values=False)
    return kept, refused + more


def summary_value(value: Any) -> SummaryValue | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _check(
    what: str,
    entries: Iterable[tuple[str, Any]],
    held: Mapping[str, Any],
    max_entries: int,
    max_text: int,
    warn_once: WarnOnce,
    *,
    control_in_values: bool,
) -> tuple[dict[str, Any], int]:
    kept: dict[str, Any] = {}
    refused = 0
    for key, value in entries:
        problem = _problem(what, key, value, max_text, control_in_values=control_in_values)
        if problem is None and key not in held and key not in kept and len(held) + len(kept) >= max_entries:
            problem = (f"{what}-count", f"{what} refused: a run holds at most {max_entries:,}")
        if problem is None:
            kept[key] = value
            continue
        refused += 1
        kind, message = problem
        warn_once(kind, message, key=repr(key)[:64])
    return kept, refused


def _problem(what: str, key: str, value: Any, max_text: int, *, control_in_values: bool) -> tuple[str, str] | None:
    """(warning kind, message) of what is wrong with one entry, or None. A control character is told once
    per key, anything else once per kind."""
    if len(key) > MAX_KEY_LEN:
        return f"{what}-key-length", f"{what} key longer than {MAX_KEY_LEN} characters; refused"
    if control_character(key) is not None:
        return f"{what}-control:{key}", f"{what} key holds a control character; refused"
    if isinstance(value, str):
        if len(value) > max_text:
            return f"{what}-value-length", f"{what} value longer than {max_text:,} characters; refused"
        if control_in_values and control_character(value) is not None:
            return f"{what}-control:{key}", f"{what} value holds a control character; refused"
    return None
