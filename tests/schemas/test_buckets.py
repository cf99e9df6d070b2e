"""The step-bucket geometry is defined once (runstream_core.buckets); the migration builds exactly it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from runstream_core import buckets
from runstream_core.clickhouse import connect
from runstream_worker.migrate import load_migrations, migrate
from tests.fixtures.settings import StackSettings

STEPS = 70_000  # past one coarsest bucket (65,536 steps)


def test_the_migration_uses_the_geometry() -> None:
    rollups = next(m for m in load_migrations() if m.name == "rollups").sql
    view = rollups[rollups.index("CREATE MATERIALIZED VIEW IF NOT EXISTS metric_buckets_mv") :]
    view = view[: view.index(";")]
    assert f"intDiv(step, {buckets.STEPS_PER_BUCKET}) AS fine" in view
    assert f"bitShiftLeft(toInt64(1), {buckets.LEVEL_SHIFT} * (level - 1))" in view
    assert re.search(r"ARRAY JOIN \[([\d, ]+)\] AS level", view)[1] == ", ".join(map(str, buckets.LEVELS))  # type: ignore[index]
    assert buckets.STEPS_PER_BUCKET == 1 << buckets.LEVEL_SHIFT


def test_stored_buckets_have_the_widths_the_geometry_says(tmp_path: Path) -> None:
    settings = StackSettings(_env_file=None, clickhouse_url=f"chdb://{tmp_path / 'db'}")  # type: ignore[call-arg]
    migrate(settings)
    client = connect(settings)
    try:
        n = STEPS
        client.insert(
            "metrics",
            [["t"] * n, ["p"] * n, ["r"] * n, ["loss"] * n, list(range(n)), [1_700_000_000_000] * n, [1.0] * n],
            column_names=["team", "project", "run_id", "key", "step", "ts", "value"],
            column_oriented=True,
        )
        rows = client.query(
            "SELECT level, count(), max(points), min(points) FROM "
            "(SELECT level, bucket, sum(points) AS points FROM metric_buckets GROUP BY level, bucket) "
            "GROUP BY level ORDER BY level"
        ).result_rows
    finally:
        client.close()
    expected = []
    for level in buckets.LEVELS:
        width = buckets.steps_per_bucket(level)
        expected.append((level, math.ceil(n / width), width, n % width or width))
    assert rows == expected


@pytest.mark.parametrize(
    ("steps", "target", "level"),
    [
        (999, 1000, 1),
        (16_000, 1000, 1),
        (16_001, 1000, 2),
        (256_000, 1000, 2),
        (65_536_000, 1000, 4),
        (10**9, 1000, None),
    ],
)
def test_finest_level(steps: int, target: int, level: int | None) -> None:
    assert buckets.finest_level(steps, target) == level
