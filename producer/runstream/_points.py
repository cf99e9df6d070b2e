"""What a metric point is, checked in one place: every path that accepts points goes through ``check_points``.

A point is a key and a number. The key is a string of 1 to ``MAX_KEY_LEN`` characters without a
control character (the worker refuses a record holding any other). The number is an int or a float
as it is, or anything with ``__float__`` (bool, numpy scalars, 0-d tensors) converted; NaN and
+/-inf are numbers, text, bytes and None are not. MessagePack carries integers in
[-2**63, 2**64): larger ones travel as floats, and one too large for a float is refused.

``log()`` takes a row of plain floats and ints as it is and the sender thread checks it when packing
(one pass per new set of keys); any other row is checked at once, in the caller, since a tensor or
array could change after ``log()`` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runstream_core.events import MAX_KEY_LEN, control_character

WarnOnce = Callable[..., object]
"""``warn_once(kind, message, **fields)`` (``runstream_core.log.WarnOnce``): logs each ``kind`` once."""

Number = float | int

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def check_points(
    keys: Sequence[Any], values: Sequence[Any], warn_once: WarnOnce
) -> tuple[tuple[str, ...], tuple[Number, ...]]:
    """The points of the parallel ``keys`` and ``values`` that can be stored, values as numbers.

    Each point refused is reported to ``warn_once``: one warning for keys that are not strings, one
    for keys empty or too long, and one per key for a control character, a value that is not a
    number or an int too large for a float. The caller counts them: ``len(keys)`` minus the kept.
    """
    if _all_valid(keys, values):
        return tuple(keys), tuple(values)
    kept_keys: list[str] = []
    kept_values: list[Number] = []
    for key, value in zip(keys, values, strict=True):
        if type(key) is not str:
            warn_once("key-type", "metric keys must be strings; point rejected", key=repr(key)[:64])
            continue
        number = _number(value)
        if number is None:
            warn_once(f"value:{key}", "metric value is not a number; rejected", key=key[:64], value=repr(value)[:64])
            continue
        if not 0 < len(key) <= MAX_KEY_LEN:
            warn_once("key-length", "metric key empty or too long; point rejected", key=key[:64], limit=MAX_KEY_LEN)
            continue
        char = control_character(key)
        if char is not None:
            warn_once(
                f"key-control:{key}",
                "metric key holds a control character; point rejected",
                key=repr(key)[:64],
                character=f"U+{ord(char):04X}",
            )
            continue
        if type(number) is int and not _INT_MIN <= number <= _INT_MAX:
            try:
                number = float(number)
            except OverflowError:
                warn_once(f"value-overflow:{key}", "metric value too large for a float; point rejected", key=key)
                continue
        kept_keys.append(key)
        kept_values.append(number)
    return tuple(kept_keys), tuple(kept_values)


def _all_valid(keys: Sequence[Any], values: Sequence[Any]) -> bool:
    """One quick pass for the usual row, where every point is fine."""
    return (
        all(type(k) is str and 0 < len(k) <= MAX_KEY_LEN for k in keys)
        and control_character("".join(keys)) is None
        and all(type(v) is float or (type(v) is int and _INT_MIN <= v <= _INT_MAX) for v in values)
    )


def _number(value: Any) -> Number | None:
    if type(value) is float or type(value) is int:
        return value
    if isinstance(value, (str, bytes, bytearray)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None
