"""Kills the worker at a chosen point of an insert, for tests/faults/test_worker_kill.py (test-only).

A worker started with this folder on ``PYTHONPATH`` imports it at start-up. When
``RUNSTREAM_FAULT_KILL`` names a point, the first insert of metric rows holding the key
``RUNSTREAM_FAULT_MARKER`` ends in SIGKILL at that point:

- ``before``: before anything of the insert is sent;
- ``between``: after the ``metrics`` part is committed under the insert's token, before any of its
  materialized views (the part goes in with every view made to fail and their errors ignored:
  ``GROUP BY`` limited to one row, which every rollup view of ``metrics`` needs more than);
- ``after``: after the whole insert, views included, before the batch is acknowledged.
"""

from __future__ import annotations

import os
import signal
from typing import Any

POINT = os.environ.get("RUNSTREAM_FAULT_KILL", "")
MARKER = os.environ.get("RUNSTREAM_FAULT_MARKER", "")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install() -> None:
    from runstream_worker import sink
    from runstream_worker.tables import metrics

    original = sink.ClickHouseSink.write

    def write(self: sink.ClickHouseSink, rows: Any, token: str | None) -> None:
        key_column = rows.metrics[metrics.COLUMNS.index("key")]
        if token is None or MARKER not in key_column:
            original(self, rows, token)
            return
        if POINT == "before":
            _die()
        if POINT == "between":
            settings = {
                "insert_deduplication_token": f"metrics:{token}",
                "deduplicate_blocks_in_dependent_materialized_views": 1,
                "max_rows_to_group_by": 1,
                "group_by_overflow_mode": "throw",
                "materialized_views_ignore_errors": 1,
            }
            self._ensure_client().insert(
                "metrics", rows.metrics, column_names=metrics.COLUMNS, column_oriented=True, settings=settings
            )
            _die()
        original(self, rows, token)
        _die()

    sink.ClickHouseSink.write = write  # type: ignore[method-assign]


if POINT in ("before", "between", "after") and MARKER:
    _install()
