"""Flattening of nested dicts into single-level keys ("optimizer" -> {"lr": 1} becomes "optimizer.lr")."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def flatten(
    mapping: Mapping[Any, Any], sep: str, prefix: str = "", *, keep_bad_keys: bool = False
) -> Iterator[tuple[Any, Any]]:
    """Yield (joined key, leaf value) pairs; keys are converted with ``str``.

    ``keep_bad_keys``: a key that is not a string is yielded as it is, with its value, so that the
    caller can reject it (metric keys must be strings; config keys may be anything).
    """
    for key, value in mapping.items():
        if keep_bad_keys and not isinstance(key, str):
            yield key, value
            continue
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            yield from flatten(value, sep, name, keep_bad_keys=keep_bad_keys)
        else:
            yield name, value


def param_text(value: Any) -> str:
    """Render a config value as the text stored in ``params.value`` (MLflow stores params as text too)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(param_text(v) for v in value) + "]"
    return str(value)
