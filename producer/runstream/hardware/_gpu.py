"""GPU readings through NVML: device metrics and the GPU memory held by the sampled process."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from runstream.hardware._once import describe
from runstream.hardware._visible import visible_indices
from runstream_core import hardware_keys as hk
from runstream_core.log import WarnOnce, get_logger

log = get_logger("runstream.hardware")

# The enforced power limit changes only when an administrator sets it, so it is re-read this seldom.
LIMIT_EVERY_SAMPLES = 60
# NVML error codes that mean "no NVIDIA driver here" rather than a broken setup.
_NO_DRIVER_CODES = frozenset({9, 12})  # NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND


def nvidia_driver_present() -> bool:
    """Whether the node looks like it has an NVIDIA driver (then a missing pynvml deserves a warning)."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _import_nvml() -> Any | None:
    try:
        import pynvml
    except ImportError as exc:
        if nvidia_driver_present():
            log.warning(
                "GPU metrics are off: the nvidia-ml-py package is missing; pip install 'runstream[gpu]'",
                error=describe(exc),
            )
        else:
            log.info("GPU metrics are off: no NVIDIA driver on this node")
        return None
    return pynvml


class _Gpu:
    __slots__ = ("device", "handle", "index", "limit_w")

    def __init__(self, index: int, handle: Any) -> None:
        self.index = index
        self.device = f"gpu{index}"
        self.handle = handle
        self.limit_w: float | None = None


class GpuReader:
    """Appends per-GPU readings to a sample's columns.

    NVML is initialised and the device handles fetched once, here. A failing call skips that one
    reading (warned once per key and device); the other readings of the sample are kept.
    """

    def __init__(
        self,
        nvml: Any | None,
        *,
        system: bool,
        process: bool,
        all_gpus: bool,
        pid: int,
        environ: Mapping[str, str],
        warn: WarnOnce,
    ) -> None:
        self._system = system
        self._process = process
        self._pid = pid
        self._warn = warn
        self._gpus: list[_Gpu] = []
        self._nvml: Any = None
        self._samples = 0
        self._temperature_sensor = 0  # NVML_TEMPERATURE_GPU
        self._sm_clock = 1  # NVML_CLOCK_SM
        self._reads: list[tuple[tuple[str, ...], Callable[[_Gpu], tuple[float, ...]]]] = []
        self.devices: list[str] = []
        if system or process:
            self._open(nvml, all_gpus, environ)

    def _open(self, nvml: Any | None, all_gpus: bool, environ: Mapping[str, str]) -> None:
        if nvml is None:
            nvml = _import_nvml()
            if nvml is None:
                return
        try:
            nvml.nvmlInit()
        except Exception as exc:
            if getattr(exc, "value", None) in _NO_DRIVER_CODES:
                log.info("GPU metrics are off: no NVIDIA driver on this node", error=describe(exc))
            else:
                log.warning("GPU metrics are off: NVML could not be initialised", error=describe(exc))
            return
        self._nvml = nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            log.warning("GPU metrics are off: NVML could not count the GPUs", error=describe(exc))
            self.close()
            return
        handles: dict[int, Any] = {}

        def handle(index: int) -> Any:
            if index not in handles:
                handles[index] = nvml.nvmlDeviceGetHandleByIndex(index)
            return handles[index]

        def uuid_of(index: int) -> str | None:
            try:
                uuid = nvml.nvmlDeviceGetUUID(handle(index))
            except Exception as exc:
                log.warning("could not read a GPU's UUID", device=f"gpu{index}", error=describe(exc))
                return None
            return uuid.decode() if isinstance(uuid, bytes) else str(uuid)  # older pynvml returns bytes

        spec = None if all_gpus else environ.get("CUDA_VISIBLE_DEVICES")
        for index in visible_indices(spec, count, uuid_of):
            try:
                self._gpus.append(_Gpu(index, handle(index)))
            except Exception as exc:
                log.warning("skipping a GPU NVML cannot open", device=f"gpu{index}", error=describe(exc))
        if not self._gpus:
            if count == 0:
                log.info("GPU metrics are off: NVML sees no GPU on this node")
            elif spec is not None:
                log.info("GPU metrics are off: CUDA_VISIBLE_DEVICES hides every GPU", cuda_visible_devices=spec)
            self.close()
            return
        self.devices = [gpu.device for gpu in self._gpus]
        self._temperature_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", self._temperature_sensor)
        self._sm_clock = getattr(nvml, "NVML_CLOCK_SM", self._sm_clock)
        self._reads = self._readings()

    def _readings(self) -> list[tuple[tuple[str, ...], Callable[[_Gpu], tuple[float, ...]]]]:
        """(keys, read) per NVML call of one sample, in sample order; ``read`` returns one value per key."""
        nvml, pid = self._nvml, self._pid
        sensor, sm = self._temperature_sensor, self._sm_clock

        def utilization(gpu: _Gpu) -> tuple[float, ...]:
            return (float(nvml.nvmlDeviceGetUtilizationRates(gpu.handle).gpu),)

        def memory(gpu: _Gpu) -> tuple[float, ...]:
            info = nvml.nvmlDeviceGetMemoryInfo(gpu.handle)
            return float(info.used), float(info.total)

        def power(gpu: _Gpu) -> tuple[float, ...]:
            return (nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0,)

        def power_limit(gpu: _Gpu) -> tuple[float, ...]:
            if gpu.limit_w is None or self._samples % LIMIT_EVERY_SAMPLES == 0:
                try:
                    gpu.limit_w = nvml.nvmlDeviceGetEnforcedPowerLimit(gpu.handle) / 1000.0
                except Exception as exc:
                    if gpu.limit_w is None:
                        raise
                    self._failed(hk.GPU_POWER_LIMIT_WATTS, gpu.device, exc)  # keep reporting the last value read
            return (gpu.limit_w,) if gpu.limit_w is not None else ()

        def temperature(gpu: _Gpu) -> tuple[float, ...]:
            return (float(nvml.nvmlDeviceGetTemperature(gpu.handle, sensor)),)

        def sm_clock(gpu: _Gpu) -> tuple[float, ...]:
            return (float(nvml.nvmlDeviceGetClockInfo(gpu.handle, sm)),)

        def process_memory(gpu: _Gpu) -> tuple[float, ...]:
            # usedGpuMemory is None when NVML cannot tell (e.g. Windows WDDM)
            held = sum(
                p.usedGpuMemory or 0 for p in nvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle) if p.pid == pid
            )
            return (float(held),)

        readings: list[tuple[tuple[str, ...], Callable[[_Gpu], tuple[float, ...]]]] = []
        if self._system:
            readings += [
                ((hk.GPU_UTILIZATION_PERCENT,), utilization),
                ((hk.GPU_MEMORY_USED_BYTES, hk.GPU_MEMORY_TOTAL_BYTES), memory),
                ((hk.GPU_POWER_WATTS,), power),
                ((hk.GPU_POWER_LIMIT_WATTS,), power_limit),
                ((hk.GPU_TEMPERATURE_C,), temperature),
                ((hk.GPU_SM_CLOCK_MHZ,), sm_clock),
            ]
        if self._process:
            readings.append(((hk.GPU_PROCESS_MEMORY_BYTES,), process_memory))
        return readings

    def read(self, keys: list[str], devices: list[str], values: list[float]) -> None:
        if not self._gpus:
            return
        # One try per NVML call: a reading NVML refuses (e.g. power on some boards) must not cost the others.
        for gpu in self._gpus:
            for names, read in self._reads:
                try:
                    got = read(gpu)
                except Exception as exc:
                    self._failed(names[0], gpu.device, exc)
                    continue
                keys.extend(names[: len(got)])
                devices.extend([gpu.device] * len(got))
                values.extend(got)
        self._samples += 1

    def _failed(self, key: str, device: str, exc: Exception) -> None:
        self._warn(
            ("gpu", key, device),
            "could not read a GPU metric; skipping it",
            key=key,
            device=device,
            error=describe(exc),
        )

    def close(self) -> None:
        """Shut NVML down (once); later reads return nothing."""
        nvml, self._nvml = self._nvml, None
        self._gpus = []
        if nvml is None:
            return
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            log.warning("NVML shutdown failed", error=describe(exc))
