"""The geometry of the step-bucket rollup (``metric_buckets``), defined once.

Level ``L`` groups ``STEPS_PER_BUCKET ** L`` steps into one bucket, for ``L`` in ``LEVELS``: 16,
256, 4096 and 65536 steps. Migration 0003 builds the rollup with this geometry (a test checks the
migration's SQL against it), ``runstream.query`` and the dashboards pick a level with it.
"""

from __future__ import annotations

from typing import Final

STEPS_PER_BUCKET: Final = 16
LEVEL_SHIFT: Final = 4
"""log2(STEPS_PER_BUCKET): a level's bucket width is ``1 << (LEVEL_SHIFT * level)`` steps."""
LEVELS: Final = (1, 2, 3, 4)
COARSEST: Final = LEVELS[-1]


def steps_per_bucket(level: int) -> int:
    """Steps in one bucket of ``level`` (0: raw points, one step each)."""
    return 1 << (LEVEL_SHIFT * level)


def finest_level(steps: int, target: int) -> int | None:
    """The finest level that draws ``steps`` steps in at most ``target`` buckets; None if none does."""
    return next((level for level in LEVELS if -(-steps // steps_per_bucket(level)) <= target), None)


def level_sql(longest_step: str, target: int) -> str:
    """SQL for the level a curve of ``longest_step + 1`` steps is drawn from: 0 (raw points) under
    ``target`` steps, else the finest level with at most about ``target`` buckets, at most the coarsest."""
    return (
        f"if({longest_step} < {target}, 0, least({COARSEST}, greatest({LEVELS[0]}, "
        f"toUInt8(ceil(log2(({longest_step} + 1) / {target}) / {LEVEL_SHIFT})))))"
    )


def width_sql(level: str) -> str:
    """SQL for the steps per bucket of ``level``."""
    return f"bitShiftLeft(toInt64(1), {LEVEL_SHIFT} * {level})"
