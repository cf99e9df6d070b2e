"""What every integration shares: starting its run with the settings' defaults, and keeping numbers only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runstream.errors import UsageError
from runstream.run import Run, RunOptions, init
from runstream.settings import Settings


def start_run(project: str | None, team: str | None, options: RunOptions) -> Run:
    """``runstream.init()`` with ``project`` and ``team`` falling back to RUNSTREAM_PROJECT and RUNSTREAM_TEAM."""
    settings = options.get("settings") or Settings()
    options["settings"] = settings
    project = project or settings.project
    team = team or settings.team
    if not project or not team:
        raise UsageError(
            "a framework integration needs a project and a team: pass project= and team=, or set "
            "RUNSTREAM_PROJECT and RUNSTREAM_TEAM"
        )
    return init(project, team, **options)


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries that are numbers (ints, floats, bools, numpy scalars, 0-d tensors); text and the rest
    (a framework's learning-rate schedule name, say) are left out."""
    kept: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, str) or not hasattr(value, "__float__"):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):  # a tensor with more than one element
            continue
        kept[str(key)] = number  # NaN and inf kept: a diverging loss is worth seeing
    return kept
