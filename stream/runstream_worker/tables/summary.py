"""``summary``: one row per explicit run summary value, a number or a text."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runstream_core.events import RunInfo

COLUMNS = ("team", "project", "run_id", "key", "value", "text", "updated_at")


def rows(run: RunInfo, summary: Mapping[str, float | str], version: datetime) -> list[list[Any]]:
    out = []
    for key, value in summary.items():
        number, text = (None, value) if isinstance(value, str) else (value, "")
        out.append([run.team, run.project, run.run_id, key, number, text, version])
    return out
