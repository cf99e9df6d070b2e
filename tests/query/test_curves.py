"""curves(): raw points for short curves, else the finest bucket level with at most `points` rows."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from runstream import query
from runstream.query._curves import CurvePlan, plan_curve, read_plan
from runstream.query._lookup import find_runs
from runstream_core.errors import UsageError
from tests.fixtures.seed import STEPS, SeedRun, acc_at, loss_at
from tests.query.conftest import Seeded

RUNS = ["vision-0-2", "vision-0-0"]  # not in id order: rows follow the order asked for


def expected_buckets(run: SeedRun, curve: Callable[[SeedRun, int], float], width: int) -> list[tuple[float, ...]]:
    """(middle step, mean, min, max) of each ``width``-step bucket of the seed's curve."""
    rows: list[tuple[float, ...]] = []
    for first in range(0, STEPS, width):
        last = min(first + width, STEPS) - 1
        values = [curve(run, step) for step in range(first, last + 1)]
        rows.append(((first + last) // 2, sum(values) / len(values), min(values), max(values)))
    return rows


def assert_curve(frame_rows: list[tuple[float, ...]], expected: list[tuple[float, ...]]) -> None:
    assert [row[0] for row in frame_rows] == [row[0] for row in expected]
    for got, want in zip(frame_rows, expected, strict=True):
        assert got[1:] == pytest.approx(want[1:], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("points", "width"), [(1000, 16), (125, 16), (124, 256), (100, 256), (7, 4096), (2, 4096)])
def test_downsampled_from_the_finest_level_that_fits(seeded: Seeded, points: int, width: int) -> None:
    frame = query.curves(RUNS, "loss", points=points, settings=seeded.settings)
    assert list(frame.columns) == ["run_id", "step", "value", "min", "max"]
    assert list(dict.fromkeys(frame["run_id"])) == RUNS
    for run_id in RUNS:
        run = seeded.facts.run(run_id)
        rows = [tuple(r) for r in frame[frame["run_id"] == run_id][["step", "value", "min", "max"]].to_numpy()]
        assert len(rows) == math.ceil(STEPS / width) <= points
        assert_curve(rows, expected_buckets(run, loss_at, width))


def test_last_bucket_holds_the_last_steps(seeded: Seeded) -> None:
    frame = query.curves("vision-0-0", "acc", points=1000, settings=seeded.settings)
    run = seeded.facts.run("vision-0-0")
    last = frame.iloc[-1]
    assert int(last["step"]) == (STEPS - 16 + STEPS - 1) // 2  # the middle of steps 1984..1999
    tail = [acc_at(run, step) for step in range(STEPS - 16, STEPS)]
    assert last["value"] == pytest.approx(sum(tail) / 16, rel=1e-12)
    assert (last["min"], last["max"]) == pytest.approx((min(tail), max(tail)), rel=1e-12)


def test_short_curves_are_raw_points(seeded: Seeded) -> None:
    frame = query.curves(RUNS, "loss", points=STEPS, settings=seeded.settings)
    for run_id in RUNS:
        run = seeded.facts.run(run_id)
        curve = frame[frame["run_id"] == run_id]
        assert list(curve["step"]) == list(range(STEPS))
        assert list(curve["value"]) == [loss_at(run, step) for step in range(STEPS)]
        assert (curve["min"] == curve["value"]).all()
        assert (curve["max"] == curve["value"]).all()
        assert curve["value"].iloc[-1] == pytest.approx(run.final_loss, abs=1e-12)


def test_coarsest_level_buckets_merge_for_very_long_curves(seeded: Seeded) -> None:
    # Past level 4 (points * 65,536 steps) buckets are merged; the same SQL runs at any level.
    runs = find_runs(query.reader(seeded.settings).client, ["vision-0-0"])
    frame = read_plan(query.reader(seeded.settings).client, runs, "loss", CurvePlan(level=1, merge=4))
    rows = [tuple(r) for r in frame[["step", "value", "min", "max"]].to_numpy()]
    assert len(rows) == 32
    assert_curve(rows, expected_buckets(seeded.facts.run("vision-0-0"), loss_at, 64))


@pytest.mark.parametrize(
    ("points", "last_step", "target", "plan"),
    [
        (2000, 1999, 2000, CurvePlan(0)),
        (2001, 2000, 2000, CurvePlan(1)),
        (20, 10_000, 20, CurvePlan(0)),  # sparse points: raw, whatever the step range
        (16_000, 15_999, 1000, CurvePlan(1)),
        (16_001, 16_000, 1000, CurvePlan(2)),
        (10**6, 10**6 - 1, 1000, CurvePlan(3)),
        (10**7, 10**7 - 1, 1000, CurvePlan(4)),
        (10**8, 10**8 - 1, 2000, CurvePlan(4)),
        (10**9, 10**9 - 1, 1000, CurvePlan(4, merge=16)),  # 15,259 level-4 buckets
    ],
)
def test_plan(points: int, last_step: int, target: int, plan: CurvePlan) -> None:
    assert plan_curve(points, last_step, target) == plan


@pytest.mark.parametrize(
    ("run_ids", "key", "points", "message"),
    [
        ([], "loss", 1000, "run_ids is empty"),
        (["vision-0-0"], "loss", 1, "points must be an integer of at least 2, got 1"),
        (["vision-0-0"], "loss", True, "points must be an integer of at least 2, got True"),
        (["vision-0-0"], "", 1000, "key must be a metric key"),
        (
            ["vision-0-0"],
            "perplexity",
            1000,
            r"no metric 'perplexity' in run\(s\) vision-0-0; their metrics: \['acc', 'loss'\]",
        ),
        (["vision-0-0", "nope"], "loss", 1000, r"unknown run id\(s\): nope"),
        ([""], "loss", 1000, "run ids must be non-empty strings"),
    ],
)
def test_bad_input_is_a_clear_error(seeded: Seeded, run_ids: list[str], key: str, points: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        query.curves(run_ids, key, points=points, settings=seeded.settings)
