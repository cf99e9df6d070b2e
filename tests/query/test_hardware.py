"""hardware(): per-minute mean, min and max of a run's readings equal those of the raw samples."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
import pytest

from runstream import query
from runstream_core import hardware_keys as hw
from runstream_core.errors import UsageError
from tests.fixtures.seed import HW_INTERVAL_MS, HW_SAMPLES
from tests.query.conftest import Seeded

IDLE_RUN = "vision-0-1"  # its gpu1 idles at 3 %


def seeded_minutes(now_ms: int) -> dict[tuple[str, str, int], list[float]]:
    """The seed's raw samples of ``IDLE_RUN`` grouped by (key, device, minute start in ms)."""
    minutes: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    start = now_ms - HW_SAMPLES * HW_INTERVAL_MS
    for sample in range(HW_SAMPLES):
        ts = start + sample * HW_INTERVAL_MS
        minute = ts - ts % 60_000
        minutes[(hw.CPU_PERCENT, "", minute)].append(40.0 + sample % 20)
        minutes[(hw.GPU_UTILIZATION_PERCENT, "gpu0", minute)].append(80.0 + sample % 10)
        minutes[(hw.GPU_UTILIZATION_PERCENT, "gpu1", minute)].append(3.0)
    return minutes


def test_minute_means_match_the_raw_samples(seeded: Seeded) -> None:
    frame = query.hardware(IDLE_RUN, [hw.GPU_UTILIZATION_PERCENT, hw.CPU_PERCENT], settings=seeded.settings)
    assert list(frame.columns) == ["minute", "host", "key", "device", "mean", "min", "max"]
    expected = seeded_minutes(seeded.facts.now_ms)
    assert len(frame) == len(expected)
    assert set(frame["host"]) == {seeded.facts.run(IDLE_RUN).host}
    # Ordered by key, device, then minute.
    assert [(r.key, r.device) for r in frame.itertuples()] == sorted((k, d) for k, d, _ in expected)
    for row in frame.itertuples():
        samples = expected[(row.key, row.device, int(row.minute.timestamp() * 1000))]
        assert row.mean == pytest.approx(sum(samples) / len(samples), rel=1e-12)
        assert (row.min, row.max) == (min(samples), max(samples))
    idle = frame[(frame["key"] == hw.GPU_UTILIZATION_PERCENT) & (frame["device"] == "gpu1")]
    assert (idle["mean"] == 3.0).all()
    assert frame["minute"].iloc[0] == pd.Timestamp(min(m for _, _, m in expected), unit="ms", tz="UTC")


def test_all_keys_by_default(seeded: Seeded) -> None:
    frame = query.hardware(IDLE_RUN, settings=seeded.settings)
    assert sorted(set(frame["key"])) == sorted(
        [
            hw.CPU_PERCENT,
            hw.MEMORY_USED_BYTES,
            hw.GPU_UTILIZATION_PERCENT,
            hw.GPU_MEMORY_USED_BYTES,
            hw.GPU_POWER_WATTS,
            hw.GPU_TEMPERATURE_C,
        ]
    )
    memory = frame[frame["key"] == hw.MEMORY_USED_BYTES]
    assert (memory["mean"] == 64e9).all()


@pytest.mark.parametrize(
    ("run_id", "keys", "message"),
    [
        ("nope", None, r"unknown run id\(s\): nope"),
        (IDLE_RUN, ["gpu.fan"], r"run vision-0-1 has no hardware key\(s\) \['gpu.fan'\]; it has \['cpu.percent'"),
        (IDLE_RUN, [], "keys is empty"),
        (["vision-0-0"], None, "run_id must be one run id"),
    ],
)
def test_bad_input_is_a_clear_error(seeded: Seeded, run_id: str, keys: list[str] | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        query.hardware(run_id, keys, settings=seeded.settings)
