"""``params``: one row per run parameter, versioned by the lifecycle event that set it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runstream_core.events import RunInfo

COLUMNS = ("team", "project", "run_id", "key", "value", "updated_at")


def rows(run: RunInfo, params: Mapping[str, str], version: datetime) -> list[list[Any]]:
    return [[run.team, run.project, run.run_id, key, value, version] for key, value in params.items()]
