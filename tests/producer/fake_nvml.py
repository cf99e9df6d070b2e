"""A stand-in for the ``pynvml`` module: the calls the hardware sampler makes, over configurable GPUs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    """Like pynvml's: carries the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {9: "Driver Not Loaded", 3: "Not Supported"}.get(self.value, "Unknown Error")


@dataclass
class FakeProcess:
    pid: int
    usedGpuMemory: int | None  # pynvml's field name


@dataclass
class FakeGpu:
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    util: int = 0
    memory_used: int = 0
    memory_total: int = 0
    power_mw: int = 0
    limit_mw: int = 0
    temp_c: int = 0
    sm_clock_mhz: int = 0
    processes: list[FakeProcess] = field(default_factory=list)


class FakeNvml:
    """Module-like object; handles are device indices.

    ``fail(name, index)`` makes function ``name`` raise NVMLError for that device (every device when
    ``index`` is None); ``init_error`` makes nvmlInit raise. ``calls`` counts every call by name.
    """

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1

    def __init__(self, gpus: list[FakeGpu], *, init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.calls: Counter[str] = Counter()
        self.initialised = 0
        self._failing: dict[tuple[str, int | None], int] = {}

    def fail(self, name: str, index: int | None = None, code: int = NVML_ERROR_UNKNOWN) -> None:
        self._failing[(name, index)] = code

    def _call(self, name: str, index: int | None = None) -> None:
        self.calls[name] += 1
        for target in ((name, index), (name, None)):
            if target in self._failing:
                raise NVMLError(self._failing[target])

    def nvmlInit(self) -> None:
        self._call("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._call("nvmlDeviceGetHandleByIndex", index)
        if not 0 <= index < len(self.gpus):
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        self._call("nvmlDeviceGetUUID", handle)
        return self.gpus[handle].uuid

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        self._call("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=self.gpus[handle].util, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        self._call("nvmlDeviceGetMemoryInfo", handle)
        gpu = self.gpus[handle]
        return SimpleNamespace(used=gpu.memory_used, total=gpu.memory_total, free=gpu.memory_total - gpu.memory_used)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self._call("nvmlDeviceGetPowerUsage", handle)
        return self.gpus[handle].power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
        return self.gpus[handle].limit_mw

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature", handle)
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self.gpus[handle].temp_c

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        self._call("nvmlDeviceGetClockInfo", handle)
        assert clock == self.NVML_CLOCK_SM
        return self.gpus[handle].sm_clock_mhz

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[FakeProcess]:
        self._call("nvmlDeviceGetComputeRunningProcesses", handle)
        return list(self.gpus[handle].processes)
