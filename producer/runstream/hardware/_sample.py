"""One sample of hardware readings, column-wise."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HardwareSample:
    """Readings taken together: reading ``i`` is (keys[i], devices[i], values[i]) at ``ts_ms``.

    ``interval_ms`` is the sampler's configured interval, which lets GPU-hours be summed from samples.
    """

    ts_ms: int
    interval_ms: int
    keys: list[str]
    devices: list[str]
    values: list[float]
